import Foundation

/// A throwaway DNS server on 127.0.0.1 (Debian `dnsmasq-base`, nothing forwarded anywhere) answering the records a test
/// gives: SRV records and host addresses. `serve` replaces them (a restart on the same port).
public final class DNSServer: @unchecked Sendable {
    // @unchecked: the Process is only touched by the test that owns this server, one call at a time.
    public struct Service: Sendable {
        public var name: String
        public var target: String
        public var port: Int
        public var priority: Int
        public var weight: Int
        public init(_ name: String, target: String, port: Int, priority: Int = 0, weight: Int = 1) {
            (self.name, self.target, self.port, self.priority, self.weight) = (name, target, port, priority, weight)
        }
    }

    public let port: Int
    private var process: Process?
    private let log: URL

    public init(services: [Service], hosts: [String: String]) async throws {
        port = try await RedisServer.freePort()
        log = FileManager.default.temporaryDirectory.appendingPathComponent("dnsmasq-\(UUID().uuidString).log")
        try await serve(services: services, hosts: hosts)
    }

    deinit {
        if let process, process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: log)
    }

    /// `127.0.0.1:PORT`, as `dns_server` takes it.
    public var address: String { "127.0.0.1:\(port)" }

    /// (Re)starts the server with these records and waits until it listens.
    public func serve(services: [Service], hosts: [String: String]) async throws {
        stop()
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/dnsmasq")
        process.arguments =
            ["--keep-in-foreground", "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
             "--conf-file=/dev/null", "--pid-file=", "--log-facility=-", "--local-ttl=0"]
            + (getuid() == 0 ? ["--user=root"] : [])
            + services.map { "--srv-host=\($0.name),\($0.target),\($0.port),\($0.priority),\($0.weight)" }
            + hosts.sorted { $0.key < $1.key }.map { "--host-record=\($0.key),\($0.value)" }
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if logText.contains("started, version") { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw DNSServerFailed(description: "dnsmasq did not start: \(logText)")
    }

    public var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    public func stop() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    public struct DNSServerFailed: Error, CustomStringConvertible {
        public let description: String
    }
}
