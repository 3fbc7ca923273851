import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Testing

@Suite struct RouteTableTests {
    func table(_ routes: String) throws -> RouteTable {
        let json = """
            { "listeners": [{ "name": "l", "port": 1 }, { "name": "internal", "address": "127.0.0.1", "port": 2 }],
              "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] }, "v": { "targets": ["http://127.0.0.1:2"] } },
              "routes": \(routes) }
            """
        let result = ConfigLoader.load(text: json, environment: [:])
        let config = try #require(result.config, "\(result.errors)")
        return GatewayRuntime.compileRoutes(config)
    }

    func name(_ match: RouteMatch) -> String {
        switch match {
        case .matched(let route): return route.name
        case .methodNotAllowed(let allowed): return "405 " + allowed.joined(separator: ",")
        case .notFound: return "404"
        }
    }

    func route(
        _ table: RouteTable, _ path: String, method: HTTPMethod = .GET, host: String = "", headers: [(String, String)] = [], listener: String = "l"
    ) -> String {
        name(table.match(host: Substring(host), path: Substring(path), method: method, headers: HeaderList(headers), listener: listener))
    }

    func route(_ table: RouteTable, target: String) -> String {
        let (path, query) = target.firstIndex(of: "?").map { (target[..<$0], target[target.index(after: $0)...]) } ?? (Substring(target), "")
        return name(table.match(host: "", path: path, query: query, method: .GET, headers: HeaderList(), listener: "l"))
    }

    // match.query: a value (percent-decoded, any occurrence), presence or absence; each condition counts like a
    // header condition for specificity.
    // match.headers beyond exact values: prefix, suffix, contains and presence (or absence), most conditions winning.
    @Test func headerRules() throws {
        let table = try table(#"""
            [{ "name": "bots", "match": { "headers": { "user-agent": { "contains": "bot" } } }, "respond": { "status": 403, "code": "NO_BOTS", "message": "no" } },
             { "name": "v2", "match": { "headers": { "x-version": { "prefix": "2." }, "x-debug": { "present": false } } }, "upstream": "v" },
             { "name": "internal", "match": { "headers": { "x-origin": { "suffix": ".internal" } } }, "upstream": "u" },
             { "name": "all", "upstream": "u" }]
            """#)
        #expect(route(table, "/x", headers: [("User-Agent", "Googlebot/2.1")]) == "bots")
        #expect(route(table, "/x", headers: [("User-Agent", "curl/8")]) == "all")
        #expect(route(table, "/x", headers: [("X-Version", "2.3")]) == "v2")
        #expect(route(table, "/x", headers: [("X-Version", "2.3"), ("X-Debug", "1")]) == "all", "x-debug must be absent")
        #expect(route(table, "/x", headers: [("X-Version", "12.3")]) == "all")
        #expect(route(table, "/x", headers: [("X-Origin", "billing.internal")]) == "internal")
        #expect(route(table, "/x", headers: [("X-Origin", "internal.example")]) == "all")
    }

    // TRACE reaches only a route that names it: one that takes any method refuses it (405, with the methods it does
    // take), so an upstream's echo never shows a client the fields the gateway added.
    @Test func traceOnlyWhereNamed() throws {
        let table = try table(#"""
            [{ "name": "debug", "match": { "path_prefix": "/debug", "methods": ["GET", "TRACE"] }, "upstream": "u" },
             { "name": "all", "upstream": "u" }]
            """#)
        #expect(route(table, "/x", method: .TRACE) == "405 GET,HEAD,POST,PUT,DELETE,PATCH,OPTIONS")
        #expect(route(table, "/x", method: .DELETE) == "all")
        #expect(route(table, "/debug/x", method: .TRACE) == "debug")
    }

    // match.listeners: a route serves only the listeners it names, and wins over a general one where it applies.
    @Test func listenerConditions() throws {
        let table = try table(#"""
            [{ "name": "admin-internal", "match": { "path_prefix": "/admin", "listeners": ["internal"] }, "upstream": "u" },
             { "name": "admin-public", "match": { "path_prefix": "/admin" }, "respond": { "status": 404, "code": "NOT_HERE", "message": "no" } },
             { "name": "metrics", "match": { "path": "/metrics", "listeners": ["internal"] }, "upstream": "u" },
             { "name": "all", "upstream": "v" }]
            """#)
        #expect(route(table, "/admin/users", listener: "internal") == "admin-internal")
        #expect(route(table, "/admin/users", listener: "l") == "admin-public")
        #expect(route(table, "/metrics", listener: "internal") == "metrics")
        #expect(route(table, "/metrics", listener: "l") == "all", "not served on the public listener")
    }

    // match.client_ips: a route serves only clients in its ranges (IPv4 and IPv6), and wins over a general one where it
    // applies; a client without an address (a Unix-socket peer) matches none of them.
    @Test func clientConditions() throws {
        let table = try table(#"""
            [{ "name": "office", "match": { "path_prefix": "/admin", "client_ips": ["10.20.0.0/16", "2001:db8::/32"] }, "upstream": "u" },
             { "name": "admin-public", "match": { "path_prefix": "/admin" }, "respond": { "status": 404, "code": "NOT_HERE", "message": "no" } },
             { "name": "loopback", "match": { "client_ips": ["127.0.0.1"] }, "upstream": "v" },
             { "name": "all", "upstream": "u" }]
            """#)
        func route(_ path: String, from client: String?) -> String {
            name(table.match(host: "", path: Substring(path), method: .GET, headers: HeaderList(), listener: "l", clientIP: client.flatMap { IPAddress($0) }))
        }
        #expect(route("/admin/users", from: "10.20.3.4") == "office")
        #expect(route("/admin/users", from: "2001:db8::7") == "office")
        #expect(route("/admin/users", from: "10.21.0.1") == "admin-public")
        #expect(route("/admin/users", from: nil) == "admin-public")
        #expect(route("/x", from: "127.0.0.1") == "loopback")
        #expect(route("/x", from: "127.0.0.2") == "all")
        #expect(route("/x", from: "10.20.3.4") == "all", "office covers /admin only")
    }

    @Test func queryConditions() throws {
        let table = try table("""
            [ { "name": "all", "upstream": "u" },
              { "name": "v2", "match": { "query": { "version": "2" } }, "upstream": "v" },
              { "name": "v2-debug", "match": { "query": { "version": "2", "debug": true } }, "upstream": "v" },
              { "name": "plain-search", "match": { "path": "/search", "query": { "q": true, "beta": false } }, "upstream": "u" },
              { "name": "named", "match": { "query": { "team name": "a&b" } }, "upstream": "u" } ]
            """)
        #expect(route(table, target: "/x") == "all")
        #expect(route(table, target: "/x?version=2") == "v2")
        #expect(route(table, target: "/x?version=1&version=2") == "v2", "any occurrence")
        #expect(route(table, target: "/x?version=%32") == "v2", "percent-decoded")
        #expect(route(table, target: "/x?version=20") == "all")
        #expect(route(table, target: "/x?version=2&debug") == "v2-debug", "more conditions are more specific")
        #expect(route(table, target: "/search?q=swift") == "plain-search")
        #expect(route(table, target: "/search?q=swift&beta=1") == "all", "beta must be absent")
        #expect(route(table, target: "/search") == "all")
        #expect(route(table, target: "/x?team%20name=a%26b") == "named")
        #expect(route(table, target: "/x?team+name=a%26b") == "all", "+ is not a space in a URL")
    }

    // One parameter read or dropped from a target; the others keep their order and spelling.
    @Test func queryStringHelpers() {
        #expect(QueryString.value(of: "t", in: "/x?a=1&t=a%2Bb&t=2") == "a+b")
        #expect(QueryString.value(of: "t", in: "/x") == nil)
        #expect(QueryString.removing("t", from: "/x?a=%41&t=1&b&t=2") == "/x?a=%41&b")
        #expect(QueryString.removing("t", from: "/x?%74=1") == "/x", "matched after decoding")
        #expect(QueryString.removing("t", from: "/x?tt=1") == "/x?tt=1")
        #expect(QueryString.removing("t", from: "/x") == "/x")
        #expect(QueryString.editing("/x?utm_source=a&page=2&key=old", remove: ["utm_source", "key"], add: [("key", "k 1&2/é")]) == "/x?page=2&key=k%201%262%2F%C3%A9")
        #expect(QueryString.editing("/x?utm_source=a", remove: ["utm_source"], add: []) == "/x")
        #expect(QueryString.editing("/x", remove: [], add: [("a", "1"), ("b c", "")]) == "/x?a=1&b%20c=")
    }

    // Prefixes match whole segments and the longest prefix wins; an exact path beats any prefix.
    @Test func pathSpecificity() throws {
        let table = try table("""
            [ { "name": "root", "match": { "path_prefix": "/" }, "upstream": "u" },
              { "name": "api", "match": { "path_prefix": "/api/" }, "upstream": "u" },
              { "name": "orders", "match": { "path_prefix": "/api/orders" }, "upstream": "u" },
              { "name": "exact", "match": { "path": "/api/orders/special" }, "upstream": "u" } ]
            """)
        #expect(route(table, "/") == "root")
        #expect(route(table, "/apix") == "root")
        #expect(route(table, "/api") == "api")
        #expect(route(table, "/api/") == "api")
        #expect(route(table, "/api/orders") == "orders")
        #expect(route(table, "/api/orders/1") == "orders")
        #expect(route(table, "/api/ordersx") == "api")
        #expect(route(table, "/api/orders/special") == "exact")
        #expect(route(table, "/api/orders/special/x") == "orders")
    }

    // Exact host beats the longest wildcard, which beats routes without hosts; wildcards need a subdomain.
    @Test func hostSpecificity() throws {
        let table = try table("""
            [ { "name": "any", "match": { "path_prefix": "/" }, "upstream": "u" },
              { "name": "wild", "match": { "hosts": ["*.example.com"] }, "upstream": "u" },
              { "name": "deeper", "match": { "hosts": ["*.eu.example.com"] }, "upstream": "u" },
              { "name": "exact", "match": { "hosts": ["API.example.com"] }, "upstream": "u" } ]
            """)
        #expect(route(table, "/x", host: "api.example.com") == "exact")
        #expect(route(table, "/x", host: "www.example.com") == "wild")
        #expect(route(table, "/x", host: "a.b.example.com") == "wild")
        #expect(route(table, "/x", host: "shop.eu.example.com") == "deeper")
        #expect(route(table, "/x", host: "example.com") == "any")
        #expect(route(table, "/x", host: "") == "any")
    }

    // Header conditions add specificity; ties go to the route listed first.
    @Test func headersAndTies() throws {
        let table = try table("""
            [ { "name": "first", "match": { "path_prefix": "/p" }, "upstream": "u" },
              { "name": "second", "match": { "path_prefix": "/p" }, "upstream": "v" },
              { "name": "tenant", "match": { "path_prefix": "/p", "headers": { "X-Tenant": "acme" } }, "upstream": "v" } ]
            """)
        #expect(route(table, "/p") == "first")
        #expect(route(table, "/p", headers: [("x-tenant", "acme")]) == "tenant")
        #expect(route(table, "/p", headers: [("X-TENANT", "other")]) == "first")
    }

    // A path that matches only with another method is 405 listing the allowed methods; GET allows HEAD.
    @Test func methods() throws {
        let table = try table("""
            [ { "name": "read", "match": { "path_prefix": "/items", "methods": ["GET"] }, "upstream": "u" },
              { "name": "write", "match": { "path_prefix": "/items", "methods": ["POST", "PUT"] }, "upstream": "u" },
              { "name": "any", "match": { "path_prefix": "/open" }, "upstream": "u" } ]
            """)
        #expect(route(table, "/items/1", method: .GET) == "read")
        #expect(route(table, "/items/1", method: .HEAD) == "read")
        #expect(route(table, "/items/1", method: .PUT) == "write")
        #expect(route(table, "/items/1", method: .DELETE) == "405 GET,HEAD,POST,PUT")
        #expect(route(table, "/open", method: .DELETE) == "any")
        #expect(route(table, "/closed", method: .GET) == "404")
    }

    // A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) matches a route with `cors` by the
    // method it asks about; without `cors`, or without Origin, OPTIONS is an ordinary method.
    @Test func preflightsMatchByTheRequestedMethod() throws {
        let table = try table("""
            [ { "name": "read", "match": { "path_prefix": "/items", "methods": ["GET"] }, "upstream": "u",
                "cors": { "allow_origins": ["https://app.test"] } },
              { "name": "write", "match": { "path_prefix": "/items", "methods": ["POST"] }, "upstream": "u",
                "cors": { "allow_origins": ["https://app.test"] } },
              { "name": "plain", "match": { "path_prefix": "/plain", "methods": ["GET"] }, "upstream": "u" } ]
            """)
        let asking = { (method: String) in [("Origin", "https://app.test"), ("Access-Control-Request-Method", method)] }
        #expect(route(table, "/items/1", method: .OPTIONS, headers: asking("GET")) == "read")
        #expect(route(table, "/items/1", method: .OPTIONS, headers: asking("HEAD")) == "read")
        #expect(route(table, "/items/1", method: .OPTIONS, headers: asking("POST")) == "write")
        #expect(route(table, "/items/1", method: .OPTIONS, headers: asking("DELETE")) == "405 GET,HEAD,POST")
        #expect(route(table, "/items/1", method: .OPTIONS, headers: [("Access-Control-Request-Method", "GET")]) == "405 GET,HEAD,POST")
        #expect(route(table, "/items/1", method: .OPTIONS) == "405 GET,HEAD,POST")
        #expect(route(table, "/plain", method: .OPTIONS, headers: asking("GET")) == "405 GET,HEAD")
    }

    // A preflight carries the names of the request's headers, not their values: a cors route's header conditions
    // match it when the names are listed.
    @Test func preflightsMatchHeaderConditionsByName() throws {
        let table = try table("""
            [ { "name": "tenant", "match": { "path_prefix": "/t", "headers": { "x-tenant": "acme" } }, "upstream": "u",
                "cors": { "allow_origins": ["https://app.test"] } },
              { "name": "plain", "match": { "path_prefix": "/p", "headers": { "x-tenant": "acme" } }, "upstream": "u" } ]
            """)
        let asking = { (names: String) in
            [("Origin", "https://app.test"), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", names)]
        }
        #expect(route(table, "/t", method: .OPTIONS, headers: asking("content-type, X-Tenant")) == "tenant")
        #expect(route(table, "/t", method: .OPTIONS, headers: asking("content-type")) == "404")
        #expect(route(table, "/t", method: .OPTIONS, headers: [("Origin", "https://app.test"), ("Access-Control-Request-Method", "POST")]) == "404")
        #expect(route(table, "/t", method: .GET, headers: [("X-Tenant", "other")]) == "404")
        #expect(route(table, "/t", method: .GET, headers: [("X-Tenant", "acme")]) == "tenant")
        #expect(route(table, "/p", method: .OPTIONS, headers: asking("x-tenant")) == "404")
    }

    // strip_prefix removes whole segments and keeps the query string byte for byte.
    @Test func stripPrefix() {
        #expect(PathRules.strip("/api", from: "/api/v1/orders?x=1&y=%20") == "/v1/orders?x=1&y=%20")
        #expect(PathRules.strip("/api", from: "/api") == "/")
        #expect(PathRules.strip("/api", from: "/api?x") == "/?x")
        #expect(PathRules.strip("/api", from: "/apix/y") == "/apix/y")
        #expect(PathRules.strip("/", from: "/a") == "/a")
    }
}
