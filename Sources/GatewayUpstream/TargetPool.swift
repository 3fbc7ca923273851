import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import GatewayTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// The keep-alive connections to one upstream target on one event loop (for an `h2` target: its HTTP/2
/// session, whose streams carry the requests).
///
/// Each event loop has its own pools, so a client connection and the upstream connection serving it
/// share a thread: no locks, no hops. The pure `IdleConnectionPool` decides reuse and expiry.
final class TargetPool {
    let shared: TargetShared
    let target: UpstreamTarget
    /// `host:port`, computed once: it goes into Host headers and log lines.
    let authority: String
    /// The target's address when it is an IP literal, a discovered address or a Unix socket (made once); nil means resolve on
    /// connect.
    private let address: SocketAddress?
    let eventLoop: EventLoop
    private let connectTimeout: TimeAmount
    /// TLS for an `https://` target, with the SNI name to send.
    private let tls: (context: NIOSSLContext, serverName: String?)?
    private var idle: IdleConnectionPool<UpstreamConnection>
    private var sweep: Scheduled<Void>?
    /// For an `h2` target: the HTTP/2 connection the requests share (nil for HTTP/1.1 targets).
    private var session: HTTP2Session?
    /// The upstream this pool belongs to (it owns the pool), for the connection cap.
    private unowned let runtime: UpstreamRuntime
    /// The gathering buffer this pool's connections share for their writes (see `WriteCoalescer`).
    let writeScratch = WriteScratch()
    /// `pool.max_requests_per_connection` and `pool.max_connection_age_ms` (nil: no limit).
    let maxRequestsPerConnection: Int?
    let maxConnectionAgeNanos: UInt64?

    init(shared: TargetShared, runtime: UpstreamRuntime) {
        self.shared = shared
        self.target = shared.target
        self.authority = shared.authority
        self.address = target.socketAddress
        self.eventLoop = runtime.eventLoop
        self.connectTimeout = runtime.connectTimeout
        tls = runtime.shared.tlsContext(for: shared.target).map { ($0, UpstreamTLS.serverName(for: shared.target, settings: runtime.config.tls)) }
        self.idle = IdleConnectionPool(
            maxIdle: runtime.config.pool.maxIdlePerTarget,
            idleTimeoutNanos: UInt64(runtime.config.pool.idleTimeoutMs) * 1_000_000)
        self.runtime = runtime
        self.maxRequestsPerConnection = runtime.config.pool.maxRequestsPerConnection
        self.maxConnectionAgeNanos = runtime.config.pool.maxConnectionAgeMs.map { UInt64($0) * 1_000_000 }
        if shared.target.httpProtocol == .h2 {
            session = HTTP2Session(
                pool: self, tls: tls, connectTimeout: connectTimeout, handshakeTimeout: runtime.readTimeout,
                idleTimeout: .milliseconds(Int64(runtime.config.pool.idleTimeoutMs)))
        }
    }

    /// Requests to this target are streams on one HTTP/2 connection: they never wait for a connection slot.
    var isHTTP2: Bool { session != nil }

    var index: Int { shared.index }

    /// The most recently parked live connection, if any.
    func takeIdle() -> UpstreamConnection? {
        while true {
            let now = EventClock.now().uptimeNanoseconds
            let (connection, expired) = idle.take(now: now)
            for stale in expired { stale.close() }
            guard let connection else { return nil }
            if connection.isClosed { continue }
            if isTooOld(connection, now: now) {
                connection.close()
                continue
            }
            return connection
        }
    }

    /// Past `pool.max_connection_age_ms`: not to be reused.
    private func isTooOld(_ connection: UpstreamConnection, now: UInt64) -> Bool {
        guard let age = maxConnectionAgeNanos else { return false }
        return now &- connection.openedAt >= age
    }

    /// A new link to the target: a new HTTP/1.1 connection (holding a slot of the upstream's connection cap
    /// from now until it closes or fails to connect), or a new stream on the HTTP/2 session.
    func connect() -> EventLoopFuture<any UpstreamLink> {
        if let session { return session.openStream() }
        let connection = UpstreamConnection(pool: self)
        connectionStarted()
        // The initializer runs on this pool's own event loop (the bootstrap's group is that one loop).
        let boundConnection = NIOLoopBound(connection, eventLoop: eventLoop)
        let tls = self.tls
        return openChannel { channel in
            if let tls {
                // Writes wait in the TLS handler until the handshake is done; a failed handshake
                // (an untrusted certificate, say) ends the connection before any response: a 502.
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
            }
            try channel.pipeline.syncOperations.addHandler(boundConnection.value)
        }.assumeIsolated().map { _ -> any UpstreamLink in connection }.flatMapErrorThrowing { error in
            connection.connectFailed()
            throw error
        }.nonisolated()
    }

    /// Connects to the target (within connect_timeout_ms, Nagle off); `configure` sets up the new channel's
    /// pipeline, on this pool's event loop.
    func openChannel(configure: @escaping @Sendable (Channel) throws -> Void) -> EventLoopFuture<Channel> {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try configure(channel) } }
        if let address { return bootstrap.connect(to: address) }
        return bootstrap.connect(host: target.connectHost, port: target.port)
    }

    /// A connection to the target is being opened: it counts against the upstream's cap until it ends.
    func connectionStarted() {
        shared.connectionsOpened.wrappingAdd(1, ordering: .relaxed)
        shared.openConnections.wrappingAdd(1, ordering: .relaxed)
        runtime.connectionOpened()
    }

    /// A connection ended (or failed to open) without being an idle pooled one.
    func connectionFinished() {
        shared.openConnections.wrappingSubtract(1, ordering: .relaxed)
        runtime.connectionEnded()
    }

    /// Returns a connection that finished an exchange cleanly; one that has served its share (by requests or
    /// age) is closed instead, and the next request opens a fresh one, perhaps to another instance behind the name.
    func park(_ connection: UpstreamConnection) {
        guard !connection.isClosed else { return }
        if let limit = maxRequestsPerConnection, connection.requestsServed >= limit { return connection.close() }
        if isTooOld(connection, now: EventClock.now().uptimeNanoseconds) { return connection.close() }
        if let evicted = idle.park(connection, now: EventClock.now().uptimeNanoseconds) { evicted.close() }
        scheduleSweep()
        runtime.connectionParked()
    }

    /// A connection of this pool closed (or never connected): it leaves the idle list and frees its slot.
    func connectionEnded(_ connection: UpstreamConnection) {
        if connection.call == nil { idle.remove(connection) }  // only an unused connection can be parked
        shared.openConnections.wrappingSubtract(1, ordering: .relaxed)
        runtime.connectionEnded()
    }

    func closeAll() {
        session?.closeWhenIdle()
        sweep?.cancel()
        sweep = nil
        for connection in idle.drain() { connection.close() }
    }

    private func scheduleSweep() {
        guard sweep == nil, let due = idle.nextExpiry else { return }
        let delay = TimeAmount.nanoseconds(Int64(due &- min(due, NIODeadline.now().uptimeNanoseconds)))
        sweep = eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            self.sweep = nil
            for connection in self.idle.expire(now: NIODeadline.now().uptimeNanoseconds) { connection.close() }
            self.scheduleSweep()
        }
    }
}

extension UpstreamTarget {
    /// Where to connect without a lookup: the Unix socket, an IP literal or a discovered address; nil for a host name.
    var socketAddress: SocketAddress? {
        if let socketPath { return try? SocketAddress(unixDomainSocketPath: socketPath) }
        guard IPAddress(connectHost) != nil else { return nil }
        return try? SocketAddress(ipAddress: connectHost, port: port)
    }
}
