import GatewayConfig
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// The HTTP/2 connection to one `h2` target on one event loop; every request to that target from this loop
/// is a stream on it. Opened on first use (h2c with prior knowledge for `http://` targets, TLS with ALPN "h2"
/// for `https://` ones), replaced when the upstream sends GOAWAY or the connection drops, and closed after
/// `pool.idle_timeout_ms` without streams. The peer's stream limit is honoured by NIOHTTP2, which holds back
/// streams beyond it until others finish.
final class HTTP2Session {
    private enum State {
        case idle
        case connecting([EventLoopPromise<NIOLoopBound<HTTP2Connection>>])
        case ready(HTTP2Connection)
    }

    private unowned let pool: TargetPool
    private let eventLoop: EventLoop
    private var state = State.idle
    private var idleTimer: Scheduled<Void>?
    private let idleTimeout: TimeAmount
    private let connectTimeout: TimeAmount
    /// Bounds the TLS handshake and ALPN, as it bounds the wait for an HTTP/1.1 answer (read_timeout_ms).
    private let handshakeTimeout: TimeAmount
    private let tls: (context: NIOSSLContext, serverName: String?)?
    /// Set by `closeWhenIdle()` (shutdown, reload): the connection closes once its last stream ends.
    private var closing = false

    init(
        pool: TargetPool, tls: (context: NIOSSLContext, serverName: String?)?, connectTimeout: TimeAmount, handshakeTimeout: TimeAmount,
        idleTimeout: TimeAmount
    ) {
        self.pool = pool
        self.eventLoop = pool.eventLoop
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.handshakeTimeout = handshakeTimeout
        self.idleTimeout = idleTimeout
    }

    /// A new stream for one request, on the current connection or a new one.
    func openStream() -> EventLoopFuture<any UpstreamLink> {
        let stream = HTTP2UpstreamStream(pool: pool)
        let boundStream = NIOLoopBound(stream, eventLoop: eventLoop)
        return currentConnection().flatMap { connection in
            connection.value.multiplexer.createStreamChannel { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(boundStream.value) }
            }.map { (connection, $0) }.flatMapErrorThrowing { error in
                // The upstream retired the connection while the stream was being set up: nothing was sent.
                if connection.value.goAwayLastStreamID != nil || !connection.value.channel.isActive {
                    throw UpstreamHTTP2Error.connectionRetired
                }
                throw error
            }
        }.assumeIsolated().map { connection, channel -> any UpstreamLink in
            stream.connection = connection.value
            self.streamOpened(channel, on: connection.value)
            return stream
        }.nonisolated()
    }

    /// Closes the connection now if no stream uses it, else once the last one ends.
    func closeWhenIdle() {
        closing = true
        if case .ready(let connection) = state, connection.streams == 0 { close(connection) }
    }

    // MARK: The connection

    private func currentConnection() -> EventLoopFuture<NIOLoopBound<HTTP2Connection>> {
        switch state {
        case .ready(let connection):
            return eventLoop.makeSucceededFuture(NIOLoopBound(connection, eventLoop: eventLoop))
        case .connecting(var waiting):
            let promise = eventLoop.makePromise(of: NIOLoopBound<HTTP2Connection>.self)
            waiting.append(promise)
            state = .connecting(waiting)
            return promise.futureResult
        case .idle:
            let promise = eventLoop.makePromise(of: NIOLoopBound<HTTP2Connection>.self)
            state = .connecting([promise])
            connect()
            return promise.futureResult
        }
    }

    private func connect() {
        closing = false
        pool.connectionStarted()
        let ready = eventLoop.makePromise(of: NIOLoopBound<HTTP2Connection>.self)
        let boundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        let tls = self.tls
        // The TCP connect is bounded by connect_timeout_ms, the TLS handshake and ALPN by read_timeout_ms.
        let handshakeTimer = eventLoop.assumeIsolated().scheduleTask(in: connectTimeout + handshakeTimeout) {
            ready.fail(UpstreamHTTP2Error.handshakeTimedOut)
        }
        pool.openChannel { channel in
            try HTTP2Session.configureClient(channel, tls: tls, session: boundSelf.value, ready: ready)
        }.assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                handshakeTimer.cancel()
                self.pool.connectionFinished()
                self.failWaiting(error)
            case .success(let channel):
                channel.closeFuture.assumeIsolated().whenComplete { _ in
                    ready.fail(ChannelError.ioOnClosedChannel)  // closed during the handshake
                    self.pool.connectionFinished()
                    if case .ready(let current) = self.state, current.channel === channel { self.state = .idle }
                }
                // For h2c `ready` is already complete here (the pipeline was set up before connecting).
                ready.futureResult.assumeIsolated().whenComplete { result in
                    handshakeTimer.cancel()
                    switch result {
                    case .success(let connection):
                        guard case .connecting(let waiting) = self.state else {
                            channel.close(promise: nil)
                            return
                        }
                        self.state = .ready(connection.value)
                        for promise in waiting { promise.succeed(connection) }
                        if connection.value.streams == 0 { self.scheduleIdleClose() }
                    case .failure(let error):
                        channel.close(promise: nil)
                        self.failWaiting(error)
                    }
                }
            }
        }
    }

    private func failWaiting(_ error: any Error) {
        guard case .connecting(let waiting) = state else { return }
        state = .idle
        for promise in waiting { promise.fail(error) }
    }

    /// Sets up the client side of HTTP/2 on a new connection: TLS with ALPN "h2" (refusing anything else) when
    /// `tls` is given, then NIOHTTP2's codec; `ready` gets the connection, whose multiplexer opens streams.
    static func configureClient(
        _ channel: Channel, tls: (context: NIOSSLContext, serverName: String?)?, session: HTTP2Session?,
        ready: EventLoopPromise<NIOLoopBound<HTTP2Connection>>
    ) throws {
        guard let tls else {
            ready.succeed(NIOLoopBound(try configureHTTP2(channel, session: session), eventLoop: channel.eventLoop))
            return
        }
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
        try sync.addHandler(
            ApplicationProtocolNegotiationHandler { result, channel in
                channel.eventLoop.makeCompletedFuture {
                    guard case .negotiated("h2") = result else { throw UpstreamHTTP2Error.alpnRefused }
                    ready.succeed(NIOLoopBound(try configureHTTP2(channel, session: session), eventLoop: channel.eventLoop))
                }.flatMapErrorThrowing { error in
                    ready.fail(error)
                    throw error
                }
            })
    }

    private static func configureHTTP2(_ channel: Channel, session: HTTP2Session?) throws -> HTTP2Connection {
        var settings = NIOHTTP2Handler.ConnectionConfiguration()
        // The connection's own receive window is shared by all its streams: at HTTP/2's default (64 KiB) all the
        // responses on a connection together could move only 64 KiB per round trip to the upstream.
        settings.targetWindowSize = connectionWindow
        settings.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 65_536),
        ]
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = streamWindow
        stream.outboundBufferSizeHighWatermark = 65_536
        stream.outboundBufferSizeLowWatermark = 32_768
        let handler = NIOHTTP2Handler(
            mode: .client, eventLoop: channel.eventLoop, connectionConfiguration: settings, streamConfiguration: stream
        ) { pushed in
            pushed.close()  // push is disabled; a server that pushes anyway gets its stream closed
        }
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(handler)
        let connection = HTTP2Connection(channel: channel, multiplexer: try handler.syncMultiplexer())
        try sync.addHandler(HTTP2ConnectionHandler(connection: connection, session: session))
        return connection
    }

    /// Per-stream receive window: how much response body a stream may buffer while the client is slow.
    static let streamWindow = 262_144
    /// The connection's receive window: room for 16 streams' windows at once.
    static let connectionWindow = 16 * streamWindow

    // MARK: Streams and the connection's life

    private func streamOpened(_ channel: Channel, on connection: HTTP2Connection) {
        connection.streams += 1
        idleTimer?.cancel()
        idleTimer = nil
        channel.closeFuture.assumeIsolated().whenComplete { _ in
            connection.streams -= 1
            guard connection.streams == 0 else { return }
            guard case .ready(let current) = self.state, current === connection, !self.closing else {
                self.close(connection)  // retired by GOAWAY or a newer connection, or the gateway is stopping
                return
            }
            self.scheduleIdleClose()
        }
    }

    private func scheduleIdleClose() {
        idleTimer?.cancel()
        idleTimer = eventLoop.assumeIsolated().scheduleTask(in: idleTimeout) {
            self.idleTimer = nil
            if case .ready(let connection) = self.state, connection.streams == 0 { self.close(connection) }
        }
    }

    private func close(_ connection: HTTP2Connection) {
        if case .ready(let current) = state, current === connection {
            idleTimer?.cancel()
            idleTimer = nil
            state = .idle
        }
        connection.channel.close(promise: nil)
    }

    /// The upstream sent GOAWAY: the streams it took finish; new ones go to a new connection.
    fileprivate func receivedGoAway(on connection: HTTP2Connection) {
        guard case .ready(let current) = state, current === connection else { return }
        state = .idle
        if connection.streams == 0 { connection.channel.close(promise: nil) }
    }
}

/// One HTTP/2 connection of a session: the multiplexer that opens its streams, how many are open, and the
/// GOAWAY the upstream sent on it.
final class HTTP2Connection {
    let channel: Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    var streams = 0
    /// Streams above this id were never processed by the upstream (safe to send again).
    var goAwayLastStreamID: HTTP2StreamID?

    init(channel: Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
        self.channel = channel
        self.multiplexer = multiplexer
    }
}

/// Records GOAWAY on the connection (and tells the session), and closes the connection on a connection error.
private final class HTTP2ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let connection: HTTP2Connection
    private let session: HTTP2Session?

    init(connection: HTTP2Connection, session: HTTP2Session?) {
        self.connection = connection
        self.session = session
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway(let lastStreamID, _, _) = unwrapInboundIn(data).payload {
            connection.goAwayLastStreamID = lastStreamID
            session?.receivedGoAway(on: connection)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A stream opened while the upstream's GOAWAY was on its way: NIOHTTP2 refuses its HEADERS and reports it
        // here too, but only that stream fails (and is sent again elsewhere). Closing would cut off the streams the
        // upstream is still answering.
        if error is NIOHTTP2Errors.CreatedStreamAfterGoaway { return }
        // A connection error (a protocol violation by the upstream): NIOHTTP2 sent GOAWAY; the streams fail.
        context.close(promise: nil)
    }
}

enum UpstreamHTTP2Error: Error, CustomStringConvertible {
    case alpnRefused
    case handshakeTimedOut
    case malformedResponse(String)
    /// A stream could not be set up because the connection received GOAWAY or closed meanwhile.
    case connectionRetired

    var description: String {
        switch self {
        case .connectionRetired: return "the upstream retired its HTTP/2 connection while a stream was being opened"
        case .alpnRefused: return "the upstream did not agree to HTTP/2 (ALPN h2)"
        case .handshakeTimedOut: return "TLS handshake with the upstream timed out"
        case .malformedResponse(let why): return "malformed HTTP/2 response: \(why)"
        }
    }
}
