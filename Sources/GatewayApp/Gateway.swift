import Foundation
import GatewayACME
import GatewayAuth
import GatewayConfig
import GatewayCore
import GatewayFilters
import GatewayGeo
import GatewayPolicy
import GatewayRedis
import GatewayServer
import GatewayTLS
import GatewayTelemetry
import GatewayUpstream
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Prometheus
import Synchronization

/// A running gateway: event loops, listeners, and the parts a config builds (routes and filters, upstream
/// pools, authentication, rate-limit store, Redis). The CLI runs one under ServiceLifecycle; tests start one
/// in-process.
///
/// A reload builds a complete new set of parts from a validated config and swaps it in at once: requests
/// in flight finish with the parts they started with, connections stay open and use the new parts from
/// their next request. Parts whose config did not change are carried over (upstream pools, breakers,
/// health, Redis, in-memory rate-limit counters), so a reload does not reconnect or forget.
public final class Gateway: Sendable {
    /// The parts one config builds.
    struct Parts: Sendable {
        let config: GatewayConfig
        let upstreams: UpstreamSet
        let authenticator: Authenticator?
        let redis: RedisClient?
        let rateLimitStore: RateLimitStore
        let exporter: OTLPExporter?
        let cache: ResponseCache?
        /// Routes' `adaptive_concurrency` filters, by route name: a reload that keeps a route's settings keeps its
        /// controller (its limit, idle latency and requests in flight), instead of measuring again from the minimum.
        var adaptiveFilters: [String: AdaptiveConcurrencyFilter] = [:]
        /// `logging.access_log_format` as the process started (the log outputs are made once, at start).
        var accessLogFormat: LoggingConfig.AccessLogFormat = .json
        /// This gateway's `CDN-Loop` id, kept across reloads.
        var instanceID = HeaderRules.newLoopID()
        /// Accepted webhook deliveries (`webhook_signature.replay_protection`): in Redis when there is one, else here,
        /// kept across reloads either way.
        var replayGuard: any ReplayGuard = MemoryReplayGuard()
        /// Obtains and renews the listener certificates marked `"acme": true`; kept across reloads while its settings
        /// and certificates stay.
        var acme: ACMEManager?
        /// The tokens the gateway holds for upstreams with `oauth2`, by upstream name; kept across reloads while their
        /// settings stay.
        var upstreamTokens: [String: UpstreamToken] = [:]
    }

    private let group: MultiThreadedEventLoopGroup
    private let workers: Int
    private let server: GatewayServer
    private let holder: RuntimeHolder
    private let parts: NIOLockedValueBox<Parts>
    private let reloading = NIOLockedValueBox(false)
    private let draining = Atomic<Bool>(false)
    private let logger: Logger
    private let accessLogger: Logger?
    /// The file a reload reads (SIGHUP, `POST /reload`); nil for a gateway started from a config in memory.
    public let configPath: String?
    private let admin = NIOLockedValueBox<AdminServer?>(nil)
    private let watcher = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// Upstream addresses found by DNS (`dns_refresh_ms`), and the task that looks them up again.
    private let discovery: DNSDiscovery
    private let discoveryTask = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// The config as loaded, before discovery put addresses in (what a DNS change rebuilds from).
    private let loadedConfig: NIOLockedValueBox<GatewayConfig>
    /// Where the metrics live (`/metrics` renders them with `prometheusText()`).
    public let registry: PrometheusCollectorRegistry
    public let metrics: GatewayMetrics

    private init(
        group: MultiThreadedEventLoopGroup, workers: Int, server: GatewayServer, holder: RuntimeHolder, parts: Parts, logger: Logger,
        accessLogger: Logger?, registry: PrometheusCollectorRegistry, metrics: GatewayMetrics, configPath: String?,
        discovery: DNSDiscovery, loadedConfig: GatewayConfig
    ) {
        self.configPath = configPath
        self.discovery = discovery
        self.loadedConfig = NIOLockedValueBox(loadedConfig)
        self.group = group
        self.workers = workers
        self.server = server
        self.holder = holder
        self.parts = NIOLockedValueBox(parts)
        self.logger = logger
        self.accessLogger = accessLogger
        self.registry = registry
        self.metrics = metrics
    }

    /// Every metric in Prometheus text: the registry's, then the per-request counters and duration histograms.
    private static let buildInfo =
        "# HELP gateway_build_info The gateway's version (always 1).\n# TYPE gateway_build_info gauge\ngateway_build_info{version=\"\(GatewayVersion.current)\"} 1\n"

    public func prometheusText() -> String {
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        metrics.emitOwnMetrics(into: &bytes)
        return String(decoding: bytes, as: UTF8.self) + Self.buildInfo + Self.upstreamConnectionsText(upstreams.targetStates())
            + ProcessMetrics.text()
    }

    /// Per target, read when scraped (so a target gone with a reload leaves no series behind): requests in flight,
    /// connections open, connections ever opened.
    static func upstreamConnectionsText(_ states: [UpstreamTargetState]) -> String {
        guard !states.isEmpty else { return "" }
        var text = ""
        let series: [(name: String, type: String, help: String, value: (UpstreamTargetState) -> Int)] = [
            ("gateway_upstream_requests_in_flight", "gauge", "Requests being served by the target.", \.inFlight),
            ("gateway_upstream_connections", "gauge", "Connections open to the target, idle or busy, on every event loop.", \.openConnections),
            ("gateway_upstream_connections_opened_total", "counter", "Connections opened to the target (failed attempts included).", \.connectionsOpened),
        ]
        for metric in series {
            text += "# HELP \(metric.name) \(metric.help)\n# TYPE \(metric.name) \(metric.type)\n"
            for state in states {
                let labels = "upstream=\"\(LatencyHistogram.escapedLabelValue(state.upstream))\",target=\"\(LatencyHistogram.escapedLabelValue(state.target))\""
                text += "\(metric.name){\(labels)} \(metric.value(state))\n"
            }
        }
        return text
    }

    /// The running config.
    public var config: GatewayConfig { parts.withLockedValue { $0.config } }
    /// Every upstream's shared state: breakers, health, in-flight counts.
    public var upstreams: UpstreamSet { parts.withLockedValue { $0.upstreams } }
    /// The shared Redis client, when gateway.json has a `redis` section.
    public var redis: RedisClient? { parts.withLockedValue { $0.redis } }
    /// The rate-limit store routes use.
    public var rateLimitStore: RateLimitStore { parts.withLockedValue { $0.rateLimitStore } }
    /// JWT keys and API keys, when gateway.json has an `auth` section.
    public var authenticator: Authenticator? { parts.withLockedValue { $0.authenticator } }

    /// The bound listeners, in config order.
    public var listeners: [GatewayServer.BoundListener] {
        let bound = server.boundListeners
        return config.listeners.compactMap { listener in bound.first { $0.name == listener.name } }
    }

    /// Starts event loops and binds every listener.
    /// - Parameters:
    ///   - logger: operational log (start, stop, upstream failures).
    ///   - accessLogger: one line per request; nil uses `logger`.
    ///   - configPath: the file SIGHUP and `POST /reload` read again.
    ///   - resolver: looks up the host names of upstreams with `dns_refresh_ms`.
    public static func start(
        config loaded: GatewayConfig, logger: Logger, accessLogger: Logger? = nil, configPath: String? = nil,
        resolver: any HostResolver = SystemResolver()
    ) async throws -> Gateway {
        let discovery = DNSDiscovery(resolver: resolver, logger: logger)
        await discovery.prime(loaded)
        let config = discovery.expand(loaded)
        let workers = config.workers ?? System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: workers)
        let registry = PrometheusCollectorRegistry()
        let metrics = GatewayMetrics(factory: PrometheusMetricsFactory(registry: registry))
        do {
            let (parts, active) = try await build(
                config, previous: nil, group: group, workers: workers, metrics: metrics, logger: logger, accessLogger: accessLogger)
            let holder = RuntimeHolder(active)
            let server = GatewayServer(group: group, holder: holder, metrics: metrics)
            do {
                _ = try await server.start()
            } catch {
                await retire(parts, keeping: nil)
                throw error
            }
            let gateway = Gateway(
                group: group, workers: workers, server: server, holder: holder, parts: parts, logger: logger, accessLogger: accessLogger,
                registry: registry, metrics: metrics, configPath: configPath, discovery: discovery, loadedConfig: loaded)
            if let adminConfig = config.admin {
                do {
                    let admin = try await AdminServer.start(config: adminConfig, gateway: gateway, group: group, logger: logger)
                    gateway.admin.withLockedValue { $0 = admin }
                } catch {
                    await server.shutdown(timeout: .zero)
                    await retire(parts, keeping: nil)
                    throw error
                }
            }
            gateway.startWatchingConfigFile()
            gateway.startDiscovery()
            gateway.startACME(parts, running: nil)
            logger.info("gateway started", metadata: ["workers": .stringConvertible(workers), "routes": .stringConvertible(config.routes.count)])
            return gateway
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Builds everything a config describes, reusing from `previous` what did not change.
    private static func build(
        _ config: GatewayConfig, previous: (parts: Parts, active: RuntimeHolder.Active)?, group: MultiThreadedEventLoopGroup, workers: Int,
        metrics: GatewayMetrics, logger: Logger, accessLogger: Logger?
    ) async throws -> (Parts, RuntimeHolder.Active) {
        let old = previous?.parts
        let accessLogFormat = old?.accessLogFormat ?? config.logging.accessLogFormat
        let redis: RedisClient?
        if let old, old.config.redis == config.redis {
            redis = old.redis
        } else {
            redis = try await makeRedisClient(config, group: group, logger: logger)
        }
        let rateLimitStore: RateLimitStore
        if let old, old.config.rateLimiting == config.rateLimiting, old.redis === redis {
            rateLimitStore = old.rateLimitStore  // counters survive the reload
        } else {
            rateLimitStore = makeRateLimitStore(config, redis: redis, logger: logger)
        }
        let acme: ACMEManager?
        do {
            acme = try makeACMEManager(
                config, previous: old?.acme, redisChanged: old?.redis !== redis, redis: redis, eventLoop: group.next(), logger: logger,
                metrics: metrics)
        } catch {
            if let redis, redis !== old?.redis { await redis.shutdown() }
            throw error
        }
        // Opened again on every reload, so a refreshed database file (weekly, from geoipupdate) takes effect.
        let geoip: [GeoIPDatabase]
        do {
            geoip = try (config.geoip?.files ?? []).map { try GeoIPDatabase(path: $0) }
        } catch {
            if let redis, redis !== old?.redis { await redis.shutdown() }
            if let acme, acme !== old?.acme { acme.stop() }
            throw ReloadError(problems: ["geoip: \(error)"])
        }
        let authenticator: Authenticator?
        do {
            authenticator = try await config.auth.asyncMap {
                try await Authenticator.make($0, claimNames: config.routeClaimNames, eventLoop: group.next(), logger: logger)
            }
        } catch {
            if let redis, redis !== old?.redis { await redis.shutdown() }
            throw error
        }
        let upstreams: UpstreamSet
        do {
            upstreams = try UpstreamSet(configs: config.upstreams, logger: logger, metrics: metrics, previous: old?.upstreams)
        } catch {
            authenticator?.stop()
            if let redis, redis !== old?.redis { await redis.shutdown() }
            throw error
        }

        let exporter: OTLPExporter?
        if let old, let kept = old.exporter, kept.config == config.tracing {
            exporter = kept
        } else if let tracing = config.tracing {
            let made = OTLPExporter(config: tracing, eventLoop: group.next(), logger: logger, metrics: metrics)
            made.start()
            exporter = made
        } else {
            exporter = nil
        }
        var globalFilters: [any GatewayFilter] = [
            RequestIDFilter(config.requestID), TraceContextFilter(), SecurityHeadersFilter(config.securityHeaders),
        ]
        if let exporter { globalFilters.append(SpanExportFilter(exporter: exporter)) }
        if config.logging.accessLog {
            globalFilters.append(AccessLogFilter(logger: accessLogger ?? logger, headers: config.logging.accessLogHeaders, format: accessLogFormat))
        }
        // Top-level deny_ips / allow_ips: refused before routing (and logged), so a refused client learns nothing of the
        // routes either.
        let addresses = AddressRule(deny: config.denyIPs, allow: config.allowIPs)
        if !addresses.isEmpty { globalFilters.append(ClientAddressFilter(addresses)) }
        if !geoip.isEmpty { globalFilters.append(GeoIPFilter(databases: geoip, countries: config.countries, asns: config.asns)) }
        // One cache for every route that enables it; kept across reloads while its settings stay.
        let cache: ResponseCache?
        if !config.routes.contains(where: { $0.cache?.enabled == true }) {
            cache = nil
        } else if let old, let kept = old.cache, kept.config == config.cache, old.redis === redis {
            cache = kept
        } else {
            cache = ResponseCache(config: config.cache, shared: makeSharedCacheTier(config, redis: redis))
        }
        let replayGuard: any ReplayGuard
        if let old, old.redis === redis {
            replayGuard = old.replayGuard
        } else {
            replayGuard = redis.map { RedisReplayGuard(client: $0) } ?? MemoryReplayGuard()
        }
        let previousForwarders = previous?.active.forwarders
        let forwarders = try await LoopLocal<any UpstreamForwarder>.make(on: group) { loop, index in
            upstreams.makeForwarder(
                eventLoop: loop, loopIndex: index, loopCount: workers, logger: logger, previous: previousForwarders?.value(on: loop))
        }
        let upstreamIndex = Dictionary(config.upstreams.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
        // One introspection cache for all routes; a reload starts it afresh (as it does the verified-token cache).
        let introspector = config.auth?.introspection.flatMap { introspection in
            upstreamIndex[introspection.upstream].map {
                TokenIntrospector(
                    config: introspection, upstreamIndex: $0, forwarders: forwarders, logger: logger, requestIDHeader: config.requestID.header,
                    keptClaims: config.routeClaimNames)
            }
        }
        let oidc = config.auth?.oidc.flatMap { oidc in
            upstreamIndex[oidc.upstream].flatMap { index in
                authenticator?.oidcKeys.map {
                    OIDCLogin(
                        config: oidc, keys: $0, upstreamIndex: index, forwarders: forwarders, requestIDHeader: config.requestID.header,
                        claimNames: config.routeClaimNames)
                }
            }
        }
        var adaptiveFilters: [String: AdaptiveConcurrencyFilter] = [:]
        for route in config.routes {
            guard let settings = route.adaptiveConcurrency else { continue }
            let kept = old?.adaptiveFilters[route.name].flatMap { $0.settings == settings ? $0 : nil }
            adaptiveFilters[route.name] = kept ?? AdaptiveConcurrencyFilter(routeName: route.name, settings: settings, metrics: metrics)
        }
        // Per route: client addresses first (a refused one gets nothing else), then CORS (a browser's preflight
        // carries no credentials and is answered before any check), a retired API's 410, cross-origin protection (before credentials
        // are even looked at), then authentication and the authorization service (rate limits may key on the
        // consumer they establish), then limits.
        var upstreamTokens: [String: UpstreamToken] = [:]
        for upstream in config.upstreams {
            guard let settings = upstream.oauth2 else { continue }
            if let kept = old?.upstreamTokens[upstream.name], kept.config == settings {
                upstreamTokens[upstream.name] = kept
                continue
            }
            do {
                let token = try UpstreamToken(upstream: upstream.name, config: settings, eventLoop: group.next(), logger: logger, metrics: metrics)
                await token.start()
                upstreamTokens[upstream.name] = token
            } catch {
                for token in upstreamTokens.values where token !== old?.upstreamTokens[token.upstream] { token.stop() }
                authenticator?.stop()
                if let redis, redis !== old?.redis { await redis.shutdown() }
                throw ReloadError(problems: ["upstreams.\(upstream.name).oauth2.ca_file: \(error)"])
            }
        }
        var credentials = upstreamTokens.mapValues { $0 as any UpstreamCredentials }
        for upstream in config.upstreams {
            guard let settings = upstream.awsSigV4, let target = upstream.targets.first else { continue }
            credentials[upstream.name] = AWSRequestSigner(config: settings, target: target)
        }
        let routes = GatewayRuntime.compileRoutes(config, metrics: metrics, cache: cache, credentials: credentials) { route in
            var filters: [any GatewayFilter] = []
            let addresses = AddressRule(deny: route.denyIPs, allow: route.allowIPs)
            if !addresses.isEmpty { filters.append(ClientAddressFilter(addresses)) }
            if !route.countries.isEmpty || !route.asns.isEmpty { filters.append(GeoRuleFilter(countries: route.countries, asns: route.asns)) }
            if let cors = route.cors { filters.append(CORSFilter(cors)) }
            if let deprecation = route.deprecation { filters.append(DeprecationFilter(deprecation, routeName: route.name, metrics: metrics)) }
            if let csrf = route.effectiveCSRF(global: config.csrf) {
                filters.append(CSRFFilter(csrf, cors: route.cors, routeName: route.name, metrics: metrics, logger: logger))
            }
            if let auth = route.auth, let authenticator {
                filters.append(
                    AuthFilter(
                        routeName: route.name, config: auth, authenticator: authenticator, introspector: introspector, oidc: oidc, logger: logger,
                        metrics: metrics))
            }
            if let name = route.externalAuth, let service = config.externalAuth.first(where: { $0.name == name }),
                let index = upstreamIndex[service.upstream]
            {
                filters.append(
                    ExternalAuthFilter(
                        service: service, upstreamIndex: index, forwarders: forwarders, routeName: route.name, logger: logger, metrics: metrics,
                        requestIDHeader: config.requestID.header))
            }
            if !route.rateLimits.isEmpty {
                filters.append(
                    RateLimitFilter(
                        routeName: route.name, rules: route.rateLimits.map(RateLimitRule.init), store: rateLimitStore, logger: logger,
                        metrics: metrics, headers: route.rateLimitHeaders))
            }
            if let limit = route.concurrencyLimit {
                filters.append(ConcurrencyLimitFilter(routeName: route.name, config: limit, metrics: metrics))
            }
            if let fault = route.fault { filters.append(FaultInjectionFilter(fault, routeName: route.name, metrics: metrics)) }
            if let adaptive = adaptiveFilters[route.name] { filters.append(adaptive) }
            if let answer = route.answer {
                filters.append(RouteAnswerFilter(answer, stripPrefix: route.stripPrefix, upstreamTokenKeys: authenticator?.upstreamTokens?.keySet))
            }
            if !route.responseHeaders.isEmpty { filters.append(ResponseHeaderEditsFilter(route.responseHeaders)) }
            return filters
        } bodyCheck: { route in
            route.webhookSignature.map {
                WebhookSignatureCheck($0, routeName: route.name, logger: logger, metrics: metrics, replayGuard: replayGuard)
            }
        }
        let instanceID = old?.instanceID ?? HeaderRules.newLoopID()
        let runtime = GatewayRuntime(
            config: config, routes: routes, globalFilters: globalFilters, logger: logger, metrics: metrics, instanceID: instanceID,
            acmeChallenges: acme?.challenges)
        try await upstreams.startHealthChecks(on: group.next())
        let parts = Parts(
            config: config, upstreams: upstreams, authenticator: authenticator, redis: redis, rateLimitStore: rateLimitStore, exporter: exporter,
            cache: cache, adaptiveFilters: adaptiveFilters, accessLogFormat: accessLogFormat, instanceID: instanceID,
            replayGuard: replayGuard, acme: acme, upstreamTokens: upstreamTokens)
        return (parts, RuntimeHolder.Active(runtime: runtime, forwarders: forwarders))
    }

    /// Stops what `parts` holds that `keeping` does not reuse.
    private static func retire(_ parts: Parts, keeping: Parts?) async {
        if let keeping {
            await parts.upstreams.retire(replacedBy: keeping.upstreams)
        } else {
            await parts.upstreams.stopHealthChecks()
        }
        if parts.authenticator !== keeping?.authenticator { parts.authenticator?.stop() }
        if let redis = parts.redis, redis !== keeping?.redis { await redis.shutdown() }
        if let exporter = parts.exporter, exporter !== keeping?.exporter { await exporter.shutdown() }
        if let acme = parts.acme, acme !== keeping?.acme { acme.stop() }
        for (name, token) in parts.upstreamTokens where token !== keeping?.upstreamTokens[name] { token.stop() }
    }

    /// The ACME manager a config asks for: the previous one while nothing about it changed, else a new one (its
    /// placeholders written now, before listeners load their certificate files).
    private static func makeACMEManager(
        _ config: GatewayConfig, previous: ACMEManager?, redisChanged: Bool, redis: RedisClient?, eventLoop: EventLoop, logger: Logger,
        metrics: GatewayMetrics
    ) throws -> ACMEManager? {
        let certificates = config.acmeCertificates
        // With a shared store, an instance without certificates of its own still answers the others' challenges.
        guard let settings = config.acme, !certificates.isEmpty || settings.store == .redis else { return nil }
        if let previous, previous.config == settings, previous.certificates == certificates, !(redisChanged && settings.store == .redis) {
            return previous
        }
        let shared = settings.store == .redis ? redis.map { RedisKeyValueStore(client: $0, eventLoop: eventLoop) } : nil
        do {
            return try ACMEManager(
                config: settings, certificates: certificates, shared: shared, eventLoop: eventLoop, logger: logger, metrics: metrics)
        } catch {
            throw ReloadError(problems: ["acme.storage: \(error)"])
        }
    }

    /// Starts the ACME manager of `parts` unless `running` already runs it; new certificates reload the listeners'.
    private func startACME(_ parts: Parts, running: ACMEManager?) {
        guard let acme = parts.acme, acme !== running else { return }
        acme.start { [weak self] in
            guard let self else { return }
            let failures = self.reloadCertificates()
            if !failures.isEmpty { self.logger.error("acme: the new certificate could not be loaded", metadata: ["failures": "\(failures)"]) }
        }
    }

    private static func makeRedisClient(_ config: GatewayConfig, group: EventLoopGroup, logger: Logger) async throws -> RedisClient? {
        guard let redis = config.redis else { return nil }
        let url = try RedisURL.parse(redis.url).get()
        // With sentinels the URL's host names the master group; the master's address comes from them.
        var sentinels: RedisSentinels?
        if !redis.sentinels.isEmpty, case .tcp(let group, _) = url.endpoint {
            sentinels = RedisSentinels(
                masterName: group, nodes: redis.sentinels.map { ($0.host, $0.port) }, password: redis.sentinelPassword)
        }
        var tls: RedisTLS?
        if url.tls, case .tcp(let host, _) = url.endpoint {
            // Redis speaks no ALPN; its certificate is checked like an upstream's (ca_file or the system roots). A master
            // found through sentinels is checked against tls.server_name, or else its address.
            tls = RedisTLS(
                context: try UpstreamTLS.makeContext(redis.tls, applicationProtocols: []),
                serverName: sentinels == nil ? UpstreamTLS.serverName(host: host, settings: redis.tls) : redis.tls.serverName)
        }
        return try await RedisClient(
            url: url, poolSize: redis.poolSize, timeout: .milliseconds(Int64(redis.timeoutMs)), tls: tls, sentinels: sentinels,
            group: group, logger: logger)
    }

    /// The Redis tier behind the memory one when `cache.store` is `redis`.
    private static func makeSharedCacheTier(_ config: GatewayConfig, redis: RedisClient?) -> SharedCacheTier? {
        guard config.cache.store == .redis, let redis else { return nil }
        return RedisCacheTier(client: redis)
    }

    /// `memory`: this process's counters. `redis`: shared counters behind the `on_store_error` policy.
    private static func makeRateLimitStore(_ config: GatewayConfig, redis: RedisClient?, logger: Logger) -> RateLimitStore {
        guard config.rateLimiting.store == .redis, let redis else { return MemoryRateLimitStore() }
        return FailoverRateLimitStore(
            primary: RedisRateLimitStore(client: redis), mode: config.rateLimiting.onStoreError, logger: logger)
    }

    // MARK: Reload

    public struct ReloadError: Error, CustomStringConvertible {
        public let problems: [String]
        public var description: String { problems.joined(separator: "; ") }
    }

    /// Replaces the running config with `config` (already validated). Nothing changes when any part of it
    /// cannot be built (a certificate that does not load, a port that cannot be bound, ...): the error is
    /// logged, counted and thrown.
    public func reload(config newConfig: GatewayConfig) async throws {
        let busy = reloading.withLockedValue { reloading in
            defer { reloading = true }
            return reloading
        }
        guard !busy else { throw ReloadError(problems: ["a reload is already running"]) }
        defer { reloading.withLockedValue { $0 = false } }
        do {
            await discovery.prime(newConfig)
            try await apply(discovery.expand(newConfig))
            loadedConfig.withLockedValue { $0 = newConfig }
            metrics.configReload(outcome: "success")
            logger.info("config reloaded", metadata: ["routes": .stringConvertible(newConfig.routes.count)])
        } catch {
            metrics.configReload(outcome: "failure")
            logger.error("config reload failed; still running the previous config", metadata: ["error": "\(error)"])
            throw error
        }
    }

    private func apply(_ newConfig: GatewayConfig) async throws {
        if (newConfig.workers ?? System.coreCount) != workers {
            logger.warning("reload: a new worker count takes effect at the next restart", metadata: ["workers": .stringConvertible(workers)])
        }
        let running = loadedConfig.withLockedValue { $0.logging }
        if newConfig.logging.file != running.file || newConfig.logging.accessLogFile != running.accessLogFile
            || newConfig.logging.bufferBytes != running.bufferBytes || newConfig.logging.accessLogFormat != running.accessLogFormat
            || newConfig.logging.syslog != running.syslog
        {
            logger.warning("reload: new log outputs (logging.file, access_log_file, access_log_format, syslog, buffer_bytes) take effect at the next restart")
        }
        let oldParts = parts.withLockedValue { $0 }
        let oldActive = holder.current
        let (newParts, newActive) = try await Self.build(
            newConfig, previous: (oldParts, oldActive), group: group, workers: workers, metrics: metrics, logger: logger,
            accessLogger: accessLogger)
        let plan: GatewayServer.ListenerPlan
        do {
            plan = try await server.prepareListeners(newConfig.listeners)
        } catch {
            await Self.retire(newParts, keeping: oldParts)
            throw error
        }
        holder.replace(with: newActive)
        parts.withLockedValue { $0 = newParts }
        await server.commit(plan)
        await Self.retire(oldParts, keeping: newParts)
        startACME(newParts, running: oldParts.acme)
        await oldActive.forwarders.forEach { forwarder in
            (forwarder as? LoopForwarder)?.closeIdleConnections(notKeptBy: newParts.upstreams)
        }
    }

    /// Reads `configPath` again and reloads it (SIGHUP, `POST /reload`), then the TLS certificate files of
    /// listeners whose TLS settings did not change (a renewed certificate under the same file names).
    public func reloadFromFile() async throws {
        guard let configPath else { throw ReloadError(problems: ["this gateway was not started from a file"]) }
        let result = await ConfigCheck.load(path: configPath)
        guard let newConfig = result.config else {
            let problems = result.errors.map(\.description)
            metrics.configReload(outcome: "failure")
            logger.error("config reload failed; still running the previous config", metadata: ["errors": "\(problems.joined(separator: "; "))"])
            throw ReloadError(problems: problems)
        }
        for warning in result.warnings { logger.warning("config warning", metadata: ["path": "\(warning.path)", "detail": "\(warning.message)"]) }
        try await reload(config: newConfig)
        reloadCertificates()
    }

    /// Polls `configPath`, and the files it names that a reload reads again (included files, certificates, keys, the
    /// API keys and htpasswd files: `GatewayConfig.reloadedFiles`), while `reload.watch` is on, and reloads when their
    /// bytes change, or when a file appears in or leaves a folder an `include` wildcard lists. A file that fails to load is reported once (its bytes count as seen), not at every poll.
    private func startWatchingConfigFile() {
        guard let configPath else { return }
        let task = Task { [weak self] in
            func contents(_ config: GatewayConfig?) -> [String: Data?] {
                var files: [String: Data?] = [:]
                for path in [configPath] + (config?.reloadedFiles ?? []) { files[path] = FileManager.default.contents(atPath: path) }
                for pattern in config?.includePatterns ?? [] {
                    files[pattern] = Data(ConfigIncludes.files(matching: pattern).joined(separator: "\n").utf8)
                }
                return files
            }
            var seen = contents(self?.config)
            while !Task.isCancelled {
                guard let interval = self?.config.reload.intervalMs else { return }
                try? await Task.sleep(for: .milliseconds(interval))
                guard let self, self.config.reload.watch, !Task.isCancelled else { continue }
                let current = contents(self.config)
                guard current != seen else { continue }
                let changed = current.keys.filter { current[$0] != seen[$0] }.sorted()
                seen = current
                self.logger.info("config file changed; reloading", metadata: ["path": "\(changed.joined(separator: ", "))"])
                try? await self.reloadFromFile()
                seen = contents(self.config)
            }
        }
        watcher.withLockedValue { $0 = task }
    }

    /// Looks the upstreams' host names up again every `dns_refresh_ms` (the shortest of them) and, when their
    /// addresses changed, rebuilds the running config with the new ones (as a reload does: nothing in flight is
    /// disturbed, upstreams whose addresses stayed keep their connections and breakers).
    private func startDiscovery() {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                let interval = self.flatMap { DNSDiscovery.interval(of: $0.loadedConfig.withLockedValue { $0 }) }
                try? await Task.sleep(for: .milliseconds(interval ?? 1000))
                guard let self, !Task.isCancelled, interval != nil else { continue }
                let loaded = self.loadedConfig.withLockedValue { $0 }
                guard await self.discovery.refresh(loaded) else { continue }
                await self.applyDiscoveredAddresses()
            }
        }
        discoveryTask.withLockedValue { $0 = task }
    }

    /// Rebuilds the running config from the loaded one with the addresses DNS gave now. A reload running at the
    /// same time does it anyway (it expands with the latest addresses), so a busy gateway skips this.
    private func applyDiscoveredAddresses() async {
        let busy = reloading.withLockedValue { reloading in
            defer { reloading = true }
            return reloading
        }
        guard !busy else { return }
        defer { reloading.withLockedValue { $0 = false } }
        let loaded = loadedConfig.withLockedValue { $0 }
        do {
            try await apply(discovery.expand(loaded))
        } catch {
            logger.error("applying new upstream addresses failed; keeping the previous ones", metadata: ["error": "\(error)"])
        }
    }

    public struct PurgeError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Drops stored responses: one URL (absolute, or a path on any host), one route's, or everything.
    /// Returns how many URIs were dropped (from memory, or from Redis when it can tell more).
    public func purgeCache(url: String?, route: String?, tags: [String] = []) async throws -> Int {
        guard let cache = parts.withLockedValue({ $0.cache }) else { return 0 }
        let loop = group.next()
        if !tags.isEmpty { return try await cache.purge(tags: tags, on: loop).get() }
        if let url {
            guard let components = URLComponents(string: url), !components.percentEncodedPath.isEmpty else {
                throw PurgeError(description: "url must be an absolute URL (http://host/path?query) or a path")
            }
            var target = components.percentEncodedPath
            if let query = components.percentEncodedQuery { target += "?" + query }
            let hosts = components.host.map { [$0 + (components.port.map { ":\($0)" } ?? "")] } ?? []
            var dropped = 0
            for route in holder.current.runtime.routes.routes {
                guard let policy = route.cache else { continue }
                for host in hosts.isEmpty ? cache.hosts(path: target) : hosts {
                    let key = policy.key(host: host, target: target)
                    if cache.invalidate(key, on: loop) { dropped += 1 }
                }
            }
            return dropped
        }
        if let route, !config.routes.contains(where: { $0.name == route }) {
            throw PurgeError(description: "no route is named \"\(route)\"")
        }
        return try await cache.purge(route: route, on: loop).get()
    }

    /// Takes an upstream target out of rotation (requests in flight finish) or puts it back; the state survives
    /// reloads and DNS changes while the target exists. False when there is no such target.
    public func setDrained(upstream: String, target: String, drained: Bool) -> Bool {
        guard upstreams.setDrained(upstream: upstream, target: target, drained: drained) else { return false }
        logger.info(drained ? "upstream target drained" : "upstream target back in rotation", metadata: ["upstream": "\(upstream)", "target": "\(target)"])
        return true
    }

    /// The admin API's port (useful with port 0), when it is configured.
    public var adminPort: Int? { admin.withLockedValue { $0?.port } }

    /// Reads the TLS listeners' certificate files again: new handshakes use them, open connections keep
    /// theirs, a listener whose files fail keeps its old ones. Returns the errors by listener.
    @discardableResult
    public func reloadCertificates() -> [String: String] { server.reloadCertificates() }

    /// The certificates TLS listeners serve now (for the admin API's `/certificates`).
    public var certificates: [(listener: String, certificate: ServerTLS.Validity)] { server.certificates }

    /// The upstreams with `oauth2` and the seconds their current token has left (nil: none valid), for `/upstreams`.
    var upstreamTokens: [(upstream: String, secondsLeft: Int?)] {
        parts.withLockedValue { $0.upstreamTokens }.sorted { $0.key < $1.key }.map { ($0.key, $0.value.secondsLeft) }
    }

    /// The client-certificate revocation lists TLS listeners apply now (for `/certificates`).
    public var revocationLists: [(listener: String, list: RevocationList)] { server.revocationLists }

    // MARK: State

    /// The port a listener was bound to (useful with port 0).
    public func port(of listener: String) -> Int? { listeners.first { $0.name == listener }?.port }

    /// Upstream connections opened so far per upstream, summed over its targets and event loops (the counts
    /// `gateway_upstream_connections_opened_total` shows; tests read them to prove keep-alive reuse).
    public func upstreamConnectionsOpened() -> [String: Int] {
        upstreams.targetStates().reduce(into: [:]) { totals, state in totals[state.upstream, default: 0] += state.connectionsOpened }
    }

    public var openConnections: Int { server.openConnections }

    /// Whether the gateway should get traffic: not draining, and Redis answering when it is configured.
    public func readiness() async -> (ready: Bool, problems: [String]) {
        var problems: [String] = []
        if draining.load(ordering: .relaxed) { problems.append("draining") }
        if let redis, await redis.connectedCount() == 0 { problems.append("redis unreachable") }
        return (problems.isEmpty, problems)
    }

    /// Graceful stop: readiness turns false, no new connections, requests in flight finish within the drain
    /// timeout (HTTP/2 clients get GOAWAY), then everything closes.
    public func shutdown() async {
        draining.store(true, ordering: .relaxed)
        watcher.withLockedValue { $0 }?.cancel()
        discoveryTask.withLockedValue { $0 }?.cancel()
        let drain = config.limits.drainTimeoutMs
        logger.info("gateway stopping", metadata: ["drain_timeout_ms": .stringConvertible(drain)])
        await server.shutdown(timeout: .milliseconds(Int64(drain)))
        await admin.withLockedValue({ $0 })?.stop()
        await Self.retire(parts.withLockedValue { $0 }, keeping: nil)
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
