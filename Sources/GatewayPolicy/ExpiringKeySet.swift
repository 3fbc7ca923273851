/// Keys remembered until they expire, at most `capacity` at a time: what a replay check needs to tell a delivery it
/// saw from one it did not (`webhook_signature.replay_protection` in one process). Time is whatever clock the caller
/// reads (nanoseconds), so the rules are tested without waiting.
///
/// When full, the key remembered longest ago goes first: memory stays bounded whatever a sender (or an attacker with a
/// valid secret) sends, at the price of forgetting the oldest deliveries early.
public struct ExpiringKeySet: Sendable {
    public let capacity: Int
    /// Each key's expiry.
    private var expiries: [String: Int64] = [:]
    /// Keys in the order they were added, with the expiry they were added with; `head` is the oldest still queued.
    /// A key added again after it expired is queued again; its older entry is skipped when it comes up.
    private var queue: [(key: String, expiry: Int64)] = []
    private var head = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "capacity must be positive")
        self.capacity = capacity
    }

    /// How many keys are remembered (expired ones not yet swept included).
    public var count: Int { expiries.count }

    /// Remembers `key` until `expiry`. True when it was not remembered (or had expired): its first use.
    public mutating func insert(_ key: String, until expiry: Int64, now: Int64) -> Bool {
        sweep(now: now)
        if let known = expiries[key], known > now { return false }
        while expiries.count >= capacity, dropOldest() {}
        expiries[key] = expiry
        queue.append((key, expiry))
        return true
    }

    /// Drops the expired keys at the front of the queue (those added earliest). Keys that expire sooner than an
    /// older one wait behind it; `capacity` bounds them meanwhile.
    private mutating func sweep(now: Int64) {
        while head < queue.count, queue[head].expiry <= now { _ = dropOldest() }
    }

    /// Drops the oldest queued entry (and its key, unless the key was added again since). False when none is left.
    private mutating func dropOldest() -> Bool {
        guard head < queue.count else { return false }
        let entry = queue[head]
        head += 1
        if expiries[entry.key] == entry.expiry { expiries[entry.key] = nil }
        // Reclaims the consumed front once it is half the queue: amortised O(1) per key.
        if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return true
    }
}
