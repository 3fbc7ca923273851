import GatewayPolicy
import Testing

/// The memory store of webhook replay protection, without sleeps: time is what the test says it is.
@Suite struct ExpiringKeySetTests {
    /// Each insertion's answer (true: first use), in order.
    static func answers(_ keys: inout ExpiringKeySet, _ insertions: [(key: String, until: Int64, now: Int64)]) -> [Bool] {
        insertions.map { keys.insert($0.key, until: $0.until, now: $0.now) }
    }

    // A key is refused while remembered and accepted again once expired.
    @Test func remembersUntilExpiry() {
        var keys = ExpiringKeySet(capacity: 10)
        let answers = Self.answers(&keys, [("a", 100, 0), ("a", 150, 50), ("a", 199, 99), ("a", 300, 100), ("a", 400, 299)])
        // Seen at 50; at 99 the first expiry still holds (not the replay's); expired at 100; seen again at 299.
        #expect(answers == [true, false, false, true, false])
        #expect(keys.count == 1)
    }

    // Expired keys are swept as new ones come, so the set does not grow with what it no longer needs.
    @Test func sweepsExpired() {
        var keys = ExpiringKeySet(capacity: 1_000)
        let answers = Self.answers(&keys, (0..<500).map { ("k\($0)", Int64($0) + 10, Int64($0)) })
        #expect(!answers.contains(false))
        #expect(keys.count <= 11, "\(keys.count)")
        // A key added again after expiring keeps its new expiry when its old entry is swept.
        var again = ExpiringKeySet(capacity: 1_000)
        let later = Self.answers(&again, [("x", 10, 0), ("x", 1_000, 20), ("y", 40, 30), ("x", 2_000, 500)])
        #expect(later == [true, true, true, false], "x still remembered after its first entry went")
    }

    // Full: the key remembered longest ago goes first, whatever its expiry.
    @Test func boundedByCapacity() {
        var keys = ExpiringKeySet(capacity: 3)
        let filled = Self.answers(&keys, ["a", "b", "c", "d"].map { ($0, 1_000, 0) })
        #expect(filled == [true, true, true, true])
        #expect(keys.count == 3)
        let after = Self.answers(&keys, [("a", 1_000, 1), ("d", 1_000, 1), ("c", 1_000, 1)])
        #expect(after == [true, false, false], "a was forgotten to make room for d")
        _ = Self.answers(&keys, (0..<10_000).map { ("n\($0)", 1_000_000, 2) })
        #expect(keys.count == 3)
    }
}
