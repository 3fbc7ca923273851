/// A target that joins the rotation (added by a reload or DNS, healthy again, its breaker closed after being
/// open, put back by the admin API) starts with a small share of the traffic and grows to its full weight
/// over `window`, as NGINX Plus's `slow_start` and Envoy's slow-start mode do: a cold backend (empty caches,
/// JIT not warm, a pool still opening) is not handed its full share at once, and one that just recovered is
/// not flooded back into failing.
///
/// Pure: the caller says when the target joined and what time it is (microseconds on one monotonic clock).
public struct SlowStart: Sendable, Equatable {
    /// The share a target has at the moment it joins, in thousandths of its weight.
    public static let initialPermille = 100

    public let windowMicros: Int64

    public init(windowMicros: Int64) {
        precondition(windowMicros > 0)
        self.windowMicros = windowMicros
    }

    /// The target's share of its weight now, in thousandths: from `initialPermille` when it joined, linearly to
    /// 1000 at the end of the window. nil when it is not ramping (never joined late, or the window is over).
    public func permille(joinedAt: Int64, now: Int64) -> Int? {
        guard joinedAt > 0 else { return nil }
        let elapsed = now - joinedAt
        guard elapsed < windowMicros else { return nil }
        let grown = Int(Int64(1000 - Self.initialPermille) * max(0, elapsed) / windowMicros)
        return Self.initialPermille + grown
    }
}
