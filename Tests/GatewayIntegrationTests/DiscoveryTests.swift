import DemoUpstream
import Foundation
import GatewayApp
import GatewayConfig
import GatewayCore
import Logging
import NIOConcurrencyHelpers
import Testing

/// A resolver whose answers the test sets (so no query leaves the machine): a name's addresses, or a failure.
final class ScriptedResolver: HostResolver {
    struct NotFound: Error {}
    let answers = NIOLockedValueBox<[String: [String]]>([:])
    let lookups = NIOLockedValueBox<Int>(0)

    func addresses(of host: String) async throws -> [String] {
        lookups.withLockedValue { $0 += 1 }
        guard let addresses = answers.withLockedValue({ $0[host] }) else { throw NotFound() }
        return addresses
    }
}

/// `dns_refresh_ms`: upstream host names resolved in the background, each address its own target.
@Suite struct DiscoveryTests {
    static func config(port: Int) -> String {
        """
        { "workers": 1,
          "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
          "upstreams": { "orders": { "targets": ["http://orders.internal:\(port)"], "dns_refresh_ms": 100 } },
          "routes": [{ "name": "all", "upstream": "orders", "preserve_host": false }] }
        """
    }

    static func targets(_ gateway: Gateway) -> [String] { gateway.upstreams.targetStates().map(\.target).sorted() }

    /// Waits (up to 5 s) until the upstream's targets are `expected`.
    static func waitForTargets(_ gateway: Gateway, _ expected: [String]) async throws -> [String] {
        for _ in 0..<100 where targets(gateway) != expected {
            try await Task.sleep(for: .milliseconds(50))
        }
        return targets(gateway)
    }

    // The name's address is where connections go, while the Host the upstream sees keeps the name; a new answer
    // adds or removes targets without a reload, and a failed lookup keeps the last addresses.
    @Test(.timeLimit(.minutes(1))) func addressesFollowDNS() async throws {
        try await withUpstreams { upstreams in
            let port = upstreams[0].port
            let resolver = ScriptedResolver()
            resolver.answers.withLockedValue { $0["orders.internal"] = ["127.0.0.1"] }
            let config = try makeConfig(Self.config(port: port))
            let logs = LogCapture()
            let sink = logs.sink
            let logger = Logger(label: "gateway") { label in JSONLogHandler(label: label, level: .info, sink: sink) }
            let gateway = try await Gateway.start(config: config, logger: logger, resolver: resolver)
            let client = TestGateway(gateway: gateway, logs: logs)

            #expect(Self.targets(gateway) == ["127.0.0.1:\(port)"])
            let response = try await client.request("GET", "/echo")
            #expect(response.status == 200)
            #expect(response.echoedHeaders["host"] == "orders.internal:\(port)", "Host keeps the name")
            let entry = try await client.accessLog(for: response)
            #expect(entry["upstream"] as? String == "127.0.0.1:\(port)", "logs name the address")

            // A second address (TEST-NET-1: never contacted here, no request is sent while it is listed).
            resolver.answers.withLockedValue { $0["orders.internal"] = ["192.0.2.10", "127.0.0.1"] }
            let grown = try await Self.waitForTargets(gateway, ["127.0.0.1:\(port)", "192.0.2.10:\(port)"])
            #expect(grown == ["127.0.0.1:\(port)", "192.0.2.10:\(port)"])
            let hosts = gateway.config.upstreams[0].targets.map(\.host)
            #expect(hosts == ["orders.internal", "orders.internal"], "each address keeps the name for Host and TLS")

            // The name stops resolving: the last addresses stay.
            resolver.answers.withLockedValue { $0["orders.internal"] = nil }
            let failedLookups = resolver.lookups.withLockedValue { $0 }
            for _ in 0..<100 where resolver.lookups.withLockedValue({ $0 }) < failedLookups + 3 {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(Self.targets(gateway) == grown)
            #expect(logs.entries("DNS resolution failed").count == 1, "logged once until it resolves again")

            resolver.answers.withLockedValue { $0["orders.internal"] = ["127.0.0.1"] }
            let shrunk = try await Self.waitForTargets(gateway, ["127.0.0.1:\(port)"])
            #expect(shrunk == ["127.0.0.1:\(port)"])
            #expect(try await client.request("GET", "/echo").status == 200)
            await gateway.shutdown()
        }
    }

    // The system resolver reads /etc/hosts like any program (no query leaves the machine for localhost).
    @Test func systemResolverFindsLocalhost() async throws {
        let addresses = try await SystemResolver().addresses(of: "localhost")
        #expect(addresses.contains("127.0.0.1"))
    }
}
