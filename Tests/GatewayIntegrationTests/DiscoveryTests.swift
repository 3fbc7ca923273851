import DemoUpstream
import Foundation
import GatewayApp
import GatewayConfig
import GatewayCore
import Logging
import NIOConcurrencyHelpers
import Testing
import TestSupport

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

    // SRV discovery at a DNS server of the config's (as Consul's on 127.0.0.1:8600): each instance is a target with
    // its own port and weight, Host names the instance; the lowest priority takes requests and higher ones are backups.
    // A new answer re-shapes the targets without a reload; a dead server keeps the last instances.
    @Test(.timeLimit(.minutes(1))) func serviceInstancesFromSRVRecords() async throws {
        try await withUpstreams(2) { upstreams in
            let (first, second) = (upstreams[0].port, upstreams[1].port)
            let hosts = ["app1.shop.test": "127.0.0.1", "app2.shop.test": "127.0.0.1"]
            let dns = try await DNSServer(
                services: [.init("_web._tcp.shop.test", target: "app1.shop.test", port: first), .init("_web._tcp.shop.test", target: "app2.shop.test", port: second)],
                hosts: hosts)
            let config = """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "shop": { "targets": ["http://_web._tcp.shop.test"], "dns_refresh_ms": 100, "dns_server": "\(dns.address)" } },
                  "routes": [{ "name": "all", "upstream": "shop", "preserve_host": false }] }
                """
            try await withGateway(config) { gateway in
                let both = ["127.0.0.1:\(first)", "127.0.0.1:\(second)"].sorted()
                #expect(Self.targets(gateway.gateway) == both, "\(gateway.logs.entries("DNS"))")
                var hostsSeen: Set<String> = []
                for _ in 0..<4 { hostsSeen.insert(try await gateway.request("GET", "/echo").echoedHeaders["host"] ?? "") }
                #expect(hostsSeen == ["app1.shop.test:\(first)", "app2.shop.test:\(second)"], "round robin over both; Host names the instance")
                #expect(upstreams[0].requestsServed == 2 && upstreams[1].requestsServed == 2)
                #expect(gateway.logs.entries("upstream instances").count == 1)

                // app2 moves to priority 1: a backup, which takes nothing while app1 answers.
                try await dns.serve(
                    services: [
                        .init("_web._tcp.shop.test", target: "app1.shop.test", port: first),
                        .init("_web._tcp.shop.test", target: "app2.shop.test", port: second, priority: 1),
                    ],
                    hosts: hosts)
                var backup = false
                for _ in 0..<100 where !backup {
                    backup = gateway.gateway.config.upstreams[0].targets.contains { $0.port == second && $0.backup }
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(backup, "\(gateway.gateway.config.upstreams[0].targets)")
                for _ in 0..<4 { _ = try await gateway.request("GET", "/echo") }
                #expect(upstreams[0].requestsServed == 6 && upstreams[1].requestsServed == 2)

                // The server dies: the instances stay, and the outage is logged once, however many refreshes fail.
                // (Counted against the recoveries: on a slow machine, as under a sanitizer, a refresh may time out
                // while the server still runs, which is an outage and a recovery of its own.)
                dns.stop()
                let outages = { (failed: gateway.logs.entries("DNS resolution failed").count, recovered: gateway.logs.entries("DNS resolves again").count) }
                for _ in 0..<200 where outages().failed <= outages().recovered {
                    try await Task.sleep(for: .milliseconds(25))
                }
                try await Task.sleep(for: .milliseconds(300))  // a few more failed refreshes
                #expect(Self.targets(gateway.gateway) == both)
                #expect(try await gateway.request("GET", "/echo").status == 200)
                let (failed, recovered) = outages()
                #expect(failed == recovered + 1, "\(gateway.logs.entries("DNS"))")
            }
        }
    }

    // The system resolver reads /etc/hosts like any program (no query leaves the machine for localhost).
    @Test func systemResolverFindsLocalhost() async throws {
        let addresses = try await SystemResolver().addresses(of: "localhost")
        #expect(addresses.contains("127.0.0.1"))
    }
}
