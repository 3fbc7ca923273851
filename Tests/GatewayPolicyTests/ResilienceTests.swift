import GatewayPolicy
import Testing

@Suite struct CircuitBreakerTests {
    let second: Int64 = 1_000_000

    // The doc comment's worked example, transition by transition.
    @Test func consecutiveFailuresOpenThenProbe() {
        var breaker = CircuitBreaker(settings: .init(failureThreshold: 3, openMicros: 30 * second))
        #expect(breaker.admit(now: 0) == .allowed)
        #expect(breaker.record(success: false, now: 1 * second) == nil)
        #expect(breaker.record(success: false, now: 2 * second) == nil)
        #expect(breaker.record(success: false, now: 3 * second) == .open(until: 33 * second))
        #expect(breaker.admit(now: 10 * second) == .refused(retryAfterMicros: 23 * second))
        #expect(!breaker.wouldAdmit(now: 10 * second))
        #expect(breaker.wouldAdmit(now: 33 * second))
        #expect(breaker.admit(now: 33 * second) == .probe)
        #expect(breaker.admit(now: 33 * second) == .refused(retryAfterMicros: 1))  // one probe at a time
        // The probe fails: open again, for twice as long.
        #expect(breaker.record(success: false, now: 34 * second) == .open(until: 94 * second))
        #expect(breaker.admit(now: 94 * second) == .probe)
        #expect(breaker.record(success: true, now: 95 * second) == .closed)
        // Closed again, trip count reset: the next trip opens for the base period.
        for t in 96...98 { breaker.record(success: false, now: Int64(t) * second) }
        #expect(breaker.state == .open(until: 128 * second))
    }

    // A success between failures resets the streak.
    @Test func successResetsStreak() {
        var breaker = CircuitBreaker(settings: .init(failureThreshold: 2, openMicros: second))
        breaker.record(success: false, now: 0)
        breaker.record(success: true, now: 1)
        breaker.record(success: false, now: 2)
        #expect(breaker.state == .closed)
    }

    // The ratio rule opens on a high failure share over the window, but only with enough requests.
    @Test func failureRatioOverWindow() {
        var breaker = CircuitBreaker(
            settings: .init(failureThreshold: 100, failureRatio: 0.5, minimumRequests: 10, windowMicros: 10 * second, openMicros: second))
        for index in 0..<9 { breaker.record(success: index % 3 == 0, now: Int64(index) * 100_000) }
        #expect(breaker.state == .closed)  // 9 requests: below the minimum
        breaker.record(success: false, now: 950_000)  // 10 requests, 7 failed: 70% > 50%
        #expect(breaker.isOpen)
        // Old results leave the window: failures long ago do not count.
        var quiet = CircuitBreaker(
            settings: .init(failureThreshold: 100, failureRatio: 0.5, minimumRequests: 4, windowMicros: 10 * second, openMicros: second))
        for _ in 0..<3 { quiet.record(success: false, now: 0) }
        for index in 0..<3 { quiet.record(success: true, now: 60 * second + Int64(index)) }
        quiet.record(success: false, now: 61 * second)
        #expect(quiet.state == .closed)  // 1 of 4 recent requests failed
    }

    // The open period doubles per consecutive trip and stops at the cap.
    @Test func openPeriodCapped() {
        var breaker = CircuitBreaker(settings: .init(failureThreshold: 1, openMicros: second, maxOpenMicros: 3 * second))
        var now: Int64 = 0
        var periods: [Int64] = []
        for _ in 0..<4 {
            breaker.record(success: false, now: now)
            guard case .open(let until) = breaker.state else { return }
            periods.append(until - now)
            now = until
            _ = breaker.admit(now: now)
        }
        #expect(periods == [second, 2 * second, 3 * second, 3 * second])
    }
}

@Suite struct BalancerTests {
    // Smooth weighted round robin spreads the heavy target's turns (NGINX's order).
    @Test func smoothWeightedRoundRobin() {
        var balancer = Balancer(strategy: .roundRobin, weights: [5, 1, 1])
        var random = SplitMix64(seed: 1)
        let picks = (0..<7).compactMap { _ in balancer.pick(eligible: { _ in true }, random: &random) }
        #expect(picks == [0, 0, 1, 0, 2, 0, 0])
        // Ineligible targets are skipped without disturbing the others' turns.
        var two = Balancer(strategy: .roundRobin, weights: [1, 1, 1])
        let skipping = (0..<4).compactMap { _ in two.pick(eligible: { $0 != 1 }, random: &random) }
        #expect(skipping == [0, 2, 0, 2])
        let none = two.pick(eligible: { _ in false }, random: &random)
        #expect(none == nil)
    }

    // Weighted random follows the weights.
    @Test func weightedRandom() {
        var balancer = Balancer(strategy: .random, weights: [3, 1])
        var random = SplitMix64(seed: 7)
        var counts = [0, 0]
        for _ in 0..<4000 { counts[balancer.pick(eligible: { _ in true }, random: &random)!] += 1 }
        #expect(counts[0] > 2700 && counts[0] < 3300)
    }

    // Power of two choices prefers the less busy target.
    @Test func leastRequestPrefersIdle() {
        var balancer = Balancer(strategy: .leastRequest, weights: [1, 1])
        var random = SplitMix64(seed: 3)
        let busy = [10, 0]
        let picks = (0..<100).compactMap { _ in balancer.pick(eligible: { _ in true }, inFlight: { busy[$0] }, random: &random) }
        #expect(picks == Array(repeating: 1, count: 100))
    }

    // The same key lands on the same target; removing a target moves only its own keys.
    @Test func consistentHashIsStable() {
        var balancer = Balancer(strategy: .consistentHash, weights: [1, 1, 1, 1])
        var random = SplitMix64(seed: 5)
        let keys = (0..<400).map { "user-\($0)" }
        let before = keys.map { balancer.pick(eligible: { _ in true }, hashKey: $0, random: &random)! }
        let again = keys.map { balancer.pick(eligible: { _ in true }, hashKey: $0, random: &random)! }
        #expect(before == again)
        let without2 = keys.map { balancer.pick(eligible: { $0 != 2 }, hashKey: $0, random: &random)! }
        for (old, new) in zip(before, without2) where old != 2 { #expect(old == new) }
        #expect(!without2.contains(2))
        // Spread is roughly even.
        let shares = (0..<4).map { target in before.filter { $0 == target }.count }
        #expect(shares.min()! > 50, "\(shares)")
    }
}

@Suite struct RetryBudgetTests {
    // The doc comment's example: a floor for quiet upstreams, a share for busy ones.
    @Test func capsRetries() {
        var budget = RetryBudget(ratio: 0.2, minimumRetries: 3, windowMicros: 10_000_000)
        for _ in 0..<5 { budget.recordRequest(now: 0) }
        let quiet = (0..<10).filter { _ in budget.tryRetry(now: 0) }.count
        #expect(quiet == 3)
        for _ in 0..<95 { budget.recordRequest(now: 0) }
        let busy = (0..<40).filter { _ in budget.tryRetry(now: 0) }.count
        #expect(busy == 17)  // 20 in all for 100 requests, 3 already used
    }
}

@Suite struct HealthCheckStateTests {
    @Test func thresholds() {
        var health = HealthCheckState(healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(health.record(success: false) == nil)
        #expect(health.record(success: false) == nil)
        #expect(health.record(success: false) == false)
        #expect(health.record(success: true) == nil)
        #expect(health.record(success: false) == nil)  // a failure breaks the recovering streak
        #expect(health.record(success: true) == nil)
        #expect(health.record(success: true) == true)
    }
}
