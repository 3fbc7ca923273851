/// A Prometheus histogram of durations, recorded on every request (`gateway_request_duration_seconds`,
/// `gateway_upstream_request_duration_seconds`).
///
/// swift-prometheus's `Histogram<Duration>` is generic and not specialised across modules: each record made
/// one witness-table `Duration` comparison per bucket under its lock, about 2.5% of the forwarding path's
/// user time. Here the bucket is found on plain integers, and the counts go into per-thread shards
/// (`ShardedWords`), so recording takes no lock. Buckets are counted individually and summed when scraped.
public final class LatencyHistogram: PrometheusSeries {
    static let prometheusType = "histogram"
    public let name: String
    /// Upper bounds in nanoseconds, ascending (Prometheus `le`; the `+Inf` bucket is implied).
    private let bounds: [Int64]
    /// `label="value",...` rendered once, or empty.
    private let labels: String
    /// One count per bound, the `+Inf` count, then the sum of nanoseconds.
    private let words: ShardedWords

    public init(name: String, labels: [(String, String)], bounds: [Int64]) {
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "histogram bounds must ascend")
        self.name = name
        self.bounds = bounds
        self.labels = labels.map { "\($0.0)=\"\(Self.escapedLabelValue($0.1))\"" }.joined(separator: ",")
        self.words = ShardedWords(width: bounds.count + 2)
    }

    public func record(nanoseconds: Int64) {
        var slot = 0
        while slot < bounds.count, bounds[slot] < nanoseconds { slot += 1 }
        let sum = bounds.count + 1
        words.withShard { shard in
            shard.add(1, at: slot)
            shard.add(nanoseconds, at: sum)
        }
    }

    /// What has been recorded: cumulative bucket counts (the last is `+Inf`, the total) and the sum. Records
    /// made while it reads may be counted or not, each whole in its bucket (the sum may lag a record).
    public var snapshot: (cumulative: [Int], sumNanos: Int64) {
        let sums = words.sums()
        var running = 0
        return (sums.dropLast().map { running += Int($0); return running }, sums[bounds.count + 1])
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
