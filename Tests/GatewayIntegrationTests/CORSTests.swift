import DemoUpstream
import Foundation
import Testing

/// Route-level `cors` over real sockets: preflights answered by the gateway before authentication, allowed
/// origins marked on every response (errors included), the upstream's own CORS answers replaced.
@Suite(.serialized) struct CORSTests {
    static let apiKey = "gw_cors-test-key"
    static let app = "https://app.example.com"

    static func config() -> String {
        basicConfig(
            routes: #"""
                [{ "name": "api", "match": { "path_prefix": "/api", "methods": ["GET", "POST", "DELETE"] }, "upstream": "demo",
                   "strip_prefix": "/api", "auth": { "require": ["api_key"] },
                   "cors": { "allow_origins": ["https://app.example.com", "https://*.partner.test:8443"], "allow_methods": ["GET", "POST"],
                             "allow_headers": ["Content-Type", "X-API-Key"], "expose_headers": ["X-Request-ID", "RateLimit"],
                             "allow_credentials": true, "max_age_seconds": 600 } },
                 { "name": "open", "match": { "path_prefix": "/open" }, "upstream": "demo", "strip_prefix": "/open",
                   "cors": { "allow_origins": ["*"], "allow_headers": ["*"] } },
                 { "name": "cached", "match": { "path_prefix": "/cached" }, "upstream": "demo", "strip_prefix": "/cached",
                   "cache": { "enabled": true }, "cors": { "allow_origins": ["https://app.example.com"] } },
                 { "name": "plain", "upstream": "demo" }]
                """#,
            top: #""auth": { "api_keys": [{ "id": "web-app", "sha256": "\#(APIKeyDigest.hex(apiKey))", "scopes": ["x"] }] },"#)
    }

    // Routes taking credentials browsers send by themselves (here Basic passwords) are protected without asking;
    // csrf: false opts out.
    @Test func csrfIsOnWhereBrowsersSendCredentials() async throws {
        let routes = #"""
            [{ "name": "ops", "match": { "path_prefix": "/ops" }, "upstream": "demo", "auth": { "require": ["basic"] } },
             { "name": "legacy", "match": { "path_prefix": "/legacy" }, "upstream": "demo", "auth": { "require": ["basic"] }, "csrf": false }]
            """#
        let top = #""auth": { "basic": { "users": [{ "username": "ops", "password_hash": "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e" }] } },"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { gateway in
                let forged = [("Origin", "https://evil.test"), ("Sec-Fetch-Site", "cross-site")]
                let protected = try await gateway.request("POST", "/ops/restart", headers: forged, body: "x=1")
                #expect(protected.status == 403 && protected.errorCode == "CROSS_ORIGIN_REQUEST_REFUSED")
                let optedOut = try await gateway.request("POST", "/legacy/restart", headers: forged, body: "x=1")
                #expect(optedOut.status == 401, "no csrf check: authentication answers")
            }
        }
    }

    // csrf: a browser's cross-site POST is refused before authentication (403 JSON, no upstream call); the same
    // request from the site itself, from a non-browser client, from a trusted or CORS-allowed origin, and any
    // GET pass. report_only lets everything through and counts what it would have refused.
    @Test func csrfRefusesCrossSiteWrites() async throws {
        let routes = #"""
            [{ "name": "forms", "match": { "path_prefix": "/forms" }, "upstream": "demo", "strip_prefix": "/forms",
               "csrf": { "trusted_origins": ["https://partner.example.net"] }, "auth": { "require": ["api_key"] },
               "cors": { "allow_origins": ["https://app.example.com"] } },
             { "name": "watch", "match": { "path_prefix": "/watch" }, "upstream": "demo", "strip_prefix": "/watch",
               "csrf": { "report_only": true } }]
            """#
        let top = #""admin": { "address": "127.0.0.1", "port": 0 }, "auth": { "api_keys": [{ "id": "web", "sha256": "\#(APIKeyDigest.hex(Self.apiKey))" }] },"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { gateway in
                let served = upstreams[0].requestsServed
                let key = ("X-API-Key", Self.apiKey)
                let crossSite = try await gateway.request(
                    "POST", "/forms/echo", headers: [key, ("Origin", "https://evil.test"), ("Sec-Fetch-Site", "cross-site")], body: "x=1")
                #expect(crossSite.status == 403)
                #expect(crossSite.errorCode == "CROSS_ORIGIN_REQUEST_REFUSED")
                let anonymous = try await gateway.request("DELETE", "/forms/echo", headers: [("Origin", "https://evil.test")])
                #expect(anonymous.status == 403, "refused before authentication")
                #expect(upstreams[0].requestsServed == served, "nothing reached the upstream")

                var statuses: [String: Int] = [:]
                let passing: [(String, [(String, String)])] = [
                    ("same-origin", [("Origin", "http://test.local"), ("Sec-Fetch-Site", "same-origin")]),
                    ("old browser, same host", [("Origin", "http://test.local")]),
                    ("not a browser", []),
                    ("trusted", [("Origin", "https://partner.example.net"), ("Sec-Fetch-Site", "cross-site")]),
                    ("allowed by cors", [("Origin", "https://app.example.com"), ("Sec-Fetch-Site", "cross-site")]),
                ]
                for (name, headers) in passing {
                    statuses[name] = try await gateway.request("POST", "/forms/echo", headers: [key] + headers, body: "x=1").status
                }
                statuses["cross-site GET"] = try await gateway.request(
                    "GET", "/forms/echo", headers: [key, ("Origin", "https://evil.test"), ("Sec-Fetch-Site", "cross-site")]).status
                #expect(Set(statuses.values) == [200], "\(statuses)")

                let watched = try await gateway.request(
                    "POST", "/watch/echo", headers: [("Origin", "https://evil.test"), ("Sec-Fetch-Site", "cross-site")], body: "x=1")
                #expect(watched.status == 200)
                #expect(gateway.logs.entries("cross-origin request would be refused (csrf report_only)").count == 1)
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_csrf_refusals_total", ["route": "forms", "mode": "enforced"]) == 2)
                #expect(metrics.value("gateway_csrf_refusals_total", ["route": "watch", "mode": "report_only"]) == 1)
            }
        }
    }

    static func preflight(origin: String, method: String, headers: String? = nil) -> [(String, String)] {
        var fields = [("Origin", origin), ("Access-Control-Request-Method", method)]
        if let headers { fields.append(("Access-Control-Request-Headers", headers)) }
        return fields
    }

    // A preflight is answered by the gateway (no credentials needed, nothing forwarded), also for a route whose
    // `match.methods` does not list OPTIONS, and for subdomain patterns.
    @Test func preflightsAreAnsweredWithoutCredentials() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let served = upstreams[0].requestsServed
                let response = try await gateway.request(
                    "OPTIONS", "/api/orders", headers: Self.preflight(origin: Self.app, method: "POST", headers: "content-type, x-api-key"))
                #expect(response.status == 204)
                #expect(response.headers("access-control-allow-origin") == [Self.app])
                #expect(response.header("access-control-allow-credentials") == "true")
                #expect(response.header("access-control-allow-methods") == "GET, POST")
                #expect(response.header("access-control-allow-headers") == "Content-Type, X-API-Key")
                #expect(response.header("access-control-max-age") == "600")
                let vary = response.headers("vary").joined(separator: ",").lowercased()
                #expect(vary.contains("origin") && vary.contains("access-control-request-method"))
                #expect(response.header("x-request-id") != nil)
                #expect(response.header("content-length") == nil)

                let partner = try await gateway.request(
                    "OPTIONS", "/api/orders", headers: Self.preflight(origin: "https://eu.shop.partner.test:8443", method: "GET"))
                #expect(partner.status == 204)
                #expect(partner.header("access-control-allow-origin") == "https://eu.shop.partner.test:8443")
                #expect(partner.header("access-control-allow-headers") == "Content-Type, X-API-Key")
                #expect(upstreams[0].requestsServed == served)
            }
        }
    }

    // What `cors` does not allow is refused with the gateway's JSON error, before the upstream.
    @Test func refusedPreflights() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let served = upstreams[0].requestsServed
                let cases: [(String, [(String, String)], String)] = [
                    ("other origin", Self.preflight(origin: "https://evil.example", method: "GET"), "403 CORS_NOT_ALLOWED"),
                    ("http, not https", Self.preflight(origin: "http://app.example.com", method: "GET"), "403 CORS_NOT_ALLOWED"),
                    ("bare partner domain", Self.preflight(origin: "https://partner.test:8443", method: "GET"), "403 CORS_NOT_ALLOWED"),
                    ("partner without the port", Self.preflight(origin: "https://a.partner.test", method: "GET"), "403 CORS_NOT_ALLOWED"),
                    ("suffix trick", Self.preflight(origin: "https://evil.test/.partner.test:8443", method: "GET"), "403 CORS_NOT_ALLOWED"),
                    ("method the route takes, cors does not", Self.preflight(origin: Self.app, method: "DELETE"), "403 CORS_NOT_ALLOWED"),
                    ("header not allowed", Self.preflight(origin: Self.app, method: "POST", headers: "x-api-key, x-debug"), "403 CORS_NOT_ALLOWED"),
                ]
                var outcomes: [String] = []
                for (name, headers, _) in cases {
                    let response = try await gateway.request("OPTIONS", "/api/orders", headers: headers)
                    let origin = response.header("access-control-allow-origin") ?? "-"
                    outcomes.append("\(name): \(response.status) \(response.errorCode ?? "-") origin=\(origin) id=\(response.errorRequestID == response.header("x-request-id"))")
                }
                let expected = cases.map { "\($0.0): \($0.2) origin=- id=true" }
                #expect(outcomes == expected)
                #expect(upstreams[0].requestsServed == served)
            }
        }
    }

    // Requests from an allowed origin get its CORS headers on the upstream's response and on the gateway's own
    // errors; the upstream's own Access-Control-* answers never pass; other origins are forwarded unmarked.
    @Test func responsesOfAllowedOrigins() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                // The upstream allows a different origin itself: the route's cors replaces that.
                let target = "/api/cacheable?allow_origin=https%3A%2F%2Fevil.example"
                let key = ("X-API-Key", Self.apiKey)
                let allowed = try await gateway.request("GET", target, headers: [key, ("Origin", Self.app)])
                #expect(allowed.status == 200)
                #expect(allowed.headers("access-control-allow-origin") == [Self.app])
                #expect(allowed.headers("access-control-allow-credentials") == ["true"])
                #expect(allowed.header("access-control-expose-headers") == "X-Request-ID, RateLimit")
                #expect(allowed.headers("vary") == ["Origin"])

                let unlisted = try await gateway.request("GET", target, headers: [key, ("Origin", "https://evil.example")])
                #expect(unlisted.status == 200)
                #expect(unlisted.header("access-control-allow-origin") == nil)
                #expect(unlisted.header("access-control-allow-credentials") == nil)
                #expect(unlisted.headers("vary") == ["Origin"])

                let noOrigin = try await gateway.request("GET", target, headers: [key])
                #expect(noOrigin.status == 200)
                #expect(noOrigin.header("access-control-allow-origin") == nil)
                #expect(noOrigin.headers("vary") == ["Origin"])

                // An upstream Vary is kept and Origin joins it once.
                let varied = try await gateway.request("GET", "/api/cacheable?vary=Origin", headers: [key, ("Origin", Self.app)])
                #expect(varied.headers("vary") == ["Origin"])

                // The gateway's own 401 carries the headers too, so the page can read why.
                let unauthenticated = try await gateway.request("POST", "/api/orders", headers: [("Origin", Self.app)], body: "{}")
                #expect(unauthenticated.status == 401)
                #expect(unauthenticated.errorCode == "UNAUTHENTICATED")
                #expect(unauthenticated.header("access-control-allow-origin") == Self.app)
                #expect(unauthenticated.header("access-control-allow-credentials") == "true")
            }
        }
    }

    // A cached response is marked for the request it answers, not for the one that filled the cache.
    @Test func cachedResponsesAreMarkedPerRequest() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let target = "/cached/cacheable?cc=max-age%3D60"
                let first = try await gateway.request("GET", target, headers: [("Origin", Self.app)])
                let other = try await gateway.request("GET", target, headers: [("Origin", "https://evil.example")])
                let again = try await gateway.request("GET", target, headers: [("Origin", Self.app)])
                let hits = [first, other, again].map { $0.json["hit"] as? Int }
                #expect(hits == [1, 1, 1])  // one upstream fill, two hits
                #expect(first.header("access-control-allow-origin") == Self.app)
                #expect(other.header("access-control-allow-origin") == nil)
                #expect(again.header("access-control-allow-origin") == Self.app)
                #expect(again.headers("vary") == ["Origin"])
            }
        }
    }

    // The same over HTTP/2 (h2c): the preflight answered by the gateway, the actual request marked.
    @Test func http2() async throws {
        try await withUpstreams { upstreams in
            let h2c = Self.config().replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(h2c, upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port)
                let preflight = try await client.request("OPTIONS", "/api/orders", headers: Self.preflight(origin: Self.app, method: "POST"))
                let refused = try await client.request("OPTIONS", "/api/orders", headers: Self.preflight(origin: "https://evil.example", method: "POST"))
                let actual = try await client.request("GET", "/api/echo", headers: [("origin", Self.app), ("x-api-key", Self.apiKey)])
                await client.close()
                #expect(preflight.status == 204)
                #expect(preflight.header("access-control-allow-origin") == Self.app)
                #expect(preflight.header("access-control-allow-methods") == "GET, POST")
                #expect(refused.status == 403)
                #expect(refused.body.contains("CORS_NOT_ALLOWED"))
                #expect(actual.status == 200)
                #expect(actual.header("access-control-allow-origin") == Self.app)
                #expect(upstreams[0].requestsServed == 1)
            }
        }
    }

    // `*` without credentials answers every origin alike (no Vary), and `allow_headers: ["*"]` allows what is asked.
    @Test func wildcardOrigins() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let preflight = try await gateway.request(
                    "OPTIONS", "/open/x", headers: Self.preflight(origin: "https://anyone.test", method: "POST", headers: "x-anything,authorization"))
                #expect(preflight.status == 204)
                #expect(preflight.header("access-control-allow-origin") == "*")
                #expect(preflight.header("access-control-allow-credentials") == nil)
                #expect(preflight.header("access-control-allow-methods") == "GET, HEAD, POST")
                #expect(preflight.header("access-control-allow-headers") == "x-anything, authorization")

                let response = try await gateway.request("GET", "/open/cacheable?allow_origin=https%3A%2F%2Fevil.example", headers: [("Origin", "https://anyone.test")])
                #expect(response.status == 200)
                #expect(response.headers("access-control-allow-origin") == ["*"])
                #expect(response.header("access-control-allow-credentials") == nil)
                #expect(response.header("vary") == nil)
            }
        }
    }

    // Without `cors` nothing changes: an OPTIONS preflight goes to the upstream like any request.
    @Test func routesWithoutCORSForwardPreflights() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let response = try await gateway.request("OPTIONS", "/echo", headers: Self.preflight(origin: Self.app, method: "POST"))
                #expect(response.status == 200)
                #expect(response.json["method"] as? String == "OPTIONS")
                #expect(response.header("access-control-allow-origin") == nil)
            }
        }
    }
}
