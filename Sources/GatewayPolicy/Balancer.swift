/// Chooses a target among those the caller says are eligible (health and breakers are the caller's business:
/// selection is kept apart from health).
///
/// - round robin: NGINX's smooth weighted round robin. With weights 5, 1, 1 the order is a a b a c a a, not
///   a a a a a b c: every pick adds each target's weight to its score, takes the highest, and subtracts the
///   total from the winner.
/// - random: weighted random.
/// - least request: power of two choices. Two random targets are drawn and the one with fewer requests in
///   flight per unit of weight wins: nearly as good as scanning all targets, without herding on one.
/// - consistent hash: a ring of 160 points per unit of weight; a key maps to the first point at or after its
///   hash. When a target is ineligible its keys move to the next points on the ring; the other targets keep
///   theirs, so a target coming or going only moves the keys it owned.
public struct Balancer: Sendable {
    public enum Strategy: Sendable, Equatable { case roundRobin, random, leastRequest, consistentHash }

    public let strategy: Strategy
    public let weights: [Int]
    private var scores: [Int]
    private let ring: [(point: UInt64, target: Int)]

    public init(strategy: Strategy, weights: [Int]) {
        precondition(!weights.isEmpty)
        self.strategy = strategy
        self.weights = weights.map { max(1, $0) }
        self.scores = Array(repeating: 0, count: weights.count)
        if strategy == .consistentHash {
            var ring: [(point: UInt64, target: Int)] = []
            for (target, weight) in self.weights.enumerated() {
                for replica in 0..<(160 * weight) {
                    ring.append((Hashing.fnv1a("\(target)#\(replica)"), target))
                }
            }
            self.ring = ring.sorted { $0.point < $1.point }
        } else {
            self.ring = []
        }
    }

    /// - Parameters:
    ///   - eligible: whether a target may take the request (healthy, breaker closed or probing, not tried).
    ///   - inFlight: requests in flight per target (least request).
    ///   - hashKey: the consistent-hash key (header, cookie or client address); nil falls back to round robin.
    ///   - weight: each target's weight now, when it differs from the static one (slow start), all in one unit;
    ///     nil: the static weights. The consistent-hash ring keeps the static ones.
    /// - Returns: nil when no target is eligible.
    public mutating func pick(
        eligible: (Int) -> Bool, inFlight: (Int) -> Int = { _ in 0 }, hashKey: String? = nil, weight: ((Int) -> Int)? = nil,
        random: inout some RandomNumberGenerator
    ) -> Int? {
        switch strategy {
        case .roundRobin:
            return pickRoundRobin(eligible, weight)
        case .random:
            return pickRandom(eligible, weight, random: &random)
        case .leastRequest:
            guard let first = pickRandom(eligible, weight, random: &random) else { return nil }
            guard let second = pickRandom({ $0 != first && eligible($0) }, weight, random: &random) else { return first }
            // Compare load per unit of weight without dividing: a/wa < b/wb  <=>  a*wb < b*wa.
            let firstLoad = inFlight(first) * weightAt(second, weight)
            let secondLoad = inFlight(second) * weightAt(first, weight)
            return secondLoad < firstLoad ? second : first
        case .consistentHash:
            guard let hashKey else { return pickRoundRobin(eligible, weight) }
            let hash = Hashing.fnv1a(hashKey)
            var low = 0
            var high = ring.count
            while low < high {
                let middle = (low + high) / 2
                if ring[middle].point < hash { low = middle + 1 } else { high = middle }
            }
            for step in 0..<ring.count {
                let target = ring[(low + step) % ring.count].target
                if eligible(target) { return target }
            }
            return nil
        }
    }

    /// A target's weight now: the caller's when it gives them, else the static one.
    @inline(__always)
    private func weightAt(_ index: Int, _ weight: ((Int) -> Int)?) -> Int { weight?(index) ?? weights[index] }

    private mutating func pickRoundRobin(_ eligible: (Int) -> Bool, _ weightOf: ((Int) -> Int)?) -> Int? {
        var total = 0
        var best: Int?
        for index in weights.indices where eligible(index) {
            let weight = weightAt(index, weightOf)
            scores[index] += weight
            total += weight
            if best == nil || scores[index] > scores[best!] { best = index }
        }
        if let best { scores[best] -= total }
        return best
    }

    private func pickRandom(_ eligible: (Int) -> Bool, _ weightOf: ((Int) -> Int)?, random: inout some RandomNumberGenerator) -> Int? {
        var total = 0
        for index in weights.indices where eligible(index) { total += weightAt(index, weightOf) }
        guard total > 0 else { return nil }
        var point = Int.random(in: 0..<total, using: &random)
        for index in weights.indices where eligible(index) {
            let weight = weightAt(index, weightOf)
            if point < weight { return index }
            point -= weight
        }
        return nil
    }
}

public enum Hashing {
    /// FNV-1a 64 with a final avalanche, so nearby strings land far apart on the ring.
    public static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        hash ^= hash >> 33
        hash = hash &* 0xFF51_AFD7_ED55_8CCD
        hash ^= hash >> 33
        return hash
    }
}

/// SplitMix64 (Vigna): a tiny, fast generator for balancing and jitter, where `SystemRandomNumberGenerator`
/// would cost a system call per draw. Not for secrets.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// Seeded from the system's entropy.
    public init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
