import GatewayCore
import NIOCore
import NIOHTTP1

/// One keep-alive HTTP/1.1 connection to an upstream target, and the channel handler that drives it.
///
/// While an exchange uses it, response parts go straight to that exchange's `HTTP1UpstreamCall` (same
/// event loop, no hops); while parked in the pool it belongs to its `TargetPool`.
final class UpstreamConnection: ChannelDuplexHandler, Hashable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    unowned let pool: TargetPool
    private var context: ChannelHandlerContext?
    /// The call using this connection, nil while idle.
    var call: HTTP1UpstreamCall?
    /// Whether this connection already served an exchange (a stale keep-alive connection may be retried).
    var hasServedRequests = false
    private(set) var isClosed = false

    // Backpressure: reads the channel asked for while the client was not keeping up.
    private var readPaused = false
    private var readPending = false

    // Read timeout as a deadline checked by one lazily re-armed timer (no per-read timer churn).
    private var readTimeout: TimeAmount = .seconds(30)
    private var readDeadline: NIODeadline?
    private var readTimer: Scheduled<Void>?

    init(pool: TargetPool) { self.pool = pool }

    static func == (lhs: UpstreamConnection, rhs: UpstreamConnection) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    // MARK: Used by the call

    func write(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    /// Starts the read timeout (time to the first response byte, then between reads).
    func startReadTimeout(_ timeout: TimeAmount) {
        readTimeout = timeout
        guard !readPaused else { return }
        armReadDeadline()
    }

    func stopReadTimeout() { readDeadline = nil }

    func setReadPaused(_ paused: Bool) {
        guard paused != readPaused, let context else { return }
        readPaused = paused
        if paused {
            readDeadline = nil  // the upstream is not slow, the client is
        } else {
            if call != nil { armReadDeadline() }
            if readPending {
                readPending = false
                context.read()
            }
        }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        readDeadline = nil
        readTimer?.cancel()
        readTimer = nil
        context?.close(promise: nil)
    }

    // MARK: Timer

    private func armReadDeadline() {
        readDeadline = .now() + readTimeout
        if readTimer == nil { scheduleReadTimer(in: readTimeout) }
    }

    private func scheduleReadTimer(in delay: TimeAmount) {
        guard let context else { return }
        readTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            self.readTimer = nil
            guard let deadline = self.readDeadline, !self.isClosed else { return }
            let now = NIODeadline.now()
            if now < deadline {
                self.scheduleReadTimer(in: deadline - now)
            } else {
                self.readDeadline = nil
                self.call?.connectionTimedOut()
            }
        }
    }

    // MARK: ChannelHandler

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard let call else {
            // An idle connection has nothing to say; anything it sends makes it unusable.
            close()
            return
        }
        if readDeadline != nil { readDeadline = .now() + readTimeout }
        call.received(part, from: self)
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
        isClosed = true
        readDeadline = nil
        readTimer?.cancel()
        readTimer = nil
        if let call {
            call.connectionClosed(self)
        } else {
            pool.connectionClosedWhileIdle(self)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Resets and malformed responses both end this connection; the call decides what the client sees.
        call?.connectionFailed(self, error: error)
        close()
    }

    func read(context: ChannelHandlerContext) {
        if readPaused {
            readPending = true
        } else {
            context.read()
        }
    }
}
