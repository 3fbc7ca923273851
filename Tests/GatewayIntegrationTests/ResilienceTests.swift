import DemoUpstream
import Foundation
import GatewayUpstream
import Testing

/// Balancing, breakers, retries, caps and health checks against real upstreams on 127.0.0.1: demo
/// upstreams in-process (made slow or failing on demand) and as separate processes (killed outright).
@Suite(.serialized) struct ResilienceTests {
    /// One upstream "demo" over `targets`, with `extra` keys added to it.
    static func config(targets: [Int], extra: String, workers: Int = 1) -> String {
        let list = targets.map { #""http://127.0.0.1:\#($0)""# }.joined(separator: ", ")
        return """
            { "workers": \(workers),
              "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
              "upstreams": { "demo": { "targets": [\(list)], \(extra) } },
              "routes": [{ "name": "all", "upstream": "demo" }] }
            """
    }

    /// `count` requests with up to `concurrency` in flight at once.
    static func requests(
        _ gateway: TestGateway, count: Int, concurrency: Int = 1, method: String = "GET", path: String = "/echo",
        headers: [(String, String)] = [], body: String? = nil
    ) async throws -> [TestResponse] {
        try await withThrowingTaskGroup(of: [TestResponse].self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var responses: [TestResponse] = []
                    for _ in stride(from: worker, to: count, by: concurrency) {
                        responses.append(try await gateway.request(method, path, headers: headers, body: body))
                    }
                    return responses
                }
            }
            var all: [TestResponse] = []
            for try await part in group { all += part }
            return all
        }
    }

    static func upstreamName(_ response: TestResponse) -> String? { response.json["upstream"] as? String }

    /// `count` GETs of /echo one after another, and the longest any of them took.
    static func timedRequests(_ gateway: TestGateway, count: Int) async throws -> (responses: [TestResponse], slowest: Duration) {
        var responses: [TestResponse] = []
        var slowest = Duration.zero
        for _ in 0..<count {
            let started = ContinuousClock.now
            responses.append(try await gateway.request("GET", "/echo"))
            slowest = max(slowest, ContinuousClock.now - started)
        }
        return (responses, slowest)
    }

    /// "200 a"-style summaries, so assertions compare plain values (no closures inside test macros).
    static func outcomes(_ responses: [TestResponse]) -> Set<String> {
        Set(responses.map { "\($0.status) \(upstreamName($0) ?? $0.errorCode ?? "-")" })
    }

    static func count(_ responses: [TestResponse], status: Int) -> Int {
        responses.reduce(0) { $0 + ($1.status == status ? 1 : 0) }
    }

    static func count(_ responses: [TestResponse], upstream: String) -> Int {
        responses.reduce(0) { $0 + (upstreamName($1) == upstream ? 1 : 0) }
    }

    /// Log lines with message `message` about `target`.
    static func logged(_ gateway: TestGateway, _ message: String, target port: Int) -> Int {
        gateway.logs.entries(message).reduce(0) { $0 + ($1["target"] as? String == "127.0.0.1:\(port)" ? 1 : 0) }
    }

    static func state(_ gateway: TestGateway, target port: Int) -> UpstreamTargetState? {
        gateway.gateway.upstreams.targetStates().first { $0.target == "127.0.0.1:\(port)" }
    }

    /// Connections a demo-upstream process accepted, asked directly (the asking connection counts too).
    static func connectionsAccepted(port: Int) async throws -> Int {
        let client = try await RawClient.connect(port: port)
        try await client.send("GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let response = try await client.readResponse()
        await client.close()
        return try #require(response.json["connections_accepted"] as? Int)
    }

    // pool.max_requests_per_connection and max_connection_age_ms: a pooled connection is retired after its share
    // of requests or once old, and the next request opens a fresh one (the upstream counts the accepts).
    @Test func pooledConnectionsAreRetired() async throws {
        try await withUpstreams(2) { upstreams in
            let (counted, aged) = (upstreams[0], upstreams[1])
            let json = """
                { "workers": 1,
                  "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "counted": { "targets": ["http://127.0.0.1:\(counted.port)"], "pool": { "max_requests_per_connection": 3 } },
                                 "aged": { "targets": ["http://127.0.0.1:\(aged.port)"], "pool": { "max_connection_age_ms": \(TestTime.ms(300)) } } },
                  "routes": [{ "name": "aged", "match": { "path_prefix": "/aged" }, "upstream": "aged", "strip_prefix": "/aged" },
                             { "name": "counted", "upstream": "counted" }] }
                """
            try await withGateway(json) { gateway in
                for _ in 0..<9 { #expect(try await gateway.request("GET", "/echo").status == 200) }
                // Three connections of three requests each, plus the one asking for the count.
                #expect(try await Self.connectionsAccepted(port: counted.port) == 3 + 1)

                for _ in 0..<3 { #expect(try await gateway.request("GET", "/aged/echo").status == 200) }
                try await Task.sleep(for: TestTime.duration(ms: 400))
                #expect(try await gateway.request("GET", "/aged/echo").status == 200)
                #expect(try await Self.connectionsAccepted(port: aged.port) == 2 + 1, "reused while young, then replaced")
            }
        }
    }

    // Killing one of two targets: GETs keep succeeding (retried on the other), its breaker opens and stays
    // open after it comes back (no connection reaches it), then a half-open probe closes it.
    @Test func killedTargetIsRetriedAroundAndItsBreakerRecovers() async throws {
        let a = DemoUpstreamProcess(name: "a")
        let b = DemoUpstreamProcess(name: "b")
        try await a.start()
        try await b.start()
        defer {
            a.kill()
            b.kill()
        }
        let json = Self.config(
            targets: [a.port, b.port],
            extra: #""retries": { "attempts": 2, "backoff_ms": 5 }, "circuit_breaker": { "failure_threshold": 3, "open_ms": \#(TestTime.ms(2000)) }"#,
            workers: 2)
        try await withGateway(json) { gateway in
            let before = try await Self.requests(gateway, count: 20, concurrency: 2)
            #expect(Self.outcomes(before) == ["200 a", "200 b"])

            b.kill()
            let during = try await Self.requests(gateway, count: 40, concurrency: 2)
            #expect(Self.outcomes(during) == ["200 a"], "GETs are retried on the live target")
            #expect(Self.state(gateway, target: b.port)?.breaker == "open")
            #expect(Self.logged(gateway, "circuit breaker open", target: b.port) >= 1)

            // Back on the same port, but the breaker is still open: no traffic reaches it.
            try await b.start()
            let accepted = try await Self.connectionsAccepted(port: b.port)
            let whileOpen = try await Self.requests(gateway, count: 20)
            #expect(Self.outcomes(whileOpen) == ["200 a"])
            #expect(try await Self.connectionsAccepted(port: b.port) == accepted + 1, "only our own /stats connection")

            // After open_ms a probe goes through, succeeds and closes the breaker; b serves again.
            try await Task.sleep(for: TestTime.duration(ms: 2100))
            let after = try await Self.requests(gateway, count: 20)
            #expect(Self.outcomes(after) == ["200 a", "200 b"])
            #expect(Self.state(gateway, target: b.port)?.breaker == "closed")
            #expect(Self.logged(gateway, "circuit breaker half-open", target: b.port) >= 1)
            #expect(Self.logged(gateway, "circuit breaker closed", target: b.port) >= 1)
        }
    }

    // A backup target gets no traffic while a primary can take it; it takes over when the primaries fail
    // their health checks, and hands back as soon as one recovers. A request whose tries fail on every
    // primary is retried on the backup before anything else.
    @Test func backupTargetTakesOverAndHandsBack() async throws {
        try await withUpstreams(3) { upstreams in
            let (a, b, c) = (upstreams[0], upstreams[1], upstreams[2])
            let json = """
                { "workers": 2,
                  "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "demo": {
                    "targets": ["http://127.0.0.1:\(a.port)", "http://127.0.0.1:\(b.port)", { "url": "http://127.0.0.1:\(c.port)", "backup": true }],
                    "retries": { "attempts": 2, "backoff_ms": 1, "on_status": [503], "budget_ratio": 1 },
                    "health_check": { "path": "/healthz", "interval_ms": 100, "timeout_ms": 200, "unhealthy_threshold": 2, "healthy_threshold": 2 } } },
                  "routes": [{ "name": "all", "upstream": "demo" }] }
                """
            try await withGateway(json) { gateway in
                let normal = try await Self.requests(gateway, count: 20, concurrency: 2)
                #expect(Self.outcomes(normal) == ["200 a", "200 b"])
                #expect(Self.state(gateway, target: c.port)?.backup == true && Self.state(gateway, target: a.port)?.backup == false)

                // Both primaries answer 503 (healthy by their checks): each request tries a and b, then c.
                a.behaviour.failStatus.store(503, ordering: .relaxed)
                b.behaviour.failStatus.store(503, ordering: .relaxed)
                let failing = try await Self.requests(gateway, count: 6)
                #expect(Self.outcomes(failing) == ["200 c"])
                // Each of the six tried a and b first: their failure statuses are counted.
                let failures = gateway.gateway.prometheusText().split(separator: "\n").filter {
                    $0.hasPrefix("gateway_upstream_errors_total") && $0.contains(#"kind="status""#)
                }
                let failedOn = { (port: Int) in failures.filter { $0.contains("127.0.0.1:\(port)") }.compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +) }
                let (failedOnA, failedOnB, failedOnC) = (failedOn(a.port), failedOn(b.port), failedOn(c.port))
                #expect(failedOnA == 6 && failedOnB == 6 && failedOnC == 0, "\(failures)")
                a.behaviour.failStatus.store(0, ordering: .relaxed)
                b.behaviour.failStatus.store(0, ordering: .relaxed)

                // Both primaries fail their checks: requests go straight to the backup.
                a.behaviour.healthStatus.store(503, ordering: .relaxed)
                b.behaviour.healthStatus.store(503, ordering: .relaxed)
                try await waitUntil { Self.state(gateway, target: a.port)?.healthy == false && Self.state(gateway, target: b.port)?.healthy == false }
                let down = try await Self.requests(gateway, count: 10, concurrency: 2)
                #expect(Self.outcomes(down) == ["200 c"])

                // One primary recovers: it gets everything again, the backup nothing.
                a.behaviour.healthStatus.store(200, ordering: .relaxed)
                try await waitUntil { Self.state(gateway, target: a.port)?.healthy == true }
                let back = try await Self.requests(gateway, count: 10, concurrency: 2)
                #expect(Self.outcomes(back) == ["200 a"])
            }
        }
    }

    // Every target failing: tries take the read timeout until the breakers open; then the gateway answers
    // 503 at once, without touching the upstream, with Retry-After.
    @Test func allTargetsDownIsAFast503() async throws {
        try await withUpstreams(2) { upstreams in
            for upstream in upstreams { upstream.behaviour.delayMs.store(5000, ordering: .relaxed) }
            let json = Self.config(
                targets: upstreams.map(\.port),
                extra: #""read_timeout_ms": 300, "circuit_breaker": { "failure_threshold": 1, "open_ms": 30000 }"#)
            try await withGateway(json) { gateway in
                for _ in 0..<2 {
                    let started = ContinuousClock.now
                    let response = try await gateway.request("GET", "/echo")
                    #expect(response.status == 504)
                    #expect(ContinuousClock.now - started >= .milliseconds(290))
                }
                let served = upstreams.map(\.requestsServed)
                let started = ContinuousClock.now
                let shutOut = try await gateway.request("GET", "/echo")
                #expect(ContinuousClock.now - started < .milliseconds(150))
                #expect(shutOut.status == 503)
                #expect(shutOut.errorCode == "UPSTREAM_UNAVAILABLE")
                #expect(shutOut.errorRequestID == shutOut.header("x-request-id"))
                let retryAfter = Int(shutOut.header("retry-after") ?? "") ?? 0
                #expect((25...30).contains(retryAfter), "open_ms 30000 minus the time since the breaker opened")
                #expect(upstreams.map(\.requestsServed) == served)
                #expect(gateway.gateway.upstreams.targetStates().map(\.breaker) == ["open", "open"])
            }
        }
    }

    // max_ejection_percent: once more targets would be shut out than allowed, breakers are ignored and the
    // upstream keeps getting traffic (its own answers reach the client instead of the gateway's 503).
    @Test func ejectionCapKeepsTrafficFlowing() async throws {
        try await withUpstreams(2) { upstreams in
            for upstream in upstreams { upstream.behaviour.failStatus.store(500, ordering: .relaxed) }
            let breaker = #""circuit_breaker": { "failure_threshold": 1, "open_ms": 30000, "failure_statuses": [500], "max_ejection_percent": 50 }"#
            try await withGateway(Self.config(targets: upstreams.map(\.port), extra: breaker)) { gateway in
                let first = try await Self.requests(gateway, count: 2)
                #expect(Self.outcomes(first) == ["500 a", "500 b"])
                #expect(gateway.gateway.upstreams.targetStates().map(\.breaker) == ["open", "open"])
                let served = upstreams[0].requestsServed + upstreams[1].requestsServed
                let panic = try await Self.requests(gateway, count: 4)
                #expect(Self.outcomes(panic) == ["500 a", "500 b"], "both open, over the 50% cap: all targets used")
                #expect(upstreams[0].requestsServed + upstreams[1].requestsServed == served + 4)
            }
        }
    }

    // A slow target costs one per-try timeout, then the request is retried on the other target; a lone
    // slow target gives 504 once every try timed out.
    @Test func perTryTimeoutRetriesElsewhere() async throws {
        try await withUpstreams(2) { upstreams in
            upstreams[0].behaviour.delayMs.store(3000, ordering: .relaxed)
            let retries = #""retries": { "attempts": 1, "backoff_ms": 0, "per_try_timeout_ms": 300 }"#
            try await withGateway(Self.config(targets: upstreams.map(\.port), extra: retries)) { gateway in
                let (responses, slowest) = try await Self.timedRequests(gateway, count: 4)
                #expect(Self.outcomes(responses) == ["200 b"])
                #expect(slowest >= .milliseconds(290), "requests that went to a first waited one per-try timeout")
                #expect(slowest < .milliseconds(2000))
            }
            try await withGateway(Self.config(targets: [upstreams[0].port], extra: retries)) { gateway in
                let started = ContinuousClock.now
                let response = try await gateway.request("GET", "/echo")
                let elapsed = ContinuousClock.now - started
                #expect(response.status == 504)
                #expect(response.errorCode == "UPSTREAM_TIMEOUT")
                #expect(elapsed >= .milliseconds(590), "two tries of 300 ms")
                #expect(elapsed < .milliseconds(2000))
            }
        }
    }

    // Hedging: a GET without an answer after hedge_after_ms goes to the other target too, and the first answer
    // wins. A stalled target then costs the delay, not its stall; the access log names both targets; the
    // metrics say whether the hedge won; a POST is never sent twice.
    @Test func slowRequestsAreHedged() async throws {
        try await withUpstreams(2) { upstreams in
            let (a, b) = (upstreams[0], upstreams[1])
            a.behaviour.delayMs.store(TestTime.ms(3000), ordering: .relaxed)
            let json = """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "admin": { "address": "127.0.0.1", "port": 0 },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(a.port)", "http://127.0.0.1:\(b.port)"],
                                           "retries": { "attempts": 0, "hedge_after_ms": \(TestTime.ms(150)), "budget_ratio": 1 } } },
                  "routes": [{ "name": "all", "upstream": "demo" }] }
                """
            try await withGateway(json) { gateway in
                let (responses, slowest) = try await Self.timedRequests(gateway, count: 4)
                #expect(Self.outcomes(responses) == ["200 b"])
                var targetLists: [String] = []
                for response in responses { targetLists.append(try await gateway.accessLog(for: response)["upstream"] as? String ?? "-") }
                let hedged = targetLists.filter { $0 == "127.0.0.1:\(a.port), 127.0.0.1:\(b.port)" }.count
                let direct = targetLists.filter { $0 == "127.0.0.1:\(b.port)" }.count
                #expect(hedged >= 1 && hedged + direct == 4, "\(targetLists)")
                #expect(slowest >= TestTime.duration(ms: 140), "a hedged request waited hedge_after_ms first")
                #expect(slowest < TestTime.duration(ms: 2500), "and never the stalled target's 3 s")
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_upstream_hedges_total", ["upstream": "demo", "outcome": "won"]) == Double(hedged))
                #expect(metrics.value("gateway_upstream_hedges_total", ["upstream": "demo", "outcome": "lost"]) == nil)
                // Each outpaced try counts against a's breaker, so a stalled target gets shut out.
                let slow = metrics.value("gateway_upstream_errors_total", ["upstream": "demo", "target": "127.0.0.1:\(a.port)", "kind": "slow"])
                #expect(slow == Double(hedged))

                // Not safe to send twice: a POST that goes to a waits for a's answer.
                a.behaviour.delayMs.store(TestTime.ms(600), ordering: .relaxed)
                let posts = try await Self.requests(gateway, count: 2, method: "POST", body: "order=1")
                #expect(Self.outcomes(posts) == ["200 a", "200 b"])

                // The first call answers before the hedge: the hedge loses and is cancelled.
                a.behaviour.delayMs.store(TestTime.ms(400), ordering: .relaxed)
                b.behaviour.delayMs.store(TestTime.ms(2000), ordering: .relaxed)
                let raced = try await Self.requests(gateway, count: 2)
                #expect(Self.outcomes(raced) == ["200 a"])
                let after = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                let won = after.value("gateway_upstream_hedges_total", ["upstream": "demo", "outcome": "won"]) ?? 0
                let lost = after.value("gateway_upstream_hedges_total", ["upstream": "demo", "outcome": "lost"]) ?? 0
                #expect(won + lost == Double(hedged + 2), "both requests were hedged; a answered each")
                #expect(lost >= 1)
            }

            // Outpaced tries count as failures: with a breaker, the stalled target is shut out after two.
            a.behaviour.delayMs.store(TestTime.ms(3000), ordering: .relaxed)
            b.behaviour.delayMs.store(0, ordering: .relaxed)
            let breaking = """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(a.port)", "http://127.0.0.1:\(b.port)"],
                                           "retries": { "attempts": 0, "hedge_after_ms": \(TestTime.ms(100)), "budget_ratio": 1 },
                                           "circuit_breaker": { "failure_threshold": 2, "open_ms": 60000 } } },
                  "routes": [{ "name": "all", "upstream": "demo" }] }
                """
            try await withGateway(breaking) { gateway in
                var lists: [String] = []
                for _ in 0..<6 {
                    let response = try await gateway.request("GET", "/echo")
                    #expect(Self.upstreamName(response) == "b")
                    lists.append(try await gateway.accessLog(for: response)["upstream"] as? String ?? "-")
                }
                let hedgedThenOpen = lists.filter { $0.contains(", ") }.count
                #expect(hedgedThenOpen == 2, "\(lists)")
                #expect(lists.suffix(2) == ["127.0.0.1:\(b.port)", "127.0.0.1:\(b.port)"], "a's breaker is open: no more hedges")
            }

            // Hedges spend the retry budget (at least 3 per 10 s): past it, requests wait for their one call.
            a.behaviour.delayMs.store(TestTime.ms(300), ordering: .relaxed)
            let lone = """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "admin": { "address": "127.0.0.1", "port": 0 },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(a.port)"],
                                           "retries": { "attempts": 0, "hedge_after_ms": \(TestTime.ms(100)), "budget_ratio": 0 } } },
                  "routes": [{ "name": "all", "upstream": "demo" }] }
                """
            try await withGateway(lone) { gateway in
                let responses = try await Self.requests(gateway, count: 4)
                #expect(Self.outcomes(responses) == ["200 a"])
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                let sent = ["won", "lost", "failed"].compactMap { metrics.value("gateway_upstream_hedges_total", ["upstream": "demo", "outcome": $0]) }
                #expect(sent.reduce(0, +) == 3)
                #expect(metrics.value("gateway_upstream_hedges_total", ["upstream": "demo", "outcome": "budget_exhausted"]) == 1)
            }
        }
    }

    // A target that drops requests after reading them: a GET is retried elsewhere, a POST whose body was
    // sent is not (the upstream may have acted on it).
    @Test func postIsNotRetriedAfterItsBodyWasSent() async throws {
        try await withUpstreams(2) { upstreams in
            upstreams[0].behaviour.dropRequests.store(true, ordering: .relaxed)
            let json = Self.config(targets: upstreams.map(\.port), extra: #""retries": { "attempts": 2, "backoff_ms": 0 }"#)
            try await withGateway(json) { gateway in
                let gets = try await Self.requests(gateway, count: 4)
                #expect(Self.outcomes(gets) == ["200 b"])

                let servedByB = upstreams[1].requestsServed
                var statuses: [Int] = []
                for _ in 0..<4 {
                    statuses.append(try await gateway.request("POST", "/upload", body: String(repeating: "x", count: 1000)).status)
                }
                // Round robin alternates: the POSTs that went to a fail with 502, none is replayed on b.
                #expect(statuses.sorted() == [200, 200, 502, 502])
                #expect(upstreams[1].requestsServed == servedByB + 2)
            }
        }
    }

    // A body that went out with a failed try goes out again with the retry: small bodies are kept
    // (replay_body_bytes), larger ones end the retries once sent; a POST sent whole is retried only with an
    // Idempotency-Key its upstream's retries trust.
    @Test func bodiesAreReplayedOnRetry() async throws {
        try await withUpstreams(2) { upstreams in
            let (a, b) = (upstreams[0], upstreams[1])
            a.behaviour.failStatus.store(503, ordering: .relaxed)
            let targets = #"["http://127.0.0.1:\#(a.port)", "http://127.0.0.1:\#(b.port)"]"#
            let json = """
                { "workers": 1,
                  "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": {
                    "plain": { "targets": \(targets), "retries": { "attempts": 1, "backoff_ms": 0, "on_status": [503], "budget_ratio": 1, "replay_body_bytes": 4096 } },
                    "keyed": { "targets": \(targets), "retries": { "attempts": 1, "backoff_ms": 0, "on_status": [503], "budget_ratio": 1, "idempotency_key": true } } },
                  "routes": [{ "name": "plain", "match": { "path_prefix": "/plain" }, "upstream": "plain" },
                             { "name": "keyed", "match": { "path_prefix": "/keyed" }, "upstream": "keyed" }] }
                """
            try await withGateway(json) { gateway in
                func send(_ method: String, _ path: String, bytes: Int, headers: [(String, String)] = []) async throws -> [String] {
                    var outcomes: [String] = []
                    for index in 0..<4 {
                        let body = String(repeating: Character(UnicodeScalar(UInt8(97 + index))), count: bytes)
                        let response = try await gateway.request(method, path, headers: headers, body: body)
                        let intact = response.json["body"] as? String == body
                        outcomes.append("\(response.status) \(Self.upstreamName(response) ?? "-")\(response.status == 200 && !intact ? " damaged" : "")")
                    }
                    return Set(outcomes).sorted()
                }
                let triedOnA = a.requestsServed
                let puts = try await send("PUT", "/plain/doc", bytes: 3000)
                #expect(puts == ["200 b"], "every PUT answered by b with its own body, those tried on a first included")
                #expect(a.requestsServed >= triedOnA + 2)

                let large = try await send("PUT", "/plain/doc", bytes: 10_000)
                #expect(large == ["200 b", "503 a"], "a body too large to keep is not sent twice")

                let posts = try await send("POST", "/plain/orders", bytes: 100)
                #expect(posts == ["200 b", "503 a"], "a POST sent whole may have been acted on")
                let keyed = try await send("POST", "/keyed/orders", bytes: 100, headers: [("Idempotency-Key", "order-7")])
                #expect(keyed == ["200 b"])
                let unkeyed = try await send("POST", "/keyed/orders", bytes: 100)
                #expect(unkeyed == ["200 b", "503 a"])
            }
        }
    }

    // Under a 100% failing upstream, retries stay within the budget (20% of requests, at least 3).
    @Test func retryBudgetCapsRetries() async throws {
        try await withUpstreams(1) { upstreams in
            upstreams[0].behaviour.failStatus.store(503, ordering: .relaxed)
            let json = Self.config(
                targets: [upstreams[0].port], extra: #""retries": { "attempts": 3, "backoff_ms": 0, "budget_ratio": 0.2 }"#)
            try await withGateway(json) { gateway in
                let responses = try await Self.requests(gateway, count: 100, concurrency: 4)
                #expect(Self.outcomes(responses) == ["503 a"], "the upstream's own answer passes once retries stop")
                let served = upstreams[0].requestsServed
                #expect(served >= 110, "some retries happened")
                #expect(served <= 125, "without a budget 100 requests would make 400 tries; made \(served)")
                #expect(gateway.logs.entries("retry budget exhausted").count > 0)
                // Every retry and every refusal is counted.
                let metrics = PrometheusText(gateway.gateway.prometheusText())
                #expect(metrics.value("gateway_upstream_retries_total", ["upstream": "demo", "outcome": "sent"]) == Double(served - 100))
                let refused = Double(gateway.logs.entries("retry budget exhausted").count)
                #expect(metrics.value("gateway_upstream_retries_total", ["upstream": "demo", "outcome": "budget_exhausted"]) == refused)
            }
        }
    }

    // A route's retries.attempts replaces its upstream's: 0 turns retries off for that route only.
    @Test func routeRetriesReplaceTheUpstreams() async throws {
        try await withUpstreams(2) { upstreams in
            upstreams[0].behaviour.failStatus.store(503, ordering: .relaxed)
            let json = Self.config(
                targets: upstreams.map(\.port), extra: #""retries": { "attempts": 2, "backoff_ms": 0, "budget_ratio": 1 }"#
            ).replacingOccurrences(
                of: #""routes": [{ "name": "all", "upstream": "demo" }]"#,
                with: #""routes": [{ "name": "all", "upstream": "demo" }, { "name": "once", "match": { "path_prefix": "/once" }, "upstream": "demo", "retries": { "attempts": 0 } }]"#)
            try await withGateway(json) { gateway in
                let retried = try await Self.requests(gateway, count: 6)
                #expect(Self.outcomes(retried) == ["200 b"], "the upstream's retries take every request to b")
                let once = try await Self.requests(gateway, count: 6, path: "/once/echo")
                #expect(Self.outcomes(once) == ["200 b", "503 a"], "without retries a's answers reach the client")
            }
        }
    }

    // least_request: a target whose requests pile up gets few new ones.
    @Test func leastRequestPrefersTheLessBusyTarget() async throws {
        try await withUpstreams(2) { upstreams in
            upstreams[0].behaviour.delayMs.store(400, ordering: .relaxed)
            let json = Self.config(targets: upstreams.map(\.port), extra: #""balance": "least_request""#)
            try await withGateway(json) { gateway in
                let responses = try await Self.requests(gateway, count: 60, concurrency: 4)
                let toSlow = Self.count(responses, upstream: "a")
                #expect(Self.count(responses, status: 200) == 60)
                #expect(toSlow <= 20, "round robin would send 30 to the slow target; least_request sent \(toSlow)")
            }
        }
    }

    // consistent_hash on a header: one key always reaches the same target; keys spread over both.
    @Test func consistentHashIsSticky() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(targets: upstreams.map(\.port), extra: #""balance": "consistent_hash", "hash_on": "header:x-user""#)
            try await withGateway(json) { gateway in
                var owners: [String: Set<String>] = [:]
                for round in 0..<3 {
                    for user in 0..<12 {
                        let response = try await gateway.request("GET", "/echo", headers: [("X-User", "user-\(user)")])
                        owners["user-\(user)", default: []].insert(Self.upstreamName(response) ?? "?")
                    }
                    _ = round
                }
                let ownersPerKey = Set(owners.values.map(\.count))
                let used = owners.values.reduce(into: Set<String>()) { $0.formUnion($1) }
                #expect(ownersPerKey == [1])
                #expect(used == ["a", "b"])
            }
        }
    }

    // max_requests and max_connections answer 503 beyond the cap; within max_pending_requests a request
    // waits for a connection instead.
    @Test func concurrencyCapsAnswer503() async throws {
        try await withUpstreams(1) { upstreams in
            upstreams[0].behaviour.delayMs.store(500, ordering: .relaxed)
            try await withGateway(Self.config(targets: [upstreams[0].port], extra: #""max_requests": 2"#)) { gateway in
                let responses = try await Self.requests(gateway, count: 5, concurrency: 5)
                let refused = responses.filter { $0.status == 503 }
                let retryAfters = Set(refused.map { "\($0.errorCode ?? "-") \($0.header("retry-after") ?? "-")" })
                #expect(Self.count(responses, status: 200) == 2)
                #expect(refused.count == 3)
                #expect(retryAfters == ["UPSTREAM_UNAVAILABLE 1"])
            }
            let accepted = upstreams[0].connectionsAccepted
            let json = Self.config(targets: [upstreams[0].port], extra: #""max_connections": 1, "max_pending_requests": 1"#)
            try await withGateway(json) { gateway in
                let started = ContinuousClock.now
                let responses = try await Self.requests(gateway, count: 3, concurrency: 3)
                #expect(Self.count(responses, status: 200) == 2, "one served at once, one after waiting")
                #expect(Self.count(responses, status: 503) == 1)
                #expect(ContinuousClock.now - started >= .milliseconds(950))
                #expect(upstreams[0].connectionsAccepted == accepted + 1)
            }
        }
    }

    // adaptive_concurrency over real sockets: while the idle latency is measured the limit is min_limit, and what
    // does not fit is refused at once (503, Retry-After); once measured, a fast upstream lets the limit grow; a
    // reload that keeps the settings keeps the controller.
    @Test(.timeLimit(.minutes(1))) func adaptiveConcurrencyShedsAndGrows() async throws {
        try await withUpstreams(1) { upstreams in
            func routes(_ adaptive: String) -> String {
                #"[{ "name": "slow", "match": { "path_prefix": "/slow" }, "upstream": "demo", "strip_prefix": "/slow", "adaptive_concurrency": { "min_limit": 2, "min_rtt_requests": 1000 } },"#
                    + #" { "name": "fast", "upstream": "demo", "adaptive_concurrency": \#(adaptive) }]"#
            }
            let adaptive = #"{ "min_limit": 2, "min_rtt_requests": 5, "update_interval_ms": 10, "buffer_percent": 100 }"#
            try await withGateway(basicConfig(routes: routes(adaptive)), upstreams: upstreams) { gateway in
                // Pinned to 2 while measuring: two slow requests in flight, a third is refused at once.
                let slow = Task { try await Self.requests(gateway, count: 2, concurrency: 2, path: "/slow/slow?ms=400") }
                try await Task.sleep(for: .milliseconds(150))
                let started = ContinuousClock.now
                let third = try await gateway.request("GET", "/slow/echo")
                #expect(third.status == 503 && third.errorCode == "UPSTREAM_UNAVAILABLE" && third.header("retry-after") == "1")
                #expect(ContinuousClock.now - started < .milliseconds(300), "refused at once, not queued")
                let served = try await slow.value
                #expect(served.map(\.status) == [200, 200])
                #expect(Self.metric(gateway, "gateway_adaptive_concurrency_refused_total", ["route": "slow"]) == 1)

                // A fast upstream: after five requests the idle latency is known, and the limit grows past 2.
                var limit = 2.0
                for _ in 0..<60 where limit <= 2 {
                    #expect(try await gateway.request("GET", "/echo").status == 200)
                    try await Task.sleep(for: .milliseconds(15))
                    limit = Self.metric(gateway, "gateway_adaptive_concurrency_limit", ["route": "fast"]) ?? 0
                }
                #expect(limit > 2)
                #expect((Self.metric(gateway, "gateway_adaptive_concurrency_min_rtt_seconds", ["route": "fast"]) ?? 0) > 0)

                // The same settings after a reload: the same controller (a new one would start at 2 again).
                try await gateway.gateway.reload(config: makeConfig(basicConfig(routes: routes(adaptive)), upstreams: upstreams))
                #expect(Self.metric(gateway, "gateway_adaptive_concurrency_limit", ["route": "fast"]) == limit)
                let changed = #"{ "min_limit": 3, "min_rtt_requests": 5, "update_interval_ms": 10, "buffer_percent": 100 }"#
                try await gateway.gateway.reload(config: makeConfig(basicConfig(routes: routes(changed)), upstreams: upstreams))
                #expect(Self.metric(gateway, "gateway_adaptive_concurrency_limit", ["route": "fast"]) == 3, "new settings: measured again")
            }
        }
    }

    static func metric(_ gateway: TestGateway, _ name: String, _ labels: [String: String]) -> Double? {
        PrometheusText(gateway.gateway.prometheusText()).value(name, labels)
    }

    // Active health checks take a failing target out of rotation and put it back once it passes again.
    @Test func healthChecksMarkTargetsOutAndIn() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(
                targets: upstreams.map(\.port),
                extra: #""health_check": { "path": "/healthz", "interval_ms": 100, "timeout_ms": 200, "unhealthy_threshold": 2, "healthy_threshold": 2 }"#)
            try await withGateway(json) { gateway in
                upstreams[0].behaviour.healthStatus.store(503, ordering: .relaxed)
                try await waitUntil { Self.state(gateway, target: upstreams[0].port)?.healthy == false }
                let out = try await Self.requests(gateway, count: 10)
                #expect(Self.outcomes(out) == ["200 b"])
                #expect(gateway.logs.entries("upstream target unhealthy").count == 1)

                upstreams[0].behaviour.healthStatus.store(200, ordering: .relaxed)
                try await waitUntil { Self.state(gateway, target: upstreams[0].port)?.healthy == true }
                let back = try await Self.requests(gateway, count: 10)
                #expect(Self.outcomes(back) == ["200 a", "200 b"])
                #expect(gateway.logs.entries("upstream target healthy").count == 1)
            }
        }
    }

    // A check whose connection closes unanswered fails at once ("closed without an answer"), not at its timeout.
    @Test func healthCheckClosedUnansweredFailsAtOnce() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.config(
                targets: upstreams.map(\.port),
                extra: #""health_check": { "path": "/echo", "interval_ms": 100, "timeout_ms": 30000, "unhealthy_threshold": 1, "healthy_threshold": 1 }"#)
            try await withGateway(json) { gateway in
                upstreams[0].behaviour.dropRequests.store(true, ordering: .relaxed)
                // The log line follows the state change: wait for the line itself.
                try await waitUntil { !gateway.logs.entries("upstream target unhealthy").isEmpty }
                #expect(Self.state(gateway, target: upstreams[0].port)?.healthy == false)
                let detail = gateway.logs.entries("upstream target unhealthy").first?["last_check"] as? String
                #expect(detail == "closed without an answer")
            }
        }
    }

    // health_check.expected_statuses decides what passes (here a 418 is healthy, a 200 is not), and host and
    // headers go with every check.
    @Test func healthCheckStatusesHostAndHeaders() async throws {
        try await withUpstreams(2) { upstreams in
            let check = #""health_check": { "path": "/status/418", "expected_statuses": [418, "2xx"], "interval_ms": 100, "unhealthy_threshold": 1, "healthy_threshold": 1 }"#
            try await withGateway(Self.config(targets: upstreams.map(\.port), extra: check)) { gateway in
                try await Task.sleep(for: TestTime.duration(ms: 400))
                #expect(Self.state(gateway, target: upstreams[0].port)?.healthy == true, "418 is expected here")
            }
            let strict = #""health_check": { "path": "/status/200", "expected_statuses": [204], "interval_ms": 100, "unhealthy_threshold": 1 }"#
            try await withGateway(Self.config(targets: upstreams.map(\.port), extra: strict)) { gateway in
                try await waitUntil { Self.state(gateway, target: upstreams[0].port)?.healthy == false }
                #expect(try await gateway.request("GET", "/echo").status == 503)
            }
            let withHeaders = #""health_check": { "path": "/auth", "host": "health.internal", "headers": { "Authorization": "Bearer alice-token" }, "interval_ms": 100 }"#
            try await withGateway(Self.config(targets: [upstreams[0].port], extra: withHeaders)) { _ in
                try await waitUntil { !upstreams[0].behaviour.authChecks.withLockedValue { $0 }.isEmpty }
                let first = upstreams[0].behaviour.authChecks.withLockedValue { $0 }.first ?? ""
                let lines = first.components(separatedBy: "\n")
                #expect(lines.contains("host: health.internal"))
                #expect(lines.contains("authorization: Bearer alice-token"))
            }
        }
    }
}

/// Polls `condition` every 20 ms for up to `timeout`.
func waitUntil(timeout: Duration = TestTime.seconds(5), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(timeout)")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
