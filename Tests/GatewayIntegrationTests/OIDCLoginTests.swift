import Crypto
@testable import GatewayAuth
import DemoUpstream
import Foundation
import JWTKit
import Synchronization
import TestSupport
import Testing

/// `auth.oidc` over real sockets: a browser is sent to the provider, comes back with a code, the gateway exchanges
/// it at the provider's token endpoint (an upstream on 127.0.0.1 playing the provider, checking the client's
/// credentials and the PKCE verifier), verifies the ID token against the provider's JWKS and sets a session
/// cookie that admits the next requests.
@Suite struct OIDCLoginTests {
    static let cookieSecret = "0123456789abcdef0123456789abcdef-test"

    static func config(idpPort: Int, apiPort: Int, oidcExtra: String = "") -> String {
        """
        { "workers": 1,
          "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
          "auth": { "oidc": { "issuer": "https://id.test/", "authorization_url": "https://id.test/authorize?prompt=login",
                              "upstream": "idp", "token_path": "/token", "jwks_url": "http://127.0.0.1:\(idpPort)/jwks.json",
                              "client_id": "gateway", "client_secret": "s3cret", "cookie_secret": "\(cookieSecret)",
                              "scopes": ["openid", "email"], "forward_claims": { "email": "X-User-Email" } \(oidcExtra) } },
          "upstreams": { "api": { "targets": ["http://127.0.0.1:\(apiPort)"] }, "idp": { "targets": ["http://127.0.0.1:\(idpPort)"] } },
          "routes": [{ "name": "admin", "match": { "path_prefix": "/admin" }, "upstream": "api",
                       "auth": { "require": ["oidc"], "claims": { "groups": "admins" } } },
                     { "name": "app", "upstream": "api", "auth": { "require": ["oidc"] } }] }
        """
    }

    /// The provider's signing key, published as a JWKS on the provider upstream.
    struct Provider {
        let factory: TokenFactory
        let key: EdDSA.PrivateKey

        static func start(on idp: DemoUpstream) async throws -> Provider {
            let key = try EdDSA.PrivateKey(curve: .ed25519)
            let factory = try await TokenFactory.make(alg: "EdDSA", kid: "p1") { await $0.add(eddsa: key, kid: $1) }
            let jwk = #"{ "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": "p1", "x": "\#(TokenFactory.base64URL(key.publicKey.rawRepresentation))" }"#
            idp.behaviour.documents.withLockedValue { $0["/jwks.json"] = #"{ "keys": [\#(jwk)] }"# }
            return Provider(factory: factory, key: key)
        }

        func idToken(nonce: String, subject: String = "alice", groups: [String] = ["staff"], audience: String = "gateway") -> String {
            factory.token(claims: [
                "iss": "https://id.test/", "aud": audience, "sub": subject, "exp": AuthTests.now + 300, "iat": AuthTests.now - 5, "nonce": nonce,
                "email": "\(subject)@example.com", "groups": groups,
            ])
        }
    }

    /// What the provider answers the code exchange: the expected code, redirect URI and PKCE verifier (checked
    /// against the challenge the browser brought), then the ID token.
    static func answerCode(
        _ code: String, challenge: String, idToken: String, on idp: DemoUpstream, exchanges: ExchangeLog,
        redirectURI: String = "http://test.local/oauth2/callback"
    ) {
        idp.behaviour.tokenEndpoint.withLockedValue {
            $0 = { form in
                exchanges.append(form)
                let verifier = form["code_verifier"] ?? ""
                let computed = TokenFactory.base64URL(Array(SHA256.hash(data: Array(verifier.utf8))))
                guard form["grant_type"] == "authorization_code", form["code"] == code, computed == challenge,
                    form["redirect_uri"] == redirectURI
                else { return (400, #"{"error":"invalid_grant"}"#) }
                return (200, #"{"access_token":"at-1","token_type":"Bearer","expires_in":300,"id_token":"\#(idToken)"}"#)
            }
        }
    }

    final class ExchangeLog: Sendable {
        private let forms = Mutex<[[String: String]]>([])
        func append(_ form: [String: String]) { forms.withLock { $0.append(form) } }
        var all: [[String: String]] { forms.withLock { $0 } }
    }

    /// The query parameters of a URL, percent-decoded.
    static func query(_ url: String) -> [String: String] {
        guard let components = URLComponents(string: url) else { return [:] }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
        return query
    }

    /// `name=value` of the Set-Cookie field for `name`.
    static func cookie(_ name: String, in response: TestResponse) -> String? {
        response.headers("set-cookie").first { $0.hasPrefix(name + "=") }?.split(separator: ";").first.map(String.init)
    }

    /// A gateway in front of an upstream and a provider (another upstream) that publishes its keys.
    static func withProvider(oidcExtra: String = "", _ body: (TestGateway, DemoUpstream, Provider, ExchangeLog) async throws -> Void) async throws {
        try await withUpstreams(2) { upstreams in
            let (api, idp) = (upstreams[0], upstreams[1])
            let provider = try await Provider.start(on: idp)
            try await withGateway(Self.config(idpPort: idp.port, apiPort: api.port, oidcExtra: oidcExtra)) { gateway in
                try await body(gateway, idp, provider, ExchangeLog())
            }
        }
    }

    static let browser = [("Accept", "text/html,application/xhtml+xml"), ("Sec-Fetch-Mode", "navigate")]

    @Test func loginFlowSetsASessionThatAdmitsRequests() async throws {
        try await Self.withProvider { gateway, idp, provider, exchanges in
            // 1. A page without a session: off to the provider, with state, nonce and an S256 challenge.
            let start = try await gateway.request("GET", "/reports?year=2026", headers: Self.browser)
            #expect(start.status == 302)
            let location = try #require(start.header("location"))
            #expect(location.hasPrefix("https://id.test/authorize?prompt=login&response_type=code&"))
            let asked = Self.query(location)
            #expect(asked["client_id"] == "gateway" && asked["redirect_uri"] == "http://test.local/oauth2/callback")
            #expect(asked["scope"] == "openid email" && asked["code_challenge_method"] == "S256")
            let state = try #require(asked["state"])
            let nonce = try #require(asked["nonce"])
            let challenge = try #require(asked["code_challenge"])
            #expect(state.count == 22 && nonce.count == 22 && challenge.count == 43)
            let loginField = try #require(start.headers("set-cookie").first)
            #expect(loginField.hasSuffix("; Path=/oauth2/callback; Max-Age=600; HttpOnly; SameSite=Lax"), "\(loginField)")
            let loginCookie = try #require(Self.cookie("gateway_session_login_" + state.prefix(12), in: start))

            // An API client (no navigation) gets the JSON 401 instead of a redirect.
            let api401 = try await gateway.request("GET", "/reports", headers: [("Accept", "application/json")])
            #expect(api401.status == 401 && api401.errorCode == "UNAUTHENTICATED")

            // Another tab starts a login meanwhile: its own login cookie, the first one's still stands.
            let otherTab = try await gateway.request("GET", "/dashboard", headers: Self.browser)
            let otherState = Self.query(otherTab.header("location") ?? "")["state"] ?? ""
            let otherCookie = try #require(Self.cookie("gateway_session_login_" + otherState.prefix(12), in: otherTab))
            #expect(otherState != state)

            // 2. The provider sends the browser back with a code; the gateway exchanges it and sets the session.
            Self.answerCode("code-1", challenge: challenge, idToken: provider.idToken(nonce: nonce), on: idp, exchanges: exchanges)
            let back = try await gateway.request(
                "GET", "/oauth2/callback?code=code-1&state=\(state)", headers: [("Cookie", "\(otherCookie); \(loginCookie)")])
            #expect(back.status == 302 && back.header("location") == "/reports?year=2026", "\(back)")
            #expect(back.header("cache-control") == "no-store")
            let session = try #require(Self.cookie("gateway_session", in: back))
            #expect(back.headers("set-cookie").contains("gateway_session_login_\(state.prefix(12))=; Path=/oauth2/callback; Max-Age=0; HttpOnly; SameSite=Lax"))
            let sessionField = back.headers("set-cookie").first { $0.hasPrefix("gateway_session=") }
            #expect(sessionField == session + "; Path=/; Max-Age=28800; HttpOnly; SameSite=Lax")
            let exchange = try #require(exchanges.all.first)
            #expect(exchange["code"] == "code-1" && exchange["code_verifier"]?.count == 43)
            #expect(gateway.logs.entries("logged in").first?["consumer"] as? String == "alice")

            // 3. The session admits requests: the upstream sees the identity and the forwarded claim (never a
            //    client's own field of that name), not the session cookie; the other cookies pass.
            let admitted = try await gateway.request(
                "GET", "/reports", headers: [("Cookie", "theme=dark; \(session); lang=en"), ("X-User-Email", "mallory@evil.example")])
            #expect(admitted.status == 200, "\(admitted)")
            #expect(admitted.echoedHeaders["x-auth-subject"] == "alice" && admitted.echoedHeaders["x-auth-method"] == "oidc")
            #expect(admitted.echoedHeaders["x-user-email"] == "alice@example.com")
            #expect(admitted.echoedHeaders["cookie"] == "theme=dark; lang=en")
            // Claims from the ID token decide routes: alice is staff, not admins.
            let admin = try await gateway.request("GET", "/admin/users", headers: [("Cookie", session)])
            #expect(admin.status == 403 && admin.errorCode == "FORBIDDEN")

            // 4. A session cookie that was altered does not open: the browser logs in again, an API client gets 401.
            var altered = Array(session.utf8)
            altered[altered.count - 5] = altered[altered.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            let forged = String(decoding: altered, as: UTF8.self)
            let again = try await gateway.request("GET", "/reports", headers: Self.browser + [("Cookie", forged)])
            #expect(again.status == 302 && again.header("location")?.hasPrefix("https://id.test/authorize?") == true)
            let refused = try await gateway.request("GET", "/reports", headers: [("Cookie", forged)])
            #expect(refused.status == 401)

            // 5. Logout clears the cookie.
            let out = try await gateway.request("GET", "/oauth2/logout", headers: [("Cookie", session)])
            #expect(out.status == 302 && out.header("location") == "/")
            #expect(out.headers("set-cookie") == ["gateway_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"])
        }
    }

    // idle_seconds over real sockets: a session in the second half of its idle window is admitted and its answer carries
    // the renewed session cookie beside the upstream's own Set-Cookie (neither replaces the other); one in the first half
    // gets none; one idle past its window is refused (a 401 for an API client, logged as idle). The login's session
    // cookie starts a window of its own.
    @Test func idleSessionsAreRenewedWhileUsed() async throws {
        try await Self.withProvider(oidcExtra: #", "idle_seconds": 600"#) { gateway, idp, provider, exchanges in
            let seal = CookieSeal(secret: Self.cookieSecret, purpose: "session")
            func session(idleFor remaining: Int) -> String {
                let now = Int64(Date().timeIntervalSince1970)
                var session = OIDCLogin.Session(subject: "alice", claims: [:], expires: now + 3000)
                session.idleUntil = now + Int64(remaining)
                return "gateway_session=" + seal.seal(session.json)
            }
            let upstreamCookie = "/status/200?set_cookie=theme%3Ddark%3B%20Path%3D%2F"
            let renewing = try await gateway.request("GET", upstreamCookie, headers: [("Cookie", session(idleFor: 100))])
            #expect(renewing.status == 200, "\(renewing)")
            let cookies = renewing.headers("set-cookie")
            #expect(cookies.count == 2 && cookies.first == "theme=dark; Path=/", "\(cookies)")
            let sessionCookies = cookies.filter { $0.hasPrefix("gateway_session=") }
            let renewed = try #require(sessionCookies.first)
            let maxAge = renewed.contains("; Path=/; Max-Age=3000; ") || renewed.contains("; Path=/; Max-Age=2999; ")
            #expect(maxAge && renewed.hasSuffix("; HttpOnly; SameSite=Lax"), "\(renewed)")
            let renewedValue = String(renewed.prefix { $0 != ";" })
            let again = try await gateway.request("GET", "/echo", headers: [("Cookie", renewedValue)])
            #expect(again.status == 200 && again.echoedHeaders["x-auth-subject"] == "alice")
            #expect(again.headers("set-cookie").isEmpty, "a fresh window needs no renewal")

            let fresh = try await gateway.request("GET", upstreamCookie, headers: [("Cookie", session(idleFor: 500))])
            #expect(fresh.status == 200 && fresh.headers("set-cookie") == ["theme=dark; Path=/"])

            let idle = try await gateway.request("GET", "/echo", headers: [("Cookie", session(idleFor: -1))])
            #expect(idle.status == 401 && idle.errorCode == "UNAUTHENTICATED", "\(idle)")
            let refusal = gateway.logs.entries("authentication failed").last?["reason"] as? String
            #expect(refusal == "oidc: the session was idle longer than idle_seconds")

            // A login's session carries an idle end from the start.
            let start = try await gateway.request("GET", "/reports", headers: Self.browser)
            let asked = Self.query(start.header("location") ?? "")
            let (state, nonce, challenge) = (asked["state"] ?? "", asked["nonce"] ?? "", asked["code_challenge"] ?? "")
            let loginCookie = try #require(Self.cookie("gateway_session_login_" + state.prefix(12), in: start))
            Self.answerCode("code-1", challenge: challenge, idToken: provider.idToken(nonce: nonce), on: idp, exchanges: exchanges)
            let back = try await gateway.request("GET", "/oauth2/callback?code=code-1&state=\(state)", headers: [("Cookie", loginCookie)])
            let value = try #require(Self.cookie("gateway_session", in: back)).dropFirst("gateway_session=".count)
            let opened = try #require(seal.open(String(value)).flatMap(OIDCLogin.Session.init(json:)))
            let idleBeforeEnd = opened.idleUntil.map { $0 - opened.expires }
            #expect(idleBeforeEnd == Int64(600 - 28800))
        }
    }

    // Over a TLS listener the redirect URI is https and both cookies are Secure (curl with the test CA, a real
    // handshake): the session cookie never travels in the clear.
    @Test func cookiesAreSecureOverTLS() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        try await withUpstreams(2) { upstreams in
            let (api, idp) = (upstreams[0], upstreams[1])
            let provider = try await Provider.start(on: idp)
            let tls = #"{ "certificates": [{ "cert": "\#(server.cert)", "key": "\#(server.key)" }] }"#
            let config = Self.config(idpPort: idp.port, apiPort: api.port)
                .replacingOccurrences(of: #""port": 0 }]"#, with: #""port": 0, "tls": \#(tls) }]"#)
            try await withGateway(config) { gateway in
                let port = gateway.port
                let curl = "curl -s -D - -o /dev/null --cacert \(pki.caFile) --resolve localhost:\(port):127.0.0.1"
                let start = try await shell("\(curl) -H 'Accept: text/html' https://localhost:\(port)/reports")
                let fields = start.stdout.split(separator: "\r\n").map(String.init)
                let locationField = fields.first { $0.lowercased().hasPrefix("location: ") }
                let location = String(try #require(locationField).dropFirst(10))
                let asked = Self.query(location)
                #expect(asked["redirect_uri"] == "https://localhost:\(port)/oauth2/callback")
                let setCookie = fields.first { $0.lowercased().hasPrefix("set-cookie: ") }
                let loginField = try #require(setCookie)
                #expect(loginField.hasSuffix("; HttpOnly; SameSite=Lax; Secure"), "\(loginField)")
                let loginCookie = String(loginField.dropFirst(12).prefix { $0 != ";" })

                Self.answerCode(
                    "code-tls", challenge: asked["code_challenge"] ?? "", idToken: provider.idToken(nonce: asked["nonce"] ?? ""), on: idp,
                    exchanges: ExchangeLog(), redirectURI: "https://localhost:\(port)/oauth2/callback")
                let back = try await shell("\(curl) -H 'Cookie: \(loginCookie)' 'https://localhost:\(port)/oauth2/callback?code=code-tls&state=\(asked["state"] ?? "")'")
                let session = back.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("set-cookie: gateway_session=") }
                #expect(back.stdout.hasPrefix("HTTP/1.1 302") || back.stdout.hasPrefix("HTTP/2 302"), "\(back.stdout)")
                #expect(session?.hasSuffix("; Path=/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure") == true, "\(back.stdout)")
            }
        }
    }

    // Every way a callback can be wrong is a 401 with the reason logged, and nothing is set: a state that is not
    // the login cookie's, no login cookie, the provider's own error, a code it refuses, an ID token for another
    // login (nonce) or another client (aud); an unreachable token endpoint is a 503.
    @Test func callbacksThatDoNotProveALoginAreRefused() async throws {
        try await Self.withProvider { gateway, idp, provider, exchanges in
            let start = try await gateway.request("GET", "/", headers: Self.browser)
            let asked = Self.query(try #require(start.header("location")))
            let (state, nonce, challenge) = (asked["state"] ?? "", asked["nonce"] ?? "", asked["code_challenge"] ?? "")
            let loginCookie = try #require(Self.cookie("gateway_session_login_" + state.prefix(12), in: start))

            func callback(_ query: String, cookie: String? = loginCookie) async throws -> TestResponse {
                try await gateway.request("GET", "/oauth2/callback?" + query, headers: cookie.map { [("Cookie", $0)] } ?? [])
            }
            var outcomes: [String] = []
            Self.answerCode("code-1", challenge: challenge, idToken: provider.idToken(nonce: nonce), on: idp, exchanges: exchanges)
            for response in [
                try await callback("code=code-1&state=\(state.prefix(12))AAAAAAAAAA"),
                try await callback("code=code-1&state=\(state)", cookie: nil),
                try await callback("error=access_denied&error_description=user%20cancelled&state=\(state)"),
                try await callback("code=wrong-code&state=\(state)"),
            ] {
                outcomes.append("\(response.status) \(response.errorCode ?? "-") \(response.headers("set-cookie").count)")
            }
            Self.answerCode("code-1", challenge: challenge, idToken: provider.idToken(nonce: "another-login"), on: idp, exchanges: exchanges)
            let replayed = try await callback("code=code-1&state=\(state)")
            outcomes.append("\(replayed.status) \(replayed.errorCode ?? "-") \(replayed.headers("set-cookie").count)")
            Self.answerCode("code-1", challenge: challenge, idToken: provider.idToken(nonce: nonce, audience: "other-app"), on: idp, exchanges: exchanges)
            let otherClient = try await callback("code=code-1&state=\(state)")
            outcomes.append("\(otherClient.status) \(otherClient.errorCode ?? "-") \(otherClient.headers("set-cookie").count)")
            #expect(outcomes == Array(repeating: "401 UNAUTHENTICATED 0", count: 6))
            let reasons = gateway.logs.entries("login failed").map { $0["reason"] as? String ?? "" }
            #expect(
                reasons == [
                    "state does not match the login cookie",
                    "no login in progress (the login cookie is missing or does not open)",
                    "the provider answered error=access_denied: user cancelled",
                    "the token endpoint answered 400 (invalid_grant)",
                    "id_token: claim nonce (or it does not match the login) is missing",
                    "id_token: wrong audience",
                ])
            #expect(exchanges.all.count == 3, "only callbacks that match the login cookie reach the provider")

            // The provider's token endpoint fails, or answers nothing: 503, not a 401 and never a pass.
            idp.behaviour.failStatus.store(500, ordering: .relaxed)
            let failing = try await callback("code=code-1&state=\(state)")
            #expect(failing.status == 503 && failing.errorCode == "AUTH_UNAVAILABLE")
            idp.behaviour.failStatus.store(0, ordering: .relaxed)
            idp.behaviour.dropRequests.store(true, ordering: .relaxed)
            let silent = try await callback("code=code-1&state=\(state)")
            #expect(silent.status == 503 && silent.errorCode == "AUTH_UNAVAILABLE")
            let errors = gateway.logs.entries("login failed: the token endpoint could not be asked").count
            #expect(errors == 2)
        }
    }
}
