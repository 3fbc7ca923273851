import CoreMetrics
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers
import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import GatewayTLS
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Client connections that are open, so a graceful stop can ask each to finish and then wait for them.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: Channel] = [:]
        var counter = ConnectionCounter()
    }

    private let state = NIOLockedValueBox(State())

    /// Admits a new connection against the limits (and tracks it until it closes), or says why not.
    func admit(_ channel: Channel, from address: IPAddress?, limits: LimitsConfig) -> ConnectionCounter.Verdict {
        let verdict = state.withLockedValue { state in
            let verdict = state.counter.admit(address, maxTotal: limits.maxConnections, maxPerAddress: limits.maxConnectionsPerIP)
            if verdict == .admitted { state.channels[ObjectIdentifier(channel)] = channel }
            return verdict
        }
        guard verdict == .admitted else { return verdict }
        let countedPerAddress = limits.maxConnectionsPerIP > 0
        channel.closeFuture.whenComplete { [self] _ in
            self.state.withLockedValue { state in
                state.channels.removeValue(forKey: ObjectIdentifier(channel))
                state.counter.release(address, countedPerAddress: countedPerAddress)
            }
        }
        return verdict
    }

    var count: Int { state.withLockedValue { $0.channels.count } }
    var all: [Channel] { state.withLockedValue { Array($0.channels.values) } }
}

/// Lets a message through at most once per interval.
final class LogThrottle: Sendable {
    private let last = Atomic<Int64>(Int64.min / 2)
    private let interval: Int64

    init(interval: TimeAmount) { self.interval = interval.nanoseconds }

    func shouldLog(now: NIODeadline) -> Bool {
        let nanos = Int64(now.uptimeNanoseconds)
        let previous = last.load(ordering: .relaxed)
        guard nanos - previous >= interval else { return false }
        return last.compareExchange(expected: previous, desired: nanos, ordering: .relaxed).exchanged
    }
}

/// One bound listener: its socket, its settings and its TLS state. Settings and TLS may be replaced by a
/// reload; each new connection reads them when it is accepted.
final class ListenerState: Sendable {
    struct Settings: Sendable {
        let config: ListenerConfig
        let tls: ServerTLS?
    }

    let name: String
    private let current: NIOLockedValueBox<Settings>
    let channel: NIOLockedValueBox<Channel?> = NIOLockedValueBox(nil)
    /// For a Unix socket: the file's device and inode as bound, so closing removes the file only while it is still
    /// this listener's (the next version may have bound a new one at the same path meanwhile).
    let socketFile = NIOLockedValueBox<(device: UInt64, inode: UInt64)?>(nil)
    let connectionsAccepted: Counter
    let activeConnections: Meter
    /// Refused connections are logged at most every few seconds (an attack must not flood the log).
    let rejectionLog = LogThrottle(interval: .seconds(5))
    /// `tls.passthrough`: which upstream target a relayed connection tries first.
    let passthroughRotation = TLSPassthrough.Rotation()

    init(config: ListenerConfig, tls: ServerTLS?, metrics: GatewayMetrics) {
        self.name = config.name
        self.current = NIOLockedValueBox(Settings(config: config, tls: tls))
        self.connectionsAccepted = metrics.counter("gateway_connections_total", [("listener", config.name)])
        self.activeConnections = metrics.meter("gateway_active_connections", [("listener", config.name)])
    }

    var settings: Settings { current.withLockedValue { $0 } }

    func update(_ settings: Settings) { current.withLockedValue { $0 = settings } }
}

/// The network edge: binds the listeners, builds each connection's pipeline (TLS, HTTP/1.1 or HTTP/2),
/// applies listener changes from a reload, and stops gracefully.
public final class GatewayServer: Sendable {
    public struct BoundListener: Sendable {
        public let name: String
        public let address: SocketAddress
        public var port: Int { address.port ?? 0 }
    }

    private let group: EventLoopGroup
    private let holder: RuntimeHolder
    private let metrics: GatewayMetrics
    private let tracker = ConnectionTracker()
    private let listeners = NIOLockedValueBox<[String: ListenerState]>([:])
    private let logger: Logger
    /// Each loop's gathering buffer for HTTP/1.1 responses (see `WriteCoalescer`).
    private let writeScratch: LoopLocal<WriteScratch>

    public init(group: EventLoopGroup, holder: RuntimeHolder, metrics: GatewayMetrics = .disabled) {
        self.group = group
        self.writeScratch = LoopLocal(loops: Array(group.makeIterator())) { _ in WriteScratch() }
        self.holder = holder
        self.metrics = metrics
        self.logger = holder.current.runtime.logger
    }

    /// Reads every TLS listener's certificate and key files again (SIGHUP, admin API). New handshakes use the
    /// new files; open connections keep theirs. A listener whose files fail keeps its old certificates and
    /// logs the error. Returns the errors by listener name.
    @discardableResult
    public func reloadCertificates() -> [String: String] {
        var failures: [String: String] = [:]
        let states = listeners.withLockedValue { Array($0.values) }.sorted { $0.name < $1.name }
        for state in states {
            guard let tls = state.settings.tls else { continue }
            do {
                try tls.reload()
                recordCertificateExpiry(state)
                logger.info("certificates reloaded", metadata: ["listener": "\(state.name)"])
            } catch {
                failures[state.name] = "\(error)"
                logger.error("certificate reload failed; keeping the previous certificates", metadata: ["listener": "\(state.name)", "error": "\(error)"])
            }
        }
        return failures
    }

    /// Binds every listener of the current config; throws (having closed what was bound) when one cannot be
    /// bound or its certificates cannot be used.
    public func start() async throws -> [BoundListener] {
        let plan = try await prepare(holder.current.runtime.config.listeners)
        return plan.added.map { BoundListener(name: $0.name, address: $0.address) }
    }

    /// Every TLS listener's certificates as loaded now (after the last successful reload), listeners by name.
    public var certificates: [(listener: String, certificate: ServerTLS.Validity)] {
        listeners.withLockedValue { Array($0.values) }.sorted { $0.name < $1.name }.flatMap { state in
            (state.settings.tls?.certificateValidity ?? []).map { (state.name, $0) }
        }
    }

    /// The client-certificate revocation lists TLS listeners apply now (`client_crl`).
    public var revocationLists: [(listener: String, list: RevocationList)] {
        listeners.withLockedValue { Array($0.values) }.sorted { $0.name < $1.name }.compactMap { state in
            state.settings.tls?.revocationList.map { (state.name, $0) }
        }
    }

    /// The listeners as they are now.
    public var boundListeners: [BoundListener] {
        listeners.withLockedValue { states in
            states.values.compactMap { state in
                state.channel.withLockedValue { $0?.localAddress }.map { BoundListener(name: state.name, address: $0) }
            }
        }.sorted { $0.name < $1.name }
    }

    /// What a reload changes at the edge, prepared without disturbing anything: new sockets are bound and
    /// new TLS states loaded. `commit()` puts it in place; `abandon()` closes what was opened.
    public final class ListenerPlan: Sendable {
        fileprivate let added: [(name: String, address: SocketAddress)]
        fileprivate let newStates: [ListenerState]
        fileprivate let updates: [(ListenerState, ListenerState.Settings)]
        fileprivate let removed: [ListenerState]

        fileprivate init(
            added: [(name: String, address: SocketAddress)], newStates: [ListenerState], updates: [(ListenerState, ListenerState.Settings)],
            removed: [ListenerState]
        ) {
            self.added = added
            self.newStates = newStates
            self.updates = updates
            self.removed = removed
        }
    }

    /// Loads TLS for every listener of `configs` and binds those that are new (or moved address or port).
    /// Nothing changes for running listeners until `commit`.
    public func prepareListeners(_ configs: [ListenerConfig]) async throws -> ListenerPlan {
        let current = listeners.withLockedValue { $0 }
        var fresh: [ListenerConfig] = []
        var updates: [(ListenerState, ListenerState.Settings)] = []
        var kept: Set<String> = []
        var loadedTLS: [String: ServerTLS] = [:]
        for config in configs {
            // A listener that only passes TLS through (`passthrough`, no certificates) terminates nothing.
            if let tls = config.tls, !tls.certificates.isEmpty {
                // Unchanged TLS settings keep their state (and a SIGHUP-reloaded certificate).
                if let state = current[config.name], state.settings.config.tls == tls, let existing = state.settings.tls {
                    loadedTLS[config.name] = existing
                } else {
                    loadedTLS[config.name] = try makeTLS(config.name, tls)
                }
            }
            if let state = current[config.name], state.settings.config.address == config.address, state.settings.config.port == config.port,
                state.settings.config.socketPath == config.socketPath
            {
                kept.insert(config.name)
                updates.append((state, ListenerState.Settings(config: config, tls: loadedTLS[config.name])))
            } else {
                fresh.append(config)
            }
        }
        var newStates: [ListenerState] = []
        var added: [(name: String, address: SocketAddress)] = []
        do {
            for config in fresh {
                let state = ListenerState(config: config, tls: loadedTLS[config.name], metrics: metrics)
                let channel = try await bind(state)
                state.channel.withLockedValue { $0 = channel }
                newStates.append(state)
                added.append((config.name, channel.localAddress!))
            }
        } catch {
            for state in newStates { try? await state.channel.withLockedValue({ $0 })?.close() }
            throw error
        }
        let removed = current.values.filter { !kept.contains($0.name) }
        return ListenerPlan(added: added, newStates: newStates, updates: updates, removed: removed)
    }

    /// Puts a prepared plan in place: new listeners accept, changed settings apply to new connections,
    /// removed listeners stop accepting (their open connections finish normally).
    public func commit(_ plan: ListenerPlan) async {
        for (state, settings) in plan.updates {
            state.update(settings)
            recordCertificateExpiry(state)
        }
        for state in plan.newStates { recordCertificateExpiry(state) }
        listeners.withLockedValue { states in
            for state in plan.removed { states.removeValue(forKey: state.name) }
            for state in plan.newStates { states[state.name] = state }
        }
        for state in plan.newStates {
            let address = state.channel.withLockedValue { $0?.localAddress }
            if let path = state.settings.config.socketPath {
                logger.info("listening", metadata: ["listener": "\(state.name)", "path": "\(path)"])
            } else {
                logger.info(
                    "listening",
                    metadata: ["listener": "\(state.name)", "address": "\(address?.ipAddress ?? state.settings.config.address)", "port": .stringConvertible(address?.port ?? 0)])
            }
        }
        for state in plan.removed {
            await Self.close(state)
            logger.info("listener closed", metadata: ["listener": "\(state.name)"])
        }
    }

    private func recordCertificateExpiry(_ state: ListenerState) {
        for validity in state.settings.tls?.certificateValidity ?? [] {
            metrics.certificateExpiry(listener: state.name, certificate: validity.file, notAfter: validity.notAfter)
        }
        for read in state.settings.tls?.revocationList?.issuers ?? [] {
            guard let nextUpdate = read.nextUpdate else { continue }
            metrics.revocationListNextUpdate(listener: state.name, issuer: read.name, nextUpdate: Int64(nextUpdate.timeIntervalSince1970))
        }
    }

    public func abandon(_ plan: ListenerPlan) async {
        for state in plan.newStates { await Self.close(state) }
    }

    private func prepare(_ configs: [ListenerConfig]) async throws -> ListenerPlan {
        let plan = try await prepareListeners(configs)
        await commit(plan)
        return plan
    }

    private func makeTLS(_ name: String, _ settings: TLSConfig) throws -> ServerTLS {
        let serverTLS = try ServerTLS(listener: name, settings: settings)
        if !serverTLS.prefersServerCiphers {
            logger.warning("TLS: the server's cipher order cannot be set; clients choose among the offered suites", metadata: ["listener": "\(name)"])
        }
        return serverTLS
    }

    private func bind(_ state: ListenerState) async throws -> Channel {
        let holder = self.holder
        let tracker = self.tracker
        let config = state.settings.config
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Off unless asked: with it on, another process (the next version, started before this one drains)
            // can bind the same port and the kernel shares new connections between them.
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: config.reusePort ? 1 : 0)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { [logger, metrics, writeScratch] channel in
                let address = channel.remoteAddress.flatMap(IPAddress.init(socketAddress:))
                let verdict = tracker.admit(channel, from: address, limits: holder.current.runtime.limits)
                guard verdict == .admitted else {
                    // Over max_connections or max_connections_per_ip: closed at once, counted, logged sparingly.
                    let reason = verdict == .tooManyConnections ? "max_connections" : "max_connections_per_ip"
                    metrics.counter("gateway_connections_rejected_total", [("listener", state.name), ("reason", reason)]).increment()
                    if state.rejectionLog.shouldLog(now: NIODeadline.now()) {
                        logger.warning(
                            "connections refused at a limit", metadata: ["listener": "\(state.name)", "limit": "\(reason)", "peer": "\(address?.description ?? "-")"])
                    }
                    return channel.close()
                }
                state.connectionsAccepted.increment()
                state.activeConnections.increment()
                channel.closeFuture.whenComplete { _ in state.activeConnections.decrement() }
                // Read at accept: a reload changes settings for new connections only.
                let settings = state.settings
                let runtime = holder.current.runtime
                let limits = runtime.limits
                let listener = settings.config
                let tls = settings.tls
                let peer = channel.remoteAddress.flatMap(IPAddress.init(socketAddress:))
                let subjectHeader = listener.tls.flatMap { $0.clientAuth == .none ? nil : $0.clientSubjectHeader }
                let certificateHeader = listener.tls.flatMap { $0.clientAuth == .none ? nil : $0.clientCertHeader }
                let trusted = runtime.trustedProxies
                // A Unix socket's peer has no address: it is trusted when trusted_proxies says "unix:".
                let isTrusted = { (client: IPAddress?) in client.map(trusted.contains) ?? (listener.socketPath != nil && runtime.trustsUnixPeers) }
                if listener.proxyProtocol && !isTrusted(peer) {
                    // Only a trusted load balancer may say who the client is.
                    metrics.counter("gateway_connections_rejected_total", [("listener", state.name), ("reason", "proxy_protocol_untrusted")]).increment()
                    return channel.close()
                }
                // The pipeline, for the client the connection comes from (a PROXY header may name another than the peer).
                let configure = { (client: IPAddress?) throws -> Void in
                    let info = ConnectionInfo(
                        listener: listener.name, peer: client, isTLS: tls != nil,
                        peerIsTrustedProxy: isTrusted(client), clientSubjectHeader: subjectHeader, clientCertHeader: certificateHeader)
                    let makeResponder = { (clientCertificate: PeerCertificate?) -> ConnectionResponder in
                        var info = info
                        info.clientCertificate = clientCertificate
                        return GatewayConnection(
                            holder: holder, info: info, eventLoop: channel.eventLoop, redirectHTTPSPort: listener.redirectHTTPSPort)
                    }
                    let terminate = tls.map { tls in
                        {
                            try TLSPipeline.configure(
                                channel, tls: tls, limits: limits, scratch: writeScratch, sendsCertificate: certificateHeader != nil,
                                makeResponder: makeResponder)
                        }
                    }
                    if let rules = listener.tls?.passthrough, !rules.isEmpty {
                        let context = TLSPassthrough.Context(
                            listener: listener.name, rules: rules, runtime: runtime, client: client, clientPort: channel.remoteAddress?.port,
                            local: channel.localAddress, limits: limits, metrics: metrics, logger: logger, rotation: state.passthroughRotation)
                        try TLSPassthrough.configure(channel, context, terminate: terminate)
                    } else if let terminate {
                        try terminate()
                    } else if listener.h2c {
                        try channel.pipeline.syncOperations.addHandler(
                            H2CPrefaceDetector(timeout: .milliseconds(Int64(limits.headerTimeoutMs))) { http2 in
                                if http2 {
                                    try HTTP2Pipeline.configure(channel, responder: makeResponder(nil), limits: limits)
                                } else {
                                    try HTTP1Pipeline.configure(
                                        channel.pipeline.syncOperations, responder: makeResponder(nil), limits: limits, scratch: writeScratch)
                                }
                            })
                    } else {
                        try HTTP1Pipeline.configure(
                            channel.pipeline.syncOperations, responder: makeResponder(nil), limits: limits, scratch: writeScratch)
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    if listener.proxyProtocol {
                        // The balancer's own connections (LOCAL, health checks) name no client: the peer stands.
                        let reader = ProxyProtocolReader(timeout: .milliseconds(Int64(limits.headerTimeoutMs))) { source in
                            try configure(source ?? peer)
                        }
                        try channel.pipeline.syncOperations.addHandler(reader)
                    } else {
                        try configure(peer)
                    }
                }
            }
        if let path = config.socketPath {
            // Bound here rather than by NIO, which removes the file when its channel closes, whoever's it is by then.
            let socket = try Self.bindUnixSocket(path: path, mode: config.socketMode)
            state.socketFile.withLockedValue { $0 = Self.fileIdentity(path) }
            do {
                return try await bootstrap.withBoundSocket(socket).get()
            } catch {
                Glibc.close(socket)
                throw error
            }
        }
        return try await bootstrap.bind(host: config.address, port: config.port).get()
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
        await holder.current.forwarders.forEach { $0.closeIdleConnections() }
    }

    private func closeListeners() async {
        let states = listeners.withLockedValue { states in
            defer { states.removeAll() }
            return Array(states.values)
        }
        for state in states { await Self.close(state) }
    }

    /// Stops a listener accepting; a Unix socket's file goes with it (nothing answers there any more), unless another
    /// process has bound a new one at that path.
    private static func close(_ state: ListenerState) async {
        try? await state.channel.withLockedValue({ $0 })?.close()
        if let path = state.settings.config.socketPath, let bound = state.socketFile.withLockedValue({ $0 }), let now = Self.fileIdentity(path),
            now == bound
        {
            unlink(path)
        }
    }

    /// A Unix stream socket bound at `path` with the file permissions `mode`. A socket file already there (left by a
    /// previous run, or the version this one replaces) is replaced; any other kind of file is an error, never removed.
    static func bindUnixSocket(path: String, mode: Int) throws -> CInt {
        var existing = stat()
        if lstat(path, &existing) == 0 {
            guard existing.st_mode & S_IFMT == S_IFSOCK else { throw IOError(errnoCode: EEXIST, reason: "\(path) exists and is not a socket") }
            unlink(path)
        }
        let address = try SocketAddress(unixDomainSocketPath: path)
        let socket = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        let bound = address.withSockAddr { pointer, size in Glibc.bind(socket, pointer, socklen_t(size)) }
        guard bound == 0, chmod(path, mode_t(mode)) == 0 else {
            let code = errno
            Glibc.close(socket)
            throw IOError(errnoCode: code, reason: "binding \(path)")
        }
        return socket
    }

    static func fileIdentity(_ path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// Open client connections (for tests and the admin API).
    public var openConnections: Int { tracker.count }
}

/// The HTTP/1.1 server pipeline: one handler that parses, dispatches and frames (see HTTP1ConnectionHandler).
enum HTTP1Pipeline {
    static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations, responder: ConnectionResponder, limits: LimitsConfig,
        scratch: LoopLocal<WriteScratch>
    ) throws {
        try pipeline.addHandler(
            HTTP1ConnectionHandler(
                responder: responder, writeScratch: scratch.value(on: pipeline.eventLoop), maxHeaderBytes: limits.maxHeaderBytes, maxHeaderCount: limits.maxHeaderCount,
                idleTimeout: .milliseconds(Int64(limits.idleTimeoutMs)),
                headerTimeout: .milliseconds(Int64(limits.headerTimeoutMs)),
                bodyTimeout: .milliseconds(Int64(limits.bodyTimeoutMs)), maxRequests: limits.maxRequestsPerConnection))
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
