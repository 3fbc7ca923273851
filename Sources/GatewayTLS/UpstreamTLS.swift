import GatewayConfig
import NIOSSL

/// The client side of TLS to an upstream's `https://` targets (and to Redis, for `rediss://`).
public enum UpstreamTLS {
    /// The context for one upstream. Verification is on unless `insecure_skip_verify` says otherwise: against
    /// `ca_file` when given, else the system trust store. `applicationProtocols` is what ALPN offers:
    /// "http/1.1" or, for HTTP/2 targets, "h2" alone (an upstream that cannot speak it must refuse, not downgrade).
    /// For a server the gateway calls for itself (an ACME CA, a token endpoint): verified against `caFile` when given (a
    /// private CA), nil for the system trust store.
    public static func makeContext(caFile: String?) throws -> NIOSSLContext? {
        guard let caFile else { return nil }
        var settings = UpstreamTLSConfig()
        settings.caFile = caFile
        return try makeContext(settings, applicationProtocols: [])
    }

    public static func makeContext(_ settings: UpstreamTLSConfig, applicationProtocols: [String] = ["http/1.1"]) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = applicationProtocols
        if settings.insecureSkipVerify {
            configuration.certificateVerification = .none
        } else {
            configuration.certificateVerification = .fullVerification
            if let caFile = settings.caFile { configuration.trustRoots = .certificates(try loadCertificates(caFile)) }
        }
        if let cert = settings.clientCert, let key = settings.clientKey {
            let identity = try CertificateIdentity.load(cert: cert, key: key)
            configuration.certificateChain = identity.chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(identity.key)
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// The SNI name for a target: `server_name` when set, else the target's host unless it is an IP literal
    /// (SNI carries names only; an IP target's certificate is then checked against the IP).
    public static func serverName(for target: UpstreamTarget, settings: UpstreamTLSConfig) -> String? {
        serverName(host: target.host, settings: settings)
    }

    /// The same for any host (Redis's, say).
    public static func serverName(host: String, settings: UpstreamTLSConfig) -> String? {
        if let name = settings.serverName { return name }
        let isIP = host.contains(":") || host.split(separator: ".").allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
        return isIP ? nil : host
    }
}
