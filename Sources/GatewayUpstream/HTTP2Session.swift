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
        case connecting([EventLoopPromise<NIOHTTP2Handler.StreamMultiplexer>])
        case ready(Channel, NIOHTTP2Handler.StreamMultiplexer)
    }

    private unowned let pool: TargetPool
    private let eventLoop: EventLoop
    private var state = State.idle
    private var openStreams = 0
    private var idleTimer: Scheduled<Void>?
    private let idleTimeout: TimeAmount
    private let connectTimeout: TimeAmount
    private let tls: (context: NIOSSLContext, serverName: String?)?
    /// Set by `closeWhenIdle()` (shutdown, reload): no new connection is kept open past its last stream.
    private var closing = false

    init(pool: TargetPool, tls: (context: NIOSSLContext, serverName: String?)?, connectTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.pool = pool
        self.eventLoop = pool.eventLoop
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
    }

    /// A new stream for one request, on the current connection or a new one.
    func openStream() -> EventLoopFuture<any UpstreamLink> {
        let stream = HTTP2UpstreamStream(pool: pool)
        let boundStream = NIOLoopBound(stream, eventLoop: eventLoop)
        return multiplexer().flatMap { multiplexer in
            multiplexer.createStreamChannel { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(boundStream.value) }
            }
        }.assumeIsolated().map { channel -> any UpstreamLink in
            self.streamOpened(channel)
            return stream
        }.nonisolated()
    }

    /// Closes the connection now if no stream uses it, else once the last one ends.
    func closeWhenIdle() {
        closing = true
        if openStreams == 0 { closeConnection() }
    }

    // MARK: The connection

    private func multiplexer() -> EventLoopFuture<NIOHTTP2Handler.StreamMultiplexer> {
        switch state {
        case .ready(_, let multiplexer):
            return eventLoop.makeSucceededFuture(multiplexer)
        case .connecting(var waiting):
            let promise = eventLoop.makePromise(of: NIOHTTP2Handler.StreamMultiplexer.self)
            waiting.append(promise)
            state = .connecting(waiting)
            return promise.futureResult
        case .idle:
            let promise = eventLoop.makePromise(of: NIOHTTP2Handler.StreamMultiplexer.self)
            state = .connecting([promise])
            connect()
            return promise.futureResult
        }
    }

    private func connect() {
        closing = false
        pool.connectionStarted()
        let ready = eventLoop.makePromise(of: NIOHTTP2Handler.StreamMultiplexer.self)
        let boundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        let tls = self.tls
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try HTTP2Session.configureClient(channel, tls: tls, session: boundSelf.value, ready: ready)
                }
            }
        // The TCP connect is bounded by connect_timeout_ms; the TLS handshake and ALPN by as much again.
        let handshakeTimer = eventLoop.assumeIsolated().scheduleTask(in: connectTimeout * 2) {
            ready.fail(UpstreamHTTP2Error.handshakeTimedOut)
        }
        pool.connect(bootstrap).assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                handshakeTimer.cancel()
                self.pool.connectionFinished()
                self.failWaiting(error)
            case .success(let channel):
                channel.closeFuture.assumeIsolated().whenComplete { _ in
                    ready.fail(ChannelError.ioOnClosedChannel)  // closed during the handshake
                    self.connectionClosed(channel)
                }
                // For h2c `ready` is already complete here (the pipeline was set up before connecting).
                ready.futureResult.assumeIsolated().whenComplete { result in
                    handshakeTimer.cancel()
                    switch result {
                    case .success(let multiplexer):
                        guard case .connecting(let waiting) = self.state else {
                            channel.close(promise: nil)
                            return
                        }
                        self.state = .ready(channel, multiplexer)
                        for promise in waiting { promise.succeed(multiplexer) }
                        if self.openStreams == 0 { self.scheduleIdleClose() }
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
    /// `tls` is given, then NIOHTTP2's codec; `ready` gets the multiplexer that opens streams.
    static func configureClient(
        _ channel: Channel, tls: (context: NIOSSLContext, serverName: String?)?, session: HTTP2Session?,
        ready: EventLoopPromise<NIOHTTP2Handler.StreamMultiplexer>
    ) throws {
        guard let tls else {
            ready.succeed(try configureHTTP2(channel, session: session))
            return
        }
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
        try sync.addHandler(
            ApplicationProtocolNegotiationHandler { result, channel in
                channel.eventLoop.makeCompletedFuture {
                    guard case .negotiated("h2") = result else { throw UpstreamHTTP2Error.alpnRefused }
                    ready.succeed(try configureHTTP2(channel, session: session))
                }.flatMapErrorThrowing { error in
                    ready.fail(error)
                    throw error
                }
            })
    }

    private static func configureHTTP2(_ channel: Channel, session: HTTP2Session?) throws -> NIOHTTP2Handler.StreamMultiplexer {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 65_536),
        ]
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = streamWindow
        stream.outboundBufferSizeHighWatermark = 65_536
        stream.outboundBufferSizeLowWatermark = 32_768
        let handler = NIOHTTP2Handler(
            mode: .client, eventLoop: channel.eventLoop, connectionConfiguration: connection, streamConfiguration: stream
        ) { pushed in
            pushed.close()  // push is disabled; a server that pushes anyway gets its stream closed
        }
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(handler)
        try sync.addHandler(HTTP2SessionHandler(session: session))
        return try handler.syncMultiplexer()
    }

    /// Per-stream receive window: how much response body a stream may buffer while the client is slow.
    static let streamWindow = 262_144

    // MARK: Streams and the connection's life

    /// The GOAWAY the upstream sent on the current connection: streams above it were never processed.
    private(set) var goAwayLastStreamID: HTTP2StreamID?

    private func streamOpened(_ channel: Channel) {
        openStreams += 1
        idleTimer?.cancel()
        idleTimer = nil
        channel.closeFuture.assumeIsolated().whenComplete { _ in
            self.openStreams -= 1
            guard self.openStreams == 0 else { return }
            if self.closing { self.closeConnection() } else { self.scheduleIdleClose() }
        }
    }

    private func scheduleIdleClose() {
        idleTimer?.cancel()
        idleTimer = eventLoop.assumeIsolated().scheduleTask(in: idleTimeout) {
            self.idleTimer = nil
            if self.openStreams == 0 { self.closeConnection() }
        }
    }

    private func closeConnection() {
        idleTimer?.cancel()
        idleTimer = nil
        if case .ready(let channel, _) = state { channel.close(promise: nil) }
    }

    /// The upstream sent GOAWAY: streams already open finish; new ones go to a new connection.
    fileprivate func receivedGoAway(lastStreamID: HTTP2StreamID, on channel: Channel) {
        guard case .ready(let current, _) = state, current === channel else { return }
        goAwayLastStreamID = lastStreamID
        state = .idle
        if openStreams == 0 { channel.close(promise: nil) }
    }

    private func connectionClosed(_ channel: Channel) {
        pool.connectionFinished()
        if case .ready(let current, _) = state, current === channel {
            state = .idle
            goAwayLastStreamID = nil
        }
    }
}

/// Tells the session about GOAWAY, and closes the connection on a connection error.
private final class HTTP2SessionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let session: HTTP2Session?

    init(session: HTTP2Session?) { self.session = session }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway(let lastStreamID, _, _) = unwrapInboundIn(data).payload {
            session?.receivedGoAway(lastStreamID: lastStreamID, on: context.channel)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A connection error (a protocol violation by the upstream): NIOHTTP2 sent GOAWAY; the streams fail.
        context.close(promise: nil)
    }
}

enum UpstreamHTTP2Error: Error, CustomStringConvertible {
    case alpnRefused
    case handshakeTimedOut
    case malformedResponse(String)

    var description: String {
        switch self {
        case .alpnRefused: return "the upstream did not agree to HTTP/2 (ALPN h2)"
        case .handshakeTimedOut: return "TLS handshake with the upstream timed out"
        case .malformedResponse(let why): return "malformed HTTP/2 response: \(why)"
        }
    }
}
