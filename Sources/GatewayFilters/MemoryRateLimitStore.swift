import GatewayCore
import NIOConcurrencyHelpers
import GatewayPolicy
import NIOCore

/// Rate-limit counters in this process (the `memory` store, and the `local` fallback when Redis is down).
///
/// Keys are sharded by the request's hash tag (its route), each shard behind its own lock, so event loops
/// rarely contend. Entries carry an expiry and are swept as the shard is used, so idle keys disappear as
/// they do in Redis.
public final class MemoryRateLimitStore: RateLimitStore {
    enum Entry {
        case bucket(TokenBucket.State)
        case window([Int64])
        case fixed(FixedWindow.State)
    }

    struct Stored {
        var entry: Entry
        var expiresAt: Int64
    }

    final class Shard: Sendable {
        struct Content {
            var entries: [String: Stored] = [:]
            var operationsSinceSweep = 0
        }
        let content = NIOLockedValueBox(Content())
    }

    private let shards: [Shard]
    /// Microseconds since the epoch, as Redis `TIME` gives the shared store (fixed windows are calendar
    /// windows, and the `local` fallback then counts as Redis does); injected so tests control time.
    private let clock: @Sendable () -> Int64

    public init(shards: Int = 16, clock: @escaping @Sendable () -> Int64 = MemoryRateLimitStore.wallClockMicros) {
        self.shards = (0..<max(1, shards)).map { _ in Shard() }
        self.clock = clock
    }

    public static let wallClockMicros: @Sendable () -> Int64 = { Int64(WallClock.nanoseconds() / 1000) }

    /// Keys currently held (for tests).
    public var keyCount: Int { shards.reduce(0) { total, shard in total + shard.content.withLockedValue { $0.entries.count } } }

    public func check(
        _ request: RateLimitRequest, on eventLoop: EventLoop,
        completion: @escaping (Result<RateLimitResult, any Error>) -> Void
    ) {
        completion(.success(check(request, now: clock())))
    }

    public func check(_ request: RateLimitRequest, now: Int64) -> RateLimitResult {
        let shard = shards[Int(UInt(bitPattern: request.hashTag.hashValue) % UInt(shards.count))]
        return shard.content.withLockedValue { content in
            content.operationsSinceSweep += 1
            if content.operationsSinceSweep >= 1024 {
                content.operationsSinceSweep = 0
                content.entries = content.entries.filter { $0.value.expiresAt > now }
            }
            // Evaluate every limit first; charge only if every enforced one allows the request.
            var evaluations: [LimitEvaluation] = []
            var states: [Entry?] = []
            evaluations.reserveCapacity(request.checks.count)
            for check in request.checks {
                let stored = content.entries[check.key].flatMap { $0.expiresAt > now ? $0.entry : nil }
                switch check.rule.algorithm {
                case .tokenBucket(let bucket):
                    var state: TokenBucket.State?
                    if case .bucket(let existing) = stored { state = existing }
                    evaluations.append(bucket.evaluate(state, cost: Double(check.rule.cost), now: now))
                    states.append(state.map(Entry.bucket))
                case .slidingWindow(let window):
                    var log: [Int64] = []
                    if case .window(let existing) = stored { log = existing }
                    window.prune(&log, now: now)
                    evaluations.append(window.evaluate(log, cost: check.rule.cost, now: now))
                    states.append(.window(log))
                case .fixedWindow(let window):
                    var state: FixedWindow.State?
                    if case .fixed(let existing) = stored { state = existing }
                    evaluations.append(window.evaluate(state, cost: check.rule.cost, now: now))
                    states.append(state.map(Entry.fixed))
                }
            }
            let allowed = zip(request.checks, evaluations).allSatisfy { !$0.rule.enforce || $1.allowed }
            guard allowed else { return RateLimitResult(allowed: false, evaluations: evaluations) }
            for (index, check) in request.checks.enumerated() where evaluations[index].allowed {
                switch (check.rule.algorithm, states[index]) {
                case (.tokenBucket(let bucket), let state):
                    var current: TokenBucket.State?
                    if case .bucket(let existing) = state { current = existing }
                    let charged = bucket.charge(current, cost: Double(check.rule.cost), now: now)
                    content.entries[check.key] = Stored(entry: .bucket(charged), expiresAt: now + bucket.ttlMicros(after: charged))
                case (.slidingWindow(let window), .window(var log)):
                    window.charge(&log, cost: check.rule.cost, now: now)
                    content.entries[check.key] = Stored(entry: .window(log), expiresAt: now + window.windowMicros)
                case (.fixedWindow(let window), let state):
                    var current: FixedWindow.State?
                    if case .fixed(let existing) = state { current = existing }
                    let charged = window.charge(current, cost: check.rule.cost, now: now)
                    content.entries[check.key] = Stored(entry: .fixed(charged), expiresAt: now + window.ttlMicros(after: charged, now: now))
                default:
                    break
                }
            }
            return RateLimitResult(allowed: true, evaluations: evaluations)
        }
    }
}
