import NIOConcurrencyHelpers
import Synchronization

/// Integers added to on every request from every event loop, kept as one shard per thread so that adding
/// takes no lock and no read-modify-write, and threads on different cores never write to the same cache line.
/// Readers (a metrics scrape) sum the shards.
///
/// A shard is `width` words, made by its thread on the thread's first add (`ThreadIndex`); the few threads
/// beyond `ThreadIndex.capacity` share one more shard under a lock.
final class ShardedWords: @unchecked Sendable {
    // @unchecked: `shards` is shared memory. Each shard has one writer (its thread, or whoever holds
    // `sharedLock` for the shared one), which also installed it; readers load it acquiring and read its atomics.
    let width: Int
    /// Bytes per shard: whole cache lines, so that no two shards share one.
    private let stride: Int
    /// `ThreadIndex.capacity` thread slots, then the shared shard; each nil until first used.
    private let shards: UnsafeMutablePointer<Synchronization.Atomic<UnsafeMutablePointer<Synchronization.Atomic<Int64>>?>>
    private let sharedLock = NIOLock()

    private static let cacheLine = 64
    private static var slots: Int { ThreadIndex.capacity + 1 }

    init(width: Int) {
        self.width = width
        self.stride = (width * MemoryLayout<Int64>.stride + Self.cacheLine - 1) / Self.cacheLine * Self.cacheLine
        self.shards = .allocate(capacity: Self.slots)
        for slot in 0..<Self.slots { (shards + slot).initialize(to: Synchronization.Atomic(nil)) }
    }

    deinit {
        for slot in 0..<Self.slots {
            guard let shard = shards[slot].load(ordering: .acquiring) else { continue }
            shard.deinitialize(count: width)
            UnsafeMutableRawPointer(shard).deallocate()
        }
        shards.deinitialize(count: Self.slots)
        shards.deallocate()
    }

    /// Runs `body` with this thread's shard, to add to it.
    @inline(__always)
    func withShard(_ body: (Shard) -> Void) {
        if let index = ThreadIndex.current {
            body(shard(at: index))
        } else {
            sharedLock.withLock { body(shard(at: ThreadIndex.capacity)) }
        }
    }

    /// Called by the slot's only writer, which therefore also installs it.
    @inline(__always)
    private func shard(at slot: Int) -> Shard {
        Shard(words: shards[slot].load(ordering: .relaxed) ?? install(at: slot))
    }

    private func install(at slot: Int) -> UnsafeMutablePointer<Synchronization.Atomic<Int64>> {
        let words = UnsafeMutableRawPointer.allocate(byteCount: stride, alignment: Self.cacheLine)
            .bindMemory(to: Synchronization.Atomic<Int64>.self, capacity: width)
        for word in 0..<width { (words + word).initialize(to: Synchronization.Atomic(0)) }
        shards[slot].store(words, ordering: .releasing)
        return words
    }

    /// Each word summed over the shards. Adds made while it reads may be included or not, each word whole.
    func sums() -> [Int64] {
        var sums = [Int64](repeating: 0, count: width)
        for slot in 0..<Self.slots {
            guard let shard = shards[slot].load(ordering: .acquiring) else { continue }
            for word in 0..<width { sums[word] &+= shard[word].load(ordering: .relaxed) }
        }
        return sums
    }

    /// One thread's words. Only its writer adds, so a load and a store make an add that loses nothing.
    struct Shard {
        fileprivate let words: UnsafeMutablePointer<Synchronization.Atomic<Int64>>

        @inline(__always)
        func add(_ amount: Int64, at word: Int) {
            words[word].store(words[word].load(ordering: .relaxed) &+ amount, ordering: .relaxed)
        }
    }
}

/// A Prometheus counter added to on every request (`gateway_requests_total` and the body byte counters),
/// sharded per thread (`ShardedWords`): swift-prometheus's counters are one atomic word that every event
/// loop writes, behind a handler retained and released around each increment.
public final class ShardedCounter: PrometheusSeries {
    static let prometheusType = "counter"
    public let name: String
    /// `{label="value",...}` rendered once, or empty.
    private let series: String
    private let words = ShardedWords(width: 1)

    init(name: String, labels: [(String, String)]) {
        self.name = name
        let labels = labels.map { "\($0.0)=\"\(LatencyHistogram.escapedLabelValue($0.1))\"" }.joined(separator: ",")
        self.series = labels.isEmpty ? "" : "{\(labels)}"
    }

    public func increment(by amount: Int64 = 1) {
        words.withShard { $0.add(amount, at: 0) }
    }

    public var value: Int64 { words.sums()[0] }

    /// The Prometheus text exposition line.
    public func emit(into out: inout [UInt8]) {
        out.append(contentsOf: "\(name)\(series) \(value)\n".utf8)
    }
}
