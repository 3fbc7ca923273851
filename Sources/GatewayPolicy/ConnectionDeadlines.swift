/// Client-connection timeouts of an HTTP/1 connection as one deadline, so the shell keeps a single timer.
///
/// - idle: no request in progress and no bytes of the next one yet: `idleTimeout` closes silently.
/// - reading head: bytes of a request arrived but its head is not complete: `headerTimeout` (slowloris
///   defence) answers 408 and closes. The clock starts at the first byte, not at the end of the previous
///   response, so a keep-alive client is not punished for thinking time.
/// - busy: a request is being handled; its own timeouts (upstream read/total) apply instead.
///
/// Setting a deadline is just storing a number: the shell arms one timer and, when it fires, asks
/// `check(now:)`; `.notYet` means "re-arm for the remaining time". That keeps per-request timer churn off
/// the hot path (the same trick Netty's IdleStateHandler uses).
public struct ConnectionDeadlines: Sendable {
    public enum Phase: Sendable, Equatable { case idle, readingHead, busy }
    public enum Verdict: Sendable, Equatable {
        /// Nothing is due; no timer is needed until the phase changes.
        case none
        /// Not yet: check again after this many nanoseconds.
        case notYet(remainingNanos: UInt64)
        case idleExpired
        case headerExpired
    }

    public private(set) var phase: Phase = .idle
    public private(set) var deadline: UInt64?
    public let idleTimeoutNanos: UInt64
    public let headerTimeoutNanos: UInt64

    /// A new connection counts as reading a head: it connected to send one, so the header timeout applies
    /// from accept (as NGINX's client_header_timeout does).
    public init(now: UInt64, idleTimeoutNanos: UInt64, headerTimeoutNanos: UInt64) {
        self.idleTimeoutNanos = idleTimeoutNanos
        self.headerTimeoutNanos = headerTimeoutNanos
        self.phase = .readingHead
        self.deadline = now &+ headerTimeoutNanos
    }

    /// Bytes arrived from the client. Only the first bytes after an idle period start the header clock.
    public mutating func bytesArrived(now: UInt64) {
        guard phase == .idle else { return }
        phase = .readingHead
        deadline = now &+ headerTimeoutNanos
    }

    /// A complete request head was decoded.
    public mutating func requestStarted() {
        phase = .busy
        deadline = nil
    }

    /// The exchange finished and the connection stays open for the next request.
    public mutating func requestFinished(now: UInt64) {
        phase = .idle
        deadline = now &+ idleTimeoutNanos
    }

    public func check(now: UInt64) -> Verdict {
        guard let deadline else { return .none }
        if now < deadline { return .notYet(remainingNanos: deadline - now) }
        switch phase {
        case .idle: return .idleExpired
        case .readingHead: return .headerExpired
        case .busy: return .none
        }
    }
}
