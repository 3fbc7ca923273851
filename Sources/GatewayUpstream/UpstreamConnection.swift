import GatewayCore
import GatewayHTTP
import NIOCore

/// One keep-alive HTTP/1.1 connection to an upstream target, and the only handler in its pipeline:
/// it parses responses with GatewayHTTP's codec and writes requests as bytes.
///
/// While an exchange uses it, response parts go straight to that exchange's `ForwardingCall` (same
/// event loop, no hops); while parked in the pool it belongs to its `TargetPool`.
final class UpstreamConnection: ChannelDuplexHandler, Hashable, UpstreamLink {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        /// No request outstanding.
        case idle
        /// Waiting for the head of the response to a request with this method; `upgrade` when the request
        /// asked to switch protocols (then a 101 is the final answer, not an interim one).
        case head(HTTPMethod, upgrade: Bool)
        case body(BodyDecoder)
        /// After 101 Switching Protocols: every byte goes to the call as it is, until either side closes.
        case tunnel
    }

    unowned let pool: TargetPool
    private var context: ChannelHandlerContext?
    private var parser: HTTP1HeadParser
    private var input = ByteBuffer()
    private var output: ChannelOutput
    private var phase = Phase.idle
    private var processing = false
    /// The call using this connection, nil while idle.
    var call: ForwardingCall?
    /// Whether this connection already served an exchange (a stale keep-alive connection may be retried).
    var hasServedRequests = false
    /// Requests this connection has answered, and when it was made (for `pool.max_requests_per_connection` and
    /// `pool.max_connection_age_ms`).
    private(set) var requestsServed = 0
    let openedAt = EventClock.now().uptimeNanoseconds
    private(set) var isClosed = false
    /// Whether the pool was told this connection is gone (exactly once, whichever way it ends).
    private var ended = false

    // Backpressure: reads the channel asked for while the client was not keeping up.
    private var readPaused = false
    private var readPending = false
    private let readDeadline: ReadDeadline
    /// How the body of the request in flight is framed.
    private var requestFraming = BodyFraming.none

    init(pool: TargetPool, maxHeadBytes: Int = 65_536) {
        self.pool = pool
        self.output = ChannelOutput(scratch: pool.writeScratch)
        self.parser = HTTP1HeadParser(maxHeadBytes: maxHeadBytes, maxFields: 256)
        self.readDeadline = ReadDeadline(eventLoop: pool.eventLoop)
        // Unowned, not weak: a weak reference gives the object a side table, and every retain and release of it
        // (several per request, many inside NIO's pipeline) then takes the runtime's slow path. `deinit`
        // cancels the deadline, so the callback never runs after the connection is gone.
        readDeadline.onExpiry = { [unowned self] in
            guard !self.isClosed else { return }
            self.call?.connectionTimedOut()
        }
    }

    deinit { readDeadline.cancel() }

    static func == (lhs: UpstreamConnection, rhs: UpstreamConnection) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    /// The channel's writability as NIO last reported it: asked per request and per body part, and asking the
    /// channel itself goes through the pipeline's reference to it.
    private var channelWritable = true
    var isWritable: Bool { context != nil && channelWritable }

    /// A keep-alive connection that already served an exchange: when it fails before answering, the upstream
    /// most likely closed it while idle, just as it was reused.
    var failedBeforeUse: Bool { hasServedRequests }

    // MARK: Used by the call

    /// Sends a request head; the response to it is parsed with the request's method in mind (HEAD).
    func writeHead(_ head: RequestHead, framing: BodyFraming) {
        guard context != nil else { return }
        requestFraming = framing
        phase = .head(head.method, upgrade: head.headers.containsToken("upgrade", inField: "connection"))
        write { HTTP1Writer.write(head, to: &$0) }
    }

    func writeBody(_ buffer: ByteBuffer) {
        if requestFraming == .chunked && !isTunnel {
            write { HTTP1Writer.writeChunkHeader(size: buffer.readableBytes, to: &$0) }
            write(buffer)
            write(HTTP1Writer.crlf)
        } else {
            write(buffer)
        }
    }

    func writeEnd() {
        if requestFraming == .chunked { write(HTTP1Writer.lastChunk) }
    }

    func release() {
        hasServedRequests = true
        requestsServed += 1
        setReadPaused(false)
        pool.park(self)
    }

    func giveBack() { pool.park(self) }

    private func write(_ buffer: ByteBuffer) {
        guard let context else { return }
        output.write(buffer, to: context)
    }

    private func write(_ serialise: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        output.write(to: context, serialise)
    }

    func flush() {
        guard let context else { return }
        output.takeFlush().send(on: context)
    }

    /// Starts the read timeout (time to the first response byte, then between reads).
    func startReadTimeout(_ timeout: TimeAmount) {
        if case .tunnel = phase { return }  // a tunnel may be quiet for as long as both sides like
        guard !readPaused else { return }
        readDeadline.arm(timeout)
    }

    func stopReadTimeout() { readDeadline.disarm() }

    var isTunnel: Bool {
        if case .tunnel = phase { return true }
        return false
    }

    func setReadPaused(_ paused: Bool) {
        guard paused != readPaused, let context else { return }
        readPaused = paused
        if paused {
            readDeadline.disarm()  // the upstream is not slow, the client is
        } else {
            if call != nil, !isTunnel { readDeadline.arm() }
            // Deliver what was held back (even with no bytes left, the end of a length-delimited body may
            // still be due), then flush it: this may run inside the client channel's writability event, and
            // without a flush those bytes would wait for an upstream read that never comes, stalling the download.
            let call = self.call
            process()
            call?.readComplete()
            if readPending {
                readPending = false
                context.read()
            }
        }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        readDeadline.cancel()
        context?.close(promise: nil)
        end()
    }

    /// The connect attempt failed: this connection never existed for the pool.
    func connectFailed() {
        isClosed = true
        end()
    }

    private func end() {
        guard !ended else { return }
        ended = true
        pool.connectionEnded(self)
    }

    // MARK: Inbound

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        channelWritable = context.channel.isWritable
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        isClosed = true
        end()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        guard call != nil else {
            // An idle connection has nothing to say; anything it sends makes it unusable.
            close()
            return
        }
        // One clock reading for everything this read sets off (deadlines, metrics, the exchange's end, ...).
        EventClock.event {
            readDeadline.extend()
            if input.readableBytes == 0 {
                input = bytes
            } else {
                input.writeImmutableBuffer(bytes)
            }
            process()
        }
    }

    private func process() {
        guard !processing else { return }
        processing = true
        defer {
            processing = false
            // Bytes after a complete response that nobody asked for make the connection unusable.
            if call == nil && input.readableBytes > 0 { close() }
            if input.readableBytes == 0 && input.capacity > 0 { input = HTTP1Writer.emptyBuffer }
        }
        while let call, !isClosed, !readPaused {
            switch phase {
            case .idle:
                if input.readableBytes > 0 {  // bytes nobody asked for: the connection is unusable
                    call.connectionFailed(self, error: HTTPParseError.malformed("unexpected bytes after the response"))
                    close()
                }
                return
            case .head(let method, let upgrade):
                do {
                    guard let parsed = try parser.parseResponse(&input, requestMethod: method) else { return }
                    if parsed.head.status == 101 && upgrade {
                        // The connection now belongs to the tunnel; it never returns to the pool.
                        phase = .tunnel
                        stopReadTimeout()
                        call.received(parsed, from: self)
                        continue
                    }
                    if parsed.head.status < 200 {
                        // 100 Continue and other interim answers: the final one follows. Early hints go on to the client.
                        if parsed.head.status == 103 { call.receivedEarlyHints(parsed.head, from: self) }
                        continue
                    }
                    let framing = parsed.framing
                    phase = framing == .none ? .idle : .body(BodyDecoder(framing: framing))
                    // Handed over, not copied: the head's field list is then the exchange's alone, and
                    // removing hop-by-hop fields from it does not copy it.
                    call.received(consume parsed, from: self)
                    if framing == .none { call.receivedEnd(from: self) }
                } catch {
                    closeReportingFailure(error)
                    return
                }
            case .tunnel:
                guard input.readableBytes > 0 else { return }
                let bytes = input
                input = HTTP1Writer.emptyBuffer
                call.receivedBody(bytes, from: self)
                return
            case .body(var decoder):
                do {
                    guard let event = try decoder.next(&input) else {
                        phase = .body(decoder)
                        return
                    }
                    switch event {
                    case .data(let slice):
                        phase = .body(decoder)
                        call.receivedBody(slice, from: self)
                    case .end:
                        phase = .idle
                        call.receivedEnd(from: self)
                    }
                } catch {
                    closeReportingFailure(error)
                    return
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        call?.readComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        channelWritable = context.channel.isWritable
        call?.writabilityChanged(isWritable: channelWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        readDeadline.cancel()
        if let call {
            // A close-delimited body (or a tunnel) ends here; anything else was cut short.
            if case .tunnel = phase {
                call.receivedEnd(from: self)
            } else if case .body(var decoder) = phase, (try? decoder.endOfInput()) == .end {
                phase = .idle
                call.receivedEnd(from: self)
            } else {
                call.connectionClosed(self)
            }
        }
        end()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Resets and the like end this connection; the call decides what the client sees.
        closeReportingFailure(error)
    }

    func read(context: ChannelHandlerContext) {
        if readPaused {
            readPending = true
        } else {
            context.read()
        }
    }
}
