import GatewayPolicy
import Testing

/// Slow start without sockets or sleeps: the share a joining target gets, and what the balancer makes of it.
@Suite struct SlowStartTests {
    let slow = SlowStart(windowMicros: 10_000_000)

    @Test func shareGrowsOverTheWindow() {
        #expect(slow.permille(joinedAt: 0, now: 5_000_000) == nil, "a target that never joined late is at full weight")
        #expect(slow.permille(joinedAt: 1_000_000, now: 1_000_000) == 100)
        #expect(slow.permille(joinedAt: 1_000_000, now: 6_000_000) == 550)
        #expect(slow.permille(joinedAt: 1_000_000, now: 10_999_999) == 999)
        #expect(slow.permille(joinedAt: 1_000_000, now: 11_000_000) == nil, "the window is over")
        #expect(slow.permille(joinedAt: 2_000_000, now: 1_000_000) == 100, "a clock read before the join counts as the start")
    }

    // Round robin with effective weights: a target at 10% of its weight gets one pick in eleven; the static
    // weights come back once the ramp is over.
    @Test func roundRobinFollowsTheRamp() {
        var balancer = Balancer(strategy: .roundRobin, weights: [1, 1])
        var random = SplitMix64(seed: 1)
        var counts = [0, 0]
        for _ in 0..<110 {
            let pick = balancer.pick(eligible: { _ in true }, weight: { $0 == 0 ? 1000 : 100 }, random: &random)
            counts[pick!] += 1
        }
        #expect(counts == [100, 10])
        counts = [0, 0]
        for _ in 0..<100 { counts[balancer.pick(eligible: { _ in true }, random: &random)!] += 1 }
        #expect(counts == [50, 50])
    }

    @Test func randomAndLeastRequestFollowTheRamp() {
        var random = SplitMix64(seed: 7)
        var weighted = Balancer(strategy: .random, weights: [1, 1])
        var counts = [0, 0]
        for _ in 0..<11_000 { counts[weighted.pick(eligible: { _ in true }, weight: { $0 == 0 ? 1000 : 100 }, random: &random)!] += 1 }
        #expect((800...1200).contains(counts[1]), "about 1 in 11: \(counts)")
        // Least request compares load per unit of effective weight: 3 in flight at 10% weighs more than 20 at full.
        var least = Balancer(strategy: .leastRequest, weights: [1, 1])
        let pick = least.pick(eligible: { _ in true }, inFlight: { $0 == 0 ? 20 : 3 }, weight: { $0 == 0 ? 1000 : 100 }, random: &random)
        #expect(pick == 0)
    }
}
