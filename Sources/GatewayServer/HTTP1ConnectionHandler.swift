import GatewayCore
import GatewayHTTP
import GatewayPolicy
import NIOCore

/// The HTTP/1.1 edge of one client connection: parsing (with GatewayHTTP's strict codec), keep-alive,
/// pipelining (answered in order), response framing, client timeouts, read backpressure and graceful
/// close. Each request becomes an exchange from the `ConnectionResponder`; this handler only moves bytes
/// and keeps the HTTP/1 rules.
///
/// It is the only handler in the pipeline: bytes in, bytes out. No per-message boxing, no second codec
/// pass, and pipelined requests simply stay in the input buffer until their turn.
final class HTTP1ConnectionHandler: ChannelDuplexHandler, DownstreamStream {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        /// Reading the next request head.
        case head
        /// Passing the current request's body to its exchange.
        case body(BodyDecoder)
        /// The request is complete; its response is not. Later bytes (pipelining) wait in `input`.
        case awaitingResponse
        /// After 101 Switching Protocols: every byte goes to the exchange as it is, both ways.
        case tunnel
        /// Closing: input is ignored.
        case closing
    }

    private let responder: ConnectionResponder
    /// Requests on this connection so far, against `max_requests_per_connection`.
    private var requestsStarted = 0
    private let maxRequests: Int
    private var context: ChannelHandlerContext?
    private var output: ChannelOutput
    private var parser: HTTP1HeadParser
    /// Received bytes not parsed yet.
    private var input = ByteBuffer()
    private var phase = Phase.head
    private var processing = false

    // Timeouts of the connection itself (idle keep-alive and slow request heads), as one lazy timer.
    private var deadlines: ConnectionDeadlines
    private var timer: Scheduled<Void>?
    private var timerFiresAt: NIODeadline?

    // The current request and its response.
    private var exchange: ExchangeDriver?
    private var requestMethod = HTTPMethod.GET
    private var requestVersion = HTTPVersion.http1_1
    private var requestHasBody = false
    private var requestEndSeen = false
    private var inExchange = false
    private var responseHeadWritten = false
    private var responseEnded = false
    private var responseChunked = false
    private var responseHasNoBody = false
    private var closeAfterResponse = false

    // Reads are held back while the exchange cannot take more body or pipelined requests are waiting.
    private var bodyPaused = false
    private var readPending = false
    private var draining = false
    private var closed = false

    init(
        responder: ConnectionResponder, writeScratch: WriteScratch, maxHeaderBytes: Int, maxHeaderCount: Int = 100,
        idleTimeout: TimeAmount, headerTimeout: TimeAmount, bodyTimeout: TimeAmount = .seconds(30), maxRequests: Int = .max
    ) {
        self.responder = responder
        self.output = ChannelOutput(scratch: writeScratch)
        self.maxRequests = maxRequests
        self.parser = HTTP1HeadParser(maxHeadBytes: maxHeaderBytes, maxFields: maxHeaderCount)
        self.deadlines = ConnectionDeadlines(
            now: NIODeadline.now().uptimeNanoseconds,
            idleTimeoutNanos: UInt64(idleTimeout.nanoseconds),
            headerTimeoutNanos: UInt64(headerTimeout.nanoseconds),
            bodyTimeoutNanos: UInt64(bodyTimeout.nanoseconds))
    }

    private var isReadPaused: Bool {
        if closed || bodyPaused { return true }
        if case .awaitingResponse = phase { return input.readableBytes > 0 }
        return false
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        channelWritable = context.channel.isWritable
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
        phase = .closing
        timer?.cancel()
        timer = nil
        let exchange = self.exchange
        self.exchange = nil
        exchange?.downstreamClosed()
        context.fireChannelInactive()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed else { return }
        let bytes = unwrapInboundIn(data)
        // One clock reading for everything this read sets off (the exchange's start, the upstream try, ...).
        EventClock.event {
            if deadlines.phase == .idle {
                let now = EventClock.now()
                deadlines.bytesArrived(now: now.uptimeNanoseconds)
                scheduleTimer(now: now)
            }
            if input.readableBytes == 0 {
                input = bytes
            } else {
                input.writeImmutableBuffer(bytes)
            }
            process()
        }
    }

    /// Parses and dispatches whatever the input holds, as far as the current state allows.
    private func process() {
        guard !processing else { return }
        processing = true
        defer {
            processing = false
            // Do not pin the receive buffer between reads (NIO reuses it when nothing else holds it).
            if input.readableBytes == 0 && input.capacity > 0 { input = HTTP1Writer.emptyBuffer }
        }
        while !closed {
            switch phase {
            case .head:
                guard input.readableBytes > 0 else { return }
                let parsed: ParsedRequest
                do {
                    guard let request = try parser.parseRequest(&input) else { return }
                    parsed = request
                } catch {
                    handleParseError(error)
                    return
                }
                startRequest(consume parsed)
            case .body(var decoder):
                if bodyPaused { return }
                let event: BodyDecoder.Event
                do {
                    guard let next = try decoder.next(&input) else {
                        phase = .body(decoder)
                        return
                    }
                    event = next
                } catch {
                    handleParseError(error)
                    return
                }
                switch event {
                case .data(let slice):
                    phase = .body(decoder)
                    if deadlines.phase == .readingBody { deadlines.bodyBytesArrived(now: EventClock.now().uptimeNanoseconds) }
                    exchange?.requestBodyPart(slice)
                case .end:
                    requestEnded()
                }
            case .tunnel:
                guard input.readableBytes > 0 else { return }
                let bytes = input
                input = HTTP1Writer.emptyBuffer
                exchange?.requestBodyPart(bytes)
                return
            case .awaitingResponse, .closing:
                return
            }
        }
    }

    private func startRequest(_ parsed: consuming ParsedRequest) {
        let bodyFollows = parsed.framing != .none
        if bodyFollows {
            let now = EventClock.now()
            deadlines.requestStarted(bodyFollows: true, now: now.uptimeNanoseconds)
            scheduleTimer(now: now)
        } else {
            deadlines.requestStarted()
        }
        requestsStarted += 1
        inExchange = true
        requestMethod = parsed.head.method
        requestVersion = parsed.head.version
        requestHasBody = parsed.framing != .none
        requestEndSeen = false
        responseHeadWritten = false
        responseEnded = false
        responseChunked = false
        responseHasNoBody = false
        closeAfterResponse = draining || !parsed.keepAlive || requestsStarted >= maxRequests
        bodyPaused = false
        phase = requestHasBody ? .body(BodyDecoder(framing: parsed.framing)) : .awaitingResponse
        if !requestHasBody { requestEndSeen = true }
        let framing = parsed.framing
        let expectsContinue = parsed.expectsContinue
        // Handed over, not copied: the exchange edits the head's field lists.
        let request = IncomingRequest(head: (consume parsed).head, framing: framing, expectsContinue: expectsContinue)
        let exchange = responder.startExchange(consume request, stream: self)
        // A synchronous answer (404, 413, ...) may have finished the exchange already.
        if inExchange { self.exchange = exchange }
        if !requestHasBody { exchange.requestEnded() }
    }

    private func requestEnded() {
        deadlines.bodyFinished()
        requestEndSeen = true
        phase = .awaitingResponse
        exchange?.requestEnded()
        if responseEnded { finishExchange() }
    }

    private func handleParseError(_ error: HTTPParseError) {
        closeAfterResponse = true
        phase = .closing
        if responseHeadWritten && !responseEnded {
            abortResponse()
            return
        }
        if let exchange {
            // The current request's body turned out malformed: that exchange cannot go on.
            self.exchange = nil
            exchange.downstreamClosed()
        }
        if !inExchange {
            inExchange = true
            requestMethod = .GET
            requestVersion = .http1_1
        }
        requestHasBody = true
        requestEndSeen = false
        responseHeadWritten = false
        responseEnded = false
        deadlines.requestStarted()
        let refusal: GatewayError
        switch error.kind {
        case .headTooLarge: refusal = .headersTooLarge
        case .firstLineTooLong: refusal = .uriTooLong
        case .malformed: refusal = .badRequest()
        }
        responder.respondToProtocolError(refusal, stream: self)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // I/O errors (resets): nothing sensible can be written any more.
        close()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        channelWritable = context.channel.isWritable
        exchange?.downstreamWritabilityChanged(isWritable: channelWritable)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            draining = true
            if inExchange { closeAfterResponse = true } else { close() }
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

    /// The channel's writability as NIO last reported it (see `channelWritabilityChanged`): asking the channel
    /// itself goes through the pipeline's reference to it.
    private var channelWritable = true
    var isWritable: Bool { context != nil && channelWritable }

    func writeInformational(_ head: ResponseHead) {
        guard inExchange, !responseHeadWritten else { return }
        send { HTTP1Writer.write(head, to: &$0) }
    }

    private func send(_ buffer: ByteBuffer) {
        guard let context else { return }
        output.write(buffer, to: context)
    }

    private func send(_ serialise: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        output.write(to: context, serialise)
    }

    func writeResponseHead(_ head: consuming ResponseHead) {
        guard inExchange, !responseHeadWritten else { return }
        responseHeadWritten = true
        head.version = requestVersion
        let status = head.status
        if status == 101 {
            // Switching protocols: the exchange set Connection/Upgrade; no body framing and no keep-alive
            // rules apply, the tunnel follows (`switchToTunnel`).
            responseHasNoBody = true
            send { HTTP1Writer.write(head, to: &$0) }
            return
        }
        if requestMethod == .HEAD || status < 200 || status == 204 || status == 304 {
            // No body follows: whatever framing the upstream chose would mislead the client.
            responseHasNoBody = true
            head.headers.remove(name: "transfer-encoding")
            if status == 204 || status < 200 { head.headers.remove(name: "content-length") }
        } else if !head.headers.contains(name: "content-length") {
            if requestVersion.minor >= 1 {
                head.headers.add(name: "transfer-encoding", value: "chunked")
                responseChunked = true
            } else {
                closeAfterResponse = true  // HTTP/1.0: the end of the body is the end of the connection
            }
        }
        // A response that overtakes its request body ends the connection: the rest of the body is not read.
        if requestHasBody && !requestEndSeen { closeAfterResponse = true }
        // The gateway's own answers to broken requests ask for the connection to end.
        if head.headers.containsToken("close", inField: "connection") { closeAfterResponse = true }
        if closeAfterResponse {
            if requestVersion.minor >= 1 { head.headers.replaceOrAdd(name: "connection", value: "close") }
        } else if requestVersion.minor == 0 {
            head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
        HeaderRules.addDateIfMissing(&head.headers)
        // A small body follows in the same buffer, and the response leaves as one write.
        send { HTTP1Writer.write(head, to: &$0) }
    }

    func writeResponseBody(_ buffer: ByteBuffer) {
        if case .tunnel = phase {
            if !closed { send(buffer) }
            return
        }
        guard responseHeadWritten, !responseEnded, !responseHasNoBody, buffer.readableBytes > 0 else { return }
        if responseChunked {
            send { HTTP1Writer.writeChunkHeader(size: buffer.readableBytes, to: &$0) }
            send(buffer)
            send(HTTP1Writer.crlf)
        } else {
            send(buffer)
        }
    }

    /// Dropped: HTTP/1.1 clients rarely take trailers, and what needs them (gRPC) speaks HTTP/2.
    func writeResponseTrailers(_ trailers: HeaderList) {}

    func writeResponseEnd() {
        guard let context, responseHeadWritten, !responseEnded else { return }
        responseEnded = true
        if case .tunnel = phase { closeAfterResponse = true }
        if responseChunked && !responseHasNoBody { send(HTTP1Writer.lastChunk) }
        if closeAfterResponse || (requestHasBody && !requestEndSeen) {
            // Close only once everything written has reached the socket.
            exchange = nil
            closed = true
            phase = .closing
            output.takeFlush().send(on: context)
            context.writeAndFlush(wrapOutboundOut(HTTP1Writer.emptyBuffer)).assumeIsolated().whenComplete { [self] _ in
                self.context?.close(promise: nil)
            }
            return
        }
        if requestEndSeen { finishExchange() }
    }

    func flush() {
        guard let context else { return }
        output.takeFlush().send(on: context)
    }

    func switchToTunnel() {
        guard responseHeadWritten, !responseEnded, !closed else { return }
        // The tunnel ends with the connection; neither idle nor header timeouts apply inside it.
        phase = .tunnel
        requestEndSeen = true
        bodyPaused = false
        flush()
        process()  // bytes the client sent right after the request head
        resumeReadingIfPossible()
    }

    func abortResponse() {
        exchange = nil
        close()
    }

    func setRequestBodyPaused(_ paused: Bool) {
        guard paused != bodyPaused else { return }
        bodyPaused = paused
        if deadlines.phase == .readingBody {
            let now = EventClock.now()
            deadlines.bodyReadingPaused(paused, now: now.uptimeNanoseconds)
            if !paused { scheduleTimer(now: now) }
        }
        if !paused {
            process()
            resumeReadingIfPossible()
        }
    }

    private func close() {
        guard !closed, let context else { return }
        closed = true
        phase = .closing
        context.close(promise: nil)
    }

    // MARK: Between requests

    /// Both the request and the response are complete: get ready for the next request on this connection.
    private func finishExchange() {
        exchange = nil
        inExchange = false
        bodyPaused = false
        phase = .head
        let now = EventClock.now()
        deadlines.requestFinished(now: now.uptimeNanoseconds)
        scheduleTimer(now: now)
        process()  // a pipelined request may already be waiting
        resumeReadingIfPossible()
    }

    // MARK: Timer

    private func scheduleTimer(now: NIODeadline = EventClock.now()) {
        guard let context else { return }
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
        case .idleExpired, .headerExpired, .bodyExpired:
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
            phase = .closing
            inExchange = true
            requestMethod = .GET
            requestVersion = .http1_1
            requestHasBody = true
            requestEndSeen = false
            responseHeadWritten = false
            responseEnded = false
            deadlines.requestStarted()
            responder.respondToProtocolError(.requestTimeout, stream: self)
        case .bodyExpired:
            // The client stopped sending its body (slow-body attack, or a dead client): the exchange cannot
            // finish. 408 if nothing was answered yet, then close.
            closeAfterResponse = true
            phase = .closing
            deadlines.bodyFinished()
            if let exchange {
                self.exchange = nil
                exchange.downstreamClosed()
            }
            if responseHeadWritten {
                close()
            } else {
                responseEnded = false
                responder.respondToProtocolError(.requestTimeout, stream: self)
            }
        }
    }
}
