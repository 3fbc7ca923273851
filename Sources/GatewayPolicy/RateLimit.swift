/// Rate-limit algorithms as pure functions of a stored state and `now` (microseconds).
///
/// The Redis store runs the same arithmetic in Lua (see GatewayRedis/RateLimitScript), with `now` from Redis
/// `TIME`; one conformance suite of vectors runs against both. Each limit is evaluated first and charged
/// only once every enforced limit of the request allows it, so a rejected request is never charged.

/// What a limit says about one request.
public struct LimitEvaluation: Sendable, Equatable {
    public var allowed: Bool
    /// Requests (or tokens) left after this one if it is allowed, before it otherwise.
    public var remaining: Int
    /// When a rejected request could succeed (0 when allowed).
    public var retryAfterMicros: Int64
    /// When the quota is back to full (token bucket) or the oldest counted request leaves the window.
    public var resetAfterMicros: Int64

    public init(allowed: Bool, remaining: Int, retryAfterMicros: Int64, resetAfterMicros: Int64) {
        self.allowed = allowed
        self.remaining = remaining
        self.retryAfterMicros = retryAfterMicros
        self.resetAfterMicros = resetAfterMicros
    }
}

/// A token bucket: `capacity` tokens, refilled continuously at `refillPerSecond`; a request takes `cost`.
///
/// Worked example: capacity 10, refill 2/s, cost 1. A bucket last seen empty at t=0 holds
/// min(10, 0 + 1.5 × 2) = 3 tokens at t=1.5 s; the request is allowed and 2 remain. Had it cost 4, it would be
/// refused with retry after (4 - 3) / 2 = 0.5 s, and the bucket would keep its 3 tokens (no charge).
/// A bucket never seen (or whose key expired) is full.
public struct TokenBucket: Sendable, Equatable {
    public struct State: Sendable, Equatable {
        public var tokens: Double
        public var updatedAtMicros: Int64

        public init(tokens: Double, updatedAtMicros: Int64) {
            self.tokens = tokens
            self.updatedAtMicros = updatedAtMicros
        }
    }

    public let capacity: Double
    public let refillPerSecond: Double

    public init(capacity: Double, refillPerSecond: Double) {
        precondition(capacity > 0 && refillPerSecond > 0)
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
    }

    /// Tokens held at `now`, after refilling since the state was written.
    public func tokens(in state: State?, now: Int64) -> Double {
        guard let state else { return capacity }
        let elapsed = Double(max(0, now - state.updatedAtMicros)) / 1_000_000
        return min(capacity, state.tokens + elapsed * refillPerSecond)
    }

    public func evaluate(_ state: State?, cost: Double, now: Int64) -> LimitEvaluation {
        let available = tokens(in: state, now: now)
        if available >= cost {
            let left = available - cost
            return LimitEvaluation(
                allowed: true, remaining: Int(left.rounded(.down)), retryAfterMicros: 0,
                resetAfterMicros: micros((capacity - left) / refillPerSecond))
        }
        return LimitEvaluation(
            allowed: false, remaining: Int(available.rounded(.down)),
            retryAfterMicros: micros((cost - available) / refillPerSecond),
            resetAfterMicros: micros((capacity - available) / refillPerSecond))
    }

    /// The state after charging an allowed request.
    public func charge(_ state: State?, cost: Double, now: Int64) -> State {
        State(tokens: tokens(in: state, now: now) - cost, updatedAtMicros: now)
    }

    /// How long the stored state matters: after that the bucket is full again and the key may go.
    public func ttlMicros(after state: State) -> Int64 {
        micros((capacity - state.tokens) / refillPerSecond) + 1_000_000
    }

    private func micros(_ seconds: Double) -> Int64 { Int64((seconds * 1_000_000).rounded(.up)) }
}

/// An exact sliding window: at most `limit` requests in any `window`, counted from a log of request times.
///
/// A request at `now` counts the logged requests in (now - window, now]. Worked example: limit 3 per 10 s,
/// requests logged at 1 s, 2 s and 9 s. At 10.5 s all three still count, so a request is refused; it may retry
/// when the 1 s entry leaves the window, at 11 s (retry after 0.5 s). At 11 s exactly the 1 s entry has left
/// (it is not in (1, 11]) and the request is allowed, leaving 0.
public struct SlidingWindowLog: Sendable, Equatable {
    public let limit: Int
    public let windowMicros: Int64

    public init(limit: Int, windowMicros: Int64) {
        precondition(limit > 0 && windowMicros > 0)
        self.limit = limit
        self.windowMicros = windowMicros
    }

    /// Drops the entries that left the window (times ascending).
    public func prune(_ log: inout [Int64], now: Int64) {
        let cutoff = now - windowMicros
        if let firstLive = log.firstIndex(where: { $0 > cutoff }) {
            log.removeFirst(firstLive)
        } else {
            log.removeAll()
        }
    }

    /// `log` must already be pruned at `now`.
    public func evaluate(_ log: [Int64], cost: Int, now: Int64) -> LimitEvaluation {
        let count = log.count
        if count + cost <= limit {
            let oldest = log.first ?? now
            return LimitEvaluation(
                allowed: true, remaining: limit - count - cost, retryAfterMicros: 0,
                resetAfterMicros: oldest + windowMicros - now)
        }
        // The request fits once enough of the oldest entries have left: the (count + cost - limit)-th oldest.
        let blocking = count + cost - limit - 1
        let retry = blocking < count ? log[blocking] + windowMicros - now : windowMicros
        return LimitEvaluation(
            allowed: false, remaining: max(0, limit - count), retryAfterMicros: max(1, retry),
            resetAfterMicros: (log.first ?? now) + windowMicros - now)
    }

    public func charge(_ log: inout [Int64], cost: Int, now: Int64) {
        log.append(contentsOf: repeatElement(now, count: cost))
    }
}

/// A fixed window: at most `limit` requests per calendar window of `windowMicros`, counted in one number.
///
/// Windows are aligned to the Unix epoch (the clock is wall time: Redis `TIME`), so a daily quota resets at
/// 00:00 UTC and an hourly one on the hour, the same for every instance. This is how API quotas are usually
/// sold and billed; unlike the sliding window's log it keeps one counter per key however large the limit,
/// at the price of allowing up to twice the limit across a window boundary. Worked example: limit 100 per
/// hour, 98 requests counted in the window that started at 10:00. At 10:59:30 a request costing 1 is allowed
/// and 1 remains; one costing 5 is refused with retry after 30 s (when the 11:00 window starts). A state from
/// an earlier window counts as empty.
public struct FixedWindow: Sendable, Equatable {
    public struct State: Sendable, Equatable {
        /// The start of the window the count belongs to (µs since the epoch).
        public var windowStart: Int64
        public var count: Int

        public init(windowStart: Int64, count: Int) {
            self.windowStart = windowStart
            self.count = count
        }
    }

    public let limit: Int
    public let windowMicros: Int64

    public init(limit: Int, windowMicros: Int64) {
        precondition(limit > 0 && windowMicros > 0)
        self.limit = limit
        self.windowMicros = windowMicros
    }

    /// The start of the window `now` falls in.
    public func windowStart(at now: Int64) -> Int64 {
        let offset = now % windowMicros
        return now - (offset < 0 ? offset + windowMicros : offset)
    }

    /// Requests counted so far in the window `now` falls in.
    public func count(in state: State?, now: Int64) -> Int {
        guard let state, state.windowStart == windowStart(at: now) else { return 0 }
        return state.count
    }

    public func evaluate(_ state: State?, cost: Int, now: Int64) -> LimitEvaluation {
        let count = count(in: state, now: now)
        let untilNextWindow = windowStart(at: now) + windowMicros - now
        if count + cost <= limit {
            return LimitEvaluation(allowed: true, remaining: limit - count - cost, retryAfterMicros: 0, resetAfterMicros: untilNextWindow)
        }
        return LimitEvaluation(
            allowed: false, remaining: max(0, limit - count), retryAfterMicros: untilNextWindow, resetAfterMicros: untilNextWindow)
    }

    /// The state after charging an allowed request.
    public func charge(_ state: State?, cost: Int, now: Int64) -> State {
        State(windowStart: windowStart(at: now), count: count(in: state, now: now) + cost)
    }

    /// How long the stored state matters: until its window ends (and a second more, as for buckets).
    public func ttlMicros(after state: State, now: Int64) -> Int64 {
        max(0, state.windowStart + windowMicros - now) + 1_000_000
    }
}

/// Capped exponential backoff with jitter, for reconnecting to a store.
///
/// Worked example: base 50 ms, cap 5 s. Attempts 0, 1, 2, ... wait base × 2^attempt = 50, 100, 200, ... ms, never
/// more than 5 s; the jitter picks a point in [half, full] of that (`random` in 0..<1), so at attempt 3 with
/// random 0.5 the wait is 400 × 0.75 = 300 ms. Many clients reconnecting at once therefore spread out.
public struct Backoff: Sendable, Equatable {
    public let baseMicros: Int64
    public let capMicros: Int64

    public init(baseMicros: Int64, capMicros: Int64) {
        precondition(baseMicros > 0 && capMicros >= baseMicros)
        self.baseMicros = baseMicros
        self.capMicros = capMicros
    }

    public func delayMicros(attempt: Int, random: Double) -> Int64 {
        let exponent = min(max(attempt, 0), 30)
        let full = min(capMicros, baseMicros << Int64(exponent))
        let fraction = 0.5 + min(max(random, 0), 1) * 0.5
        return Int64(Double(full) * fraction)
    }
}
