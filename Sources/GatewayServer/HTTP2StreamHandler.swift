import GatewayCore
import GatewayHTTP
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 stream as a `DownstreamStream`: the request's HEADERS and DATA frames drive an exchange exactly
/// like an HTTP/1.1 request does (same routing, filters, forwarding); the response goes back as HEADERS and
/// DATA frames. Flow control comes from the stream channel: it stops being writable when the client's window
/// is used up (the exchange then pauses the upstream), and request DATA is only read (and the client's window
/// only reopened) while the exchange can take it.
final class HTTP2StreamHandler: ChannelDuplexHandler, DownstreamStream {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let responder: ConnectionResponder
    private var context: ChannelHandlerContext?
    private var exchange: ExchangeDriver?
    private var requestEnded = false
    private var responseEnded = false
    /// The response head is held until we know whether a body follows (END_STREAM goes on HEADERS if not).
    private var pendingHead: HPACKHeaders?
    /// Whether the final head was given (interim ones may only come before it).
    private var finalHeadWritten = false
    /// The response's trailer fields, sent as the last HEADERS frame.
    private var pendingTrailers: HPACKHeaders?
    private var readPaused = false
    private var readPending = false

    init(responder: ConnectionResponder) {
        self.responder = responder
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if exchange == nil && !responseEnded {
                start(headers.headers, endStream: headers.endStream)
            } else if headers.endStream {
                endRequest()  // trailers: the body is complete (trailers themselves are not forwarded)
            }
        case .data(let data):
            guard case .byteBuffer(let buffer) = data.data else { return }
            if buffer.readableBytes > 0 { exchange?.requestBodyPart(buffer) }
            if data.endStream { endRequest() }
        case .rstStream:
            clientWentAway()
        default:
            break  // priority, window updates and settings are the connection's business
        }
    }

    private func start(_ fields: HPACKHeaders, endStream: Bool) {
        guard let request = Self.request(from: fields, endStream: endStream) else {
            requestEnded = endStream
            responder.respondToProtocolError(.badRequest("The request's pseudo-headers are invalid."), stream: self)
            return
        }
        requestEnded = endStream
        exchange = responder.startExchange(request, stream: self)
        if endStream { exchange?.requestEnded() }
    }

    private func endRequest() {
        guard !requestEnded else { return }
        requestEnded = true
        exchange?.requestEnded()
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientWentAway()
        context.fireChannelInactive()
    }

    private func clientWentAway() {
        let exchange = self.exchange
        self.exchange = nil
        if !responseEnded { exchange?.downstreamClosed() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        exchange?.downstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if readPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: DownstreamStream

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func writeInformational(_ head: ResponseHead) {
        guard let context, !finalHeadWritten, !responseEnded else { return }
        context.write(wrapOutboundOut(.headers(.init(headers: Self.fields(of: head)))), promise: nil)
    }

    func writeResponseHead(_ head: consuming ResponseHead) {
        finalHeadWritten = true
        HeaderRules.addDateIfMissing(&head.headers)
        pendingHead = Self.fields(of: head)
    }

    func writeResponseBody(_ buffer: ByteBuffer) {
        guard let context, buffer.readableBytes > 0 else { return }
        sendPendingHead(endStream: false)
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer)))), promise: nil)
    }

    func writeResponseTrailers(_ trailers: HeaderList) {
        var fields = HPACKHeaders()
        for (name, value) in trailers {
            let lowered = name.lowercased()
            if !HTTP2Fields.isConnectionSpecific(lowered) && !lowered.hasPrefix(":") { fields.add(name: lowered, value: value) }
        }
        pendingTrailers = fields
    }

    func writeResponseEnd() {
        guard let context, !responseEnded else { return }
        responseEnded = true
        if let trailers = pendingTrailers {
            pendingTrailers = nil
            sendPendingHead(endStream: false)
            context.write(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
        } else if pendingHead != nil {
            sendPendingHead(endStream: true)
        } else {
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(context.channel.allocator.buffer(capacity: 0)), endStream: true))), promise: nil)
        }
        exchange = nil
        // RFC 9113 §8.1: a complete response may end a request whose body is still coming; NO_ERROR says so.
        if !requestEnded { context.write(wrapOutboundOut(.rstStream(.noError)), promise: nil) }
    }

    private func sendPendingHead(endStream: Bool) {
        guard let context, let fields = pendingHead else { return }
        pendingHead = nil
        context.write(wrapOutboundOut(.headers(.init(headers: fields, endStream: endStream))), promise: nil)
    }

    func flush() { context?.flush() }

    /// HTTP/2 has no Upgrade (RFC 9113 §8.6); exchanges never ask, and a stream cannot become a tunnel.
    func switchToTunnel() { abortResponse() }

    func abortResponse() {
        guard let context, !responseEnded else { return }
        responseEnded = true
        exchange = nil
        context.writeAndFlush(wrapOutboundOut(.rstStream(.internalError)), promise: nil)
        context.close(promise: nil)
    }

    func setRequestBodyPaused(_ paused: Bool) {
        guard paused != readPaused, let context else { return }
        readPaused = paused
        if !paused && readPending {
            readPending = false
            context.read()
        }
    }

    // MARK: Mapping between HTTP/2 fields and heads

    /// The request as an HTTP/1.1-shaped head: `:authority` becomes Host, cookies split across fields are
    /// joined again (RFC 9113 §8.2.3), pseudo-headers dropped. nil when a required pseudo-header is missing or
    /// the method is CONNECT (not proxied).
    static func request(from fields: HPACKHeaders, endStream: Bool) -> IncomingRequest? {
        var method: String?
        var path: String?
        var authority: String?
        var headers = HeaderList()
        var cookies: [String] = []
        var contentLength: Int?
        for (name, value, _) in fields {
            if name.hasPrefix(":") {
                switch name {
                case ":method": method = value
                case ":path": path = value
                case ":authority": authority = value
                default: break
                }
                continue
            }
            switch name {
            case "cookie": cookies.append(value)
            case "host": if authority == nil { authority = value }
            case "content-length": contentLength = Int(value)
            default: headers.add(name: name, value: value)
            }
        }
        guard let method, method != "CONNECT", let path, path.hasPrefix("/") || path == "*" else { return nil }
        if let authority { headers.add(name: "host", value: authority) }
        if !cookies.isEmpty { headers.add(name: "cookie", value: cookies.joined(separator: "; ")) }
        let framing: BodyFraming
        if endStream {
            framing = .none
        } else if let contentLength {
            framing = .length(contentLength)
        } else {
            framing = .chunked  // length unknown: sent upstream chunked
        }
        let head = RequestHead(method: HTTPMethod(method), target: path, version: .http2, headers: headers)
        let expectsContinue = headers.containsToken("100-continue", inField: "expect")
        return IncomingRequest(head: head, framing: framing, expectsContinue: expectsContinue)
    }

    /// Response fields: `:status` first, names lowercased, connection-specific fields removed (RFC 9113 §8.2.2).
    static func fields(of head: ResponseHead) -> HPACKHeaders {
        var fields = HPACKHeaders()
        fields.reserveCapacity(head.headers.count + 1)
        fields.add(name: ":status", value: String(head.status))
        for (name, value) in head.headers {
            let lowered = name.lowercased()
            if !HTTP2Fields.isConnectionSpecific(lowered) { fields.add(name: lowered, value: value) }
        }
        return fields
    }
}
