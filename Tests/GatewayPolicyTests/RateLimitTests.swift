import GatewayPolicy
import Testing

@Suite struct TokenBucketTests {
    let second: Int64 = 1_000_000

    // The worked example of the doc comment.
    @Test func workedExample() {
        let bucket = TokenBucket(capacity: 10, refillPerSecond: 2)
        let empty = TokenBucket.State(tokens: 0, updatedAtMicros: 0)
        let at = second * 3 / 2
        #expect(bucket.evaluate(empty, cost: 1, now: at) == LimitEvaluation(allowed: true, remaining: 2, retryAfterMicros: 0, resetAfterMicros: 4 * second))
        let refused = bucket.evaluate(empty, cost: 4, now: at)
        #expect(!refused.allowed)
        #expect(refused.remaining == 3)
        #expect(refused.retryAfterMicros == second / 2)
    }

    // A new bucket is full; draining it refuses the next request until a token refills.
    @Test func drainsAndRefills() {
        let bucket = TokenBucket(capacity: 3, refillPerSecond: 1)
        var state: TokenBucket.State?
        for expected in [2, 1, 0] {
            let evaluation = bucket.evaluate(state, cost: 1, now: 0)
            #expect(evaluation.allowed)
            #expect(evaluation.remaining == expected)
            state = bucket.charge(state, cost: 1, now: 0)
        }
        let refused = bucket.evaluate(state, cost: 1, now: second / 2)
        #expect(!refused.allowed)
        #expect(refused.retryAfterMicros == second / 2)
        #expect(bucket.evaluate(state, cost: 1, now: second).allowed)
        // Refill stops at capacity, however long the bucket sat unused.
        #expect(bucket.tokens(in: state, now: 3600 * second) == 3)
        #expect(bucket.ttlMicros(after: state!) == 4 * second)
    }
}

@Suite struct SlidingWindowTests {
    let second: Int64 = 1_000_000

    // The worked example of the doc comment.
    @Test func workedExample() {
        let window = SlidingWindowLog(limit: 3, windowMicros: 10 * second)
        var log: [Int64] = [1 * second, 2 * second, 9 * second]
        window.prune(&log, now: 10 * second + second / 2)
        let refused = window.evaluate(log, cost: 1, now: 10 * second + second / 2)
        #expect(!refused.allowed)
        #expect(refused.retryAfterMicros == second / 2)
        window.prune(&log, now: 11 * second)
        let allowed = window.evaluate(log, cost: 1, now: 11 * second)
        #expect(allowed.allowed)
        #expect(allowed.remaining == 0)
    }

    // Exactly `limit` requests pass in any window, however they are spread; rejected ones are not logged.
    @Test func exactAcrossTheBoundary() {
        let window = SlidingWindowLog(limit: 5, windowMicros: 60 * second)
        var log: [Int64] = []
        var allowedTimes: [Int64] = []
        for step in 0..<Int64(26) {
            let tick = step * 7 * second
            window.prune(&log, now: tick)
            if window.evaluate(log, cost: 1, now: tick).allowed {
                window.charge(&log, cost: 1, now: tick)
                allowedTimes.append(tick)
            }
        }
        for time in allowedTimes {
            let inWindow = allowedTimes.filter { $0 > time - 60 * second && $0 <= time }
            #expect(inWindow.count <= 5)
        }
        #expect(allowedTimes.count >= 5 * 3 - 2)
    }
}

@Suite struct FixedWindowTests {
    let second: Int64 = 1_000_000

    // The worked example of the doc comment: 100 an hour, 98 counted in the window that started at 10:00.
    @Test func workedExample() {
        let hour = 3600 * second
        let window = FixedWindow(limit: 100, windowMicros: hour)
        let tenOClock = 491_000 * hour  // some day's 10:00 UTC, an hour boundary since the epoch
        let state = FixedWindow.State(windowStart: tenOClock, count: 98)
        let now = tenOClock + 59 * 60 * second + 30 * second
        let one = window.evaluate(state, cost: 1, now: now)
        #expect(one.allowed && one.remaining == 1 && one.resetAfterMicros == 30 * second)
        let five = window.evaluate(state, cost: 5, now: now)
        #expect(!five.allowed && five.remaining == 2 && five.retryAfterMicros == 30 * second)
        #expect(window.charge(state, cost: 1, now: now) == FixedWindow.State(windowStart: tenOClock, count: 99))
        // At 11:00 the window is new: the old count no longer counts.
        let next = window.evaluate(state, cost: 5, now: tenOClock + hour)
        #expect(next.allowed && next.remaining == 95 && next.resetAfterMicros == hour)
        #expect(window.charge(state, cost: 5, now: tenOClock + hour) == FixedWindow.State(windowStart: tenOClock + hour, count: 5))
    }

    // Windows are aligned to the epoch, not to the first request; exactly `limit` pass in each.
    @Test func alignedWindows() {
        let window = FixedWindow(limit: 3, windowMicros: 10 * second)
        #expect(window.windowStart(at: 0) == 0 && window.windowStart(at: 9_999_999) == 0 && window.windowStart(at: 10 * second) == 10 * second)
        #expect(window.windowStart(at: -1) == -10 * second)
        var state: FixedWindow.State?
        var allowed: [Int64] = []
        for tick in stride(from: Int64(8), through: 29, by: 1).map({ $0 * second }) {
            if window.evaluate(state, cost: 1, now: tick).allowed {
                state = window.charge(state, cost: 1, now: tick)
                allowed.append(tick / second)
            }
        }
        #expect(allowed == [8, 9, 10, 11, 12, 20, 21, 22])
        let charged = FixedWindow.State(windowStart: 20 * second, count: 3)
        #expect(window.ttlMicros(after: charged, now: 22 * second) == 9 * second)
    }
}

@Suite struct BackoffTests {
    // Doubling from the base, capped, with jitter between half and all of the step.
    @Test func delays() {
        let backoff = Backoff(baseMicros: 50_000, capMicros: 5_000_000)
        #expect(backoff.delayMicros(attempt: 0, random: 1) == 50_000)
        #expect(backoff.delayMicros(attempt: 3, random: 0.5) == 300_000)
        #expect(backoff.delayMicros(attempt: 3, random: 0) == 200_000)
        #expect(backoff.delayMicros(attempt: 20, random: 1) == 5_000_000)
        #expect(backoff.delayMicros(attempt: 1000, random: 1) == 5_000_000)
    }
}

@Suite struct SHA1Tests {
    // FIPS 180 test vectors.
    @Test func vectors() {
        #expect(SHA1.hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(SHA1.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(SHA1.hex(String(repeating: "a", count: 1000)) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }
}
