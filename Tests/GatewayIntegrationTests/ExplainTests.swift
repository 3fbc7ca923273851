import Foundation
import Testing

/// `gateway explain`: the route a request would take, from the config alone, as operators run it.
@Suite struct ExplainTests {
    static let config = #"""
        { "listeners": [{ "name": "public", "port": 8080 }, { "name": "internal", "address": "127.0.0.1", "port": 8081 }],
          "auth": { "api_keys": [{ "id": "k", "sha256": "0000000000000000000000000000000000000000000000000000000000000000" }] },
          "upstreams": { "orders": { "targets": ["http://10.0.0.1:80", "http://10.0.0.2:80"], "balance": "least_request" },
                         "next": { "targets": ["http://10.0.0.3:80"], "retries": { "hedge_after_ms": 80 } } },
          "routes": [
            { "name": "orders", "match": { "hosts": ["api.example.com"], "path_prefix": "/v1/orders", "methods": ["GET"] }, "upstream": "orders",
              "auth": { "require": ["api_key"], "scopes": ["orders:read"] },
              "rate_limits": [{ "name": "per-ip", "algorithm": "token_bucket", "key": "ip", "capacity": 10, "refill_per_second": 1 }] },
            { "name": "canary", "match": { "path_prefix": "/v2" }, "split": { "upstreams": [{ "name": "orders", "weight": 3 }, { "name": "next", "weight": 1 }] },
              "csrf": { "report_only": true }, "adaptive_concurrency": true, "intercept_errors": { "statuses": ["5xx", 404], "keep_json": true },
              "request_validation": { "body_schema": { "type": "object" }, "header_schema": { "required": ["x-tenant"] } },
              "webhook_signature": { "scheme": "github", "secrets": ["0123456789abcdef"], "max_body_bytes": 4096 } },
            { "name": "ops", "match": { "path_prefix": "/ops", "listeners": ["internal"] }, "upstream": "orders",
              "strip_prefix": "/ops", "add_prefix": "/admin", "request_query": { "remove": ["debug"] }, "host_rewrite": "ops.internal" },
            { "name": "old", "match": { "path_prefix": "/v0" }, "respond": { "status": 410, "code": "API_RETIRED", "message": "gone" },
              "deprecation": { "date": "2019-01-01", "sunset": "2020-01-01" } }] }
        """#

    /// Runs `gateway explain` on `config` (and the files it includes, by name).
    func explain(_ arguments: [String], config: String = Self.config, files: [String: String] = [:]) async throws -> CommandResult {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("explain-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("gateway.json").path
        try config.write(toFile: file, atomically: true, encoding: .utf8)
        for (name, text) in files { try text.write(toFile: directory.appendingPathComponent(name).path, atomically: true, encoding: .utf8) }
        return try await runCommand(Binaries.gateway, ["explain", "--config", file] + arguments)
    }

    // On a route that takes login sessions, the OIDC callback and logout paths are the gateway's own.
    @Test func explainsTheLoginPaths() async throws {
        let config = #"""
            { "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 8080 }],
              "auth": { "oidc": { "issuer": "https://id.test/", "authorization_url": "https://id.test/auth", "upstream": "web", "token_path": "/token",
                                  "jwks_url": "https://id.test/jwks", "client_id": "gw", "client_secret": "s", "cookie_secret": "0123456789abcdef0123456789abcdef" } },
              "upstreams": { "web": { "targets": ["http://10.0.0.9:80"] } },
              "routes": [{ "name": "app", "upstream": "web", "auth": { "require": ["oidc"] } }] }
            """#
        let callback = try await explain(["GET", "http://x.test/oauth2/callback?code=c&state=s"], config: config)
        #expect(callback.stdout.hasSuffix("route: app (routes[0])\n  answers itself: the OpenID provider's redirect back (auth.oidc.redirect_path)\n"), "\(callback.stdout)")
        let logout = try await explain(["GET", "http://x.test/oauth2/logout"], config: config)
        #expect(logout.stdout.contains("answers itself: logout (auth.oidc.logout_path)"), "\(logout.stdout)")
        let page = try await explain(["GET", "http://x.test/reports"], config: config)
        #expect(page.stdout.contains("checks, in order: csrf, auth (oidc)"), "\(page.stdout)")  // on by default with sessions
    }

    // A route from an included file is named with its file.
    @Test func namesTheFileOfIncludedRoutes() async throws {
        let config = #"""
            { "listeners": [{ "name": "public", "port": 8080 }], "include": ["orders.json"],
              "upstreams": { "web": { "targets": ["http://10.0.0.9:80"] } }, "routes": [{ "name": "home", "match": { "path": "/" }, "upstream": "web" }] }
            """#
        let orders = #"{ "routes": [{ "name": "orders", "match": { "path_prefix": "/orders" }, "upstream": "web" }] }"#
        let result = try await explain(["GET", "http://x.test/orders/1"], config: config, files: ["orders.json": orders])
        #expect(result.stdout.contains("route: orders (routes[0] of orders.json)"), "\(result.stdout) \(result.stderr)")
    }

    @Test func explainsRoutes() async throws {
        let orders = try await explain(["GET", "https://api.example.com/v1/orders/../orders/7?x=1"])
        #expect(orders.status == 0)
        #expect(orders.stdout == """
            request: GET /v1/orders/7?x=1 (Host: api.example.com, listener public)
            route: orders (routes[0])
              checks, in order: auth (api_key; scopes orders:read), rate_limits (per-ip)
              upstream orders: least_request over 10.0.0.1:80, 10.0.0.2:80
              upstream request: GET /v1/orders/7?x=1 (Host: api.example.com)

            """)
        let canary = try await explain(["GET", "/v2/items", "-H", "Host: anything.test"])
        #expect(canary.stdout.contains("split: orders 75%, next 25%"), "\(canary.stdout)")
        #expect(
            canary.stdout.contains(
                "checks, in order: csrf (report only), adaptive_concurrency (3-1000 in flight, following the upstream's latency), webhook_signature (github, bodies up to 4096 bytes), request_validation (the headers x-tenant and JSON bodies up to 1048576 bytes, against the route's schemas)"),
            "\(canary.stdout)")
        #expect(canary.stdout.contains("upstream next: round_robin over 10.0.0.3:80; GET/HEAD hedged after 80 ms"), "\(canary.stdout)")
        #expect(canary.stdout.contains("intercept_errors: the upstream's 5xx, 404 answered as UPSTREAM_ERROR (JSON answers pass)"), "\(canary.stdout)")
        let retired = try await explain(["GET", "http://x.test/v0/a"])
        #expect(retired.stdout.contains("answers itself: 410 API_RETIRED"))
        #expect(
            retired.stdout.contains("deprecated: since Tue, 01 Jan 2019 00:00:00 GMT; sunset Wed, 01 Jan 2020 00:00:00 GMT (Deprecation and Sunset on every answer)"),
            "\(retired.stdout)")

        let wrongMethod = try await explain(["DELETE", "https://api.example.com/v1/orders/7"])
        #expect(wrongMethod.stdout.hasSuffix("405 METHOD_NOT_ALLOWED: routes for this path take GET, HEAD\n"), "\(wrongMethod.stdout)")
        let outside = try await explain(["GET", "http://x.test/ops/metrics"])
        #expect(outside.stdout.hasSuffix("404 ROUTE_NOT_FOUND: no route matches\n"))
        let inside = try await explain(["GET", "http://x.test/ops/metrics", "--listener", "internal"])
        #expect(inside.stdout.contains("route: ops (routes[2])"))
        let rewritten = try await explain(["GET", "http://x.test/ops/metrics?debug=1&a=2", "--listener", "internal"])
        #expect(rewritten.stdout.contains("upstream request: GET /admin/metrics?a=2 (Host: ops.internal)"), "\(rewritten.stdout)")
        let tricky = try await explain(["GET", "http://x.test/v1/%2e%2e%2Fadmin"])
        #expect(tricky.stdout.hasPrefix("400 BAD_REQUEST"), "\(tricky.stdout)")
        let unknown = try await explain(["GET", "http://x.test/", "--listener", "nope"])
        #expect(unknown.status != 0 && unknown.stderr.contains(#"no listener named "nope""#))
    }

    // gateway openapi: the routes file on standard output (one that gateway check accepts when included), notes on
    // standard error; an unreadable description is an error.
    @Test func openapiWritesAnIncludableRoutesFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/openapi/orders.openapi.json").path
        let imported = try await runCommand(Binaries.gateway, ["openapi", spec, "--upstream", "orders", "--prefix", "/api", "--name-prefix", "orders-"])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.hasPrefix("{\n  \"routes\": [\n"))
        #expect(imported.stderr.contains("note: POST /orders body.sku: pattern is not checked"), "\(imported.stderr)")
        try imported.stdout.write(toFile: directory.appendingPathComponent("orders.json").path, atomically: true, encoding: .utf8)
        let config = #"""
            { "listeners": [{ "name": "public", "port": 8080 }], "include": ["orders.json"],
              "upstreams": { "orders": { "targets": ["http://10.0.0.1:80"] } }, "routes": [] }
            """#
        let gatewayFile = directory.appendingPathComponent("gateway.json").path
        try config.write(toFile: gatewayFile, atomically: true, encoding: .utf8)
        let checked = try await runCommand(Binaries.gateway, ["check", "--config", gatewayFile])
        #expect(checked.stdout == "ok\n", "\(checked.stdout)")
        let route = try await runCommand(Binaries.gateway, ["explain", "--config", gatewayFile, "POST", "http://x.test/api/orders"])
        #expect(route.stdout.contains("route: orders-createOrder (routes[1] of orders.json)"), "\(route.stdout)")
        #expect(route.stdout.contains("request_validation"), "\(route.stdout)")
        let list = try await runCommand(Binaries.gateway, ["explain", "--config", gatewayFile, "GET", "http://x.test/api/orders"])
        #expect(list.stdout.contains("request_validation (the headers X-Tenant-ID and the query, against the route's schemas)"), "\(list.stdout)")
        let one = try await runCommand(Binaries.gateway, ["explain", "--config", gatewayFile, "GET", "http://x.test/api/orders/7"])
        #expect(one.stdout.contains("request_validation (the path's variables, against the route's schemas)"), "\(one.stdout)")

        let missing = try await runCommand(Binaries.gateway, ["openapi", directory.appendingPathComponent("none.json").path, "--upstream", "orders"])
        #expect(missing.status != 0 && missing.stderr.contains("cannot read"), "\(missing.stderr)")
    }
}
