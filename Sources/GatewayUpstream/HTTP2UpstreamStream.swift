import GatewayHTTP
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One request to an `h2` target as a stream of its HTTP/2 connection. The request head becomes HEADERS
/// (pseudo-headers from the method, target and Host; connection-specific fields dropped, RFC 9113 §8.2.2),
/// the body DATA frames; the response comes back as a `ParsedResponse` like one read off an HTTP/1.1
/// connection. Flow control is the stream channel's: it stops being writable when the upstream's window is
/// used up, and response DATA is only read (and the upstream's window only reopened) while the client keeps up.
final class HTTP2UpstreamStream: ChannelDuplexHandler, UpstreamLink {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private unowned let pool: TargetPool
    private var context: ChannelHandlerContext?
    var call: ForwardingCall?
    private(set) var isClosed = false
    var isTunnel: Bool { false }
    private(set) var failedBeforeUse = false
    /// The HTTP/2 connection this stream is on (set once the stream exists).
    var connection: HTTP2Connection?

    /// HEADERS are held until the first body part, the end or a flush, so a request without a body goes as
    /// one HEADERS frame with END_STREAM.
    private var pendingHead: HPACKHeaders?
    private var requestMethod = HTTPMethod.GET
    private var responseStarted = false
    private var responseEnded = false
    private var readPaused = false
    private var readPending = false
    private let readDeadline: ReadDeadline

    init(pool: TargetPool) {
        self.pool = pool
        self.readDeadline = ReadDeadline(eventLoop: pool.eventLoop)
        // Unowned (and cancelled in deinit), as in UpstreamConnection: no side table for a weak reference.
        readDeadline.onExpiry = { [unowned self] in
            guard !self.isClosed else { return }
            self.call?.connectionTimedOut()
        }
    }

    deinit { readDeadline.cancel() }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    // MARK: UpstreamLink (driven by the call)

    func writeHead(_ head: RequestHead, framing: BodyFraming) {
        requestMethod = head.method
        pendingHead = Self.fields(of: head, scheme: pool.target.scheme.rawValue, defaultAuthority: pool.authority)
    }

    func writeBody(_ buffer: ByteBuffer) {
        guard let context else { return }
        sendPendingHead(endStream: false)
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer)))), promise: nil)
    }

    func writeEnd() {
        guard let context else { return }
        if pendingHead != nil {
            sendPendingHead(endStream: true)
        } else {
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(context.channel.allocator.buffer(capacity: 0)), endStream: true))), promise: nil)
        }
    }

    func flush() {
        sendPendingHead(endStream: false)
        context?.flush()
    }

    private func sendPendingHead(endStream: Bool) {
        guard let context, let fields = pendingHead else { return }
        pendingHead = nil
        // NIOHTTP2 fails the HEADERS that would open a stream after the upstream's GOAWAY (and nothing else
        // ends the stream): close it, so that the call sends the request again on the next connection.
        let opened = context.eventLoop.makePromise(of: Void.self)
        opened.futureResult.assumeIsolated().whenFailure { _ in context.close(promise: nil) }
        context.write(wrapOutboundOut(.headers(.init(headers: fields, endStream: endStream))), promise: opened)
    }

    func startReadTimeout(_ timeout: TimeAmount) {
        guard !readPaused, !responseEnded else { return }
        readDeadline.arm(timeout)
    }

    func stopReadTimeout() { readDeadline.disarm() }

    func setReadPaused(_ paused: Bool) {
        guard paused != readPaused, let context else { return }
        readPaused = paused
        if paused {
            readDeadline.disarm()  // the upstream is not slow, the client is
        } else {
            if call != nil, !responseEnded { readDeadline.arm() }
            call?.readComplete()
            if readPending {
                readPending = false
                context.read()
            }
        }
    }

    /// The stream closes by itself once both sides ended it.
    func release() {}

    /// A stream nobody will use is reset.
    func giveBack() { close() }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        readDeadline.cancel()
        context?.close(promise: nil)  // resets the stream (CANCEL) unless it already ended both ways
    }

    // MARK: Inbound

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        isClosed = true
        readDeadline.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let call, !responseEnded else { return }
        readDeadline.extend()
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if responseStarted {
                // Trailers (gRPC's status): they end the response.
                guard headers.endStream else { return closeReportingFailure(UpstreamHTTP2Error.malformedResponse("trailers without END_STREAM")) }
                var trailers = HeaderList()
                for (name, value, _) in headers.headers where !name.hasPrefix(":") { trailers.add(name: name, value: value) }
                call.receivedTrailers(trailers, from: self)
                endResponse()
                return
            }
            do {
                guard let response = try Self.response(from: headers.headers, endStream: headers.endStream, method: requestMethod) else {
                    // 1xx: the final answer follows. Early hints go on to the client.
                    if headers.headers.first(name: ":status") == "103" { call.receivedEarlyHints(Self.interimHead(headers.headers), from: self) }
                    return
                }
                responseStarted = true
                call.received(response, from: self)
                if headers.endStream { endResponse() }
            } catch {
                closeReportingFailure(error)
            }
        case .data(let data):
            guard responseStarted else { return closeReportingFailure(UpstreamHTTP2Error.malformedResponse("DATA before HEADERS")) }
            if case .byteBuffer(let buffer) = data.data, buffer.readableBytes > 0 { call.receivedBody(buffer, from: self) }
            if data.endStream { endResponse() }
        default:
            break
        }
    }

    private func endResponse() {
        responseEnded = true
        readDeadline.cancel()
        call?.receivedEnd(from: self)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        call?.readComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        call?.writabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        streamEnded(early: nil, context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // RST_STREAM from the upstream, a GOAWAY that left this stream out, or the connection failing.
        streamEnded(early: error, context: context)
        context.close(promise: nil)
    }

    private var endReported = false

    /// The stream ended before the response did: tell the call, saying whether the upstream never processed
    /// the request (then it may go again on a fresh stream).
    private func streamEnded(early error: (any Error)?, context: ChannelHandlerContext) {
        isClosed = true
        readDeadline.cancel()
        guard !responseEnded, !endReported, call != nil else { return }
        endReported = true
        if let closed = error as? NIOHTTP2Errors.StreamClosed, closed.errorCode == .refusedStream { failedBeforeUse = true }
        let id = try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)  // nil: never sent
        // NIOHTTP2 drops the streams a GOAWAY leaves out before it passes the GOAWAY frame on: decide on the next
        // tick, when the connection has seen it (and the session no longer offers it for the retry).
        context.eventLoop.assumeIsolated().execute { [self] in
            if !responseStarted {
                if let id {
                    if let last = connection?.goAwayLastStreamID, id > last { failedBeforeUse = true }
                } else {
                    failedBeforeUse = true
                }
            }
            guard let call else { return }
            if let error {
                call.connectionFailed(self, error: error)
            } else {
                call.connectionClosed(self)
            }
        }
    }

    func read(context: ChannelHandlerContext) {
        if readPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    // MARK: Mapping between heads and HTTP/2 fields

    /// Request fields: pseudo-headers first, `:authority` from Host, names lowercased. Hop-by-hop fields are
    /// already gone (HeaderRules.prepareUpstreamRequest); what is dropped here is what the forwarding itself
    /// adds and HTTP/2 forbids: Transfer-Encoding, and the Connection/Upgrade of an upgrade request.
    static func fields(of head: RequestHead, scheme: String, defaultAuthority: String) -> HPACKHeaders {
        var fields = HPACKHeaders()
        fields.reserveCapacity(head.headers.count + 4)
        fields.add(name: ":method", value: head.method.name)
        fields.add(name: ":scheme", value: scheme)
        fields.add(name: ":authority", value: head.headers.first(name: "host") ?? defaultAuthority)
        fields.add(name: ":path", value: head.target)
        for (name, value) in head.headers {
            let lowered = name.lowercased()
            if lowered != "host" && !HTTP2Fields.isConnectionSpecific(lowered) { fields.add(name: lowered, value: value) }
        }
        return fields
    }

    /// An interim answer's fields as a head (pseudo-headers dropped).
    static func interimHead(_ fields: HPACKHeaders) -> ResponseHead {
        var headers = HeaderList()
        for (name, value, _) in fields where !name.hasPrefix(":") { headers.add(name: name, value: value) }
        return ResponseHead(status: Int(fields.first(name: ":status") ?? "") ?? 100, headers: headers)
    }

    /// The response as an HTTP/1.1-shaped head, or nil for an interim (1xx) answer. A body of unknown length
    /// is `.chunked` (re-framed downstream); an empty one that came with END_STREAM is `Content-Length: 0`.
    static func response(from fields: HPACKHeaders, endStream: Bool, method: HTTPMethod) throws -> ParsedResponse? {
        guard let statusText = fields.first(name: ":status"), let status = Int(statusText), (100...999).contains(status) else {
            throw UpstreamHTTP2Error.malformedResponse("missing or invalid :status")
        }
        if status < 200 {
            if status == 101 { throw UpstreamHTTP2Error.malformedResponse("101 is not allowed in HTTP/2") }
            return nil
        }
        var headers = HeaderList()
        var contentLength: Int?
        for (name, value, _) in fields where !name.hasPrefix(":") {
            if name == "content-length" { contentLength = Int(value) }
            headers.add(name: name, value: value)
        }
        let framing: BodyFraming
        if method == .HEAD || status == 204 || status == 304 {
            framing = .none
        } else if let contentLength {
            framing = .length(contentLength)
        } else if endStream {
            headers.add(name: "content-length", value: "0")
            framing = .length(0)
        } else {
            framing = .chunked
        }
        return ParsedResponse(head: ResponseHead(status: status, headers: headers), framing: framing, keepAlive: true)
    }
}
