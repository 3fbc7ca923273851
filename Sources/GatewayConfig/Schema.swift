import GatewayPolicy

// The typed shape of gateway.json (see ../shared/CONFIG.md and docs/configuration.md).
// Every field has its default here, so the rest of the gateway never asks "was it set?".

public struct GatewayConfig: Sendable {
    /// Event-loop threads; nil means one per core.
    public var workers: Int?
    public var listeners: [ListenerConfig]
    public var admin: AdminConfig?
    public var redis: RedisConfig?
    public var limits: LimitsConfig
    public var trustedProxies: [CIDR]
    /// `"unix:"` among `trusted_proxies` (as NGINX's `set_real_ip_from unix:`): peers on Unix-socket listeners are
    /// trusted proxies.
    public var trustsUnixPeers = false
    /// Top-level `deny_ips` (and `deny_ips_file`): client addresses refused on every route, before routing.
    public var denyIPs: [CIDR] = []
    /// Top-level `allow_ips` (and `allow_ips_file`): when given, the only client addresses the gateway serves.
    public var allowIPs: [CIDR] = []
    /// The `deny_ips_file` and `allow_ips_file` lists read (a reload reads them again).
    public var addressListFiles: [String] = []
    /// `client_ip_header`: the field (lowercased) a trusted proxy names the client in (`cf-connecting-ip`), read before
    /// X-Forwarded-For.
    public var clientIPHeader: String?
    /// `geoip`: the MaxMind DB file client addresses are placed in countries with.
    public var geoip: GeoIPConfig?
    /// Top-level `deny_countries` / `allow_countries`: clients from these countries refused (or only these served) on
    /// every route, before routing.
    public var countries = CountryRule()
    /// Top-level `deny_asns` / `allow_asns`, before routing.
    public var asns = ASNRule()
    /// `forwarded_header`: send the upstream an RFC 7239 `Forwarded` field beside X-Forwarded-*.
    public var forwardedHeader = false
    /// `via`: the pseudonym this gateway adds to `Via` (RFC 9110 §7.6.3) on requests it forwards and responses it
    /// relays; nil (the default, as NGINX and Envoy do) adds none.
    public var via: String?
    /// `loop_detection`: requests going upstream carry this gateway's id in `CDN-Loop` (RFC 8586), and a request that
    /// arrives with it is a forwarding loop, refused with 508 instead of going round until connections run out.
    public var loopDetection = true
    public var securityHeaders: SecurityHeadersConfig
    public var rateLimiting: RateLimitingConfig
    public var cache: CacheConfig
    public var auth: AuthConfig?
    /// In file order.
    public var upstreams: [UpstreamConfig]
    public var routes: [RouteConfig]
    public var logging: LoggingConfig
    public var reload = ReloadConfig()
    /// Span export; nil (the default) exports nothing (trace context is still propagated).
    public var tracing: TracingConfig?
    /// gzip for every route's responses (a route's own `compression` replaces it); nil: off.
    public var compression: CompressionConfig?
    /// `external_auth`: authorization services routes may ask about each request (in file order).
    public var externalAuth: [ExternalAuthConfig] = []
    /// `request_id`: the header that carries the request id, and whose ids are kept.
    public var requestID = RequestIDConfig()
    /// `intercept_errors`: upstream error answers every route replaces with the gateway's JSON error; nil: none.
    public var interceptErrors: InterceptErrorsConfig?
    /// `csrf`: the cross-site request forgery protection of routes without their own; nil: the default (on for
    /// routes taking ambient credentials, see `RouteConfig.effectiveCSRF`).
    public var csrf: CSRFConfig?
    /// `acme`: where listener certificates marked `"acme": true` come from.
    public var acme: ACMEConfig?
    /// The document as written (before `${ENV}` substitution, with included files merged in), for the admin API's `/config`.
    public var source: JSONValue?
    /// The files `include` brought in, in order (a reload reads them again).
    public var includedFiles: [String] = []
    /// The files `${file:PATH}` read their values from (read again by every reload).
    public var secretFiles: [String] = []
    /// The `include` entries with wildcards, as paths: a file that appears or goes there is a change too.
    public var includePatterns: [String] = []
    /// Which file each included route came from (by its index in `routes`); gateway.json's own are not listed.
    public var routeOrigins: [(range: Range<Int>, file: String)] = []

    /// Where route `index` is written: `routes[3]`, or `routes[1] of routes.d/orders.json` for an included one.
    public func routeLocation(_ index: Int) -> String { ConfigIncludes.routeLocation(index, origins: routeOrigins) }

    public func upstream(named name: String) -> UpstreamConfig? { upstreams.first { $0.name == name } }

    /// The certificates the `acme` CA is asked for, one per file (two listeners may share one).
    public var acmeCertificates: [ACMECertificate] {
        var seen = Set<String>()
        return listeners.compactMap(\.tls).flatMap(\.certificates).filter { $0.acme && seen.insert($0.cert).inserted }.map {
            ACMECertificate(names: $0.serverNames, cert: $0.cert, key: $0.key)
        }
    }

    /// Every file the config names whose contents a reload reads again: the included files, listener certificates, keys, client
    /// CAs and revocation lists, upstream CA bundles and client certificates, JWT key and JWKS files, the upstream-token signing key,
    /// the API keys and htpasswd files, the `${file:}` secrets, the address lists, the GeoIP database. With `reload.watch`, a change to any of them reloads (a renewed
    /// certificate, a rotated key) as a change to gateway.json does.
    public var reloadedFiles: [String] {
        var files: [String] = includedFiles + secretFiles + addressListFiles + (geoip?.files ?? [])
        for tls in listeners.compactMap(\.tls) {
            for certificate in tls.certificates { files += [certificate.cert, certificate.key] }
            if let ca = tls.clientCA { files.append(ca) }
            files += tls.clientCRL
        }
        for upstream in upstreams { files += upstream.tls.files }
        if let auth {
            files += [auth.apiKeysFile, auth.basic?.htpasswdFile, auth.jwt?.jwksFile, auth.upstreamToken?.privateKeyFile].compactMap { $0 }
            files += auth.jwt?.keys.compactMap(\.publicKeyFile) ?? []
        }
        var seen = Set<String>()
        return files.filter { seen.insert($0).inserted }
    }
}

/// A route's `request_query`: parameters removed (by their percent-decoded names), then parameters set (any of
/// that name replaced, the value percent-encoded), on the target the upstream gets.
public struct QueryEdits: Sendable {
    public var remove: [String] = []
    public var set: [(name: String, value: String)] = []
    public init() {}
}

/// A route's `fault` (Envoy's fault injection): a share of requests waits `delay.ms` before going on, a share is
/// answered with `abort.status` instead of being forwarded; both may happen to one request (the delay first).
public struct FaultConfig: Sendable, Equatable {
    public struct Delay: Sendable, Equatable {
        public var ms: Int
        /// 0-100.
        public var percent: Double
        public init(ms: Int, percent: Double) { (self.ms, self.percent) = (ms, percent) }
    }
    public struct Abort: Sendable, Equatable {
        public var status: Int
        public var percent: Double
        public init(status: Int, percent: Double) { (self.status, self.percent) = (status, percent) }
    }
    public var delay: Delay?
    public var abort: Abort?
    public init(delay: Delay? = nil, abort: Abort? = nil) { (self.delay, self.abort) = (delay, abort) }
}

/// `intercept_errors` (top level, or a route's own): upstream answers with these statuses reach the client as
/// the gateway's JSON error (`UPSTREAM_ERROR`, the upstream's status kept) instead of the upstream's body, so no
/// stack trace or framework error page leaks out (NGINX's `proxy_intercept_errors`, Traefik's `errors`).
public struct InterceptErrorsConfig: Sendable, Equatable {
    /// false on a route: its upstream's answers pass as they are, whatever the top level says.
    public var enabled = true
    /// Exact statuses (400-599), or classes: 4 for "4xx", 5 for "5xx".
    public var statuses = [5]
    /// `keep_json`: an answer whose `Content-Type` is JSON (`application/json`, `...+json`) passes as the upstream
    /// wrote it (APIs whose error bodies are meant for clients).
    public var keepJSON = false
    /// `keep_headers`: the upstream's fields kept on the gateway's answer (lowercase names).
    public var keepHeaders = ["retry-after", "www-authenticate", "allow"]
    public init() {}

    /// Whether an upstream answer with this status is replaced.
    public func covers(_ status: Int) -> Bool { StatusRules.matches(statuses, status) }

    /// What applies to a route: its own setting, else the top-level one; nil when that intercepts nothing.
    public static func effective(route: InterceptErrorsConfig?, global: InterceptErrorsConfig?) -> InterceptErrorsConfig? {
        guard let chosen = route ?? global, chosen.enabled else { return nil }
        return chosen
    }
}

/// Lists of statuses as gateway.json writes them: exact codes, or classes (`"5xx"`, kept as the digit 5).
public enum StatusRules {
    public static func matches(_ rules: [Int], _ status: Int) -> Bool {
        rules.contains { $0 < 10 ? status / 100 == $0 : status == $0 }
    }
}

/// A route's `request_validation`: request bodies, query parameters, path variables and header fields checked against
/// JSON Schemas before they go upstream (at least one of the four).
public struct RequestValidationConfig: Sendable {
    /// `body_schema`: the JSON the body must be; nil: bodies are not checked (nor held).
    public var bodySchema: JSONSchema?
    /// `query_schema`: the object the query parameters make (`JSONSchema.queryDocument`).
    public var querySchema: JSONSchema?
    /// `path_schema`: the object a `path_template`'s variables make (`JSONSchema.pathDocument`).
    public var pathSchema: JSONSchema?
    /// `header_schema`: the object the request's fields named in it make (`JSONSchema.headerDocument`).
    public var headerSchema: JSONSchema?
    /// The largest body checked (and so held in memory) per request; a larger one is refused with 413.
    public var maxBodyBytes = 1 << 20
    /// `body_required`: a POST, PUT or PATCH without a body is refused (false: it passes unchecked).
    public var bodyRequired = true
    /// Methods that carry no body by custom: requests with them may come without one, and a `body_schema` on a route
    /// that takes only these has nothing to check.
    public static let bodilessMethods: Set<String> = ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
    public init(bodySchema: JSONSchema?, querySchema: JSONSchema? = nil) { (self.bodySchema, self.querySchema) = (bodySchema, querySchema) }
}

/// A route's `location_rewrite` (NGINX's `proxy_redirect`): an upstream answering with a redirect (or a 201's `Location`)
/// names itself as it knows itself, which clients cannot reach or which lacks the route's `strip_prefix`.
public struct LocationRewriteConfig: Sendable, Equatable {
    /// false: every `Location` passes as the upstream wrote it.
    public var enabled = true
    /// Explicit replacements, tried first: a `Location` starting with `from` gets `to` instead of that part.
    public var rules: [RewriteRule] = []
    /// `relative_paths`: a path (`/login`) outside the route's `strip_prefix` gets it in front (for upstreams that do
    /// not read `X-Forwarded-Prefix`).
    public var relativePaths = false
    public init() {}
}

/// A route's `early_hints` (RFC 8297): `103 Early Hints` responses, which let a browser start preloading what a page
/// needs while the upstream is still working on the page.
public struct EarlyHintsConfig: Sendable, Equatable {
    /// false: no 103 reaches the route's clients.
    public var enabled = true
    /// `relay`: the upstream's 103s are passed on (those with a `Link`).
    public var relay = true
    /// `links`: `Link` values the gateway sends in a 103 of its own as soon as the request goes upstream.
    public var links: [String] = []
    /// `http1`: HTTP/1.1 clients get 103s too (HTTP/2 clients always do; HTTP/1.0 clients never).
    public var http1 = false
    /// `learn`: the preloads a page's last answer named in `Link` go out in a 103 the next time the page is asked for.
    public var learn = false
    public init() {}
}

/// One `{"from": ..., "to": ...}` replacement of `location_rewrite.rules` and `cookie_rewrite.domains`.
public struct RewriteRule: Sendable, Equatable {
    public var from: String
    public var to: String
    public init(from: String, to: String) { (self.from, self.to) = (from, to) }
}

/// A route's `cookie_rewrite` (NGINX's `proxy_cookie_path` and `proxy_cookie_domain`): an upstream sets cookies for the
/// paths and the domain it knows, which the browser (seeing the route's prefix and the public name) would not send back.
public struct CookieRewriteConfig: Sendable, Equatable {
    /// `path`: a cookie's `Path` mapped back as locations are (`add_prefix` taken off, `strip_prefix` put back).
    public var path = false
    /// `domains`: a cookie's `Domain` equal to `from` (without case or a leading dot) becomes `to`; an empty `to` drops
    /// the attribute (a host-only cookie).
    public var domains: [RewriteRule] = []
    /// `flags` (NGINX's `proxy_cookie_flags`): attributes every cookie gets, whatever the upstream wrote.
    public var secure = false
    public var httpOnly = false
    /// `Strict`, `Lax` or `None`, replacing the upstream's `SameSite`.
    public var sameSite: String?
    public init() {}
}

/// A route's `webhook_signature`: webhooks (a SaaS calling back) are signed with an HMAC of their body under a secret
/// shared with the sender; the gateway checks it on the whole body before anything goes upstream, so forged or
/// replayed deliveries never reach the handler.
public struct WebhookSignatureConfig: Sendable, Equatable {
    /// How the sender signs: which fields carry what, over which bytes.
    public enum Scheme: String, Sendable, CaseIterable {
        /// GitHub (and Gitea, Forgejo): `X-Hub-Signature-256: sha256=<hex>` over the body.
        case github
        /// Stripe: `Stripe-Signature: t=<unix time>,v1=<hex>[,v1=...]` over `<t>.<body>`.
        case stripe
        /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:<X-Slack-Request-Timestamp>:<body>`.
        case slack
        /// Standard Webhooks (Svix, and the services built on it): `webhook-signature: v1,<base64> ...` over
        /// `<webhook-id>.<webhook-timestamp>.<body>`; a `whsec_` secret is base64.
        case standard
        /// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
        case shopify
        /// Any other sender: `header`, `algorithm`, `encoding` and `prefix` say how.
        case hmac

        /// Whether the sender signs the time of each attempt (so its retries carry new signatures, and a replay is
        /// possible only within `tolerance_seconds`).
        public var signsTime: Bool { self == .stripe || self == .slack || self == .standard }
    }
    public enum Algorithm: String, Sendable, CaseIterable { case sha1, sha256, sha512 }
    public enum Encoding: String, Sendable, CaseIterable { case hex, base64 }

    public var scheme: Scheme
    /// Several while a secret is rotated: a signature under any of them passes.
    public var secrets: [String]
    /// Schemes with a timestamp: how far it may be from the gateway's clock (replays of old deliveries fail).
    public var toleranceSeconds = 300
    /// `replay_protection`: schemes with a timestamp: a delivery whose signed content (time and body) was accepted
    /// already is refused, for as long as its time would pass the tolerance check.
    public var replayProtection = false
    /// The largest body checked (held in memory whole); larger ones are refused with 413.
    public var maxBodyBytes = 1 << 20
    /// `hmac` only: the field with the signature (lowercase), the hash, how the signature is written, and what
    /// precedes it (`sha256=`).
    public var header = ""
    public var algorithm = Algorithm.sha256
    public var encoding = Encoding.hex
    public var prefix = ""
    public init(scheme: Scheme, secrets: [String]) { (self.scheme, self.secrets) = (scheme, secrets) }
}

/// A route's `deprecation`: its API is being retired. Every answer tells clients so (RFC 9745 `Deprecation`, RFC 8594
/// `Sunset`, a `Link` to the migration guide), and after the sunset the route can answer `410 API_SUNSET` itself.
public struct DeprecationConfig: Sendable, Equatable {
    /// When the API is (or was, or will be) deprecated, in seconds since the Unix epoch.
    public var date: Int
    /// When it stops working, in seconds since the Unix epoch.
    public var sunset: Int?
    /// Where clients learn what to use instead.
    public var link: String?
    /// `refuse_after_sunset`: from the sunset on, the route answers `410 API_SUNSET` instead of forwarding.
    public var refuseAfterSunset = false
    public init(date: Int) { self.date = date }
}

/// `request_id`: which header carries the request id (upstream and back to the client), and when a client's own
/// id is kept rather than replaced by a fresh one.
public struct RequestIDConfig: Sendable, Equatable {
    /// Lowercase.
    public var header = "x-request-id"
    public enum Preserve: String, Sendable, CaseIterable {
        /// A well-formed incoming id is kept, whoever sent it.
        case always
        /// Only from peers in `trusted_proxies` (a load balancer that made the id); everyone else gets a new one.
        case trustedProxies = "trusted_proxies"
        /// Every request gets a new id.
        case never
    }
    public var preserveIncoming = Preserve.always
    public init() {}
}

public struct ListenerConfig: Sendable, Equatable {
    public var name: String
    public var address: String
    /// 0 asks the OS for a free port (useful in tests); the bound port is logged.
    public var port: Int
    public var tls: TLSConfig?
    /// When set, this plaintext listener answers every request with a 308 to https on that port.
    public var redirectHTTPSPort: Int?
    /// A plaintext listener also accepts HTTP/2 with prior knowledge (h2c), told apart by its preface.
    public var h2c: Bool
    /// Every connection starts with a PROXY protocol header (v1 or v2) from a trusted load balancer, naming the client.
    public var proxyProtocol = false
    /// SO_REUSEPORT: other processes with it on may bind the same address and port (a new version started next to
    /// the old one, which then drains; or several instances sharing a port).
    public var reusePort = false
    /// `path`: the listener is this Unix domain socket instead of an address and port (a proxy or tunnel agent on the
    /// same machine in front of the gateway); `mode` its file permissions.
    public var socketPath: String?
    public var socketMode: Int = 0o660
}

public struct TLSConfig: Sendable, Equatable {
    public enum Version: String, Sendable { case tls12 = "1.2", tls13 = "1.3" }
    public enum ClientAuth: String, Sendable { case none, optional, required }
    public struct Certificate: Sendable, Equatable {
        public var cert: String
        public var key: String
        public var serverNames: [String]
        /// `acme`: obtained and renewed from the top-level `acme` CA; `cert` and `key` are then files under `acme.storage`.
        public var acme = false
    }
    public var certificates: [Certificate]
    public var minVersion: Version
    public var alpn: [String]
    public var clientCA: String?
    /// Certificate revocation lists (PEM or DER) of the client CAs: a client certificate they list is refused.
    public var clientCRL: [String] = []
    public var clientAuth: ClientAuth
    /// The header that carries a verified client certificate's subject upstream (any client-sent one is removed).
    public var clientSubjectHeader: String
    /// `client_cert_header`: the header that carries the verified certificate itself upstream (URL-encoded PEM).
    public var clientCertHeader: String?
    /// `passthrough`: connections whose ClientHello names one of these servers are relayed, still encrypted, to an
    /// upstream that terminates TLS itself; the others are terminated here (or closed without `certificates`).
    public var passthrough: [Passthrough] = []

    public struct Passthrough: Sendable, Equatable {
        /// Exact names or `*.example.com` patterns, compared without case.
        public var serverNames: [String]
        public var upstream: String
        /// `proxy_protocol`: the upstream is told the client's address in a PROXY protocol v1 line first.
        public var proxyProtocol = false
        public init(serverNames: [String], upstream: String) { (self.serverNames, self.upstream) = (serverNames, upstream) }

        /// Whether `name` (from a ClientHello) is one of `serverNames`.
        public func matches(_ name: String) -> Bool {
            let name = name.lowercased()
            return serverNames.contains { pattern in
                let pattern = pattern.lowercased()
                if pattern.hasPrefix("*.") { return name.hasSuffix(pattern.dropFirst()) && name.count > pattern.count - 1 }
                return name == pattern
            }
        }
    }
}

/// Top-level `acme`: the certificate authority (RFC 8555: Let's Encrypt, ZeroSSL, a private step-ca) that issues the
/// listener certificates marked `"acme": true`, and where they are kept.
public struct ACMEConfig: Sendable, Equatable {
    /// The CA's directory URL.
    public var directoryURL: String
    /// The account's contact address (the CA's expiry warnings go there), without `mailto:`.
    public var email: String?
    /// The folder for the account key and the certificates (`<storage>/<first name>/cert.pem`, `key.pem`).
    public var storage: String
    /// PEM bundle the CA's HTTPS certificate must chain to (a private CA); nil: the system trust store.
    public var caFile: String?
    /// Certificates are renewed this many days before they end.
    public var renewBeforeDays = 30
    /// Where the account key, the certificates and the open challenges are shared: `files` (this instance's `storage`
    /// only) or `redis` (every instance sharing the top-level `redis`; one orders, all serve and answer challenges).
    public var store: Store = .files
    public enum Store: String, Sendable { case files, redis }
    /// `dns_update`: names are proven with DNS-01 challenges, their TXT records put in the zone by RFC 2136 updates
    /// (which wildcards need); nil: HTTP-01 challenges, answered by the listeners.
    public var dnsUpdate: DNSUpdateConfig?
    /// `external_account_binding`: the key id and MAC key a CA hands out for binding the ACME account to an account with
    /// it (RFC 8555 §7.3.4): ZeroSSL, Google Trust Services, Sectigo and most commercial CAs require one.
    public var externalAccount: ExternalAccountBinding?
    public struct ExternalAccountBinding: Sendable, Equatable {
        public var keyID: String
        /// The MAC key, decoded (the CA gives it base64url-encoded).
        public var hmacKey: [UInt8]
        public init(keyID: String, hmacKey: [UInt8]) { (self.keyID, self.hmacKey) = (keyID, hmacKey) }
    }
    public static let letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"
    public init(directoryURL: String, storage: String) { (self.directoryURL, self.storage) = (directoryURL, storage) }
}

/// `acme.dns_update`: where DNS-01 challenge records go (a primary server taking RFC 2136 updates signed with a TSIG key).
public struct DNSUpdateConfig: Sendable, Equatable {
    public struct TSIGKey: Sendable, Equatable {
        public enum Algorithm: String, Sendable, CaseIterable {
            case hmacSHA256 = "hmac-sha256", hmacSHA512 = "hmac-sha512"
        }
        /// The key's name as the server knows it (`tsig-keygen acme-key` makes `acme-key`).
        public var name: String
        public var algorithm: Algorithm
        public var secret: [UInt8]
        public init(name: String, algorithm: Algorithm, secret: [UInt8]) { (self.name, self.algorithm, self.secret) = (name, algorithm, secret) }
    }
    /// The primary server (an address or a name) and its port (53).
    public var host: String
    public var port: Int
    /// The zone the records go in; every name asked for must be in it.
    public var zone: String
    public var key: TSIGKey
    /// The TXT records' TTL.
    public var ttlSeconds = 60
    /// How long to wait after the update before asking the CA to look (for the zone's other servers to get it).
    public var propagationSeconds = 10
    public init(host: String, port: Int, zone: String, key: TSIGKey) { (self.host, self.port, self.zone, self.key) = (host, port, zone, key) }

    /// Whether `name` (a wildcard's base name for `*.`) is `zone` or below it.
    public func contains(_ name: String) -> Bool {
        let base = (name.hasPrefix("*.") ? String(name.dropFirst(2)) : name).lowercased()
        let zone = zone.lowercased()
        return base == zone || base.hasSuffix("." + zone)
    }
}

/// One certificate the `acme` CA is asked for: its names and the files it is kept in.
public struct ACMECertificate: Sendable, Equatable {
    public var names: [String]
    public var cert: String
    public var key: String
    public init(names: [String], cert: String, key: String) { (self.names, self.cert, self.key) = (names, cert, key) }
}

/// How the gateway talks TLS to an upstream's `https://` targets.
public struct UpstreamTLSConfig: Sendable, Equatable {
    public init() {}

    /// PEM CA bundle the upstream certificate must chain to; nil: the system trust store.
    public var caFile: String?
    /// SNI and the name the certificate must carry; nil: the target's host (when it is a name).
    public var serverName: String?
    public var clientCert: String?
    public var clientKey: String?
    /// Accept any upstream certificate. Never a default; logged as a warning at start.
    public var insecureSkipVerify = false

    /// The files these settings name (CA bundle, client certificate and key).
    public var files: [String] { [caFile, clientCert, clientKey].compactMap { $0 } }
}

public struct AdminConfig: Sendable {
    public var address: String
    public var port: Int
    public var token: String?
}

public struct RedisConfig: Sendable, Equatable {
    public var url: String
    public var poolSize: Int
    public var timeoutMs: Int
    /// For `rediss://` URLs: how the server is verified (and the client certificate, if Redis asks for one).
    public var tls = UpstreamTLSConfig()
    /// `sentinels`: Redis Sentinel nodes that name the current master of the group the URL's host names (high
    /// availability: after a failover the gateway connects to the new master). Empty: the URL's host is Redis itself.
    public var sentinels: [Sentinel] = []
    /// `sentinel_password`: for sentinels with `requirepass`.
    public var sentinelPassword: String?

    public struct Sentinel: Sendable, Equatable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) { (self.host, self.port) = (host, port) }
    }

    /// Whether the URL asks for TLS.
    public var usesTLS: Bool { url.hasPrefix("rediss://") }
}

/// Reloading gateway.json when it changes on disk (opt-in; SIGHUP and `POST /reload` always work).
public struct ReloadConfig: Sendable, Equatable {
    public init() {}

    public var watch = false
    /// How often the file is compared with what was last loaded.
    public var intervalMs = 2_000
}

public struct LimitsConfig: Sendable {
    public init() {}

    public var maxHeaderBytes: Int = 16_384
    public var maxBodyBytes: Int = 10_485_760
    public var headerTimeoutMs: Int = 10_000
    public var idleTimeoutMs: Int = 60_000
    /// How long a graceful stop waits for requests in flight before closing what is left.
    public var drainTimeoutMs: Int = 10_000
    /// `%2F` / `%5C` in a path: rejected with 400 (default), or kept encoded (never a segment separator).
    public enum EncodedSlashes: String, Sendable, CaseIterable { case reject, keep }
    public var encodedSlashes: EncodedSlashes = .reject
    /// Client connections open at once, over all listeners; more are closed at accept.
    public var maxConnections = 16_384
    /// Per client address (0: no per-address limit).
    public var maxConnectionsPerIP = 0
    /// Requests on one HTTP/1.1 keep-alive connection before it is closed (the last answer says `close`).
    public var maxRequestsPerConnection = 10_000
    /// Header fields in one request head (more: 431).
    public var maxHeaderCount = 100
    /// The longest pause between two reads of a request body (slow-body defence; 408).
    public var bodyTimeoutMs = 30_000
    /// Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var http2MaxConcurrentStreams = 128
    /// An upgraded connection (WebSocket) with no byte either way for this long is closed (0: never).
    public var tunnelIdleTimeoutMs = 3_600_000
    /// A client that takes no part of an answer under way for this long is disconnected (0: never), so a client that
    /// stops reading cannot hold an upstream connection (or the answer's memory) indefinitely. NGINX's `send_timeout`.
    public var sendTimeoutMs = 60_000
    /// What becomes of some client request fields before anything reads the request.
    public enum FieldPolicy: String, Sendable, CaseIterable { case drop, allow }
    /// `underscores_in_headers`: request fields whose names have an underscore are dropped (NGINX's default), or passed.
    public var underscoresInHeaders: FieldPolicy = .drop
    /// `override_headers`: client fields that make frameworks read another path or method (`X-Original-URL`,
    /// `X-HTTP-Method-Override`...) are dropped (the default), or passed.
    public var overrideHeaders: FieldPolicy = .drop
}

public struct SecurityHeadersConfig: Sendable {
    public init() {}

    /// nil switches the header off. HSTS is only ever sent on TLS listeners.
    public var hstsMaxAgeSeconds: Int? = 31_536_000
    public var hstsIncludeSubdomains = false
    public var frameOptions: String? = "DENY"
    public var contentTypeOptions: String? = "nosniff"
    public var referrerPolicy: String? = "strict-origin-when-cross-origin"
    public var contentSecurityPolicy: String?
    /// `Content-Security-Policy-Report-Only`: a policy tried out (violations reported, nothing blocked) before it is enforced.
    public var contentSecurityPolicyReportOnly: String?
    public var permissionsPolicy: String?
    /// `hsts_preload`: `; preload`, the consent browsers' HSTS preload lists ask for.
    public var hstsPreload = false
    /// Cross-origin isolation (HTML's COOP, COEP and Fetch's CORP).
    public var crossOriginOpenerPolicy: String?
    public var crossOriginEmbedderPolicy: String?
    public var crossOriginResourcePolicy: String?
    /// false: an upstream's own value for one of these headers is kept; true: the gateway's value wins.
    public var overrideUpstream = false
}

public struct RateLimitingConfig: Sendable, Equatable {
    public init() {}

    public enum Store: String, Sendable { case memory, redis }
    public enum OnStoreError: String, Sendable { case allow, deny, local }
    public var store: Store = .memory
    public var onStoreError: OnStoreError = .allow
}

public struct CacheConfig: Sendable, Equatable {
    public init() {}

    public enum Store: String, Sendable { case memory, redis }
    public var store: Store = .memory
    public var memoryBytes: Int = 268_435_456
    public var maxObjectBytes: Int = 1_048_576
    /// How long concurrent misses for one key wait for the request already fetching it, before each goes
    /// upstream on its own.
    public var lockTimeoutMs: Int = 5_000
}

public struct AuthConfig: Sendable {
    public var jwt: JWTConfig?
    public var apiKeys: [APIKeyConfig]
    /// `api_keys_file`: more keys, in a JSON file of their own read at start and on every reload.
    public var apiKeysFile: String?
    /// `api_key_header`: the request field API keys come in (lowercased), beside `Authorization: ApiKey`.
    public var apiKeyHeader = "x-api-key"
    /// `api_key_query_param`: a query parameter keys may also come in (clients that cannot set a header), removed
    /// before the request goes upstream.
    public var apiKeyQueryParam: String?
    /// `mtls_clients`: consumers known by the client certificate a TLS listener verified.
    public var mtlsClients: [MTLSClientConfig] = []
    /// `basic`: HTTP Basic users (RFC 7617) with crypt(3) password hashes.
    public var basic: BasicAuthConfig?
    /// `introspection`: opaque bearer tokens checked at the authorization server (RFC 7662).
    public var introspection: IntrospectionConfig?
    /// `upstream_token`: a JWT the gateway signs for each authenticated request, so upstreams can verify who
    /// the caller is instead of trusting headers.
    public var upstreamToken: UpstreamTokenConfig?
    /// `oidc`: people log in at an OpenID Connect provider (authorization code flow with PKCE) and carry a session
    /// cookie the gateway seals.
    public var oidc: OIDCConfig?

    /// The consumer ids of API keys and client certificates, which no Basic user name may repeat.
    public var keyAndCertificateIDs: Set<String> { Set(apiKeys.map(\.id) + mtlsClients.map(\.id)) }
}

/// `auth.upstream_token`: the identity the gateway established, as a short-lived JWT it signs and sends upstream
/// (Kong Enterprise's jwt-signer): `{"iss", "sub", "aud", "iat", "exp", "scope", "auth_method"}` plus the claims
/// routes ask about.
public struct UpstreamTokenConfig: Sendable, Equatable {
    /// The request field it goes in (lowercased): `authorization` (as `Bearer <token>`, replacing the client's)
    /// or an `x-auth-*` name (client-sent fields of that name never pass).
    public var header = "x-auth-token"
    public var issuer: String
    public var audience: String?
    public var ttlSeconds = 300
    /// `HS256` (with `secret`), `ES256` or `RS256` (with `private_key_file`, PEM).
    public var alg: String
    public var kid: String?
    public var secret: String?
    public var privateKeyFile: String?

    public init(issuer: String, alg: String) {
        self.issuer = issuer
        self.alg = alg
    }
}

/// `auth.oidc`: browser login at an OpenID Connect provider (OIDC Core 1.0 authorization code flow, PKCE per
/// RFC 7636), what oauth2-proxy adds beside NGINX or Traefik and Kong sells as an enterprise plugin. The session is
/// a cookie the gateway encrypts and authenticates (AES-GCM), so any gateway instance with the same secret can
/// read it and nothing is stored server-side.
public struct OIDCConfig: Sendable, Equatable {
    /// The provider's issuer identifier: the ID token's `iss` must equal it.
    public var issuer: String
    /// Where browsers are sent to log in (the discovery document's `authorization_endpoint`): an absolute URL.
    public var authorizationURL: String
    /// The token endpoint, on one of the gateway's upstreams (its TLS settings, pool and breakers apply).
    public var upstream: String
    public var tokenPath: String
    /// The provider's signing keys (the discovery document's `jwks_uri`), refreshed as `auth.jwt.jwks_url` is.
    public var jwksURL: String
    public var clientID: String
    public var clientSecret: String
    /// At least 32 bytes: the session and login cookies' encryption key is derived from it.
    public var cookieSecret: String
    public var scopes: [String] = ["openid"]
    /// The path the provider sends the browser back to (registered there as `https://HOST` + this).
    public var redirectPath = "/oauth2/callback"
    /// Ends the session (clears the cookie), then redirects to `logoutRedirect`.
    public var logoutPath = "/oauth2/logout"
    /// A path on the same site, or an absolute URL such as the provider's end-session endpoint.
    public var logoutRedirect = "/"
    public var cookieName = "gateway_session"
    /// How long a session lasts after login (independent of the ID token's own lifetime).
    public var sessionSeconds = OIDCConfig.defaultSessionSeconds
    public static let defaultSessionSeconds = 28_800
    /// `idle_seconds`: a session also ends after this long without a request (nil: only `sessionSeconds` ends it).
    public var idleSeconds: Int?
    /// How long the token exchange may take.
    public var timeoutMs = 5_000
    public var jwksRefreshSeconds = 300
    public var jwksMinRefetchSeconds = 10
    /// ID token claim -> request header (lowercased) sent upstream.
    public var forwardClaims: [ForwardedClaim] = []
    /// `email_domains` (lowercased): when set, only people whose verified `email` is in one of them log in.
    public var emailDomains: [String] = []
    public struct ForwardedClaim: Sendable, Equatable {
        public var claim: String
        public var header: String
        public init(claim: String, header: String) { (self.claim, self.header) = (claim, header) }
    }

    /// The paths the gateway answers itself on routes that take sessions.
    public enum LoginPath: Sendable { case callback, logout }

    public func loginPath(_ path: some StringProtocol) -> LoginPath? {
        if path == redirectPath { return .callback }
        if path == logoutPath { return .logout }
        return nil
    }

    public init(
        issuer: String, authorizationURL: String, upstream: String, tokenPath: String, jwksURL: String, clientID: String, clientSecret: String,
        cookieSecret: String
    ) {
        (self.issuer, self.authorizationURL, self.upstream, self.tokenPath, self.jwksURL) = (issuer, authorizationURL, upstream, tokenPath, jwksURL)
        (self.clientID, self.clientSecret, self.cookieSecret) = (clientID, clientSecret, cookieSecret)
    }
}

/// `auth.introspection`: opaque (non-JWT) access tokens asked about at the authorization server's OAuth 2.0
/// introspection endpoint (RFC 7662), on one of the gateway's upstreams.
public struct IntrospectionConfig: Sendable, Equatable {
    public var upstream: String
    /// The endpoint's path on that upstream (`/oauth2/introspect`).
    public var path: String
    /// The gateway's own client credentials at the authorization server (HTTP Basic, RFC 6749 §2.3.1).
    public var clientID: String
    public var clientSecret: String
    public var timeoutMs = 1_000
    /// How long an answer is reused (an active one never past the token's `exp`): also how long a revoked token
    /// may keep working.
    public var cacheSeconds = 30
    public var cacheSize = 10_000
    /// When set, the answer's `iss` must equal it.
    public var issuer: String?
    /// When set, the answer's `aud` must name one of them.
    public var audiences: [String] = []
    public init(upstream: String, path: String, clientID: String, clientSecret: String) {
        (self.upstream, self.path, self.clientID, self.clientSecret) = (upstream, path, clientID, clientSecret)
    }
}

/// `auth.basic`: users and password hashes, inline or from an htpasswd file.
public struct BasicAuthConfig: Sendable {
    /// The crypt(3) methods accepted: bcrypt, yescrypt, scrypt and SHA-512-crypt, slow and salted. MD5-crypt
    /// (`$1$`, Apache's `$apr1$`), DES and plain digests fall to a GPU in hours; SHA-256-crypt (`$5$`) is legacy
    /// to libxcrypt.
    public static let acceptedHashPrefixes = ["$2y$", "$2b$", "$2a$", "$y$", "$7$", "$6$"]

    /// Why `hash` is not a complete hash of an accepted method (its shape only; libxcrypt checks the rest).
    public static func hashProblem(_ hash: String) -> String? {
        guard acceptedHashPrefixes.contains(where: { hash.hasPrefix($0) }) else {
            return "expected a bcrypt ($2y$), yescrypt ($y$), scrypt ($7$) or SHA-512-crypt ($6$) hash; MD5-crypt ($1$, $apr1$), SHA-256-crypt ($5$), DES and plain digests are refused (make one with `gateway hash-password`)"
        }
        // $id$[params$]salt$hash: a salt alone (a crypt "setting") or a cut-off hash would never match anything.
        let fields = hash.split(separator: "$", omittingEmptySubsequences: false)
        let complete = hash.hasPrefix("$2") ? hash.utf8.count == 60 : fields.count >= 4 && !(fields.last?.isEmpty ?? true)
        return complete ? nil : "is not a complete hash (cut short, or only a salt)"
    }

    public struct User: Sendable, Equatable {
        public var username: String
        public var passwordHash: String
        public var scopes: [String]
        public init(username: String, passwordHash: String, scopes: [String]) {
            (self.username, self.passwordHash, self.scopes) = (username, passwordHash, scopes)
        }
    }

    public var users: [User] = []
    /// `htpasswd_file`: `user:hash` lines (Apache's htpasswd -B, or mkpasswd), read at start and on reload.
    public var htpasswdFile: String?
    /// The realm the `WWW-Authenticate: Basic` challenge names (browsers show it in their login prompt).
    public var realm = "gateway"
    /// Credentials that verified, remembered (by their SHA-256) so the slow hash runs once per client.
    public var cacheSize = 1024
    /// Password checks waiting for or running on the thread pool at once; beyond it 503 AUTH_UNAVAILABLE.
    public var maxPendingChecks = 64
    /// `max_failures`: failed checks a client address may make in a window before its Basic attempts are
    /// refused (429) until the oldest leaves the window; nil (`null`) counts none.
    public var maxFailures: FailureLimit? = FailureLimit(limit: 20, windowSeconds: 300)

    public struct FailureLimit: Sendable, Equatable {
        public var limit: Int
        public var windowSeconds: Int
        public init(limit: Int, windowSeconds: Int) { (self.limit, self.windowSeconds) = (limit, windowSeconds) }
    }
    public init() {}
}

/// An `auth.mtls_clients` entry: a client certificate's subject (all of it, in any attribute order) or just its
/// common name, the consumer id it stands for, and that consumer's scopes.
public struct MTLSClientConfig: Sendable, Equatable {
    public var id: String
    /// `CN=billing,O=Example` (nil when `common_name` or `uri` is given).
    public var subject: String?
    public var commonName: String?
    /// A URI subject alternative name the certificate carries: a SPIFFE ID (`spiffe://example.org/ns/billing/sa/api`).
    public var uri: String?
    public var scopes: [String]
    public init(id: String, subject: String?, commonName: String?, scopes: [String]) {
        (self.id, self.subject, self.commonName, self.scopes) = (id, subject, commonName, scopes)
    }
}

public struct JWTConfig: Sendable {
    public struct Key: Sendable {
        public var kid: String?
        public var alg: String
        public var secret: String?
        public var publicKey: String?
        public var publicKeyFile: String?
    }
    public var issuer: String?
    public var audiences: [String]
    public var leewaySeconds: Int
    public var keys: [Key]
    public var jwksFile: String?
    public var jwksURL: String?
    public var cookie: String?
    /// `query_param`: a JWT may also come in this query parameter (browsers cannot set headers on WebSocket and
    /// EventSource requests); it is removed from the target before the request goes upstream.
    public var queryParam: String?
    /// How often a `jwks_url` is fetched again (unless its Cache-Control max-age says otherwise).
    public var jwksRefreshSeconds: Int = 300
    /// The least time between two fetches caused by tokens with unknown kids.
    public var jwksMinRefetchSeconds: Int = 10
    /// Claims sent upstream as headers: claim name -> header name.
    public var forwardClaims: [(claim: String, header: String)] = []
    /// Verified tokens remembered (per process) so a client's next request skips the signature check; 0 turns
    /// the cache off.
    public var cacheSize: Int = 4096

    public static let algorithms = [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ]
}

public struct APIKeyConfig: Sendable {
    /// The consumer the key belongs to; several keys may share it (a rotation: the new key added, the old one
    /// given an `expires_at`).
    public var id: String
    /// Lowercase hex SHA-256 of the key; the key itself is never stored.
    public var sha256: String
    public var scopes: [String]
    /// `expires_at` (Unix seconds): the key is refused from then on.
    public var expiresAt: Int?

    public init(id: String, sha256: String, scopes: [String], expiresAt: Int? = nil) {
        self.id = id
        self.sha256 = sha256
        self.scopes = scopes
        self.expiresAt = expiresAt
    }
}

public struct UpstreamConfig: Sendable, Equatable {
    public enum Balance: String, Sendable, CaseIterable {
        case roundRobin = "round_robin", leastRequest = "least_request", random, consistentHash = "consistent_hash"
    }
    public var name: String
    public var targets: [UpstreamTarget]
    public var balance: Balance
    public var connectTimeoutMs: Int
    public var readTimeoutMs: Int
    /// nil: no overall deadline (long downloads are bounded by the read timeout between reads).
    public var totalTimeoutMs: Int?
    public var retries: RetryConfig?
    public var circuitBreaker: CircuitBreakerConfig?
    public var healthCheck: HealthCheckConfig?
    public var pool: PoolConfig
    /// Used for `https://` targets.
    public var tls: UpstreamTLSConfig
    /// What `consistent_hash` hashes (never `consumer`: balancing happens before anything reads credentials).
    public var hashOn: RequestKey
    /// Requests in flight to this upstream, process-wide; nil is unlimited. Beyond it: 503.
    public var maxRequests: Int?
    /// Open connections to this upstream, spread evenly over the event loops; nil is unlimited.
    public var maxConnections: Int?
    /// Requests waiting for a connection when `max_connections` is reached (per event loop, spread like it).
    public var maxPendingRequests: Int
    /// `dns_refresh_ms`: host-name targets are resolved every this often, and each address they resolve to
    /// becomes a target of its own (balanced, health-checked, with its own breaker); nil: a name is resolved
    /// when a connection opens, and its first reachable address is used.
    public var dnsRefreshMs: Int?
    /// `oauth2`: the gateway calls this upstream with an access token it gets itself (OAuth 2.0 client credentials).
    public var oauth2: UpstreamOAuth2Config?
    /// `aws_sigv4`: every request to this upstream is signed with AWS Signature Version 4 (S3, Lambda function URLs,
    /// API Gateway with IAM auth).
    public var awsSigV4: UpstreamAWSSigV4Config?
    /// `dns_server`: the DNS server this upstream's names are looked up at (Consul's on `127.0.0.1:8600`), instead of
    /// the system's resolver.
    public var dnsServer: DNSServerAddress?
    /// `slow_start_ms`: a target that joins the rotation (added, healthy again, its breaker closed, undrained)
    /// ramps from a tenth of its weight to all of it over this long; nil: full weight at once.
    public var slowStartMs: Int?
    /// `sticky_cookie`: session affinity by a cookie the gateway sets, naming the target that answered.
    public var stickyCookie: StickyCookie?

    public struct StickyCookie: Sendable, Equatable {
        public var name: String
        /// nil: a session cookie (gone when the browser closes).
        public var maxAgeSeconds: Int?
        /// Adds `Secure` (for deployments reached over TLS only).
        public var secure = false
        public init(name: String) { self.name = name }
    }
}

extension UpstreamConfig {
    /// Targets named by host (not by IP literal or service name) whose addresses this upstream discovers.
    public var discoveredHosts: [String] {
        guard dnsRefreshMs != nil else { return [] }
        return targets.filter { $0.address == nil && $0.hasHostName && !$0.isServiceName }.map(\.host)
    }

    /// Targets named by an SRV name (`_http._tcp.orders.service.consul`) whose instances this upstream discovers.
    public var discoveredServices: [String] {
        guard dnsRefreshMs != nil else { return [] }
        return targets.filter { $0.address == nil && $0.isServiceName }.map(\.host)
    }

    /// This upstream with every discovered host-name target replaced by one target per address `addresses` knows for
    /// it, and every service name by one target per address of each of its instances (sorted, so the same answer gives
    /// the same config). The instances of the lowest SRV priority take requests; the others are backups (RFC 2782: used
    /// only while no instance of a lower priority can be). A name with nothing known stays as it is (a host name is
    /// then resolved when a connection opens).
    public func expandingTargets(
        addresses: (String) -> [String]?, services: (String) -> [DiscoveredInstance]? = { _ in nil }
    ) -> UpstreamConfig {
        guard dnsRefreshMs != nil else { return self }
        var expanded = self
        expanded.targets = targets.flatMap { target -> [UpstreamTarget] in
            guard target.address == nil, target.hasHostName else { return [target] }
            if target.isServiceName {
                guard let instances = services(target.host), let first = instances.map(\.priority).min() else { return [target] }
                return instances.sorted().map { instance in
                    var one = target
                    one.host = instance.host
                    one.port = instance.port
                    one.address = instance.address
                    one.weight = max(1, instance.weight) * target.weight
                    one.backup = target.backup || instance.priority > first
                    return one
                }
            }
            guard let found = addresses(target.host), !found.isEmpty else { return [target] }
            return found.sorted().map { address in
                var one = target
                one.address = address
                return one
            }
        }
        return expanded
    }
}

/// `upstreams.<name>.oauth2`: an OAuth 2.0 client-credentials grant (RFC 6749 §4.4) at `token_url`; the token goes
/// to the upstream as `Authorization: Bearer`, renewed before it ends.
public struct UpstreamOAuth2Config: Sendable, Equatable {
    public enum ClientAuth: String, Sendable { case basic, body }
    public var tokenURL: String
    public var clientID: String
    public var clientSecret: String
    public var scopes: [String] = []
    public var audience: String?
    /// How the client authenticates at the token endpoint: HTTP Basic (`client_secret_basic`) or form fields (`client_secret_post`).
    public var clientAuth = ClientAuth.basic
    /// PEM bundle the token endpoint's certificate must chain to (a private authorization server).
    public var caFile: String?
    public init(tokenURL: String, clientID: String, clientSecret: String) {
        (self.tokenURL, self.clientID, self.clientSecret) = (tokenURL, clientID, clientSecret)
    }
}

/// `upstreams.<name>.aws_sigv4`: `{"region": "eu-west-1", "service": "s3", "access_key_id": "${AWS_ACCESS_KEY_ID}",
/// "secret_access_key": "${AWS_SECRET_ACCESS_KEY}"}`, with `session_token` for temporary credentials.
public struct UpstreamAWSSigV4Config: Sendable, Equatable {
    public var region: String
    public var service: String
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public init(region: String, service: String, accessKeyID: String, secretAccessKey: String) {
        (self.region, self.service, self.accessKeyID, self.secretAccessKey) = (region, service, accessKeyID, secretAccessKey)
    }
    /// S3 takes bodies it cannot check the hash of (`UNSIGNED-PAYLOAD`); other services need the body whole first.
    public var signsStreamedBodies: Bool { service == "s3" }
}

/// `dns_server`: an IPv4 address and port (`"127.0.0.1:8600"`).
public struct DNSServerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) { (self.host, self.port) = (host, port) }
    public var description: String { "\(host):\(port)" }
}

/// One address of one instance of a discovered service (an SRV record's target, resolved).
public struct DiscoveredInstance: Sendable, Hashable, Comparable {
    public var priority: Int
    public var weight: Int
    /// The SRV record's target: the name Host, SNI and certificate checks use.
    public var host: String
    public var port: Int
    public var address: String
    public init(priority: Int, weight: Int, host: String, port: Int, address: String) {
        (self.priority, self.weight, self.host, self.port, self.address) = (priority, weight, host, port, address)
    }
    public static func < (a: Self, b: Self) -> Bool { (a.priority, a.host, a.port, a.address) < (b.priority, b.host, b.port, b.address) }
}

/// A value of the request that keeps requests alike together: an upstream's `hash_on` (which target) and a
/// split's `sticky_on` (which version). Written `ip`, `consumer`, `header:NAME` or `cookie:NAME`.
public enum RequestKey: Sendable, Hashable {
    /// The client address, after `trusted_proxies`.
    case ip
    /// The authenticated JWT `sub` or API-key id; the client address without credentials.
    case consumer
    /// A header's value (name lowercased).
    case header(String)
    case cookie(String)

    public var cookieName: String? {
        if case .cookie(let name) = self { return name }
        return nil
    }
}

public struct UpstreamTarget: Sendable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable { case http, https }
    /// The HTTP version spoken to the target, named like its ALPN identifier.
    public enum HTTPProtocol: String, Sendable, CaseIterable {
        case http1 = "http/1.1"
        /// HTTP/2: over TLS with ALPN "h2" for `https://` targets, with prior knowledge (h2c) for `http://` ones.
        case h2
    }
    public var scheme: Scheme
    /// Host name or IP literal (IPv6 without brackets).
    public var host: String
    public var port: Int
    public var weight: Int
    public var httpProtocol: HTTPProtocol = .http1
    /// `backup`: takes requests only while no other target can (NGINX's `backup`): a standby site, a
    /// degraded-mode service.
    public var backup = false
    /// The IP address DNS discovery found for `host` (`dns_refresh_ms`): connections go there, while Host, SNI
    /// and certificate checks keep using `host`. nil: connect to `host`.
    public var address: String?
    /// `unix:///run/app.sock`: connections go to this Unix domain socket (an app server on the same machine: Gunicorn,
    /// Puma, uvicorn), and `Host` names `localhost` where the target's name would go.
    public var socketPath: String?

    public init(scheme: Scheme, host: String, port: Int, weight: Int, httpProtocol: HTTPProtocol = .http1) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.weight = weight
        self.httpProtocol = httpProtocol
    }

    /// `host:port` as it goes in a Host header (IPv6 in brackets; `localhost` for a Unix socket).
    public var authority: String {
        if socketPath != nil { return host }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
    /// A host name DNS discovery may look up (not an IP literal, not a Unix socket).
    public var hasHostName: Bool { socketPath == nil && !Self.isIPLiteral(host) }

    /// The host is an SRV name, `_service._proto.name` (`_http._tcp.orders.service.consul`): the service's instances
    /// (hosts, ports, weights, priorities) are looked up in its SRV records (RFC 2782) with `dns_refresh_ms`.
    public var isServiceName: Bool {
        let labels = host.split(separator: ".", maxSplits: 2)
        return hasHostName && labels.count == 3 && labels[0].count > 1 && labels[0].hasPrefix("_") && labels[1].hasPrefix("_")
    }
    /// Where connections go: `address` when discovery found one, else `host`.
    public var connectHost: String { address ?? host }
    /// The target in logs, metrics and the admin API: `authority`, or `address:port` for a discovered address
    /// (several share one host name).
    public var label: String {
        if let socketPath { return "unix:" + socketPath }
        guard let address else { return authority }
        return address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
    public var description: String { socketPath.map { "unix://" + $0 } ?? "\(scheme.rawValue)://\(label)" }

    /// An IPv4 or IPv6 literal (nothing to resolve).
    public static func isIPLiteral(_ host: String) -> Bool {
        host.contains(":") || (host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) })
    }
}

public struct RetryConfig: Sendable, Equatable {
    public var attempts: Int
    public var backoffMs: Int
    public var onStatus: [Int]
    public var budgetRatio: Double
    /// Each try's deadline for the response head; nil: only read_timeout_ms applies.
    public var perTryTimeoutMs: Int?
    /// Ceiling of the exponential backoff.
    public var maxBackoffMs: Int
    /// `replay_body_bytes`: request bodies up to this size are kept while the request is under way, so a try
    /// that failed after sending its body can be made again; 0 keeps none (a body once sent ends the retries).
    public var replayBodyBytes = 65_536
    /// `idempotency_key`: a request with an `Idempotency-Key` field is retried like an idempotent one (the
    /// upstream promises to act on a key once), even after it was sent whole.
    public var idempotencyKey = false
    /// `hedge_after_ms`: a GET, HEAD or OPTIONS without a response head after this long is sent to a second
    /// target as well, and the first answer wins (request hedging); nil: never.
    public var hedgeAfterMs: Int?
}

public struct CircuitBreakerConfig: Sendable, Equatable {
    public var failureThreshold: Int
    public var openMs: Int
    public var halfOpenRequests: Int
    /// Opens when more than this share of requests in the window failed (with at least `minimumRequests`).
    public var failureRatio: Double?
    public var minimumRequests: Int
    public var windowMs: Int
    /// Repeated trips double the open period up to this.
    public var maxOpenMs: Int
    /// Upstream statuses that count as failures (connect errors, resets and timeouts always do).
    public var failureStatuses: [Int]
    /// At most this share of the targets is shut out by open breakers; beyond it all are used (panic mode).
    public var maxEjectionPercent: Int
}

public struct HealthCheckConfig: Sendable, Equatable {
    public var path: String
    public var intervalMs: Int
    public var timeoutMs: Int
    public var healthyThreshold: Int
    public var unhealthyThreshold: Int
    /// `host`: the Host (`:authority`) of the check, for backends that route by it; nil: the target's.
    public var host: String?
    /// `headers`: extra request fields of the check (a token the health endpoint wants, say).
    public var headers: [(name: String, value: String)] = []
    /// `expected_statuses`: the statuses that pass (each an exact code or a class, 2 for 2xx); default 2xx and 3xx.
    public var expectedStatuses: [Int] = [2, 3]
    /// `grpc_service`: check with the gRPC health protocol (`grpc.health.v1.Health/Check` for this service; ""
    /// for the server as a whole) instead of `GET path`; passes when the answer is SERVING.
    public var grpcService: String?

    /// Whether a check answered `status` passes.
    public func passes(_ status: Int) -> Bool { StatusRules.matches(expectedStatuses, status) }

    public static func == (lhs: HealthCheckConfig, rhs: HealthCheckConfig) -> Bool {
        lhs.path == rhs.path && lhs.intervalMs == rhs.intervalMs && lhs.timeoutMs == rhs.timeoutMs
            && lhs.healthyThreshold == rhs.healthyThreshold && lhs.unhealthyThreshold == rhs.unhealthyThreshold && lhs.host == rhs.host
            && lhs.headers.map { $0.name + ":" + $0.value } == rhs.headers.map { $0.name + ":" + $0.value }
            && lhs.expectedStatuses == rhs.expectedStatuses && lhs.grpcService == rhs.grpcService
    }
}

public struct PoolConfig: Sendable, Equatable {
    public init() {}

    /// Idle keep-alive connections kept per target on each worker. Generous: a connection closed
    /// because the pool was full must be reopened at the next burst, which costs far more than keeping it.
    public var maxIdlePerTarget: Int = 512
    /// Idle connections older than this are closed; keep it below the upstream's own keep-alive timeout.
    public var idleTimeoutMs: Int = 30_000
    /// `max_requests_per_connection`: a connection is closed after serving this many requests (nil: never), so
    /// long-lived connections do not pin load to the instances they first reached.
    public var maxRequestsPerConnection: Int?
    /// `max_connection_age_ms`: a connection is not reused once it has been open this long (nil: never).
    public var maxConnectionAgeMs: Int?
}

public struct RouteConfig: Sendable {
    public var name: String
    public var match: MatchConfig
    /// The upstream the route forwards to; empty when it answers itself (`answer`) or splits (`split`).
    public var upstream: String
    /// `split`: the route's traffic shared between several upstreams by weight, instead of `upstream`.
    public var split: RouteSplitConfig?
    /// `mirror`: a copy of (a share of) the forwarded requests goes to another upstream; its answers are dropped.
    public var mirror: RouteMirrorConfig?
    /// This route's gzip settings, instead of the top-level `compression`.
    public var compression: CompressionConfig?
    /// `access_log`: which of this route's requests get an access-log line (when `logging.access_log` is on).
    public var accessLog = AccessLog.all
    /// `grpc_web`: gRPC-Web requests from browsers are translated to gRPC for the upstream, and back.
    public var grpcWeb = false
    /// `request_buffering`: the whole request body is received before the upstream is called.
    public var requestBuffering = false
    /// `response_buffering`: how many bytes of the upstream's answer the gateway holds for a client that reads slower
    /// than the upstream sends (nil: none beyond the socket's, the upstream waits for the client).
    public var responseBufferBytes: Int?
    /// What `"response_buffering": true` holds.
    public static let defaultResponseBufferBytes = 8 << 20
    /// `limit_rate`: the most bytes per second an answer's body reaches the client with, after its first `afterBytes`.
    public var limitRate: (bytesPerSecond: Int, afterBytes: Int)?

    public enum AccessLog: Sendable, Equatable {
        /// Every request (`true`, the default).
        case all
        /// Only failures (`"errors"`): a status of 400 or more, or a response cut short.
        case errors
        /// None (`false`): health checks, polling endpoints.
        case off
        /// Every failure and this share (0-1) of the rest (`{"sample_percent": 5}`): busy routes.
        case sampled(Double)
    }
    public var stripPrefix: String?
    /// true: the client's Host goes upstream unchanged; false: the target's host:port is sent.
    public var preserveHost: Bool
    /// `add_prefix`: put before the path sent upstream (after `strip_prefix`), without a trailing slash.
    public var addPrefix: String?
    /// `rewrite_path`: the upstream path built from `match.path_template`'s variables (the query is kept).
    public var rewritePath: PathRewrite?
    public var auth: RouteAuthConfig?
    /// `concurrency_limit`: requests of one client (or consumer, header value, the whole route) in flight at once.
    public var concurrencyLimit: ConcurrencyLimitConfig?
    /// `adaptive_concurrency`: a limit on the route's requests in flight that follows its upstream's latency.
    public var adaptiveConcurrency: AdaptiveConcurrency.Settings?
    /// `external_auth`: the name of the top-level `external_auth` service that must allow each request.
    public var externalAuth: String?
    public var rateLimits: [RateLimitConfig]
    /// `rate_limit_headers`: false keeps the limits' state (`X-RateLimit-*`, `RateLimit`, `RateLimit-Policy`) off
    /// the route's answers (Kong's hide_client_headers); a refusal still says when to retry.
    public var rateLimitHeaders = true
    public var cache: RouteCacheConfig?
    public var cors: CORSConfig?
    /// Client addresses (after `trusted_proxies`) refused on this route, whatever `allow_ips` says.
    public var denyIPs: [CIDR] = []
    /// When not empty, only these client addresses may use the route.
    public var allowIPs: [CIDR] = []
    /// The route's `deny_countries` / `allow_countries` (needs `geoip`).
    public var countries = CountryRule()
    /// The route's `deny_asns` / `allow_asns` (needs `geoip.asn_database`).
    public var asns = ASNRule()
    /// This route's largest request body, instead of `limits.max_body_bytes`.
    public var maxBodyBytes: Int?
    /// This route's `tunnel_idle_timeout_ms`, instead of the one in `limits`.
    public var tunnelIdleTimeoutMs: Int?
    /// `fault`: delays and errors injected into a share of the route's requests (resilience testing).
    public var fault: FaultConfig?
    /// `intercept_errors`: this route's own, instead of the top-level one (`enabled: false` turns it off).
    public var interceptErrors: InterceptErrorsConfig?
    /// `request_validation`: the JSON Schemas request bodies (received whole before forwarding) and query parameters must match.
    public var requestValidation: RequestValidationConfig?
    /// `location_rewrite`: how the upstream's `Location` fields are mapped back to what the client asked for (on by
    /// default: redirects to a target's own address become paths on the gateway).
    public var locationRewrite = LocationRewriteConfig()
    /// `cookie_rewrite`: the `Path` and `Domain` of the upstream's cookies as the client's browser must see them.
    public var cookieRewrite: CookieRewriteConfig?
    /// `early_hints`: which `103 Early Hints` responses the route's clients get (by default the upstream's, to HTTP/2 clients).
    public var earlyHints = EarlyHintsConfig()
    /// `webhook_signature`: request bodies must carry a valid HMAC signature (webhooks from GitHub, Stripe...).
    public var webhookSignature: WebhookSignatureConfig?
    /// `deprecation`: the route's API is being retired (headers on every answer; 410 after the sunset if asked).
    public var deprecation: DeprecationConfig?
    /// `host_rewrite`: the Host the upstream gets (`host[:port]`), instead of the client's or the target's.
    public var hostRewrite: String?
    /// `request_query`: query parameters removed from and added to the target the upstream gets.
    public var requestQuery: QueryEdits?
    /// This route's upstream timeouts, instead of its upstream's `read_timeout_ms` / `total_timeout_ms`.
    public var readTimeoutMs: Int?
    public var totalTimeoutMs: Int?
    /// `retries.attempts`: this route's retries after the first try, instead of its upstream's (0: none). The
    /// upstream's other retry settings (statuses, backoff, budget) still apply.
    public var retryAttempts: Int?
    /// `retries.hedge_after_ms`: this route's hedging delay instead of its upstream's (0: no hedging).
    public var hedgeAfterMs: Int?

    /// The hedging delay of this route's calls to `upstream`: its own, else the upstream's; nil when none (or 0).
    public func hedgeDelayMs(to upstream: UpstreamConfig?) -> Int? {
        (hedgeAfterMs ?? upstream?.retries?.hedgeAfterMs).flatMap { $0 > 0 ? $0 : nil }
    }
    /// `csrf`: cross-origin protection for the route's state-changing requests; nil: none.
    public var csrf: CSRFConfig?
    /// The route answers itself instead of forwarding (after its address, CORS, auth and rate-limit checks).
    public var answer: RouteAnswer?
    /// Changes to the request the upstream gets.
    public var requestHeaders = HeaderEdits()
    /// Changes to every response of the route (the upstream's, cached ones and the gateway's own errors).
    public var responseHeaders = HeaderEdits()
}

extension RouteConfig {
    /// The cross-site request forgery protection the route gets: its own `csrf`, else the top-level one, else on
    /// (enforcing) when it takes credentials browsers send by themselves; nil when off.
    public func effectiveCSRF(global: CSRFConfig?) -> CSRFConfig? {
        let ambient = auth?.require.contains(where: \.isAmbient) == true
        guard let chosen = csrf ?? global ?? (ambient ? CSRFConfig() : nil), chosen.enabled else { return nil }
        return chosen
    }

    /// Every upstream the route may forward to: its `upstream`, or its split's members in order.
    public var upstreamNames: [String] {
        if let split { return split.members.map(\.upstream) }
        return upstream.isEmpty ? [] : [upstream]
    }
}

/// A route's `split`: upstreams sharing its traffic by weight (a canary next to the stable version).
public struct RouteSplitConfig: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var upstream: String
        public var weight: Int
        public init(upstream: String, weight: Int) { (self.upstream, self.weight) = (upstream, weight) }
    }
    public var members: [Member]
    /// What keeps a client on one member; nil: each request is drawn on its own.
    public var stickyOn: RequestKey?
    /// With `sticky_on: "cookie:NAME"`: a client without the cookie is given one (a random key), so it stays
    /// on the member drawn for it.
    public var setCookie = false
    public init(members: [Member], stickyOn: RequestKey? = nil, setCookie: Bool = false) {
        (self.members, self.stickyOn, self.setCookie) = (members, stickyOn, setCookie)
    }
}

/// `compression` (top level, or a route's own): gzip for responses of the listed types, when the client accepts it.
public struct CompressionConfig: Sendable, Equatable {
    public init() {}

    public var enabled = true
    /// zlib's level: 1 fastest, 9 smallest.
    public var level = 5
    /// Responses whose Content-Length is below this are sent as they are (gzip's overhead is not worth it).
    public var minBytes = 1024
    /// `type/subtype`, `type/*` or `+suffix` entries (see `ContentCoding.isCompressible`).
    public var contentTypes = ContentCoding.defaultTypes
    /// `encodings`: the codings offered, the preferred first (a client's q-values decide before this order).
    public var encodings: [ContentCoding.Coding] = [.br, .gzip]
    /// `brotli_level`: Brotli's quality, 0 fastest to 11 smallest.
    public var brotliLevel = 4
    /// `zstd_level`: Zstandard's level, 1 fastest to 19 smallest.
    public var zstdLevel = 3
}

/// A route's `mirror`: shadow traffic for a new version, compared in its own logs and metrics.
public struct RouteMirrorConfig: Sendable, Equatable {
    public var upstream: String
    /// The share of forwarded requests copied, 0-100.
    public var percent: Double
    public init(upstream: String, percent: Double = 100) { (self.upstream, self.percent) = (upstream, percent) }
}

/// What a route without an upstream answers.
public enum RouteAnswer: Sendable, Equatable {
    /// `redirect`: `location`, with the request's path and query appended when `appendPath` (after `strip_prefix`).
    case redirect(location: String, status: Int, appendPath: Bool)
    /// `respond`: a gateway error in the usual JSON shape (a retired API version, a maintenance window).
    case error(status: Int, code: String, message: String, retryAfterSeconds: Int?)
    /// `direct_response` (Envoy's name, NGINX's `return 200 "..."`): a fixed answer of the operator's making
    /// (`robots.txt`, `security.txt`, an edge health check, a mock); header names lowercased.
    case content(status: Int, contentType: String, body: String, headers: [(name: String, value: String)])
    /// `direct_response: {"jwks": "upstream_token"}`: the public key of `auth.upstream_token` as a JWK Set, for
    /// upstreams that fetch the keys they verify with (built when the key is loaded).
    case upstreamTokenKeys

    public static func == (lhs: RouteAnswer, rhs: RouteAnswer) -> Bool {
        switch (lhs, rhs) {
        case let (.redirect(a, b, c), .redirect(d, e, f)): return a == d && b == e && c == f
        case let (.error(a, b, c, d), .error(e, f, g, h)): return a == e && b == f && c == g && d == h
        case let (.content(a, b, c, d), .content(e, f, g, h)):
            return a == e && b == f && c == g && d.map { $0.name + ":" + $0.value } == h.map { $0.name + ":" + $0.value }
        case (.upstreamTokenKeys, .upstreamTokenKeys): return true
        default: return false
        }
    }
}

/// A route's `request_headers` / `response_headers`: fields removed, then fields set (replacing any of that name).
public struct HeaderEdits: Sendable {
    public init() {}

    /// Lowercase names.
    public var remove: [String] = []
    /// Lowercase names, values as written.
    public var set: [(name: String, value: String)] = []
    /// `set_from`: lowercase names, each set to a value of the request (the client's address, the consumer...),
    /// or removed when the request has none, so a client can never supply it.
    public var setFrom: [(name: String, value: RequestValue)] = []

    public var isEmpty: Bool { remove.isEmpty && set.isEmpty && setFrom.isEmpty }
}

/// What a `set_from` field can carry (NGINX's `proxy_set_header X-Real-IP $remote_addr`, Envoy's
/// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`).
public enum RequestValue: String, Sendable, CaseIterable {
    /// The client's address after `trusted_proxies` (what rate limits and the access log use).
    case clientIP = "client_ip"
    /// The TCP peer's address (a load balancer, when there is one).
    case peerIP = "peer_ip"
    case requestID = "request_id"
    case traceID = "trace_id"
    /// The authenticated consumer; none on public routes.
    case consumer
    case route
    /// The request's Host as the client sent it.
    case host
    /// `https` on TLS listeners, else `http`.
    case scheme
    case method
    /// The client's country (`geoip`); none when the database does not place the address.
    case country
    /// The client's autonomous system number (`geoip.asn_database`).
    case asn
}

/// A `match.headers` condition on one field: `"value"` (some field of that name has exactly this value), or
/// `{"prefix": ...}`, `{"suffix": ...}`, `{"contains": ...}` (some value does, case-sensitively), or
/// `{"present": true|false}`.
public enum HeaderRule: Sendable, Equatable, CustomStringConvertible {
    case equals(String)
    case prefix(String)
    case suffix(String)
    case contains(String)
    case present(Bool)

    /// Whether the values of the request's fields of that name (one per field line) meet the rule.
    public func matches(_ values: [String]) -> Bool {
        switch self {
        case .equals(let expected): return values.contains(expected)
        case .prefix(let text): return values.contains { $0.hasPrefix(text) }
        case .suffix(let text): return values.contains { $0.hasSuffix(text) }
        case .contains(let text): return values.contains { $0.contains(text) }
        case .present(let present): return values.isEmpty != present
        }
    }

    public var description: String {
        switch self {
        case .equals(let text): return "=" + text
        case .prefix(let text): return "^" + text
        case .suffix(let text): return "$" + text
        case .contains(let text): return "~" + text
        case .present(let present): return present ? "?" : "!"
        }
    }
}

public struct MatchConfig: Sendable {
    public init() {}

    /// Lowercase; exact names or `*.suffix` wildcards. Empty: any host.
    public var hosts: [String] = []
    /// `listeners`: the listener names the route serves (an internal route on a private port). Empty: all.
    public var listeners: [String] = []
    public var pathPrefix: String?
    public var path: String?
    /// `path_template`: a path with variable segments (`/users/{id}/orders`), instead of `path` or `path_prefix`.
    public var pathTemplate: PathTemplate?
    /// Empty: any method.
    public var methods: [String] = []
    /// Lowercase names, each with its condition.
    public var headers: [(name: String, rule: HeaderRule)] = []
    /// `query`: conditions on query parameters (names and values compared after percent-decoding).
    public var query: [(name: String, rule: QueryRule)] = []
    /// `client_ips`: the client addresses (as `trusted_proxies` resolve them) the route serves. Empty: any client.
    public var clientIPs: [CIDR] = []

    public enum QueryRule: Sendable, Equatable {
        /// Some occurrence of the parameter has exactly this value.
        case equals(String)
        /// The parameter is there (`true`), whatever its value, or is not (`false`).
        case present(Bool)
    }
}

public struct RouteAuthConfig: Sendable {
    public enum Method: String, Sendable {
        case jwt, apiKey = "api_key", mtls, basic, introspection, oidc
        /// Whether its credentials carry claims (`auth.claims`, `claim:` keys): tokens and OIDC sessions do.
        public var carriesClaims: Bool { self == .jwt || self == .introspection || self == .oidc }
        /// Whether browsers send its credentials by themselves, whatever page asks (a session cookie, a remembered
        /// password, a client certificate): what a cross-site request forgery abuses.
        public var isAmbient: Bool { self == .oidc || self == .basic || self == .mtls }
    }
    public var require: [Method]
    public var scopes: [String]
    /// `claims`: token claims the credential must carry, each with one of the listed values (`{"tenant": "acme"}`,
    /// `{"roles": ["admin", "ops"]}`), for JWTs and introspected tokens.
    public var claims: [(name: String, values: [String])] = []

    /// Whether the named claim has one of the accepted values.
    public static func claimHolds(_ condition: (name: String, values: [String]), in claims: [String: [String]]) -> Bool {
        (claims[condition.name] ?? []).contains(where: condition.values.contains)
    }

    /// Whether every condition holds.
    public static func claimsHold(_ conditions: [(name: String, values: [String])], in claims: [String: [String]]) -> Bool {
        conditions.allSatisfy { claimHolds($0, in: claims) }
    }
}

extension GatewayConfig {
    /// The claim names routes ask about (`auth.claims`, `claim:NAME` rate-limit and concurrency keys, rate-limit
    /// overrides): the only
    /// claims kept from a verified token.
    public var routeClaimNames: Set<String> {
        var names = Set(routes.compactMap(\.auth).flatMap { $0.claims.map(\.name) })
        for route in routes {
            for key in route.rateLimits.map(\.key) + [route.concurrencyLimit?.key].compactMap({ $0 }) {
                if case .claim(let name) = key { names.insert(name) }
            }
            for limit in route.rateLimits { names.formUnion(limit.overrides.flatMap { $0.callers.claims.map(\.name) }) }
            names.formUnion((route.concurrencyLimit?.overrides ?? []).flatMap { $0.callers.claims.map(\.name) })
        }
        return names
    }
}

/// A top-level `external_auth` entry: an authorization service (oauth2-proxy, Authelia, a company's own) asked
/// about each request of the routes that name it, as NGINX's `auth_request` and Traefik's ForwardAuth do. A 2xx
/// answer lets the request through (with the answer's `upstream_headers`); any other answer goes back to the
/// client; no answer (unreachable, 5xx, too slow) follows `on_error`.
public struct ExternalAuthConfig: Sendable, Equatable {
    public enum OnError: String, Sendable { case deny, allow }
    public var name: String
    /// The upstream pool the checks go to (its targets, TLS, balancing, breakers and retries apply).
    public var upstream: String
    /// The target of every check (`GET`); the original method and target travel in `X-Forwarded-Method`/`-Uri`.
    public var path: String
    /// Client header fields the check gets (lowercased); nil, the default: all of them but the hop-by-hop and
    /// framing fields and those the gateway sets itself (`ExternalAuthConfig.setByGateway`), as NGINX and Traefik do.
    public var requestHeaders: [String]?
    /// Fields of an allowing answer put on the forwarded request, replacing any the client sent (lowercased).
    public var upstreamHeaders: [String] = []
    /// Fields of a refusing answer passed on to the client (lowercased).
    public var clientHeaders = ["www-authenticate", "location", "set-cookie"]
    /// The field of an allowing answer that names the consumer (access log, `consumer` rate limits and sticky splits).
    public var consumerHeader: String?
    /// The longest a check may take, retries included.
    public var timeoutMs = 1000
    /// No answer: refuse with 503 `AUTH_UNAVAILABLE` (`deny`) or let the request through unauthenticated (`allow`).
    public var onError = OnError.deny

    public init(name: String, upstream: String, path: String) {
        (self.name, self.upstream, self.path) = (name, upstream, path)
    }

    /// Fields a check never takes from the client: they belong to one hop, or the gateway writes them itself.
    public static let setByGateway: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization",
        "host", "content-length", "expect", "x-forwarded-method", "x-forwarded-uri", "x-forwarded-host", "x-forwarded-proto",
        "x-forwarded-for", "forwarded", "x-request-id", "traceparent",
    ]
}

public struct RateLimitConfig: Sendable {
    public enum Algorithm: String, Sendable {
        case tokenBucket = "token_bucket", slidingWindow = "sliding_window", fixedWindow = "fixed_window"
    }
    public enum Key: Sendable, Hashable {
        case ip, consumer, route
        case header(String)
        /// A verified token's claim (`claim:tenant`): per tenant, per plan.
        case claim(String)
    }
    public var name: String
    public var algorithm: Algorithm
    public var key: Key
    public var capacity: Int?
    public var refillPerSecond: Double?
    public var cost: Int
    public var limit: Int?
    public var windowSeconds: Int?
    /// false: shadow mode (decisions are logged and counted, never enforced).
    public var enforce: Bool
    /// Other numbers for some callers (plans, partners, internal services); the first that matches applies.
    public var overrides: [RateLimitOverride] = []

    /// This limit with an override's numbers in place of its own (the ones the override leaves out stay).
    public func overridden(by override: RateLimitOverride) -> RateLimitConfig {
        var limit = self
        limit.capacity = override.capacity ?? capacity
        limit.refillPerSecond = override.refillPerSecond ?? refillPerSecond
        limit.limit = override.limit ?? self.limit
        limit.windowSeconds = override.windowSeconds ?? windowSeconds
        limit.overrides = []
        return limit
    }
}

/// `rate_limits[].overrides[]`: a limit's numbers for the authenticated callers named by consumer id, by
/// token claims, or both (Kong's per-consumer limits, API plans by a `plan` claim), or no limit for them
/// (`exempt`). The counters stay the same keys: a caller moved to another plan keeps what it has used.
public struct RateLimitOverride: Sendable {
    public var callers = Callers()
    /// true: the limit does not apply to these callers.
    public var exempt = false
    public var capacity: Int?
    public var refillPerSecond: Double?
    public var limit: Int?
    public var windowSeconds: Int?

    public init() {}
}

/// The authenticated callers an override names (`rate_limits[].overrides`, `concurrency_limit.overrides`): by
/// consumer id, by token claims, or both.
public struct Callers: Sendable, Equatable {
    /// Consumer ids (JWT `sub`, API-key id, Basic user, certificate consumer); empty: any consumer.
    public var consumers: [String] = []
    /// Token claims that must each hold one of their values (as `auth.claims`).
    public var claims: [(name: String, values: [String])] = []

    public init() {}

    public static func == (lhs: Callers, rhs: Callers) -> Bool {
        lhs.consumers == rhs.consumers && lhs.claims.map(\.name) == rhs.claims.map(\.name) && lhs.claims.map(\.values) == rhs.claims.map(\.values)
    }

    /// Whether a request by `consumer` with verified `claims` is one of these callers. Anonymous requests never are.
    public func include(consumer: String?, claims held: [String: [String]]?) -> Bool {
        guard let consumer else { return false }
        if !consumers.isEmpty && !consumers.contains(consumer) { return false }
        return RouteAuthConfig.claimsHold(claims, in: held ?? [:])
    }
}

/// A route's `concurrency_limit`: at most `max` requests per key in flight at once, in this gateway process
/// (Traefik's InFlightReq). A WebSocket counts for as long as it is open.
public struct ConcurrencyLimitConfig: Sendable, Equatable {
    public var key: RateLimitConfig.Key
    public var max: Int
    /// Another `max` (or none: `exempt`) for some callers; the first that names the caller applies.
    public var overrides: [Override] = []
    public init(key: RateLimitConfig.Key, max: Int) { (self.key, self.max) = (key, max) }

    public struct Override: Sendable, Equatable {
        public var callers = Callers()
        public var max: Int?
        public var exempt = false
        public init() {}
    }

    /// The most requests in flight a caller may have; nil when it is exempt.
    public func max(consumer: String?, claims: [String: [String]]?) -> Int? {
        guard let override = overrides.first(where: { $0.callers.include(consumer: consumer, claims: claims) }) else { return max }
        return override.exempt ? nil : override.max
    }
}

public struct RouteCacheConfig: Sendable {
    public var enabled: Bool
    public var defaultTTLSeconds: Int
    public var keyHeaders: [String]
    public var ignoreQueryParameters: [String]
    /// Store responses that set cookies (the stored copy never carries the Set-Cookie).
    public var allowSetCookie = false
}

/// A route's `csrf`: cross-origin state-changing requests from browsers are refused (see
/// `CrossOriginProtection`), or with `reportOnly` logged and counted only.
public struct CSRFConfig: Sendable, Equatable {
    /// false (`csrf: false`): off, even where it would be on by default.
    public var enabled = true
    /// Origins whose requests are allowed as if same-origin (besides the route's CORS `allow_origins`).
    public var trustedOrigins: [String] = []
    public var reportOnly = false
    public init() {}
}

public struct CORSConfig: Sendable {
    public var allowOrigins: [String]
    public var allowMethods: [String]
    public var allowHeaders: [String]
    public var exposeHeaders: [String]
    public var allowCredentials: Bool
    public var maxAgeSeconds: Int?
}

/// Request spans sent to an OpenTelemetry collector over OTLP/HTTP with JSON encoding.
public struct TracingConfig: Sendable, Equatable {
    public init(otlpEndpoint: String) { self.otlpEndpoint = otlpEndpoint }

    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    public var otlpEndpoint: String
    public var serviceName = "gateway"
    /// How often queued spans are sent.
    public var flushIntervalMs = 1_000
    /// Spans waiting beyond this are dropped (and counted) rather than held: the collector being slow or
    /// down must not grow the gateway's memory.
    public var maxQueueSpans = 8_192
    /// Extra request headers for the collector (an API key, say).
    public var headers: [String: String] = [:]
}

public struct LoggingConfig: Sendable {
    public init() {}

    public enum Level: String, Sendable, CaseIterable { case trace, debug, info, notice, warning, error, critical }
    public var level: Level = .info
    /// One JSON line per request on stdout.
    public var accessLog = true
    /// `access_log_headers`: request header fields logged with each request (lowercased names; never credentials).
    public var accessLogHeaders: [String] = []
    /// `access_log_format`: one JSON object per request (`json`), or NGINX's `combined` line with the request id.
    public var accessLogFormat: AccessLogFormat = .json
    public enum AccessLogFormat: String, Sendable, CaseIterable { case json, combined }
    /// `file`: every log line goes to this file (appended; reopened on SIGUSR1) instead of standard output.
    public var file: String?
    /// `access_log_file`: access-log lines go here instead of where the other lines go.
    public var accessLogFile: String?
    /// `buffer_bytes`: lines waiting for a slow output, per output, beyond which new lines are dropped (and
    /// counted) rather than holding up requests.
    public var bufferBytes = 8 << 20
    /// `syslog`: lines go to a syslog server (or the local daemon's socket) instead of a file or standard output.
    public var syslog: SyslogConfig?

    /// Fields that carry credentials: never logged, whatever the config says.
    public static let credentialHeaders = ["authorization", "proxy-authorization", "cookie", "x-api-key", "set-cookie"]
}

/// `logging.syslog`: `{"address": "10.0.0.9:514", "transport": "tcp", "facility": "local7", "tag": "gateway"}`, or
/// `{"address": "unix:/dev/log"}` for the local daemon (rsyslog, journald).
public struct SyslogConfig: Sendable, Equatable {
    public enum Address: Sendable, Equatable, CustomStringConvertible {
        /// A host (an IP address or a name, looked up at start) and port.
        case network(host: String, port: Int)
        /// A datagram socket of the local syslog daemon.
        case unix(path: String)
        public var description: String {
            switch self {
            case .network(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unix(let path): return "unix:\(path)"
            }
        }
    }
    public enum Transport: String, Sendable, CaseIterable { case udp, tcp }
    /// RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID - - MSG`), or the BSD form of RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`)
    /// that older receivers and the local daemon's socket take.
    public enum Format: String, Sendable, CaseIterable { case rfc5424, rfc3164 }
    /// Which lines go there: all of them, or only the access log's.
    public enum Lines: String, Sendable, CaseIterable { case all, access }
    /// RFC 5424's facility names, numbered in order (local0-local7 are 16-23).
    public static let facilities = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ]

    public var address: Address
    public var transport: Transport = .udp
    public var format: Format
    /// A facility's number (`local7`, NGINX's default, is 23).
    public var facility = 23
    /// APP-NAME (RFC 5424) or TAG (RFC 3164).
    public var tag = "gateway"
    public var lines: Lines = .all

    public init(address: Address) {
        self.address = address
        if case .unix = address { format = .rfc3164 } else { format = .rfc5424 }
    }
}

/// `geoip`: `{"database": "/var/lib/GeoIP/GeoLite2-Country.mmdb", "asn_database": "/var/lib/GeoIP/GeoLite2-ASN.mmdb"}`
/// (at least one).
public struct GeoIPConfig: Sendable, Equatable {
    /// Countries (GeoLite2-Country or -City, GeoIP2, DB-IP).
    public var database: String?
    /// Autonomous systems (GeoLite2-ASN).
    public var asnDatabase: String?
    public init(database: String?, asnDatabase: String? = nil) { (self.database, self.asnDatabase) = (database, asnDatabase) }
    public var files: [String] { [database, asnDatabase].compactMap { $0 } }
}

/// `deny_asns` and `allow_asns`: autonomous system numbers (a cloud provider's `16509`), for clients the database places
/// in one; an address it places in none passes a deny list and fails an allow list.
public struct ASNRule: Sendable, Equatable {
    public var deny: Set<UInt32> = []
    public var allow: Set<UInt32> = []
    public var isEmpty: Bool { deny.isEmpty && allow.isEmpty }
    public init(deny: Set<UInt32> = [], allow: Set<UInt32> = []) { (self.deny, self.allow) = (deny, allow) }

    public func permits(_ asn: UInt32?) -> Bool {
        guard let asn else { return allow.isEmpty }
        return !deny.contains(asn) && (allow.isEmpty || allow.contains(asn))
    }
}

/// `deny_countries` and `allow_countries`: ISO 3166 codes (`DE`), and `unknown` for an address the database does not
/// place (private networks, new allocations).
public struct CountryRule: Sendable, Equatable {
    public static let unknown = "unknown"
    public var deny: Set<String> = []
    /// When not empty, only these countries pass.
    public var allow: Set<String> = []
    public var isEmpty: Bool { deny.isEmpty && allow.isEmpty }
    public init(deny: Set<String> = [], allow: Set<String> = []) { (self.deny, self.allow) = (deny, allow) }

    /// Whether a client from `country` (nil: not placed) may pass.
    public func permits(_ country: String?) -> Bool {
        let code = country ?? Self.unknown
        return !deny.contains(code) && (allow.isEmpty || allow.contains(code))
    }
}
