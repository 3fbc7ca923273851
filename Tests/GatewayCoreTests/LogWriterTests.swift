import Foundation
import GatewayCore
import Testing
import TestSupport

/// The log writer over real files and a real pipe: lines whole and in order, reopened after a rename, and
/// dropped (counted, never blocking the caller) when the output stops taking them.
@Suite struct LogWriterTests {
    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("logwriter-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func lines(_ url: URL) -> [String] {
        ((try? String(contentsOf: url, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    // logrotate's way: rename the file, then SIGUSR1 makes the gateway reopen its path; nothing is lost or
    // written to the wrong file.
    @Test func appendsAndReopensAfterRename() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("access.log")
        try "earlier\n".write(to: path, atomically: false, encoding: .utf8)
        let writer = try LogWriter(.file(path.path))
        defer { writer.stop() }
        for index in 1...3 { writer.append("line \(index)\n") }
        writer.flush()
        #expect(Self.lines(path) == ["earlier", "line 1", "line 2", "line 3"], "appended, not truncated")

        let rotated = directory.appendingPathComponent("access.log.1")
        try FileManager.default.moveItem(at: path, to: rotated)
        writer.append("before reopen\n")
        writer.flush()
        writer.reopen()
        writer.append("after reopen\n")
        writer.flush()
        #expect(Self.lines(rotated) == ["earlier", "line 1", "line 2", "line 3", "before reopen"])
        #expect(Self.lines(path) == ["after reopen"])
        let mode = (try FileManager.default.attributesOfItem(atPath: path.path)[.posixPermissions] as? Int) ?? 0
        #expect(mode & 0o007 == 0, "not readable by everyone: \(String(mode, radix: 8))")
    }

    @Test func unopenableFileIsAnError() throws {
        let error = thrownError { _ = try LogWriter(.file("/nonexistent-directory/gateway.log")) }
        #expect("\(error.map { "\($0)" } ?? "none")".contains("cannot open log file /nonexistent-directory/gateway.log"))
    }

    // A reader that stops reading (a full pipe): append never waits; what does not fit the buffer is dropped
    // whole and counted, and once the reader drains the pipe every kept line arrives intact, in order, followed
    // by a warning with the number lost.
    @Test(.timeLimit(.minutes(1))) func dropsWholeLinesWhenTheOutputStalls() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let fifo = directory.appendingPathComponent("pipe").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }
        let writer = try LogWriter(.file(fifo), capacity: 65_536)
        defer { writer.stop(timeout: .seconds(1)) }
        let total = 5_000
        let padding = String(repeating: "x", count: 90)
        for index in 0..<total { writer.append("line \(index) \(padding)\n") }
        // Nothing has been read: the pipe (64 KiB), the batch being written and the buffer (64 KiB each) hold at
        // most about 2,000 lines.
        let dropped = writer.droppedLines
        #expect(dropped > 2_500 && dropped < total)

        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let deadline = ContinuousClock.now + .seconds(20)
        // The warnings (one per stretch of drops) add up to the count.
        func reported(_ lines: [String]) -> Int {
            lines.filter { $0.contains("log lines dropped") }.compactMap { line in
                line.range(of: #""dropped":"#).flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) }
            }.reduce(0, +)
        }
        var lines: [String] = []
        // Kept lines that followed the last stretch of drops come after its warning: read until every line is
        // accounted for.
        func keptCount(_ lines: [String]) -> Int { lines.filter { $0.hasPrefix("line ") }.count }
        while (reported(lines) < dropped || keptCount(lines) + dropped < total) && ContinuousClock.now < deadline {
            let count = read(reader, &buffer, buffer.count)
            if count > 0 { received.append(contentsOf: buffer[0..<count]) } else { try await Task.sleep(for: .milliseconds(5)) }
            lines = String(decoding: received, as: UTF8.self).split(separator: "\n").map(String.init)
        }
        let kept = lines.filter { $0.hasPrefix("line ") }
        let numbers = kept.compactMap { Int($0.split(separator: " ")[1]) }
        let whole = kept.allSatisfy { $0.hasSuffix(padding) && $0.split(separator: " ").count == 3 }
        #expect(whole, "every line whole")
        #expect(numbers == numbers.sorted() && Set(numbers).count == numbers.count, "in order, none twice")
        #expect(kept.count + dropped == total)
        #expect(reported(lines) == dropped)
        let lastWarning = lines.last { $0.contains("log lines dropped") }
        let warning = try #require(lastWarning)
        #expect(warning.contains(#""level":"warning","msg":"log lines dropped: the log output did not keep up""#))
    }
}
