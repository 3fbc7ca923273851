/// A route's `limit_rate` (NGINX's `limit_rate` and `limit_rate_after`): an answer's body reaches the client no faster
/// than `bytesPerSecond` once its first `freeBytes` have gone, so one large download cannot take a link (or the
/// upstream's bandwidth) from everyone else.
///
/// Measured over the whole answer, from its first byte, as NGINX does: a pause (the client behind) is made up for
/// afterwards at most up to the average, never with a burst beyond it. Pure: the caller says how many bytes went and
/// when (nanoseconds on one monotonic clock), and hears how long to hold back.
public struct TransferRate: Sendable, Equatable {
    public let bytesPerSecond: Int
    public let freeBytes: Int
    private var sent = 0
    private var startedAt: UInt64?

    public init(bytesPerSecond: Int, freeBytes: Int = 0) {
        precondition(bytesPerSecond > 0)
        (self.bytesPerSecond, self.freeBytes) = (bytesPerSecond, freeBytes)
    }

    /// Counts `bytes` sent at `now`; returns how long to wait before sending more (0: go on).
    public mutating func sent(_ bytes: Int, now: UInt64) -> UInt64 {
        let start = startedAt ?? now
        startedAt = start
        sent += bytes
        let owed = sent - freeBytes
        guard owed > 0 else { return 0 }
        // The time by which `owed` bytes may have gone at the rate, against the time that has passed.
        let due = UInt64(owed) * 1_000_000_000 / UInt64(bytesPerSecond)
        let elapsed = now - start
        return due > elapsed ? due - elapsed : 0
    }
}
