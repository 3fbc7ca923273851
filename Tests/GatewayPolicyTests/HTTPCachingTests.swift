import GatewayPolicy
import Testing

/// RFC 9111 rules for a shared cache, with times given explicitly (no clock, no sockets).
@Suite struct HTTPCachingTests {
    static func response(
        _ status: Int = 200, _ cacheControl: String? = nil, date: Int? = 1_000, expires: Int? = nil, lastModified: Int? = nil,
        age: Int? = nil, validator: Bool = false, cookie: Bool = false
    ) -> HTTPCaching.Response {
        HTTPCaching.Response(
            status: status, cacheControl: CacheControl(cacheControl.map { [$0] } ?? []), date: date, expires: expires,
            lastModified: lastModified, age: age, hasValidator: validator, setsCookie: cookie)
    }

    static func storable(
        _ response: HTTPCaching.Response, method: String = "GET", request: String? = nil, authorization: Bool = false,
        allowCookie: Bool = false, defaultTTL: Int = 0
    ) -> HTTPCaching.NotStored? {
        HTTPCaching.storability(
            method: method, request: CacheControl(request.map { [$0] } ?? []), hasAuthorization: authorization, response: response,
            allowSetCookie: allowCookie, defaultTTL: defaultTTL)
    }

    @Test func parsesDirectives() {
        let cc = CacheControl(["public, max-age=60", #"S-MAXAGE="120", stale-while-revalidate=30"#, #"no-cache="set-cookie, x""#])
        #expect(cc.isPublic)
        #expect(cc.maxAge == 60)
        #expect(cc.sMaxAge == 120)
        #expect(cc.staleWhileRevalidate == 30)
        #expect(cc.noCache)
        // Duplicates and garbage make the value 0 (treated as stale); huge values are capped at 2^31.
        #expect(CacheControl(["max-age=60, max-age=3600"]).maxAge == 0)
        #expect(CacheControl(["max-age=abc"]).maxAge == 0)
        #expect(CacheControl(["max-age=99999999999999"]).maxAge == 2_147_483_648)
        #expect(CacheControl(["unknown-extension=1, private"]).isPrivate)
    }

    @Test func whatIsStored() {
        #expect(Self.storable(Self.response(200, "max-age=60")) == nil)
        #expect(Self.storable(Self.response(200, "max-age=60"), method: "POST") == .method)
        #expect(Self.storable(Self.response(206, "max-age=60")) == .status)
        #expect(Self.storable(Self.response(200, "max-age=60, no-store")) == .noStore)
        #expect(Self.storable(Self.response(200, "max-age=60"), request: "no-store") == .requestNoStore)
        #expect(Self.storable(Self.response(200, "private, max-age=60")) == .isPrivate)
        // Authorization: only public, s-maxage or must-revalidate make it shareable.
        #expect(Self.storable(Self.response(200, "max-age=60"), authorization: true) == .authorization)
        #expect(Self.storable(Self.response(200, "public, max-age=60"), authorization: true) == nil)
        #expect(Self.storable(Self.response(200, "s-maxage=60"), authorization: true) == nil)
        #expect(Self.storable(Self.response(200, "max-age=60, must-revalidate"), authorization: true) == nil)
        #expect(Self.storable(Self.response(200, "max-age=60", cookie: true)) == .setCookie)
        #expect(Self.storable(Self.response(200, "max-age=60", cookie: true), allowCookie: true) == nil)
        // No freshness information: heuristics need Last-Modified, else the operator's default decides.
        #expect(Self.storable(Self.response(200)) == .noFreshness)
        #expect(Self.storable(Self.response(200, lastModified: 0)) == nil)
        #expect(Self.storable(Self.response(200), defaultTTL: 30) == nil)
        #expect(Self.storable(Self.response(302)) == .noFreshness)
        #expect(Self.storable(Self.response(302), defaultTTL: 30) == .noFreshness)
        #expect(Self.storable(Self.response(302, "max-age=10")) == nil)
        var varyAny = Self.response(200, "max-age=60")
        varyAny.varyAny = true
        #expect(Self.storable(varyAny) == .varyAny)
    }

    @Test func freshnessLifetime() {
        #expect(HTTPCaching.freshnessLifetime(Self.response(200, "max-age=60, s-maxage=120"), responseTime: 1_000, defaultTTL: 5) == 120)
        #expect(HTTPCaching.freshnessLifetime(Self.response(200, "max-age=60"), responseTime: 1_000, defaultTTL: 5) == 60)
        #expect(HTTPCaching.freshnessLifetime(Self.response(200, expires: 1_300), responseTime: 1_000, defaultTTL: 5) == 300)
        #expect(HTTPCaching.freshnessLifetime(Self.response(200, expires: 900), responseTime: 1_000, defaultTTL: 5) == 0)
        // Heuristic: 10% of the time since Last-Modified, capped at a day.
        #expect(HTTPCaching.freshnessLifetime(Self.response(200, lastModified: 0), responseTime: 1_000, defaultTTL: 5) == 100)
        #expect(HTTPCaching.freshnessLifetime(Self.response(200, date: 10_000_000, lastModified: 0), responseTime: 1_000, defaultTTL: 5) == 86_400)
        #expect(HTTPCaching.freshnessLifetime(Self.response(200), responseTime: 1_000, defaultTTL: 5) == 5)
        #expect(HTTPCaching.freshnessLifetime(Self.response(200, "no-cache, max-age=60"), responseTime: 1_000, defaultTTL: 5) == 0)
    }

    @Test func ageCalculation() {
        // Age header 10, 2 s in transit, stored 5 s: 17.
        let response = Self.response(200, "max-age=60", date: 1_000, age: 10)
        #expect(HTTPCaching.currentAge(response, requestTime: 998, responseTime: 1_000, now: 1_005) == 17)
        // A Date in the past (apparent age) counts when larger.
        let old = Self.response(200, "max-age=60", date: 900)
        #expect(HTTPCaching.currentAge(old, requestTime: 1_000, responseTime: 1_000, now: 1_000) == 100)
    }

    @Test func useOfAStoredResponse() {
        let plain = Self.response(200, "max-age=60, stale-while-revalidate=30, stale-if-error=300")
        func use(_ age: Int, request: String? = nil, pragma: Bool = false, _ response: HTTPCaching.Response = plain) -> HTTPCaching.Use {
            HTTPCaching.use(response, request: CacheControl(request.map { [$0] } ?? []), requestPragmaNoCache: pragma, age: age, lifetime: 60)
        }
        #expect(use(59) == .fresh)
        #expect(use(60) == .staleWhileRevalidate)
        #expect(use(90) == .staleWhileRevalidate)
        #expect(use(91) == .revalidate)
        #expect(use(10, request: "no-cache") == .revalidate)
        #expect(use(10, pragma: true) == .revalidate)
        #expect(use(30, request: "max-age=20") == .revalidate)
        #expect(use(50, request: "min-fresh=20") == .revalidate)
        let strict = Self.response(200, "max-age=60, stale-while-revalidate=30, must-revalidate")
        #expect(use(61, strict) == .revalidate)

        let request = CacheControl()
        #expect(HTTPCaching.mayServeOnError(plain, request: request, age: 300, lifetime: 60))
        #expect(!HTTPCaching.mayServeOnError(plain, request: request, age: 400, lifetime: 60))
        #expect(!HTTPCaching.mayServeOnError(strict, request: request, age: 61, lifetime: 60))
        #expect(HTTPCaching.mayServeOnError(Self.response(200, "max-age=60"), request: CacheControl(["stale-if-error=100"]), age: 100, lifetime: 60))
    }

    @Test func httpDates() {
        let seconds = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == seconds)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == seconds)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == seconds)
        #expect(HTTPDate.parse("not a date") == nil)
        #expect(HTTPDate.format(seconds) == "Sun, 06 Nov 1994 08:49:37 GMT")
    }

    // Config timestamps (api_keys[].expires_at): RFC 3339 with Z or an offset, fractions ignored, or a date.
    @Test func rfc3339Times() {
        let seconds = 784_111_777  // 1994-11-06T08:49:37Z
        #expect(RFC3339.seconds("1994-11-06T08:49:37Z") == seconds)
        #expect(RFC3339.seconds("1994-11-06t08:49:37.123456z") == seconds)
        #expect(RFC3339.seconds("1994-11-06T09:49:37+01:00") == seconds)
        #expect(RFC3339.seconds("1994-11-06T03:19:37-05:30") == seconds)
        #expect(RFC3339.seconds("1994-11-06") == seconds - (8 * 3600 + 49 * 60 + 37))
        #expect(RFC3339.seconds("2028-02-29") != nil && RFC3339.seconds("2027-02-29") == nil)
        for bad in ["", "1994-11-06T08:49:37", "1994-13-06", "1994-11-06T24:00:00Z", "1994-11-06T08:49:37+0100", "1994-11-06 08:49:37Z", "06/11/1994"] {
            #expect(RFC3339.seconds(bad) == nil, "\(bad)")
        }
    }

    @Test func leastRecentlyUsedByCost() {
        var cache = LRUCache<String, Int>(capacity: 10)
        cache.set("a", 1, cost: 4)
        cache.set("b", 2, cost: 4)
        #expect(cache.get("a") == 1)  // a is now the most recent
        let evicted = cache.set("c", 3, cost: 4)
        #expect(evicted == ["b"])
        #expect(cache.keysByRecency == ["c", "a"])
        #expect(cache.totalCost == 8)
        #expect(cache.set("huge", 4, cost: 11).isEmpty)
        #expect(cache.peek("huge") == nil)
        cache.set("a", 5, cost: 2)
        #expect(cache.totalCost == 6)
        cache.removeAll { key, _ in key == "c" }
        #expect(cache.keysByRecency == ["a"])
    }
}
