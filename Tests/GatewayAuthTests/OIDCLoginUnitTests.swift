import Crypto
import Foundation
@testable import GatewayAuth
@testable import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Logging
import NIOCore
import Synchronization
import Testing

/// The OIDC login's rules without sockets: sealed cookies, session lifetime with an injected clock, the login
/// redirect's parameters and PKCE pair, ID-token checks (nonce, audience), and where the browser may be sent back.
@Suite struct OIDCLoginUnitTests {
    static let secret = String(repeating: "s", count: 32)
    static let hmacSecret = String(repeating: "k", count: 32)
    static let start: Int64 = 1_800_000_000

    final class Clock: Sendable {
        let seconds = Atomic<Int64>(OIDCLoginUnitTests.start)
        func advance(_ by: Int64) { seconds.add(by, ordering: .relaxed) }
    }

    static func login(clock: Clock, keys: JWTKeySet = JWTKeySet([]), idleSeconds: Int? = nil) -> OIDCLogin {
        var config = OIDCConfig(
            issuer: "https://id.test/", authorizationURL: "https://id.test/authorize", upstream: "idp", tokenPath: "/token",
            jwksURL: "https://id.test/jwks", clientID: "gateway", clientSecret: "s3cret", cookieSecret: secret)
        config.sessionSeconds = 3600
        config.idleSeconds = idleSeconds
        config.scopes = ["openid", "email"]
        config.forwardClaims = [OIDCConfig.ForwardedClaim(claim: "email", header: "x-user-email")]
        return OIDCLogin(
            config: config, keys: FetchedKeys(fixed: keys), upstreamIndex: 0, forwarders: LoopLocal(loops: []) { _ in fatalError("no calls here") },
            claimNames: ["groups"], now: { clock.seconds.load(ordering: .relaxed) })
    }

    // Sealed values open only with the same secret and purpose, and not once a byte changed; sealing the same
    // value twice gives different cookies (a fresh nonce each time).
    @Test func sealedCookiesOpenOnlyAsSealed() {
        let seal = CookieSeal(secret: Self.secret, purpose: "session")
        let sealed = seal.seal(Array("hello".utf8))
        #expect(seal.open(sealed) == Array("hello".utf8))
        #expect(seal.seal(Array("hello".utf8)) != sealed)
        #expect(CookieSeal(secret: Self.secret, purpose: "login").open(sealed) == nil)
        #expect(CookieSeal(secret: Self.secret + "x", purpose: "session").open(sealed) == nil)
        var bytes = Array(sealed.utf8)
        bytes[bytes.count / 2] = bytes[bytes.count / 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(seal.open(String(decoding: bytes, as: UTF8.self)) == nil)
        #expect(seal.open("") == nil && seal.open("not base64!") == nil && seal.open(String(sealed.prefix(20))) == nil)
    }

    // A session admits until its end, names the subject and forwards the configured claims; a login cookie or a
    // session from another secret does not pass for one.
    @Test func sessionsCarryTheIdentityUntilTheyEnd() {
        let clock = Clock()
        let login = Self.login(clock: clock)
        let session = OIDCLogin.Session(subject: "alice", claims: ["email": ["a@example.com"], "groups": ["staff", "ops"]], expires: Self.start + 3600)
        #expect(OIDCLogin.Session(json: session.json) == session)
        let cookie = login.sessionSeal.seal(session.json)
        let identity = try? login.identity(fromSession: cookie).get().identity
        #expect(identity?.subject == "alice" && identity?.method == .oidc && identity?.claims["groups"] == ["staff", "ops"])
        let forwarded = identity?.forwardedClaims.map { "\($0.0)=\($0.1)" }
        #expect(forwarded == ["x-user-email=a@example.com"])
        clock.advance(3599)
        #expect((try? login.identity(fromSession: cookie).get()) != nil)
        clock.advance(1)
        let expired = login.identity(fromSession: cookie)
        #expect(expired.failure == .expired)
        let loginCookie = login.identity(fromSession: login.loginSeal.seal(session.json))
        #expect(loginCookie.failure == .unreadable)
    }

    // idle_seconds: a session ends after that long without a request, however long it has left. A request in the first
    // half of the idle window admits as it is; one in the second half also gets a renewed cookie (its window starting
    // again, never past the session's end, Max-Age what is left of the session); a session sealed without an idle end
    // gets one at once; without idle_seconds, an idle end is not looked at.
    @Test func idleSessionsEnd() throws {
        let clock = Clock()
        let login = Self.login(clock: clock, idleSeconds: 600)
        var session = OIDCLogin.Session(subject: "alice", claims: [:], expires: Self.start + 3600)
        session.idleUntil = Self.start + 600
        #expect(OIDCLogin.Session(json: session.json) == session)
        let cookie = login.sessionSeal.seal(session.json)

        clock.advance(299)
        let early = try login.identity(fromSession: cookie).get()
        #expect(early.identity.subject == "alice" && early.renewedCookie == nil)

        clock.advance(2)  // 301 s in: 299 s of the window left, under half
        let renewal = try #require(try login.identity(fromSession: cookie, secure: true).get().renewedCookie)
        #expect(renewal.hasPrefix("gateway_session=") && renewal.hasSuffix("; Path=/; Max-Age=3299; HttpOnly; SameSite=Lax; Secure"), "\(renewal)")
        let renewedValue = String(renewal.dropFirst("gateway_session=".count).prefix { $0 != ";" })
        let renewed = try #require(login.sessionSeal.open(renewedValue).flatMap(OIDCLogin.Session.init(json:)))
        #expect(renewed.idleUntil == Self.start + 301 + 600 && renewed.expires == session.expires && renewed.subject == "alice")

        clock.advance(299)  // 600 s in: the old cookie's window is over, the renewed one's is not
        #expect(login.identity(fromSession: cookie).failure == .idle)
        #expect((try? login.identity(fromSession: renewedValue).get()) != nil)

        // Near the session's end, a renewal stops there; past it, the session is over whatever the idle end says.
        clock.advance(2800)  // 3400 s in
        var late = session
        late.idleUntil = Self.start + 3500
        let capped = try #require(try login.identity(fromSession: login.sessionSeal.seal(late.json)).get().renewedCookie)
        let cappedValue = String(capped.dropFirst("gateway_session=".count).prefix { $0 != ";" })
        #expect(login.sessionSeal.open(cappedValue).flatMap(OIDCLogin.Session.init(json:))?.idleUntil == Self.start + 3600)
        #expect(capped.contains("; Max-Age=200;"))
        clock.advance(200)
        #expect(login.identity(fromSession: cappedValue).failure == .expired)

        // Sealed before idle_seconds was set: a window starts now.
        let older = OIDCLogin.Session(subject: "bob", claims: [:], expires: clock.seconds.load(ordering: .relaxed) + 1000)
        #expect((try? login.identity(fromSession: login.sessionSeal.seal(older.json)).get().renewedCookie) != nil)
        // idle_seconds removed: the idle end no longer counts.
        let noIdle = Self.login(clock: clock)
        var stale = older
        stale.idleUntil = Self.start
        let admitted = try noIdle.identity(fromSession: noIdle.sessionSeal.seal(stale.json)).get()
        #expect(admitted.renewedCookie == nil && admitted.identity.subject == "bob")
    }

    // The redirect names the client, the redirect URI, the scopes, state and nonce, and the S256 challenge of the
    // verifier it keeps in the login cookie (with the page to come back to, never another site's).
    @Test func loginRedirectStartsTheCodeFlowWithPKCE() throws {
        let login = Self.login(clock: Clock())
        let site = OIDCLogin.Site(origin: "https://app.example.com", isSecure: true)
        let response = login.loginRedirect(returnTo: "/reports?year=2026", site: site)
        #expect(response.head.status == 302 && response.head.headers.first(name: "cache-control") == "no-store")
        let location = try #require(response.head.headers.first(name: "location"))
        let query = Dictionary(uniqueKeysWithValues: (URLComponents(string: location)?.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(location.hasPrefix("https://id.test/authorize?response_type=code&"))
        #expect(query["client_id"] == "gateway" && query["redirect_uri"] == "https://app.example.com/oauth2/callback")
        #expect(query["scope"] == "openid email" && query["code_challenge_method"] == "S256")
        let field = try #require(response.head.headers.first(name: "set-cookie"))
        #expect(field.hasSuffix("; Path=/oauth2/callback; Max-Age=600; HttpOnly; SameSite=Lax; Secure"))
        let name = "gateway_session_login_" + (query["state"] ?? "").prefix(12) + "="
        #expect(field.hasPrefix(name))
        let value = String(field.dropFirst(name.count).prefix { $0 != ";" })
        let kept = try #require(login.loginSeal.open(value).flatMap(OIDCLogin.Login.init(json:)))
        #expect(kept.state == query["state"] && kept.nonce == query["nonce"] && kept.returnTo == "/reports?year=2026")
        #expect(Base64URL.encode(SHA256.hash(data: Array(kept.verifier.utf8))) == query["code_challenge"])
        #expect(kept.expires == Self.start + 600)

        let elsewhere = login.loginRedirect(returnTo: "//evil.example/x", site: site).head.headers.first(name: "set-cookie") ?? ""
        let sealedElsewhere = elsewhere.drop { $0 != "=" }.dropFirst().prefix { $0 != ";" }
        let keptElsewhere = login.loginSeal.open(String(sealedElsewhere)).flatMap(OIDCLogin.Login.init(json:))
        #expect(keptElsewhere?.returnTo == "/")
    }

    // email_domains: only a verified address in a listed domain logs in (compared without case).
    @Test func emailDomainsAdmitVerifiedAddressesOnly() {
        let domains = ["example.com", "corp.example"]
        let cases: [([String: [String]], String?)] = [
            (["email": ["alice@example.com"], "email_verified": ["true"]], nil),
            (["email": ["Bob@EXAMPLE.com"]], nil),
            (["email": ["carol@ops.corp.example"]], "refused_claim"),
            (["email": ["mallory@example.com.evil"], "email_verified": ["true"]], "refused_claim"),
            (["email": ["eve@example.com"], "email_verified": ["false"]], "refused_claim"),
            (["email": ["no-at-sign"]], "missing_claim"),
            ([:], "missing_claim"),
        ]
        for (claims, expected) in cases {
            #expect(OIDCLogin.emailRefusal(claims, domains: domains)?.code == expected, "\(claims)")
        }
        #expect(OIDCLogin.emailRefusal([:], domains: []) == nil, "no domains: anyone the provider vouches for")
    }

    @Test func onlyPathsOnThisSiteAreReturnedTo() {
        for (target, expected) in [
            ("/a?b=c", "/a?b=c"), ("/", "/"), ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example/", "/"),
            ("evil", "/"), ("/a b", "/"), ("/a\u{7F}", "/"),
        ] {
            #expect(OIDCLogin.safeReturn(target) == expected, "\(target)")
        }
    }

    // Browsers loading a page are sent to log in; scripts (fetch, XHR: Sec-Fetch-Mode cors) and non-GETs are not.
    @Test func onlyNavigationsAreRedirected() {
        let cases: [(HTTPMethod, [(String, String)], Bool)] = [
            (.GET, [("Sec-Fetch-Mode", "navigate"), ("Accept", "text/html")], true),
            (.GET, [("Accept", "text/html,application/xhtml+xml")], true),
            (.HEAD, [("Accept", "text/html")], true),
            (.GET, [("Sec-Fetch-Mode", "cors"), ("Accept", "text/html")], false),
            (.GET, [("Accept", "application/json")], false),
            (.GET, [], false),
            (.POST, [("Sec-Fetch-Mode", "navigate"), ("Accept", "text/html")], false),
        ]
        for (method, fields, expected) in cases {
            #expect(OIDCLogin.isNavigation(method: method, headers: HeaderList(fields)) == expected, "\(method) \(fields)")
        }
    }

    // The redirect URI's scheme: TLS, or X-Forwarded-Proto from a trusted proxy only; hosts that are not host
    // names give no site at all.
    @Test func siteFromTheRequest() {
        let forwarded = HeaderList([("Host", "app.example.com:8443"), ("X-Forwarded-Proto", "https")])
        #expect(OIDCLogin.Site(headers: forwarded, isTLS: false, peerIsTrustedProxy: true)?.origin == "https://app.example.com:8443")
        #expect(OIDCLogin.Site(headers: forwarded, isTLS: false, peerIsTrustedProxy: false)?.origin == "http://app.example.com:8443")
        #expect(OIDCLogin.Site(headers: HeaderList([("Host", "[::1]:80")]), isTLS: true, peerIsTrustedProxy: false)?.isSecure == true)
        #expect(OIDCLogin.Site(headers: HeaderList([("Host", "evil.example/x")]), isTLS: true, peerIsTrustedProxy: false) == nil)
        #expect(OIDCLogin.Site(headers: HeaderList([("Host", "a@b")]), isTLS: true, peerIsTrustedProxy: false) == nil)
        #expect(OIDCLogin.Site(headers: HeaderList(), isTLS: true, peerIsTrustedProxy: false) == nil)
    }

    // The ID token must be for this client (aud), from the issuer, and carry this login's nonce; the nonce is not
    // kept in the session.
    @Test func idTokensMustBelongToThisLogin() async throws {
        let key = try await KeyLoader.load(JWTConfig.Key(kid: "a", alg: "HS256", secret: Self.hmacSecret, publicKey: nil, publicKeyFile: nil))
        let login = Self.login(clock: Clock(), keys: JWTKeySet([key]))
        func token(_ payload: String) -> String {
            let input = Base64URL.encode(Array(#"{"alg":"HS256","kid":"a"}"#.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
            let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: Array(Self.hmacSecret.utf8)))
            return input + "." + Base64URL.encode(Array(mac))
        }
        let exp = Self.start + 300
        let good = login.verifyIDToken(token(#"{"iss":"https://id.test/","aud":"gateway","sub":"alice","exp":\#(exp),"nonce":"n1","groups":["staff"]}"#), nonce: "n1")
        let identity = try good.get()
        #expect(identity.method == .oidc && identity.subject == "alice" && identity.claims == ["groups": ["staff"]])
        let outcomes = [
            login.verifyIDToken(token(#"{"iss":"https://id.test/","aud":"gateway","sub":"alice","exp":\#(exp),"nonce":"n2"}"#), nonce: "n1"),
            login.verifyIDToken(token(#"{"iss":"https://id.test/","aud":"gateway","sub":"alice","exp":\#(exp)}"#), nonce: "n1"),
            login.verifyIDToken(token(#"{"iss":"https://id.test/","aud":"other","sub":"alice","exp":\#(exp),"nonce":"n1"}"#), nonce: "n1"),
            login.verifyIDToken(token(#"{"iss":"https://evil.test/","aud":"gateway","sub":"alice","exp":\#(exp),"nonce":"n1"}"#), nonce: "n1"),
            login.verifyIDToken(token(#"{"iss":"https://id.test/","aud":"gateway","sub":"alice","exp":\#(Self.start - 120),"nonce":"n1"}"#), nonce: "n1"),
        ].map { (result: Result<Identity, JWTRejection>) -> String in
            if case .failure(let rejection) = result { return rejection.code }
            return "accepted"
        }
        #expect(outcomes == ["missing_claim", "missing_claim", "wrong_audience", "wrong_issuer", "expired"])

        // With email_domains, the email decides; email_verified does not stay in the session (the email does here:
        // forward_claims sends it upstream).
        var config = login.config
        config.emailDomains = ["example.com"]
        let strict = OIDCLogin(
            config: config, keys: FetchedKeys(fixed: JWTKeySet([key])), upstreamIndex: 0,
            forwarders: LoopLocal(loops: []) { _ in fatalError("no calls here") }, claimNames: ["groups"],
            now: { Self.start })
        let staff = try strict.verifyIDToken(
            token(#"{"iss":"https://id.test/","aud":"gateway","sub":"alice","exp":\#(exp),"nonce":"n1","email":"alice@example.com","email_verified":true,"groups":["staff"]}"#),
            nonce: "n1"
        ).get()
        #expect(staff.claims == ["groups": ["staff"], "email": ["alice@example.com"]])
        let outsider = strict.verifyIDToken(
            token(#"{"iss":"https://id.test/","aud":"gateway","sub":"eve","exp":\#(exp),"nonce":"n1","email":"eve@elsewhere.example"}"#), nonce: "n1")
        #expect(outsider.failure?.description == "email domain elsewhere.example is not in email_domains")
    }
}
