/// Client-connection timeouts of an HTTP/1 connection as one deadline, so the shell keeps a single timer.
///
/// - idle: no request in progress and no bytes of the next one yet: `idleTimeout` closes silently.
/// - reading head: bytes of a request arrived but its head is not complete: `headerTimeout` (slowloris
///   defence) answers 408 and closes. The clock starts at the first byte, not at the end of the previous
///   response, so a keep-alive client is not punished for thinking time.
/// - reading body: the request body is arriving: `bodyTimeout` bounds the pause between two reads (slow-body
///   defence, 408). Paused while the gateway itself holds reading back (the upstream is not taking the body).
/// - busy: a request is being handled; its own timeouts (upstream read/total) apply instead.
///
/// Setting a deadline is just storing a number: the shell arms one timer and, when it fires, asks
/// `check(now:)`; `.notYet` means "re-arm for the remaining time". That keeps per-request timer churn off
/// the hot path (the same trick Netty's IdleStateHandler uses).
public struct ConnectionDeadlines: Sendable {
    public enum Phase: Sendable, Equatable { case idle, readingHead, readingBody, busy }
    public enum Verdict: Sendable, Equatable {
        /// Nothing is due; no timer is needed until the phase changes.
        case none
        /// Not yet: check again after this many nanoseconds.
        case notYet(remainingNanos: UInt64)
        case idleExpired
        case headerExpired
        case bodyExpired
    }

    public private(set) var phase: Phase = .idle
    public private(set) var deadline: UInt64?
    public let idleTimeoutNanos: UInt64
    public let headerTimeoutNanos: UInt64
    public let bodyTimeoutNanos: UInt64

    /// A new connection counts as reading a head: it connected to send one, so the header timeout applies
    /// from accept (as NGINX's client_header_timeout does).
    public init(now: UInt64, idleTimeoutNanos: UInt64, headerTimeoutNanos: UInt64, bodyTimeoutNanos: UInt64 = .max / 4) {
        self.idleTimeoutNanos = idleTimeoutNanos
        self.headerTimeoutNanos = headerTimeoutNanos
        self.bodyTimeoutNanos = bodyTimeoutNanos
        self.phase = .readingHead
        self.deadline = now &+ headerTimeoutNanos
    }

    /// Bytes arrived from the client. Only the first bytes after an idle period start the header clock.
    public mutating func bytesArrived(now: UInt64) {
        guard phase == .idle else { return }
        phase = .readingHead
        deadline = now &+ headerTimeoutNanos
    }

    /// A complete request head was decoded; `bodyFollows` when the client still has a body to send.
    public mutating func requestStarted(bodyFollows: Bool = false, now: UInt64 = 0) {
        phase = bodyFollows ? .readingBody : .busy
        deadline = bodyFollows ? now &+ bodyTimeoutNanos : nil
    }

    /// Body bytes arrived: the pause allowed starts again.
    public mutating func bodyBytesArrived(now: UInt64) {
        guard phase == .readingBody, deadline != nil else { return }
        deadline = now &+ bodyTimeoutNanos
    }

    /// The gateway stopped (true) or resumed (false) reading the body: a pause it causes is not the client's.
    public mutating func bodyReadingPaused(_ paused: Bool, now: UInt64) {
        guard phase == .readingBody else { return }
        deadline = paused ? nil : now &+ bodyTimeoutNanos
    }

    /// The whole request body arrived.
    public mutating func bodyFinished() {
        guard phase == .readingBody else { return }
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
        case .readingBody: return .bodyExpired
        case .busy: return .none
        }
    }
}

/// Admission of client connections against `max_connections` and `max_connections_per_ip`.
public struct ConnectionCounter: Sendable {
    public enum Verdict: Sendable, Equatable {
        case admitted
        case tooManyConnections
        case tooManyFromAddress
    }

    public private(set) var total = 0
    private var perAddress: [IPAddress: Int] = [:]

    public init() {}

    /// Counts the connection in when it fits (`maxPerAddress` 0: no per-address limit).
    public mutating func admit(_ address: IPAddress?, maxTotal: Int, maxPerAddress: Int) -> Verdict {
        guard total < maxTotal else { return .tooManyConnections }
        if let address, maxPerAddress > 0 {
            let count = perAddress[address, default: 0]
            guard count < maxPerAddress else { return .tooManyFromAddress }
            perAddress[address] = count + 1
        }
        total += 1
        return .admitted
    }

    /// An admitted connection closed. `countedPerAddress`: it was counted against its address.
    public mutating func release(_ address: IPAddress?, countedPerAddress: Bool) {
        total = max(0, total - 1)
        guard countedPerAddress, let address, let count = perAddress[address] else { return }
        if count <= 1 { perAddress.removeValue(forKey: address) } else { perAddress[address] = count - 1 }
    }

}
