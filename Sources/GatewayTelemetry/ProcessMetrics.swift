import Foundation

/// The standard `process_*` metrics of Prometheus client libraries (CPU seconds, resident and virtual memory,
/// open and maximum file descriptors, start time), read from /proc at scrape time: the gateway's own
/// resource use on the same dashboard as its traffic, without a node exporter per host. Linux only; on other
/// systems (or if /proc cannot be read) nothing is emitted.
public enum ProcessMetrics {
    public struct Sample: Sendable, Equatable {
        public var cpuSeconds: Double
        public var residentBytes: Int
        public var virtualBytes: Int
        public var startTimeSeconds: Double
        public var openFDs: Int?
        public var maxFDs: Int?
    }

    /// Prometheus text for the current process.
    public static func text() -> String {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let procStat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            var sample = parse(stat: stat, procStat: procStat, ticksPerSecond: Int(sysconf(Int32(_SC_CLK_TCK))), pageSize: Int(sysconf(Int32(_SC_PAGESIZE))))
        else { return "" }
        sample.openFDs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")).map(\.count)
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { sample.maxFDs = Int(clamping: limit.rlim_cur) }
        return render(sample)
    }

    /// From `/proc/self/stat` (utime, stime, starttime, vsize, rss) and `/proc/stat` (btime).
    static func parse(stat: String, procStat: String, ticksPerSecond: Int, pageSize: Int) -> Sample? {
        // The command name (field 2) may hold spaces and parentheses: the fields after it start at the last ")".
        guard ticksPerSecond > 0, let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state): field n is fields[n - 3].
        func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
        guard let utime = field(14), let stime = field(15), let start = field(22), let vsize = field(23), let rss = field(24),
            let bootLine = procStat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
            let boot = Double(bootLine.dropFirst(6).trimmingCharacters(in: .whitespaces))
        else { return nil }
        let ticks = Double(ticksPerSecond)
        return Sample(
            cpuSeconds: (utime + stime) / ticks, residentBytes: Int(rss) * pageSize, virtualBytes: Int(vsize),
            startTimeSeconds: boot + start / ticks, openFDs: nil, maxFDs: nil)
    }

    static func render(_ sample: Sample) -> String {
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", format(sample.cpuSeconds))
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", String(sample.residentBytes))
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", String(sample.virtualBytes))
        metric("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", format(sample.startTimeSeconds))
        if let open = sample.openFDs { metric("process_open_fds", "gauge", "Number of open file descriptors.", String(open)) }
        if let max = sample.maxFDs { metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", String(max)) }
        return text
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
