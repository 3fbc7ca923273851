import GatewayCore
import GatewayHTTP
import NIOCore

/// What carries one request to a target and its response back: a pooled HTTP/1.1 connection
/// (`UpstreamConnection`) or one stream of an HTTP/2 connection (`HTTP2UpstreamStream`).
///
/// A `ForwardingCall` drives a link the same way whichever it is; the link frames the body for its protocol
/// (chunked on HTTP/1.1, DATA frames on HTTP/2) and reports back through the call's `received...` and
/// `connection...` methods. Loop-bound: everything runs on the pool's event loop.
protocol UpstreamLink: AnyObject {
    /// The call using this link, nil while idle.
    var call: ForwardingCall? { get set }
    var isWritable: Bool { get }
    var isClosed: Bool { get }
    /// After 101 Switching Protocols (HTTP/1.1 only): bytes pass through unframed.
    var isTunnel: Bool { get }
    /// The upstream dropped this link before it looked at the request (a pooled connection it had closed,
    /// a stream it refused): the request may go once more on a fresh link, whatever its method.
    var failedBeforeUse: Bool { get }

    /// Sends the request head; `framing` says how the body that follows is delimited.
    func writeHead(_ head: RequestHead, framing: BodyFraming)
    func writeBody(_ buffer: ByteBuffer)
    /// The request is complete.
    func writeEnd()
    func flush()
    /// Starts the read timeout (time to the first response byte, then between reads).
    func startReadTimeout(_ timeout: TimeAmount)
    func stopReadTimeout()
    /// Stops (or resumes) reading the response, for backpressure.
    func setReadPaused(_ paused: Bool)
    /// The exchange completed cleanly on both sides: an HTTP/1.1 connection goes back to its pool.
    func release()
    /// A new link its call no longer wants (the try ended while it was being made): a fresh HTTP/1.1
    /// connection is still good for the pool; an HTTP/2 stream is reset.
    func giveBack()
    /// Drops the link (it is not reused); on HTTP/2 only the stream is reset.
    func close()
}

extension UpstreamLink {
    /// Drops the link, then tells its call why (the call may retry on another link).
    func closeReportingFailure(_ error: any Error) {
        let call = self.call
        close()
        call?.connectionFailed(self, error: error)
    }
}

/// A read timeout kept as a deadline that every read pushes back, checked by one lazily re-armed timer:
/// no timer is scheduled or cancelled per read.
final class ReadDeadline {
    private let eventLoop: EventLoop
    private var timeout: TimeAmount = .seconds(30)
    private var deadline: NIODeadline?
    private var timer: Scheduled<Void>?
    /// When `timer` fires.
    private var timerDue: NIODeadline?
    /// Runs when the deadline passes (once per arming). Its owner holds it, so it must not capture the owner
    /// strongly; an owner that captures itself unowned cancels the deadline in its deinit.
    var onExpiry: (() -> Void)?

    init(eventLoop: EventLoop) { self.eventLoop = eventLoop }

    var isArmed: Bool { deadline != nil }

    /// Starts counting `timeout` (or the last one given) from now.
    func arm(_ timeout: TimeAmount? = nil) {
        if let timeout { self.timeout = timeout }
        let deadline = EventClock.now() + self.timeout
        self.deadline = deadline
        // The timer left from a longer timeout (another route's request on this pooled connection) would fire late.
        if let timerDue, timerDue > deadline {
            timer?.cancel()
            timer = nil
        }
        if timer == nil { schedule(in: self.timeout) }
    }

    /// Something was read: the deadline moves (only while armed).
    func extend() {
        if deadline != nil { deadline = EventClock.now() + timeout }
    }

    func disarm() { deadline = nil }

    /// Disarms and drops the timer (the link is closing).
    func cancel() {
        deadline = nil
        timer?.cancel()
        timer = nil
    }

    private func schedule(in delay: TimeAmount) {
        timerDue = EventClock.now() + delay
        timer = eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            timer = nil
            guard let deadline else { return }
            let now = NIODeadline.now()
            if now < deadline {
                schedule(in: deadline - now)
            } else {
                self.deadline = nil
                onExpiry?()
            }
        }
    }
}
