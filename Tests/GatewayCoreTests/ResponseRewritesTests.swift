import GatewayConfig
import GatewayCore
import GatewayHTTP
import Testing

/// `location_rewrite`: an upstream's own address in a redirect becomes a path on the gateway, with the route's
/// prefixes mapped back; rules first; relative paths only when asked. `cookie_rewrite`: cookies' Path and Domain.
@Suite struct ResponseRewritesTests {
    /// The one route of a config whose upstream `u` has targets on 10.0.0.7:8080 and [fd00::7]:80.
    func compiled(_ route: String) throws -> LocationRewrite? {
        let json = """
            { "listeners": [{ "name": "l", "port": 1 }],
              "upstreams": { "u": { "targets": ["http://10.0.0.7:8080", "http://[FD00::7]"] } },
              "routes": [\(route)] }
            """
        let result = ConfigLoader.load(text: json, environment: [:])
        let config = try #require(result.config, "\(result.errors)")
        return GatewayRuntime.compileRoutes(config).routes[0].locationRewrite
    }

    // On by default: absolute URLs to a target (any case, default port written or not, userinfo ignored) become
    // paths; other hosts, other schemes and plain paths pass as they are.
    @Test func upstreamAddressesBecomePaths() throws {
        let rewrite = try #require(try compiled(#"{ "name": "r", "upstream": "u" }"#))
        let cases: [(String, String?)] = [
            ("http://10.0.0.7:8080/login?next=%2Fa#top", "/login?next=%2Fa#top"),
            ("HTTP://10.0.0.7:8080", "/"),
            ("http://10.0.0.7:8080?x=1", "/?x=1"),
            ("http://user@10.0.0.7:8080/a", "/a"),
            ("http://[fd00::7]/a", "/a"),
            ("http://[fd00::7]:80/a", "/a"),
            ("https://[fd00::7]/a", nil),
            ("http://10.0.0.7/a", nil),
            ("https://app.example.com/a", nil),
            ("/login", nil),
            ("mailto:ops@example.com", nil),
        ]
        for (location, expected) in cases {
            #expect(rewrite.rewrite(location) == expected, "\(location)")
        }
        #expect(try compiled(#"{ "name": "r", "upstream": "u", "location_rewrite": false }"#) == nil)
    }

    // strip_prefix is put back and add_prefix taken off; relative paths get the prefix only with relative_paths, and
    // never twice; host_rewrite's name counts as the upstream's own.
    @Test func prefixesMapBack() throws {
        let stripped = try #require(try compiled(#"{ "name": "r", "upstream": "u", "strip_prefix": "/api/", "add_prefix": "/v2" }"#))
        #expect(stripped.rewrite("http://10.0.0.7:8080/v2/login") == "/api/login")
        #expect(stripped.rewrite("http://10.0.0.7:8080/v2") == "/api/")
        #expect(stripped.rewrite("http://10.0.0.7:8080/v20/x") == "/v20/x", "outside add_prefix: the path as it is, on the gateway")
        #expect(stripped.rewrite("/v2/login") == nil, "relative paths pass unless asked")

        let relative = try #require(
            try compiled(#"{ "name": "r", "upstream": "u", "strip_prefix": "/api", "host_rewrite": "orders.internal", "location_rewrite": { "relative_paths": true } }"#))
        #expect(relative.rewrite("/login?x=1") == "/api/login?x=1")
        #expect(relative.rewrite("/api/login") == nil, "an upstream that reads X-Forwarded-Prefix already wrote it")
        #expect(relative.rewrite("/API") == nil)
        #expect(relative.rewrite("//cdn.example.com/x") == nil)
        #expect(relative.rewrite("https://orders.internal/done") == "/api/done")
        #expect(relative.rewrite("https://orders.internal:8443/done") == nil)
    }

    // Rules are tried first, in order, as prefix replacements (NGINX's explicit proxy_redirect).
    @Test func rulesFirst() throws {
        let ruled = try #require(
            try compiled(#"""
                { "name": "r", "upstream": "u", "strip_prefix": "/shop", "location_rewrite": { "rules": [
                  { "from": "https://legacy.example.com/", "to": "https://www.example.com/old/" },
                  { "from": "http://10.0.0.7:8080/static/", "to": "https://cdn.example.com/" } ] } }
                """#))
        #expect(ruled.rewrite("https://legacy.example.com/cart?id=1") == "https://www.example.com/old/cart?id=1")
        #expect(ruled.rewrite("http://10.0.0.7:8080/static/app.js") == "https://cdn.example.com/app.js")
        #expect(ruled.rewrite("http://10.0.0.7:8080/cart") == "/shop/cart")
        var headers = HeaderList([("Location", "https://legacy.example.com/x"), ("Content-Type", "text/html")])
        ruled.apply(to: &headers)
        #expect(headers.values(name: "location") == ["https://www.example.com/old/x"])
        #expect(LocationRewrite.applies(to: 302) && LocationRewrite.applies(to: 201) && !LocationRewrite.applies(to: 200))
    }

    @Test func configChecks() {
        func diagnostics(_ route: String) -> [String] {
            let json = #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [\#(route)] }"#
            return ConfigLoader.load(text: json, environment: [:]).diagnostics.map(\.description)
        }
        #expect(diagnostics(#"{ "name": "r", "upstream": "u", "location_rewrite": { "relative_paths": true } }"#) == [
            "warning: routes[0].location_rewrite.relative_paths: puts strip_prefix back, and the route strips none"
        ])
        #expect(diagnostics(#"{ "name": "r", "upstream": "u", "location_rewrite": { "rules": [{ "from": "", "to": "/a\nb" }] } }"#) == [
            "routes[0].location_rewrite.rules[0].from: must not be empty",
            "routes[0].location_rewrite.rules[0].to: header values may not contain control characters or line breaks",
        ])
        #expect(diagnostics(#"{ "name": "r", "upstream": "u", "location_rewrite": 1 }"#) == ["routes[0].location_rewrite: expected true, false or an object"])
    }

    // cookie_rewrite: Path mapped back as locations are (the upstream's root is the prefix itself), Domain by rule (an
    // empty "to" drops it, a leading dot and case do not matter); other attributes and other cookies as written.
    @Test func cookies() throws {
        let json = """
            { "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://10.0.0.7:8080"] } },
              "routes": [{ "name": "r", "upstream": "u", "strip_prefix": "/shop", "add_prefix": "/app",
                           "cookie_rewrite": { "path": true, "domains": [{ "from": ".Orders.Internal", "to": "shop.example.com" }, { "from": "localhost", "to": "" }] } },
                         { "name": "plain", "upstream": "u" }] }
            """
        let result = ConfigLoader.load(text: json, environment: [:])
        let config = try #require(result.config, "\(result.errors)")
        let table = GatewayRuntime.compileRoutes(config)
        #expect(table.routes[1].cookieRewrite == nil)
        let rewrite = try #require(table.routes[0].cookieRewrite)
        let cases: [(String, String)] = [
            ("sid=1; Path=/app; HttpOnly", "sid=1; Path=/shop; HttpOnly"),
            ("sid=1; path=/app/cart; Secure", "sid=1; Path=/shop/cart; Secure"),
            ("sid=1; Path=/other", "sid=1; Path=/other"),
            ("sid=1; Domain=orders.internal; Path=/app/", "sid=1; Domain=shop.example.com; Path=/shop"),
            ("sid=1; Domain=LOCALHOST; SameSite=Lax", "sid=1; SameSite=Lax"),
            ("sid=1; Domain=example.org", "sid=1; Domain=example.org"),
            ("sid=1; Expires=Wed, 09 Jun 2027 10:18:14 GMT", "sid=1; Expires=Wed, 09 Jun 2027 10:18:14 GMT"),
        ]
        for (cookie, expected) in cases {
            #expect(rewrite.rewrite(cookie) == expected, "\(cookie)")
        }
        var headers = HeaderList([("Set-Cookie", "a=1; Path=/app"), ("Content-Type", "text/html"), ("Set-Cookie", "b=2")])
        rewrite.apply(to: &headers)
        #expect(headers.values(name: "set-cookie") == ["a=1; Path=/shop", "b=2"])
        #expect(headers.first(name: "content-type") == "text/html")

        // flags: attributes every cookie gets; a SameSite of another value replaced; nothing doubled.
        let flaggedConfig = try #require(
            ConfigLoader.load(
                text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://10.0.0.7:8080"] } }, "routes": [{ "name": "r", "upstream": "u", "cookie_rewrite": { "flags": { "secure": true, "http_only": true, "same_site": "Lax" } } }] }"#,
                environment: [:]
            ).config)
        let flagged = try #require(GatewayRuntime.compileRoutes(flaggedConfig).routes[0].cookieRewrite)
        let flagCases: [(String, String)] = [
            ("sid=1", "sid=1; SameSite=Lax; Secure; HttpOnly"),
            ("sid=1; Path=/; secure; HTTPONLY", "sid=1; Path=/; secure; HTTPONLY; SameSite=Lax"),
            ("sid=1; SameSite=None; Secure", "sid=1; Secure; SameSite=Lax; HttpOnly"),
            ("sid=1; samesite=lax; Secure; HttpOnly", "sid=1; samesite=lax; Secure; HttpOnly"),
        ]
        for (cookie, expected) in flagCases {
            #expect(flagged.rewrite(cookie) == expected, "\(cookie)")
        }
        let none = ConfigLoader.load(
            text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u", "cookie_rewrite": { "flags": { "same_site": "None", "sticky": 1 } } }] }"#,
            environment: [:])
        #expect(none.errors.map(\.description) == [
            #"routes[0].cookie_rewrite.flags.same_site: browsers take SameSite=None only with Secure: add "secure": true"#,
            #"routes[0].cookie_rewrite.flags.sticky: unknown key; known keys here: "http_only", "same_site", "secure""#,
        ])

        let bad = ConfigLoader.load(
            text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u", "cookie_rewrite": { "path": true, "domains": [{ "from": "", "to": "a;b" }] } }] }"#,
            environment: [:])
        #expect(bad.diagnostics.map(\.description) == [
            #"routes[0].cookie_rewrite.domains[0].from: expected a domain name (example.com)"#,
            #"routes[0].cookie_rewrite.domains[0].to: expected a domain name (or "" to drop the attribute)"#,
            "warning: routes[0].cookie_rewrite.path: maps strip_prefix and add_prefix back, and the route has neither",
        ])
    }
}
