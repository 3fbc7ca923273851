import GatewayPolicy
import Testing

@Suite struct CORSPolicyTests {
    func policy(
        origins: [String], methods: [String] = ["GET", "POST"], headers: [String] = ["Content-Type"], credentials: Bool = false,
        maxAge: Int? = nil
    ) -> CORSPolicy {
        CORSPolicy(
            origins: origins, allowMethods: methods, allowHeaders: headers, exposeHeaders: [], allowCredentials: credentials,
            maxAgeSeconds: maxAge)
    }

    // Entries are whole origins: lowercased, default port dropped; anything else is refused when decoding.
    @Test func parsesOrigins() {
        #expect(CORSPolicy.parseOrigin("*") == .any)
        #expect(CORSPolicy.parseOrigin("https://App.Example.com") == .exact("https://app.example.com"))
        #expect(CORSPolicy.parseOrigin("https://app.example.com:443") == .exact("https://app.example.com"))
        #expect(CORSPolicy.parseOrigin("http://localhost:80") == .exact("http://localhost"))
        #expect(CORSPolicy.parseOrigin("http://localhost:3000") == .exact("http://localhost:3000"))
        #expect(CORSPolicy.parseOrigin("https://*.example.com") == .subdomains(scheme: "https://", suffix: ".example.com"))
        #expect(CORSPolicy.parseOrigin("https://*.example.com:8443") == .subdomains(scheme: "https://", suffix: ".example.com:8443"))
        for bad in ["https://app.example.com/", "https://app.example.com/path", "app.example.com", "ftp://x", "https://", "null",
            "https://a.*.com", "https://*", "https://*.", "https://user@app.example.com", "https://app.example.com?x", "https://*x.com"]
        {
            #expect(CORSPolicy.parseOrigin(bad) == nil, "\(bad)")
        }
    }

    // Exact origins compare case-insensitively; subdomain patterns need at least one label and the same port.
    @Test func matchesOrigins() {
        let policy = policy(origins: ["https://app.example.com", "https://*.partner.test"])
        #expect(policy.allowOrigin(for: "https://app.example.com") == "https://app.example.com")
        #expect(policy.allowOrigin(for: "https://APP.example.com") == "https://APP.example.com")
        #expect(policy.allowOrigin(for: "https://a.partner.test") == "https://a.partner.test")
        #expect(policy.allowOrigin(for: "https://a.b.partner.test") == "https://a.b.partner.test")
        for refused in ["http://app.example.com", "https://app.example.com:8443", "https://app.example.com.evil", "https://partner.test",
            "https://evilpartner.test", "https://a.partner.test:444", "https://x/.partner.test", "null", ""]
        {
            #expect(policy.allowOrigin(for: refused) == nil, "\(refused)")
        }
        #expect(policy.variesByOrigin)
    }

    // `*` answers `*` (the same for everyone, so nothing varies) unless credentials are allowed.
    @Test func wildcard() {
        let open = policy(origins: ["*"])
        #expect(open.allowOrigin(for: "https://anyone.test") == "*")
        #expect(open.allowOrigin(for: "null") == "*")
        #expect(!open.variesByOrigin)
        let mixed = policy(origins: ["https://app.test", "*"], credentials: true)
        #expect(mixed.allowOrigin(for: "https://anyone.test") == "https://anyone.test")
        #expect(mixed.variesByOrigin)
    }

    // A preflight is allowed when origin, method and every requested header are; the answer lists what is allowed.
    @Test func preflights() {
        let policy = policy(origins: ["https://app.test"], headers: ["Content-Type", "X-API-Key"], maxAge: 600)
        let allowed: CORSPolicy.PreflightDecision = .allow([
            .init(name: "access-control-allow-methods", value: "GET, POST"),
            .init(name: "access-control-allow-headers", value: "Content-Type, X-API-Key"),
            .init(name: "access-control-max-age", value: "600"),
        ])
        #expect(policy.preflight(origin: "https://app.test", requestMethod: "POST", requestHeaders: "content-type , X-Api-Key") == allowed)
        #expect(policy.preflight(origin: "https://app.test", requestMethod: "GET", requestHeaders: nil) == allowed)
        #expect(policy.preflight(origin: "https://app.test", requestMethod: "GET", requestHeaders: " , ") == allowed)
        #expect(policy.preflight(origin: "https://other.test", requestMethod: "GET", requestHeaders: nil) == .refuse(.origin))
        #expect(policy.preflight(origin: "https://app.test", requestMethod: "DELETE", requestHeaders: nil) == .refuse(.method))
        #expect(policy.preflight(origin: "https://app.test", requestMethod: "post", requestHeaders: nil) == .refuse(.method))
        #expect(policy.preflight(origin: "https://app.test", requestMethod: "POST", requestHeaders: "content-type,x-debug") == .refuse(.headers))
    }

    // `*` methods and headers echo what the preflight asks (a literal `*` would not cover Authorization).
    @Test func wildcardMethodsAndHeaders() {
        let policy = policy(origins: ["https://app.test"], methods: ["*"], headers: ["*"], credentials: true)
        let decision = policy.preflight(origin: "https://app.test", requestMethod: "PURGE", requestHeaders: "authorization,x-trace")
        #expect(
            decision
                == .allow([
                    .init(name: "access-control-allow-methods", value: "PURGE"),
                    .init(name: "access-control-allow-headers", value: "authorization, x-trace"),
                ]))
        let none = policy.preflight(origin: "https://app.test", requestMethod: "GET", requestHeaders: nil)
        #expect(none == .allow([.init(name: "access-control-allow-methods", value: "GET")]))
    }
}
