import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import GatewayTLS
import NIOCore
import NIOHTTP2
import NIOSSL
import NIOTLS

/// HTTP/2 on a connection (after ALPN "h2", or h2c with prior knowledge): NIO's frame codec and connection
/// state machine, a connection manager for idle timeout and graceful shutdown (GOAWAY, then close once the
/// streams are done), and `HTTP2StreamsHandler` serving every stream from this one pipeline.
enum HTTP2Pipeline {
    static func configure(_ channel: Channel, responder: ConnectionResponder, limits: LimitsConfig) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        // Request fields are validated where they are read (`HTTP2Stream.request(from:)`), once.
        connection.headerBlockValidation = .disabled
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.http2MaxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeaderBytes),
            HTTP2Setting(parameter: .initialWindowSize, value: HTTP2StreamsHandler.streamWindow),
        ]
        let manager = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: .milliseconds(Int64(limits.idleTimeoutMs)), maxAge: nil,
                maxGraceTime: .milliseconds(Int64(limits.drainTimeoutMs)), keepalive: nil))
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(NIOHTTP2Handler(mode: .server, connectionConfiguration: connection))
        try sync.addHandler(manager)
        try sync.addHandler(HTTP2StreamsHandler(responder: responder))
    }
}

/// TLS termination: the handshake (bounded by `header_timeout_ms`), then HTTP/2 or HTTP/1.1 as ALPN chose.
/// The connection's responder is made after the handshake, when the client certificate is known.
enum TLSPipeline {
    static func configure(
        _ channel: Channel, tls: ServerTLS, limits: LimitsConfig, scratch: LoopLocal<WriteScratch>,
        sendsCertificate: Bool = false, makeResponder: @escaping (_ clientCertificate: PeerCertificate?) -> ConnectionResponder
    ) throws {
        let sync = channel.pipeline.syncOperations
        let ssl = tls.makeHandler()
        try sync.addHandler(ssl)
        try sync.addHandler(HandshakeTimeout(timeout: .milliseconds(Int64(limits.headerTimeoutMs))))
        try sync.addHandler(
            ApplicationProtocolNegotiationHandler { result, channel in
                channel.eventLoop.makeCompletedFuture {
                    let certificate = ssl.peerCertificate.flatMap { PeerIdentity.certificate(of: $0, withPEM: sendsCertificate) }.map {
                        PeerCertificate(subject: $0.subject, uris: $0.uris, escapedPEM: $0.escapedPEM)
                    }
                    let responder = makeResponder(certificate)
                    if case .negotiated("h2") = result {
                        try HTTP2Pipeline.configure(channel, responder: responder, limits: limits)
                    } else {
                        try HTTP1Pipeline.configure(channel.pipeline.syncOperations, responder: responder, limits: limits, scratch: scratch)
                    }
                }
            })
    }
}

/// Closes a connection unless the handler holding it finishes setting the connection up (a TLS handshake, the
/// first bytes that choose the protocol) within `timeout` of being added: the HTTP timeouts only start once
/// there is HTTP, so a slow, stuck or silent client would otherwise hold the socket forever.
struct SetupDeadline {
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(_ timeout: TimeAmount) { self.timeout = timeout }

    mutating func start(_ context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    mutating func stop() {
        timer?.cancel()
        timer = nil
    }
}

/// Bounds the TLS handshake by `header_timeout_ms`.
final class HandshakeTimeout: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private var deadline: SetupDeadline

    init(timeout: TimeAmount) { deadline = SetupDeadline(timeout) }

    func handlerAdded(context: ChannelHandlerContext) { deadline.start(context) }

    func handlerRemoved(context: ChannelHandlerContext) { deadline.stop() }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)  // first: a removed handler's context no longer forwards
        if case TLSUserEvent.handshakeCompleted = event {
            deadline.stop()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

/// On a plaintext listener with `h2c`, tells HTTP/2 with prior knowledge (its fixed connection preface) from
/// HTTP/1.1 by the first bytes, configures the matching pipeline, and replays those bytes into it. A connection
/// that sends nothing within `timeout` is closed (no HTTP timer runs before there is a pipeline).
final class H2CPrefaceDetector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private let configure: (_ http2: Bool) throws -> Void
    private var buffered: ByteBuffer?
    private var deadline: SetupDeadline

    init(timeout: TimeAmount, configure: @escaping (_ http2: Bool) throws -> Void) {
        self.deadline = SetupDeadline(timeout)
        self.configure = configure
    }

    func handlerAdded(context: ChannelHandlerContext) { deadline.start(context) }

    func handlerRemoved(context: ChannelHandlerContext) { deadline.stop() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var buffered {
            buffered.writeBuffer(&bytes)
            self.buffered = buffered
        } else {
            buffered = bytes
        }
        guard let seen = buffered else { return }
        let count = min(seen.readableBytes, Self.preface.count)
        let matches = seen.readableBytesView.prefix(count).elementsEqual(Self.preface.prefix(count))
        guard !matches || count == Self.preface.count else { return }  // a prefix of the preface so far: wait
        do {
            try configure(matches)
        } catch {
            context.close(promise: nil)
            return
        }
        deadline.stop()
        self.buffered = nil
        context.fireChannelRead(wrapInboundOut(seen))
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// On a listener with `proxy_protocol`, reads the PROXY header a load balancer sends first, then builds the
/// connection's pipeline for the client it names and replays the bytes after the header into it. A connection
/// whose first bytes are not a valid header, or that sends none within `header_timeout_ms`, is closed.
final class ProxyProtocolReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let configure: (_ source: IPAddress?) throws -> Void
    private var received: [UInt8] = []
    private var deadline: SetupDeadline

    init(timeout: TimeAmount, configure: @escaping (_ source: IPAddress?) throws -> Void) {
        self.deadline = SetupDeadline(timeout)
        self.configure = configure
    }

    func handlerAdded(context: ChannelHandlerContext) { deadline.start(context) }

    func handlerRemoved(context: ChannelHandlerContext) { deadline.stop() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        received += bytes.readableBytesView
        switch ProxyProtocol.parse(received) {
        case .needMore:
            return
        case .invalid:
            context.close(promise: nil)
        case .header(let length, let source):
            do {
                try configure(source)
            } catch {
                context.close(promise: nil)
                return
            }
            deadline.stop()
            let rest = received[length...]
            received = []
            if !rest.isEmpty {
                context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: rest)))
                context.fireChannelReadComplete()
            }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
