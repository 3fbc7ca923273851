/// A route's traffic split between upstreams (canary releases, blue-green switches): each request goes to
/// one member, chosen by weight from a 64-bit draw.
///
/// Members own consecutive ranges of `0..<total` in their listed order, and a draw picks the range that
/// holds `draw % total`. A sticky draw is a stable hash of the request's key (the same on every gateway
/// instance), so while the total stays the same, raising one member's weight only moves keys from its
/// neighbour onto it: a canary going from 5 to 10 of 100 keeps every user it already had.
public struct WeightedSplit: Sendable, Equatable {
    /// The end (exclusive) of each member's range.
    private let ends: [UInt64]
    public var total: UInt64 { ends.last ?? 0 }

    /// - Parameter weights: non-negative, at least one positive. A member of weight 0 is never chosen.
    public init(weights: [Int]) {
        var running: UInt64 = 0
        ends = weights.map { weight in
            precondition(weight >= 0, "weights are non-negative")
            running += UInt64(weight)
            return running
        }
        precondition(running > 0, "a split needs a positive weight")
    }

    /// The member that `draw` selects: uniform random draws follow the weights.
    public func choose(_ draw: UInt64) -> Int {
        let point = draw % total
        // Splits have a handful of members: a linear scan beats a binary search.
        for (index, end) in ends.enumerated() where point < end { return index }
        return ends.count - 1
    }

    /// The member for a sticky key (`Hashing.fnv1a`, so every instance agrees).
    public func choose(key: String) -> Int { choose(Hashing.fnv1a(key)) }
}
