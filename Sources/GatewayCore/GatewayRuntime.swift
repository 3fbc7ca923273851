import GatewayConfig
import NIOConcurrencyHelpers
import GatewayPolicy
import Logging
import GatewayHTTP
import NIOCore
import Synchronization

/// Everything a request needs from the config, compiled once: routes, filters, limits. Immutable and
/// shared by all event loops; a reload builds a new one instead of mutating this.
///
/// A class, so that a request reading one field does not copy (and retain) the whole config.
public final class GatewayRuntime: Sendable {
    public let config: GatewayConfig
    public let routes: RouteTable
    /// Run for every request, before routing, and for every response (reverse order).
    public let globalFilters: [any GatewayFilter]
    public let trustedProxies: AddressSet
    /// `"unix:"` in `trusted_proxies`: peers on Unix-socket listeners are trusted proxies.
    public let trustsUnixPeers: Bool
    /// `forwarded_header`: the upstream also gets an RFC 7239 `Forwarded` field.
    public let forwardedHeader: Bool
    /// `via`: the `Via` entries this gateway adds, by the protocol the message arrived in (HTTP/1.0, 1.1, 2), made once.
    public let via: (http1_0: String, http1_1: String, http2: String)?
    /// This gateway's id in `CDN-Loop` (RFC 8586), nil with `loop_detection` off. One per process, the same across
    /// reloads, different for every instance, so a loop through several instances is caught too.
    public let loopID: String?
    /// The HTTP-01 challenges of `acme` orders under way, answered on every listener before routing; nil without `acme`.
    public let acmeChallenges: ACMEChallenges?
    public let logger: Logger
    public let limits: LimitsConfig
    /// `limits.underscores_in_headers` and `limits.override_headers` are `drop`, decided once.
    public let dropsUnderscoredFields: Bool
    public let dropsOverrideFields: Bool
    /// `limits.encoded_slashes` in the path normaliser's terms, decided once.
    public let encodedSlashes: PathNormalizer.EncodedSlashes
    /// Headers that carry verified client-certificate subjects upstream. Clients may not send them: they are
    /// removed from every request, on every listener, and set only from a verified certificate.
    public let clientSubjectHeaders: [String]
    /// Headers that carry verified claims upstream (`forward_claims` of `auth.jwt` and `auth.oidc`): removed from every request
    /// as it arrives, like `X-Auth-*`, so only the gateway's verified values reach limits and upstreams.
    public let claimHeaders: [String]
    /// `client_ip_header`: where a trusted proxy names the client; removed from everyone else's requests.
    public let clientIPHeader: String?
    public let metrics: GatewayMetrics
    /// Request metrics of requests no route matched (404, 405, redirects, protocol errors).
    public let unroutedMetrics: RouteMetrics

    public init(
        config: GatewayConfig, routes: RouteTable, globalFilters: [any GatewayFilter], logger: Logger, metrics: GatewayMetrics = .disabled,
        instanceID: String = HeaderRules.newLoopID(), acmeChallenges: ACMEChallenges? = nil
    ) {
        self.loopID = config.loopDetection ? instanceID : nil
        self.acmeChallenges = acmeChallenges
        self.metrics = metrics
        self.unroutedMetrics = metrics.route("-")
        self.config = config
        self.routes = routes
        self.globalFilters = globalFilters
        self.trustedProxies = AddressSet(config.trustedProxies)
        self.trustsUnixPeers = config.trustsUnixPeers
        self.forwardedHeader = config.forwardedHeader
        self.via = config.via.map { ("1.0 \($0)", "1.1 \($0)", "2 \($0)") }
        self.logger = logger
        self.limits = config.limits
        self.dropsUnderscoredFields = config.limits.underscoresInHeaders == .drop
        self.dropsOverrideFields = config.limits.overrideHeaders == .drop
        self.encodedSlashes = config.limits.encodedSlashes == .keep ? .keep : .reject
        var subjectHeaders: [String] = []
        for listener in config.listeners {
            guard let tls = listener.tls, tls.clientAuth != .none else { continue }
            for name in [tls.clientSubjectHeader, tls.clientCertHeader].compactMap({ $0 }) where !subjectHeaders.contains(name) {
                subjectHeaders.append(name)
            }
        }
        self.clientSubjectHeaders = subjectHeaders
        // Set only from verified tokens and login sessions: a client's own fields of these names never pass.
        let claimHeaders = (config.auth?.jwt?.forwardClaims ?? []).map { $0.header.lowercased() } + (config.auth?.oidc?.forwardClaims ?? []).map(\.header)
        self.claimHeaders = Array(Set(claimHeaders)).sorted()
        self.clientIPHeader = config.clientIPHeader
    }

    /// Compiles the route table; a route forwards to `config.upstreams[destination.upstreamIndex]`.
    public static func compileRoutes(
        _ config: GatewayConfig, metrics: GatewayMetrics = .disabled, cache: ResponseCache? = nil,
        credentials: [String: any UpstreamCredentials] = [:],
        routeFilters: (RouteConfig) -> [any GatewayFilter] = { _ in [] }, bodyCheck: (RouteConfig) -> (any RequestBodyCheck)? = { _ in nil }
    ) -> RouteTable {
        let upstreamIndex = Dictionary(config.upstreams.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let routes = config.routes.enumerated().map { index, route in
            let upstreams = route.upstreamNames.map { name in
                upstreamIndex[name].map { (index: $0, config: Optional(config.upstreams[$0])) } ?? (index: 0, config: nil)
            }
            return CompiledRoute(
                config: route, index: index, upstreams: upstreams, mirrorIndex: route.mirror.flatMap { upstreamIndex[$0.upstream] },
                compression: config.compression, interceptErrors: config.interceptErrors, defaultMaxBodyBytes: config.limits.maxBodyBytes,
                filters: routeFilters(route), bodyCheck: bodyCheck(route),
                metrics: metrics, cache: cache, credentials: credentials)
        }
        return RouteTable(routes: routes)
    }
}

/// What new requests use: the runtime (routes, filters, limits) and each loop's forwarder. A reload builds a
/// new one and swaps it in; requests already running keep the one they started with, connections pick up
/// the new one at their next request.
public final class RuntimeHolder: Sendable {
    public struct Active: Sendable {
        public let runtime: GatewayRuntime
        public let forwarders: LoopLocal<any UpstreamForwarder>

        public init(runtime: GatewayRuntime, forwarders: LoopLocal<any UpstreamForwarder>) {
            self.runtime = runtime
            self.forwarders = forwarders
        }
    }

    private let generation = Atomic<Int>(0)
    private let active: NIOLockedValueBox<Active>

    public init(_ active: Active) { self.active = NIOLockedValueBox(active) }

    public var current: Active { active.withLockedValue { $0 } }

    /// Bumped by every swap: a connection compares it (one atomic load) before each request.
    public var generationNumber: Int { generation.load(ordering: .acquiring) }

    /// Installs `new`; returns what it replaced.
    @discardableResult
    public func replace(with new: Active) -> Active {
        let old = active.withLockedValue { active in
            defer { active = new }
            return active
        }
        generation.wrappingAdd(1, ordering: .releasing)
        return old
    }
}

/// The responder for one client connection: it turns each request head into an exchange.
public final class GatewayConnection: ConnectionResponder {
    private let holder: RuntimeHolder
    private var generation = -1
    private var cachedRuntime: GatewayRuntime?
    private var cachedForwarder: UpstreamForwarder?
    let info: ConnectionInfo
    let eventLoop: EventLoop
    /// The peer as text, computed once per connection rather than per request.
    let peerText: String
    /// A plaintext listener with `redirect_https_port` answers everything with a redirect.
    let redirectHTTPSPort: Int?

    public init(holder: RuntimeHolder, info: ConnectionInfo, eventLoop: EventLoop, redirectHTTPSPort: Int? = nil) {
        self.holder = holder
        self.info = info
        self.eventLoop = eventLoop
        self.peerText = info.peer?.description ?? "unix"
        self.redirectHTTPSPort = redirectHTTPSPort
    }

    /// The runtime and this loop's forwarder for a new request (refreshed after a reload).
    func snapshot() -> (GatewayRuntime, UpstreamForwarder) {
        let current = holder.generationNumber
        if current != generation || cachedRuntime == nil {
            let active = holder.current
            cachedRuntime = active.runtime
            cachedForwarder = active.forwarders.value(on: eventLoop)
            generation = current
        }
        return (cachedRuntime!, cachedForwarder!)
    }

    public func startExchange(_ request: consuming IncomingRequest, stream: DownstreamStream) -> ExchangeDriver {
        let exchange = ProxyExchange(connection: self, request: consume request, stream: stream)
        exchange.start()
        return exchange
    }

    public func respondToProtocolError(_ error: GatewayError, stream: DownstreamStream) {
        let (runtime, _) = snapshot()
        var context = RequestContext(
            connection: info, clientIP: peerText, method: .other("-"), uri: "-", startedAt: .now(), eventLoop: eventLoop)
        context.requestID = RequestID.generate()
        var response = GatewayResponse.error(error, requestID: context.requestID)
        for filter in runtime.globalFilters.reversed() { filter.onResponse(&response.head, context: context) }
        stream.writeResponseHead(response.head)
        if let body = response.body { stream.writeResponseBody(body) }
        stream.writeResponseEnd()
        stream.flush()
        let outcome = RequestOutcome(
            status: response.head.status, bytesIn: 0, bytesOut: response.body?.readableBytes ?? 0,
            upstreamTarget: nil, durationNanos: 0, errorCode: error.code, completed: true)
        runtime.unroutedMetrics.record(method: .other("-"), status: outcome.status, durationNanos: 0, bytesOut: outcome.bytesOut)
        for filter in runtime.globalFilters { filter.onComplete(context: context, outcome: outcome) }
    }
}
