import DemoUpstream
import Foundation
import Testing

/// `external_auth`: every request of a route is first put to an authorization service (the demo upstream's
/// `/auth`, an oauth2-proxy stand-in) over real sockets; upstream a is the application, upstream b the service.
@Suite struct ExternalAuthTests {
    static func config(_ upstreams: [DemoUpstream], service: String = "", route: String = "", authTarget: Int? = nil) -> String {
        """
        { "workers": 1,
          "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
          "admin": { "address": "127.0.0.1", "port": 0 },
          "external_auth": { "sso": { "upstream": "auth", "path": "/auth",
                                      "upstream_headers": ["x-auth-request-user", "x-auth-request-email", "remote-groups"],
                                      "consumer_header": "x-auth-request-user" \(service) } },
          "upstreams": { "app": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] },
                         "auth": { "targets": ["http://127.0.0.1:\(authTarget ?? upstreams[1].port)"], "retries": { "attempts": 0 } } },
          "routes": [{ "name": "private", "match": { "path_prefix": "/" }, "upstream": "app", "external_auth": "sso" \(route) }] }
        """
    }

    /// The checks the service got, each as its request line and `name: value` lines.
    static func checks(_ service: DemoUpstream) -> [[String]] {
        service.behaviour.authChecks.withLockedValue { $0 }.map { $0.components(separatedBy: "\n") }
    }

    static func checkOutcomes(_ gateway: TestGateway, _ outcome: String) async throws -> Double? {
        let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
        return metrics.value("gateway_external_auth_checks_total", ["service": "sso", "outcome": outcome])
    }

    // An allowed request reaches the upstream with the identity the service vouched for (and nothing else of its
    // answer); the service saw the client's credentials and what it asked for, without its body.
    @Test func allowedRequestsCarryTheServicesIdentity() async throws {
        try await withUpstreams(2) { upstreams in
            try await withGateway(Self.config(upstreams)) { gateway in
                let response = try await gateway.request(
                    "POST", "/echo?page=2", headers: [
                        ("Authorization", "Bearer alice-token"), ("Remote-Groups", "admins"), ("X-Auth-Request-User", "mallory"),
                        ("X-Forwarded-Uri", "/admin"), ("Forwarded", "for=6.6.6.6;proto=https"),
                    ],
                    body: "order=7")
                #expect(response.status == 200)
                #expect(ResilienceTests.upstreamName(response) == "a")
                let seen = response.echoedHeaders
                #expect(seen["x-auth-request-user"] == "alice")
                #expect(seen["x-auth-request-email"] == "alice@example.com")
                #expect(seen["remote-groups"] == nil, "a client-sent field the service did not set must not pass")
                #expect(seen["x-internal-note"] == nil, "only upstream_headers are copied from the answer")
                #expect(response.json["body"] as? String == "order=7")

                let checks = Self.checks(upstreams[1])
                #expect(checks.count == 1)
                let check = try #require(checks.first)
                #expect(check.first == "GET /auth")
                #expect(check.contains("authorization: Bearer alice-token"))
                #expect(check.contains("x-forwarded-method: POST"))
                let names = check.dropFirst().map { String($0.prefix { $0 != ":" }) }
                let forwardedURIs = check.filter { $0.hasPrefix("x-forwarded-uri:") }
                #expect(forwardedURIs == ["x-forwarded-uri: /echo?page=2"], "the gateway says what was asked")
                #expect(check.contains("x-forwarded-host: test.local"))
                #expect(check.contains("x-forwarded-proto: http"))
                #expect(check.contains("x-forwarded-for: 127.0.0.1"))
                #expect(check.contains("x-request-id: \(response.header("x-request-id") ?? "?")"))
                let traceparent = check.first { $0.hasPrefix("traceparent:") }
                #expect(traceparent?.hasPrefix("traceparent: 00-") == true)
                #expect(check.contains("remote-groups: admins"), "the service sees the client's fields")
                #expect(!names.contains("x-auth-request-user"), "client-sent identity fields are gone before any check")
                #expect(!names.contains("forwarded"), "a client's Forwarded never reaches the service")
                #expect(!names.contains("content-length") && !names.contains("transfer-encoding"), "a check has no body")

                // A session cookie works as well; the access log names the consumer from consumer_header.
                let cookie = try await gateway.request("GET", "/echo", headers: [("Cookie", "theme=dark; session=alice")])
                #expect(cookie.status == 200)
                let entry = try await gateway.accessLog(for: cookie)
                #expect(entry["consumer"] as? String == "alice")
                #expect(try await Self.checkOutcomes(gateway, "allowed") == 2)
            }
        }
    }

    // A refusal goes back to the client as the service made it (a login redirect, a 401 with its challenge and
    // body); a bare 403 becomes the gateway's JSON error. The application never sees these requests.
    @Test func refusalsGoBackToTheClient() async throws {
        try await withUpstreams(2) { upstreams in
            try await withGateway(Self.config(upstreams)) { gateway in
                let anonymous = try await gateway.request("GET", "/orders")
                #expect(anonymous.status == 401)
                #expect(anonymous.header("www-authenticate") == #"Bearer realm="demo""#)
                #expect(anonymous.header("content-type") == "application/json")
                #expect(anonymous.json["error"] as? String == "login required")
                #expect(anonymous.header("x-request-id") != nil)
                #expect(anonymous.header("x-content-type-options") == "nosniff", "security headers go on refusals too")

                let browser = try await gateway.request("GET", "/orders?id=3", headers: [("Accept", "text/html,application/xhtml+xml")])
                #expect(browser.status == 302)
                #expect(browser.header("location") == "/login?rd=/orders?id=3")
                #expect(browser.header("set-cookie") == "login_state=started; HttpOnly")
                #expect(browser.body.isEmpty)

                let forbidden = try await gateway.request("POST", "/orders", headers: [("Authorization", "Bearer forbidden")], body: "x")
                #expect(forbidden.status == 403)
                #expect(forbidden.errorCode == "FORBIDDEN")
                #expect(forbidden.errorRequestID == forbidden.header("x-request-id"))

                #expect(upstreams[0].requestsServed == 0)
                #expect(try await Self.checkOutcomes(gateway, "denied") == 3)
            }
        }
    }

    // No usable answer (a 500, nothing listening, too slow): 503 AUTH_UNAVAILABLE by default, and the request
    // goes on without identity with on_error "allow".
    @Test func serviceFailuresFollowOnError() async throws {
        try await withUpstreams(2) { upstreams in
            try await withGateway(Self.config(upstreams)) { gateway in
                let broken = try await gateway.request("GET", "/echo", headers: [("Authorization", "Bearer broken")])
                #expect(broken.status == 503)
                #expect(broken.errorCode == "AUTH_UNAVAILABLE")
                #expect(broken.header("retry-after") == "1")
                #expect(try await Self.checkOutcomes(gateway, "error") == 1)
            }
            // Nothing listens on port 1 (refused at once on 127.0.0.1).
            try await withGateway(Self.config(upstreams, authTarget: 1)) { gateway in
                let refused = try await gateway.request("GET", "/echo", headers: [("Authorization", "Bearer alice-token")])
                #expect(refused.status == 503)
                #expect(refused.errorCode == "AUTH_UNAVAILABLE")
            }
            upstreams[1].behaviour.delayMs.store(3000, ordering: .relaxed)
            try await withGateway(Self.config(upstreams, service: #", "timeout_ms": 200"#)) { gateway in
                let started = ContinuousClock.now
                let slow = try await gateway.request("GET", "/echo", headers: [("Authorization", "Bearer alice-token")])
                #expect(slow.status == 503)
                #expect(slow.errorCode == "AUTH_UNAVAILABLE")
                #expect(ContinuousClock.now - started < .seconds(2), "timeout_ms bounds the check")
            }
            try await withGateway(Self.config(upstreams, service: #", "timeout_ms": 200, "on_error": "allow""#)) { gateway in
                let through = try await gateway.request("GET", "/echo", headers: [("Authorization", "Bearer alice-token"), ("Remote-Groups", "admins")])
                #expect(through.status == 200)
                #expect(ResilienceTests.upstreamName(through) == "a")
                #expect(through.echoedHeaders["remote-groups"] == nil, "no answer vouches for anything the client sent")
                #expect(through.echoedHeaders["x-auth-request-user"] == nil)
                #expect(try await Self.checkOutcomes(gateway, "error_allowed") == 1)
            }
        }
    }

    // The check runs before the route's rate limits: refused requests spend nothing of the client's allowance.
    @Test func refusedRequestsSpendNoRateLimit() async throws {
        try await withUpstreams(2) { upstreams in
            let limit = #", "rate_limits": [{ "name": "per-ip", "algorithm": "token_bucket", "key": "ip", "capacity": 2, "refill_per_second": 0.001 }]"#
            try await withGateway(Self.config(upstreams, route: limit)) { gateway in
                for _ in 0..<3 {
                    #expect(try await gateway.request("GET", "/echo").status == 401)
                }
                var statuses: [Int] = []
                for _ in 0..<3 {
                    statuses.append(try await gateway.request("GET", "/echo", headers: [("Authorization", "Bearer alice-token")]).status)
                }
                #expect(statuses == [200, 200, 429])
            }
        }
    }
}
