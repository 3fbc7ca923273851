import CoreMetrics
import Foundation
import Synchronization
import Testing
@testable import GatewayCore

@Suite struct LatencyHistogramTests {
    // A value lands in the first bucket whose bound is >= it (Prometheus `le`); buckets are cumulative when
    // read, the last one (+Inf) counts everything, and the sum is exact in nanoseconds.
    @Test func bucketsAreInclusiveAndCumulative() {
        let histogram = LatencyHistogram(name: "t", labels: [], bounds: [1_000, 2_000, 5_000])
        for nanos: Int64 in [0, 1_000, 1_001, 2_000, 4_999, 5_001, 9_000_000_000] { histogram.record(nanoseconds: nanos) }
        let (cumulative, sum) = histogram.snapshot
        #expect(cumulative == [2, 4, 5, 7])
        #expect(sum == 9_000_014_001)
    }

    @Test func prometheusText() {
        let histogram = LatencyHistogram(name: "d_seconds", labels: [("route", "a\"b")], bounds: [500_000, 2_500_000_000])
        histogram.record(nanoseconds: 400_000)
        histogram.record(nanoseconds: 3_000_000_000)
        var out: [UInt8] = []
        histogram.emit(into: &out)
        #expect(String(decoding: out, as: UTF8.self) == """
            d_seconds_bucket{route="a\\"b",le="0.0005"} 1
            d_seconds_bucket{route="a\\"b",le="2.5"} 1
            d_seconds_bucket{route="a\\"b",le="+Inf"} 2
            d_seconds_sum{route="a\\"b"} 3.0004
            d_seconds_count{route="a\\"b"} 2

            """)
    }

    @Test func secondsText() {
        #expect(LatencyHistogram.seconds(0) == "0.0")
        #expect(LatencyHistogram.seconds(30_000_000_000) == "30.0")
        #expect(LatencyHistogram.seconds(1_000_000) == "0.001")
        #expect(LatencyHistogram.seconds(-1_500_000_000) == "-1.5")
    }

    // The registry side: one `# TYPE` line per name, every label set under it, also when one name is the
    // start of another.
    @Test func metricsEmitEachNameOnce() {
        let metrics = GatewayMetrics.disabled
        metrics.latencyHistogram("x_seconds", [("route", "b")]).record(nanoseconds: 1)
        metrics.latencyHistogram("x_seconds_b", [("route", "a")]).record(nanoseconds: 1)
        metrics.latencyHistogram("x_seconds", [("route", "a")]).record(nanoseconds: 1)
        #expect(metrics.latencyHistogram("x_seconds", [("route", "a")]) === metrics.latencyHistogram("x_seconds", [("route", "a")]))
        var out: [UInt8] = []
        metrics.emitOwnMetrics(into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.components(separatedBy: "# TYPE x_seconds histogram\n").count == 2)
        #expect(text.components(separatedBy: "# TYPE x_seconds_b histogram\n").count == 2)
        #expect(text.contains("x_seconds_count{route=\"a\"} 1\n") && text.contains("x_seconds_count{route=\"b\"} 1\n"))
    }
}

/// Records from more threads than there are shards (`ThreadIndex.capacity`), all at once: every record is
/// counted once, in its bucket or series, whether its thread has a shard or shares the locked one.
@Suite struct ShardedMetricsTests {
    static let threads = ThreadIndex.capacity + 8
    static let recordsPerThread = 500

    @Test func histogramCountsEveryRecordFromEveryThread() {
        let histogram = LatencyHistogram(name: "t", labels: [], bounds: [1_000, 2_000])
        runOnThreads(Self.threads) { thread in
            for record in 0..<Self.recordsPerThread { histogram.record(nanoseconds: Int64(record % 3) * 1_500 + Int64(thread)) }
        }
        let (cumulative, sum) = histogram.snapshot
        let total = Self.threads * Self.recordsPerThread
        // record % 3 == 0 lands at or below 1,000 (thread numbers are < 1,000), 1 in (1,000, 2,000], 2 above.
        let perBucket = (0..<3).map { bucket in (0..<Self.recordsPerThread).filter { $0 % 3 == bucket }.count * Self.threads }
        #expect(cumulative == [perBucket[0], perBucket[0] + perBucket[1], total])
        let expectedSum = (0..<Self.threads).reduce(Int64(0)) { sum, thread in
            sum + (0..<Self.recordsPerThread).reduce(Int64(0)) { $0 + Int64($1 % 3) * 1_500 + Int64(thread) }
        }
        #expect(sum == expectedSum)
    }

    // The request counter of a method/status pair is made on its first request; threads meeting there at once
    // must all count, into one counter.
    @Test func routeRequestCountersCountEveryRecordFromEveryThread() {
        let metrics = GatewayMetrics(factory: NOOPMetricsHandler.instance)
        let route = metrics.route("r")
        runOnThreads(Self.threads) { thread in
            for _ in 0..<Self.recordsPerThread {
                route.record(method: thread % 2 == 0 ? .GET : .POST, status: 200, durationNanos: 1)
            }
        }
        let half = Self.threads / 2 * Self.recordsPerThread
        var out: [UInt8] = []
        metrics.emitOwnMetrics(into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.contains("gateway_requests_total{route=\"r\",method=\"GET\",status_class=\"2xx\"} \(half)\n"))
        #expect(text.contains("gateway_requests_total{route=\"r\",method=\"POST\",status_class=\"2xx\"} \(half)\n"))
        #expect(text.components(separatedBy: "# TYPE gateway_requests_total counter\n").count == 2)
    }

    /// Starts `count` threads together and returns when all have run `body`.
    private func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let start = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for thread in 0..<count {
            done.enter()
            Thread.detachNewThread {
                start.wait()
                body(thread)
                done.leave()
            }
        }
        for _ in 0..<count { start.signal() }
        done.wait()
    }
}

/// `ThreadSlot.withObject` lends each thread its own object, made once on the thread's first use (the request id
/// generator and the Date text live there): the same object on every later call, never another thread's.
@Suite struct ThreadSlotTests {
    final class Counter: @unchecked Sendable { var uses = 0 }

    @Test func eachThreadGetsItsOwnObjectMadeOnce() {
        let slot = ThreadSlot()
        let threads = 8
        let made = Mutex(0)
        let results = Mutex<[(uses: Int, object: Counter)]>([])  // the objects kept: an ended thread's could be freed and its address reused
        let done = DispatchGroup()
        for _ in 0..<threads {
            done.enter()
            Thread.detachNewThread {
                let make = { made.withLock { $0 += 1 }; return Counter() }
                for _ in 0..<100 { slot.withObject(make) { $0.uses += 1 } }
                let result = slot.withObject(make) { (uses: $0.uses, object: $0) }
                results.withLock { $0.append(result) }
                done.leave()
            }
        }
        done.wait()
        let all = results.withLock { $0 }
        let distinct = Set(all.map { ObjectIdentifier($0.object) }).count
        let madeCount = made.withLock { $0 }
        let everyThreadUsedItsOwn = all.allSatisfy { $0.uses == 100 }
        #expect(madeCount == threads)
        #expect(all.count == threads && distinct == threads)
        #expect(everyThreadUsedItsOwn)
    }
}
