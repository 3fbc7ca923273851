import Foundation
import NIOCore
import NIOPosix

/// A throwaway `redis-server` on a free 127.0.0.1 port (and a Unix socket), owned by one test.
/// It can be stopped, paused and started again on the same port to exercise outages.
/// With `tls`, the port speaks TLS only (`rediss://`); the Unix socket stays plaintext for checking from outside.
public final class RedisServer: @unchecked Sendable {
    public struct TLS: Sendable {
        public var cert: String
        public var key: String
        /// The CA client certificates must chain to.
        public var clientCA: String
        /// Whether a client must present a certificate (`tls-auth-clients yes`).
        public var requireClientCertificate: Bool

        public init(cert: String, key: String, clientCA: String, requireClientCertificate: Bool = false) {
            self.cert = cert
            self.key = key
            self.clientCA = clientCA
            self.requireClientCertificate = requireClientCertificate
        }
    }

    // @unchecked: the Process is only touched by the test that owns this server, one call at a time.
    public let port: Int
    public let socketPath: String
    public let password: String?
    public let tls: TLS?
    /// The port of the master this server replicates (a replica), or nil.
    public let replicaOf: Int?
    private var process: Process?
    private let directory: URL

    public init(password: String? = nil, tls: TLS? = nil, replicaOf: Int? = nil) async throws {
        self.port = try await Self.freePort()
        self.password = password
        self.tls = tls
        self.replicaOf = replicaOf
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        socketPath = directory.appendingPathComponent("redis.sock").path
        try await start()
    }

    deinit {
        // No waiting here (deinit may run on a cooperative thread): SIGKILL is enough for a throwaway server.
        if let process, process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }

    public var url: String {
        let scheme = tls == nil ? "redis" : "rediss"
        if let password { return "\(scheme)://:\(password)@127.0.0.1:\(port)" }
        return "\(scheme)://127.0.0.1:\(port)"
    }

    /// Starts (or restarts) the server and waits until it answers PING.
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        var arguments = [
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--unixsocket", socketPath, "--unixsocketperm", "700", "--dir", directory.path, "--loglevel", "warning",
        ]
        if let tls {
            arguments += [
                "--port", "0", "--tls-port", String(port), "--tls-cert-file", tls.cert, "--tls-key-file", tls.key,
                "--tls-ca-cert-file", tls.clientCA, "--tls-auth-clients", tls.requireClientCertificate ? "yes" : "no",
            ]
        } else {
            arguments += ["--port", String(port)]
        }
        if let password { arguments += ["--requirepass", password] }
        if let replicaOf { arguments += ["--replicaof", "127.0.0.1", String(replicaOf)] }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let answer = try await command(["PING"])
            if answer.contains("PONG") || answer.contains("NOAUTH") { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw RedisServerError("redis-server did not start on port \(port)")
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    public func kill() {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        while process.isRunning { usleep(5_000) }
        self.process = nil
    }

    /// Freezes the server (it keeps its sockets but answers nothing) or thaws it.
    public func pause(_ paused: Bool) {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, paused ? SIGSTOP : SIGCONT)
    }

    /// Runs a command through redis-cli and returns its output (for checking state from outside).
    public func command(_ arguments: [String]) async throws -> String {
        var all = tls == nil ? ["-h", "127.0.0.1", "-p", String(port)] : ["-s", socketPath]
        if let password { all += ["-a", password, "--no-auth-warning"] }
        return try await Self.cli(all + arguments)
    }

    /// redis-cli with these arguments (where to connect first); its output.
    static func cli(_ arguments: [String]) async throws -> String {
        let cli = Process()
        cli.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        cli.arguments = arguments
        let pipe = Pipe()
        cli.standardOutput = pipe
        cli.standardError = pipe
        try cli.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        while cli.isRunning { try await Task.sleep(for: .milliseconds(2)) }
        return String(decoding: output, as: UTF8.self)
    }

    static var binary: String {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.fileExists(atPath: $0) }
            ?? "/usr/bin/redis-server"
    }

    /// A port nothing listens on: bind one, note it, close it.
    public static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }
}

public struct RedisServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
