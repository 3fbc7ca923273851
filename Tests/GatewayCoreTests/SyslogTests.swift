import Foundation
import GatewayConfig
import GatewayCore
import Testing
import TestSupport

/// `logging.syslog`: the message format (pure), then the log writer sending to real sockets on this machine: a UDP
/// collector, a TCP collector that hangs up and goes away, and a local daemon's datagram socket that is made anew.
@Suite struct SyslogTests {
    static let info = #"{"time":"2026-12-07T19:28:15.893Z","level":"info","msg":"request","request_id":"r-1"}"#
    static let warning = #"{"time":"2026-12-07T19:28:15.901Z","level":"warning","msg":"upstream unhealthy"}"#
    static let combined = #"127.0.0.1 - - [07/Dec/2026:19:28:15 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/8.5.0" "r-2""#

    static func severity(_ line: String) -> Int {
        Array(line.utf8).withUnsafeBytes { SyslogFormat.severity(of: $0) }
    }

    @Test func severityFollowsTheLinesLevel() {
        let levels = ["trace": 7, "debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3, "critical": 2]
        for (level, expected) in levels {
            #expect(Self.severity(#"{"time":"2026-12-07T19:28:15.893Z","level":"\#(level)","msg":"x"}"#) == expected, "\(level)")
        }
        #expect(Self.severity(Self.combined) == 6, "an access line in the combined format is informational")
        #expect(Self.severity("") == 6)
        // A level named later in the line (a message quoting one) is not the line's.
        let quoted = #"{"time":"2026-12-07T19:28:15.893Z","level":"info","msg":"x","detail":"\"level\":\"error\""}"#
        #expect(Self.severity(quoted) == 6)
    }

    @Test func headersOfBothFormats() throws {
        // 2026-12-07 12:00:00.893 UTC: the 6th, 7th or 8th in every time zone, so RFC 3164's day is space-padded.
        let time = timespec(tv_sec: 1_796_644_800, tv_nsec: 893_000_000)
        let rfc5424 = SyslogFormat.header(priority: 190, format: .rfc5424, time: time, hostname: "edge-1", tag: "gateway", pid: 42)
        #expect(rfc5424 == "<190>1 2026-12-07T12:00:00.893Z edge-1 gateway 42 - - ")
        let noHost = SyslogFormat.header(priority: 134, format: .rfc5424, time: time, hostname: nil, tag: "gw", pid: 7)
        #expect(noHost == "<134>1 2026-12-07T12:00:00.893Z - gw 7 - - ")
        let bsd = SyslogFormat.header(priority: 190, format: .rfc3164, time: time, hostname: "edge-1", tag: "gateway", pid: 42)
        #expect(bsd.wholeMatch(of: #/<190>Dec  [678] \d\d:\d\d:\d\d edge-1 gateway\[42\]: /#) != nil, "\(bsd)")
        let local = SyslogFormat.header(priority: 190, format: .rfc3164, time: time, hostname: nil, tag: "gateway", pid: 42)
        #expect(local.wholeMatch(of: #/<190>Dec  [678] \d\d:\d\d:\d\d gateway\[42\]: /#) != nil, "\(local)")
    }

    // One datagram per line, its priority from facility and level, the line itself as the message.
    @Test(.timeLimit(.minutes(1))) func udpCollectorGetsOneMessagePerLine() throws {
        let collector = try DatagramCollector(udpOn: "127.0.0.1")
        var config = SyslogConfig(address: .network(host: "127.0.0.1", port: collector.port))
        config.tag = "edge"
        let writer = try LogWriter(.syslog(config))
        defer { writer.stop() }
        for line in [Self.info, Self.warning, Self.combined] { writer.append(line + "\n") }
        writer.flush()
        let messages = (0..<3).compactMap { _ in collector.receive() }
        #expect(messages.count == 3)
        let pattern = #/<(\d+)>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) edge (\d+) - - (.*)/#
        let parsed = messages.compactMap { try? pattern.wholeMatch(in: $0) }
        let priorities = parsed.map { String($0.1) }
        let bodies = parsed.map { String($0.4) }
        let fromThisProcess = parsed.allSatisfy { Int32($0.3) == getpid() && $0.2 != "-" }
        #expect(priorities == ["190", "188", "190"], "local7 (23) * 8 + info 6 / warning 4")
        #expect(bodies == [Self.info, Self.warning, Self.combined])
        #expect(fromThisProcess)
        #expect(writer.droppedLines == 0)
    }

    // Octet-counted frames on one connection; a collector that hangs up gets a new connection for the next batch (no
    // line written into the dead one), and one that is gone costs the lines, counted, never the caller's time.
    @Test(.timeLimit(.minutes(1))) func tcpCollectorReconnectsAndCountsWhatItMissed() async throws {
        let listener = try StreamListener()
        var config = SyslogConfig(address: .network(host: "127.0.0.1", port: listener.port))
        config.transport = .tcp
        config.facility = 16
        let writer = try LogWriter(.syslog(config))
        defer { writer.stop(timeout: .seconds(1)) }
        writer.append(Self.info + "\n" + Self.warning + "\n")
        writer.flush()
        let first = try #require(listener.accept())
        let frames = first.frames(count: 2)
        #expect(frames.count == 2)
        #expect(frames.first?.hasPrefix("<134>1 ") == true && frames.first?.hasSuffix(" - - " + Self.info) == true, "\(frames)")
        #expect(frames.last?.hasPrefix("<132>1 ") == true && frames.last?.hasSuffix(Self.warning) == true)

        first.close()
        try await Task.sleep(for: .milliseconds(100))
        writer.append(Self.combined + "\n")
        writer.flush()
        let second = try #require(listener.accept())
        let after = second.frames(count: 1)
        #expect(after.count == 1 && after.first?.hasSuffix(Self.combined) == true, "\(after)")
        #expect(writer.droppedLines == 0)

        second.close()
        listener.close()
        try await Task.sleep(for: .milliseconds(100))
        writer.append(Self.info + "\n")
        writer.flush()
        #expect(writer.droppedLines == 1)
    }

    // The local daemon's socket: RFC 3164 without a host name; after the daemon makes its socket anew (a restart), the
    // next line reaches the new one.
    @Test(.timeLimit(.minutes(1))) func localDaemonSocketSurvivesARestart() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("syslog-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("log").path
        let missing = thrownError { _ = try LogWriter(.syslog(SyslogConfig(address: .unix(path: path)))) }
        #expect("\(missing.map { "\($0)" } ?? "none")" == "cannot reach syslog at unix:\(path): No such file or directory")

        var daemon = try DatagramCollector(unixAt: path)
        let writer = try LogWriter(.syslog(SyslogConfig(address: .unix(path: path))))
        defer { writer.stop() }
        writer.append(Self.warning + "\n")
        writer.flush()
        let message = try #require(daemon.receive())
        let pattern = #/<188>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d gateway\[(\d+)\]: (.*)/#
        let parsed = try #require(try? pattern.wholeMatch(in: message), "\(message)")
        #expect(Int32(parsed.1) == getpid() && parsed.2 == Self.warning)

        daemon.close()
        unlink(path)
        daemon = try DatagramCollector(unixAt: path)
        defer { daemon.close() }
        writer.append(Self.info + "\n")
        writer.flush()
        let afterRestart = daemon.receive()
        #expect(afterRestart?.hasSuffix(": " + Self.info) == true, "\(afterRestart ?? "nothing")")
        #expect(writer.droppedLines == 0)
    }
}
