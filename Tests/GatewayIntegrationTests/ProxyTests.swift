import DemoUpstream
import Foundation
import GatewayConfig
import NIOCore
import TestSupport
import Testing

/// Routing, headers and error bodies, over real sockets to a real upstream.
@Suite struct ProxyTests {
    static let routes = """
        [
          { "name": "orders", "match": { "path_prefix": "/api/v1/orders", "methods": ["GET", "POST"] },
            "upstream": "demo", "strip_prefix": "/api" },
          { "name": "admin-only", "match": { "path": "/api/admin", "headers": { "x-role": "admin" } }, "upstream": "demo" },
          { "name": "tenant-host", "match": { "hosts": ["*.tenant.example"], "path_prefix": "/" }, "upstream": "demo" },
          { "name": "exact-host", "match": { "hosts": ["api.tenant.example"], "path_prefix": "/" }, "upstream": "demo",
            "preserve_host": false },
          { "name": "api", "match": { "path_prefix": "/api" }, "upstream": "demo", "strip_prefix": "/api" }
        ]
        """

    // The most specific route wins; strip_prefix rewrites the path and the query passes through intact.
    @Test func routesByPrefixAndStripsPrefixKeepingQuery() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: Self.routes), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/api/v1/orders/42?sort=desc&q=a%20b")
                #expect(response.status == 200)
                #expect(response.json["uri"] as? String == "/v1/orders/42?sort=desc&q=a%20b")
                let log = try await gateway.accessLog(for: response)
                #expect(log["route"] as? String == "orders")

                // Whole segments only: /api/v1/ordersX is not under /api/v1/orders, so the broader route takes it.
                let other = try await gateway.request("GET", "/api/v1/ordersX")
                #expect(other.json["uri"] as? String == "/v1/ordersX")
                let otherLog = try await gateway.accessLog(for: other)
                #expect(otherLog["route"] as? String == "api")
            }
        }
    }

    // No route: 404 with the JSON error body carrying the same request id as the header.
    @Test func unknownPathIs404JSON() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: Self.routes), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/nothing/here")
                #expect(response.status == 404)
                #expect(response.header("content-type") == "application/json")
                #expect(response.errorCode == "ROUTE_NOT_FOUND")
                let id = try #require(response.header("x-request-id"))
                #expect(response.errorRequestID == id)
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // The path matches but the method does not: 405 with Allow (GET implies HEAD).
    @Test func wrongMethodIs405WithAllow() async throws {
        let routes = #"[{ "name": "orders", "match": { "path_prefix": "/orders", "methods": ["GET", "POST"] }, "upstream": "demo" }]"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let response = try await gateway.request("DELETE", "/orders/1")
                #expect(response.status == 405)
                #expect(response.errorCode == "METHOD_NOT_ALLOWED")
                #expect(response.header("allow") == "GET, POST, HEAD")
                let head = try await gateway.request("HEAD", "/orders/1")
                #expect(head.status == 200)
            }
        }
    }

    // Header conditions and host rules (exact beats wildcard) pick routes; preserve_host false sends the target's authority.
    @Test func matchesHeadersAndHosts() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: Self.routes), upstreams: upstreams) { gateway in
                let admin = try await gateway.request("GET", "/api/admin", headers: [("X-Role", "admin")])
                #expect(admin.json["uri"] as? String == "/api/admin")  // admin-only route: no strip
                let notAdmin = try await gateway.request("GET", "/api/admin", headers: [("X-Role", "user")])
                #expect(notAdmin.json["uri"] as? String == "/admin")  // fell through to "api"

                let client = try await gateway.connect()
                try await client.send("GET /x HTTP/1.1\r\nHost: API.Tenant.Example:8080\r\n\r\nGET /y HTTP/1.1\r\nHost: other.tenant.example\r\n\r\n")
                let exact = try await client.readResponse()
                let wildcard = try await client.readResponse()
                await client.close()
                #expect(exact.echoedHeaders["host"] == "127.0.0.1:\(upstreams[0].port)")
                #expect(exact.echoedHeaders["x-forwarded-host"] == "API.Tenant.Example:8080")
                #expect(exact.echoedHeaders["x-forwarded-port"] == "8080")
                #expect(wildcard.echoedHeaders["host"] == "other.tenant.example")
            }
        }
    }

    // An absolute-form request target is routed by its authority and forwarded in origin form.
    @Test func acceptsAbsoluteFormTargets() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: Self.routes), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "http://api.tenant.example/orders?id=1")
                #expect(response.status == 200)
                #expect(response.json["uri"] as? String == "/orders?id=1")
                #expect(response.echoedHeaders["x-forwarded-host"] == "api.tenant.example")
                let log = try await gateway.accessLog(for: response)
                #expect(log["route"] as? String == "exact-host")
            }
        }
    }

    // A well-formed client id is kept end to end; a malformed one is replaced; one is generated when absent.
    @Test func requestIDPropagation() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let kept = try await gateway.request("GET", "/echo", headers: [("X-Request-ID", "client-id_1.2")])
                #expect(kept.header("x-request-id") == "client-id_1.2")
                #expect(kept.echoedHeaders["x-request-id"] == "client-id_1.2")
                let log = try #require(await gateway.logs.accessEntry(requestID: "client-id_1.2"))
                #expect(log["status"] as? Int == 200)
                #expect(log["method"] as? String == "GET")
                #expect(log["path"] as? String == "/echo")
                #expect(log["upstream"] as? String == "127.0.0.1:\(upstreams[0].port)")

                let replaced = try await gateway.request("GET", "/echo", headers: [("X-Request-ID", "bad id with spaces")])
                let fresh = try #require(replaced.header("x-request-id"))
                #expect(fresh != "bad id with spaces")
                #expect(fresh.count == 32)
                #expect(replaced.echoedHeaders["x-request-id"] == fresh)

                let tooLong = String(repeating: "a", count: 129)
                let long = try await gateway.request("GET", "/echo", headers: [("X-Request-ID", tooLong)])
                #expect(long.header("x-request-id") != tooLong)

                let generated = try await gateway.request("GET", "/echo")
                #expect(generated.header("x-request-id")?.count == 32)
                #expect(generated.header("x-request-id") != fresh)
            }
        }
    }

    // request_query: tracking parameters removed and a credential for the upstream added (a client's own
    // parameter of that name replaced), after strip_prefix; the client's path and other parameters as sent.
    @Test func queryEdits() async throws {
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "partner", "match": { "path_prefix": "/partner" }, "upstream": "demo", "strip_prefix": "/partner",
                   "request_query": { "remove": ["utm_source", "utm_medium"], "set": { "api_key": "k 1&2" } } }]
                """#
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/partner/echo?utm_source=news&page=2&api_key=forged&utm_medium=mail&q=a%20b")
                #expect(response.json["uri"] as? String == "/echo?page=2&q=a%20b&api_key=k%201%262")
                let bare = try await gateway.request("GET", "/partner/echo")
                #expect(bare.json["uri"] as? String == "/echo?api_key=k%201%262")
            }
        }
    }

    // host_rewrite: the upstream gets the configured Host (virtual hosts behind it), the client's in X-Forwarded-Host.
    @Test func hostRewrite() async throws {
        try await withUpstreams { upstreams in
            let routes = #"[{ "name": "vhost", "upstream": "demo", "host_rewrite": "Backend.Internal:8443" }]"#
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo")
                #expect(response.echoedHeaders["host"] == "backend.internal:8443")
                #expect(response.echoedHeaders["x-forwarded-host"] == "test.local")
            }
        }
    }

    // match.listeners over real sockets: the internal listener serves its own routes, the public one never does.
    @Test func routesPerListener() async throws {
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1,
                  "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 0 }, { "name": "internal", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] } },
                  "routes": [{ "name": "ops", "match": { "path_prefix": "/ops", "listeners": ["internal"] }, "upstream": "demo" },
                             { "name": "site", "match": { "path_prefix": "/" , "listeners": ["public"] }, "upstream": "demo" }] }
                """
            try await withGateway(config) { gateway in
                let inside = try await gateway.request("GET", "/ops/echo", listener: "internal")
                let insideRoute = try await gateway.accessLog(for: inside)["route"] as? String
                #expect(inside.status == 200 && insideRoute == "ops")
                let outside = try await gateway.request("GET", "/ops/echo", listener: "public")
                let outsideRoute = try await gateway.accessLog(for: outside)["route"] as? String
                #expect(outside.status == 200 && outsideRoute == "site")
                let nothing = try await gateway.request("GET", "/other", listener: "internal")
                #expect(nothing.status == 404 && nothing.errorCode == "ROUTE_NOT_FOUND")
            }
        }
    }

    // match.client_ips over real sockets: the client address is the one trusted_proxies resolve (X-Forwarded-For from
    // the trusted load balancer), so the office network's requests take their own route and everyone else the general one.
    @Test func routesPerClientAddress() async throws {
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1, "trusted_proxies": ["127.0.0.1"],
                  "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] } },
                  "routes": [{ "name": "office", "match": { "path_prefix": "/", "client_ips": ["10.20.0.0/16"] }, "upstream": "demo" },
                             { "name": "site", "match": { "path_prefix": "/" }, "upstream": "demo" }] }
                """
            try await withGateway(config) { gateway in
                func route(forwardedFor: String?) async throws -> String? {
                    let response = try await gateway.request("GET", "/echo", headers: forwardedFor.map { [("X-Forwarded-For", $0)] } ?? [])
                    #expect(response.status == 200)
                    return try await gateway.accessLog(for: response)["route"] as? String
                }
                let office = try await route(forwardedFor: "10.20.7.8")
                let elsewhere = try await route(forwardedFor: "10.21.7.8")
                let balancer = try await route(forwardedFor: nil)
                let spoofed = try await route(forwardedFor: "10.20.7.8, 198.51.100.1")
                #expect(office == "office" && elsewhere == "site")
                #expect(balancer == "site", "the balancer itself is not in the office")
                #expect(spoofed == "site", "the nearest untrusted hop counts")
            }
        }
    }

    // request_id: another header carries the id (upstream, back, in the error body); preserve_incoming decides
    // whose ids are kept: trusted proxies' only, or nobody's.
    @Test func requestIDHeaderAndTrust() async throws {
        try await withUpstreams { upstreams in
            let settings = { (preserve: String, trusted: String) in
                #""trusted_proxies": [\#(trusted)], "request_id": { "header": "X-Correlation-ID", "preserve_incoming": "\#(preserve)" },"#
            }
            try await withGateway(basicConfig(limits: #"{ "max_body_bytes": 16 }"#, top: settings("trusted_proxies", #""10.0.0.0/8""#)), upstreams: upstreams) { gateway in
                let untrusted = try await gateway.request("GET", "/echo", headers: [("X-Correlation-ID", "client-made-1")])
                let id = try #require(untrusted.header("x-correlation-id"))
                #expect(id != "client-made-1" && id.count == 32, "not from a trusted proxy: replaced")
                #expect(untrusted.echoedHeaders["x-correlation-id"] == id)
                #expect(untrusted.header("x-request-id") == nil && untrusted.echoedHeaders["x-request-id"] == nil)
                let tooLarge = try await gateway.request("POST", "/echo", body: String(repeating: "x", count: 64))
                #expect(tooLarge.status == 413)
                let errorID = (tooLarge.json["error"] as? [String: Any])?["request_id"] as? String
                #expect(errorID != nil && errorID == tooLarge.header("x-correlation-id"), "the error body names the id its header carries")
                #expect(try #require(await gateway.logs.accessEntry(requestID: id))["status"] as? Int == 200)
            }
            try await withGateway(basicConfig(top: settings("trusted_proxies", #""127.0.0.1""#)), upstreams: upstreams) { gateway in
                let trusted = try await gateway.request("GET", "/echo", headers: [("X-Correlation-ID", "lb-made-7")])
                #expect(trusted.header("x-correlation-id") == "lb-made-7" && trusted.echoedHeaders["x-correlation-id"] == "lb-made-7")
            }
            try await withGateway(basicConfig(top: settings("never", #""127.0.0.1""#)), upstreams: upstreams) { gateway in
                let replaced = try await gateway.request("GET", "/echo", headers: [("X-Correlation-ID", "lb-made-8")])
                #expect(replaced.header("x-correlation-id") != "lb-made-8")
                #expect(replaced.echoedHeaders["x-correlation-id"] == replaced.header("x-correlation-id"))
            }
        }
    }

    // Hop-by-hop headers are removed in both directions, including the ones Connection names; Server and X-Powered-By too.
    @Test func stripsHopByHopHeadersBothWays() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let request = try await gateway.request(
                    "GET", "/echo",
                    headers: [
                        ("Connection", "keep-alive, X-Client-Hop"), ("X-Client-Hop", "secret"), ("Keep-Alive", "timeout=5"),
                        ("TE", "trailers"), ("Trailer", "X-Sum"), ("Upgrade", "websocket"), ("Proxy-Connection", "keep-alive"),
                        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("X-End-To-End", "yes"),
                    ])
                let seen = request.echoedHeaders
                for name in ["connection", "x-client-hop", "keep-alive", "te", "trailer", "upgrade", "proxy-connection", "proxy-authorization"] {
                    #expect(seen[name] == nil, "\(name) reached the upstream")
                }
                #expect(seen["x-end-to-end"] == "yes")
                #expect(request.header("server") == nil)
                #expect(request.header("x-powered-by") == nil)

                let response = try await gateway.request("GET", "/hop")
                #expect(response.status == 200)
                for name in ["x-hop-secret", "keep-alive", "upgrade", "trailer"] {
                    #expect(response.header(name) == nil, "\(name) reached the client")
                }
                #expect(response.header("connection") == nil)
                #expect(response.header("x-end-to-end") == "kept")
            }
        }
    }

    // X-Forwarded-* from an untrusted peer are replaced; a trusted proxy's chain is extended.
    @Test func forwardedHeadersHonourTrustedProxies() async throws {
        try await withUpstreams { upstreams in
            let spoof: [(String, String)] = [
                ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Port", "666"),
            ]
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo", headers: spoof)
                #expect(response.echoedHeaders["x-forwarded-for"] == "127.0.0.1")
                #expect(response.echoedHeaders["x-forwarded-proto"] == "http")
                #expect(response.echoedHeaders["x-forwarded-host"] == "test.local")
                #expect(response.echoedHeaders["x-forwarded-port"] == "80", "Host names no port: the scheme's")
                let log = try await gateway.accessLog(for: response)
                #expect(log["client_ip"] as? String == "127.0.0.1")
            }
            try await withGateway(basicConfig(top: #""trusted_proxies": ["127.0.0.0/8"],"#), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo", headers: spoof)
                #expect(response.echoedHeaders["x-forwarded-for"] == "6.6.6.6, 127.0.0.1")
                #expect(response.echoedHeaders["x-forwarded-proto"] == "https")
                #expect(response.echoedHeaders["x-forwarded-host"] == "evil.example")
                #expect(response.echoedHeaders["x-forwarded-port"] == "666")
                let log = try await gateway.accessLog(for: response)
                #expect(log["client_ip"] as? String == "6.6.6.6")
            }
        }
    }

    // forwarded_header: the upstream gets an RFC 7239 Forwarded field for this hop; an untrusted client's own
    // Forwarded (and X-Forwarded-Prefix) never reaches it (with the setting off too, over HTTP/2 too), a trusted
    // proxy's is extended.
    @Test func forwardedFieldHonoursTrustedProxies() async throws {
        try await withUpstreams { upstreams in
            let spoof: [(String, String)] = [("Forwarded", "for=6.6.6.6;proto=https")]
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo", headers: spoof)
                #expect(response.status == 200)
                #expect(response.echoedHeaders["forwarded"] == nil)
            }
            // Over HTTP/2, where every request field reaches the rules as one the gateway holds as text: the same.
            let h2c = basicConfig().replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(h2c, upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port)
                let response = try await client.request("GET", "/echo", headers: spoof + [("x-forwarded-prefix", "/forged")])
                await client.close()
                #expect(response.status == 200)
                let echoed = try JSONSerialization.jsonObject(with: Data(response.bytes)) as? [String: Any]
                let headers = echoed?["headers"] as? [String: String]
                #expect(headers?["x-forwarded-for"] == "127.0.0.1")
                #expect(headers?["forwarded"] == nil)
                #expect(headers?["x-forwarded-prefix"] == nil)
            }
            try await withGateway(basicConfig(top: #""forwarded_header": true,"#), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo", headers: spoof)
                #expect(response.echoedHeaders["forwarded"] == "for=127.0.0.1;host=test.local;proto=http")
                #expect(response.echoedHeaders["x-forwarded-for"] == "127.0.0.1")
            }
            try await withGateway(basicConfig(top: #""forwarded_header": true, "trusted_proxies": ["127.0.0.0/8"],"#), upstreams: upstreams) {
                gateway in
                let response = try await gateway.request("GET", "/echo", headers: spoof)
                #expect(response.echoedHeaders["forwarded"] == "for=6.6.6.6;proto=https, for=127.0.0.1;host=test.local;proto=http")
            }
        }
    }

    // add_prefix puts a base path before what goes upstream, after strip_prefix; the query passes intact.
    @Test func addPrefix() async throws {
        let routes = #"""
            [{ "name": "legacy", "match": { "path_prefix": "/api" }, "upstream": "demo", "strip_prefix": "/api", "add_prefix": "/service/v2/" },
             { "name": "all", "upstream": "demo", "add_prefix": "/base" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let rewritten = try await gateway.request("GET", "/api/orders/7?expand=items")
                #expect(rewritten.json["uri"] as? String == "/service/v2/orders/7?expand=items")
                #expect(rewritten.echoedHeaders["x-forwarded-prefix"] == "/api")
                let bare = try await gateway.request("GET", "/api?x=1")
                #expect(bare.json["uri"] as? String == "/service/v2/?x=1")
                let root = try await gateway.request("GET", "/echo")
                #expect(root.json["uri"] as? String == "/base/echo")
            }
        }
    }

    // path_template routes by segments with variables (more literal text is more specific than a shorter prefix),
    // and rewrite_path builds the upstream path from them; the query passes as sent.
    @Test func pathTemplatesAndRewrites() async throws {
        let routes = #"""
            [{ "name": "users", "match": { "path_prefix": "/users" }, "upstream": "demo" },
             { "name": "user-orders", "match": { "path_template": "/users/{id}/orders/{rest=**}" }, "upstream": "demo",
               "rewrite_path": "/v2/accounts/{id}/orders/{rest}" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let orders = try await gateway.request("GET", "/users/42/orders/7?expand=lines")
                #expect(orders.json["uri"] as? String == "/v2/accounts/42/orders/7?expand=lines")
                #expect(try await gateway.accessLog(for: orders)["route"] as? String == "user-orders")
                let all = try await gateway.request("GET", "/Users/42/orders")
                #expect(all.json["uri"] as? String == "/v2/accounts/42/orders/")
                let profile = try await gateway.request("GET", "/users/42/profile")
                #expect(profile.json["uri"] as? String == "/users/42/profile", "the prefix route takes what the template does not")
                #expect(try await gateway.accessLog(for: profile)["route"] as? String == "users")
            }
        }
    }

    /// Sends the head and first chunk ("hello") of a chunked POST to `target`, waits a moment, and returns the
    /// connection (to finish the body on) with the connections `upstream` has accepted meanwhile.
    static func startUpload(to target: String, _ gateway: TestGateway, _ upstream: DemoUpstream) async throws -> (RawClient, Int) {
        let client = try await gateway.connect()
        try await client.send("POST \(target) HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        try await Task.sleep(for: TestTime.duration(ms: 300))
        return (client, upstream.connectionsAccepted)
    }

    // request_buffering: the body is read whole before the upstream is called, so a slow upload holds no upstream
    // connection and a chunked body goes up with a Content-Length; Expect: 100-continue is answered at once.
    @Test func requestBuffering() async throws {
        let routes = #"[{ "name": "buffered", "upstream": "demo", "request_buffering": true, "max_body_bytes": 1000 }]"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let (client, accepted) = try await Self.startUpload(to: "/echo", gateway, upstreams[0])
                #expect(accepted == 0, "nothing reaches the upstream while the body is still coming")
                try await client.send("6\r\n world\r\n0\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 200)
                #expect(response.json["body"] as? String == "hello world")
                #expect(response.echoedHeaders["content-length"] == "11")
                #expect(response.echoedHeaders["transfer-encoding"] == nil)

                try await client.send("PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
                #expect(try await client.readResponse().status == 100)
                try await client.send("data")
                let continued = try await client.readResponse()
                #expect(continued.json["body"] as? String == "data")

                await client.close()
                let tooLarge = try await gateway.connect()
                try await tooLarge.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + String(repeating: "x", count: 1001) + "\r\n")
                let refused = try await tooLarge.readResponse()
                #expect(refused.status == 413)
                await tooLarge.close()
            }
        }
    }

    // The same over HTTP/2: a stream's body (no length) goes upstream whole, with a Content-Length.
    @Test func requestBufferingOverHTTP2() async throws {
        let routes = #"[{ "name": "buffered", "upstream": "demo", "request_buffering": true }]"#
        try await withUpstreams { upstreams in
            let json = basicConfig(routes: routes).replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port)
                let response = try await client.request("POST", "/echo", body: Array("streamed over h2".utf8))
                await client.close()
                #expect(response.status == 200)
                let echoed = try JSONSerialization.jsonObject(with: Data(response.bytes)) as? [String: Any]
                #expect(echoed?["body"] as? String == "streamed over h2")
                #expect((echoed?["headers"] as? [String: String])?["content-length"] == "16")
            }
        }
    }

    // HTTP/2 flow control both ways, on one connection at once: a 20 MB download moves only as the client's
    // WINDOW_UPDATEs allow (the gateway stops at a closed window and must resume on each update), and an 8 MiB
    // upload moves only as the gateway credits the client's stream and connection windows (128 KiB and 64 KiB:
    // without those credits it stalls after the first window).
    @Test(.timeLimit(.minutes(1))) func largeBodiesStreamOverHTTP2() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig(limits: #"{ "max_body_bytes": 100000000 }"#)
                .replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port)
                async let download = client.get("/bytes/20000000")
                async let upload = client.request("POST", "/upload", body: [UInt8](repeating: 0x61, count: 8 << 20))
                let (downloaded, uploaded) = try await (download, upload)
                #expect(downloaded.status == 200)
                #expect(downloaded.bytes.count == 20_000_000)
                #expect(uploaded.status == 200)
                let json = try JSONSerialization.jsonObject(with: Data(uploaded.bytes)) as? [String: Any]
                #expect(json?["bytes"] as? Int == 8 << 20)
                // The connection goes on serving after both.
                #expect(try await client.get("/echo").status == 200)
                await client.close()
            }
        }
    }

    // HTTP/2 framing of answers: a small body read whole goes out as one DATA frame carrying END_STREAM (not a
    // DATA frame and an empty one after it), while a streamed body still goes out part by part as it arrives.
    @Test func http2DataFrames() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig().replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let small = try await shell("nghttp -v http://127.0.0.1:\(gateway.port)/bytes/1000", timeout: .seconds(30))
                let frames = small.stdout.split(separator: "\n").filter { $0.contains("recv DATA frame") }
                #expect(frames.count == 1, "\(frames)")
                #expect(frames.first?.contains("<length=1000, flags=0x01") == true, "\(frames)")

                let streamed = try await shell("nghttp -v 'http://127.0.0.1:\(gateway.port)/stream?chunks=3&interval_ms=300'", timeout: .seconds(30))
                // "[  0.304] recv DATA frame <length=8, flags=0x00, stream_id=13>": when each frame arrived. The upstream
                // sends a part every 300 ms; each must leave as it arrives, not wait for the next one.
                let lines = streamed.stdout.split(separator: "\n")
                func time(_ line: Substring) -> Double? { Double(line.drop { $0 == "[" || $0 == " " }.prefix { $0 != "]" }) }
                let head = lines.first { $0.contains("recv HEADERS frame") }.flatMap(time)
                let parts = lines.filter { $0.contains("recv DATA frame") && !$0.contains("length=0,") }.compactMap(time)
                #expect(parts.count == 3, "\(streamed.stdout)")
                if let head, let first = parts.first { #expect(first - head < 0.15, "head at \(head), parts at \(parts)") }
            }
        }
    }

    // loop_detection: requests going upstream carry this gateway's id in CDN-Loop (after any the client sent), and
    // a gateway whose upstream is itself answers 508 LOOP_DETECTED once, instead of forwarding until connections run
    // out; off, no id is sent.
    @Test func forwardingLoops() async throws {
        let port = try await RedisServer.freePort()
        let looping = """
            { "workers": 1,
              "listeners": [{ "name": "test", "address": "127.0.0.1", "port": \(port) }],
              "admin": { "address": "127.0.0.1", "port": 0 },
              "upstreams": { "self": { "targets": ["http://127.0.0.1:\(port)"] } },
              "routes": [{ "name": "loop", "upstream": "self" }] }
            """
        try await withGateway(looping) { gateway in
            let response = try await gateway.request("GET", "/anything", headers: [("X-Request-ID", "loop-1")])
            #expect(response.status == 508 && response.errorCode == "LOOP_DETECTED", "\(response)")
            let logged = gateway.logs.entries("forwarding loop: the request came back to this gateway")
            #expect(logged.count == 1)
            let id = (logged.first?["cdn_loop"] as? String) ?? ""
            #expect(id.hasPrefix("gw-") && id.count == 11, "\(id)")
            let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
            #expect(metrics.value("gateway_forwarding_loops_total", ["route": "loop"]) == 1)
        }
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let echoed = try await gateway.request("GET", "/echo", headers: [("CDN-Loop", "cdn.example; hops=1")])
                let field = echoed.echoedHeaders["cdn-loop"] ?? ""
                #expect(field.hasPrefix("cdn.example; hops=1, gw-"), "\(field)")
            }
            try await withGateway(basicConfig(top: #""loop_detection": false,"#), upstreams: upstreams) { gateway in
                let plain = try await gateway.request("GET", "/echo")
                #expect(plain.status == 200 && plain.echoedHeaders["cdn-loop"] == nil)
            }
        }
    }

    // via: this gateway's entry in Via (RFC 9110 §7.6.3), after any the client or the upstream wrote, with the protocol
    // each message arrived in; off by default (no Via either way).
    @Test func viaEntries() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(top: #""via": "edge-1","#), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo", headers: [("Via", "1.1 corp-proxy")])
                #expect(response.echoedHeaders["via"] == "1.1 corp-proxy, 1.1 edge-1", "\(response.echoedHeaders)")
                #expect(response.header("via") == "1.1 edge-1")
                let old = try await OperationsTests.exchange(port: gateway.port, "GET /echo HTTP/1.0\r\nHost: test.local\r\n\r\n")
                #expect(old.echoedHeaders["via"] == "1.0 edge-1", "\(old)")
            }
            try await withGateway(basicConfig(top: #""via": true,"#), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo")
                #expect(response.echoedHeaders["via"] == "1.1 gateway" && response.header("via") == "1.1 gateway")
            }
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo")
                #expect(response.echoedHeaders["via"] == nil && response.header("via") == nil)
            }
        }
    }

    // unix:///path targets: requests reach an app server on a Unix domain socket (Host "localhost" where
    // the target's name would go), the access log names the socket, and health checks go there too.
    @Test func unixSocketTargets() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString.prefix(8)).sock").path
        let upstream = try await DemoUpstream.start(name: "unix", unixSocket: path)
        defer {
            Task { await upstream.shutdown() }
            try? FileManager.default.removeItem(atPath: path)
        }
        let routes = #"""
            [{ "name": "own-host", "match": { "path_prefix": "/own" }, "upstream": "demo", "strip_prefix": "/own", "preserve_host": false },
             { "name": "all", "upstream": "demo" }]
            """#
        let json = basicConfig(
            targets: "\"unix://\(path)\"", routes: routes,
            upstreamExtra: #", "health_check": { "path": "/healthz", "interval_ms": 100, "timeout_ms": 1000, "unhealthy_threshold": 1 }"#)
        try await withGateway(json) { gateway in
            let first = try await gateway.request("GET", "/echo?x=1", headers: [("X-Request-ID", "unix-1")])
            #expect(first.status == 200 && first.json["upstream"] as? String == "unix", "\(first)")
            #expect(first.echoedHeaders["host"] == "test.local")
            let own = try await gateway.request("GET", "/own/echo")
            #expect(own.echoedHeaders["host"] == "localhost")
            let log = try await gateway.accessLog(for: first)
            #expect(log["upstream"] as? String == "unix:" + path)

            // The health check reaches the socket: an unhealthy answer there takes the target out.
            upstream.behaviour.healthStatus.store(503, ordering: .relaxed)
            let status = try await OperationsTests.poll(until: 503) { try await gateway.request("GET", "/echo").status }
            #expect(status == 503)
        }
    }

    // limit_rate: an answer's body reaches the client no faster than the route's pace after its free bytes (a lower
    // bound on the time is what the pacing guarantees), and intact; a route without it is not held back by it.
    @Test func limitRatePacesAnswers() async throws {
        let routes = #"""
            [{ "name": "paced", "match": { "path_prefix": "/paced" }, "upstream": "demo", "strip_prefix": "/paced",
               "limit_rate": { "bytes_per_second": 1048576, "after_bytes": 1048576 } },
             { "name": "all", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let started = ContinuousClock.now
                let paced = try await gateway.request("GET", "/paced/bytes/3145728")
                let took = ContinuousClock.now - started
                #expect(paced.status == 200 && paced.body.count == 3_145_728)
                // 2 MiB past the free 1 MiB at 1 MiB/s: 2 s, less at most the last read from the upstream.
                #expect(took >= .milliseconds(1500), "\(took)")
                let free = try await gateway.request("GET", "/bytes/3145728")
                #expect(free.status == 200 && free.body.count == 3_145_728)
            }
        }
    }

    // response_buffering: a client that stops reading a large answer holds no upstream connection on a route that buffers
    // (the gateway reads the rest and keeps it for the client, who later gets every byte); on a route that does not, the
    // upstream waits for the client, so with one connection allowed the next request finds none (503).
    @Test func responseBuffering() async throws {
        let routes = #"""
            [{ "name": "buffered", "match": { "path_prefix": "/buffered" }, "upstream": "demo", "strip_prefix": "/buffered",
               "response_buffering": { "max_bytes": 134217728 } },
             { "name": "all", "upstream": "demo" }]
            """#
        let size = 64_000_000  // well beyond what the sockets' buffers on both sides absorb
        try await withUpstreams { upstreams in
            let json = basicConfig(routes: routes, upstreamExtra: #", "max_connections": 1, "max_pending_requests": 0"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let slow = try await RawClient.connect(port: gateway.port, reading: false)
                try await slow.send("GET /buffered/bytes/\(size) HTTP/1.1\r\nHost: test.local\r\n\r\n")
                // The upstream's connection comes free once the gateway has read the whole answer.
                var statuses: [Int] = []
                let deadline = ContinuousClock.now + TestTime.seconds(20)
                while statuses.last != 200 && ContinuousClock.now < deadline {
                    statuses.append(try await gateway.request("GET", "/buffered/echo").status)
                    if statuses.last != 200 { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(statuses.last == 200, "\(statuses.suffix(5))")
                #expect(Set(statuses).isSubset(of: [200, 503]))
                // The client reads at last and gets all of it.
                try await slow.channel.setOption(ChannelOptions.autoRead, value: true).get()
                slow.channel.read()
                let response = try await slow.readResponse(timeout: TestTime.seconds(30))
                #expect(response.status == 200 && response.complete && response.body.count == size)
                let intact = response.body.allSatisfy { $0 == UInt8(ascii: "x") }
                #expect(intact)
                await slow.close()

                // Without response_buffering the stalled client keeps the only upstream connection busy.
                let stalled = try await RawClient.connect(port: gateway.port, reading: false)
                try await stalled.send("GET /bytes/\(size) HTTP/1.1\r\nHost: test.local\r\n\r\n")
                try await Task.sleep(for: .milliseconds(500))
                let refused = try await gateway.request("GET", "/echo")
                #expect(refused.status == 503 && refused.errorCode == "UPSTREAM_UNAVAILABLE", "\(refused)")
                await stalled.close()

                // A pipelined answer that starts while the client is still behind on the one before (held for it by
                // response_buffering) waits for the client from its first byte, holding its upstream connection.
                let pipelined = try await RawClient.connect(port: gateway.port, reading: false)
                try await pipelined.send(
                    "GET /buffered/bytes/20000000 HTTP/1.1\r\nHost: test.local\r\n\r\nGET /bytes/\(size) HTTP/1.1\r\nHost: test.local\r\n\r\n")
                var meanwhile: [Int] = []
                for _ in 0..<30 {
                    try await Task.sleep(for: .milliseconds(100))
                    meanwhile.append(try await gateway.request("GET", "/echo").status)
                }
                #expect(Set(meanwhile) == [503], "\(meanwhile)")
                await pipelined.close()
            }
        }
    }

    // early_hints: an upstream's 103s reach HTTP/2 clients (and HTTP/1.1 ones where the route says so, never HTTP/1.0),
    // without its cookies or software name and at most four per request; a route's own links go out in a 103 of the
    // gateway's the moment the request goes upstream; `false` passes none. Over HTTP/1.1 and HTTP/2 upstreams alike.
    @Test func earlyHints() async throws {
        let h2Upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await h2Upstream.shutdown() } }
        let routes = #"""
            [{ "name": "hinted", "match": { "path_prefix": "/hinted" }, "upstream": "demo", "strip_prefix": "/hinted",
               "early_hints": { "links": ["</app.css>; rel=preload; as=style"], "http1": true } },
             { "name": "h2", "match": { "path_prefix": "/h2" }, "upstream": "h2", "strip_prefix": "/h2", "early_hints": { "http1": true } },
             { "name": "off", "match": { "path_prefix": "/off" }, "upstream": "demo", "strip_prefix": "/off", "early_hints": false },
             { "name": "all", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            let json = basicConfig(routes: routes)
                .replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
                .replacingOccurrences(
                    of: #""demo": {"#, with: #""h2": { "targets": ["http://127.0.0.1:\#(h2Upstream.port)"], "protocol": "h2" }, "demo": {"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                // HTTP/1.1 by default: no hint, the answer itself comes first.
                let client = try await gateway.connect()
                try await client.send("GET /early-hints HTTP/1.1\r\nHost: test.local\r\n\r\n")
                let plain = try await client.readResponse()
                #expect(plain.status == 200, "\(plain)")
                #expect(plain.json["hinted"] as? Bool == true)

                // Asked for: the gateway's own hint, then the upstream's (four of six), then the answer.
                try await client.send("GET /hinted/early-hints?count=6 HTTP/1.1\r\nHost: test.local\r\n\r\n")
                let own = try await client.readResponse()
                #expect(own.status == 103 && own.reason == "Early Hints", "\(own)")
                #expect(own.headers("link") == ["</app.css>; rel=preload; as=style"])
                var relayed: [TestResponse] = []
                var response = try await client.readResponse()
                while response.status == 103 {
                    relayed.append(response)
                    response = try await client.readResponse()
                }
                #expect(response.status == 200, "\(response)")
                let hintNumbers = relayed.map { $0.header("x-hint") }
                #expect(hintNumbers == ["1", "2", "3", "4"])
                for hint in relayed {
                    #expect(hint.header("link") == "</style.css>; rel=preload; as=style")
                    #expect(hint.header("set-cookie") == nil && hint.header("server") == nil, "\(hint)")
                }
                #expect(response.header("set-cookie") == nil)

                // From an HTTP/2 upstream too.
                try await client.send("GET /h2/early-hints HTTP/1.1\r\nHost: test.local\r\n\r\n")
                let fromH2 = try await client.readResponse()
                #expect(fromH2.status == 103 && fromH2.header("x-hint") == "1", "\(fromH2)")
                #expect(try await client.readResponse().status == 200)
                await client.close()

                // HTTP/1.0 clients never get a 1xx.
                let old = try await gateway.connect()
                try await old.send("GET /hinted/early-hints HTTP/1.0\r\nHost: test.local\r\n\r\n")
                #expect(try await old.readResponse().status == 200)
                await old.close()

                // HTTP/2 clients get the upstream's hints by default, none where the route turns them off.
                let h2 = try await H2Client.connect(port: gateway.port)
                let hinted = try await h2.get("/early-hints?count=2")
                #expect(hinted.status == 200)
                #expect(hinted.interim.map(\.status) == [103, 103])
                let hintNames = hinted.interim.map { hint in hint.headers.map(\.name) }
                let firstLink = hinted.interim.first?.headers.first { $0.name == "link" }?.value
                #expect(firstLink == "</style.css>; rel=preload; as=style")
                let leaked = hintNames.joined().filter { $0 == "set-cookie" || $0 == "server" }
                #expect(hintNames.count == 2 && leaked.isEmpty, "\(hintNames)")
                let off = try await h2.get("/off/early-hints")
                #expect(off.status == 200 && off.interim.isEmpty)
                let own2 = try await h2.get("/hinted/healthz")
                #expect(own2.status == 200)
                #expect(own2.interim.map(\.status) == [103])
                await h2.close()
            }
        }
    }

    // early_hints.learn over real sockets: a page's preloads (its answer's Link fields) go out in a 103 the next time
    // the page is asked for, to HTTP/2 clients, before the upstream's answer; only that page's; a personal answer teaches
    // nothing, and a later answer without preloads forgets them.
    @Test func learnedEarlyHints() async throws {
        let routes = #"[{ "name": "site", "upstream": "demo", "early_hints": { "learn": true } }]"#
        try await withUpstreams { upstreams in
            let json = basicConfig(routes: routes).replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let preload = "</app.css>; rel=preload; as=style"
                let encoded = preload.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                let h2 = try await H2Client.connect(port: gateway.port)
                let first = try await h2.get("/status/200?html=1&link=\(encoded)")
                #expect(first.status == 200 && first.interim.isEmpty, "nothing learned yet")
                // The query is not part of the page.
                let second = try await h2.get("/status/200?html=1")
                #expect(second.status == 200)
                #expect(second.interim.map(\.status) == [103])
                let hinted = second.interim.first?.headers.filter { $0.name == "link" }.map(\.value)
                #expect(hinted == [preload])
                let elsewhere = try await h2.get("/status/201?html=1")
                #expect(elsewhere.interim.isEmpty, "another page")

                // Personal answers teach nothing (each on a host of its own: pages are host and path).
                let teachers: [(host: String, query: String, headers: [(String, String)])] = [
                    ("cookie.test", "&set_cookie=s%3D1", []), ("private.test", "&cache_control=private", []),
                    ("token.test", "", [("Authorization", "Bearer t")]),
                ]
                var personal: [Int] = []
                for teacher in teachers {
                    _ = try await h2.request("GET", "/status/200?html=1&link=\(encoded)" + teacher.query, headers: [("Host", teacher.host)] + teacher.headers)
                    personal.append(try await h2.request("GET", "/status/200?html=1", headers: [("Host", teacher.host)]).interim.count)
                }
                _ = try await h2.request("GET", "/status/200?html=1&link=\(encoded)", headers: [("Host", "public.test")])
                let shared = try await h2.request("GET", "/status/200?html=1", headers: [("Host", "public.test")])
                #expect(personal == [0, 0, 0] && shared.interim.count == 1, "\(personal)")

                // The second answer named no preload: forgotten.
                let forgotten = try await h2.get("/status/200?html=1")
                #expect(forgotten.interim.isEmpty)
                await h2.close()
            }
        }
    }

    // request_validation: bodies are checked against the route's JSON Schema before anything goes upstream; what
    // does not match is a 400 saying where, a body declared as something else a 415, and a valid one arrives intact.
    @Test func requestValidation() async throws {
        let routes = #"""
            [{ "name": "optional", "match": { "path_prefix": "/optional" }, "upstream": "demo",
               "request_validation": { "body_required": false, "body_schema": { "type": "object" } } },
             { "name": "orders", "upstream": "demo", "max_body_bytes": 100000,
               "request_validation": { "max_body_bytes": 200, "body_schema": {
                 "type": "object", "required": ["sku", "qty"], "additionalProperties": false,
                 "properties": { "sku": { "type": "string" }, "qty": { "type": "integer", "minimum": 1 } } } } }]
            """#
        try await withUpstreams { upstreams in
            let json = basicConfig(routes: routes).replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let type = [("Content-Type", "application/json; charset=utf-8")]
                let valid = try await gateway.request("POST", "/orders", headers: type, body: #"{"sku": "a-1", "qty": 2}"#)
                #expect(valid.status == 200)
                #expect(valid.json["body"] as? String == #"{"sku": "a-1", "qty": 2}"#)

                let wrong = try await gateway.request("POST", "/orders", headers: type, body: #"{"sku": "a-1", "qty": 0}"#)
                #expect(wrong.status == 400 && wrong.errorCode == "INVALID_BODY")
                #expect((wrong.json["error"] as? [String: Any])?["message"] as? String == "The request body does not match this route's schema: /qty: must be at least 1.")
                let extra = try await gateway.request("POST", "/orders", headers: type, body: #"{"sku": "a-1", "qty": 1, "admin": true}"#)
                #expect((extra.json["error"] as? [String: Any])?["message"] as? String == "The request body does not match this route's schema: /admin: is not an allowed property.")
                let broken = try await gateway.request("POST", "/orders", headers: type, body: #"{"sku": "a-1", "qty": 1,}"#)
                #expect(broken.errorCode == "INVALID_BODY")
                let brokenMessage = (broken.json["error"] as? [String: Any])?["message"] as? String
                #expect(brokenMessage?.hasPrefix("The request body is not valid JSON: line 1, column") == true, "\(brokenMessage ?? "")")
                let duplicate = try await gateway.request("POST", "/orders", headers: type, body: #"{"sku": "a", "qty": 1, "qty": -5}"#)
                #expect(duplicate.errorCode == "INVALID_BODY", "a duplicate key could read differently upstream")
                let form = try await gateway.request("POST", "/orders", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: "sku=a&qty=1")
                #expect(form.status == 415 && form.errorCode == "UNSUPPORTED_MEDIA_TYPE")
                let empty = try await gateway.request("POST", "/orders", headers: type)
                #expect(empty.status == 400 && empty.errorCode == "INVALID_BODY")
                let optional = try await gateway.request("POST", "/optional", headers: type)
                #expect(optional.status == 200, "body_required: false")
                let large = try await gateway.request("POST", "/orders", headers: type, body: #"{"sku": ""# + String(repeating: "x", count: 300) + #"", "qty": 1}"#)
                #expect(large.status == 413, "request_validation.max_body_bytes bounds what is held")
                let get = try await gateway.request("GET", "/orders/7")
                #expect(get.status == 200, "no body to check")
                #expect(upstreams[0].requestsServed == 3)

                // A chunked body is checked whole; with Expect: 100-continue a wrong type is refused before the body is sent.
                let client = try await gateway.connect()
                try await client.send("POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"sku\r\n")
                try await client.send("11\r\n\": \"b\", \"qty\": 3}\r\n0\r\n\r\n")
                let chunked = try await client.readResponse()
                #expect(chunked.status == 200 && chunked.json["body"] as? String == #"{"sku": "b", "qty": 3}"#)
                try await client.send("GET /orders/8 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                #expect(try await client.readResponse().status == 200, "an empty body of unknown length is no body")
                await client.close()
                let expecting = try await gateway.connect()
                try await expecting.send("PUT /orders HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
                #expect(try await expecting.readResponse().status == 415)
                await expecting.close()

                // HTTP/2 streams too.
                let h2 = try await H2Client.connect(port: gateway.port)
                let good = try await h2.request("POST", "/orders", headers: [("content-type", "application/json")], body: Array(#"{"sku":"c","qty":1}"#.utf8))
                let bad = try await h2.request("POST", "/orders", headers: [("content-type", "application/json")], body: Array(#"{"sku":1,"qty":1}"#.utf8))
                let bodiless = try await h2.request("GET", "/orders/7")
                let emptyPost = try await h2.request("POST", "/orders", headers: [("content-type", "application/json")])
                await h2.close()
                #expect(good.status == 200)
                #expect(bad.status == 400 && String(decoding: bad.bytes, as: UTF8.self).contains("/sku: expected a string, found a number"))
                #expect(bodiless.status == 200)
                #expect(emptyPost.status == 400 && String(decoding: emptyPost.bytes, as: UTF8.self).contains("This request needs a JSON body."))
            }
        }
    }

    // request_validation.query_schema: the query is checked (typed as the schema says) before anything goes upstream;
    // without a body_schema, bodies stream as on any route.
    @Test func queryValidation() async throws {
        let routes = #"""
            [{ "name": "search", "upstream": "demo", "cache": { "enabled": true, "default_ttl_seconds": 60, "ignore_query_params": ["page"] },
               "request_validation": { "query_schema": {
               "required": ["q"], "properties": { "q": { "type": "string", "minLength": 1 }, "page": { "type": "integer", "minimum": 1 },
                                                 "tag": { "type": "array", "items": { "enum": ["new", "sale"] } } } } } }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: #""admin": { "address": "127.0.0.1", "port": 0 },"#), upstreams: upstreams) { gateway in
                // No body_schema: a body streams to the upstream unchecked, not held.
                let (client, accepted) = try await Self.startUpload(to: "/search?q=x", gateway, upstreams[0])
                #expect(accepted == 1, "the upstream is called while the body still comes")
                try await client.send("0\r\n\r\n")
                let streamed = try await client.readResponse()
                #expect(streamed.status == 200 && streamed.json["body"] as? String == "hello")
                await client.close()

                let ok = try await gateway.request("GET", "/search?q=shoes&page=2&tag=new&tag=sale")
                #expect(ok.status == 200 && ok.json["uri"] as? String == "/search?q=shoes&page=2&tag=new&tag=sale")
                let message = { (response: TestResponse) in (response.json["error"] as? [String: Any])?["message"] as? String }
                let zero = try await gateway.request("GET", "/search?q=shoes&page=0")
                #expect(zero.status == 400 && zero.errorCode == "INVALID_QUERY")
                #expect(message(zero) == "The query does not match this route's schema: page must be at least 1.")
                let missing = try await gateway.request("GET", "/search?page=1")
                #expect(message(missing) == #"The query does not match this route's schema: the query lacks the required property "q"."#)
                let tag = try await gateway.request("GET", "/search?q=a&tag=new&tag=old")
                #expect(message(tag) == "The query does not match this route's schema: tag/1 is not one of the allowed values.")
                let encoded = try await gateway.request("GET", "/search?q=%20&page=%32")
                #expect(encoded.status == 200, "names and values are compared percent-decoded")
                #expect(upstreams[0].requestsServed == 3)
                // The cache key leaves page out, yet a stored answer never stands for a page the schema refuses.
                #expect(try await gateway.request("GET", "/search?q=cached&page=5").status == 200)
                #expect(try await gateway.request("GET", "/search?q=cached&page=6").header("x-cache") == "HIT")
                #expect(try await gateway.request("GET", "/search?q=cached&page=0").errorCode == "INVALID_QUERY")

                // Each refusal is logged with its reason and counted.
                let logged = gateway.logs.entries("request refused by request_validation")
                #expect(logged.count == 4 && logged.first?["reason"] as? String == "The query does not match this route's schema: page must be at least 1.")
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_request_validation_failures_total", ["route": "search", "part": "query"]) == 4)

            }
        }
    }

    // request_validation.path_schema and header_schema: a path template's variables (percent-decoded, typed) and the
    // header fields the schema names are checked before the cache and the upstream; path first, then headers, then query.
    @Test func pathAndHeaderValidation() async throws {
        let routes = #"""
            [{ "name": "orders", "match": { "path_template": "/accounts/{id}/orders/{rest=**}" }, "upstream": "demo",
               "cache": { "enabled": true, "default_ttl_seconds": 60 },
               "request_validation": {
                 "path_schema": { "properties": { "id": { "type": "integer", "minimum": 1 }, "rest": { "type": "string", "maxLength": 12 } } },
                 "header_schema": { "required": ["X-Tenant"], "properties": { "X-Tenant": { "type": "string", "format": "uuid" },
                                                                             "x-page-size": { "type": "integer", "maximum": 100 } } },
                 "query_schema": { "properties": { "page": { "type": "integer" } } } } }]
            """#
        let tenant = [("x-tenant", "123e4567-e89b-12d3-a456-426614174000")]
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: #""admin": { "address": "127.0.0.1", "port": 0 },"#), upstreams: upstreams) { gateway in
                let message = { (response: TestResponse) in (response.json["error"] as? [String: Any])?["message"] as? String }
                // rest is "a/" and ten spaces when decoded (12 characters), 32 as written.
                let spaces = String(repeating: "%20", count: 10)
                let ok = try await gateway.request("GET", "/accounts/7/orders/a/\(spaces)?page=2", headers: tenant + [("X-Page-Size", "50")])
                #expect(ok.status == 200 && ok.json["uri"] as? String == "/accounts/7/orders/a/\(spaces)?page=2", "variables are checked percent-decoded")

                let word = try await gateway.request("GET", "/accounts/seven/orders/a", headers: tenant)
                #expect(word.status == 400 && word.errorCode == "INVALID_PATH")
                #expect(message(word) == "The path does not match this route's schema: id expected an integer, found a string.")
                let long = try await gateway.request("GET", "/accounts/7/orders/abcdef/ghijkl", headers: tenant)
                #expect(message(long) == "The path does not match this route's schema: rest must be at most 12 characters long.")

                let noTenant = try await gateway.request("GET", "/accounts/7/orders/a")
                #expect(noTenant.status == 400 && noTenant.errorCode == "INVALID_HEADER")
                #expect(message(noTenant) == #"The request headers do not match this route's schema: the request lacks the required property "X-Tenant"."#)
                let size = try await gateway.request("GET", "/accounts/7/orders/a?page=x", headers: tenant + [("x-page-size", "500")])
                #expect(message(size) == "The request headers do not match this route's schema: x-page-size must be at most 100.", "headers before the query")
                let page = try await gateway.request("GET", "/accounts/7/orders/a?page=x", headers: tenant)
                #expect(page.errorCode == "INVALID_QUERY")
                #expect(upstreams[0].requestsServed == 1)

                // The cache keys on the path and query only, yet a stored answer never stands for headers the route refuses.
                #expect(try await gateway.request("GET", "/accounts/8/orders/x", headers: tenant).status == 200)
                #expect(try await gateway.request("GET", "/accounts/8/orders/x", headers: tenant).header("x-cache") == "HIT")
                #expect(try await gateway.request("GET", "/accounts/8/orders/x", headers: [("x-tenant", "not-a-uuid")]).errorCode == "INVALID_HEADER")
                #expect(upstreams[0].requestsServed == 2)

                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_request_validation_failures_total", ["route": "orders", "part": "path"]) == 2)
                #expect(metrics.value("gateway_request_validation_failures_total", ["route": "orders", "part": "header"]) == 3)
                #expect(metrics.value("gateway_request_validation_failures_total", ["route": "orders", "part": "query"]) == 1)
            }
        }
    }

    // location_rewrite: a redirect to the upstream's own address reaches the client as a path on the gateway, with the
    // route's strip_prefix put back; relative paths too when asked; off, the upstream's Location passes as written.
    // cookie_rewrite: cookies' Path and Domain as the browser must see them, and the flags the route adds.
    @Test func redirectsAndCookiesMapBackToTheGateway() async throws {
        let routes = #"""
            [{ "name": "api", "match": { "path_prefix": "/api" }, "upstream": "demo", "strip_prefix": "/api" },
             { "name": "app", "match": { "path_prefix": "/app" }, "upstream": "demo", "strip_prefix": "/app", "location_rewrite": { "relative_paths": true },
               "cookie_rewrite": { "path": true, "domains": [{ "from": "demo.internal", "to": "shop.example.com" }], "flags": { "secure": true, "same_site": "Lax" } } },
             { "name": "raw", "match": { "path_prefix": "/raw" }, "upstream": "demo", "strip_prefix": "/raw", "location_rewrite": false }]
            """#
        try await withUpstreams { upstreams in
            let own = "http://127.0.0.1:\(upstreams[0].port)/login?next=%2Fhome"
            let encoded = own.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let redirected = try await gateway.request("GET", "/api/status/302?location=\(encoded)")
                #expect(redirected.status == 302 && redirected.header("location") == "/api/login?next=%2Fhome")
                let created = try await gateway.request("POST", "/api/status/201?location=\(encoded)", body: "{}")
                #expect(created.status == 201 && created.header("location") == "/api/login?next=%2Fhome")
                let elsewhere = try await gateway.request("GET", "/api/status/302?location=https%3A%2F%2Fid.example.com%2Fauthorize")
                #expect(elsewhere.header("location") == "https://id.example.com/authorize")
                let relative = try await gateway.request("GET", "/app/status/303?location=%2Fsignin")
                #expect(relative.header("location") == "/app/signin")
                let untouched = try await gateway.request("GET", "/raw/status/302?location=\(encoded)")
                #expect(untouched.header("location") == own)

                // cookie_rewrite on the app route: the upstream's cookie for its root and its own name reaches the
                // browser for the route's prefix and the public name.
                let cookie = "sid=abc; Path=/; Domain=demo.internal; HttpOnly".addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                let withCookie = try await gateway.request("GET", "/app/status/200?set_cookie=\(cookie)")
                #expect(withCookie.header("set-cookie") == "sid=abc; Path=/app; Domain=shop.example.com; HttpOnly; SameSite=Lax; Secure")
                let plainCookie = try await gateway.request("GET", "/api/status/200?set_cookie=\(cookie)")
                #expect(plainCookie.header("set-cookie") == "sid=abc; Path=/; Domain=demo.internal; HttpOnly")
            }
        }
    }

    // A route that strips a prefix tells the upstream what it removed (X-Forwarded-Prefix, as the client wrote it),
    // after a trusted proxy's own prefix; an untrusted client's value never passes.
    @Test func forwardedPrefixForStrippedRoutes() async throws {
        let routes = #"""
            [{ "name": "api", "match": { "path_prefix": "/api" }, "upstream": "demo", "strip_prefix": "/api" },
             { "name": "plain", "match": { "path_prefix": "/plain" }, "upstream": "demo" }]
            """#
        let spoof = [("X-Forwarded-Prefix", "/edge/")]
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let stripped = try await gateway.request("GET", "/API/v1/x?q=1", headers: spoof)
                #expect(stripped.json["uri"] as? String == "/v1/x?q=1")
                #expect(stripped.echoedHeaders["x-forwarded-prefix"] == "/API")
                let whole = try await gateway.request("GET", "/api")
                #expect(whole.json["uri"] as? String == "/")
                #expect(whole.echoedHeaders["x-forwarded-prefix"] == "/api")
                let plain = try await gateway.request("GET", "/plain/x", headers: spoof)
                #expect(plain.echoedHeaders["x-forwarded-prefix"] == nil)
            }
            try await withGateway(basicConfig(routes: routes, top: #""trusted_proxies": ["127.0.0.0/8"],"#), upstreams: upstreams) { gateway in
                let stripped = try await gateway.request("GET", "/api/v1/x", headers: spoof)
                #expect(stripped.echoedHeaders["x-forwarded-prefix"] == "/edge/api")
                let plain = try await gateway.request("GET", "/plain/x", headers: spoof)
                #expect(plain.echoedHeaders["x-forwarded-prefix"] == "/edge/")
            }
        }
    }

    // deny_ips / allow_ips refuse other client addresses with 403 before the upstream; the address is the one
    // trusted_proxies resolve (a spoofed X-Forwarded-For from anyone else changes nothing).
    @Test func clientAddressRules() async throws {
        let routes = #"""
            [{ "name": "internal", "match": { "path_prefix": "/internal" }, "upstream": "demo", "allow_ips": ["10.0.0.0/8"] },
             { "name": "local", "match": { "path_prefix": "/local" }, "upstream": "demo", "allow_ips": ["127.0.0.1", "::1"] },
             { "name": "blocked", "match": { "path_prefix": "/blocked" }, "upstream": "demo", "deny_ips": ["127.0.0.0/8"], "allow_ips": ["127.0.0.1"] },
             { "name": "open", "upstream": "demo" }]
            """#
        let spoof = [("X-Forwarded-For", "10.1.2.3")]
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                var outcomes: [String] = []
                for path in ["/internal/x", "/local/x", "/blocked/x", "/open/x"] {
                    let response = try await gateway.request("GET", path, headers: spoof)
                    outcomes.append("\(path) \(response.status) \(response.errorCode ?? "-")")
                }
                #expect(outcomes == ["/internal/x 403 IP_NOT_ALLOWED", "/local/x 200 -", "/blocked/x 403 IP_NOT_ALLOWED", "/open/x 200 -"])
                #expect(upstreams[0].requestsServed == 2)
            }
            try await withGateway(basicConfig(routes: routes, top: #""trusted_proxies": ["127.0.0.0/8"],"#), upstreams: upstreams) { gateway in
                let viaProxy = try await gateway.request("GET", "/internal/x", headers: spoof)
                #expect(viaProxy.status == 200)
                let outsider = try await gateway.request("GET", "/internal/x", headers: [("X-Forwarded-For", "198.51.100.7")])
                #expect(outsider.status == 403)
            }
        }
    }

    // request_headers edit what the upstream gets (the forwarding headers included, a client's value overridden);
    // response_headers edit every response of the route, the upstream's and the gateway's own errors.
    @Test func routeHeaderEdits() async throws {
        let routes = #"""
            [{ "name": "edited", "match": { "path_prefix": "/edited" }, "upstream": "demo", "strip_prefix": "/edited",
               "request_headers": { "remove": ["X-Debug", "x-forwarded-for"], "set": { "X-Tenant": "acme", "x-source": "gateway" } },
               "response_headers": { "remove": ["x-end-to-end"], "set": { "Cache-Control": "no-store", "x-route": "edited" } } },
             { "name": "plain", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, limits: #"{ "max_body_bytes": 16 }"#), upstreams: upstreams) { gateway in
                let clientHeaders = [("X-Debug", "1"), ("X-Tenant", "evil"), ("X-Kept", "yes")]
                let echoed = try await gateway.request("GET", "/edited/echo", headers: clientHeaders)
                #expect(echoed.status == 200)
                #expect(echoed.echoedHeaders["x-tenant"] == "acme")
                #expect(echoed.echoedHeaders["x-source"] == "gateway")
                #expect(echoed.echoedHeaders["x-debug"] == nil)
                #expect(echoed.echoedHeaders["x-forwarded-for"] == nil)
                #expect(echoed.echoedHeaders["x-kept"] == "yes")
                #expect(echoed.echoedHeaders["x-forwarded-proto"] == "http")
                #expect(echoed.header("x-route") == "edited")

                let hop = try await gateway.request("GET", "/edited/hop")
                #expect(hop.header("x-end-to-end") == nil)
                let cached = try await gateway.request("GET", "/edited/cacheable?cc=public%2C%20max-age%3D60")
                #expect(cached.headers("cache-control") == ["no-store"])

                let refused = try await gateway.request("POST", "/edited/upload", body: String(repeating: "x", count: 64))
                #expect(refused.status == 413)
                #expect(refused.header("x-route") == "edited")
                #expect(refused.header("cache-control") == "no-store")

                let plain = try await gateway.request("GET", "/hop", headers: clientHeaders)
                #expect(plain.header("x-end-to-end") == "kept")
                #expect(plain.header("x-route") == nil)
            }
        }
    }

    // set_from: fields carry the request's own values (X-Real-IP as NGINX setups send it, the consumer, the
    // route...); a client's field of that name never passes, not even when the request has no such value.
    @Test func headersSetFromTheRequest() async throws {
        let apiKey = "gw_set-from-test-key"
        let routes = #"""
            [{ "name": "private", "match": { "path_prefix": "/private" }, "upstream": "demo", "auth": { "require": ["api_key"] },
               "request_headers": { "set_from": { "X-Real-IP": "client_ip", "X-Peer": "peer_ip", "X-Consumer": "consumer", "X-Route": "route",
                                                  "X-Scheme": "scheme", "X-Method": "method", "X-Host": "host", "X-Req": "request_id", "X-Trace": "trace_id" } },
               "response_headers": { "set_from": { "X-Served-By-Route": "route", "X-Consumer": "consumer" } } },
             { "name": "public", "upstream": "demo", "request_headers": { "set_from": { "X-Consumer": "consumer", "X-Real-IP": "client_ip" } } }]
            """#
        let top = #""trusted_proxies": ["127.0.0.1"], "auth": { "api_keys": [{ "id": "reporting", "sha256": "\#(APIKeyDigest.hex(apiKey))" }] },"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { gateway in
                let forged = [("X-Consumer", "admin"), ("X-Real-IP", "10.9.9.9"), ("X-Forwarded-For", "198.51.100.23")]
                let response = try await gateway.request("GET", "/private/x", headers: forged + [("X-API-Key", apiKey)])
                #expect(response.status == 200)
                let sent = response.echoedHeaders
                #expect(sent["x-real-ip"] == "198.51.100.23", "the client as trusted_proxies resolve it")
                #expect(sent["x-peer"] == "127.0.0.1")
                #expect(sent["x-consumer"] == "reporting")
                #expect(sent["x-route"] == "private" && sent["x-scheme"] == "http" && sent["x-method"] == "GET")
                #expect(sent["x-host"] == "test.local")
                #expect(sent["x-req"] == response.header("x-request-id") && sent["x-req"]?.isEmpty == false)
                #expect(sent["x-trace"]?.count == 32)
                #expect(response.header("x-served-by-route") == "private" && response.header("x-consumer") == "reporting")

                let anonymous = try await gateway.request("GET", "/other", headers: forged)
                #expect(anonymous.status == 200)
                #expect(anonymous.echoedHeaders["x-consumer"] == nil, "no consumer: the client's field is removed, not passed")
                #expect(anonymous.echoedHeaders["x-real-ip"] == "198.51.100.23")
            }
        }
    }

    // Behind Cloudflare: trusted_proxies_file lists the provider's ranges, and client_ip_header reads the client from
    // the field it sets (before X-Forwarded-For, which is the fallback when the field holds no address). From a peer
    // that is not trusted, the field names nobody and is removed before the upstream could believe it.
    @Test func clientFromTheProxysOwnField() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("trusted-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let list = folder.appendingPathComponent("cloudflare.txt").path
        try "# the provider's published ranges\n127.0.0.1/32\n".write(toFile: list, atomically: true, encoding: .utf8)
        let routes = #"[{ "name": "all", "upstream": "demo", "request_headers": { "set_from": { "X-Real-IP": "client_ip" } } }]"#
        let top = #""trusted_proxies_file": "\#(list)", "client_ip_header": "CF-Connecting-IP","#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { gateway in
                let named = try await gateway.request("GET", "/echo", headers: [("CF-Connecting-IP", "203.0.113.9"), ("X-Forwarded-For", "198.51.100.1")])
                #expect(named.echoedHeaders["x-real-ip"] == "203.0.113.9" && named.echoedHeaders["cf-connecting-ip"] == "203.0.113.9")
                #expect(try await gateway.accessLog(for: named)["client_ip"] as? String == "203.0.113.9")
                let garbled = try await gateway.request("GET", "/echo", headers: [("CF-Connecting-IP", "unknown"), ("X-Forwarded-For", "198.51.100.1")])
                #expect(garbled.echoedHeaders["x-real-ip"] == "198.51.100.1", "no address in the field: X-Forwarded-For")
            }
            try "10.0.0.0/8\n".write(toFile: list, atomically: true, encoding: .utf8)
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { gateway in
                let forged = try await gateway.request("GET", "/echo", headers: [("CF-Connecting-IP", "203.0.113.9")])
                #expect(forged.echoedHeaders["x-real-ip"] == "127.0.0.1" && forged.echoedHeaders["cf-connecting-ip"] == nil)
            }
        }
        let untrusted = ConfigLoader.load(text: basicConfig(targets: #""http://127.0.0.1:9""#, top: #""client_ip_header": "X-Real-IP","#), environment: [:])
        #expect(untrusted.warnings.map(\.description) == ["warning: client_ip_header: read only from trusted_proxies, and none is listed"])
        let reserved = ConfigLoader.load(text: basicConfig(targets: #""http://127.0.0.1:9""#, top: #""client_ip_header": "X-Forwarded-For","#), environment: [:])
        #expect(reserved.errors.count == 1)
    }

    // The access log names the client's software, protocol and Host (operators' usual questions), never the query.
    @Test func accessLogFields() async throws {
        try await withUpstreams { upstreams in
            let config = basicConfig().replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(config, upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/echo?token=secret", headers: [("User-Agent", "probe/1.0")])
                let log = try await gateway.accessLog(for: response)
                #expect(log["user_agent"] as? String == "probe/1.0")
                #expect(log["protocol"] as? String == "HTTP/1.1")
                #expect(log["host"] as? String == "test.local")
                #expect(log["path"] as? String == "/echo")

                let client = try await H2Client.connect(port: gateway.port)
                let h2 = try await client.request("GET", "/echo", headers: [("x-request-id", "h2-access-log-1")])
                await client.close()
                #expect(h2.status == 200)
                let h2Log = try #require(await gateway.logs.accessEntry(requestID: "h2-access-log-1"))
                #expect(h2Log["protocol"] as? String == "HTTP/2")
                #expect(h2Log["user_agent"] == nil)
            }
        }
    }

    // proxy_protocol: a trusted load balancer's PROXY header (v1 or v2) names the client, for the upstream's
    // X-Forwarded-For, the access log and allow_ips; a connection without a valid header gets nothing.
    @Test func proxyProtocolNamesTheClient() async throws {
        let routes = #"""
            [{ "name": "partners", "match": { "path_prefix": "/partners" }, "upstream": "demo", "strip_prefix": "/partners", "allow_ips": ["203.0.113.0/24"] },
             { "name": "rest", "upstream": "demo" }]
            """#
        let trusted = #""trusted_proxies": ["127.0.0.1"],"#
        try await withUpstreams { upstreams in
            let config = basicConfig(routes: routes, top: trusted).replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "proxy_protocol": true }"#)
            try await withGateway(config, upstreams: upstreams) { gateway in
                let v1 = try await gateway.connect()
                try await v1.send("PROXY TCP4 203.0.113.7 127.0.0.1 51234 80\r\nGET /partners/echo HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
                let first = try await v1.readResponse()
                #expect(first.status == 200)
                #expect(first.echoedHeaders["x-forwarded-for"] == "203.0.113.7")
                let log = try await gateway.accessLog(for: first)
                #expect(log["client_ip"] as? String == "203.0.113.7")
                // The same connection keeps its client.
                try await v1.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await v1.readResponse().echoedHeaders["x-forwarded-for"] == "203.0.113.7")
                await v1.close()

                // Version 2, split across writes; an IPv6 client outside allow_ips.
                let v2 = try await gateway.connect()
                let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
                let source: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [9]
                let header = signature + [0x21, 0x21, 0, 36] + source + Array(repeating: 0, count: 16) + [0, 1, 0, 80]
                try await v2.send(bytes: Array(header.prefix(10)))
                try await v2.send(bytes: Array(header.dropFirst(10)) + Array("GET /partners/echo HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                let refused = try await v2.readResponse()
                #expect(refused.status == 403)
                #expect(refused.errorCode == "IP_NOT_ALLOWED")
                await v2.close()

                // No header: closed without an answer.
                let bare = try await gateway.connect()
                try await bare.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(await bare.waitForClose())
                #expect(upstreams[0].requestsServed == 2)
            }
            // Only trusted peers may send the header: anyone else is closed at once.
            let untrusted = config.replacingOccurrences(of: #"["127.0.0.1"]"#, with: #"["10.0.0.0/8"]"#)
            try await withGateway(untrusted, upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try? await client.send("PROXY TCP4 203.0.113.7 127.0.0.1 51234 80\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(await client.waitForClose())
            }
        }
    }

    // Routes that answer themselves: a redirect (the path after strip_prefix and the query appended) and a
    // configured JSON error; the route's other checks still run first, and nothing reaches the upstream.
    @Test func routesThatAnswerThemselves() async throws {
        let routes = #"""
            [{ "name": "moved", "match": { "path_prefix": "/old" }, "strip_prefix": "/old",
               "redirect": { "location": "https://new.example.com/api/", "append_path": true } },
             { "name": "moved-here", "match": { "path": "/docs" }, "redirect": { "location": "/developer/docs", "status": 302 } },
             { "name": "retired", "match": { "path_prefix": "/v1" },
               "respond": { "status": 410, "code": "API_RETIRED", "message": "v1 was retired; use /v2." },
               "response_headers": { "set": { "sunset": "Sat, 01 Nov 2025 00:00:00 GMT" } } },
             { "name": "maintenance", "match": { "path_prefix": "/billing" }, "allow_ips": ["10.0.0.0/8"],
               "respond": { "status": 503, "code": "MAINTENANCE", "message": "Billing is down for maintenance.", "retry_after_seconds": 600 } },
             { "name": "rest", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let moved = try await gateway.request("POST", "/old/items/7?expand=a%20b", body: "{}")
                #expect(moved.status == 308)
                #expect(moved.header("location") == "https://new.example.com/api/items/7?expand=a%20b")
                let here = try await gateway.request("GET", "/docs")
                #expect(here.status == 302)
                #expect(here.header("location") == "/developer/docs")

                let retired = try await gateway.request("GET", "/v1/orders")
                #expect(retired.status == 410)
                #expect(retired.errorCode == "API_RETIRED")
                #expect((retired.json["error"] as? [String: Any])?["message"] as? String == "v1 was retired; use /v2.")
                #expect(retired.errorRequestID == retired.header("x-request-id"))
                #expect(retired.header("sunset") == "Sat, 01 Nov 2025 00:00:00 GMT")
                let log = try await gateway.accessLog(for: retired)
                #expect(log["route"] as? String == "retired")
                #expect(log["error_code"] as? String == "API_RETIRED")

                // allow_ips runs before the answer: the maintenance page is for the internal network only.
                let outside = try await gateway.request("GET", "/billing/invoices")
                #expect(outside.errorCode == "IP_NOT_ALLOWED")
                let outsideLog = try await gateway.accessLog(for: outside)
                #expect(outsideLog["error_code"] as? String == "IP_NOT_ALLOWED")
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // direct_response: a fixed answer (robots.txt, an edge health check) with its type, headers and body; HEAD
    // gets the fields without the body; security headers and access log as for any answer; nothing goes upstream.
    @Test func directResponses() async throws {
        let routes = #"""
            [{ "name": "robots", "match": { "path": "/robots.txt" },
               "direct_response": { "body": "User-agent: *\nDisallow: /\n", "headers": { "Cache-Control": "max-age=86400" } } },
             { "name": "edge-health", "match": { "path": "/edge/health" },
               "direct_response": { "status": 200, "content_type": "application/json", "body": "{\"status\":\"ok\"}" } },
             { "name": "gone", "match": { "path": "/gone" }, "direct_response": { "status": 204 } },
             { "name": "rest", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let robots = try await gateway.request("GET", "/robots.txt")
                #expect(robots.status == 200 && robots.text == "User-agent: *\nDisallow: /\n")
                #expect(robots.header("content-type") == "text/plain; charset=utf-8" && robots.header("cache-control") == "max-age=86400")
                #expect(robots.header("x-content-type-options") == "nosniff" && robots.header("x-request-id") != nil)
                let head = try await gateway.request("HEAD", "/robots.txt")
                #expect(head.status == 200 && head.body.isEmpty && head.header("content-length") == "26")
                let health = try await gateway.request("GET", "/edge/health")
                #expect(health.header("content-type") == "application/json" && health.json["status"] as? String == "ok")
                let gone = try await gateway.request("GET", "/gone")
                #expect(gone.status == 204 && gone.body.isEmpty)
                let log = try await gateway.accessLog(for: robots)
                #expect(log["route"] as? String == "robots" && log["status"] as? Int == 200)
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // Security headers go on upstream responses and on the gateway's own errors; never HSTS on plaintext.
    @Test func securityHeadersOnEveryResponse() async throws {
        let top = #"""
            "security_headers": { "content_security_policy": "default-src 'none'", "referrer_policy": null,
                                  "content_security_policy_report_only": "default-src 'self'; report-to csp", "cross_origin_opener_policy": "same-origin",
                                  "cross_origin_embedder_policy": "require-corp", "cross_origin_resource_policy": "same-site" },
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: #"[{ "name": "r", "match": { "path_prefix": "/ok" }, "upstream": "demo" }]"#, top: top), upstreams: upstreams) { gateway in
                for target in ["/ok/echo", "/missing"] {
                    let response = try await gateway.request("GET", target)
                    #expect(response.header("x-content-type-options") == "nosniff")
                    #expect(response.header("x-frame-options") == "DENY")
                    #expect(response.header("content-security-policy") == "default-src 'none'")
                    #expect(response.header("referrer-policy") == nil)  // switched off with null
                    #expect(response.header("strict-transport-security") == nil)
                    #expect(response.header("content-security-policy-report-only") == "default-src 'self'; report-to csp")
                    #expect(response.header("cross-origin-opener-policy") == "same-origin" && response.header("cross-origin-embedder-policy") == "require-corp")
                    #expect(response.header("cross-origin-resource-policy") == "same-site")
                }
            }
        }
    }

    // Every final response carries a Date (RFC 9110 §6.6.1): added when the upstream sent none, the upstream's own
    // passed on unchanged, and on the gateway's own errors; over HTTP/1.1 and HTTP/2.
    @Test func dateOnEveryResponse() async throws {
        let routes = #"[{ "name": "echo", "match": { "path_prefix": "/echo" }, "upstream": "demo" }, { "name": "cacheable", "match": { "path_prefix": "/cacheable" }, "upstream": "demo" }]"#
        let json = basicConfig(routes: routes).replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        try await withUpstreams { upstreams in
            try await withGateway(json, upstreams: upstreams) { gateway in
                for target in ["/echo", "/missing"] {
                    let response = try await gateway.request("GET", target)
                    #expect(response.status == (target == "/echo" ? 200 : 404))
                    #expect(response.headers("date").count == 1)
                    let date = try #require(response.header("date").flatMap(formatter.date(from:)), "\(response)")
                    #expect(abs(date.timeIntervalSinceNow) < 5)
                }
                let upstreamDate = "Tue, 01 Dec 2026 08:00:00 GMT"
                let kept = try await gateway.request("GET", "/cacheable?cc=no-store&date=\(upstreamDate.replacingOccurrences(of: " ", with: "%20"))")
                #expect(kept.headers("date") == [upstreamDate])
                let h2 = try await shell("nghttp -v http://127.0.0.1:\(gateway.port)/echo", timeout: .seconds(30))
                #expect(h2.stdout.contains(":status: 200"), "\(h2.stdout)")
                let line = h2.stdout.split(separator: "\n").first { $0.contains(" date: ") }
                let value = line?.range(of: " date: ").map { String(line![$0.upperBound...]) }
                let h2Date = try #require(value.flatMap(formatter.date(from:)), "\(h2.stdout)")
                #expect(abs(h2Date.timeIntervalSinceNow) < 5)
            }
        }
    }

    // Round robin spreads requests over both targets.
    @Test func balancesAcrossTargets() async throws {
        try await withUpstreams(2) { upstreams in
            let targets = #""http://127.0.0.1:$UP0", "http://127.0.0.1:$UP1""#
            try await withGateway(basicConfig(targets: targets), upstreams: upstreams) { gateway in
                var served: [String: Int] = [:]
                for _ in 0..<6 {
                    let response = try await gateway.request("GET", "/echo")
                    served[response.json["upstream"] as? String ?? "?", default: 0] += 1
                }
                #expect(served == ["a": 3, "b": 3])
            }
        }
    }

    // A plaintext listener with redirect_https_port answers 308 to the same host, path and query.
    @Test func redirectListener() async throws {
        let config = """
            { "workers": 1,
              "listeners": [{ "name": "redirect", "address": "127.0.0.1", "port": 0, "redirect_https_port": 8443 }],
              "upstreams": { "demo": { "targets": ["http://127.0.0.1:$UP0"] } },
              "routes": [{ "name": "all", "upstream": "demo" }] }
            """
        try await withUpstreams { upstreams in
            try await withGateway(config, upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/a/b?c=d")
                #expect(response.status == 308)
                #expect(response.header("location") == "https://test.local:8443/a/b?c=d")
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // intercept_errors: an upstream's error page (here with a stack trace) reaches the client as the gateway's JSON
    // error with the upstream's status, the fields it keeps, the request id, on a connection that stays usable.
    @Test func interceptsUpstreamErrors() async throws {
        let routes = """
            [
              { "name": "raw", "match": { "path_prefix": "/raw" }, "upstream": "demo", "strip_prefix": "/raw", "intercept_errors": false },
              { "name": "json", "match": { "path_prefix": "/json" }, "upstream": "demo", "strip_prefix": "/json",
                "intercept_errors": { "statuses": ["5xx", 404], "keep_json": true, "keep_headers": [] } },
              { "name": "api", "match": { "path_prefix": "/api" }, "upstream": "demo", "strip_prefix": "/api" }
            ]
            """
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: #""intercept_errors": true,"#), upstreams: upstreams) { gateway in
                let crash = try await gateway.request("GET", "/api/status/500?html=1")
                #expect(crash.status == 500)
                #expect(crash.header("content-type") == "application/json")
                #expect(crash.errorCode == "UPSTREAM_ERROR")
                #expect((crash.json["error"] as? [String: Any])?["message"] as? String == "The upstream service answered 500 Internal Server Error.")
                #expect(crash.errorRequestID == crash.header("x-request-id"))
                #expect(!crash.text.contains("Traceback"))
                #expect(crash.header("x-content-type-options") == "nosniff")  // the gateway's answers get the security headers
                let log = try await gateway.accessLog(for: crash)
                #expect(log["status"] as? Int == 500)
                #expect(log["error_code"] as? String == "UPSTREAM_ERROR")

                // Retry-After is kept by default; a 404 is not a 5xx, so the upstream's page passes.
                let busy = try await gateway.request("GET", "/api/status/503?retry_after=7&html=1")
                #expect(busy.status == 503 && busy.errorCode == "UPSTREAM_ERROR")
                #expect(busy.header("retry-after") == "7")
                let missing = try await gateway.request("GET", "/api/status/404?html=1")
                #expect(missing.status == 404 && missing.header("content-type") == "text/html" && missing.text.contains("Traceback"))
                let head = try await gateway.request("HEAD", "/api/status/502?html=1")
                #expect(head.status == 502 && head.body.isEmpty)

                // A route's own setting: off, or its own statuses, JSON answers passing, no fields kept.
                let raw = try await gateway.request("GET", "/raw/status/500?html=1")
                #expect(raw.status == 500 && raw.text.contains("Traceback"))
                let json = try await gateway.request("GET", "/json/status/500")
                #expect(json.status == 500 && json.json["upstream"] as? String == "a")
                let page = try await gateway.request("GET", "/json/status/404?html=1")
                #expect(page.status == 404 && page.errorCode == "UPSTREAM_ERROR")
                let bare = try await gateway.request("GET", "/json/status/503?retry_after=7&html=1")
                #expect(bare.errorCode == "UPSTREAM_ERROR" && bare.header("retry-after") == nil)

                // The client's connection goes on, and the upstream connection whose body was never read is not
                // reused (its unread page would be taken for the next answer).
                let client = try await gateway.connect()
                try await client.send("GET /api/status/500?html=1 HTTP/1.1\r\nHost: test.local\r\n\r\n")
                #expect(try await client.readResponse().errorCode == "UPSTREAM_ERROR")
                try await client.send("GET /api/echo HTTP/1.1\r\nHost: test.local\r\n\r\n")
                let next = try await client.readResponse()
                #expect(next.status == 200 && next.json["uri"] as? String == "/echo")
                await client.close()
            }
        }
    }
}
