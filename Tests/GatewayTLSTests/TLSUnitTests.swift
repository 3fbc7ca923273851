@testable import GatewayConfig
@testable import GatewayTLS
import Foundation
import NIOSSL
import X509
import Testing
import TestSupport

@Suite struct SNISelectorTests {
    let selector = SNISelector(names: [["api.example.com"], ["*.apps.example.com", "www.example.com"], ["api.example.com"]])

    @Test func exactThenWildcardThenDefault() {
        #expect(selector.certificate(for: "api.example.com") == 0)
        #expect(selector.certificate(for: "API.Example.com.") == 0, "case and a trailing dot do not matter")
        #expect(selector.certificate(for: "www.example.com") == 1)
        #expect(selector.certificate(for: "shop.apps.example.com") == 1)
        #expect(selector.certificate(for: "a.shop.apps.example.com") == 0, "a wildcard covers one label")
        #expect(selector.certificate(for: "apps.example.com") == 0)
        #expect(selector.certificate(for: "unknown.test") == 0)
        #expect(selector.certificate(for: nil) == 0)
        #expect(selector.certificate(for: "") == 0)
    }
}

@Suite struct TLSCheckTests {
    @Test func nameCoverage() {
        #expect(TLSCheck.covers(["api.test"], "api.test"))
        #expect(TLSCheck.covers(["*.test"], "api.test"))
        #expect(!TLSCheck.covers(["*.test"], "a.api.test"))
        #expect(!TLSCheck.covers(["*.test"], "*.other"))
        #expect(TLSCheck.covers(["*.test"], "*.test"))
        #expect(!TLSCheck.covers(["api.test"], "*.test"))
    }

    // A certificate that has expired or expires within two weeks is a warning (still served), with its date.
    @Test func expiringCertificates() throws {
        let day: Int64 = 86_400
        let notAfter: Int64 = 1_796_083_200  // 2026-12-01T00:00:00Z
        #expect(TLSCheck.expiryWarning(notAfter: notAfter, now: notAfter - 30 * day) == nil)
        #expect(TLSCheck.expiryWarning(notAfter: notAfter, now: notAfter - 9 * day - 5) == "the certificate expires in 9 days (on 2026-12-01); renew it")
        #expect(TLSCheck.expiryWarning(notAfter: notAfter, now: notAfter - day) == "the certificate expires in 1 day (on 2026-12-01); renew it")
        #expect(TLSCheck.expiryWarning(notAfter: notAfter, now: notAfter) == "the certificate expired on 2026-12-01: clients refuse it; renew it")

        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        var listener = ListenerConfig(name: "tls", address: "127.0.0.1", port: 0, tls: nil, redirectHTTPSPort: nil, h2c: false)
        listener.tls = TLSConfig(
            certificates: [.init(cert: server.cert, key: server.key, serverNames: ["localhost"])], minVersion: .tls12,
            alpn: ["http/1.1"], clientCA: nil, clientAuth: .none, clientSubjectHeader: "x-client-cert-subject")
        let config = GatewayConfig(
            workers: 1, listeners: [listener], admin: nil, redis: nil, limits: LimitsConfig(), trustedProxies: [],
            securityHeaders: SecurityHeadersConfig(), rateLimiting: RateLimitingConfig(), cache: CacheConfig(), auth: nil, upstreams: [],
            routes: [], logging: LoggingConfig())
        let expiry = Int64(try NIOSSLCertificate.fromPEMFile(server.cert)[0].notValidAfter)
        #expect(TLSCheck.findings(config).isEmpty, "a test certificate is valid for 30 days")
        let later = TLSCheck.findings(config, now: expiry + 1)
        #expect(later.map(\.path) == ["listeners[0].tls.certificates[0].cert"])
        #expect(later.first?.isError == false)
        #expect(later.first?.message.hasPrefix("the certificate expired on ") == true)
    }

    // The server's cipher order is set through reflection on swift-nio-ssl's context: this fails loudly if
    // an upgrade renames what it relies on.
    @Test func serverCipherOrderApplies() throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let settings = TLSConfig(
            certificates: [.init(cert: server.cert, key: server.key, serverNames: ["localhost"])], minVersion: .tls12,
            alpn: ["h2", "http/1.1"], clientCA: nil, clientAuth: .none, clientSubjectHeader: "x-client-cert-subject")
        let tls = try ServerTLS(listener: "test", settings: settings)
        #expect(tls.prefersServerCiphers)
    }

    @Test func certificateNames() throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["api.test", "*.apps.test", "127.0.0.1"])
        let certificate = try NIOSSLCertificate.fromPEMFile(server.cert)[0]
        #expect(TLSCheck.coveredNames(certificate).sorted() == ["*.apps.test", "127.0.0.1", "api.test"])
        let client = try pki.issueClient("client", subject: "/CN=client-1/O=Example")
        let subject = PeerIdentity.certificate(of: try NIOSSLCertificate.fromPEMFile(client.cert)[0], withPEM: false)?.subject
        #expect(subject == "O=Example,CN=client-1" || subject == "CN=client-1,O=Example")
    }
}

/// Key and certificate belong together when their public keys match, whatever the key's PEM form.
@Suite struct CertificateIdentityTests {
    @Test func keysMatchTheirCertificatesOnly() throws {
        let pki = try TestPKI()
        let ecdsa = try pki.issueServer("ecdsa", names: ["a.test"])
        let rsa = try pki.issueServer("rsa", names: ["b.test"], rsa: true)
        #expect(try CertificateIdentity.load(cert: ecdsa.cert, key: ecdsa.key).chain.count == 1)
        #expect(try CertificateIdentity.load(cert: rsa.cert, key: rsa.key).chain.count == 1)

        // Traditional "RSA PRIVATE KEY" and "EC PRIVATE KEY" files (the latter after an EC PARAMETERS block).
        let traditional = pki.path("rsa-traditional.pem")
        try TestPKI.openssl(["pkey", "-in", rsa.key, "-traditional", "-out", traditional], in: pki.directory)
        #expect(try CertificateIdentity.load(cert: rsa.cert, key: traditional).chain.count == 1)
        let sec1 = pki.path("ec-sec1.pem")
        let sec1Cert = pki.path("ec-sec1-cert.pem")
        try TestPKI.openssl(["ecparam", "-name", "prime256v1", "-genkey", "-out", sec1], in: pki.directory)
        try TestPKI.openssl(["req", "-x509", "-key", sec1, "-out", sec1Cert, "-days", "1", "-subj", "/CN=c.test"], in: pki.directory)
        #expect(try CertificateIdentity.load(cert: sec1Cert, key: sec1).chain.count == 1)

        for (cert, key) in [(ecdsa.cert, rsa.key), (rsa.cert, ecdsa.key), (sec1Cert, ecdsa.key), (ecdsa.cert, sec1)] {
            let error = thrownError { _ = try CertificateIdentity.load(cert: cert, key: key) } as? TLSFileError
            #expect(error?.problem == "does not match the certificate in \(cert)")
        }
    }
}

/// `client_crl`: lists made by `openssl ca -gencrl`, read as PEM and DER, trusted only when a `client_ca` certificate
/// signed them.
@Suite struct RevocationListTests {
    static func authorities(_ pki: TestPKI) throws -> [X509.Certificate] {
        try NIOSSLCertificate.fromPEMFile(pki.caFile).map { try X509.Certificate(derEncoded: $0.toDERBytes()) }
    }

    static func certificate(_ file: String) throws -> X509.Certificate {
        try X509.Certificate(derEncoded: NIOSSLCertificate.fromPEMFile(file)[0].toDERBytes())
    }

    @Test func revokedSerialsFromPEMAndDER() throws {
        let pki = try TestPKI()
        let (kept, revoked, later) = (try pki.issueClient("kept", subject: "/CN=kept"), try pki.issueClient("revoked", subject: "/CN=revoked"),
            try pki.issueClient("later", subject: "/CN=later"))
        let pem = try pki.revocationList(revoking: [revoked.cert], into: "first")
        let list = try RevocationList(files: [pem], issuers: Self.authorities(pki))
        let (keptCertificate, revokedCertificate, laterCertificate) = (
            try Self.certificate(kept.cert), try Self.certificate(revoked.cert), try Self.certificate(later.cert)
        )
        #expect(list.count == 1)
        #expect(list.isRevoked(revokedCertificate))
        #expect(!list.isRevoked(keptCertificate) && !list.isRevoked(laterCertificate))
        let nextUpdate = try #require(list.issuers.first?.nextUpdate)
        #expect(abs(nextUpdate.timeIntervalSinceNow - 7 * 86400) < 120, "default_crl_days 7: \(nextUpdate)")

        let der = try pki.revocationList(revoking: [later.cert], into: "second", der: true)
        let both = try RevocationList(files: [der], issuers: Self.authorities(pki))
        #expect(both.count == 2 && both.isRevoked(laterCertificate) && both.isRevoked(revokedCertificate))
        #expect(!both.isRevoked(keptCertificate))
    }

    // A list must come from a client_ca certificate: another CA's list, or one signed by a different key under the same
    // name, is refused with the file named; so is a file that is no list.
    @Test func untrustedOrBrokenLists() throws {
        let pki = try TestPKI()
        let other = try TestPKI(name: "other")
        let impostor = try TestPKI()  // the same subject name, another key
        let client = try pki.issueClient("client", subject: "/CN=client")
        let foreign = try other.revocationList(revoking: [client.cert], into: "foreign")
        let forged = try impostor.revocationList(revoking: [client.cert], into: "forged")
        let issuers = try Self.authorities(pki)
        let foreignError = thrownError { _ = try RevocationList(files: [foreign], issuers: issuers) }
        #expect((foreignError as? TLSFileError)?.description == "\(foreign) lists certificates of CN=other test CA, which is not in client_ca")
        let forgedError = thrownError { _ = try RevocationList(files: [forged], issuers: issuers) }
        #expect((forgedError as? TLSFileError)?.problem == "is not signed by the client_ca certificate CN=test test CA (wrong or altered list)")
        let notAList = thrownError { _ = try RevocationList(files: [client.cert], issuers: issuers) }
        #expect((notAList as? TLSFileError)?.problem == "has no -----BEGIN X509 CRL----- block")
        let missing = thrownError { _ = try RevocationList(files: [pki.path("nothing.crl")], issuers: issuers) }
        #expect((missing as? TLSFileError)?.problem == "does not exist")
        // One altered byte in the signed part (the last byte of the revoked serial) breaks the signature.
        let der = try pki.revocationList(revoking: [client.cert], into: "altered", der: true)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: der)))
        let serial = Array(try Self.certificate(client.cert).serialNumber.bytes)
        let found = (0...(bytes.count - serial.count)).first { Array(bytes[$0..<$0 + serial.count]) == serial }
        let at = try #require(found)
        bytes[at + serial.count - 1] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: der))
        let altered = thrownError { _ = try RevocationList(files: [der], issuers: issuers) }
        #expect((altered as? TLSFileError)?.problem == "is not signed by the client_ca certificate CN=test test CA (wrong or altered list)")
    }

    // gateway check: a list past its nextUpdate is a warning (it is still applied); an unusable one an error at client_crl.
    @Test func checkFindings() throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let stale = try pki.revocationList(revoking: [], into: "stale", nextUpdate: "20200101000000Z")
        var listener = ListenerConfig(name: "tls", address: "127.0.0.1", port: 0, tls: nil, redirectHTTPSPort: nil, h2c: false)
        var tls = TLSConfig(
            certificates: [.init(cert: server.cert, key: server.key, serverNames: ["localhost"])], minVersion: .tls12,
            alpn: ["http/1.1"], clientCA: pki.caFile, clientAuth: .required, clientSubjectHeader: "x-client-cert-subject")
        tls.clientCRL = [stale]
        listener.tls = tls
        var config = GatewayConfig(
            workers: 1, listeners: [listener], admin: nil, redis: nil, limits: LimitsConfig(), trustedProxies: [],
            securityHeaders: SecurityHeadersConfig(), rateLimiting: RateLimitingConfig(), cache: CacheConfig(), auth: nil, upstreams: [],
            routes: [], logging: LoggingConfig())
        let findings = TLSCheck.findings(config)
        #expect(findings.map(\.path) == ["listeners[0].tls.client_crl"] && findings.first?.isError == false)
        #expect(
            findings.first?.message
                == "the revocation list of CN=test test CA was due to be replaced on 2020-01-01; it is still applied, but certificates revoked since are not in it: fetch the current one")
        config.listeners[0].tls?.clientCRL = [server.cert]
        let broken = TLSCheck.findings(config)
        #expect(broken.map(\.path) == ["listeners[0].tls.client_crl"] && broken.first?.isError == true)
        #expect(reloadedFilesContain(config, server.cert))
    }

    private func reloadedFilesContain(_ config: GatewayConfig, _ file: String) -> Bool { config.reloadedFiles.contains(file) }
}
