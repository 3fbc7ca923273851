import GatewayConfig
import NIOConcurrencyHelpers
import Logging
import NIOCore
import NIOSSL
import X509

/// The TLS side of one listener: its certificates (chosen by SNI), protocol versions, ciphers, ALPN and client
/// certificate rules, as a NIOSSLContext that a reload can replace.
///
/// Each new connection takes the context current at accept time, so a reload changes new handshakes only;
/// connections already open keep the certificate they were made with.
public final class ServerTLS: Sendable {
    /// When one configured certificate (its leaf) stops being valid, for metrics and alerts.
    public struct Validity: Sendable, Equatable {
        /// The `cert` file, as configured.
        public let file: String
        /// Seconds since 1970.
        public let notAfter: Int64
        /// The names the leaf covers (its subject alternative names, else its common name) and who issued it.
        public var names: [String] = []
        public var issuer = ""
        /// Kept by the ACME manager (`"acme": true`).
        public var acme = false
    }

    public let listener: String
    private let settings: TLSConfig
    /// The context, and the client-certificate check that replaces BoringSSL's when there are revocation lists.
    private let current: NIOLockedValueBox<(context: NIOSSLContext, check: ClientCertificateCheck?)>
    private let validities: NIOLockedValueBox<[Validity]>
    /// Whether the server's cipher order applies (see `ServerCipherOrder`); false only if swift-nio-ssl changed.
    public let prefersServerCiphers: Bool

    /// Reads every certificate and key; throws the first problem found (`check` reports all of them).
    public init(listener: String, settings: TLSConfig) throws {
        self.listener = listener
        self.settings = settings
        let (context, validities, check) = try Self.makeContext(settings)
        self.prefersServerCiphers = ServerCipherOrder.apply(to: context)
        self.current = NIOLockedValueBox((context, check))
        self.validities = NIOLockedValueBox(validities)
    }

    public var context: NIOSSLContext { current.withLockedValue { $0.context } }

    /// The revocation lists in use (`client_crl`), as of the last successful load.
    public var revocationList: RevocationList? { current.withLockedValue { $0.check?.revocations } }

    /// The TLS handler of a new connection, with the current certificates and client-certificate rules.
    public func makeHandler() -> NIOSSLServerHandler {
        let (context, check) = current.withLockedValue { $0 }
        guard let check else { return NIOSSLServerHandler(context: context) }
        return NIOSSLServerHandler(context: context, customVerificationCallback: check.verify)
    }

    /// The certificates in use, with their expiry (updated by a successful reload).
    public var certificateValidity: [Validity] { validities.withLockedValue { $0 } }

    /// Reads the files again. On success new handshakes use them; on failure the old context stays.
    public func reload() throws {
        let (context, validities, check) = try Self.makeContext(settings)
        _ = ServerCipherOrder.apply(to: context)
        current.withLockedValue { $0 = (context, check) }
        self.validities.withLockedValue { $0 = validities }
    }

    /// Forward-secret AEAD suites only (Mozilla's "intermediate" list, as in NGINX's recommended setup). TLS 1.3
    /// suites are fixed by BoringSSL and are all forward-secret AEAD.
    public static let cipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    static func makeContext(_ settings: TLSConfig) throws -> (NIOSSLContext, [Validity], ClientCertificateCheck?) {
        let identities = try settings.certificates.map(CertificateIdentity.load)
        let validities = zip(settings.certificates, identities).map { certificate, identity in
            let leaf = identity.chain[0]
            let parsed = try? X509.Certificate(derEncoded: leaf.toDERBytes())
            return Validity(
                file: certificate.cert, notAfter: Int64(leaf.notValidAfter), names: parsed.map(TLSCheck.coveredNames) ?? [],
                issuer: parsed.map { "\($0.issuer)" } ?? "", acme: certificate.acme)
        }
        guard let first = identities.first else { throw TLSFileError(file: "", problem: "no certificate configured") }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: first.chain.map { .certificate($0) }, privateKey: .privateKey(first.key))
        configuration.minimumTLSVersion = settings.minVersion == .tls13 ? .tlsv13 : .tlsv12
        configuration.cipherSuites = cipherSuites
        configuration.applicationProtocols = settings.alpn
        var check: ClientCertificateCheck?
        if let caFile = settings.clientCA {
            let roots = try loadCertificates(caFile)
            configuration.trustRoots = .certificates(roots)
            configuration.sendCANameList = true
            configuration.certificateVerification = settings.clientAuth == .required ? .noHostnameVerification : .optionalVerification
            if !settings.clientCRL.isEmpty {
                let authorities = roots.compactMap { try? Certificate(derEncoded: $0.toDERBytes()) }
                check = ClientCertificateCheck(roots: authorities, revocations: try RevocationList(files: settings.clientCRL, issuers: authorities))
            }
        }
        if identities.count > 1 {
            let selector = SNISelector(names: settings.certificates.map(\.serverNames))
            let overrides = identities.map { identity in
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = identity.chain.map { .certificate($0) }
                override.privateKey = .privateKey(identity.key)
                return override
            }
            configuration.sslContextCallback = { values, promise in
                let index = selector.certificate(for: values.serverHostname)
                promise.succeed(index == 0 ? .noChanges : overrides[index])
            }
        }
        return (try NIOSSLContext(configuration: configuration), validities, check)
    }
}

/// A certificate chain with its private key, checked to belong together.
struct CertificateIdentity {
    let chain: [NIOSSLCertificate]
    let key: NIOSSLPrivateKey

    static func load(_ certificate: TLSConfig.Certificate) throws -> CertificateIdentity {
        try load(cert: certificate.cert, key: certificate.key)
    }

    static func load(cert: String, key: String) throws -> CertificateIdentity {
        let chain = try loadCertificates(cert)
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw TLSFileError(file: key, problem: readProblem(key, "is not a PEM private key (RSA or ECDSA)"))
        }
        guard belong(chain, privateKey, keyFile: key) else {
            throw TLSFileError(file: key, problem: "does not match the certificate in \(cert)")
        }
        return CertificateIdentity(chain: chain, key: privateKey)
    }

    /// Whether the key belongs to the leaf certificate: their public keys compared. Only for a key X509 cannot
    /// read does BoringSSL decide, by refusing a context built from the pair; that is not the first choice
    /// because NIOSSLContext leaks its SSL_CTX when its initialiser throws (LeakSanitizer found it).
    private static func belong(_ chain: [NIOSSLCertificate], _ key: NIOSSLPrivateKey, keyFile: String) -> Bool {
        if let leaf = chain.first, let certificate = try? Certificate(derEncoded: leaf.toDERBytes()),
            let text = try? String(contentsOfFile: keyFile, encoding: .utf8),
            let block = privateKeyBlock(in: text), let privateKey = try? Certificate.PrivateKey(pemEncoded: block)
        {
            return privateKey.publicKey == certificate.publicKey
        }
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        return (try? NIOSSLContext(configuration: configuration)) != nil
    }

    /// The first `-----BEGIN ... PRIVATE KEY-----` block of a PEM file (which may also hold EC parameters).
    private static func privateKeyBlock(in text: String) -> String? {
        guard let begin = text.range(of: #"-----BEGIN [A-Z ]*PRIVATE KEY-----"#, options: .regularExpression),
            let end = text.range(of: #"-----END [A-Z ]*PRIVATE KEY-----"#, options: .regularExpression, range: begin.upperBound..<text.endIndex)
        else { return nil }
        return String(text[begin.lowerBound..<end.upperBound])
    }
}

func loadCertificates(_ file: String) throws -> [NIOSSLCertificate] {
    let chain: [NIOSSLCertificate]
    do {
        chain = try NIOSSLCertificate.fromPEMFile(file)
    } catch {
        throw TLSFileError(file: file, problem: readProblem(file, "is not a PEM certificate file"))
    }
    guard !chain.isEmpty else { throw TLSFileError(file: file, problem: "holds no certificate") }
    return chain
}

func readProblem(_ file: String, _ fallback: String) -> String {
    if !FileManagerLite.exists(file) { return "does not exist" }
    if !FileManagerLite.readable(file) { return "cannot be read" }
    return fallback
}

/// A TLS file that could not be used, with the reason.
public struct TLSFileError: Error, CustomStringConvertible {
    public let file: String
    public let problem: String
    public var description: String { file.isEmpty ? problem : "\(file) \(problem)" }
}

/// Picks the certificate for a client's SNI name: an exact `server_names` match first, then a wildcard
/// (`*.example.com` covers `api.example.com`, not `example.com` nor `a.b.example.com`), else the first
/// certificate (also when the client sent no SNI).
public struct SNISelector: Sendable {
    private let exact: [String: Int]
    private let wildcards: [String: Int]

    public init(names: [[String]]) {
        var exact: [String: Int] = [:]
        var wildcards: [String: Int] = [:]
        for (index, list) in names.enumerated() {
            for name in list {
                if name.hasPrefix("*.") {
                    if wildcards[String(name.dropFirst(2))] == nil { wildcards[String(name.dropFirst(2))] = index }
                } else if exact[name] == nil {
                    exact[name] = index
                }
            }
        }
        self.exact = exact
        self.wildcards = wildcards
    }

    public func certificate(for serverName: String?) -> Int {
        guard var name = serverName?.lowercased(), !name.isEmpty else { return 0 }
        if name.hasSuffix(".") { name.removeLast() }
        if let index = exact[name] { return index }
        if let dot = name.firstIndex(of: "."), let index = wildcards[String(name[name.index(after: dot)...])] { return index }
        return 0
    }
}
