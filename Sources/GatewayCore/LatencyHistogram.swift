import NIOConcurrencyHelpers
import Synchronization

/// A Prometheus histogram of durations, recorded on every request (`gateway_request_duration_seconds`,
/// `gateway_upstream_request_duration_seconds`).
///
/// swift-prometheus's `Histogram<Duration>` is generic and not specialised across modules: each record made
/// one witness-table `Duration` comparison per bucket under its lock, about 2.5% of the forwarding path's
/// user time. Here the bucket is found on plain integers, and each thread counts into a shard of its own
/// (`ThreadIndex`), so recording takes no lock and event loops on different cores never write to the same
/// cache line. Buckets are counted individually and summed over the shards when scraped.
public final class LatencyHistogram: @unchecked Sendable {
    // @unchecked: `shards` is shared memory. Each shard has one writer, the thread whose index it is at, which
    // also installs it; readers reach it through an acquiring load and read its atomics.
    public let name: String
    /// Upper bounds in nanoseconds, ascending (Prometheus `le`; the `+Inf` bucket is implied).
    private let bounds: [Int64]
    /// `label="value",...` rendered once, or empty.
    private let labels: String
    /// Words per shard: one count per bound, the `+Inf` count, then the sum of nanoseconds.
    private let width: Int
    /// `ThreadIndex.capacity` slots, each nil until its thread first records.
    private let shards: UnsafeMutablePointer<Synchronization.Atomic<UnsafeMutablePointer<Synchronization.Atomic<Int64>>?>>
    /// Threads without an index (more threads than `ThreadIndex.capacity` recorded) share this one.
    private let unsharded: NIOLockedValueBox<[Int64]>

    public init(name: String, labels: [(String, String)], bounds: [Int64]) {
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "histogram bounds must ascend")
        self.name = name
        self.bounds = bounds
        self.labels = labels.map { "\($0.0)=\"\(Self.escapedLabelValue($0.1))\"" }.joined(separator: ",")
        self.width = bounds.count + 2
        self.shards = .allocate(capacity: ThreadIndex.capacity)
        for index in 0..<ThreadIndex.capacity { (shards + index).initialize(to: Synchronization.Atomic(nil)) }
        self.unsharded = NIOLockedValueBox(Array(repeating: 0, count: bounds.count + 2))
    }

    deinit {
        for index in 0..<ThreadIndex.capacity {
            guard let shard = shards[index].load(ordering: .acquiring) else { continue }
            shard.deinitialize(count: width)
            shard.deallocate()
        }
        shards.deinitialize(count: ThreadIndex.capacity)
        shards.deallocate()
    }

    public func record(nanoseconds: Int64) {
        var slot = 0
        while slot < bounds.count, bounds[slot] < nanoseconds { slot += 1 }
        guard let index = ThreadIndex.current else {
            unsharded.withLockedValue { words in
                words[slot] += 1
                words[width - 1] &+= nanoseconds
            }
            return
        }
        let shard = shards[index].load(ordering: .relaxed) ?? installShard(at: index)
        // This thread is the shard's only writer: a load and a store add without a read-modify-write, and a
        // reader sees each word whole.
        shard[slot].store(shard[slot].load(ordering: .relaxed) + 1, ordering: .relaxed)
        shard[width - 1].store(shard[width - 1].load(ordering: .relaxed) &+ nanoseconds, ordering: .relaxed)
    }

    /// Made by the thread at `index` on its first record, so no other thread installs there.
    private func installShard(at index: Int) -> UnsafeMutablePointer<Synchronization.Atomic<Int64>> {
        let shard = UnsafeMutablePointer<Synchronization.Atomic<Int64>>.allocate(capacity: width)
        for word in 0..<width { (shard + word).initialize(to: Synchronization.Atomic(0)) }
        shards[index].store(shard, ordering: .releasing)
        return shard
    }

    /// What has been recorded: cumulative bucket counts (the last is `+Inf`, the total) and the sum. Records
    /// made while it reads may be counted or not, each as a whole in its bucket (the sum may lag a record).
    public var snapshot: (cumulative: [Int], sumNanos: Int64) {
        var words = unsharded.withLockedValue { $0 }
        for index in 0..<ThreadIndex.capacity {
            guard let shard = shards[index].load(ordering: .acquiring) else { continue }
            for word in 0..<width { words[word] &+= shard[word].load(ordering: .relaxed) }
        }
        var running = 0
        return (words.dropLast().map { running += Int($0); return running }, words[width - 1])
    }

    /// Prometheus text exposition lines: `_bucket` per bound and `+Inf`, `_sum` in seconds, `_count`.
    public func emit(into out: inout [UInt8]) {
        let (cumulative, sum) = snapshot
        let prefix = labels.isEmpty ? "" : labels + ","
        for (index, count) in cumulative.enumerated() {
            let bound = index < bounds.count ? Self.seconds(bounds[index]) : "+Inf"
            out.append(contentsOf: "\(name)_bucket{\(prefix)le=\"\(bound)\"} \(count)\n".utf8)
        }
        let series = labels.isEmpty ? "" : "{\(labels)}"
        out.append(contentsOf: "\(name)_sum\(series) \(Self.seconds(sum))\n".utf8)
        out.append(contentsOf: "\(name)_count\(series) \(cumulative.last ?? 0)\n".utf8)
    }

    /// Nanoseconds as decimal seconds without float rounding: 500_000 -> "0.0005", 2_500_000_000 -> "2.5".
    static func seconds(_ nanos: Int64) -> String {
        let sign = nanos < 0 ? "-" : ""
        let magnitude = nanos.magnitude
        let whole = magnitude / 1_000_000_000
        var fraction = String(magnitude % 1_000_000_000)
        fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
        while fraction.count > 1, fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(sign)\(whole).\(fraction)"
    }

    /// A label value as Prometheus text writes it: backslash, quote and newline escaped.
    public static func escapedLabelValue(_ value: String) -> String {
        var result = ""
        for character in value {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.append(character)
            }
        }
        return result
    }
}
