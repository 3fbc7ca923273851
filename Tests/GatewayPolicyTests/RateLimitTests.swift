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
