import DemoUpstream
import NIOConcurrencyHelpers
import Foundation
import GatewayApp
import GatewayConfig
import GatewayCore
import Logging
import Synchronization
import Testing

/// Log lines written by an in-process gateway, kept for assertions.
final class LogCapture: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])

    var sink: JSONLogHandler.Sink {
        JSONLogHandler.Sink { [self] line in self.lines.withLockedValue { $0.append(line) } }
    }

    var all: [String] { lines.withLockedValue { $0 } }

    /// Parsed JSON objects of every line whose msg is `message`.
    func entries(_ message: String) -> [[String: Any]] {
        all.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }.filter { $0["msg"] as? String == message }
    }

    /// Waits briefly for an access-log line for `requestID` (it is written when the exchange completes).
    func accessEntry(requestID: String, timeout: Duration = .seconds(5)) async -> [String: Any]? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let entry = entries("request").first(where: { $0["request_id"] as? String == requestID }) { return entry }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}

/// A gateway started in-process on an ephemeral port in front of real upstreams on 127.0.0.1.
struct TestGateway {
    let gateway: Gateway
    let logs: LogCapture
    var port: Int { gateway.listeners[0].port }

    func connect() async throws -> RawClient { try await RawClient.connect(port: port) }

    /// Sends one request on a fresh connection (to the first listener, or the one named) and reads the response.
    func request(
        _ method: String = "GET", _ target: String, headers: [(String, String)] = [], body: String? = nil,
        timeout: Duration = TestTime.seconds(10), listener: String? = nil
    ) async throws -> TestResponse {
        let client = try await RawClient.connect(port: listener.flatMap { gateway.port(of: $0) } ?? port)
        var text = "\(method) \(target) HTTP/1.1\r\nHost: test.local\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        do {
            try await client.send(text)
            let response = try await client.readResponse(head: method == "HEAD", timeout: timeout)
            await client.close()
            return response
        } catch {
            await client.close()
            throw error
        }
    }

    /// The access-log line of the request that produced `response` (matched by its X-Request-ID).
    func accessLog(for response: TestResponse) async throws -> [String: Any] {
        let id = try #require(response.header("x-request-id"))
        return try #require(await logs.accessEntry(requestID: id))
    }
}

/// Builds a config from JSON where `$UP0`, `$UP1`, ... stand for the upstreams' ports and the first
/// listener binds an ephemeral port.
func makeConfig(_ json: String, upstreams: [DemoUpstream] = []) throws -> GatewayConfig {
    var text = json
    for (index, upstream) in upstreams.enumerated().reversed() {
        text = text.replacingOccurrences(of: "$UP\(index)", with: String(upstream.port))
    }
    let result = ConfigLoader.load(text: text, environment: [:])
    guard let config = result.config else {
        Issue.record("test config invalid: \(result.errors)")
        throw ConfigInvalid()
    }
    return config
}

struct ConfigInvalid: Error {}

/// Runs `body` against a gateway built from `json`, then stops it.
func withGateway<T>(
    _ json: String, upstreams: [DemoUpstream] = [], _ body: (TestGateway) async throws -> T
) async throws -> T {
    let config = try makeConfig(json, upstreams: upstreams)
    let logs = LogCapture()
    let sink = logs.sink
    let logger = Logger(label: "gateway") { label in JSONLogHandler(label: label, level: .info, sink: sink) }
    let gateway = try await Gateway.start(config: config, logger: logger)
    do {
        let result = try await body(TestGateway(gateway: gateway, logs: logs))
        await gateway.shutdown()
        return result
    } catch {
        await gateway.shutdown()
        throw error
    }
}

/// Runs `body` with fresh demo upstreams named a, b, ...
func withUpstreams<T>(_ count: Int = 1, _ body: ([DemoUpstream]) async throws -> T) async throws -> T {
    var upstreams: [DemoUpstream] = []
    for index in 0..<count {
        upstreams.append(try await DemoUpstream.start(name: String(UnicodeScalar(UInt8(97 + index)))))
    }
    defer { for upstream in upstreams { Task { await upstream.shutdown() } } }
    return try await body(upstreams)
}

/// A minimal config: one listener, upstream "demo" on the given targets, one catch-all route.
func basicConfig(
    targets: String = #""http://127.0.0.1:$UP0""#, routes: String? = nil, limits: String = "{}",
    upstreamExtra: String = "", top: String = ""
) -> String {
    """
    {
      "workers": 1,
      \(top)
      "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
      "limits": \(limits),
      "upstreams": { "demo": { "targets": [\(targets)] \(upstreamExtra) } },
      "routes": \(routes ?? #"[{ "name": "all", "upstream": "demo" }]"#)
    }
    """
}

/// Time in tests that configure short timeouts. Sanitized builds run several times slower, so their runs
/// (`make sanitize`) set GATEWAY_TEST_TIME_SCALE: the timeouts a test configures and the waits that go with
/// them stretch alike, and what the test proves stays the same. 1 in ordinary runs.
enum TestTime {
    static let scale: Int = max(1, Int(ProcessInfo.processInfo.environment["GATEWAY_TEST_TIME_SCALE"] ?? "") ?? 1)
    /// The sanitizer the tests run under ("address", "thread"), if any.
    static let sanitizer: String? = ProcessInfo.processInfo.environment["GATEWAY_TEST_SANITIZER"]

    static func ms(_ milliseconds: Int) -> Int { milliseconds * scale }
    static func duration(ms milliseconds: Int) -> Duration { .milliseconds(milliseconds * scale) }
    static func seconds(_ seconds: Int) -> Duration { .seconds(seconds * scale) }
}
