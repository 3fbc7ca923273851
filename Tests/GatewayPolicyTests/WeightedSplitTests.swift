import GatewayPolicy
import Testing

@Suite struct WeightedSplitTests {
    // Members own consecutive ranges in their listed order: [0, 95) and [95, 100) for 95/5.
    @Test func rangesFollowTheWeights() {
        let split = WeightedSplit(weights: [95, 5])
        #expect(split.total == 100)
        #expect(split.choose(0) == 0)
        #expect(split.choose(94) == 0)
        #expect(split.choose(95) == 1)
        #expect(split.choose(99) == 1)
        #expect(split.choose(100) == 0)  // draws wrap around the total
        #expect(split.choose(UInt64.max) == 0)  // 2^64 - 1 is 15 modulo 100
    }

    // Uniform draws land in proportion to the weights; a member of weight 0 gets nothing.
    @Test func drawsFollowTheWeights() {
        let split = WeightedSplit(weights: [3, 0, 1])
        var random = SplitMix64(seed: 42)
        var counts = [0, 0, 0]
        for _ in 0..<40_000 { counts[split.choose(random.next())] += 1 }
        #expect(counts[1] == 0)
        #expect((29_000...31_000).contains(counts[0]), "expected about 30,000, got \(counts[0])")
        #expect((9_000...11_000).contains(counts[2]), "expected about 10,000, got \(counts[2])")
    }

    // A key keeps its member; keys spread over the members by weight.
    @Test func keysAreStickyAndSpread() {
        let split = WeightedSplit(weights: [1, 1])
        var counts = [0, 0]
        for user in 0..<2_000 {
            let member = split.choose(key: "user-\(user)")
            #expect(split.choose(key: "user-\(user)") == member)
            counts[member] += 1
        }
        #expect((900...1_100).contains(counts[0]), "expected about 1,000, got \(counts[0])")
    }

    // Raising the canary's weight (same total) moves keys onto it and never takes one away from it.
    @Test func raisingACanaryKeepsItsKeys() {
        let before = WeightedSplit(weights: [95, 5])
        let after = WeightedSplit(weights: [90, 10])
        var canaryBefore = 0
        var canaryAfter = 0
        var movedOff = 0
        for user in 0..<5_000 {
            let key = "user-\(user)"
            let (old, new) = (before.choose(key: key), after.choose(key: key))
            if old == 1 { canaryBefore += 1 }
            if new == 1 { canaryAfter += 1 }
            if old == 1 && new == 0 { movedOff += 1 }
        }
        #expect(movedOff == 0)
        #expect(canaryAfter > canaryBefore)
        #expect((400...600).contains(canaryAfter), "expected about 500 of 5,000 on the canary, got \(canaryAfter)")
    }

    // Every instance, and every version after an upgrade, must send a key to the same member: the hash is
    // pinned (FNV-1a 64 with a final avalanche, computed independently).
    @Test func keyHashIsPinned() {
        #expect(Hashing.fnv1a("user-1") == 0x37E1_A4C1_4B42_972D)
        #expect(WeightedSplit(weights: [1, 1, 1, 1, 1, 1, 1]).choose(key: "user-1") == 0)
    }
}
