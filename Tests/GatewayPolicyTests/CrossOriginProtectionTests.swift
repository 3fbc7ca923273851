import GatewayPolicy
import Testing

@Suite struct CrossOriginProtectionTests {
    let protection = CrossOriginProtection(
        trusted: ["https://app.example.com", "https://*.partner.test", "*"].compactMap(CORSPolicy.parseOrigin))

    func allowed(site: String? = nil, origin: String? = nil, host: String? = "api.example.com") -> Bool {
        protection.check(secFetchSite: site, origin: origin, host: host) == .allowed
    }

    // Sec-Fetch-Site decides for every current browser: same-origin and none pass, anything else does not.
    @Test func fetchMetadata() {
        #expect(allowed(site: "same-origin", origin: "https://api.example.com"))
        #expect(allowed(site: "none"))
        #expect(allowed(site: "Same-Origin"))
        #expect(!allowed(site: "cross-site", origin: "https://evil.test"))
        #expect(!allowed(site: "same-site", origin: "https://blog.example.com"))
        #expect(!allowed(site: "cross-site"))
    }

    // Trusted origins pass whatever Sec-Fetch-Site says; "*" is never a trusted origin.
    @Test func trustedOrigins() {
        #expect(allowed(site: "cross-site", origin: "https://app.example.com"))
        #expect(allowed(site: "cross-site", origin: "HTTPS://APP.EXAMPLE.COM"))
        #expect(allowed(site: "cross-site", origin: "https://shop.partner.test"))
        #expect(!allowed(site: "cross-site", origin: "https://partner.test"))
        #expect(!allowed(site: "cross-site", origin: "http://app.example.com"))
    }

    // Without Sec-Fetch-Site: no Origin passes (not a browser, or an old browser's same-origin request); an Origin
    // naming the request's host passes, default ports written or not; any other Origin (and "null") does not.
    @Test func originWithoutFetchMetadata() {
        #expect(allowed())
        #expect(allowed(origin: "https://api.example.com"))
        #expect(allowed(origin: "https://api.example.com", host: "API.example.com:443"))
        #expect(allowed(origin: "http://api.example.com:80", host: "api.example.com"))
        #expect(allowed(origin: "http://[::1]:8080", host: "[::1]:8080"))
        #expect(!allowed(origin: "https://api.example.com", host: "api.example.com:8443"))
        #expect(!allowed(origin: "https://evil.test"))
        #expect(!allowed(origin: "null"))
        #expect(!allowed(origin: "https://api.example.com", host: nil))
        #expect(protection.check(secFetchSite: nil, origin: "https://evil.test", host: "api.example.com")
            == .refused("Origin https://evil.test is not the request's host"))
    }
}
