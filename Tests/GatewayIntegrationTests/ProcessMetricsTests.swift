import Foundation
@testable import GatewayTelemetry
import Testing

/// `process_*` metrics: /proc parsed as the Prometheus client libraries read it, and the real scrape.
@Suite struct ProcessMetricsTests {
    // A command name with spaces and parentheses does not shift the fields; ticks and pages are converted.
    @Test func parsesProcStat() throws {
        let stat = "4242 (gateway (worker) 1) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 150 0 0 20 0 9 0 12000 734003200 5120 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        let procStat = "cpu  1 2 3 4\nintr 5\nbtime 1796083200\nprocesses 9\n"
        let sample = try #require(ProcessMetrics.parse(stat: stat, procStat: procStat, ticksPerSecond: 100, pageSize: 4096))
        #expect(sample.cpuSeconds == 4.0)
        #expect(sample.residentBytes == 5120 * 4096)
        #expect(sample.virtualBytes == 734_003_200)
        #expect(sample.startTimeSeconds == 1_796_083_320)
        #expect(ProcessMetrics.parse(stat: "garbage", procStat: procStat, ticksPerSecond: 100, pageSize: 4096) == nil)
        #expect(ProcessMetrics.parse(stat: stat, procStat: "cpu 1\n", ticksPerSecond: 100, pageSize: 4096) == nil)

        var full = sample
        (full.openFDs, full.maxFDs) = (12, 65536)
        let text = ProcessMetrics.render(full)
        #expect(text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 4\n"))
        #expect(text.contains("process_resident_memory_bytes 20971520\n"))
        #expect(text.contains("process_start_time_seconds 1796083320\n"))
        #expect(text.contains("process_open_fds 12\n") && text.contains("process_max_fds 65536\n"))
    }

    // The admin endpoint carries the gateway's own CPU, memory and descriptors, and its version.
    @Test func scrapeCarriesProcessMetrics() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig(top: #""admin": { "address": "127.0.0.1", "port": 0 },"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                #expect(try await gateway.request("GET", "/echo").status == 200)
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                let resident = try #require(metrics.value("process_resident_memory_bytes", [:]))
                let openFDs = try #require(metrics.value("process_open_fds", [:]))
                let started = try #require(metrics.value("process_start_time_seconds", [:]))
                let now = Date().timeIntervalSince1970
                #expect(resident > 1_000_000, "a running gateway holds megabytes")
                #expect(openFDs >= 3, "listeners and connections are descriptors")
                #expect(started > now - 86_400 * 365 && started <= now + 1)
                #expect(metrics.value("process_cpu_seconds_total", [:]) != nil)
                #expect(metrics.value("gateway_build_info", ["version": "0.1.0"]) == 1)
            }
        }
    }
}
