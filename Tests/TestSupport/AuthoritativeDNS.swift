import Foundation

/// A throwaway authoritative DNS server on 127.0.0.1 (Debian `bind9`'s `named`) for one zone that takes RFC 2136 updates
/// signed with a TSIG key, as a company's primary or a DNS provider's does: where DNS-01 challenge records go.
public final class AuthoritativeDNS: @unchecked Sendable {
    // @unchecked: the Process is only touched by the test that owns this server, one call at a time.
    public let port: Int
    public let zone: String
    public let keyName = "acme-key"
    /// The key's base64 secret (as `tsig-keygen` prints it).
    public let secret: String
    private var process: Process?
    private let directory: URL

    public init(zone: String) async throws {
        self.zone = zone
        port = try await RedisServer.freePort()
        secret = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("named-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let dir = directory.path
        let config = """
            options {
              directory "\(dir)"; pid-file "\(dir)/named.pid"; session-keyfile "\(dir)/session.key"; managed-keys-directory "\(dir)";
              listen-on port \(port) { 127.0.0.1; }; listen-on-v6 { none; };
              recursion no; dnssec-validation no; notify no;
            };
            controls { };
            key "\(keyName)" { algorithm hmac-sha256; secret "\(secret)"; };
            zone "\(zone)" { type primary; file "\(dir)/zone.db"; allow-update { key "\(keyName)"; }; };
            """
        try Data(config.utf8).write(to: directory.appendingPathComponent("named.conf"))
        let records = """
            $TTL 60
            @ IN SOA ns.\(zone). admin.\(zone). 1 60 60 600 60
            @ IN NS ns.\(zone).
            ns IN A 127.0.0.1

            """
        try Data(records.utf8).write(to: directory.appendingPathComponent("zone.db"))
        let log = directory.appendingPathComponent("named.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/named")
        process.arguments = ["-g", "-n", "1", "-c", directory.appendingPathComponent("named.conf").path]
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            // "running on Linux ..." comes first; the bare "running" once it listens.
            if logText.split(separator: "\n").contains(where: { $0.hasSuffix(" running") }) { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw AuthoritativeDNSFailed(description: "named did not start: \(logText)")
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// `127.0.0.1:PORT`.
    public var address: String { "127.0.0.1:\(port)" }

    public var logText: String { (try? String(contentsOf: directory.appendingPathComponent("named.log"), encoding: .utf8)) ?? "" }

    /// The TXT records of `name` the server answers with now (asked with `dig`), without their quotes, sorted.
    public func txt(_ name: String) throws -> [String] {
        let answer = try PebbleCA.run("/usr/bin/dig", ["+short", "+tcp", "+time=5", "+tries=1", "-p", "\(port)", "@127.0.0.1", name, "TXT"])
        return answer.split(separator: "\n").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }.sorted()
    }

    public func stop() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    public struct AuthoritativeDNSFailed: Error, CustomStringConvertible {
        public let description: String
    }
}
