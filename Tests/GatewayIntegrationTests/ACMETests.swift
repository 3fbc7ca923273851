import Foundation
import GatewayApp
import Testing
import TestSupport

/// `acme` against Let's Encrypt's test CA (pebble) on 127.0.0.1: a real ACME server that validates HTTP-01 challenges
/// by fetching them from the gateway's plaintext listener.
@Suite struct ACMETests {
    // The TLS listener starts with a placeholder; the gateway answers the CA's HTTP-01 challenges (the CA resolves both
    // names to 127.0.0.1 and fetches them from the plaintext listener), and the issued chain is served without a
    // restart. A second start uses the stored certificate and asks the CA for nothing (it is not even running).
    @Test(.timeLimit(.minutes(2))) func certificateFromTheCA() async throws {
        let httpPort = try await RedisServer.freePort()
        let pebble = try await PebbleCA(httpPort: httpPort)
        let storage = FileManager.default.temporaryDirectory.appendingPathComponent("acme-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: storage) }
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1, "admin": { "address": "127.0.0.1", "port": 0 },
                  "listeners": [{ "name": "http", "address": "127.0.0.1", "port": \(httpPort), "redirect_https_port": 443 },
                                { "name": "https", "address": "127.0.0.1", "port": 0,
                                  "tls": { "certificates": [{ "acme": true, "server_names": ["api.gateway.test", "www.gateway.test"] }] } }],
                  "acme": { "directory_url": "\(pebble.directoryURL)", "ca_file": "\(pebble.caFile)", "storage": "\(storage)",
                            "email": "ops@gateway.test", "agree_to_terms": true },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:$UP0"] } },
                  "routes": [{ "name": "all", "upstream": "demo" }] }
                """
            func served(_ port: Int) async throws -> String {
                let script = "echo | openssl s_client -connect 127.0.0.1:\(port) -servername api.gateway.test 2>/dev/null"
                    + " | openssl x509 -noout -issuer -ext subjectAltName 2>/dev/null"
                return try await shell(script, timeout: .seconds(10)).stdout
            }
            try await withGateway(config, upstreams: upstreams) { gateway in
                let tlsPort = gateway.gateway.listeners[1].port
                let issued = try await OperationsTests.poll(until: true) { try await served(tlsPort).contains("Pebble") }
                let certificate = try await served(tlsPort)
                #expect(issued, "\(certificate)\n\(pebble.logText)\n\(gateway.logs.entries("acme: certificate request failed; the current certificate stays"))")
                #expect(certificate.contains("DNS:api.gateway.test") && certificate.contains("DNS:www.gateway.test"), "\(certificate)")
                #expect(gateway.logs.entries("acme: certificate issued").count == 1)
                // The admin API says what is served now.
                let listed = try await OperationsTests.admin(gateway.gateway, "/certificates", token: nil).json["certificates"] as? [[String: Any]]
                let entry = try #require(listed?.first)
                #expect(listed?.count == 1 && entry["listener"] as? String == "https" && entry["acme"] as? Bool == true)
                #expect(entry["names"] as? [String] == ["api.gateway.test", "www.gateway.test"])
                #expect((entry["issuer"] as? String)?.contains("Pebble Intermediate CA") == true, "\(entry)")
                #expect((entry["not_after_seconds"] as? Int ?? 0) > Int(Date().timeIntervalSince1970) + 86400)
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_acme_orders_total", ["outcome": "issued"]) == 1)
                #expect(metrics.value("gateway_acme_orders_total", ["outcome": "failed"]) == nil)
                // Traffic over the new certificate (its CA is not the system's: -k).
                let response = try await shell(
                    "curl -sk --resolve api.gateway.test:\(tlsPort):127.0.0.1 https://api.gateway.test:\(tlsPort)/echo -o /dev/null -w '%{http_code}'")
                #expect(response.stdout == "200")
                // The challenge path answers only open challenges; other requests there follow the listener's rules.
                let stale = try await gateway.request("GET", "/.well-known/acme-challenge/none")
                #expect(stale.status == 308)
            }
            let keyMode = try FileManager.default.attributesOfItem(atPath: storage + "/api.gateway.test/key.pem")[.posixPermissions] as? Int
            #expect(keyMode == 0o600)

            pebble.stop()
            try await withGateway(config, upstreams: upstreams) { gateway in
                let certificate = try await served(gateway.gateway.listeners[1].port)
                #expect(certificate.contains("Pebble"), "the stored certificate: \(certificate)")
                try await Task.sleep(for: .milliseconds(300))
                #expect(gateway.logs.entries("acme: requesting a certificate").isEmpty)
            }
        }
    }

    // acme.dns_update: a wildcard certificate. The gateway proves both names with DNS-01 challenges whose TXT records it
    // puts in the zone on BIND by signed updates; the CA reads them there (no listener on port 80 at all), and the
    // records are gone once the names are proven.
    @Test(.timeLimit(.minutes(2))) func wildcardCertificateThroughDNS() async throws {
        let named = try await AuthoritativeDNS(zone: "gateway.test")
        let pebble = try await PebbleCA(httpPort: try await RedisServer.freePort(), dnsServer: named.address)
        let storage = FileManager.default.temporaryDirectory.appendingPathComponent("acme-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: storage) }
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1,
                  "listeners": [{ "name": "https", "address": "127.0.0.1", "port": 0,
                                  "tls": { "certificates": [{ "acme": true, "server_names": ["*.gateway.test", "gateway.test"] }] } }],
                  "acme": { "directory_url": "\(pebble.directoryURL)", "ca_file": "\(pebble.caFile)", "storage": "\(storage)",
                            "agree_to_terms": true,
                            "dns_update": { "server": "\(named.address)", "zone": "gateway.test", "propagation_seconds": 0,
                                            "tsig_key": { "name": "\(named.keyName)", "secret": "\(named.secret)" } } },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:$UP0"] } },
                  "routes": [{ "name": "all", "upstream": "demo" }] }
                """
            func served(_ port: Int, name: String) async throws -> String {
                let script = "echo | openssl s_client -connect 127.0.0.1:\(port) -servername \(name) 2>/dev/null"
                    + " | openssl x509 -noout -issuer -ext subjectAltName 2>/dev/null"
                return try await shell(script, timeout: .seconds(10)).stdout
            }
            try await withGateway(config, upstreams: upstreams) { gateway in
                let port = gateway.gateway.listeners[0].port
                let issued = try await OperationsTests.poll(until: true) { try await served(port, name: "api.gateway.test").contains("Pebble") }
                let certificate = try await served(port, name: "api.gateway.test")
                #expect(issued, "\(certificate)\n\(pebble.logText)\n\(gateway.logs.entries("acme: certificate request failed; the current certificate stays"))")
                #expect(certificate.contains("DNS:*.gateway.test") && certificate.contains("DNS:gateway.test"), "\(certificate)")
                let other = try await served(port, name: "www.gateway.test")
                #expect(other.contains("Pebble"), "the wildcard serves every name under it: \(other)")
                #expect(try named.txt("_acme-challenge.gateway.test").isEmpty, "challenge records withdrawn")
                #expect(named.logText.contains("updating zone 'gateway.test/IN': adding an RR at '_acme-challenge.gateway.test' TXT"), "\(named.logText)")
            }
        }
    }

    // acme.external_account_binding: a CA that requires EAB (as ZeroSSL and Google Trust Services do) refuses an account
    // without one, saying so in the log; with the key id and MAC key it hands out, the account is made and the certificate
    // issued. The MAC key is never shown by /config.
    @Test(.timeLimit(.minutes(2))) func externalAccountBinding() async throws {
        let httpPort = try await RedisServer.freePort()
        let macKey = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
        let pebble = try await PebbleCA(httpPort: httpPort, externalAccountKeys: ["kid-1": macKey])
        let storage = FileManager.default.temporaryDirectory.appendingPathComponent("acme-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: storage) }
        func config(binding: String) -> String {
            """
            { "workers": 1, "admin": { "address": "127.0.0.1", "port": 0 },
              "listeners": [{ "name": "http", "address": "127.0.0.1", "port": \(httpPort) },
                            { "name": "https", "address": "127.0.0.1", "port": 0,
                              "tls": { "certificates": [{ "acme": true, "server_names": ["eab.gateway.test"] }] } }],
              "acme": { "directory_url": "\(pebble.directoryURL)", "ca_file": "\(pebble.caFile)", "storage": "\(storage)",
                        "agree_to_terms": true \(binding) },
              "upstreams": { "demo": { "targets": ["http://127.0.0.1:$UP0"] } },
              "routes": [{ "name": "all", "upstream": "demo" }] }
            """
        }
        try await withUpstreams { upstreams in
            try await withGateway(config(binding: ""), upstreams: upstreams) { gateway in
                let refused = try await OperationsTests.poll(until: true) { !gateway.logs.entries("acme: certificate request failed; the current certificate stays").isEmpty }
                let failure = "\(gateway.logs.entries("acme: certificate request failed; the current certificate stays"))"
                #expect(refused && failure.contains("externalAccountRequired"), "\(failure)")
            }
            let binding = #", "external_account_binding": { "key_id": "kid-1", "hmac_key": "\#(macKey)" }"#
            try await withGateway(config(binding: binding), upstreams: upstreams) { gateway in
                let issued = try await OperationsTests.poll(until: true) { !gateway.logs.entries("acme: certificate issued").isEmpty }
                #expect(issued, "\(gateway.logs.entries("acme: certificate request failed; the current certificate stays"))\n\(pebble.logText.suffix(2000))")
                let shown = try await OperationsTests.admin(gateway.gateway, "/config", token: nil).text
                #expect(!shown.contains(macKey) && shown.contains("kid-1"), "the MAC key is redacted")
            }
        }
    }

    // acme.store "redis": instances behind one balancer are one ACME account and order each certificate once. Two
    // instances start wanting the same certificate; one orders it (holding the lock), the other waits and takes it from
    // Redis, so both serve the very same certificate. Neither is where the CA looks: a third instance, which wants no
    // certificate itself, answers the challenges from Redis. Later a new instance with empty storage serves the shared
    // certificate with the CA stopped.
    @Test(.timeLimit(.minutes(2))) func certificateSharedThroughRedis() async throws {
        let redis = try await RedisServer()
        let httpPort = try await RedisServer.freePort()
        let pebble = try await PebbleCA(httpPort: httpPort)
        let folders = (0..<4).map { FileManager.default.temporaryDirectory.appendingPathComponent("acme-\($0)-\(UUID().uuidString)").path }
        defer { for folder in folders { try? FileManager.default.removeItem(atPath: folder) } }
        func config(storage: String, listeners: String) -> String {
            """
            { "workers": 1, "admin": { "address": "127.0.0.1", "port": 0 }, "listeners": [\(listeners)],
              "redis": { "url": "\(redis.url)", "timeout_ms": \(TestTime.ms(1000)) },
              "acme": { "directory_url": "\(pebble.directoryURL)", "ca_file": "\(pebble.caFile)", "storage": "\(storage)",
                        "agree_to_terms": true, "store": "redis" },
              "upstreams": { "demo": { "targets": ["http://127.0.0.1:$UP0"] } },
              "routes": [{ "name": "all", "upstream": "demo" }] }
            """
        }
        let wanting = #"{ "name": "https", "address": "127.0.0.1", "port": 0, "tls": { "certificates": [{ "acme": true, "server_names": ["shared.gateway.test"] }] } }"#
        func served(_ port: Int) async throws -> String {
            let script = "echo | openssl s_client -connect 127.0.0.1:\(port) -servername shared.gateway.test 2>/dev/null"
                + " | openssl x509 -noout -issuer -fingerprint -sha256 2>/dev/null"
            return try await shell(script, timeout: .seconds(10)).stdout
        }
        func orders(_ gateway: TestGateway) async throws -> Double {
            PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                .value("gateway_acme_orders_total", ["outcome": "issued"]) ?? 0
        }
        try await withUpstreams { upstreams in
            let answering = #"{ "name": "http", "address": "127.0.0.1", "port": \#(httpPort) }"#
            let shared = try await withGateway(config(storage: folders[0], listeners: answering), upstreams: upstreams) { answerer in
                try await withGateway(config(storage: folders[1], listeners: wanting), upstreams: upstreams) { first in
                    try await withGateway(config(storage: folders[2], listeners: wanting), upstreams: upstreams) { second in
                        let ports = [first.gateway.listeners[0].port, second.gateway.listeners[0].port]
                        let both = try await OperationsTests.poll(until: true) {
                            let (a, b) = (try await served(ports[0]), try await served(ports[1]))
                            return a.contains("Pebble") && a == b
                        }
                        let certificates = [try await served(ports[0]), try await served(ports[1])]
                        #expect(both, "\(certificates)\n\(first.logs.entries("acme:"))\n\(second.logs.entries("acme:"))\n\(pebble.logText)")
                        let counts = [try await orders(first), try await orders(second)]
                        #expect(counts.sorted() == [0, 1], "one order for both instances: \(counts)")
                        let adopter = counts[0] == 0 ? first : second
                        #expect(adopter.logs.entries("acme: certificate taken from the shared store").count == 1)
                        #expect(adopter.logs.entries("acme: requesting a certificate").isEmpty)
                        #expect(answerer.logs.entries("acme: requesting a certificate").isEmpty)
                        // The lock is released and the challenges withdrawn; the account key is shared.
                        let keys = try await redis.command(["KEYS", "gw:acme:*"])
                        #expect(keys.contains("gw:acme:account") && keys.contains("gw:acme:certificate:shared.gateway.test@"), "\(keys)")
                        #expect(!keys.contains("gw:acme:lock") && !keys.contains("gw:acme:challenge"), "\(keys)")
                        let accounts = Set([folders[1], folders[2]].map { try? String(contentsOfFile: $0 + "/account-key.pem", encoding: .utf8) })
                        #expect(accounts.count == 1, "both instances use the account the first one published")
                        return certificates[0]
                    }
                }
            }
            pebble.stop()
            try await withGateway(config(storage: folders[3], listeners: wanting), upstreams: upstreams) { late in
                let port = late.gateway.listeners[0].port
                let adopted = try await OperationsTests.poll(until: true) { try await served(port) == shared }
                #expect(adopted, "\(shared)\n\(late.logs.entries("acme:"))")
                #expect(late.logs.entries("acme: requesting a certificate").isEmpty)
                #expect(late.logs.entries("acme: certificate taken from the shared store").count == 1)
                // Any listener answers a challenge another instance opened; with Redis gone the path is routed as usual.
                _ = try await redis.command(["SET", "gw:acme:challenge:tok_123", "tok_123.thumbprint"])
                let challenge = "curl -sk --max-time 5 --resolve shared.gateway.test:\(port):127.0.0.1 https://shared.gateway.test:\(port)/.well-known/acme-challenge/tok_123"
                let answered = try await shell(challenge + " -w ' %{http_code}'").stdout
                #expect(answered == "tok_123.thumbprint 200", "\(answered)")
                redis.kill()
                let routed = try await shell(challenge).stdout
                #expect(routed.contains("\"path\":\"/.well-known/acme-challenge/tok_123\""), "the demo upstream's echo: \(routed)")
            }
        }
    }
}
