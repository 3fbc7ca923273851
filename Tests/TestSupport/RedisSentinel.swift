import Foundation

/// A throwaway Redis Sentinel (`redis-server --sentinel`) on a free 127.0.0.1 port, watching one master: it notices the
/// master is down within half a second and promotes a replica (a quorum of one: this sentinel alone decides).
public final class RedisSentinel: @unchecked Sendable {
    // @unchecked: the Process is only touched by the test that owns this sentinel, one call at a time.
    public let port: Int
    public let masterName: String
    private var process: Process?
    private let directory: URL

    public init(masterName: String, masterPort: Int) async throws {
        self.masterName = masterName
        port = try await RedisServer.freePort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sentinel-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Sentinel rewrites its config file as it learns replicas and failovers: it must be writable.
        let config = directory.appendingPathComponent("sentinel.conf")
        let text = """
            port \(port)
            bind 127.0.0.1
            dir \(directory.path)
            sentinel monitor \(masterName) 127.0.0.1 \(masterPort) 1
            sentinel down-after-milliseconds \(masterName) 500
            sentinel failover-timeout \(masterName) 2000
            sentinel parallel-syncs \(masterName) 1

            """
        try Data(text.utf8).write(to: config)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: RedisServer.binary)
        process.arguments = [config.path, "--sentinel"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if try await master() != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RedisServerError("redis sentinel did not start on port \(port)")
    }

    deinit {
        if let process, process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// `127.0.0.1:PORT`.
    public var address: String { "127.0.0.1:\(port)" }

    /// The master's port as this sentinel names it now.
    public func master() async throws -> Int? {
        let answer = try await command(["SENTINEL", "get-master-addr-by-name", masterName])
        let lines = answer.split(separator: "\n")
        return lines.count == 2 ? Int(lines[1]) : nil
    }

    /// Runs a command through redis-cli against the sentinel.
    public func command(_ arguments: [String]) async throws -> String {
        try await RedisServer.cli(["-h", "127.0.0.1", "-p", String(port)] + arguments)
    }
}
