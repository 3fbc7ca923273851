import GatewayConfig
import GatewayCore
import GatewayPolicy
import GatewayTLS
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Client connections that are open, so a graceful stop can ask each to finish and then wait for them.
final class ConnectionTracker: Sendable {
    private let channels = Mutex<[ObjectIdentifier: Channel]>([:])

    func add(_ channel: Channel) {
        channels.withLock { $0[ObjectIdentifier(channel)] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = self.channels.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
        }
    }

    var count: Int { channels.withLock { $0.count } }
    var all: [Channel] { channels.withLock { Array($0.values) } }
}

/// The network edge: binds the listeners, builds each connection's HTTP/1 pipeline, and stops gracefully.
public final class GatewayServer: Sendable {
    public struct BoundListener: Sendable {
        public let name: String
        public let address: SocketAddress
        public var port: Int { address.port ?? 0 }
    }

    private let group: EventLoopGroup
    private let runtime: GatewayRuntime
    private let forwarders: LoopLocal<any UpstreamForwarder>
    private let tracker = ConnectionTracker()
    private let serverChannels = Mutex<[Channel]>([])
    private let logger: Logger
    /// The TLS state of each TLS listener, by listener name.
    private let tls: [String: ServerTLS]

    /// Reads every TLS listener's certificates; throws when one cannot be used.
    public init(group: EventLoopGroup, runtime: GatewayRuntime, forwarders: LoopLocal<any UpstreamForwarder>) throws {
        self.group = group
        self.runtime = runtime
        self.forwarders = forwarders
        self.logger = runtime.logger
        var tls: [String: ServerTLS] = [:]
        for listener in runtime.config.listeners {
            guard let settings = listener.tls else { continue }
            let serverTLS = try ServerTLS(listener: listener.name, settings: settings)
            if !serverTLS.prefersServerCiphers {
                logger.warning("TLS: the server's cipher order cannot be set; clients choose among the offered suites", metadata: ["listener": "\(listener.name)"])
            }
            tls[listener.name] = serverTLS
        }
        self.tls = tls
    }

    /// Reads every TLS listener's certificate and key files again (SIGHUP, admin API). New handshakes use the
    /// new files; open connections keep theirs. A listener whose files fail keeps its old certificates and
    /// logs the error. Returns the errors by listener name.
    @discardableResult
    public func reloadCertificates() -> [String: String] {
        var failures: [String: String] = [:]
        for (name, listener) in tls.sorted(by: { $0.key < $1.key }) {
            do {
                try listener.reload()
                logger.info("certificates reloaded", metadata: ["listener": "\(name)"])
            } catch {
                failures[name] = "\(error)"
                logger.error("certificate reload failed; keeping the previous certificates", metadata: ["listener": "\(name)", "error": "\(error)"])
            }
        }
        return failures
    }

    /// Binds every listener; throws (having closed what was bound) when one cannot be bound.
    public func start() async throws -> [BoundListener] {
        var bound: [BoundListener] = []
        do {
            for listener in runtime.config.listeners {
                let channel = try await bind(listener)
                serverChannels.withLock { $0.append(channel) }
                let address = channel.localAddress!
                bound.append(BoundListener(name: listener.name, address: address))
                logger.info(
                    "listening",
                    metadata: ["listener": "\(listener.name)", "address": "\(address.ipAddress ?? listener.address)", "port": .stringConvertible(address.port ?? 0)])
            }
        } catch {
            await closeListeners()
            throw error
        }
        return bound
    }

    private func bind(_ listener: ListenerConfig) async throws -> Channel {
        let runtime = self.runtime
        let forwarders = self.forwarders
        let tracker = self.tracker
        let limits = runtime.limits
        let trusted = runtime.trustedProxies
        let tls = self.tls[listener.name]
        let subjectHeader = listener.tls.flatMap { $0.clientAuth == .none ? nil : $0.clientSubjectHeader }
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { channel in
                tracker.add(channel)
                let peer = channel.remoteAddress.flatMap(IPAddress.init(socketAddress:))
                let info = ConnectionInfo(
                    listener: listener.name, peer: peer, isTLS: tls != nil,
                    peerIsTrustedProxy: peer.map(trusted.contains) ?? false, clientSubjectHeader: subjectHeader)
                return channel.eventLoop.makeCompletedFuture {
                    let makeResponder = { (clientSubject: String?) -> ConnectionResponder in
                        var info = info
                        info.clientCertificateSubject = clientSubject
                        return GatewayConnection(
                            runtime: runtime, forwarder: forwarders.value(on: channel.eventLoop), info: info,
                            eventLoop: channel.eventLoop, redirectHTTPSPort: listener.redirectHTTPSPort)
                    }
                    if let tls {
                        try TLSPipeline.configure(channel, tls: tls, limits: limits, makeResponder: makeResponder)
                    } else if listener.h2c {
                        try channel.pipeline.syncOperations.addHandler(
                            H2CPrefaceDetector { http2 in
                                if http2 {
                                    try HTTP2Pipeline.configure(channel, responder: makeResponder(nil), limits: limits)
                                } else {
                                    try HTTP1Pipeline.configure(channel.pipeline.syncOperations, responder: makeResponder(nil), limits: limits)
                                }
                            })
                    } else {
                        try HTTP1Pipeline.configure(channel.pipeline.syncOperations, responder: makeResponder(nil), limits: limits)
                    }
                }
            }
            .bind(host: listener.address, port: listener.port)
            .get()
    }

    /// Graceful stop: stop accepting, let requests in flight finish (up to `timeout`), close the rest.
    public func shutdown(timeout: TimeAmount) async {
        await closeListeners()
        for channel in tracker.all {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let deadline = NIODeadline.now() + timeout
        while tracker.count > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let remaining = tracker.all
        if !remaining.isEmpty {
            logger.warning("drain timeout: closing connections still open", metadata: ["connections": .stringConvertible(remaining.count)])
            for channel in remaining { channel.close(promise: nil) }
        }
        await forwarders.forEach { $0.closeIdleConnections() }
    }

    private func closeListeners() async {
        let channels = serverChannels.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for channel in channels { try? await channel.close() }
    }

    /// Open client connections (for tests and, later, metrics).
    public var openConnections: Int { tracker.count }
}

/// The HTTP/1.1 server pipeline: one handler that parses, dispatches and frames (see HTTP1ConnectionHandler).
enum HTTP1Pipeline {
    static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations, responder: ConnectionResponder, limits: LimitsConfig
    ) throws {
        try pipeline.addHandler(
            HTTP1ConnectionHandler(
                responder: responder, maxHeaderBytes: limits.maxHeaderBytes,
                idleTimeout: .milliseconds(Int64(limits.idleTimeoutMs)),
                headerTimeout: .milliseconds(Int64(limits.headerTimeoutMs))))
    }
}

extension IPAddress {
    /// The IP of a socket address (nil for Unix sockets).
    init?(socketAddress: SocketAddress) {
        switch socketAddress {
        case .v4(let address):
            self = .v4(UInt32(bigEndian: address.address.sin_addr.s_addr))
        case .v6(let address):
            var raw = address.address.sin6_addr
            let bytes = withUnsafeBytes(of: &raw) { Array($0) }
            self.init(bytes: bytes)
        case .unixDomainSocket:
            return nil
        }
    }
}
