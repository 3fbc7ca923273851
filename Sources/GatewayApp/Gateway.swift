import GatewayAuth
import GatewayConfig
import GatewayCore
import GatewayFilters
import GatewayRedis
import GatewayServer
import GatewayUpstream
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A running gateway: event loops, per-loop upstream pools and the bound listeners, built from one
/// validated config. The CLI runs one under ServiceLifecycle; tests start one in-process.
public final class Gateway: Sendable {
    public let config: GatewayConfig
    public let listeners: [GatewayServer.BoundListener]
    private let group: MultiThreadedEventLoopGroup
    private let server: GatewayServer
    private let forwarders: LoopLocal<any UpstreamForwarder>
    /// Every upstream's shared state: breakers, health, in-flight counts.
    public let upstreams: UpstreamSet
    private let logger: Logger
    /// The shared Redis client, when gateway.json has a `redis` section.
    public let redis: RedisClient?
    /// The rate-limit store routes use (for tests and, later, metrics).
    public let rateLimitStore: RateLimitStore
    /// JWT keys and API keys, when gateway.json has an `auth` section.
    public let authenticator: Authenticator?

    private init(
        config: GatewayConfig, listeners: [GatewayServer.BoundListener], group: MultiThreadedEventLoopGroup,
        server: GatewayServer, forwarders: LoopLocal<any UpstreamForwarder>, upstreams: UpstreamSet, logger: Logger, redis: RedisClient?,
        rateLimitStore: RateLimitStore, authenticator: Authenticator?
    ) {
        self.config = config
        self.listeners = listeners
        self.group = group
        self.server = server
        self.forwarders = forwarders
        self.upstreams = upstreams
        self.logger = logger
        self.redis = redis
        self.rateLimitStore = rateLimitStore
        self.authenticator = authenticator
    }

    /// Starts event loops and binds every listener.
    /// - Parameters:
    ///   - logger: operational log (start, stop, upstream failures).
    ///   - accessLogger: one line per request; nil uses `logger`.
    public static func start(config: GatewayConfig, logger: Logger, accessLogger: Logger? = nil) async throws -> Gateway {
        let workers = config.workers ?? System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: workers)
        do {
            var globalFilters: [any GatewayFilter] = [RequestIDFilter(), SecurityHeadersFilter(config.securityHeaders)]
            if config.logging.accessLog { globalFilters.append(AccessLogFilter(logger: accessLogger ?? logger)) }
            let redis = try await makeRedisClient(config, group: group, logger: logger)
            let rateLimitStore = makeRateLimitStore(config, redis: redis, logger: logger)
            let authenticator = try await config.auth.asyncMap { try await Authenticator.make($0, eventLoop: group.next(), logger: logger) }
            // Per route: authentication first (rate limits may key on the consumer it establishes), then limits.
            let routes = GatewayRuntime.compileRoutes(config) { route in
                var filters: [any GatewayFilter] = []
                if let auth = route.auth, let authenticator {
                    filters.append(AuthFilter(routeName: route.name, config: auth, authenticator: authenticator, logger: logger))
                }
                if !route.rateLimits.isEmpty {
                    filters.append(
                        RateLimitFilter(routeName: route.name, rules: route.rateLimits.map(RateLimitRule.init), store: rateLimitStore, logger: logger))
                }
                return filters
            }
            let runtime = GatewayRuntime(config: config, routes: routes, globalFilters: globalFilters, logger: logger)
            let upstreams = try UpstreamSet(configs: config.upstreams, logger: logger)
            let forwarders = try await LoopLocal<any UpstreamForwarder>.make(on: group) { loop, index in
                upstreams.makeForwarder(eventLoop: loop, loopIndex: index, loopCount: workers, logger: logger)
            }
            try await upstreams.startHealthChecks(on: group.next())
            let server = try GatewayServer(group: group, runtime: runtime, forwarders: forwarders)
            let listeners = try await server.start()
            logger.info("gateway started", metadata: ["workers": .stringConvertible(workers), "routes": .stringConvertible(config.routes.count)])
            return Gateway(
                config: config, listeners: listeners, group: group, server: server, forwarders: forwarders, upstreams: upstreams,
                logger: logger,
                redis: redis, rateLimitStore: rateLimitStore, authenticator: authenticator)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func makeRedisClient(_ config: GatewayConfig, group: EventLoopGroup, logger: Logger) async throws -> RedisClient? {
        guard let redis = config.redis else { return nil }
        let url = try RedisURL.parse(redis.url).get()
        return try await RedisClient(
            url: url, poolSize: redis.poolSize, timeout: .milliseconds(Int64(redis.timeoutMs)), group: group,
            logger: logger)
    }

    /// `memory`: this process's counters. `redis`: shared counters behind the `on_store_error` policy.
    private static func makeRateLimitStore(_ config: GatewayConfig, redis: RedisClient?, logger: Logger) -> RateLimitStore {
        guard config.rateLimiting.store == .redis, let redis else { return MemoryRateLimitStore() }
        return FailoverRateLimitStore(
            primary: RedisRateLimitStore(client: redis), mode: config.rateLimiting.onStoreError, logger: logger)
    }

    /// Reads the TLS listeners' certificate files again (SIGHUP): new handshakes use them, open connections
    /// keep theirs, a listener whose files fail keeps its old ones. Returns the errors by listener.
    @discardableResult
    public func reloadCertificates() -> [String: String] { server.reloadCertificates() }

    /// The port a listener was bound to (useful with port 0).
    public func port(of listener: String) -> Int? { listeners.first { $0.name == listener }?.port }

    /// Upstream connections opened so far, summed over event loops (proves keep-alive reuse in tests).
    public func upstreamConnectionsOpened() async -> [String: Int] {
        let totals = Mutex<[String: Int]>([:])
        await forwarders.forEach { forwarder in
            guard let forwarder = forwarder as? HTTP1Forwarder else { return }
            let counts = forwarder.connectionsOpened
            totals.withLock { totals in totals.merge(counts, uniquingKeysWith: +) }
        }
        return totals.withLock { $0 }
    }

    public var openConnections: Int { server.openConnections }

    /// Graceful stop: no new connections, requests in flight finish within the drain timeout.
    public func shutdown() async {
        logger.info("gateway stopping", metadata: ["drain_timeout_ms": .stringConvertible(config.limits.drainTimeoutMs)])
        await server.shutdown(timeout: .milliseconds(Int64(config.limits.drainTimeoutMs)))
        await upstreams.stopHealthChecks()
        authenticator?.stop()
        await redis?.shutdown()
        try? await group.shutdownGracefully()
        logger.info("gateway stopped")
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
