import GatewayCore
import GatewayHTTP
import NIOCore
import NIOHPACK
import NIOHTTP2

/// The streams of one HTTP/2 connection, served from the connection's own pipeline: NIO's frame codec and
/// connection state machine (`NIOHTTP2Handler`) hand every frame here, and each stream is an `HTTP2Stream`
/// object rather than a child channel with its own pipeline (which cost about fourteen allocations and several
/// hundred reference-count operations per request). This handler does what the child channels did:
/// demultiplexing by stream id, crediting the client's flow-control windows as request bodies are taken, and
/// telling each stream whether the client's windows and the connection take more response bytes.
final class HTTP2StreamsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// Per-stream receive window we announce (SETTINGS_INITIAL_WINDOW_SIZE): how much request body a client may
    /// send ahead of the upstream taking it.
    static let streamWindow = 131_072
    /// RFC 9113 §6.9.2: the connection's windows start at 65,535 and only WINDOW_UPDATE frames move them.
    static let initialConnectionWindow = 65_535

    private let responder: ConnectionResponder
    private(set) var context: ChannelHandlerContext?
    private var streams: [HTTP2StreamID: HTTP2Stream] = [:]
    /// What the client lets us send: its SETTINGS_INITIAL_WINDOW_SIZE for new streams, and the connection window.
    private var peerInitialWindow = 65_535
    private(set) var connectionSendWindow = HTTP2StreamsHandler.initialConnectionWindow
    private(set) var channelWritable = true
    /// Frames written since the last flush (a flush with nothing written would still go down the pipeline).
    private var wroteSinceFlush = false
    /// A flush is due when this event-loop tick's tasks run (see `flush`).
    private var flushScheduled = false

    init(responder: ConnectionResponder) {
        self.responder = responder
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        channelWritable = context.channel.isWritable
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            if let stream = streams[frame.streamID] {
                stream.receivedHeaders(headers)
            } else {
                let stream = HTTP2Stream(id: frame.streamID, connection: self, sendWindow: peerInitialWindow)
                streams[frame.streamID] = stream
                stream.start(headers.headers, endStream: headers.endStream, responder: responder)
            }
        case .data(let data):
            streams[frame.streamID]?.receivedData(data, flowControlledLength: Self.flowControlledLength(data))
        case .rstStream:
            streams.removeValue(forKey: frame.streamID)?.clientWentAway()
        case .windowUpdate(let increment):
            if frame.streamID == .rootStream {
                connectionSendWindow += increment
                for stream in streams.values { stream.updateWritability() }
            } else if let stream = streams[frame.streamID] {
                stream.sendWindow += increment
                stream.updateWritability()
            }
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .initialWindowSize { peerInitialWindow = setting.value }
        default:
            break  // priority, ping, goaway: NIO's connection handlers deal with them
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Window events come with every DATA frame, so they are tried first (each `as` is a dynamic cast).
        switch event {
        case let window as NIOHTTP2WindowUpdatedEvent:
            // The connection's receive window is credited as bytes arrive, whichever stream they were for (a
            // paused stream holds them against its own window, not every other stream's; frames NIO dropped for
            // closed streams count too, which is why this follows NIO's window and not the frames seen here).
            // Streams' windows are credited as their bytes are handed on (`HTTP2Stream`).
            if window.streamID == .rootStream, let size = window.inboundWindowSize, size <= Self.initialConnectionWindow / 2 {
                write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: Self.initialConnectionWindow - size)))
                flush()
            }
        case let closed as StreamClosedEvent:
            // Reset by NIO (a stream error, or the client's RST_STREAM already handled above) or closed normally.
            streams.removeValue(forKey: closed.streamID)?.clientWentAway()
        case let change as NIOHTTP2BulkStreamWindowChangeEvent:
            // The client changed SETTINGS_INITIAL_WINDOW_SIZE: every open stream's window moves by the difference.
            for stream in streams.values {
                stream.sendWindow += change.delta
                stream.updateWritability()
            }
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let open = streams
        streams.removeAll()
        for stream in open.values { stream.clientWentAway() }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        channelWritable = context.channel.isWritable
        for stream in streams.values { stream.updateWritability() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let streamError = error as? NIOHTTP2Errors.StreamError {
            // NIO has reset this stream (a malformed frame on it); the connection and its other streams go on.
            streams.removeValue(forKey: streamError.streamID)?.clientWentAway()
            return
        }
        // A connection error (a protocol violation, or NIO's denial-of-service heuristics: rapid reset,
        // control-frame floods, too many glitches): NIO sent GOAWAY; such a client gets no grace period.
        context.close(promise: nil)
    }

    // MARK: For the streams

    func write(_ frame: HTTP2Frame) {
        guard let context else { return }
        if case .data(let data) = frame.payload { connectionSendWindow -= Self.flowControlledLength(data) }
        wroteSinceFlush = true
        context.write(wrapOutboundOut(frame), promise: nil)
    }

    /// The streams' answers usually arrive in separate events of one event-loop tick (each from its own upstream
    /// connection): flushing once, when the tick's tasks run, puts them into one TLS record run and one write
    /// system call instead of one each. Nothing waits longer than the rest of the tick.
    func flush() {
        guard wroteSinceFlush, !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            guard wroteSinceFlush, let current = self.context else { return }
            wroteSinceFlush = false
            current.flush()
        }
    }

    func streamFinished(_ id: HTTP2StreamID) {
        streams.removeValue(forKey: id)
    }

    static func flowControlledLength(_ data: HTTP2Frame.FramePayload.Data) -> Int {
        let padding = data.paddingBytes.map { $0 + 1 } ?? 0
        return data.data.readableBytes + padding
    }
}

/// One HTTP/2 stream as a `DownstreamStream`: the request's HEADERS and DATA frames drive an exchange exactly
/// like an HTTP/1.1 request does (same routing, filters, forwarding); the response goes back as HEADERS and
/// DATA frames. It is writable while the client's stream and connection windows are open and the connection's
/// socket takes more (the exchange then pauses the upstream); request DATA is handed on only while the exchange
/// can take it, and the client's stream window is credited only for what was handed on.
final class HTTP2Stream: DownstreamStream {
    let id: HTTP2StreamID
    /// Strong: an exchange may hold its stream after the connection's pipeline let the handler go (writes then
    /// go nowhere, as `context` is nil). The cycle through `streams` ends when the stream leaves the dictionary,
    /// which every way a stream ends does.
    private let connection: HTTP2StreamsHandler
    private var exchange: ExchangeDriver?
    private var requestEnded = false
    private var responseEnded = false
    /// The response head is held until we know whether a body follows (END_STREAM goes on HEADERS if not).
    private var pendingHead: HPACKHeaders?
    /// Whether the final head was given (interim ones may only come before it).
    private var finalHeadWritten = false
    /// The response's trailer fields, sent as the last HEADERS frame.
    private var pendingTrailers: HPACKHeaders?
    /// The last body part, held until the next one, the end or a flush: when the end comes in the same event (a
    /// small answer read whole), END_STREAM goes on it instead of on an empty DATA frame of its own.
    private var pendingData: ByteBuffer?
    /// What the client's window for this stream still allows us to send.
    var sendWindow: Int
    private var reportedWritable = true
    private var readPaused = false
    /// Request body frames that arrived while the exchange could not take them (at most a window's worth).
    private var held: [(data: HTTP2Frame.FramePayload.Data, length: Int)] = []
    private var receive = ReceiveWindowCredit(window: HTTP2StreamsHandler.streamWindow)

    init(id: HTTP2StreamID, connection: HTTP2StreamsHandler, sendWindow: Int) {
        self.id = id
        self.connection = connection
        self.sendWindow = sendWindow
    }

    // MARK: From the connection

    func start(_ fields: HPACKHeaders, endStream: Bool, responder: ConnectionResponder) {
        requestEnded = endStream
        let request: IncomingRequest
        switch Self.request(from: fields, endStream: endStream) {
        case .success(let parsed): request = parsed
        case .failure(let malformed):
            responder.respondToProtocolError(.badRequest("The request's header block is malformed: \(malformed.reason)."), stream: self)
            return
        }
        let exchange = responder.startExchange(request, stream: self)
        // The exchange may have answered already (a local response): then it is done and not kept.
        guard !responseEnded else { return }
        self.exchange = exchange
        if endStream { exchange.requestEnded() }
    }

    func receivedHeaders(_ headers: HTTP2Frame.FramePayload.Headers) {
        guard headers.endStream, Self.trailersAreWellFormed(headers.headers) else {
            // A second header block must be trailers, ending the stream, with no pseudo-headers (RFC 9113 §8.1).
            connection.write(HTTP2Frame(streamID: id, payload: .rstStream(.protocolError)))
            connection.flush()
            connection.streamFinished(id)
            clientWentAway()
            return
        }
        receivedEnd()  // trailers: the body is complete (trailers themselves are not forwarded)
    }

    func receivedData(_ data: HTTP2Frame.FramePayload.Data, flowControlledLength length: Int) {
        if readPaused || !held.isEmpty {
            held.append((data, length))
        } else {
            deliver(data, length: length)
        }
    }

    private func deliver(_ data: HTTP2Frame.FramePayload.Data, length: Int) {
        if case .byteBuffer(let buffer) = data.data, buffer.readableBytes > 0 { exchange?.requestBodyPart(buffer) }
        if data.endStream {
            receivedEnd()
        } else if !requestEnded, let increment = receive.received(length) {
            connection.write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment)))
            connection.flush()
        }
    }

    private func receivedEnd() {
        guard !requestEnded else { return }
        requestEnded = true
        exchange?.requestEnded()
    }

    func clientWentAway() {
        held.removeAll()
        pendingData = nil
        let exchange = self.exchange
        self.exchange = nil
        if !responseEnded {
            responseEnded = true
            exchange?.downstreamClosed()
        }
    }

    /// Tells the exchange when the stream stops or starts taking response bytes.
    func updateWritability() {
        let writable = isWritable
        guard writable != reportedWritable else { return }
        reportedWritable = writable
        exchange?.downstreamWritabilityChanged(isWritable: writable)
    }

    // MARK: DownstreamStream

    var isWritable: Bool {
        !responseEnded && connection.channelWritable && sendWindow > 0 && connection.connectionSendWindow > 0
    }

    func writeInformational(_ head: ResponseHead) {
        guard !finalHeadWritten, !responseEnded else { return }
        connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: Self.fields(of: head)))))
    }

    func writeResponseHead(_ head: consuming ResponseHead) {
        finalHeadWritten = true
        HeaderRules.addDateIfMissing(&head.headers)
        pendingHead = Self.fields(of: head)
    }

    func writeResponseBody(_ buffer: ByteBuffer) {
        guard !responseEnded, buffer.readableBytes > 0 else { return }
        sendPendingHead(endStream: false)
        sendPendingData()
        sendWindow -= buffer.readableBytes
        pendingData = buffer
        updateWritability()
    }

    func writeResponseTrailers(_ trailers: HeaderList) {
        var fields = HPACKHeaders()
        trailers.forEachField(lowercasingNames: true) { name, value in
            if !HTTP2Fields.isConnectionSpecific(name) && !name.hasPrefix(":") { fields.add(name: name, value: value) }
        }
        pendingTrailers = fields
    }

    func writeResponseEnd() {
        guard !responseEnded else { return }
        responseEnded = true
        if let trailers = pendingTrailers {
            pendingTrailers = nil
            sendPendingHead(endStream: false)
            sendPendingData()
            connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: trailers, endStream: true))))
        } else if pendingHead != nil {
            sendPendingHead(endStream: true)  // no body at all (a body's first part sends the head)
        } else if pendingData != nil {
            sendPendingData(endStream: true)
        } else {
            connection.write(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))))
        }
        exchange = nil
        held.removeAll()
        // RFC 9113 §8.1: a complete response may end a request whose body is still coming; NO_ERROR says so.
        if !requestEnded { connection.write(HTTP2Frame(streamID: id, payload: .rstStream(.noError))) }
        connection.streamFinished(id)
    }

    private func sendPendingHead(endStream: Bool) {
        guard let fields = pendingHead else { return }
        pendingHead = nil
        connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: fields, endStream: endStream))))
    }

    private func sendPendingData(endStream: Bool = false) {
        guard let data = pendingData else { return }
        pendingData = nil
        connection.write(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(data), endStream: endStream))))
    }

    func flush() {
        sendPendingData()
        connection.flush()
    }

    /// HTTP/2 has no Upgrade (RFC 9113 §8.6); exchanges never ask, and a stream cannot become a tunnel.
    func switchToTunnel() { abortResponse() }

    /// Ends this stream as broken (RST_STREAM INTERNAL_ERROR): the client does not take a cut-off response as
    /// complete, and the connection's other streams go on.
    func abortResponse() {
        guard !responseEnded else { return }
        responseEnded = true
        exchange = nil
        held.removeAll()
        pendingData = nil
        connection.write(HTTP2Frame(streamID: id, payload: .rstStream(.internalError)))
        connection.flush()
        connection.streamFinished(id)
    }

    func setRequestBodyPaused(_ paused: Bool) {
        guard paused != readPaused else { return }
        readPaused = paused
        while !readPaused, !held.isEmpty {
            let (data, length) = held.removeFirst()
            deliver(data, length: length)
        }
    }

    // MARK: Mapping between HTTP/2 fields and heads

    /// The request as an HTTP/1.1-shaped head: `:authority` becomes Host, cookies split across fields are
    /// joined again (RFC 9113 §8.2.3), pseudo-headers dropped; or why the header block is malformed.
    ///
    /// This is where request fields are validated (NIO's own header-block validation is off: it checked every
    /// field again, in both directions, at about 5% of the HTTP/2 path's time, and the gateway's responses come
    /// from its own HTTP/1.1 parser, stricter than NIO's checks, or from NIO's validating HTTP/2 client). The
    /// checks are NIO's, from RFC 9113 §8.2 and §8.3: names are lowercase tokens; no CR, LF or NUL in values;
    /// pseudo-headers known, single, before the regular fields, without spaces or controls, `:method`,
    /// `:scheme` and a non-empty `:path` present; no connection-specific fields; `te` only "trailers". An
    /// HTTP/1.1 request line or field cannot be smuggled through a stream. CONNECT is not proxied.
    static func request(from fields: HPACKHeaders, endStream: Bool) -> Result<IncomingRequest, MalformedFields> {
        var method: String?
        var path: String?
        var authority: String?
        var scheme = false
        var regularSeen = false
        var headers = HeaderList()
        var cookies: [String] = []
        var contentLength: Int?
        for (name, value, _) in fields {
            if name.utf8.first == UInt8(ascii: ":") {
                guard !regularSeen else { return .failure(.init("pseudo-header \(name) after regular fields")) }
                guard HTTP2FieldSyntax.isPseudoHeaderValue(value) else { return .failure(.init("invalid \(name) value")) }
                switch name {
                case ":method" where method == nil: method = value
                case ":path" where path == nil: path = value
                case ":authority" where authority == nil: authority = value
                case ":scheme" where !scheme: scheme = true
                case ":method", ":path", ":authority", ":scheme": return .failure(.init("duplicate \(name)"))
                default: return .failure(.init("unknown pseudo-header \(name)"))
                }
                continue
            }
            regularSeen = true
            guard HTTP2FieldSyntax.isFieldName(name) else { return .failure(.init("invalid field name")) }
            guard HTTP2FieldSyntax.isFieldValue(value) else { return .failure(.init("invalid value in \(name)")) }
            if HTTP2Fields.isConnectionSpecific(name) { return .failure(.init("connection-specific field \(name)")) }
            switch name {
            case "cookie": cookies.append(value)
            case "host": if authority == nil { authority = value }
            case "content-length": contentLength = Int(value)
            case "te":
                guard value == "trailers" else { return .failure(.init("te other than trailers")) }
                headers.add(name: name, value: value)
            default: headers.add(name: name, value: value)
            }
        }
        guard let method, method != "CONNECT", scheme, let path, path.hasPrefix("/") || path == "*" else {
            return .failure(.init("missing or invalid :method, :scheme or :path"))
        }
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
        return .success(IncomingRequest(head: head, framing: framing, expectsContinue: expectsContinue))
    }

    /// Trailer fields are not forwarded, but a malformed block still ends the stream (RFC 9113 §8.1.1).
    static func trailersAreWellFormed(_ fields: HPACKHeaders) -> Bool {
        for (name, value, _) in fields {
            guard HTTP2FieldSyntax.isFieldName(name), HTTP2FieldSyntax.isFieldValue(value) else { return false }
        }
        return true
    }

    /// Response fields: `:status` first, names lowercased, connection-specific fields removed (RFC 9113 §8.2.2).
    static func fields(of head: ResponseHead) -> HPACKHeaders {
        var fields = HPACKHeaders()
        fields.reserveCapacity(head.headers.count + 1)
        fields.add(name: ":status", value: String(head.status))
        head.headers.forEachField(lowercasingNames: true) { name, value in
            if !HTTP2Fields.isConnectionSpecific(name) { fields.add(name: name, value: value, indexing: indexing(of: name)) }
        }
        return fields
    }

    /// Whether HPACK may keep a response field in the connection's dynamic table (RFC 7541 §6.2). Values that
    /// differ in nearly every response are not kept: they would only push out the ones that repeat (content
    /// type, security headers), which then go out as one byte each; and NIO's encoder looks every field up in
    /// the table entry by entry, so a table full of spent values costs every later response. Cookies are never
    /// kept (§7.1.3: a shared table must not let one response's secrets be probed by another's size).
    static func indexing(of lowercasedName: String) -> HPACKIndexing {
        if neverIndexed.contains(lowercasedName) { return .neverIndexed }
        return perResponseValues.contains(lowercasedName) ? .nonIndexable : .indexable
    }

    private static let neverIndexed = FieldNameSet(["set-cookie"])
    private static let perResponseValues = FieldNameSet([
        "date", "x-request-id", "content-length", "etag", "last-modified", "age", "expires", "traceparent",
        "tracestate", "location", "content-range", "ratelimit", "ratelimit-remaining", "ratelimit-reset",
        "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after",
    ])
}

/// Why a request's header block was refused.
struct MalformedFields: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// The byte rules of HTTP/2 fields (RFC 9113 §8.2.1, RFC 9110 §5.1 and §5.5), on UTF-8 bytes.
enum HTTP2FieldSyntax {
    /// A token without upper case: HTTP/2 names are lowercase.
    static func isFieldName(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { bytes in !bytes.isEmpty && bytes.allSatisfy { ASCII.isToken($0) && ASCII.lower($0) == $0 } }
    }

    static func isFieldValue(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in !bytes.contains { $0 == 0x00 || $0 == 0x0A || $0 == 0x0D } }
    }

    static func isPseudoHeaderValue(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in !bytes.contains { $0 <= 0x20 || $0 == 0x7F } }
    }
}
