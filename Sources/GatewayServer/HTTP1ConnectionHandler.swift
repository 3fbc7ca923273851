import GatewayCore
import GatewayPolicy
import NIOCore
import NIOHTTP1

/// The HTTP/1.1 edge of one client connection: keep-alive, pipelining (answered in order), framing of
/// responses, client timeouts, read backpressure and graceful close. Each request becomes an exchange
/// from the `ConnectionResponder`; this handler only moves bytes and keeps HTTP/1 rules.
final class HTTP1ConnectionHandler: ChannelDuplexHandler, DownstreamStream {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: ConnectionResponder
    private let maxHeaderBytes: Int
    private var context: ChannelHandlerContext?

    // Timeouts of the connection itself (idle keep-alive and slow request heads).
    private var deadlines: ConnectionDeadlines
    private var timer: Scheduled<Void>?
    /// When the scheduled timer fires; a later deadline reuses it, an earlier one re-arms it.
    private var timerFiresAt: NIODeadline?

    // The request being handled.
    private var exchange: ExchangeDriver?
    private var requestHead: HTTPRequestHead?
    private var requestHasBody = false
    private var requestEndSeen = false
    private var responseHeadWritten = false
    private var responseEnded = false
    private var closeAfterResponse = false

    /// What arrived for pipelined requests before the current response finished.
    private enum Queued {
        case part(HTTPServerRequestPart)
        case parseError(HTTPParserError)
    }
    private var queued = CircularBuffer<Queued>()
    private var processingQueue = false

    // Reads are held back while the exchange cannot take more body or while requests are queued.
    private var bodyPaused = false
    private var readPending = false
    private var draining = false
    private var closed = false

    init(responder: ConnectionResponder, maxHeaderBytes: Int, idleTimeout: TimeAmount, headerTimeout: TimeAmount) {
        self.responder = responder
        self.maxHeaderBytes = maxHeaderBytes
        self.deadlines = ConnectionDeadlines(
            now: NIODeadline.now().uptimeNanoseconds,
            idleTimeoutNanos: UInt64(idleTimeout.nanoseconds),
            headerTimeoutNanos: UInt64(headerTimeout.nanoseconds))
    }

    private var isReadPaused: Bool { bodyPaused || !queued.isEmpty || closed }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { scheduleTimer() }
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleTimer()
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        timer?.cancel()
        timer = nil
        let exchange = self.exchange
        self.exchange = nil
        queued.removeAll()
        exchange?.downstreamClosed()
        context.fireChannelInactive()
    }

    /// Called by the raw-bytes observer in front of the decoder: the first byte after an idle period
    /// starts the header timeout.
    func bytesArrived() {
        guard deadlines.phase == .idle else { return }
        deadlines.bytesArrived(now: NIODeadline.now().uptimeNanoseconds)
        scheduleTimer()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if closed { return }
        if case .head = part, requestHead != nil {
            // A pipelined request: hold it (and stop reading) until the current response is done.
            queued.append(.part(part))
        } else if !queued.isEmpty {
            queued.append(.part(part))
        } else {
            handle(part)
        }
    }

    private func handle(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            startRequest(head)
        case .body(let buffer):
            exchange?.requestBodyPart(buffer)
        case .end:
            requestEndSeen = true
            let exchange = self.exchange
            exchange?.requestEnded()
            if responseEnded { finishExchange() }
        }
    }

    private func startRequest(_ head: HTTPRequestHead) {
        deadlines.requestStarted()
        requestHead = head
        requestEndSeen = false
        responseHeadWritten = false
        responseEnded = false
        closeAfterResponse = draining || !head.isKeepAlive
        bodyPaused = false

        guard let framing = framing(of: head) else {
            requestHasBody = true
            closeAfterResponse = true
            responder.respondToProtocolError(.badRequest("The request's Content-Length or Transfer-Encoding is invalid."), stream: self)
            return
        }
        requestHasBody = framing.hasBody
        if head.uri.utf8.count > maxHeaderBytes {
            closeAfterResponse = true
            responder.respondToProtocolError(.headersTooLarge, stream: self)
            return
        }
        exchange = responder.startExchange(head: head, framing: framing, stream: self)
    }

    /// How the request body is framed, or nil when its framing headers are contradictory (the decoder
    /// already refuses most such requests; this is the last line).
    private func framing(of head: HTTPRequestHead) -> RequestBodyFraming? {
        let transferEncoding = head.headers["transfer-encoding"]
        let contentLength = head.headers["content-length"]
        if !transferEncoding.isEmpty {
            guard contentLength.isEmpty,
                transferEncoding.last?.split(separator: ",").last?.trimmingASCIISpaces().lowercased() == "chunked"
            else { return nil }
            return .streamed
        }
        guard let first = contentLength.first else { return RequestBodyFraming.none }
        guard contentLength.allSatisfy({ $0 == first }), let length = Int(first), length >= 0 else { return nil }
        return .contentLength(length)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            // I/O errors (resets): nothing sensible can be written any more.
            context.close(promise: nil)
            return
        }
        if requestHead != nil && requestEndSeen || !queued.isEmpty {
            // It belongs to a later pipelined request: answer it in its turn.
            queued.append(.parseError(parserError))
            return
        }
        handleParseError(parserError)
    }

    /// The decoder cannot continue after a parse error: answer if we still can, then close.
    private func handleParseError(_ error: HTTPParserError) {
        guard !closed else { return }
        closeAfterResponse = true
        if responseHeadWritten && !responseEnded {
            abortResponse()
            return
        }
        if let exchange {
            // The current request's body turned out malformed: that exchange cannot go on.
            self.exchange = nil
            exchange.downstreamClosed()
        }
        requestHead = requestHead ?? HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        requestHasBody = true
        responseHeadWritten = false
        responseEnded = false
        deadlines.requestStarted()
        responder.respondToProtocolError(error == .headerOverflow ? .headersTooLarge : .badRequest(), stream: self)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        exchange?.downstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            draining = true
            if exchange == nil && requestHead == nil {
                close()
            } else {
                closeAfterResponse = true
            }
        } else if case ChannelEvent.inputClosed = event {
            // The client half-closed: finish what is in flight, then close.
            closeAfterResponse = true
            if exchange == nil && requestHead == nil { close() }
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Outbound control

    func read(context: ChannelHandlerContext) {
        if isReadPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    private func resumeReadingIfPossible() {
        guard readPending, !isReadPaused, let context else { return }
        readPending = false
        context.read()
    }

    // MARK: DownstreamStream

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func writeInformational(_ head: HTTPResponseHead) {
        guard let context, !responseHeadWritten else { return }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
    }

    func writeResponseHead(_ head: HTTPResponseHead) {
        guard let context, let request = requestHead, !responseHeadWritten else { return }
        responseHeadWritten = true
        var head = head
        head.version = request.version
        let code = head.status.code
        if request.method == .HEAD || code == 204 || code == 304 || code < 200 {
            // No body follows: whatever framing the upstream chose would mislead the client.
            head.headers.remove(name: "transfer-encoding")
            if code == 204 || code < 200 { head.headers.remove(name: "content-length") }
        } else if !head.headers.contains(name: "content-length") {
            if request.version.major == 1 && request.version.minor >= 1 {
                head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
            } else {
                closeAfterResponse = true  // HTTP/1.0: the end of the body is the end of the connection
            }
        }
        // A response that overtakes its request body ends the connection: the rest of the body is not read.
        if requestHasBody && !requestEndSeen { closeAfterResponse = true }
        // The gateway's own answers to broken requests ask for the connection to end.
        if head.headers["connection"].contains(where: { $0.equalsASCIICaseInsensitive("close") }) { closeAfterResponse = true }
        if closeAfterResponse {
            if request.version.minor >= 1 { head.headers.replaceOrAdd(name: "connection", value: "close") }
        } else if request.version.minor == 0 {
            head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
    }

    func writeResponseBody(_ buffer: ByteBuffer) {
        guard let context, responseHeadWritten, !responseEnded else { return }
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }

    func writeResponseEnd(trailers: HTTPHeaders?) {
        guard let context, responseHeadWritten, !responseEnded else { return }
        responseEnded = true
        if closeAfterResponse || (requestHasBody && !requestEndSeen) {
            // Close only once everything written has reached the socket.
            exchange = nil
            closed = true
            context.writeAndFlush(wrapOutboundOut(.end(trailers))).assumeIsolated().whenComplete { [self] _ in
                self.context?.close(promise: nil)
            }
            return
        }
        context.write(wrapOutboundOut(.end(trailers)), promise: nil)
        if requestEndSeen { finishExchange() }
    }

    func flush() { context?.flush() }

    func abortResponse() {
        exchange = nil
        close()
    }

    func setRequestBodyPaused(_ paused: Bool) {
        bodyPaused = paused
        if !paused { resumeReadingIfPossible() }
    }

    private func close() {
        guard !closed, let context else { return }
        closed = true
        context.close(promise: nil)
    }

    // MARK: Between requests

    /// Both the request and the response are complete: get ready for the next request on this connection.
    private func finishExchange() {
        exchange = nil
        requestHead = nil
        bodyPaused = false
        deadlines.requestFinished(now: NIODeadline.now().uptimeNanoseconds)
        scheduleTimer()
        processQueue()
        resumeReadingIfPossible()
    }

    private func processQueue() {
        guard !processingQueue else { return }
        processingQueue = true
        defer { processingQueue = false }
        while let next = queued.first, !closed {
            switch next {
            case .part(.head) where requestHead != nil, .parseError where requestHead != nil:
                return  // the previous request is still in progress
            case .part(let part):
                queued.removeFirst()
                handle(part)
            case .parseError(let error):
                queued.removeFirst()
                handleParseError(error)
            }
        }
    }

    // MARK: Timer

    private func scheduleTimer() {
        guard let context else { return }
        let now = NIODeadline.now()
        switch deadlines.check(now: now.uptimeNanoseconds) {
        case .none:
            return
        case .notYet(let remaining):
            let firesAt = now + .nanoseconds(Int64(remaining))
            if let timerFiresAt, timer != nil, timerFiresAt <= firesAt { return }  // fires early enough; it re-checks
            timer?.cancel()
            timerFiresAt = firesAt
            timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: firesAt) { [self] in
                self.timer = nil
                self.timerFiresAt = nil
                self.timerFired()
            }
        case .idleExpired, .headerExpired:
            timerFired()
        }
    }

    private func timerFired() {
        guard !closed else { return }
        switch deadlines.check(now: NIODeadline.now().uptimeNanoseconds) {
        case .none:
            return
        case .notYet:
            scheduleTimer()
        case .idleExpired:
            close()
        case .headerExpired:
            // A slow or stalled request head (slowloris): say so, then hang up.
            closeAfterResponse = true
            requestHead = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
            requestHasBody = true
            responseHeadWritten = false
            responseEnded = false
            deadlines.requestStarted()
            responder.respondToProtocolError(.requestTimeout, stream: self)
        }
    }
}

/// Sits in front of the HTTP decoder and reports raw bytes, so a partial request head starts the header
/// timeout even though the decoder has produced nothing yet.
final class ClientActivityObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private unowned let connection: HTTP1ConnectionHandler

    init(connection: HTTP1ConnectionHandler) { self.connection = connection }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.bytesArrived()
        context.fireChannelRead(data)
    }
}
