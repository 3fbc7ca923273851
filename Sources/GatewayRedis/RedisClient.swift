import GatewayCore
import NIOConcurrencyHelpers
import GatewayPolicy
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// TLS to Redis (`rediss://`): the client context (trust roots, client certificate) and the name the server's
/// certificate must carry (nil: checked against the address connected to).
public struct RedisTLS: Sendable {
    public let context: NIOSSLContext
    public let serverName: String?

    public init(context: NIOSSLContext, serverName: String?) {
        self.context = context
        self.serverName = serverName
    }
}

/// Redis Sentinel (`redis.sentinels`): the nodes that know which server is the master of `masterName` now.
public struct RedisSentinels: Sendable {
    public var masterName: String
    public var nodes: [(host: String, port: Int)]
    public var password: String?

    public init(masterName: String, nodes: [(host: String, port: Int)], password: String? = nil) {
        (self.masterName, self.nodes, self.password) = (masterName, nodes, password)
    }
}

/// A Redis client for the gateway's hot path: SwiftNIO does the socket I/O, hiredis the protocol.
///
/// Every event loop keeps its own connections (`pool_size` spread over the loops, at least one each), so a
/// request's Redis command is written and answered on the request's own thread. Commands are pipelined.
/// A lost connection is reopened with capped, jittered backoff; while no connection is up, commands fail at
/// once rather than wait, so a dead Redis costs a request nothing beyond a failed future. With sentinels, each
/// connection first asks them where the master is, and checks that the server it reaches is one.
public final class RedisClient: Sendable {
    public let url: RedisURL
    /// The loops commands may be sent from (each has its own connections).
    public let eventLoops: [EventLoop]
    let timeout: TimeAmount
    private let pools: LoopLocal<RedisLoopPool>
    private let logger: Logger

    /// - Parameters:
    ///   - poolSize: connections for the whole process, divided among the event loops (at least one each).
    ///   - timeout: per command, and for connecting (the TLS handshake included).
    ///   - tls: required for a `rediss://` URL.
    ///   - sentinels: where the master's address comes from (the URL's host and port are then not used).
    public init(
        url: RedisURL, poolSize: Int, timeout: TimeAmount, tls: RedisTLS? = nil, sentinels: RedisSentinels? = nil, group: EventLoopGroup,
        logger: Logger
    ) async throws {
        guard url.tls == (tls != nil) else { throw RedisError(url.tls ? "rediss:// needs TLS settings" : "TLS settings need a rediss:// URL") }
        self.url = url
        self.timeout = timeout
        self.logger = logger
        eventLoops = Array(group.makeIterator())
        let perLoop = max(1, poolSize / max(1, eventLoops.count))
        pools = try await LoopLocal.make(on: group) { loop, _ in
            RedisLoopPool(url: url, size: perLoop, timeout: timeout, tls: tls, sentinels: sentinels, eventLoop: loop, logger: logger)
        }
        await pools.forEach { $0.connectAll() }
    }

    /// Sends one command on the calling event loop's connections; `completion` runs on that loop with the
    /// reply (an error reply is a value) or the failure. Must be called on `eventLoop`.
    public func send(_ arguments: [String], on eventLoop: EventLoop, completion: @escaping (Result<RedisValue, RedisError>) -> Void) {
        pools.value(on: eventLoop).send(.text(arguments), completion: completion)
    }

    /// A command whose arguments are raw bytes (binary-safe). Must be called on `eventLoop`.
    public func send(binary arguments: [[UInt8]], on eventLoop: EventLoop) -> EventLoopFuture<RedisValue> {
        let promise = eventLoop.makePromise(of: RedisValue.self)
        pools.value(on: eventLoop).send(.binary(arguments)) { promise.completeWith($0.mapError { $0 }) }
        return promise.futureResult
    }

    public func send(_ arguments: [String], on eventLoop: EventLoop) -> EventLoopFuture<RedisValue> {
        let promise = eventLoop.makePromise(of: RedisValue.self)
        send(arguments, on: eventLoop) { promise.completeWith($0.mapError { $0 }) }
        return promise.futureResult
    }

    /// Runs a Lua script by its SHA-1; after a NOSCRIPT reply (Redis restarted or failed over) the script is
    /// loaded again and the call retried once. Must be called on `eventLoop`.
    public func evaluate(
        _ script: RedisScript, keys: [String], arguments: [String], on eventLoop: EventLoop,
        completion: @escaping (Result<RedisValue, RedisError>) -> Void
    ) {
        var command = ["EVALSHA", script.sha1, String(keys.count)]
        command.reserveCapacity(3 + keys.count + arguments.count)
        command += keys
        command += arguments
        let pool = pools.value(on: eventLoop)
        pool.send(.text(command)) { result in
            guard case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") else {
                completion(result)
                return
            }
            pool.send(.text(["SCRIPT", "LOAD", script.source])) { loaded in
                switch loaded {
                case .success(.error(let message)): completion(.failure(RedisError("SCRIPT LOAD failed: \(message)")))
                case .failure(let error): completion(.failure(error))
                case .success: pool.send(.text(command), completion: completion)
                }
            }
        }
    }

    public func evaluate(_ script: RedisScript, keys: [String], arguments: [String], on eventLoop: EventLoop) -> EventLoopFuture<RedisValue> {
        let promise = eventLoop.makePromise(of: RedisValue.self)
        evaluate(script, keys: keys, arguments: arguments, on: eventLoop) { promise.completeWith($0.mapError { $0 }) }
        return promise.futureResult
    }

    /// Connections that are up right now, over all loops (for readiness checks and tests).
    public func connectedCount() async -> Int {
        let counts = NIOLockedCounter()
        await pools.forEach { counts.add($0.readyCount) }
        return counts.value
    }

    public func shutdown() async {
        await pools.forEach { $0.shutdown() }
    }
}

/// A lock-protected counter for gathering numbers from several loops.
final class NIOLockedCounter: Sendable {
    private let box = NIOLockedValueBox(0)
    func add(_ value: Int) { box.withLockedValue { $0 += value } }
    var value: Int { box.withLockedValue { $0 } }
}

/// The connections of one event loop.
final class RedisLoopPool {
    private let slots: [RedisSlot]
    private var next = 0

    init(url: RedisURL, size: Int, timeout: TimeAmount, tls: RedisTLS?, sentinels: RedisSentinels?, eventLoop: EventLoop, logger: Logger) {
        slots = (0..<size).map { _ in
            RedisSlot(url: url, timeout: timeout, tls: tls, sentinels: sentinels, eventLoop: eventLoop, logger: logger)
        }
    }

    var readyCount: Int { slots.reduce(0) { $0 + ($1.isReady ? 1 : 0) } }

    func connectAll() { for slot in slots { slot.connect() } }

    func send(_ arguments: RedisCommand, completion: @escaping (Result<RedisValue, RedisError>) -> Void) {
        // Round-robin over the connections that are up; if none is, the first one connecting takes the
        // command once it is ready; if none is even connecting, fail now.
        for offset in 0..<slots.count {
            let slot = slots[(next + offset) % slots.count]
            if slot.isReady {
                next = (next + offset + 1) % slots.count
                slot.send(arguments, completion: completion)
                return
            }
        }
        if let connecting = slots.first(where: \.isConnecting) {
            connecting.send(arguments, completion: completion)
            return
        }
        for slot in slots { slot.connectIfDue() }
        completion(.failure(.unavailable))
    }

    func shutdown() { for slot in slots { slot.shutdown() } }
}

/// One connection slot: connects (with TLS for rediss://), authenticates, selects the database, and reconnects
/// with backoff.
final class RedisSlot {
    private enum State {
        case idle
        case connecting(waiting: [(arguments: RedisCommand, completion: RedisConnectionHandler.Completion)])
        case ready(RedisConnectionHandler)
        case backoff(until: NIODeadline)
        case shutDown
    }

    let eventLoop: EventLoop
    private let url: RedisURL
    private let timeout: TimeAmount
    private let tls: RedisTLS?
    private let sentinels: RedisSentinels?
    private let logger: Logger
    private var state = State.idle
    /// The master the sentinels named last (logged when it changes: a failover).
    private var master: String?
    private var attempts = 0
    private var reconnect: Scheduled<Void>?
    private static let backoff = Backoff(baseMicros: 50_000, capMicros: 5_000_000)

    init(url: RedisURL, timeout: TimeAmount, tls: RedisTLS?, sentinels: RedisSentinels? = nil, eventLoop: EventLoop, logger: Logger) {
        self.url = url
        self.timeout = timeout
        self.tls = tls
        self.sentinels = sentinels
        self.eventLoop = eventLoop
        self.logger = logger
    }

    var isReady: Bool {
        if case .ready = state { return true }
        return false
    }

    var isConnecting: Bool {
        if case .connecting = state { return true }
        return false
    }

    func send(_ arguments: RedisCommand, completion: @escaping RedisConnectionHandler.Completion) {
        switch state {
        case .ready(let connection):
            connection.send(arguments.encode(allocator: connection.allocator), completion: completion)
        case .connecting(var waiting):
            waiting.append((arguments, completion))
            state = .connecting(waiting: waiting)
        case .idle, .backoff, .shutDown:
            completion(.failure(.unavailable))
        }
    }

    func connectIfDue() {
        switch state {
        case .idle: connect()
        case .backoff(let until) where until <= .now(): connect()
        default: break
        }
    }

    func connect() {
        switch state {
        case .idle, .backoff: break
        default: return
        }
        reconnect?.cancel()
        reconnect = nil
        state = .connecting(waiting: [])
        let timeout = self.timeout
        let tls = self.tls
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(RedisConnectionHandler(timeout: timeout))
                }
            }
        let connected: EventLoopFuture<Channel>
        if let sentinels {
            // Start with another sentinel on each attempt, so one that is down costs one attempt, not every one.
            connected = askSentinels(sentinels, from: attempts).assumeIsolated().flatMap { host, port in
                self.noteMaster("\(host):\(port)")
                return bootstrap.connect(host: host, port: port)
            }.nonisolated()
        } else {
            switch url.endpoint {
            case .tcp(let host, let port): connected = bootstrap.connect(host: host, port: port)
            case .unix(let path): connected = bootstrap.connect(unixDomainSocketPath: path)
            }
        }
        connected.assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                self.failed(error)
            case .success(let channel):
                guard let connection = try? channel.pipeline.syncOperations.handler(type: RedisConnectionHandler.self) else {
                    channel.close(promise: nil)
                    self.failed(RedisError.connectionClosed)
                    return
                }
                self.handshake(connection).whenComplete { handshake in
                    switch handshake {
                    case .success: self.ready(connection)
                    case .failure(let error): self.failed(error)
                    }
                }
            }
        }
    }

    /// AUTH (password, or user and password) and SELECT, before the connection takes commands; over TLS at least a
    /// PING, so that a connection is ready only once the TLS handshake (certificate checks included) has succeeded
    /// and a refused certificate is reported as a failed connect.
    private func handshake(_ connection: RedisConnectionHandler) -> EventLoopFuture<Void>.Isolated {
        var commands: [[String]] = []
        if let password = url.password {
            commands.append(url.user.map { ["AUTH", $0, password] } ?? ["AUTH", password])
        }
        if url.database != 0 { commands.append(["SELECT", String(url.database)]) }
        if tls != nil && commands.isEmpty { commands.append(["PING"]) }
        var chain = eventLoop.makeSucceededVoidFuture().assumeIsolated()
        if sentinels != nil {
            // A sentinel may still name a master that has just been demoted (the failover under way): only a master
            // takes the commands, or writes would fail with READONLY.
            chain = chain.flatMap { _ -> EventLoopFuture<Void> in
                let promise = self.eventLoop.makePromise(of: RedisValue.self)
                connection.send(RESP.encode(["ROLE"], allocator: connection.allocator)) { promise.completeWith($0.mapError { $0 }) }
                return promise.futureResult.assumeIsolated().flatMapThrowing { reply in
                    guard case .array(let parts) = reply, parts.first?.string == "master" else {
                        connection.close()
                        throw RedisError("the server the sentinels named is not a master (\(reply)); a failover may be under way")
                    }
                }.nonisolated()
            }
        }
        for command in commands {
            chain = chain.flatMap { _ -> EventLoopFuture<Void> in
                let promise = self.eventLoop.makePromise(of: RedisValue.self)
                connection.send(RESP.encode(command, allocator: connection.allocator)) { promise.completeWith($0.mapError { $0 }) }
                return promise.futureResult.assumeIsolated().flatMapThrowing { reply in
                    if case .error(let message) = reply {
                        connection.close()
                        throw RedisError("\(command[0]) failed: \(message)")
                    }
                }.nonisolated()
            }
        }
        return chain
    }

    /// Asks the sentinels, one after another from `first`, where the master is: the first that knows answers.
    private func askSentinels(_ sentinels: RedisSentinels, from first: Int) -> EventLoopFuture<(String, Int)> {
        let count = sentinels.nodes.count
        func ask(_ tried: Int, _ failures: [String]) -> EventLoopFuture<(String, Int)> {
            guard tried < count else {
                return eventLoop.makeFailedFuture(RedisError("no sentinel named the master \(sentinels.masterName): \(failures.joined(separator: "; "))"))
            }
            let node = sentinels.nodes[(first + tried) % count]
            return askSentinel(node, sentinels).assumeIsolated().flatMapError { error in
                ask(tried + 1, failures + ["\(node.host):\(node.port): \(error)"])
            }.nonisolated()
        }
        return ask(0, [])
    }

    private func askSentinel(_ node: (host: String, port: Int), _ sentinels: RedisSentinels) -> EventLoopFuture<(String, Int)> {
        let timeout = self.timeout
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RedisConnectionHandler(timeout: timeout)) }
            }
            .connect(host: node.host, port: node.port)
            .assumeIsolated()
            .flatMap { channel -> EventLoopFuture<(String, Int)> in
                guard let connection = try? channel.pipeline.syncOperations.handler(type: RedisConnectionHandler.self) else {
                    channel.close(promise: nil)
                    return self.eventLoop.makeFailedFuture(RedisError.connectionClosed)
                }
                if let password = sentinels.password {
                    connection.send(RESP.encode(["AUTH", password], allocator: connection.allocator)) { _ in }
                }
                let promise = self.eventLoop.makePromise(of: RedisValue.self)
                connection.send(RESP.encode(["SENTINEL", "get-master-addr-by-name", sentinels.masterName], allocator: connection.allocator)) {
                    promise.completeWith($0.mapError { $0 })
                }
                let answer = promise.futureResult.assumeIsolated().flatMapThrowing { reply -> (String, Int) in
                    switch reply {
                    case .array(let parts) where parts.count == 2:
                        guard let host = parts[0].string, let port = parts[1].string.flatMap(Int.init) else { throw RedisError("an unexpected answer: \(reply)") }
                        return (host, port)
                    case .null, .array([]): throw RedisError("it does not know a master named \(sentinels.masterName)")
                    case .error(let message): throw RedisError(message)
                    default: throw RedisError("an unexpected answer: \(reply)")
                    }
                }
                answer.whenComplete { _ in connection.close() }
                return answer.nonisolated()
            }
            .nonisolated()
    }

    /// Logs the master the sentinels name when it is not the one they named before: a failover moved it.
    private func noteMaster(_ address: String) {
        if let master, master != address {
            logger.notice("redis master changed (sentinels)", metadata: ["from": "\(master)", "to": "\(address)"])
        }
        master = address
    }

    private func ready(_ connection: RedisConnectionHandler) {
        guard case .connecting(let waiting) = state else {
            connection.close()
            return
        }
        if attempts > 0 { logger.notice("redis connected again", metadata: ["after_attempts": "\(attempts)"]) }
        attempts = 0
        state = .ready(connection)
        connection.onClose = { [weak self] in self?.lost() }
        for (arguments, completion) in waiting {
            connection.send(arguments.encode(allocator: connection.allocator), completion: completion)
        }
    }

    private func failed(_ error: any Error) {
        guard case .connecting(let waiting) = state else { return }
        for (_, completion) in waiting { completion(.failure(.unavailable)) }
        if attempts == 0 { logger.warning("redis connect failed", metadata: ["error": "\(error)"]) }
        scheduleReconnect()
    }

    private func lost() {
        guard case .ready = state else { return }  // not after shutdown
        logger.warning("redis connection lost")
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        let delay = Self.backoff.delayMicros(attempt: attempts, random: Double.random(in: 0..<1))
        attempts += 1
        let until = NIODeadline.now() + .microseconds(delay)
        state = .backoff(until: until)
        reconnect = eventLoop.assumeIsolated().scheduleTask(deadline: until) { self.connect() }
    }

    func shutdown() {
        reconnect?.cancel()
        reconnect = nil
        let previous = state
        state = .shutDown  // first: closing fires onClose synchronously, which must not schedule a reconnect
        if case .ready(let connection) = previous { connection.close() }
        if case .connecting(let waiting) = previous { for (_, completion) in waiting { completion(.failure(.unavailable)) } }
    }
}

/// A Lua script with its SHA-1 (computed locally, so EVALSHA works before the script was ever loaded).
public struct RedisScript: Sendable {
    public let source: String
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        self.sha1 = SHA1.hex(source)
    }
}

/// A command's arguments: text (most commands) or raw bytes.
enum RedisCommand {
    case text([String])
    case binary([[UInt8]])

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        switch self {
        case .text(let arguments): return RESP.encode(arguments, allocator: allocator)
        case .binary(let arguments): return RESP.encode(bytes: arguments, allocator: allocator)
        }
    }
}
