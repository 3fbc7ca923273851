import GatewayConfig
import GatewayPolicy
import Logging
import GatewayHTTP
import NIOCore

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
    public let logger: Logger
    public let limits: LimitsConfig
    /// `total_timeout_ms` per upstream index.
    public let totalTimeouts: [TimeAmount?]
    /// Headers that carry verified client-certificate subjects upstream. Clients may not send them: they are
    /// removed from every request, on every listener, and set only from a verified certificate.
    public let clientSubjectHeaders: [String]

    public init(config: GatewayConfig, routes: RouteTable, globalFilters: [any GatewayFilter], logger: Logger) {
        self.config = config
        self.routes = routes
        self.globalFilters = globalFilters
        self.trustedProxies = AddressSet(config.trustedProxies)
        self.logger = logger
        self.limits = config.limits
        self.totalTimeouts = config.upstreams.map { $0.totalTimeoutMs.map { .milliseconds(Int64($0)) } }
        var subjectHeaders: [String] = []
        for listener in config.listeners {
            guard let tls = listener.tls, tls.clientAuth != .none, !subjectHeaders.contains(tls.clientSubjectHeader) else { continue }
            subjectHeaders.append(tls.clientSubjectHeader)
        }
        self.clientSubjectHeaders = subjectHeaders
    }

    /// Compiles the route table; route i forwards to `config.upstreams[routes[i].upstreamIndex]`.
    public static func compileRoutes(_ config: GatewayConfig, routeFilters: (RouteConfig) -> [any GatewayFilter] = { _ in [] }) -> RouteTable {
        let upstreamIndex = Dictionary(config.upstreams.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let routes = config.routes.enumerated().map { index, route in
            CompiledRoute(config: route, index: index, upstreamIndex: upstreamIndex[route.upstream] ?? 0, filters: routeFilters(route))
        }
        return RouteTable(routes: routes)
    }
}

/// The responder for one client connection: it turns each request head into an exchange.
public final class GatewayConnection: ConnectionResponder {
    let runtime: GatewayRuntime
    let forwarder: UpstreamForwarder
    let info: ConnectionInfo
    let eventLoop: EventLoop
    /// The peer as text, computed once per connection rather than per request.
    let peerText: String
    /// A plaintext listener with `redirect_https_port` answers everything with a redirect.
    let redirectHTTPSPort: Int?

    public init(
        runtime: GatewayRuntime, forwarder: UpstreamForwarder, info: ConnectionInfo, eventLoop: EventLoop,
        redirectHTTPSPort: Int? = nil
    ) {
        self.runtime = runtime
        self.forwarder = forwarder
        self.info = info
        self.eventLoop = eventLoop
        self.peerText = info.peer?.description ?? "unix"
        self.redirectHTTPSPort = redirectHTTPSPort
    }

    public func startExchange(_ request: IncomingRequest, stream: DownstreamStream) -> ExchangeDriver {
        let exchange = ProxyExchange(connection: self, request: request, stream: stream)
        exchange.start()
        return exchange
    }

    public func respondToProtocolError(_ error: GatewayError, stream: DownstreamStream) {
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
        for filter in runtime.globalFilters { filter.onComplete(context: context, outcome: outcome) }
    }
}
