import DemoUpstream
import Foundation
import GatewayApp
import Testing
import TestSupport

/// The response cache against a real upstream, counting the requests that reach it.
@Suite struct CacheTests {
    static func config(cache: String = "{}", route: String = "", top: String = "") -> String {
        basicConfig(
            routes: #"[{ "name": "cached", "upstream": "demo", "cache": { "enabled": true \#(route) } }]"#,
            top: #""cache": \#(cache), "admin": { "address": "127.0.0.1", "port": 0 }, \#(top)"#)
    }

    /// `/cacheable` with a Cache-Control (and more) percent-encoded into the query.
    static func path(_ cacheControl: String, _ extra: String = "") -> String {
        "/cacheable?cc=" + (cacheControl.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "") + extra
    }

    static func hits(_ upstream: DemoUpstream) -> Int { upstream.behaviour.cacheableHits.load(ordering: .relaxed) }

    // MISS then HIT with the upstream asked once; Age grows while the copy is stored; HEAD is served from it.
    @Test(.timeLimit(.minutes(1))) func hitAfterMissAndAgeGrows() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { test in
                let path = Self.path("max-age=60")
                let first = try await test.request("GET", path)
                #expect(first.header("x-cache") == "MISS")
                #expect(first.header("cache-status") == "gateway; fwd=miss", "RFC 9211")
                let second = try await test.request("GET", path)
                #expect(second.status == 200)
                #expect(second.header("x-cache") == "HIT")
                #expect(second.headers("cache-status") == ["gateway; hit"], "one member: the stored copy kept none")
                #expect(second.text == first.text)
                #expect(second.header("x-request-id") != first.header("x-request-id"))
                #expect(second.header("x-frame-options") == "DENY", "security headers on cached answers too")
                #expect(Self.hits(upstreams[0]) == 1)
                try await Task.sleep(for: .milliseconds(1_100))
                let later = try await test.request("GET", path)
                #expect(Int(later.header("age") ?? "") ?? 0 >= 1)
                let head = try await test.request("HEAD", path)
                #expect(head.header("x-cache") == "HIT")
                #expect(head.body.isEmpty)
                #expect(Self.hits(upstreams[0]) == 1)
                let log = try await test.accessLog(for: second)
                #expect(log["status"] as? Int == 200)
                #expect(log["upstream"] as? String == "-", "answered without an upstream")
            }
        }
    }

    // no-store, private, Set-Cookie (unless allowed), Vary: * and requests with Authorization (unless the
    // response is public) are never stored.
    @Test func whatIsNeverStored() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { test in
                for (index, path) in [
                    Self.path("no-store, max-age=60"), Self.path("private, max-age=60"), Self.path("max-age=60", "&cookie=1"),
                    Self.path("max-age=60", "&vary=*"),
                ].enumerated() {
                    let before = Self.hits(upstreams[0])
                    _ = try await test.request("GET", path)
                    let again = try await test.request("GET", path)
                    #expect(again.header("x-cache") == "MISS", "case \(index)")
                    #expect(Self.hits(upstreams[0]) == before + 2, "case \(index)")
                }
                let authorized = Self.path("max-age=60", "&auth=1")
                _ = try await test.request("GET", authorized, headers: [("Authorization", "Bearer x")])
                let twice = try await test.request("GET", authorized, headers: [("Authorization", "Bearer x")])
                #expect(twice.header("x-cache") == "MISS")
                let shared = Self.path("public, max-age=60", "&auth=2")
                _ = try await test.request("GET", shared, headers: [("Authorization", "Bearer x")])
                let sharedAgain = try await test.request("GET", shared, headers: [("Authorization", "Bearer y")])
                #expect(sharedAgain.header("x-cache") == "HIT")
                // Without a freshness basis and with default_ttl_seconds 0: not stored.
                _ = try await test.request("GET", "/cacheable?plain=1")
                #expect(try await test.request("GET", "/cacheable?plain=1").header("x-cache") == "MISS")
            }
        }
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(route: #", "allow_set_cookie": true, "default_ttl_seconds": 60"#), upstreams: upstreams) { test in
                let path = Self.path("max-age=60", "&cookie=1")
                let first = try await test.request("GET", path)
                #expect(first.header("set-cookie") != nil)
                let second = try await test.request("GET", path)
                #expect(second.header("x-cache") == "HIT")
                #expect(second.header("set-cookie") == nil, "a stored copy never hands out the first client's cookie")
                _ = try await test.request("GET", "/cacheable?plain=1")
                #expect(try await test.request("GET", "/cacheable?plain=1").header("x-cache") == "HIT", "default_ttl_seconds applies")
            }
        }
    }

    // Vary selects among stored variants; key_headers and ignored query parameters shape the key.
    @Test func variants() async throws {
        try await withUpstreams { upstreams in
            let route = #", "key_headers": ["X-Tenant"], "ignore_query_params": ["utm_source"]"#
            try await withGateway(Self.config(route: route), upstreams: upstreams) { test in
                let path = Self.path("max-age=60", "&vary=Accept-Language")
                let english = try await test.request("GET", path, headers: [("Accept-Language", "en")])
                let german = try await test.request("GET", path, headers: [("Accept-Language", "de")])
                #expect(english.header("x-cache") == "MISS")
                #expect(german.header("x-cache") == "MISS")
                let englishAgain = try await test.request("GET", path, headers: [("Accept-Language", "en")])
                let germanAgain = try await test.request("GET", path, headers: [("Accept-Language", "de")])
                #expect(englishAgain.header("x-cache") == "HIT")
                #expect(englishAgain.json["varied"] as? String == "en")
                #expect(germanAgain.header("x-cache") == "HIT")
                #expect(germanAgain.json["varied"] as? String == "de")
                #expect(Self.hits(upstreams[0]) == 2)

                let plain = Self.path("max-age=60", "&p=key")
                _ = try await test.request("GET", plain, headers: [("X-Tenant", "a")])
                #expect(try await test.request("GET", plain, headers: [("X-Tenant", "b")]).header("x-cache") == "MISS")
                #expect(try await test.request("GET", plain + "&utm_source=mail", headers: [("X-Tenant", "a")]).header("x-cache") == "HIT")
            }
        }
    }

    // A stale copy with a validator is revalidated: the upstream's 304 refreshes it (Age back to 0), and a
    // client's own matching validator gets a 304 from the cache.
    @Test(.timeLimit(.minutes(1))) func revalidation() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { test in
                // Ages count whole seconds: max-age=3 stays fresh for at least two.
                let maxAge = 3 * TestTime.scale
                let path = Self.path("max-age=\(maxAge)", "&etag=%22v1%22")
                let first = try await test.request("GET", path)
                #expect(first.header("x-cache") == "MISS")
                let conditional = try await test.request("GET", path, headers: [("If-None-Match", #"W/"v1""#)])
                #expect(conditional.status == 304)
                #expect(conditional.header("x-cache") == "HIT")
                #expect(conditional.header("etag") == #""v1""#)
                try await Task.sleep(for: .milliseconds((maxAge + 1) * 1000 + 100))
                let revalidated = try await test.request("GET", path)
                #expect(revalidated.status == 200)
                #expect(revalidated.header("x-cache") == "REVALIDATED")
                #expect(revalidated.header("cache-status") == "gateway; fwd=stale; fwd-status=304")
                #expect(revalidated.header("age") == "0")
                #expect(revalidated.text == first.text, "the stored body, not a new one")
                #expect(Self.hits(upstreams[0]) == 2, "one 200, one 304")
                #expect(try await test.request("GET", path).header("x-cache") == "HIT")
            }
        }
    }

    // 50 concurrent misses for one key: one upstream request, everyone answered from it.
    @Test(.timeLimit(.minutes(1))) func collapsing() async throws {
        try await withUpstreams { upstreams in
            upstreams[0].behaviour.delayMs.store(300, ordering: .relaxed)
            try await withGateway(Self.config(), upstreams: upstreams) { test in
                let path = Self.path("max-age=60")
                let responses = try await withThrowingTaskGroup(of: (Int, String, String?).self) { group in
                    for _ in 0..<50 {
                        group.addTask {
                            let response = try await test.request("GET", path)
                            return (response.status, response.text, response.header("x-cache"))
                        }
                    }
                    var all: [(Int, String, String?)] = []
                    for try await response in group { all.append(response) }
                    return all
                }
                #expect(responses.count == 50)
                let statuses = Set(responses.map(\.0))
                let bodies = Set(responses.map(\.1))
                #expect(statuses == [200])
                #expect(bodies.count == 1)
                #expect(Self.hits(upstreams[0]) == 1)
                let misses = responses.filter { $0.2 == "MISS" }.count
                #expect(misses >= 1)
            }
        }
    }

    // stale-while-revalidate answers at once and refreshes in the background; stale-if-error answers when
    // the upstream fails, and without it the failure passes through.
    @Test(.timeLimit(.minutes(1))) func staleWhileRevalidateAndStaleIfError() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { test in
                let swr = Self.path("max-age=1, stale-while-revalidate=30")
                _ = try await test.request("GET", swr)
                try await Task.sleep(for: .milliseconds(2_100))
                let stale = try await test.request("GET", swr)
                #expect(stale.header("x-cache") == "STALE")
                #expect(stale.header("cache-status") == "gateway; hit; detail=stale")
                #expect(stale.json["hit"] as? Int == 1)
                var refreshed = try await test.request("GET", swr)
                let deadline = ContinuousClock.now + .seconds(5)
                while refreshed.header("x-cache") != "HIT" && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    refreshed = try await test.request("GET", swr)
                }
                #expect(refreshed.header("x-cache") == "HIT")
                // A newer copy than the first (on a loaded machine the refreshed one may itself have gone stale once).
                #expect((refreshed.json["hit"] as? Int ?? 0) >= 2, "the background refresh stored a new copy")

                let sie = Self.path("max-age=1, stale-if-error=60")
                let plain = Self.path("max-age=1", "&p=nosie")
                _ = try await test.request("GET", sie)
                _ = try await test.request("GET", plain)
                upstreams[0].behaviour.failStatus.store(503, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(2_100))
                let rescued = try await test.request("GET", sie)
                #expect(rescued.status == 200)
                #expect(rescued.header("x-cache") == "STALE")
                let failed = try await test.request("GET", plain)
                #expect(failed.status == 503)
                upstreams[0].behaviour.failStatus.store(0, ordering: .relaxed)
            }
        }
    }

    // stale-if-error also covers an upstream that fails without answering (connections dropped), not only 5xx.
    @Test(.timeLimit(.minutes(1))) func staleIfErrorWhenTheUpstreamIsGone() async throws {
        let upstream = try await DemoUpstream.start(name: "gone")
        let config = Self.config().replacingOccurrences(of: "$UP0", with: String(upstream.port))
        try await withGateway(config) { test in
            let path = Self.path("max-age=1, stale-if-error=60")
            #expect(try await test.request("GET", path).header("x-cache") == "MISS")
            upstream.behaviour.dropRequests.store(true, ordering: .relaxed)
            try await Task.sleep(for: .milliseconds(2_100))
            let rescued = try await test.request("GET", path)
            #expect(rescued.status == 200)
            #expect(rescued.header("x-cache") == "STALE")
            #expect(rescued.json["upstream"] as? String == "gone")
            let other = try await test.request("GET", Self.path("max-age=1", "&p=other"))
            #expect(other.status == 502)
        }
        await upstream.shutdown()
    }

    // With intercept_errors, a stored copy that stale-if-error allows still answers for a failing upstream; only
    // without one does the client get the gateway's UPSTREAM_ERROR.
    @Test(.timeLimit(.minutes(1))) func staleIfErrorBeforeInterceptedErrors() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(top: #""intercept_errors": true,"#), upstreams: upstreams) { test in
                let sie = Self.path("max-age=1, stale-if-error=60")
                #expect(try await test.request("GET", sie).header("x-cache") == "MISS")
                upstreams[0].behaviour.failStatus.store(500, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(2_100))
                let rescued = try await test.request("GET", sie)
                #expect(rescued.status == 200 && rescued.header("x-cache") == "STALE")
                let failed = try await test.request("GET", Self.path("max-age=1", "&p=nosie"))
                #expect(failed.status == 500 && failed.errorCode == "UPSTREAM_ERROR")
            }
        }
    }

    // A successful POST, PUT or DELETE invalidates the target URI; only-if-cached gets 504 when nothing is stored.
    @Test func unsafeMethodsInvalidate() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { test in
                let path = Self.path("max-age=60")
                _ = try await test.request("GET", path)
                #expect(try await test.request("GET", path).header("x-cache") == "HIT")
                let post = try await test.request("POST", path, body: "x")
                #expect(post.header("x-cache") == "BYPASS")
                #expect(post.header("cache-status") == "gateway; fwd=bypass")
                #expect(try await test.request("GET", path).header("x-cache") == "MISS")
                #expect(try await test.request("GET", path).header("x-cache") == "HIT")
                _ = try await test.request("DELETE", path)
                #expect(try await test.request("GET", path).header("x-cache") == "MISS")

                let missing = try await test.request("GET", Self.path("max-age=60", "&p=never"), headers: [("Cache-Control", "only-if-cached")])
                #expect(missing.status == 504)
                #expect(missing.errorCode == "NOT_CACHED")
            }
        }
    }

    // Purge through the admin API (by URL, by route, everything), and lookups counted in the metrics.
    @Test func purgeAndMetrics() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { test in
                let a = Self.path("max-age=60", "&p=a")
                let b = Self.path("max-age=60", "&p=b")
                for path in [a, b, a, b] { _ = try await test.request("GET", path) }
                let byURL = try await OperationsTests.admin(
                    test.gateway, "/cache/purge?url=" + ("http://test.local" + a).addingPercentEncoding(withAllowedCharacters: .alphanumerics)!,
                    method: "POST", token: nil)
                #expect(byURL.status == 200)
                #expect(byURL.json["purged"] as? Int == 1)
                #expect(try await test.request("GET", a).header("x-cache") == "MISS")
                #expect(try await test.request("GET", b).header("x-cache") == "HIT")
                let byRoute = try await OperationsTests.admin(test.gateway, "/cache/purge?route=cached", method: "POST", token: nil)
                #expect(byRoute.json["purged"] as? Int == 2)
                #expect(try await test.request("GET", b).header("x-cache") == "MISS")
                let unknown = try await OperationsTests.admin(test.gateway, "/cache/purge?route=nope", method: "POST", token: nil)
                #expect(unknown.status == 422)
                let everything = try await OperationsTests.admin(test.gateway, "/cache/purge", method: "POST", token: nil)
                #expect(everything.json["purged"] as? Int == 1, "b was stored again after the route purge")

                let metrics = PrometheusText(try await OperationsTests.admin(test.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_cache_lookups_total", ["route": "cached", "result": "hit"]) == 3)
                #expect(metrics.value("gateway_cache_lookups_total", ["route": "cached", "result": "miss"]) == 4)
            }
        }
    }

    // Cache tags: the upstream's Surrogate-Key (space-separated) and Cache-Tag (comma-separated) fields tag what is
    // stored, never reach clients, and `POST /cache/purge?tag=` drops every URI so tagged from memory and Redis, where
    // each tag is a set of entry keys that expires with them.
    @Test(.timeLimit(.minutes(1))) func purgeByTag() async throws {
        let redis = try await RedisServer()
        try await redis.start()
        defer { redis.kill() }
        try await withUpstreams { upstreams in
            let config = Self.config(top: #""redis": { "url": "redis://127.0.0.1:\#(redis.port)" },"#)
                .replacingOccurrences(of: #""cache": {}"#, with: #""cache": { "store": "redis" }"#)
            try await withGateway(config, upstreams: upstreams) { test in
                let a = Self.path("max-age=60", "&p=a&surrogate_key=product-1%20list")
                let b = Self.path("max-age=60", "&p=b&cache_tag=product-2%2C%20list")
                let c = Self.path("max-age=60", "&p=c")
                for path in [a, b, c] {
                    let first = try await test.request("GET", path)
                    #expect(first.header("x-cache") == "MISS" && first.header("surrogate-key") == nil && first.header("cache-tag") == nil, "\(first)")
                    let again = try await test.request("GET", path)
                    #expect(again.header("x-cache") == "HIT" && again.header("surrogate-key") == nil && again.header("cache-tag") == nil)
                }
                let listed = try await redis.command(["SCARD", "gw:cache:tag:list"])
                #expect(listed.contains("2"), "\(listed)")
                let ttl = Int(try await redis.command(["TTL", "gw:cache:tag:product-1"]).filter(\.isNumber)) ?? -1
                #expect(ttl > 0 && ttl <= 3660, "the tag's set expires with its entries (\(ttl))")

                let one = try await OperationsTests.admin(test.gateway, "/cache/purge?tag=product-1", method: "POST", token: nil)
                #expect(one.status == 200 && one.json["purged"] as? Int == 1, "\(one.text)")
                #expect(try await test.request("GET", a).header("x-cache") == "MISS")
                #expect(try await test.request("GET", b).header("x-cache") == "HIT")
                #expect(try await test.request("GET", c).header("x-cache") == "HIT")

                let both = try await OperationsTests.admin(test.gateway, "/cache/purge?tag=list", method: "POST", token: nil)
                #expect(both.json["purged"] as? Int == 2, "\(both.text)")
                let gone = try await redis.command(["EXISTS", "gw:cache:tag:list"])
                #expect(gone.contains("0"), "purged from Redis too: \(gone)")
                let entries = try await redis.command(["KEYS", "gw:cache:{*"])
                #expect(entries.split(separator: "\n").count == 1, "only c's entry is left: \(entries)")
                #expect(try await test.request("GET", a).header("x-cache") == "MISS")
                #expect(try await test.request("GET", b).header("x-cache") == "MISS")
                #expect(try await test.request("GET", c).header("x-cache") == "HIT")

                let empty = try await OperationsTests.admin(test.gateway, "/cache/purge?tag=", method: "POST", token: nil)
                #expect(empty.status == 422)
            }
        }
    }

    // A response larger than max_object_bytes streams through whole and uncached, in bounded memory.
    @Test(.timeLimit(.minutes(2))) func largeObjectsStreamThrough() async throws {
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1,
                  "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 0 }],
                  "cache": { "memory_bytes": 8388608, "max_object_bytes": 1048576 },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] } },
                  "routes": [{ "name": "all", "upstream": "demo", "cache": { "enabled": true } }] }
                """
            let gateway = try GatewayProcess(config: config)
            try await gateway.start()
            let size = 100 << 20
            let url = "http://127.0.0.1:\(gateway.port)" + Self.path("max-age=60", "&size=\(size)")
            for _ in 0..<2 {
                let result = try await shell("curl -sS -o /dev/null -D - -w '%{size_download}\\n' '\(url)'", timeout: .seconds(60))
                #expect(result.stdout.contains("x-cache: MISS"), "\(result.stdout)")
                #expect(result.stdout.hasSuffix("\(size)\n"), "\(result.stdout)")
            }
            #expect(Self.hits(upstreams[0]) == 2)
            // Sanitizer runtimes have memory of their own (shadow memory, quarantines): the bound holds for real builds.
            if TestTime.sanitizer == nil {
                #expect(gateway.peakResidentBytes < 80 << 20, "peak RSS \(gateway.peakResidentBytes >> 20) MiB")
            }
            gateway.terminate()
            #expect(await gateway.waitForExit(timeout: .seconds(10)) == 0)
        }
    }

    // With cache.store "redis", a response stored through one gateway process is a hit on another.
    @Test(.timeLimit(.minutes(1))) func redisSharedBetweenInstances() async throws {
        let redis = try await RedisServer()
        try await redis.start()
        defer { redis.kill() }
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1,
                  "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 0 }],
                  "redis": { "url": "redis://127.0.0.1:\(redis.port)" },
                  "cache": { "store": "redis" },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] } },
                  "routes": [{ "name": "all", "upstream": "demo", "cache": { "enabled": true } }] }
                """
            let first = try GatewayProcess(config: config)
            let second = try GatewayProcess(config: config)
            try await first.start()
            try await second.start()
            let path = Self.path("max-age=60, public", "&vary=Accept-Language")
            let stored = try await shell("curl -s -D - -H 'Accept-Language: fr' 'http://127.0.0.1:\(first.port)\(path)'")
            #expect(stored.stdout.contains("x-cache: MISS"))
            var shared = ""
            let deadline = ContinuousClock.now + .seconds(5)
            while !shared.contains("x-cache: HIT") && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                shared = try await shell("curl -s -D - -H 'Accept-Language: fr' 'http://127.0.0.1:\(second.port)\(path)'").stdout
            }
            #expect(shared.contains("x-cache: HIT"), "\(shared)")
            #expect(shared.contains(#""varied":"fr""#))
            let otherVariant = try await shell("curl -s -D - -H 'Accept-Language: it' 'http://127.0.0.1:\(second.port)\(path)'")
            #expect(otherVariant.stdout.contains("x-cache: MISS"))
            #expect(Self.hits(upstreams[0]) == 2)
            let keys = try await redis.command(["KEYS", "gw:cache:*"])
            #expect(keys.contains("gw:cache:{"))
            first.terminate()
            second.terminate()
            _ = await first.waitForExit(timeout: .seconds(10))
            _ = await second.waitForExit(timeout: .seconds(10))
        }
    }
}
