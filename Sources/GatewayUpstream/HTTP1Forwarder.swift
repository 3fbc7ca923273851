import GatewayConfig
import GatewayCore
import GatewayPolicy
import Logging
import GatewayHTTP
import NIOCore

/// One upstream (as configured) on one event loop: its targets' pools and the balancer over them.
final class UpstreamRuntime {
    let config: UpstreamConfig
    let readTimeout: TimeAmount
    let pools: [TargetPool]
    let logger: Logger
    private var balancer: RoundRobin

    init(config: UpstreamConfig, eventLoop: EventLoop, loopIndex: Int, logger: Logger) {
        self.config = config
        self.readTimeout = .milliseconds(Int64(config.readTimeoutMs))
        self.pools = config.targets.map { TargetPool(target: $0, config: config, eventLoop: eventLoop, logger: logger) }
        self.logger = logger
        // Loops start at different targets so that, across loops, the first requests spread out.
        self.balancer = RoundRobin(count: max(1, pools.count), start: loopIndex)
    }

    func pickTarget() -> TargetPool { pools[balancer.pick()] }
}

/// The forwarder of one event loop: owns that loop's upstream connection pools.
public final class HTTP1Forwarder: UpstreamForwarder {
    private let upstreams: [UpstreamRuntime]
    public let eventLoop: EventLoop

    /// - Parameter upstreams: in the runtime's order (routes refer to them by index).
    public init(upstreams: [UpstreamConfig], eventLoop: EventLoop, loopIndex: Int, logger: Logger) {
        self.eventLoop = eventLoop
        self.upstreams = upstreams.map { UpstreamRuntime(config: $0, eventLoop: eventLoop, loopIndex: loopIndex, logger: logger) }
    }

    public func makeCall(
        upstream: Int, head: RequestHead, framing: BodyFraming, preserveHost: Bool, requestID: String,
        delegate: UpstreamCallDelegate
    ) -> UpstreamCall {
        HTTP1UpstreamCall(
            upstream: upstreams[upstream], head: head, framing: framing, preserveHost: preserveHost,
            requestID: requestID, delegate: delegate)
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
