import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore

/// Every configured upstream, process-wide: the state all event loops share (breakers, health, in-flight
/// counts, retry budgets), the per-loop forwarders built on it, and the active health checks.
public final class UpstreamSet: Sendable {
    let upstreams: [UpstreamShared]
    private let healthCheckers: [HealthChecker]

    /// - Parameter configs: in the runtime's order (routes refer to upstreams by index).
    /// Throws when an upstream's TLS files cannot be used.
    public init(configs: [UpstreamConfig], logger: Logger) throws {
        upstreams = try configs.map { try UpstreamShared(config: $0, logger: logger) }
        healthCheckers = upstreams.compactMap { upstream in
            upstream.config.healthCheck.map { HealthChecker(upstream: upstream, settings: $0, logger: logger) }
        }
    }

    /// The forwarder of one event loop (call on that loop).
    public func makeForwarder(eventLoop: EventLoop, loopIndex: Int, loopCount: Int, logger: Logger) -> HTTP1Forwarder {
        HTTP1Forwarder(
            upstreams: upstreams.map {
                UpstreamRuntime(config: $0.config, shared: $0, eventLoop: eventLoop, loopIndex: loopIndex, loopCount: loopCount, logger: logger)
            },
            eventLoop: eventLoop)
    }

    /// Starts the active health checks (one timer per upstream that configures them).
    public func startHealthChecks(on eventLoop: EventLoop) async throws {
        for checker in healthCheckers { try await checker.start(on: eventLoop) }
    }

    public func stopHealthChecks() async {
        for checker in healthCheckers { await checker.stop() }
    }

    /// Every target with its health, breaker state and requests in flight (for the admin API and metrics).
    public func targetStates() -> [UpstreamTargetState] {
        upstreams.flatMap { $0.snapshot() }
    }
}

/// The forwarder of one event loop: owns that loop's upstream connection pools.
public final class HTTP1Forwarder: UpstreamForwarder {
    private let upstreams: [UpstreamRuntime]
    public let eventLoop: EventLoop

    init(upstreams: [UpstreamRuntime], eventLoop: EventLoop) {
        self.eventLoop = eventLoop
        self.upstreams = upstreams
    }

    public func makeCall(
        upstream: Int, head: RequestHead, framing: BodyFraming, preserveHost: Bool, requestID: String, clientIP: String,
        delegate: UpstreamCallDelegate
    ) -> UpstreamCall {
        let runtime = upstreams[upstream]
        return HTTP1UpstreamCall(
            upstream: runtime, head: head, framing: framing, preserveHost: preserveHost, requestID: requestID,
            hashKey: runtime.hashKey(headers: head.headers, clientIP: clientIP), delegate: delegate)
    }

    /// Connections opened per upstream name since start (for tests and, later, metrics).
    public var connectionsOpened: [String: Int] {
        var counts: [String: Int] = [:]
        for upstream in upstreams { counts[upstream.config.name, default: 0] += upstream.pools.reduce(0) { $0 + $1.connectionsOpened } }
        return counts
    }

    /// Closes every idle pooled connection (shutdown).
    public func closeIdleConnections() {
        for upstream in upstreams { for pool in upstream.pools { pool.closeAll() } }
    }
}
