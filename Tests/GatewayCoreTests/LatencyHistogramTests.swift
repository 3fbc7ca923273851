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
        metrics.emitHistograms(into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.components(separatedBy: "# TYPE x_seconds histogram\n").count == 2)
        #expect(text.components(separatedBy: "# TYPE x_seconds_b histogram\n").count == 2)
        #expect(text.contains("x_seconds_count{route=\"a\"} 1\n") && text.contains("x_seconds_count{route=\"b\"} 1\n"))
    }
}
