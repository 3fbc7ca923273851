import DemoUpstream
import Foundation
import Testing

/// Traffic between versions of a service, against real upstreams on 127.0.0.1: a route's `split` (canary
/// releases) and `mirror` (shadow traffic).
@Suite(.serialized) struct TrafficTests {
    /// Upstreams "v1" (a) and "v2" (b) and one route splitting between them with `split` (and `route` extra keys).
    static func splitConfig(_ upstreams: [DemoUpstream], split: String, route: String = "") -> String {
        """
        { "workers": 1,
          "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
          "upstreams": { "v1": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] },
                         "v2": { "targets": ["http://127.0.0.1:\(upstreams[1].port)"] } },
          "routes": [{ "name": "canary", "split": \(split) \(route) }] }
        """
    }

    // A route's split sends requests to its upstreams by weight; weight 0 takes an upstream out.
    @Test func splitSharesTrafficByWeight() async throws {
        try await withUpstreams(2) { upstreams in
            let even = Self.splitConfig(upstreams, split: #"{ "upstreams": [{ "name": "v1", "weight": 1 }, { "name": "v2", "weight": 1 }] }"#)
            try await withGateway(even) { gateway in
                let responses = try await ResilienceTests.requests(gateway, count: 200, concurrency: 4)
                let toB = ResilienceTests.count(responses, upstream: "b")
                #expect(ResilienceTests.count(responses, status: 200) == 200)
                // Binomial(200, 1/2): outside 60...140 about once in 10^8 runs.
                #expect((60...140).contains(toB), "expected about 100 of 200 on v2, got \(toB)")
            }
            let drained = Self.splitConfig(upstreams, split: #"{ "upstreams": [{ "name": "v1", "weight": 0 }, { "name": "v2", "weight": 5 }] }"#)
            try await withGateway(drained) { gateway in
                let responses = try await ResilienceTests.requests(gateway, count: 40, concurrency: 4)
                #expect(ResilienceTests.outcomes(responses) == ["200 b"])
            }
        }
    }

    // sticky_cookie: the first answer names its target in a cookie; with it, every request goes back to that target
    // (no new cookie), across a gateway restart too; a drained target hands the client to another one, which
    // says so with a new cookie; a cookie naming no target is balanced like none.
    @Test func stickyCookieKeepsAClientOnItsTarget() async throws {
        try await withUpstreams(2) { upstreams in
            let json = """
                { "workers": 1,
                  "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "pool": { "targets": ["http://127.0.0.1:\(upstreams[0].port)", "http://127.0.0.1:\(upstreams[1].port)"],
                                           "sticky_cookie": { "name": "gw_sticky", "max_age_seconds": 600 } } },
                  "routes": [{ "name": "all", "upstream": "pool" }] }
                """
            var cookie = ""
            var owner = ""
            try await withGateway(json) { gateway in
                let first = try await gateway.request("GET", "/echo")
                let setCookie = try #require(first.header("set-cookie"))
                #expect(setCookie.hasSuffix("; Path=/; HttpOnly; SameSite=Lax; Max-Age=600"), "\(setCookie)")
                cookie = String(setCookie.prefix { $0 != ";" })
                #expect(cookie.hasPrefix("gw_sticky=") && cookie.count == "gw_sticky=".count + 16)
                owner = ResilienceTests.upstreamName(first) ?? "?"
                for _ in 0..<8 {
                    let again = try await gateway.request("GET", "/echo", headers: [("Cookie", "theme=dark; \(cookie)")])
                    #expect(ResilienceTests.upstreamName(again) == owner)
                    #expect(again.header("set-cookie") == nil, "already on its target")
                }
            }
            try await withGateway(json) { gateway in
                let afterRestart = try await gateway.request("GET", "/echo", headers: [("Cookie", cookie)])
                #expect(ResilienceTests.upstreamName(afterRestart) == owner, "the cookie names the same target in another instance")

                let ownerPort = owner == "a" ? upstreams[0].port : upstreams[1].port
                #expect(gateway.gateway.setDrained(upstream: "pool", target: "127.0.0.1:\(ownerPort)", drained: true))
                let moved = try await gateway.request("GET", "/echo", headers: [("Cookie", cookie)])
                #expect(ResilienceTests.upstreamName(moved) != owner)
                let newCookie = moved.header("set-cookie").map { String($0.prefix { $0 != ";" }) }
                #expect(newCookie != nil && newCookie != cookie, "the new target names itself")

                let stale = try await ResilienceTests.requests(gateway, count: 1, headers: [("Cookie", "gw_sticky=0000000000000000")])
                #expect(ResilienceTests.count(stale, status: 200) == 1)
            }
        }
    }

    // fault: an abort answers instead of the upstream (which never hears of it), a delay holds the request back,
    // and percentages pick a share of the requests.
    @Test func faultsAreInjected() async throws {
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "down", "match": { "path_prefix": "/down" }, "upstream": "demo", "fault": { "abort": { "status": 503 } } },
                 { "name": "slow", "match": { "path_prefix": "/slow-path" }, "upstream": "demo", "fault": { "delay": { "ms": 300 } } },
                 { "name": "flaky", "match": { "path_prefix": "/flaky" }, "upstream": "demo", "fault": { "abort": { "status": 500, "percent": 50 } } },
                 { "name": "healthy", "upstream": "demo", "fault": { "abort": { "status": 500, "percent": 0 }, "delay": { "ms": 5000, "percent": 0 } } }]
                """#
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let before = try await gateway.request("GET", "/stats")
                let served = before.json["requests"] as? Int ?? -1
                let down = try await gateway.request("GET", "/down/x")
                #expect(down.status == 503 && down.errorCode == "FAULT_INJECTED")
                #expect(down.header("x-request-id") != nil)
                let after = try await gateway.request("GET", "/stats")
                #expect(after.json["requests"] as? Int == served + 1, "only the /stats request reached the upstream")

                let start = ContinuousClock.now
                let slow = try await gateway.request("GET", "/slow-path/echo")
                #expect(slow.status == 200)
                #expect(ContinuousClock.now - start >= .milliseconds(300))

                let flaky = try await ResilienceTests.requests(gateway, count: 200, concurrency: 4, path: "/flaky/echo")
                let failed = ResilienceTests.count(flaky, status: 500)
                // Binomial(200, 1/2): outside 60...140 about once in 10^8 runs.
                #expect((60...140).contains(failed) && failed + ResilienceTests.count(flaky, status: 200) == 200, "\(failed) of 200 aborted")

                let healthy = try await ResilienceTests.requests(gateway, count: 20, concurrency: 4)
                #expect(ResilienceTests.outcomes(healthy) == ["200 a"])
            }
        }
    }

    // sticky_on keeps each key on one upstream (across gateway restarts too: the hash is stable); keys spread
    // over both; a request without the key is drawn at random.
    @Test func splitIsStickyOnAKey() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.splitConfig(upstreams, split: #"{ "upstreams": [{ "name": "v1" }, { "name": "v2" }], "sticky_on": "cookie:session" }"#)
            var firstOwners: [String: String] = [:]
            for restart in 0..<2 {
                try await withGateway(json) { gateway in
                    for user in 0..<16 {
                        for _ in 0..<3 {
                            let response = try await gateway.request("GET", "/echo", headers: [("Cookie", "theme=dark; session=user-\(user)")])
                            let owner = ResilienceTests.upstreamName(response) ?? "?"
                            if restart == 0 && firstOwners["user-\(user)"] == nil { firstOwners["user-\(user)"] = owner }
                            #expect(owner == firstOwners["user-\(user)"], "user-\(user) moved (restart \(restart))")
                        }
                    }
                    let anonymous = try await ResilienceTests.requests(gateway, count: 60, concurrency: 2)
                    #expect(ResilienceTests.outcomes(anonymous) == ["200 a", "200 b"], "requests without the cookie are drawn at random")
                }
            }
            #expect(Set(firstOwners.values) == ["a", "b"])
        }
    }

    // set_cookie: a client without the cookie gets one (unreadable by scripts), and sending it back stays on
    // the upstream it was drawn for.
    @Test func splitSetsItsCookie() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.splitConfig(
                upstreams, split: #"{ "upstreams": [{ "name": "v1" }, { "name": "v2" }], "sticky_on": "cookie:canary", "set_cookie": true }"#)
            try await withGateway(json) { gateway in
                var owners: Set<String> = []
                for _ in 0..<20 {
                    let first = try await gateway.request("GET", "/echo")
                    let setCookie = try #require(first.header("set-cookie"))
                    #expect(setCookie.hasPrefix("canary="))
                    #expect(setCookie.hasSuffix("; Path=/; HttpOnly; SameSite=Lax"))
                    let pair = String(setCookie.prefix { $0 != ";" })
                    let owner = ResilienceTests.upstreamName(first) ?? "?"
                    owners.insert(owner)
                    for _ in 0..<3 {
                        let again = try await gateway.request("GET", "/echo", headers: [("Cookie", "theme=dark; " + pair)])
                        #expect(ResilienceTests.upstreamName(again) == owner)
                        #expect(again.header("set-cookie") == nil)
                    }
                }
                // 20 fresh clients on one side only: about once in 500,000 runs.
                #expect(owners == ["a", "b"])
            }
        }
    }

    // On a cached split route each upstream keeps its own copy: a client on v2 never gets v1's answer.
    @Test func splitKeepsCachedAnswersApart() async throws {
        try await withUpstreams(2) { upstreams in
            let json = Self.splitConfig(
                upstreams, split: #"{ "upstreams": [{ "name": "v1" }, { "name": "v2" }], "sticky_on": "header:x-user" }"#,
                route: #", "cache": { "enabled": true }"#)
            try await withGateway(json) { gateway in
                // Two users that the split puts on different upstreams.
                var users: [String: String] = [:]
                for user in 0..<32 where users.count < 2 {
                    let response = try await gateway.request("GET", "/echo", headers: [("X-User", "u\(user)")])
                    let owner = ResilienceTests.upstreamName(response) ?? "?"
                    if users[owner] == nil { users[owner] = "u\(user)" }
                }
                let userA = try #require(users["a"])
                let userB = try #require(users["b"])
                let path = "/cacheable?cc=max-age%3D60"
                let firstA = try await gateway.request("GET", path, headers: [("X-User", userA)])
                let firstB = try await gateway.request("GET", path, headers: [("X-User", userB)])
                let againA = try await gateway.request("GET", path, headers: [("X-User", userA)])
                let againB = try await gateway.request("GET", path, headers: [("X-User", userB)])
                let cacheStates = [firstA, firstB, againA, againB].map { $0.header("x-cache") ?? "-" }
                let servedBy = [firstA, firstB, againA, againB].map { ResilienceTests.upstreamName($0) ?? "-" }
                #expect(cacheStates == ["MISS", "MISS", "HIT", "HIT"])
                #expect(servedBy == ["a", "b", "a", "b"])
                // A change through one version invalidates both copies (they share the state it changed).
                let post = try await gateway.request("POST", path, headers: [("X-User", userA)], body: "x")
                #expect(post.status == 200)
                let afterA = try await gateway.request("GET", path, headers: [("X-User", userA)])
                let afterB = try await gateway.request("GET", path, headers: [("X-User", userB)])
                let afterStates = [afterA, afterB].map { $0.header("x-cache") ?? "-" }
                #expect(afterStates == ["MISS", "MISS"])
            }
        }
    }

    // MARK: mirror

    /// Upstream "live" (a) serving the route and "shadow" (b) getting its copies; `mirror` extra keys.
    static func mirrorConfig(_ upstreams: [DemoUpstream], mirror: String = "", shadowTarget: Int? = nil) -> String {
        """
        { "workers": 1,
          "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
          "admin": { "address": "127.0.0.1", "port": 0 },
          "upstreams": { "live": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] },
                         "shadow": { "targets": ["http://127.0.0.1:\(shadowTarget ?? upstreams[1].port)"], "read_timeout_ms": 5000 } },
          "routes": [{ "name": "mirrored", "upstream": "live", "mirror": { "upstream": "shadow" \(mirror) } }] }
        """
    }

    /// Waits (up to 5 s) until `condition` holds; the mirror's copy may land just after the client's answer.
    static func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<100 {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    /// `gateway_mirror_requests_total` of the route "mirrored" for `outcome`.
    static func mirrorOutcomes(_ gateway: TestGateway, _ outcome: String) async throws -> Double? {
        let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
        return metrics.value("gateway_mirror_requests_total", ["route": "mirrored", "outcome": outcome])
    }

    static func collected(_ upstream: DemoUpstream) -> [String] { upstream.behaviour.collected.withLockedValue { $0 }.sorted() }

    // Every forwarded request reaches the mirror too, body included (Content-Length and chunked); the client
    // gets the live upstream's answer.
    @Test func mirrorGetsACopyOfEachRequest() async throws {
        try await withUpstreams(2) { upstreams in
            try await withGateway(Self.mirrorConfig(upstreams)) { gateway in
                for index in 0..<8 {
                    let response = try await gateway.request("POST", "/v1/traces", body: "span-\(index)")
                    #expect(response.status == 200)
                }
                let client = try await RawClient.connect(port: gateway.port)
                try await client.send("POST /v1/traces HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n3\r\ned!\r\n0\r\n\r\n")
                #expect(try await client.readResponse().status == 200)
                await client.close()
                let echo = try await gateway.request("GET", "/echo")
                #expect(ResilienceTests.upstreamName(echo) == "a")
                let expected = (0..<8).map { "span-\($0)" } + ["chunked!"]
                let copied = try await Self.eventually { Self.collected(upstreams[1]).count == expected.count }
                #expect(copied)
                #expect(Self.collected(upstreams[0]) == expected.sorted())
                #expect(Self.collected(upstreams[1]) == expected.sorted())
                #expect(upstreams[1].requestsServed == 10)
            }
        }
    }

    // A slow, failing or absent mirror changes nothing for the client: the answer is the live upstream's, as fast.
    @Test func mirrorNeverHoldsTheRequestBack() async throws {
        try await withUpstreams(2) { upstreams in
            upstreams[1].behaviour.delayMs.store(3000, ordering: .relaxed)
            try await withGateway(Self.mirrorConfig(upstreams)) { gateway in
                let started = ContinuousClock.now
                let responses = try await ResilienceTests.requests(gateway, count: 10, concurrency: 2)
                #expect(ResilienceTests.outcomes(responses) == ["200 a"])
                #expect(ContinuousClock.now - started < .seconds(2), "the mirror's 3 s delay must not reach the client")
            }
            upstreams[1].behaviour.delayMs.store(0, ordering: .relaxed)
            upstreams[1].behaviour.failStatus.store(503, ordering: .relaxed)
            try await withGateway(Self.mirrorConfig(upstreams)) { gateway in
                let responses = try await ResilienceTests.requests(gateway, count: 10)
                #expect(ResilienceTests.outcomes(responses) == ["200 a"])
            }
            // Nothing listens on the mirror's port (1, tcpmux: refused at once on 127.0.0.1).
            try await withGateway(Self.mirrorConfig(upstreams, shadowTarget: 1)) { gateway in
                let responses = try await ResilienceTests.requests(gateway, count: 10)
                #expect(ResilienceTests.outcomes(responses) == ["200 a"])
                let failed = try await Self.eventually { try await Self.mirrorOutcomes(gateway, "failed") == 10 }
                #expect(failed, "gateway_mirror_requests_total{outcome=failed} counts the refused copies")
            }
        }
    }

    // The copy goes whatever becomes of the real request: here the live upstream is at its max_requests and
    // refuses the second request at once (503), and the mirror still gets both.
    @Test func mirrorGetsRefusedRequestsToo() async throws {
        try await withUpstreams(2) { upstreams in
            upstreams[0].behaviour.delayMs.store(500, ordering: .relaxed)
            let json = Self.mirrorConfig(upstreams).replacingOccurrences(
                of: #""live": { "targets": ["http://127.0.0.1:\#(upstreams[0].port)"] }"#,
                with: #""live": { "targets": ["http://127.0.0.1:\#(upstreams[0].port)"], "max_requests": 1 }"#)
            try await withGateway(json) { gateway in
                let responses = try await ResilienceTests.requests(gateway, count: 2, concurrency: 2, path: "/echo")
                let statuses = responses.map(\.status).sorted()
                #expect(statuses == [200, 503])
                let copied = try await Self.eventually { upstreams[1].requestsServed == 2 }
                #expect(copied, "the mirror served \(upstreams[1].requestsServed)")
            }
        }
    }

    // percent copies a share of the requests: 0 none, 50 about half.
    @Test func mirrorCopiesAShare() async throws {
        try await withUpstreams(2) { upstreams in
            try await withGateway(Self.mirrorConfig(upstreams, mirror: #", "percent": 0"#)) { gateway in
                _ = try await ResilienceTests.requests(gateway, count: 20, concurrency: 2)
            }
            #expect(upstreams[1].requestsServed == 0)
            try await withGateway(Self.mirrorConfig(upstreams, mirror: #", "percent": 50"#)) { gateway in
                _ = try await ResilienceTests.requests(gateway, count: 200, concurrency: 4)
                // Binomial(200, 1/2): outside 60...140 about once in 10^8 runs.
                let settled = try await Self.eventually { upstreams[1].requestsServed >= 60 }
                #expect(settled)
                try await Task.sleep(for: .milliseconds(200))
                #expect((60...140).contains(upstreams[1].requestsServed), "copied \(upstreams[1].requestsServed) of 200")
            }
        }
    }

    // A request whose body never completes (the client leaves) must not reach the mirror as a complete one.
    @Test func mirrorDropsACutRequest() async throws {
        try await withUpstreams(2) { upstreams in
            try await withGateway(Self.mirrorConfig(upstreams)) { gateway in
                let client = try await RawClient.connect(port: gateway.port)
                try await client.send("POST /v1/traces HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\ncut-short")
                try await Task.sleep(for: .milliseconds(300))
                await client.close()
                _ = try await gateway.request("POST", "/v1/traces", body: "whole")
                let copied = try await Self.eventually { Self.collected(upstreams[1]).count == 1 }
                #expect(copied)
                try await Task.sleep(for: .milliseconds(300))
                #expect(Self.collected(upstreams[1]) == ["whole"])
                #expect(Self.collected(upstreams[0]) == ["whole"])
                #expect(try await Self.mirrorOutcomes(gateway, "dropped") == 1)
                #expect(try await Self.mirrorOutcomes(gateway, "answered") == 1)
            }
        }
    }
}
