import Foundation
import NIOConcurrencyHelpers
import Synchronization
import Testing

/// The built executables next to the test bundle (`.build/<triple>/debug/`).
enum Binaries {
    static var directory: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }

    static var gateway: URL { directory.appendingPathComponent("gateway") }
    static var demoUpstream: URL { directory.appendingPathComponent("demo-upstream") }

    /// The environment for child processes: ours, except that under `make sanitize` the children get their own
    /// AddressSanitizer options (GATEWAY_TEST_CHILD_ASAN_OPTIONS), so a gateway process checks for leaks when it
    /// exits while the test process does not.
    static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        if let options = environment["GATEWAY_TEST_CHILD_ASAN_OPTIONS"] { environment["ASAN_OPTIONS"] = options }
        return environment
    }
}

/// The `demo-upstream` binary as a separate process, so a test can kill it outright (SIGKILL: the
/// kernel resets its connections) and start it again on the same port.
final class DemoUpstreamProcess {
    let name: String
    private(set) var port: Int
    private var process: Process?
    private let extraArguments: [String]

    init(name: String, port: Int = 0, arguments: [String] = []) {
        self.name = name
        self.port = port
        self.extraArguments = arguments
    }

    deinit { kill() }

    /// Starts the process and waits for its listening line (which carries the port).
    func start() async throws {
        let process = Process()
        process.executableURL = Binaries.demoUpstream
        process.environment = Binaries.environment
        process.arguments = ["--port", String(port), "--name", name] + extraArguments
        let pipe = Pipe()
        process.standardOutput = pipe
        let output = NIOLockedValueBox(Data())
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            output.withLockedValue { $0.append(chunk) }
        }
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let text = String(decoding: output.withLockedValue { $0 }, as: UTF8.self)
            if let line = text.split(separator: "\n").first,
                let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let port = json["port"] as? Int
            {
                pipe.fileHandleForReading.readabilityHandler = nil
                self.port = port
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw RawClient.TimeoutError(what: "demo-upstream \(name) to listen")
    }

    /// SIGKILL, and waits for the process to be gone.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// Output of a finished command.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion (bounded by `timeout`) and collects its output.
func runCommand(_ executable: URL, _ arguments: [String], timeout: Duration = .seconds(120)) async throws -> CommandResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = Binaries.environment
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let deadline = ContinuousClock.now + timeout
    let outData = NIOLockedValueBox(Data())
    let errData = NIOLockedValueBox(Data())
    out.fileHandleForReading.readabilityHandler = { handle in
        let chunk = handle.availableData
        outData.withLockedValue { $0.append(chunk) }
    }
    err.fileHandleForReading.readabilityHandler = { handle in
        let chunk = handle.availableData
        errData.withLockedValue { $0.append(chunk) }
    }
    while process.isRunning {
        if ContinuousClock.now > deadline {
            process.terminate()
            Issue.record("\(executable.lastPathComponent) \(arguments) timed out")
            break
        }
        try await Task.sleep(for: .milliseconds(10))
    }
    process.waitUntilExit()
    out.fileHandleForReading.readabilityHandler = nil
    err.fileHandleForReading.readabilityHandler = nil
    let restOut = out.fileHandleForReading.readDataToEndOfFile()
    let restErr = err.fileHandleForReading.readDataToEndOfFile()
    return CommandResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData.withLockedValue { $0 } + restOut, as: UTF8.self),
        stderr: String(decoding: errData.withLockedValue { $0 } + restErr, as: UTF8.self))
}

/// The real `gateway` binary running on a config written to a temporary file.
final class GatewayProcess {
    final class Output: Sendable {
        let data = NIOLockedValueBox([UInt8]())  // not Data: LeakSanitizer misreads its enum-packed storage as leaked
    }

    let process = Process()
    private let output = Output()
    private let configURL: URL
    private(set) var port = 0
    /// Where the process logs when its config has `logging.file` (standard output otherwise).
    let logFile: URL?

    init(config: String, logFile: URL? = nil) throws {
        self.logFile = logFile
        configURL = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-test-\(UUID().uuidString).json")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        process.executableURL = Binaries.gateway
        process.environment = Binaries.environment
        process.arguments = ["run", "--config", configURL.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [output] handle in
            let chunk = handle.availableData
            output.data.withLockedValue { $0.append(contentsOf: chunk) }
        }
    }

    deinit {
        if process.isRunning { process.interrupt() }
        try? FileManager.default.removeItem(at: configURL)
    }

    var log: String {
        let file = logFile.flatMap { try? String(contentsOf: $0, encoding: .utf8) } ?? ""
        return String(decoding: output.data.withLockedValue { $0 }, as: UTF8.self) + file
    }

    /// Sends SIGUSR1 (reopen the log files).
    func reopenLogs() { kill(process.processIdentifier, SIGUSR1) }

    var logLines: [[String: Any]] {
        log.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    /// Starts the process and waits for its "listening" line to learn the bound port.
    func start() async throws {
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let line = logLines.first(where: { $0["msg"] as? String == "listening" }), let port = line["port"] as? Int {
                self.port = port
                return
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("gateway did not start: \(log)")
        throw RawClient.TimeoutError(what: "the gateway to listen")
    }

    /// Starts the process on a config with a fixed port and waits until it takes connections there (for configs that
    /// send the "listening" line elsewhere, such as syslog).
    func start(listeningOn port: Int) async throws {
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline && process.isRunning {
            if let client = try? await RawClient.connect(port: port) {
                await client.close()
                self.port = port
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("gateway did not start: \(log)")
        throw RawClient.TimeoutError(what: "the gateway to listen")
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    var peakResidentBytes: Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
        let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        return kilobytes * 1024
    }

    /// Sends SIGTERM (graceful stop).
    func terminate() { process.terminate() }

    /// Replaces the config file (a reload reads it).
    func rewriteConfig(_ config: String) throws { try config.write(to: configURL, atomically: true, encoding: .utf8) }

    /// Sends SIGHUP (reload).
    func hangUp() { kill(process.processIdentifier, SIGHUP) }

    /// Waits for the process to exit; returns its status, or nil on timeout.
    func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return process.terminationStatus
    }
}

/// Runs a shell pipeline (used to drive curl for multi-gigabyte transfers).
func shell(_ script: String, timeout: Duration = .seconds(300)) async throws -> CommandResult {
    try await runCommand(URL(fileURLWithPath: "/bin/sh"), ["-c", script], timeout: timeout)
}
