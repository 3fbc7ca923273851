import Foundation
import GatewayConfig
import NIOSSL
import X509

/// What `gateway check` (and start-up) finds wrong with the TLS files a config names: every certificate and
/// key must exist, parse and belong together; a server name a certificate does not cover is a warning, and so
/// is a certificate that has expired or expires within `expiryWarningDays` (it is still served: clients that
/// refuse it would refuse no certificate too).
public enum TLSCheck {
    public static let expiryWarningDays: Int64 = 14

    public struct Finding: Sendable, Equatable {
        public let path: String
        public let message: String
        public let isError: Bool
    }

    /// - Parameter now: seconds since 1970 (the current time, or a test's).
    public static func findings(_ config: GatewayConfig, now: Int64 = Int64(Date().timeIntervalSince1970)) -> [Finding] {
        var findings: [Finding] = []
        for (listenerIndex, listener) in config.listeners.enumerated() {
            guard let tls = listener.tls else { continue }
            let base = "listeners[\(listenerIndex)].tls"
            // ACME certificates are the ACME manager's: made at start if missing, renewed before they end, and logged by it.
            for (index, certificate) in tls.certificates.enumerated() where !certificate.acme {
                let path = "\(base).certificates[\(index)]"
                do {
                    let identity = try CertificateIdentity.load(certificate)
                    if let expiry = expiryWarning(notAfter: Int64(identity.chain[0].notValidAfter), now: now) {
                        findings.append(Finding(path: "\(path).cert", message: expiry, isError: false))
                    }
                    let covered = coveredNames(identity.chain[0])
                    for name in certificate.serverNames where !covers(covered, name) {
                        findings.append(
                            Finding(
                                path: "\(path).server_names", message: "\"\(name)\" is not among the certificate's names \(covered.sorted())",
                                isError: false))
                    }
                } catch let error as TLSFileError {
                    findings.append(Finding(path: "\(path).\(error.file == certificate.key ? "key" : "cert")", message: error.description, isError: true))
                } catch {
                    findings.append(Finding(path: path, message: "\(error)", isError: true))
                }
            }
            if let caFile = tls.clientCA {
                do {
                    let authorities = try loadCertificates(caFile).compactMap { try? Certificate(derEncoded: $0.toDERBytes()) }
                    if !tls.clientCRL.isEmpty {
                        let list = try RevocationList(files: tls.clientCRL, issuers: authorities)
                        for read in list.issuers {
                            if let warning = staleListWarning(issuer: read.name, nextUpdate: read.nextUpdate, now: now) {
                                findings.append(Finding(path: "\(base).client_crl", message: warning, isError: false))
                            }
                        }
                    }
                } catch let error as TLSFileError where tls.clientCRL.contains(error.file) {
                    findings.append(Finding(path: "\(base).client_crl", message: error.description, isError: true))
                } catch {
                    findings.append(Finding(path: "\(base).client_ca", message: "\(error)", isError: true))
                }
            }
        }
        for upstream in config.upstreams where upstream.targets.contains(where: { $0.scheme == .https }) {
            if let finding = clientContextFinding(upstream.tls, at: "upstreams.\(upstream.name).tls") { findings.append(finding) }
        }
        if let redis = config.redis, redis.usesTLS, let finding = clientContextFinding(redis.tls, at: "redis.tls") {
            findings.append(finding)
        }
        return findings
    }

    /// "expired on 2026-12-01" or "expires in 9 days (on 2026-12-16)"; nil when it is valid for longer.
    static func expiryWarning(notAfter: Int64, now: Int64) -> String? {
        let day = Self.isoDay(notAfter)
        if notAfter <= now { return "the certificate expired on \(day): clients refuse it; renew it" }
        let days = (notAfter - now) / 86_400
        guard days < expiryWarningDays else { return nil }
        return "the certificate expires in \(days) day\(days == 1 ? "" : "s") (on \(day)); renew it"
    }

    /// A revocation list past its `nextUpdate`: it is still used (refusing every client would be an outage of the
    /// gateway's making), but certificates revoked since are not known.
    static func staleListWarning(issuer: String, nextUpdate: Date?, now: Int64) -> String? {
        guard let nextUpdate, Int64(nextUpdate.timeIntervalSince1970) <= now else { return nil }
        return "the revocation list of \(issuer) was due to be replaced on \(isoDay(Int64(nextUpdate.timeIntervalSince1970)))"
            + "; it is still applied, but certificates revoked since are not in it: fetch the current one"
    }

    private static func isoDay(_ seconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    /// Whether the client-side TLS files (CA bundle, client certificate and key) load, naming the one that does not.
    private static func clientContextFinding(_ settings: UpstreamTLSConfig, at path: String) -> Finding? {
        do {
            _ = try UpstreamTLS.makeContext(settings)
            return nil
        } catch let error as TLSFileError {
            let key = error.file == settings.caFile ? "ca_file" : error.file == settings.clientKey ? "client_key" : "client_cert"
            return Finding(path: "\(path).\(key)", message: error.description, isError: true)
        } catch {
            return Finding(path: path, message: "\(error)", isError: true)
        }
    }

    /// DNS names (and IPs) a certificate is valid for: its subject alternative names, else its common name.
    static func coveredNames(_ certificate: NIOSSLCertificate) -> [String] {
        guard let der = try? certificate.toDERBytes(), let parsed = try? X509.Certificate(derEncoded: der) else { return [] }
        return coveredNames(parsed)
    }

    /// The same, lowercased, of a certificate already parsed.
    public static func coveredNames(_ parsed: X509.Certificate) -> [String] {
        var names: [String] = []
        if let san = try? parsed.extensions.subjectAlternativeNames {
            for name in san {
                switch name {
                case .dnsName(let dns): names.append(dns.lowercased())
                case .ipAddress(let bytes): names.append(ipText(Array(bytes.bytes)))
                default: break
                }
            }
        }
        if names.isEmpty {
            for rdn in parsed.subject {
                for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                    names.append("\(attribute.value)".lowercased())
                }
            }
        }
        return names
    }

    static func covers(_ names: [String], _ wanted: String) -> Bool {
        names.contains { name in
            if name == wanted { return true }
            // A wildcard certificate covers one label; a wildcard server_name needs a wildcard certificate.
            guard name.hasPrefix("*."), !wanted.hasPrefix("*.") else { return false }
            guard let dot = wanted.firstIndex(of: ".") else { return false }
            return wanted[wanted.index(after: dot)...] == name.dropFirst(2)
        }
    }

    private static func ipText(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: bytes.count, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }
}

/// A verified client certificate's subject as text (RFC 4514 style: `CN=client-1,O=Example`).
public enum PeerIdentity {
    /// The subject and URI names of a verified client certificate, and (`withPEM`) the certificate itself, escaped.
    public static func certificate(of certificate: NIOSSLCertificate, withPEM: Bool) -> (subject: String, uris: [String], escapedPEM: String?)? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? X509.Certificate(derEncoded: der) else { return nil }
        var uris: [String] = []
        if let names = try? parsed.extensions.subjectAlternativeNames {
            for case .uniformResourceIdentifier(let uri) in names { uris.append(uri) }
        }
        var escaped: String?
        if withPEM, let pem = try? parsed.serializeAsPEM().pemString {
            // Everything but unreserved characters percent-encoded: newlines, '+', '/' and '=' included, as NGINX does.
            escaped = (pem + "\n").addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
        }
        return (parsed.subject.description, uris, escaped)
    }
}
