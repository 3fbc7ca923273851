import GatewayConfig
import GatewayCore
import GatewayPolicy
import Logging
import NIOCore
import NIOPosix
import NIOTLS
import Synchronization

/// `listeners[].tls.passthrough`: reads the server name of a TLS connection's ClientHello (NIO's `SNIHandler`, which
/// buffers the bytes it read) and either relays the connection, still encrypted, to an upstream that terminates TLS
/// itself (a service that must see the client's certificate, a database, another team's ingress), or hands it to the
/// listener's own TLS termination. The ClientHello must arrive within `header_timeout_ms`.
enum TLSPassthrough {
    struct Context: Sendable {
        let listener: String
        let rules: [TLSConfig.Passthrough]
        let runtime: GatewayRuntime
        let client: IPAddress?
        let clientPort: Int?
        let local: SocketAddress?
        let limits: LimitsConfig
        let metrics: GatewayMetrics
        let logger: Logger
        /// Where the next connection's first try goes, per listener (round robin over an upstream's targets).
        let rotation: Rotation
    }

    final class Rotation: Sendable {
        private let next = Atomic<Int>(0)
        init() {}
        func take() -> Int { next.add(1, ordering: .relaxed).oldValue }
    }

    /// Adds the ClientHello reader; `terminate` sets up the listener's own TLS for names not passed through (nil: the
    /// listener has no certificates, and those connections are closed).
    static func configure(_ channel: Channel, _ context: Context, terminate: (() throws -> Void)?) throws {
        let deadline = channel.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(context.limits.headerTimeoutMs))) {
            channel.close(promise: nil)
        }
        let reader = SNIHandler { result in
            deadline.cancel()
            if case .hostname(let name) = result, let rule = context.rules.first(where: { $0.matches(name) }) {
                return relay(channel, serverName: name, rule: rule, context)
            }
            guard let terminate else {
                context.metrics.counter(
                    "gateway_passthrough_connections_total", [("listener", context.listener), ("upstream", "-"), ("outcome", "no_match")]
                ).increment()
                channel.close(promise: nil)
                return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
            }
            return channel.eventLoop.makeCompletedFuture { try terminate() }
        }
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(reader))
    }

    /// Connects to one of the rule's upstream targets (trying the next when one refuses) and glues the two connections
    /// together; the ClientHello read so far follows once the glue is in place.
    private static func relay(_ channel: Channel, serverName: String, rule: TLSConfig.Passthrough, _ context: Context) -> EventLoopFuture<Void> {
        let counter = { @Sendable (outcome: String) in
            context.metrics.counter(
                "gateway_passthrough_connections_total", [("listener", context.listener), ("upstream", rule.upstream), ("outcome", outcome)])
        }
        guard let upstream = context.runtime.config.upstreams.first(where: { $0.name == rule.upstream }), !upstream.targets.isEmpty else {
            counter("upstream_unavailable").increment()
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        let targets = upstream.targets.filter { !$0.backup } + upstream.targets.filter(\.backup)
        let first = context.rotation.take()
        let started = NIODeadline.now()
        // At most three targets are tried, each within the upstream's connect timeout.
        @Sendable func attempt(_ tried: Int) -> EventLoopFuture<(Channel, UpstreamTarget)> {
            let target = targets[(first + tried) % targets.count]
            return ClientBootstrap(group: channel.eventLoop)
                .connectTimeout(.milliseconds(Int64(upstream.connectTimeoutMs)))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: target.address ?? target.host, port: target.port)
                .map { ($0, target) }
                .flatMapError { error in
                    tried + 1 < min(targets.count, 3) ? attempt(tried + 1) : channel.eventLoop.makeFailedFuture(error)
                }
        }
        return attempt(0).assumeIsolated().flatMapThrowing { upstreamChannel, target in
            // The client may have left while the upstream connection was made: nothing to glue it to.
            guard channel.isActive else {
                upstreamChannel.close(promise: nil)
                throw ChannelError.ioOnClosedChannel
            }
            let log = Relayed(
                listener: context.listener, serverName: serverName, upstream: rule.upstream, target: "\(target.host):\(target.port)",
                client: context.client, started: started, logger: context.logger)
            let (clientSide, upstreamSide) = GlueHandler.pair(log: log)
            do {
                try upstreamChannel.pipeline.syncOperations.addHandler(upstreamSide)
                if rule.proxyProtocol, let line = proxyLine(client: context.client, clientPort: context.clientPort, local: context.local) {
                    upstreamChannel.write(upstreamChannel.allocator.buffer(string: line), promise: nil)
                }
                let sync = channel.pipeline.syncOperations
                let idle = TimeAmount.milliseconds(Int64(context.limits.tunnelIdleTimeoutMs))
                try sync.addHandler(IdleStateHandler(allTimeout: idle))
                try sync.addHandler(clientSide)
            } catch {
                upstreamChannel.close(promise: nil)
                throw error
            }
            counter("relayed").increment()
        }.nonisolated().flatMapError { error in
            // A client that left meanwhile is no upstream's fault.
            guard channel.isActive else { return channel.eventLoop.makeFailedFuture(error) }
            counter("upstream_unavailable").increment()
            context.logger.warning(
                "passthrough: no upstream target took the connection",
                metadata: ["listener": "\(context.listener)", "server_name": "\(serverName)", "upstream": "\(rule.upstream)", "error": "\(error)"])
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// PROXY protocol v1 (HAProxy's text form): `PROXY TCP4 <client> <gateway> <client port> <gateway port>`.
    static func proxyLine(client: IPAddress?, clientPort: Int?, local: SocketAddress?) -> String? {
        guard let client, let clientPort, let local, let localIP = local.ipAddress, let localPort = local.port else { return nil }
        let family: String
        switch client {
        case .v4: family = "TCP4"
        case .v6: family = "TCP6"
        }
        return "PROXY \(family) \(client) \(localIP) \(clientPort) \(localPort)\r\n"
    }
}

/// What a relayed connection logs when it ends.
struct Relayed {
    let listener: String
    let serverName: String
    let upstream: String
    let target: String
    let client: IPAddress?
    let started: NIODeadline
    let logger: Logger
}

/// One side of a relay: what one connection reads is written to the other, writes pace reads (a side reads again only
/// while its partner can take more), and either side closing closes both. The client side counts the bytes each way
/// and logs the connection when it ends.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Set on the client side only.
    private let log: Relayed?
    private var bytesIn = 0
    private var bytesOut = 0

    private init(log: Relayed?) { self.log = log }

    static func pair(log: Relayed) -> (client: GlueHandler, upstream: GlueHandler) {
        let client = GlueHandler(log: log)
        let upstream = GlueHandler(log: nil)
        client.partner = upstream
        upstream.partner = client
        return (client, upstream)
    }

    private func partnerWrite(_ buffer: ByteBuffer) {
        if log != nil { bytesOut += buffer.readableBytes }
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() { context?.flush() }

    private func partnerClose() { context?.close(promise: nil) }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    /// The first bytes: the ClientHello the SNI reader replays as it leaves, with no read-complete after them.
    private var sawFirstRead = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The upstream side may have asked to read before this side was in place.
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if log != nil { bytesIn += buffer.readableBytes }
        partner?.partnerWrite(buffer)
        if !sawFirstRead {
            sawFirstRead = true
            partner?.partnerFlush()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.partnerFlush() }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose()
        if let log {
            log.logger.info(
                "passthrough",
                metadata: [
                    "listener": "\(log.listener)", "server_name": "\(log.serverName)", "upstream": "\(log.upstream)", "target": "\(log.target)",
                    "client_ip": "\(log.client?.description ?? "-")", "bytes_in": "\(bytesIn)", "bytes_out": "\(bytesOut)",
                    "duration_ms": "\((NIODeadline.now() - log.started).nanoseconds / 1_000_000)",
                ])
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Nothing passed either way for tunnel_idle_timeout_ms.
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
