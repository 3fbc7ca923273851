import DemoUpstream
import Foundation
import GatewayApp
import GatewayConfig
import GatewayCore
import Logging
import Testing
import TestSupport

/// Operating the gateway: Prometheus metrics, the admin API, hot reload, trace context and graceful drain.
@Suite struct OperationsTests {
    static let adminToken = "admin-secret-for-tests"
    /// sha256("demo-key-not-for-production"), the key in examples/auth.json.
    static let demoKeyHash = "921b2420e0ad6a6e53d96f07f636bfed8e57f0bdc92abeb3173ec00ff4385bc6"

    /// One admin call on a fresh connection.
    static func admin(_ gateway: Gateway, _ path: String, method: String = "GET", token: String? = adminToken) async throws -> TestResponse {
        let port = try #require(gateway.adminPort)
        var text = "\(method) \(path) HTTP/1.1\r\nHost: admin\r\n"
        if let token { text += "Authorization: Bearer \(token)\r\n" }
        return try await exchange(port: port, text + "\r\n")
    }

    static func get(_ port: Int, _ path: String, headers: String = "") async throws -> TestResponse {
        try await exchange(port: port, "GET \(path) HTTP/1.1\r\nHost: test.local\r\n\(headers)\r\n")
    }

    /// Asks `probe` every 50 ms until it answers `expected` or `timeout` (10 s) passes (a watched file's change lands
    /// within a poll interval); returns the last answer.
    static func poll<T: Equatable>(until expected: T, timeout: Duration = .seconds(10), _ probe: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        var answer = try await probe()
        while answer != expected && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            answer = try await probe()
        }
        return answer
    }

    static func exchange(port: Int, _ request: String) async throws -> TestResponse {
        let client = try await RawClient.connect(port: port)
        do {
            try await client.send(request)
            let response = try await client.readResponse()
            await client.close()
            return response
        } catch {
            await client.close()
            throw error
        }
    }

    /// A gateway started from a config file (so reloads have something to read), stopped after `body`.
    static func withFileGateway<T>(
        _ json: String, upstreams: [DemoUpstream], _ body: (Gateway, ConfigFile, LogCapture) async throws -> T
    ) async throws -> T {
        let file = try ConfigFile(json, upstreams: upstreams)
        defer { file.remove() }
        let config = try makeConfig(json, upstreams: upstreams)
        let logs = LogCapture()
        let sink = logs.sink
        let logger = Logger(label: "gateway") { label in JSONLogHandler(label: label, level: .info, sink: sink) }
        let gateway = try await Gateway.start(config: config, logger: logger, configPath: file.path)
        do {
            let result = try await body(gateway, file, logs)
            await gateway.shutdown()
            return result
        } catch {
            await gateway.shutdown()
            throw error
        }
    }

    static func config(routes: String, top: String = "", listeners: String = "") -> String {
        """
        { "workers": 1,
          "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 } \(listeners)],
          "admin": { "address": "127.0.0.1", "port": 0, "token": "\(adminToken)" },
          \(top)
          "upstreams": { "a": { "targets": ["http://127.0.0.1:$UP0"], "circuit_breaker": { "failure_threshold": 5 } }, "b": { "targets": ["http://127.0.0.1:$UP1"] } },
          "routes": \(routes) }
        """
    }

    // After known traffic, /metrics shows exactly those counts: requests by route, method and status class,
    // durations, upstream calls per target, rate-limit decisions, auth failures, open connections.
    @Test func metricsCountTraffic() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(
                routes: #"""
                    [{ "name": "limited", "match": { "path_prefix": "/limited" }, "upstream": "a",
                       "rate_limits": [{ "name": "burst", "algorithm": "token_bucket", "key": "route", "capacity": 2, "refill_per_second": 0.001 }] },
                     { "name": "secure", "match": { "path_prefix": "/secure" }, "upstream": "a", "auth": { "require": ["api_key"] } },
                     { "name": "api", "match": { "path_prefix": "/api" }, "strip_prefix": "/api", "upstream": "a" }]
                    """#,
                top: #""auth": { "api_keys": [{ "id": "demo", "sha256": "\#(Self.demoKeyHash)" }] },"#)
            try await withGateway(json, upstreams: upstreams) { test in
                var apiResponses: [TestResponse] = []
                for _ in 0..<3 { apiResponses.append(try await test.request("GET", "/api/echo")) }
                apiResponses.append(try await test.request("GET", "/api/status/503"))
                apiResponses.append(try await test.request("POST", "/api/echo", body: "x"))
                #expect(apiResponses.map(\.status) == [200, 200, 200, 503, 200])
                let apiBodyBytes = apiResponses.reduce(0) { $0 + $1.body.count }
                #expect(try await test.request("GET", "/nowhere").status == 404)
                let limited = [try await test.request("GET", "/limited/1"), try await test.request("GET", "/limited/2"), try await test.request("GET", "/limited/3")]
                #expect(limited.map(\.status) == [200, 200, 429])
                #expect(try await test.request("GET", "/secure/x").status == 401)
                #expect(try await test.request("GET", "/secure/x", headers: [("X-API-Key", "demo-key-not-for-production")]).status == 200)
                let held = try await test.connect()  // one connection stays open during the scrape

                let scrape = try await Self.admin(test.gateway, "/metrics")
                #expect(scrape.status == 200)
                #expect(scrape.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
                let metrics = PrometheusText(scrape.text)
                #expect(metrics.value("gateway_requests_total", ["route": "api", "method": "GET", "status_class": "2xx"]) == 3)
                #expect(metrics.value("gateway_requests_total", ["route": "api", "method": "GET", "status_class": "5xx"]) == 1)
                #expect(metrics.value("gateway_requests_total", ["route": "api", "method": "POST", "status_class": "2xx"]) == 1)
                #expect(metrics.value("gateway_requests_total", ["route": "-", "method": "GET", "status_class": "4xx"]) == 1)
                #expect(metrics.value("gateway_requests_total", ["route": "limited", "method": "GET", "status_class": "4xx"]) == 1)
                #expect(metrics.value("gateway_request_duration_seconds_count", ["route": "api"]) == 5)
                #expect(metrics.value("gateway_request_body_bytes_total", ["route": "api"]) == 1)
                #expect(metrics.value("gateway_response_body_bytes_total", ["route": "api"]) == Double(apiBodyBytes))
                #expect(metrics.value("gateway_request_duration_seconds_bucket", ["route": "api", "le": "+Inf"]) == 5)
                #expect(scrape.text.components(separatedBy: "# TYPE gateway_request_duration_seconds histogram\n").count == 2)
                let target = "127.0.0.1:\(upstreams[0].port)"
                // 5 on /api, 2 admitted on /limited, 1 admitted on /secure.
                #expect(metrics.value("gateway_upstream_request_duration_seconds_count", ["upstream": "a", "target": target]) == 8)
                #expect(metrics.value("gateway_rate_limit_decisions_total", ["route": "limited", "limit": "burst", "outcome": "allowed"]) == 2)
                #expect(metrics.value("gateway_rate_limit_decisions_total", ["route": "limited", "limit": "burst", "outcome": "limited"]) == 1)
                #expect(metrics.value("gateway_auth_failures_total", ["route": "secure", "reason": "missing_credentials"]) == 1)
                #expect(metrics.value("gateway_circuit_breaker_state", ["upstream": "a", "target": target]) == 0)
                // The held connection and the admin's own connection do not count: the admin API is not a listener.
                #expect(metrics.value("gateway_active_connections", ["listener": "test"]) == 1)
                #expect(metrics.value("gateway_connections_total", ["listener": "test"]) == 12)
                await held.close()
            }
        }
    }

    // Upstream connections in /metrics and /upstreams: sequential requests share one keep-alive connection (opened
    // stays 1), a request under way counts in flight, and a connection the pool closes when idle leaves the open count.
    @Test func upstreamConnectionMetrics() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(routes: #"[{ "name": "api", "upstream": "a" }]"#)
                .replacingOccurrences(
                    of: #""circuit_breaker": { "failure_threshold": 5 } }"#, with: #""pool": { "idle_timeout_ms": \#(TestTime.ms(400)) } }"#)
            try await withGateway(json, upstreams: upstreams) { test in
                let (a, b) = ("127.0.0.1:\(upstreams[0].port)", "127.0.0.1:\(upstreams[1].port)")
                func value(_ name: String, _ target: String) async throws -> Double? {
                    let upstream = target == a ? "a" : "b"
                    return PrometheusText(try await Self.admin(test.gateway, "/metrics").text).value(name, ["upstream": upstream, "target": target])
                }
                var statuses: [Int] = []
                for _ in 0..<5 { statuses.append(try await test.request("GET", "/echo").status) }
                #expect(statuses == [200, 200, 200, 200, 200])
                let opened = try await value("gateway_upstream_connections_opened_total", a)
                let open = try await value("gateway_upstream_connections", a)
                let idleInFlight = try await value("gateway_upstream_requests_in_flight", a)
                #expect(opened == 1 && open == 1 && idleInFlight == 0, "keep-alive: one connection for five requests")
                let untouched = try await value("gateway_upstream_connections_opened_total", b)
                #expect(untouched == 0)

                let slow = Task { try await test.request("GET", "/slow?ms=\(TestTime.ms(1000))") }
                let busy = try await Self.poll(until: 1) { try await value("gateway_upstream_requests_in_flight", a) }
                #expect(busy == 1)
                let listing = try await Self.admin(test.gateway, "/upstreams").json["targets"] as? [[String: Any]] ?? []
                #expect(listing.first?["connections"] as? Int == 1 && listing.first?["in_flight"] as? Int == 1, "\(listing)")
                #expect(try await slow.value.status == 200)

                let closed = try await Self.poll(until: 0) { try await value("gateway_upstream_connections", a) }
                let openedAfter = try await value("gateway_upstream_connections_opened_total", a)
                #expect(closed == 0 && openedAfter == 1, "closed at the pool's idle timeout")
            }
        }
    }

    // GET /explain: gateway explain against the running config (it follows reloads); headers and the listener
    // count as they would for a real request; a missing url or an unknown listener is a 400.
    @Test func adminExplain() async throws {
        try await withUpstreams(2) { upstreams in
            let routes = #"""
                [{ "name": "beta", "match": { "path_prefix": "/api", "headers": { "x-beta": "1" } }, "upstream": "b", "strip_prefix": "/api" },
                 { "name": "office", "match": { "path_prefix": "/api", "client_ips": ["10.0.0.0/8"] }, "upstream": "a" },
                 { "name": "api", "match": { "path_prefix": "/api" }, "upstream": "a" }]
                """#
            try await withGateway(Self.config(routes: routes), upstreams: upstreams) { test in
                let gateway = test.gateway
                func explain(_ query: String) async throws -> (status: Int, lines: [String]) {
                    let response = try await Self.admin(gateway, "/explain?" + query)
                    return (response.status, response.json["explanation"] as? [String] ?? [response.json["error"] as? String ?? ""])
                }
                let plain = try await explain("url=http%3A%2F%2Fshop.test%2Fapi%2Forders%3Fx%3D1")
                #expect(plain.status == 200)
                #expect(plain.lines.first == "request: GET /api/orders?x=1 (Host: shop.test, listener test)")
                #expect(plain.lines.dropFirst().first == "route: api (routes[2])", "\(plain.lines)")
                let beta = try await explain("method=POST&url=/api/orders&header=Host:%20shop.test&header=X-Beta:%201")
                #expect(beta.lines.dropFirst().first == "route: beta (routes[0])", "\(beta.lines)")
                #expect(beta.lines.last == "  upstream request: POST /orders (Host: shop.test)", "\(beta.lines)")
                #expect(try await explain("url=/nothing&header=Host:%20a").lines.last == "404 ROUTE_NOT_FOUND: no route matches")
                #expect(try await explain("method=GET").status == 400)
                let office = try await explain("url=/api/x&header=Host:%20shop.test&client_ip=10.1.2.3")
                #expect(office.lines.first == "request: GET /api/x (Host: shop.test, listener test, client 10.1.2.3)")
                #expect(office.lines.dropFirst().first == "route: office (routes[1])", "\(office.lines)")
                #expect(try await explain("url=/api/x&header=Host:%20shop.test").lines.dropFirst().first == "route: api (routes[2])")
                #expect(try await explain("url=/api&client_ip=10.1").lines == [#""10.1" is not an IP address"#])
                let unknown = try await explain("url=/api&listener=nope")
                #expect(unknown.status == 400 && unknown.lines == [#"no listener named "nope""#])
                #expect(try await Self.admin(gateway, "/explain?url=/api", token: nil).status == 401, "behind the admin token like the rest")

                try await gateway.reload(config: makeConfig(Self.config(routes: #"[{ "name": "renamed", "upstream": "a" }]"#), upstreams: upstreams))
                let reloaded = try await explain("url=http%3A%2F%2Fshop.test%2Fapi")
                #expect(reloaded.lines.dropFirst().first == "route: renamed (routes[0])")
            }
        }
    }

    // With a token, every admin call needs it (401 JSON otherwise); /config hides secrets; /upstreams lists
    // targets; unknown paths and wrong methods get JSON errors.
    @Test func adminAPI() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(
                routes: #"[{ "name": "api", "upstream": "a" }]"#,
                top: #"""
                    "auth": { "jwt": { "keys": [{ "kid": "k1", "alg": "HS256", "secret": "a-very-long-shared-secret-for-hmac-256" }] },
                              "basic": { "users": [{ "username": "ops", "password_hash": "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e" }] } },
                    """#)
            try await withGateway(json, upstreams: upstreams) { test in
                let gateway = test.gateway
                for token in [nil, "wrong", Self.adminToken + "x"] {
                    let refused = try await Self.admin(gateway, "/healthz", token: token)
                    #expect(refused.status == 401, "token \(token ?? "none")")
                    #expect(refused.errorCode == "UNAUTHENTICATED")
                    #expect(refused.header("www-authenticate")?.hasPrefix("Bearer") == true)
                }
                #expect(try await Self.admin(gateway, "/healthz").status == 200)
                let ready = try await Self.admin(gateway, "/readyz")
                #expect(ready.status == 200)
                #expect(ready.json["ready"] as? Bool == true)
                #expect(ready.header("date")?.hasSuffix(" GMT") == true, "admin responses carry a Date too")

                let config = try await Self.admin(gateway, "/config")
                #expect(config.status == 200)
                #expect(!config.text.contains(Self.adminToken))
                #expect(!config.text.contains("a-very-long-shared-secret"))
                #expect(!config.text.contains("jydOTSfIH"), "password hashes are hidden too")
                let routes = config.json["routes"] as? [[String: Any]]
                #expect(routes?.first?["name"] as? String == "api")

                let states = try await Self.admin(gateway, "/upstreams")
                let targets = states.json["targets"] as? [[String: Any]] ?? []
                #expect(targets.count == 2)
                #expect(targets.first?["upstream"] as? String == "a")
                #expect(targets.first?["healthy"] as? Bool == true)
                #expect(targets.first?["breaker"] as? String == "closed")

                let missing = try await Self.admin(gateway, "/nothing")
                #expect(missing.status == 404)
                #expect(missing.errorCode == "ROUTE_NOT_FOUND")
                let wrongMethod = try await Self.admin(gateway, "/reload", method: "GET")
                #expect(wrongMethod.status == 405)
                #expect(wrongMethod.header("allow") == "POST")
                // Started without a file: nothing to reload.
                let reload = try await Self.admin(gateway, "/reload", method: "POST")
                #expect(reload.status == 422)
            }
        }
    }

    // A reload adds a route, an upstream and a listener while a slow streamed response started before it
    // completes intact and a keep-alive connection moves to the new routes; a broken file then changes
    // nothing; a third file removes the listener again. Reloads are counted by outcome.
    @Test(.timeLimit(.minutes(1))) func reloadWhileStreaming() async throws {
        try await withUpstreams(2) { upstreams in
            let before = Self.config(routes: #"[{ "name": "old", "upstream": "a" }]"#)
            try await Self.withFileGateway(before, upstreams: upstreams) { gateway, file, _ in
                let port = try #require(gateway.port(of: "test"))
                let keepAlive = try await RawClient.connect(port: port)
                try await keepAlive.send("GET /new/x HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(try await keepAlive.readResponse().json["upstream"] as? String == "a")

                let stream = try await RawClient.connect(port: port)
                try await stream.send("GET /stream?chunks=10&interval_ms=100 HTTP/1.1\r\nHost: t\r\n\r\n")
                try await Task.sleep(for: .milliseconds(250))

                let after = Self.config(
                    routes: #"""
                        [{ "name": "new", "match": { "path_prefix": "/new" }, "upstream": "b" },
                         { "name": "old", "upstream": "a" }]
                        """#,
                    listeners: #", { "name": "extra", "address": "127.0.0.1", "port": 0 }"#)
                try file.write(after, upstreams: upstreams)
                let reloaded = try await Self.admin(gateway, "/reload", method: "POST")
                #expect(reloaded.status == 200, "\(reloaded)")

                try await keepAlive.send("GET /new/x HTTP/1.1\r\nHost: t\r\n\r\n")
                let moved = try await keepAlive.readResponse()
                #expect(moved.status == 200)
                #expect(moved.json["upstream"] as? String == "b")
                let extraPort = try #require(gateway.port(of: "extra"))
                #expect(try await Self.get(extraPort, "/new/y").json["upstream"] as? String == "b")

                let streamed = try await stream.readResponse(timeout: .seconds(10))
                #expect(streamed.status == 200)
                #expect(streamed.complete)
                let chunks = (0..<10).map { "chunk \($0)\n" }.joined()
                #expect(streamed.text == chunks)
                await stream.close()
                await keepAlive.close()

                // A broken file: 422 with the problem and its path; the running routes stay.
                try file.write(after.replacingOccurrences(of: #""upstream": "b""#, with: #""upstream": "nope""#), upstreams: upstreams)
                let refused = try await Self.admin(gateway, "/reload", method: "POST")
                #expect(refused.status == 422)
                let problems = refused.json["problems"] as? [String] ?? []
                let named = problems.contains { $0.contains("routes[0].upstream") }
                #expect(named, "\(problems)")
                #expect(try await Self.get(port, "/new/z").json["upstream"] as? String == "b")
                #expect(gateway.port(of: "extra") == extraPort)

                try file.write(before, upstreams: upstreams)
                #expect(try await Self.admin(gateway, "/reload", method: "POST").status == 200)
                #expect(gateway.port(of: "extra") == nil)
                let closed = await thrownError(async: { _ = try await RawClient.connect(port: extraPort) })
                #expect(closed != nil, "the removed listener no longer accepts")
                #expect(try await Self.get(port, "/new/z").json["upstream"] as? String == "a")

                let metrics = PrometheusText(try await Self.admin(gateway, "/metrics").text)
                #expect(metrics.value("gateway_config_reloads_total", ["outcome": "success"]) == 2)
                #expect(metrics.value("gateway_config_reloads_total", ["outcome": "failure"]) == 1)
            }
        }
    }

    // An HTTP/2 connection opened before a reload stays open and its next request uses the new routes.
    @Test(.timeLimit(.minutes(1))) func http2ConnectionSurvivesReload() async throws {
        try await withUpstreams(2) { upstreams in
            let h2c = #", { "name": "h2c", "address": "127.0.0.1", "port": 0, "h2c": true }"#
            let before = Self.config(routes: #"[{ "name": "old", "upstream": "a" }]"#, listeners: h2c)
            try await Self.withFileGateway(before, upstreams: upstreams) { gateway, file, _ in
                let port = try #require(gateway.port(of: "h2c"))
                let client = try await H2Client.connect(port: port)
                let first = try await client.get("/echo")
                #expect(first.status == 200)
                #expect(first.body.contains(#""upstream":"a""#))
                try file.write(Self.config(routes: #"[{ "name": "new", "upstream": "b" }]"#, listeners: h2c), upstreams: upstreams)
                #expect(try await Self.admin(gateway, "/reload", method: "POST").status == 200)
                let second = try await client.get("/echo")
                #expect(second.status == 200)
                #expect(second.body.contains(#""upstream":"b""#), "the same connection now routes with the new config")
                #expect(gateway.openConnections == 1, "one HTTP/2 connection carried both")
                await client.close()
            }
        }
    }

    // With `reload.watch`, saving the file is enough.
    @Test(.timeLimit(.minutes(1))) func reloadWhenTheFileChanges() async throws {
        try await withUpstreams(2) { upstreams in
            let top = #""reload": { "watch": true, "interval_ms": 100 },"#
            let before = Self.config(routes: #"[{ "name": "old", "match": { "path_prefix": "/old" }, "upstream": "a" }]"#, top: top)
            try await Self.withFileGateway(before, upstreams: upstreams) { gateway, file, logs in
                let port = try #require(gateway.port(of: "test"))
                #expect(try await Self.get(port, "/new").status == 404)
                try file.write(before.replacingOccurrences(of: "/old", with: "/new"), upstreams: upstreams)
                let status = try await Self.poll(until: 200) { try await Self.get(port, "/new").status }
                #expect(status == 200)
                let noticed = logs.entries("config file changed; reloading")
                #expect(!noticed.isEmpty)
            }
        }
    }

    // A `${file:PATH}` secret (a Kubernetes or Docker secret) is read at start, and with `reload.watch` a rotated file
    // reloads: the upstream gets the new value without a restart.
    @Test(.timeLimit(.minutes(1))) func reloadWhenASecretFileChanges() async throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)").path
        try "first-value\n".write(toFile: secret, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secret) }
        try await withUpstreams(2) { upstreams in
            let top = #""reload": { "watch": true, "interval_ms": 100 },"#
            let routes = #"[{ "name": "r", "upstream": "a", "request_headers": { "set": { "x-partner-key": "${file:\#(secret)}" } } }]"#
            try await Self.withFileGateway(Self.config(routes: routes, top: top), upstreams: upstreams) { gateway, _, logs in
                let port = try #require(gateway.port(of: "test"))
                #expect(try await Self.get(port, "/echo").echoedHeaders["x-partner-key"] == "first-value")
                try "second-value\n".write(toFile: secret, atomically: true, encoding: .utf8)
                let seen = try await Self.poll(until: "second-value") { try await Self.get(port, "/echo").echoedHeaders["x-partner-key"] ?? "" }
                #expect(seen == "second-value")
                let noticed = logs.entries("config file changed; reloading").map { $0["path"] as? String ?? "" }
                #expect(noticed == [secret], "\(noticed)")
                let leaked = logs.all.filter { $0.contains("second-value") }
                #expect(leaked.isEmpty, "the secret itself is never logged")
            }
        }
    }

    // A top-level deny_ips_file (a blocklist a cron job refreshes) refuses its addresses before routing, unknown paths
    // too, and with `reload.watch` an updated list applies without a signal.
    @Test(.timeLimit(.minutes(1))) func blocklistFileRefusesAndReloads() async throws {
        let list = FileManager.default.temporaryDirectory.appendingPathComponent("drop-\(UUID().uuidString).txt").path
        try "; blocklist\n127.0.0.0/8 ; this test's client\n".write(toFile: list, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: list) }
        try await withUpstreams(2) { upstreams in
            let top = #""reload": { "watch": true, "interval_ms": 100 }, "deny_ips_file": "\#(list)","#
            let routes = #"[{ "name": "r", "match": { "path_prefix": "/echo" }, "upstream": "a" }]"#
            try await Self.withFileGateway(Self.config(routes: routes, top: top), upstreams: upstreams) { gateway, _, _ in
                let port = try #require(gateway.port(of: "test"))
                let refused = try await Self.get(port, "/echo")
                #expect(refused.status == 403 && refused.errorCode == "IP_NOT_ALLOWED")
                #expect(try await Self.get(port, "/no-such-route").status == 403, "refused before routing")
                #expect(upstreams[0].requestsServed == 0)
                try "; blocklist\n203.0.113.0/24\n".write(toFile: list, atomically: true, encoding: .utf8)
                let status = try await Self.poll(until: 200) { try await Self.get(port, "/echo").status }
                #expect(status == 200)
                #expect(try await Self.get(port, "/no-such-route").status == 404)
            }
        }
    }

    // With `reload.watch`, files `include` names are watched too: an included file that changes, one that appears
    // in a folder a wildcard lists, and one that goes away each reload.
    @Test(.timeLimit(.minutes(1))) func reloadWhenAnIncludedFileChanges() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("routes-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func route(_ name: String, _ prefix: String, _ upstream: String) -> String {
            #"{ "routes": [{ "name": "\#(name)", "match": { "path_prefix": "\#(prefix)" }, "upstream": "\#(upstream)", "strip_prefix": "\#(prefix)" }] }"#
        }
        try route("old", "/old", "a").write(toFile: folder + "/a.json", atomically: true, encoding: .utf8)
        try await withUpstreams(2) { upstreams in
            let top = #""reload": { "watch": true, "interval_ms": 100 }, "include": ["\#(folder)/*.json"],"#
            try await Self.withFileGateway(Self.config(routes: "[]", top: top), upstreams: upstreams) { gateway, _, logs in
                let port = try #require(gateway.port(of: "test"))
                func waitFor(_ path: String, status expected: Int) async throws -> Int {
                    try await Self.poll(until: expected) { try await Self.get(port, path).status }
                }
                #expect(try await Self.get(port, "/old/echo").status == 200)
                try route("new", "/new", "b").write(toFile: folder + "/b.json", atomically: true, encoding: .utf8)
                #expect(try await waitFor("/new/echo", status: 200) == 200, "a file that appears")
                try route("old", "/older", "a").write(toFile: folder + "/a.json", atomically: true, encoding: .utf8)
                #expect(try await waitFor("/older/echo", status: 200) == 200, "a file that changes")
                try FileManager.default.removeItem(atPath: folder + "/b.json")
                #expect(try await waitFor("/new/echo", status: 404) == 404, "a file that goes")
                let noticed = logs.entries("config file changed; reloading").map { $0["path"] as? String ?? "" }
                #expect(noticed.count == 3, "\(noticed)")
                #expect(noticed.first?.contains(folder + "/*.json") == true, "\(noticed)")
            }
        }
    }

    // A route's access_log: false logs none of its requests, "errors" only its failures, a sample every failure and
    // a share of the rest; other routes log all.
    @Test func routeAccessLogs() async throws {
        let routes = #"""
            [{ "name": "health", "match": { "path": "/healthz" }, "upstream": "demo", "access_log": false },
             { "name": "quiet", "match": { "path_prefix": "/quiet" }, "upstream": "demo", "strip_prefix": "/quiet", "access_log": "errors" },
             { "name": "sampled", "match": { "path_prefix": "/sampled" }, "upstream": "demo", "strip_prefix": "/sampled", "access_log": { "sample_percent": 0 } },
             { "name": "all", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { test in
                #expect(try await test.request("GET", "/healthz").status == 200)
                #expect(try await test.request("GET", "/quiet/echo").status == 200)
                #expect(try await test.request("GET", "/quiet/status/404").status == 404)
                #expect(try await test.request("GET", "/sampled/echo").status == 200)
                #expect(try await test.request("GET", "/sampled/status/503").status == 503)
                let last = try await test.request("GET", "/echo")
                _ = try await test.accessLog(for: last)  // lines are written as exchanges complete: this one comes last
                let logged = test.logs.entries("request").map { "\($0["route"] ?? "-") \($0["status"] ?? "-")" }
                #expect(logged == ["quiet 404", "sampled 503", "all 200"], "a sample of 0% keeps the failures only")
            }
        }
    }

    // logging.access_log_headers: the named request fields join the access-log line (repeated ones joined); a
    // credential field cannot be named.
    @Test func accessLogHeaders() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig(top: #""logging": { "access_log_headers": ["X-Tenant", "referer", "x-missing"] },"#)
            try await withGateway(json, upstreams: upstreams) { test in
                let response = try await test.request(
                    "GET", "/echo", headers: [("X-Tenant", "acme"), ("Referer", "https://a.example/"), ("Referer", "https://b.example/"), ("Authorization", "Bearer secret")])
                let entry = try await test.accessLog(for: response)
                #expect(entry["header_x_tenant"] as? String == "acme")
                #expect(entry["header_referer"] as? String == "https://a.example/, https://b.example/")
                #expect(entry["header_x_missing"] == nil)
                let leaked = test.logs.all.filter { $0.contains("secret") }
                #expect(leaked.isEmpty, "credentials never reach the log")
            }
        }
        let refused = ConfigLoader.load(
            text: basicConfig(targets: #""http://127.0.0.1:9""#, top: #""logging": { "access_log_headers": ["Authorization", "cookie"] },"#),
            environment: [:]
        ).errors.map(\.description)
        #expect(refused == [
            "logging.access_log_headers[0]: authorization carries credentials and is never logged",
            "logging.access_log_headers[1]: cookie carries credentials and is never logged",
        ])
    }

    // upstream_ms: how long the upstream took to answer, beside duration_ms; absent when no upstream answered.
    @Test func accessLogUpstreamTime() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: #"[{ "name": "all", "upstream": "demo" }]"#), upstreams: upstreams) { test in
                let slow = try await test.request("GET", "/slow?ms=\(TestTime.ms(200))")
                let entry = try await test.accessLog(for: slow)
                let upstream = try #require(entry["upstream_ms"] as? Double)
                let duration = try #require(entry["duration_ms"] as? Double)
                #expect(upstream >= Double(TestTime.ms(200)) && upstream <= duration, "\(entry)")
                let fast = try await test.accessLog(for: try await test.request("GET", "/echo"))
                #expect((fast["upstream_ms"] as? Double ?? 1e9) < Double(TestTime.ms(200)), "\(fast)")
            }
            // Nothing answered: the upstream is gone.
            try await withGateway(basicConfig(targets: #""http://127.0.0.1:9""#), upstreams: upstreams) { test in
                let failed = try await test.request("GET", "/echo")
                #expect(failed.status == 502)
                #expect(try await test.accessLog(for: failed)["upstream_ms"] == nil)
            }
        }
    }

    // deprecation: every answer of the route says so (Deprecation, Sunset, Link), the gateway's own too; requests are
    // counted; after the sunset, refuse_after_sunset answers 410 API_SUNSET without asking the upstream.
    @Test func deprecatedRoutes() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(
                routes: #"""
                    [{ "name": "v1", "match": { "path_prefix": "/v1" }, "upstream": "a", "auth": { "require": ["api_key"] },
                       "deprecation": { "date": "2026-06-01", "sunset": "2099-01-01T12:00:00+02:00", "link": "https://developer.example.com/v2" } },
                     { "name": "v0", "match": { "path_prefix": "/v0" }, "upstream": "a",
                       "deprecation": { "date": "2019-01-01", "sunset": "2020-01-01", "refuse_after_sunset": true } }]
                    """#,
                top: #""auth": { "api_keys": [{ "id": "demo", "sha256": "\#(Self.demoKeyHash)" }] },"#)
            try await withGateway(json, upstreams: upstreams) { test in
                let ok = try await test.request("GET", "/v1/echo", headers: [("X-API-Key", "demo-key-not-for-production")])
                #expect(ok.status == 200)
                #expect(ok.header("deprecation") == "@1780272000")
                #expect(ok.header("sunset") == "Thu, 01 Jan 2099 10:00:00 GMT")
                #expect(ok.header("link") == #"<https://developer.example.com/v2>; rel="deprecation"; type="text/html""#)
                let refused = try await test.request("GET", "/v1/echo")
                #expect(refused.status == 401 && refused.header("deprecation") == "@1780272000", "the gateway's own answers say it too")

                let gone = try await test.request("POST", "/v0/orders", body: "{}")
                #expect(gone.status == 410 && gone.errorCode == "API_SUNSET")
                #expect((gone.json["error"] as? [String: Any])?["message"] as? String == "This API was retired on Wed, 01 Jan 2020 00:00:00 GMT.")
                #expect(gone.header("sunset") == "Wed, 01 Jan 2020 00:00:00 GMT" && gone.header("deprecation") == "@1546300800")
                #expect(upstreams[0].requestsServed == 1)

                let metrics = PrometheusText(try await Self.admin(test.gateway, "/metrics").text)
                #expect(metrics.value("gateway_deprecated_requests_total", ["route": "v1"]) == 2)
                #expect(metrics.value("gateway_deprecated_requests_total", ["route": "v0"]) == 1)
            }
        }
    }

    // The upstream gets a traceparent continuing the client's trace (new parent span, same trace id and
    // flags, tracestate kept) or starting one; the access log carries the trace id.
    @Test func traceContext() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { test in
                let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
                let continued = try await test.request("GET",                     "/echo", headers: [("traceparent", "00-\(traceID)-00f067aa0ba902b7-01"), ("tracestate", "vendor=opaque")])
                let sent = continued.echoedHeaders["traceparent"] ?? ""
                let parts = sent.split(separator: "-").map(String.init)
                #expect(parts.count == 4)
                #expect(parts.first == "00")
                #expect(parts.dropFirst().first == traceID)
                #expect(parts.dropFirst(2).first != "00f067aa0ba902b7")
                #expect(parts.dropFirst(2).first?.count == 16)
                #expect(parts.last == "01")
                #expect(continued.echoedHeaders["tracestate"] == "vendor=opaque")
                let log = try await test.accessLog(for: continued)
                #expect(log["trace_id"] as? String == traceID)

                // An invalid traceparent starts a new trace and drops tracestate.
                let started = try await test.request("GET", "/echo", headers: [("traceparent", "00-zzzz-00f067aa0ba902b7-01"), ("tracestate", "a=b")])
                let fresh = started.echoedHeaders["traceparent"] ?? ""
                #expect(fresh.count == 55)
                #expect(!fresh.contains("zzzz"))
                #expect(started.echoedHeaders["tracestate"] == nil)
                let startedLog = try await test.accessLog(for: started)
                #expect(startedLog["trace_id"] as? String == String(fresh.split(separator: "-").dropFirst().first ?? ""))
            }
        }
    }

    // With `tracing`, every sampled request becomes an OTLP span at the collector: the client's trace and
    // parent, the span id the upstream saw as its parent, route, status; unsampled requests are not sent.
    @Test(.timeLimit(.minutes(1))) func spansExportedOverOTLP() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(
                routes: #"[{ "name": "api", "upstream": "a" }]"#,
                top: #""tracing": { "otlp_endpoint": "http://127.0.0.1:$UP1/v1/traces", "flush_interval_ms": 50, "service_name": "edge" },"#)
            try await withGateway(json, upstreams: upstreams) { test in
                let traceID = "0af7651916cd43dd8448eb211c80319c"
                let parentID = "b7ad6b7169203331"
                let sampled = try await test.request("GET", "/echo", headers: [("traceparent", "00-\(traceID)-\(parentID)-01")])
                let upstreamParent = String(sampled.echoedHeaders["traceparent"]?.split(separator: "-").dropFirst(2).first ?? "")
                let unsampledTrace = "1af7651916cd43dd8448eb211c80319c"
                _ = try await test.request("GET", "/echo", headers: [("traceparent", "00-\(unsampledTrace)-\(parentID)-00")])
                let failed = try await test.request("GET", "/status/503")
                let failedTrace = try #require(failed.header("x-request-id"))

                var spans: [[String: Any]] = []
                let deadline = ContinuousClock.now + .seconds(10)
                while spans.count < 2 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    spans = Self.collectedSpans(upstreams[1])
                }
                let documents = upstreams[1].behaviour.collected.withLockedValue { $0 }
                let first = try #require(documents.first)
                #expect(first.contains(#"{"key":"service.name","value":{"stringValue":"edge"}}"#))

                let matching = spans.first { $0["traceId"] as? String == traceID }
                let span = try #require(matching)
                #expect(span["spanId"] as? String == upstreamParent)
                #expect(span["parentSpanId"] as? String == parentID)
                #expect(span["name"] as? String == "GET api")
                #expect(span["kind"] as? Int == 2)
                let attributes = Self.attributes(span)
                #expect(attributes["http.response.status_code"] == "200")
                #expect(attributes["http.route"] == "api")
                #expect(attributes["url.path"] == "/echo")
                #expect(attributes["gateway.request_id"] == sampled.header("x-request-id"))
                let start = UInt64(span["startTimeUnixNano"] as? String ?? "") ?? 0
                let end = UInt64(span["endTimeUnixNano"] as? String ?? "") ?? 0
                #expect(start > 1_700_000_000_000_000_000)
                #expect(end >= start)

                let failedSpan = spans.first { $0["traceId"] as? String == failedTrace }
                let error = try #require(failedSpan)
                #expect(error["parentSpanId"] == nil)
                #expect((error["status"] as? [String: Any])?["code"] as? Int == 2)
                let unsampled = spans.filter { $0["traceId"] as? String == unsampledTrace }
                #expect(unsampled.isEmpty)
                // Counted once the collector's answer is in, which comes after it has the spans: wait for it.
                let exported = try await Self.poll(until: true) {
                    (Self.scrape(test.gateway).value("gateway_spans_total", ["outcome": "exported"]) ?? 0) >= 2
                }
                #expect(exported)
            }
        }
    }

    // A dead collector costs spans, never requests, and is logged once per outage, not per batch.
    @Test(.timeLimit(.minutes(1))) func deadCollectorOnlyCostsSpans() async throws {
        try await withUpstreams(2) { upstreams in
            let deadPort = try await RedisServer.freePort()
            let json = Self.config(
                routes: #"[{ "name": "api", "upstream": "a" }]"#,
                top: #""tracing": { "otlp_endpoint": "http://127.0.0.1:\#(deadPort)/v1/traces", "flush_interval_ms": 20 },"#)
            try await withGateway(json, upstreams: upstreams) { test in
                for _ in 0..<5 {
                    #expect(try await test.request("GET", "/echo").status == 200)
                    try await Task.sleep(for: .milliseconds(40))
                }
                try await Task.sleep(for: .milliseconds(200))
                let warnings = test.logs.entries("span export failed; dropping spans until the collector answers")
                #expect(warnings.count == 1)
                let metrics = Self.scrape(test.gateway)
                #expect((metrics.value("gateway_spans_total", ["outcome": "dropped"]) ?? 0) >= 1)
                #expect((metrics.value("gateway_spans_total", ["outcome": "exported"]) ?? 0) == 0)
            }
        }
    }

    /// The gateway's metrics as `/metrics` renders them.
    static func scrape(_ gateway: Gateway) -> PrometheusText {
        PrometheusText(gateway.prometheusText())
    }

    static func collectedSpans(_ collector: DemoUpstream) -> [[String: Any]] {
        let documents = collector.behaviour.collected.withLockedValue { $0 }
        var spans: [[String: Any]] = []
        for document in documents {
            let object = (try? JSONSerialization.jsonObject(with: Data(document.utf8))) as? [String: Any]
            for resource in object?["resourceSpans"] as? [[String: Any]] ?? [] {
                for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                    spans += scope["spans"] as? [[String: Any]] ?? []
                }
            }
        }
        return spans
    }

    /// A span's attributes as key -> value text (string or int values).
    static func attributes(_ span: [String: Any]) -> [String: String] {
        var result: [String: String] = [:]
        for attribute in span["attributes"] as? [[String: Any]] ?? [] {
            guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else { continue }
            result[key] = (value["stringValue"] as? String) ?? (value["intValue"] as? String)
        }
        return result
    }

    // Graceful stop: /readyz turns 503 at once, the listener stops accepting, HTTP/1.1 and HTTP/2 requests in
    // flight all complete (the HTTP/2 client gets GOAWAY first).
    @Test(.timeLimit(.minutes(1))) func drainLosesNothing() async throws {
        try await withUpstreams { upstreams in
            let json = Self.config(
                routes: #"[{ "name": "all", "upstream": "a" }]"#,
                listeners: #", { "name": "h2c", "address": "127.0.0.1", "port": 0, "h2c": true }"#)
            let config = try makeConfig(json, upstreams: upstreams + upstreams)
            let logger = Logger(label: "gateway") { _ in SwiftLogNoOpLogHandler() }
            let gateway = try await Gateway.start(config: config, logger: logger)
            let port = try #require(gateway.port(of: "test"))
            let h2Port = try #require(gateway.port(of: "h2c"))

            var clients: [RawClient] = []
            for index in 0..<5 {
                let client = try await RawClient.connect(port: port)
                try await client.send("GET /slow?ms=\(1500 + index * 50) HTTP/1.1\r\nHost: t\r\n\r\n")
                clients.append(client)
            }
            async let http2 = shell("nghttp -v http://127.0.0.1:\(h2Port)/slow?ms=1500", timeout: .seconds(30))
            // Stop only once all six requests are in flight (the upstream has them), even on a loaded machine.
            let arrived = ContinuousClock.now + .seconds(10)
            while upstreams[0].requestsServed < 6 && ContinuousClock.now < arrived { try await Task.sleep(for: .milliseconds(10)) }
            #expect(upstreams[0].requestsServed >= 6)
            let stopping = Task { await gateway.shutdown() }

            var readiness = 200
            let deadline = ContinuousClock.now + .seconds(2)
            while readiness == 200 && ContinuousClock.now < deadline {
                readiness = try await Self.admin(gateway, "/readyz").status
            }
            #expect(readiness == 503)
            let refused = await thrownError(async: { _ = try await RawClient.connect(port: port) })
            #expect(refused != nil, "the listener is closed while draining")

            for (index, client) in clients.enumerated() {
                let response = try await client.readResponse(timeout: .seconds(10))
                #expect(response.status == 200)
                #expect(response.json["slept_ms"] as? Int == 1500 + index * 50)
                await client.close()
            }
            let h2 = try await http2
            #expect(h2.stdout.contains("recv GOAWAY frame"), "\(h2.stdout)")
            #expect(h2.stdout.contains(#""slept_ms":1500"#), "\(h2.stdout)")
            await stopping.value
        }
    }

    // POST /upstreams/drain takes a target out of rotation (its requests go to the others), /upstreams shows it,
    // a reload keeps it, and /upstreams/undrain brings it back.
    @Test func drainTargetsThroughTheAdminAPI() async throws {
        try await withUpstreams(2) { upstreams in
            let json = """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "admin": { "address": "127.0.0.1", "port": 0, "token": "\(Self.adminToken)" },
                  "upstreams": { "pool": { "targets": ["http://127.0.0.1:$UP0", "http://127.0.0.1:$UP1"] } },
                  "routes": [{ "name": "all", "upstream": "pool" }] }
                """
            let file = try ConfigFile(json, upstreams: upstreams)
            let config = try makeConfig(json, upstreams: upstreams)
            let logger = Logger(label: "gateway") { _ in SwiftLogNoOpLogHandler() }
            let gateway = try await Gateway.start(config: config, logger: logger, configPath: file.path)
            let port = try #require(gateway.port(of: "test"))
            let a = "127.0.0.1:\(upstreams[0].port)"
            func served() async throws -> Set<String> {
                var names: Set<String> = []
                for _ in 0..<6 {
                    let client = try await RawClient.connect(port: port)
                    try await client.send("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
                    names.insert(ResilienceTests.upstreamName(try await client.readResponse()) ?? "?")
                    await client.close()
                }
                return names
            }
            #expect(try await served() == ["a", "b"])

            let drained = try await Self.admin(gateway, "/upstreams/drain?upstream=pool&target=\(a)", method: "POST")
            #expect(drained.status == 200)
            #expect(drained.json["drained"] as? Bool == true)
            #expect(try await served() == ["b"])
            let listing = try await Self.admin(gateway, "/upstreams").json["targets"] as? [[String: Any]] ?? []
            let flags = listing.map { "\($0["target"] as? String ?? "?") \($0["drained"] as? Bool ?? false)" }.sorted()
            #expect(flags == ["\(a) true", "127.0.0.1:\(upstreams[1].port) false"].sorted())

            // A reload that changes the upstream (its timeout) rebuilds it, and keeps the drain.
            try file.write(json.replacingOccurrences(of: #""pool": { "targets""#, with: #""pool": { "read_timeout_ms": 5000, "targets""#), upstreams: upstreams)
            #expect(try await Self.admin(gateway, "/reload", method: "POST").status == 200)
            #expect(try await served() == ["b"])

            #expect(try await Self.admin(gateway, "/upstreams/undrain?upstream=pool&target=\(a)", method: "POST").status == 200)
            #expect(try await served() == ["a", "b"])
            #expect(try await Self.admin(gateway, "/upstreams/drain?upstream=pool&target=10.9.9.9:80", method: "POST").status == 404)
            #expect(try await Self.admin(gateway, "/upstreams/drain?upstream=pool", method: "POST").status == 400)
            await gateway.shutdown()
        }
    }

    // slow_start_ms: a target put back in rotation starts with about a tenth of its share instead of half of it.
    @Test func slowStartRampsATargetBackIn() async throws {
        try await withUpstreams(2) { upstreams in
            let json = """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "pool": { "targets": ["http://127.0.0.1:$UP0", "http://127.0.0.1:$UP1"], "slow_start_ms": 600000 } },
                  "routes": [{ "name": "all", "upstream": "pool" }] }
                """
            try await withGateway(json, upstreams: upstreams) { gateway in
                let a = "127.0.0.1:\(upstreams[0].port)"
                #expect(gateway.gateway.setDrained(upstream: "pool", target: a, drained: true))
                #expect(gateway.gateway.setDrained(upstream: "pool", target: a, drained: false))
                var counts: [String: Int] = [:]
                for _ in 0..<22 {
                    counts[ResilienceTests.upstreamName(try await gateway.request("GET", "/echo")) ?? "?", default: 0] += 1
                }
                #expect(counts["a"] == 2 && counts["b"] == 20, "\(counts)")
            }
        }
    }

    // reuse_port: a second gateway (the next version) binds the port the first one serves, the kernel shares new
    // connections between them, and once the first has drained the second serves alone. Without it, the second
    // cannot start.
    @Test(.timeLimit(.minutes(1))) func reusePortHandsOver() async throws {
        try await withUpstreams { upstreams in
            let json = { (port: Int, reuse: Bool) in
                """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": \(port), "reuse_port": \(reuse) }],
                  "admin": { "address": "127.0.0.1", "port": 0 },
                  "upstreams": { "a": { "targets": ["http://127.0.0.1:$UP0"] } }, "routes": [{ "name": "all", "upstream": "a" }] }
                """
            }
            let logger = Logger(label: "gateway") { _ in SwiftLogNoOpLogHandler() }
            let old = try await Gateway.start(config: try makeConfig(json(0, true), upstreams: upstreams), logger: logger)
            let port = try #require(old.port(of: "test"))
            let refused = await thrownError(async: {
                let other = try await Gateway.start(config: try makeConfig(json(port, false), upstreams: upstreams), logger: logger)
                await other.shutdown()
            })
            #expect(refused != nil, "without reuse_port the port is taken")

            let new = try await Gateway.start(config: try makeConfig(json(port, true), upstreams: upstreams), logger: logger)
            func served(_ gateway: Gateway) async throws -> Int {
                let text = try await Self.admin(gateway, "/metrics", token: nil).text
                return Int(PrometheusText(text).value("gateway_connections_total", ["listener": "test"]) ?? 0)
            }
            // Each on a new connection: the kernel picks a listener per connection.
            func get() async throws -> Int {
                let client = try await RawClient.connect(port: port)
                try await client.send("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                let status = try await client.readResponse().status
                await client.close()
                return status
            }
            var statuses: Set<Int> = []
            for _ in 0..<24 {
                statuses.insert(try await get())
            }
            #expect(statuses == [200])
            let (oldShare, newShare) = (try await served(old), try await served(new))
            #expect(oldShare > 0 && newShare > 0, "both processes took connections: \(oldShare) and \(newShare)")

            await old.shutdown()
            statuses = []
            for _ in 0..<8 {
                statuses.insert(try await get())
            }
            #expect(statuses == [200], "the new gateway serves alone once the old one is gone")
            #expect(try await served(new) == newShare + 8)
            await new.shutdown()
        }
    }
}

/// A gateway.json on disk; `$UPn` placeholders are replaced as in `makeConfig`.
struct ConfigFile {
    let path: String

    init(_ json: String, upstreams: [DemoUpstream]) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-\(UUID().uuidString).json").path
        try write(json, upstreams: upstreams)
    }

    func write(_ json: String, upstreams: [DemoUpstream]) throws {
        var text = json
        for (index, upstream) in upstreams.enumerated().reversed() {
            text = text.replacingOccurrences(of: "$UP\(index)", with: String(upstream.port))
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The Prometheus text format, parsed enough to look up one sample by name and exact label set.
struct PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    let samples: [Sample]

    init(_ text: String) {
        samples = text.split(separator: "\n").compactMap { line -> Sample? in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                return nil
            }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else { return Sample(name: String(series), labels: [:], value: value) }
            var labels: [String: String] = [:]
            for match in series[brace...].matches(of: /([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/) {
                labels[String(match.1)] = String(match.2)
            }
            return Sample(name: String(series[..<brace]), labels: labels, value: value)
        }
    }

    func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}
