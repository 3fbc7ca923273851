import Foundation

/// Let's Encrypt's test CA (Debian `pebble`) on 127.0.0.1, owned by one test: a real ACME server whose validation
/// authority fetches HTTP-01 challenges from `httpPort` on 127.0.0.1, every name resolved there by
/// `pebble-challtestsrv`'s mock DNS. Its HTTPS certificate is made for it here (`caFile` verifies it).
public final class PebbleCA: @unchecked Sendable {
    // @unchecked: the processes are only touched by the test that owns this CA, one call at a time.
    public let directoryURL: String
    /// The PEM file the ACME server's own HTTPS certificate chains to.
    public let caFile: String
    public let managementPort: Int
    private var processes: [Process] = []
    private let directory: URL
    private let log: URL

    /// - Parameters:
    ///   - httpPort: where the gateway answers HTTP-01 challenges (its plaintext listener).
    ///   - dnsServer: the DNS server (`127.0.0.1:PORT`) the CA reads DNS-01 challenge records from; nil: a mock that
    ///     resolves every name to 127.0.0.1 (HTTP-01).
    ///   - externalAccountKeys: key id -> base64url MAC key; when given, new accounts must be bound to one (as ZeroSSL
    ///     and Google Trust Services require).
    public init(httpPort: Int, dnsServer: String? = nil, externalAccountKeys: [String: String]? = nil) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pebble-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        log = directory.appendingPathComponent("pebble.log")
        let (acmePort, managementPort, dnsPort, dnsManagementPort, tlsPort) = (
            try await RedisServer.freePort(), try await RedisServer.freePort(), try await RedisServer.freePort(),
            try await RedisServer.freePort(), try await RedisServer.freePort()
        )
        self.managementPort = managementPort
        directoryURL = "https://127.0.0.1:\(acmePort)/dir"
        caFile = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        try Self.run(
            "/usr/bin/openssl",
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", caFile,
             "-days", "2", "-subj", "/CN=pebble", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        let config = directory.appendingPathComponent("pebble-config.json")
        let json = """
            { "pebble": { "listenAddress": "127.0.0.1:\(acmePort)", "managementListenAddress": "127.0.0.1:\(managementPort)",
              "certificate": "\(caFile)", "privateKey": "\(key)", "httpPort": \(httpPort), "tlsPort": \(tlsPort),
              "ocspResponderURL": "", \(Self.externalAccountSettings(externalAccountKeys)) } }
            """
        try Data(json.utf8).write(to: config)
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let output = try FileHandle(forWritingTo: log)
        if dnsServer == nil {
            // Every name resolves to 127.0.0.1 (A); no AAAA answers, so validation never tries ::1.
            try start(
                "/usr/bin/pebble-challtestsrv",
                ["-dns01", "127.0.0.1:\(dnsPort)", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", "127.0.0.1:\(dnsManagementPort)", "-defaultIPv6", ""],
                output: output, environment: [:])
        }
        try start(
            "/usr/bin/pebble", ["-config", config.path, "-dnsserver", dnsServer ?? "127.0.0.1:\(dnsPort)"], output: output,
            environment: ["PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"])
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if (try? Self.run("/usr/bin/curl", ["-sf", "--cacert", caFile, directoryURL])) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw PebbleError("pebble did not start: \(logText)")
    }

    static func externalAccountSettings(_ keys: [String: String]?) -> String {
        guard let keys else { return #""externalAccountBindingRequired": false"# }
        let listed = keys.sorted { $0.key < $1.key }.map { #""\#($0.key)": "\#($0.value)""# }.joined(separator: ", ")
        return #""externalAccountBindingRequired": true, "externalAccountMACKeys": { \#(listed) }"#
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// What pebble and its DNS wrote (for a failing test's message).
    public var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    public func stop() {
        for process in processes where process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        processes = []
    }

    private func start(_ binary: String, _ arguments: [String], output: FileHandle, environment: [String: String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        processes.append(process)
    }

    @discardableResult
    static func run(_ binary: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw PebbleError("\(binary) \(arguments.joined(separator: " ")) failed") }
        return String(decoding: data, as: UTF8.self)
    }
}

public struct PebbleError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
