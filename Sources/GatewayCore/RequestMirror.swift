import GatewayHTTP
import NIOCore

/// A copy of a request sent to a route's `mirror` upstream (shadow traffic for a new version): it gets the
/// same head and body parts as the real call, its answer is read and dropped, and it never holds the real
/// request back. A mirror that cannot keep up with the body (more than `maxBacklogBytes` waiting for its
/// connection) is abandoned, and so is one whose request will not be complete.
///
/// Lives on the exchange's event loop. The call keeps it alive until the copy's answer ends or fails.
final class RequestMirror: UpstreamCallDelegate {
    static let maxBacklogBytes = 256 * 1024

    private var call: UpstreamCall?
    /// Body bytes handed over while the copy's connection could not take them.
    private var backlog = 0
    private let metrics: RouteMetrics

    init(metrics: RouteMetrics) {
        self.metrics = metrics
    }

    func start(_ call: UpstreamCall) {
        self.call = call
        call.start()
    }

    func sendBody(_ buffer: ByteBuffer) {
        guard let call else { return }
        if !call.isWritable {
            backlog += buffer.readableBytes
            if backlog > Self.maxBacklogBytes { return abandon() }
        }
        call.sendBody(buffer)
    }

    func sendEnd() { call?.sendEnd() }

    /// Gives the copy up: it fell behind the body, or the real request ends incomplete (the client left, its
    /// body was refused), and so must the copy, or the mirror upstream would take a cut body for a whole one.
    func abandon() {
        guard let call else { return }
        call.cancel()
        self.call = nil
        metrics.mirrorOutcome("dropped")
    }

    // MARK: UpstreamCallDelegate: the answer goes nowhere.

    func upstreamConnected() { backlog = 0 }
    func upstreamWritabilityChanged(isWritable: Bool) { if isWritable { backlog = 0 } }
    func upstreamResponseHead(_ head: consuming ResponseHead) {}
    func upstreamResponseBody(_ buffer: ByteBuffer) {}
    func upstreamReadComplete() {}

    func upstreamResponseEnd() {
        call = nil
        metrics.mirrorOutcome("answered")
    }

    func upstreamFailed(_ error: GatewayError) {
        call = nil
        metrics.mirrorOutcome("failed")
    }
}
