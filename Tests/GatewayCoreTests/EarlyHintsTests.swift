import GatewayConfig
import GatewayHTTP
import Testing

import GatewayCore

/// `early_hints`: which clients get 103s, what of an upstream's 103 passes, and how the config reads.
@Suite struct EarlyHintsTests {
    func load(_ route: String) -> ConfigLoadResult {
        let json = #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [\#(route)] }"#
        return ConfigLoader.load(text: json, environment: [:])
    }

    func compiled(_ route: String) throws -> EarlyHints? {
        let config = try #require(load(route).config)
        return GatewayRuntime.compileRoutes(config).routes[0].earlyHints
    }

    // By default the upstream's hints reach HTTP/2 clients only; http1 adds HTTP/1.1, never HTTP/1.0 (RFC 9110 §15.2).
    @Test func whoGetsHints() throws {
        let byDefault = try #require(try compiled(#"{ "name": "r", "upstream": "u" }"#))
        #expect(byDefault.relay)
        #expect(byDefault.reaches(.http2) && !byDefault.reaches(.http1_1) && !byDefault.reaches(.http1_0))
        #expect(byDefault.ownHint(version: .http2) == nil)
        let http1 = try #require(try compiled(#"{ "name": "r", "upstream": "u", "early_hints": { "http1": true } }"#))
        #expect(http1.reaches(.http2) && http1.reaches(.http1_1) && !http1.reaches(.http1_0))
        #expect(try compiled(#"{ "name": "r", "upstream": "u", "early_hints": false }"#) == nil)
        #expect(try compiled(#"{ "name": "r", "upstream": "u", "early_hints": true }"#)?.relay == true)

        let own = try #require(try compiled(#"{ "name": "r", "upstream": "u", "early_hints": { "relay": false, "links": ["</a.css>; rel=preload; as=style", "</b.js>; rel=modulepreload"] } }"#))
        #expect(!own.relay)
        let hint = try #require(own.ownHint(version: .http1_1))
        #expect(hint.status == 103 && hint.reasonPhrase == "Early Hints")
        #expect(hint.headers.values(name: "link") == ["</a.css>; rel=preload; as=style", "</b.js>; rel=modulepreload"])
    }

    // Only a 103 with a Link passes, without hop-by-hop fields, cookies or the upstream's software; other fields stay.
    @Test func relayedHeads() throws {
        let upstream = ResponseHead(
            status: 103, reason: "Hints", headers: HeaderList([
                ("Link", "</a.css>; rel=preload"), ("Connection", "X-Secret"), ("X-Secret", "1"), ("Set-Cookie", "a=1"), ("Server", "app/1.0"),
                ("Content-Security-Policy", "default-src 'self'"),
            ]))
        let relayed = try #require(EarlyHints.relayed(upstream, version: .http2))
        #expect(relayed.status == 103 && relayed.reason == nil && relayed.version == .http2)
        #expect(relayed.headers.map(\.name) == ["Link", "Content-Security-Policy"])
        #expect(EarlyHints.relayed(ResponseHead(status: 103, headers: HeaderList([("X-Other", "1")])), version: .http2) == nil)
        #expect(EarlyHints.relayed(ResponseHead(status: 102, headers: HeaderList([("Link", "</a>")])), version: .http2) == nil)
    }

    // learn: Link values with a hinted rel (preload, preconnect, modulepreload) from shared 200 HTML answers; commas in
    // targets and quoted parameters do not split a link; nothing from personal answers; a page without preloads is
    // forgotten; bounded per page.
    @Test func learnedHints() throws {
        let hints = try #require(try compiled(#"{ "name": "r", "upstream": "u", "early_hints": { "learn": true, "links": ["</own.css>; rel=preload"] } }"#))
        let learned = try #require(hints.learned)
        func answer(_ fields: [(String, String)], status: Int = 200) -> ResponseHead {
            ResponseHead(status: status, headers: HeaderList([("Content-Type", "text/html; charset=utf-8")] + fields))
        }
        let links = #"</a.css>; rel=preload; as=style, <https://cdn.example/x,y.js>; rel="modulepreload", </next>; rel=next, </f.woff2>; title="a, b"; rel="preload font"; as=font"#
        learned.observe(answer([("Link", links), ("Link", "<https://api.example>; rel=preconnect")]), page: "shop.test/")
        #expect(learned.links(for: "shop.test/") == [
            "</a.css>; rel=preload; as=style", #"<https://cdn.example/x,y.js>; rel="modulepreload""#,
            #"</f.woff2>; title="a, b"; rel="preload font"; as=font"#, "<https://api.example>; rel=preconnect",
        ])
        let hint = try #require(hints.ownHint(version: .http2, page: "shop.test/"))
        #expect(hint.headers.values(name: "link").first == "</own.css>; rel=preload" && hint.headers.values(name: "link").count == 5)
        #expect(hints.ownHint(version: .http2, page: "shop.test/other")?.headers.values(name: "link") == ["</own.css>; rel=preload"])

        learned.observe(answer([("Link", "</b.css>; rel=preload"), ("Set-Cookie", "s=1")]), page: "p/cookie")
        learned.observe(answer([("Link", "</b.css>; rel=preload"), ("Cache-Control", "private, max-age=60")]), page: "p/private")
        learned.observe(answer([("Link", "</b.css>; rel=preload")], status: 404), page: "p/missing")
        learned.observe(ResponseHead(status: 200, headers: HeaderList([("Content-Type", "application/json"), ("Link", "</b>; rel=preload")])), page: "p/json")
        let unlearned = ["p/cookie", "p/private", "p/missing", "p/json"].flatMap(learned.links(for:))
        #expect(unlearned.isEmpty, "personal, not found, or not a page")

        learned.observe(answer([]), page: "shop.test/")
        #expect(learned.links(for: "shop.test/").isEmpty, "the page no longer names preloads")
        let many = (0..<40).map { "</\($0).js>; rel=preload" }.joined(separator: ", ")
        learned.observe(answer([("Link", many)]), page: "p/many")
        #expect(learned.links(for: "p/many").count == LearnedHints.maxLinks)
    }

    @Test func configChecks() {
        #expect(load(#"{ "name": "r", "upstream": "u", "early_hints": { "links": ["/a.css", "</b.css>\nX: y"], "http1": 1 } }"#).diagnostics.map(\.description) == [
            "routes[0].early_hints.http1: expected true or false, found a number",
            #"routes[0].early_hints.links[0]: expected a Link value such as "</app.css>; rel=preload; as=style""#,
            "routes[0].early_hints.links[1]: header values may not contain control characters or line breaks",
        ])
        #expect(load(#"{ "name": "r", "upstream": "u", "early_hints": { "relay": false } }"#).diagnostics.map(\.description) == [
            "warning: routes[0].early_hints: sends no hint: relay and learn are off and there are no links"
        ])
        #expect(load(#"{ "name": "r", "redirect": { "location": "/x" }, "early_hints": true }"#).diagnostics.map(\.description) == [
            "warning: routes[0].early_hints: a route with redirect answers itself: hints go out while an upstream works, and none does here",
            "warning: upstreams.u: not used by any route",
        ])
        #expect(load(#"{ "name": "r", "upstream": "u", "early_hints": { "link": [] } }"#).diagnostics.count == 1)
    }
}
