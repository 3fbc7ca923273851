import Crypto
import Foundation
import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// `auth.oidc`: people log in at an OpenID Connect provider and then carry a session cookie, so a route can sit
/// behind single sign-on without the application knowing OAuth (what oauth2-proxy does beside NGINX or Traefik).
///
/// The authorization code flow (OIDC Core 1.0 §3.1) with PKCE (RFC 7636, S256):
/// 1. A browser without a session is redirected to `authorization_url` with a fresh `state`, `nonce` and code
///    challenge; those and the page it asked for travel in a sealed login cookie scoped to `redirect_path` (one
///    per login, named after its state).
/// 2. The provider sends it back to `redirect_path` with a `code`; the gateway checks `state` against the login
///    cookie, exchanges the code (with the code verifier and its client credentials) at the token endpoint, and
///    verifies the ID token: signature against the provider's JWKS, `iss`, `aud` = `client_id`, `exp`, `nonce`.
/// 3. It sets the session cookie (the subject, the claims routes ask about, the session's end) and redirects to
///    the page first asked for. Each later request opens the cookie: no server-side state, no call to the provider.
///
/// Both cookies are sealed with AES-256-GCM under keys derived from `cookie_secret` (HKDF-SHA256, one per
/// purpose, so a login cookie can never pass for a session): a client can neither read nor forge nor alter
/// them, and every gateway instance with the same secret accepts them. Changing the secret ends every session.
public final class OIDCLogin: Sendable {
    public let config: OIDCConfig
    private let keys: FetchedKeys
    private let verifier: JWTVerifier
    private let server: AuthorizationServerClient
    let sessionSeal: CookieSeal
    let loginSeal: CookieSeal
    /// Seconds since 1970 (injected for tests).
    private let now: @Sendable () -> Int64
    /// The claims a session keeps: what routes ask about and what goes upstream.
    private let keptClaims: Set<String>

    /// How long a login may take at the provider before its login cookie expires.
    static let loginSeconds: Int64 = 600
    /// Browsers drop cookies over 4096 bytes (name, value and attributes) without a word.
    static let maxCookieBytes = 4000

    public init(
        config: OIDCConfig, keys: FetchedKeys, upstreamIndex: Int, forwarders: LoopLocal<any UpstreamForwarder>,
        requestIDHeader: String = "x-request-id", claimNames: Set<String> = [],
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.config = config
        self.keys = keys
        self.now = now
        let kept = claimNames.union(config.forwardClaims.map(\.claim))
        self.keptClaims = kept
        // The nonce (and, with email_domains, the email) are kept only to be checked, then dropped from the session.
        let checked: Set<String> = config.emailDomains.isEmpty ? ["nonce"] : ["nonce", "email", "email_verified"]
        self.verifier = JWTVerifier(issuer: config.issuer, audiences: [config.clientID], leewaySeconds: 60, keptClaims: kept.union(checked))
        self.server = AuthorizationServerClient(
            upstreamIndex: upstreamIndex, forwarders: forwarders, clientID: config.clientID, clientSecret: config.clientSecret,
            requestIDHeader: requestIDHeader)
        self.sessionSeal = CookieSeal(secret: config.cookieSecret, purpose: "session")
        self.loginSeal = CookieSeal(secret: config.cookieSecret, purpose: "login")
    }

    /// One login cookie per login, named after its state: tabs that start logins at the same time (a session that
    /// ended while several were open) do not overwrite each other's. Each lives 10 minutes, or until its callback.
    func loginCookieName(state: some StringProtocol) -> String { config.cookieName + "_login_" + state.prefix(12) }

    // MARK: Sessions

    /// What a session cookie admits: who, and with `idle_seconds`, the renewed session's `Set-Cookie` once half of its
    /// idle window has passed (so an active browser gets a new cookie at most that often, and an idle one none).
    public struct SessionAdmission {
        public var identity: Identity
        public var renewedCookie: String?
    }

    /// The identity a session cookie holds, or why it holds none (for the log). `secure`: whether a renewed cookie is
    /// `Secure` (the browser came over HTTPS).
    public func identity(fromSession value: String, secure: Bool = false) -> Result<SessionAdmission, SessionRefusal> {
        guard let plaintext = sessionSeal.open(value) else { return .failure(.unreadable) }
        guard let session = Session(json: plaintext) else { return .failure(.unreadable) }
        let now = now()
        guard now < session.expires else { return .failure(.expired) }
        var renewedCookie: String?
        if let idle = config.idleSeconds.map(Int64.init) {
            if let idleUntil = session.idleUntil, now >= idleUntil { return .failure(.idle) }
            // A session sealed before idle_seconds was set has no idle end yet: it gets one now.
            let idleUntil = session.idleUntil ?? now
            if idleUntil - now < idle / 2 && idleUntil < session.expires {
                var renewed = session
                renewed.idleUntil = min(now + idle, session.expires)
                renewedCookie = cookie(config.cookieName, sessionSeal.seal(renewed.json), path: "/", maxAge: session.expires - now, secure: secure)
            }
        }
        var identity = Identity(method: .oidc, subject: session.subject, scopes: [], claims: session.claims)
        for forward in config.forwardClaims {
            guard let values = session.claims[forward.claim] else { continue }
            identity.forwardedClaims.append((forward.header, values.joined(separator: " ")))
        }
        return .success(SessionAdmission(identity: identity, renewedCookie: renewedCookie))
    }

    public enum SessionRefusal: Error, CustomStringConvertible {
        case unreadable, expired, idle
        public var description: String {
            switch self {
            case .unreadable: return "the session cookie does not open (altered, or sealed with another cookie_secret)"
            case .expired: return "the session has expired"
            case .idle: return "the session was idle longer than idle_seconds"
            }
        }
    }

    // MARK: Login

    /// Whether a request without a session should be sent to log in: a browser loading a page (`Sec-Fetch-Mode:
    /// navigate`, or, from browsers that do not send it, a GET that accepts HTML). Scripts and API clients get a 401
    /// they can act on instead of a redirect to a login page they cannot follow.
    public static func isNavigation(method: HTTPMethod, headers: HeaderList) -> Bool {
        guard method == .GET || method == .HEAD else { return false }
        if let mode = headers.first(name: "sec-fetch-mode") { return mode == "navigate" }
        return headers["accept"].contains { $0.contains("text/html") }
    }

    /// The redirect that starts a login, coming back to `returnTo` (the request's target) once it succeeds.
    public func loginRedirect(returnTo: String, site: Site) -> GatewayResponse {
        let state = Base64URL.random(bytes: 16)
        let nonce = Base64URL.random(bytes: 16)
        let verifier = Base64URL.random(bytes: 32)
        let challenge = Base64URL.encode(SHA256.hash(data: Array(verifier.utf8)))
        let login = Login(state: state, nonce: nonce, verifier: verifier, returnTo: Self.safeReturn(returnTo), expires: now() + Self.loginSeconds)
        let query: [(String, String)] = [
            ("response_type", "code"), ("client_id", config.clientID), ("redirect_uri", site.origin + config.redirectPath),
            ("scope", config.scopes.joined(separator: " ")), ("state", state), ("nonce", nonce), ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]
        let separator = config.authorizationURL.contains("?") ? "&" : "?"
        let location = config.authorizationURL + separator + query.map { QueryString.encoded($0.0) + "=" + QueryString.encoded($0.1) }.joined(separator: "&")
        return Self.redirect(
            to: location,
            cookies: [cookie(loginCookieName(state: state), loginSeal.seal(login.json), path: config.redirectPath, maxAge: Self.loginSeconds, secure: site.isSecure)])
    }

    /// The provider sent the browser back (`redirect_path`): the code exchanged, the ID token verified, the
    /// session set. Completes with the response (a redirect, or a JSON error); never fails.
    public func finishLogin(
        target: String, headers: HeaderList, site: Site, requestID: String, clientIP: String, on eventLoop: EventLoop
    ) -> EventLoopFuture<LoginOutcome> {
        let refused: @Sendable (String) -> EventLoopFuture<LoginOutcome> = { eventLoop.makeSucceededFuture(.refused($0)) }
        if let error = QueryString.value(of: "error", in: target) {
            let description = QueryString.value(of: "error_description", in: target).map { ": " + $0 } ?? ""
            return refused("the provider answered error=\(error)\(description)")
        }
        guard let code = QueryString.value(of: "code", in: target), let state = QueryString.value(of: "state", in: target) else {
            return refused("the callback has no code or state")
        }
        guard let sealed = HeaderRules.cookie(named: loginCookieName(state: state), in: headers), let opened = loginSeal.open(sealed), let login = Login(json: opened)
        else { return refused("no login in progress (the login cookie is missing or does not open)") }
        guard now() < login.expires else { return refused("the login took longer than \(Self.loginSeconds) s") }
        // `state` ties the callback to the browser that started the login (RFC 6749 §10.12).
        guard ConstantTime.equals(Array(state.utf8), Array(login.state.utf8)) else { return refused("state does not match the login cookie") }
        let form = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", site.origin + config.redirectPath),
            ("code_verifier", login.verifier),
        ]
        let answer = server.post(
            config.tokenPath, form: form, timeout: .milliseconds(Int64(config.timeoutMs)), requestID: requestID, clientIP: clientIP, on: eventLoop)
        return answer.flatMap { answer -> EventLoopFuture<LoginOutcome> in
            guard answer.status == 200 else {
                let error = Self.jsonField("error", in: answer.body).map { " (\($0))" } ?? ""
                // A refused code is the login's fault; a provider that fails is not (503, and the user may retry).
                guard answer.status < 500 else { return eventLoop.makeSucceededFuture(.unavailable("the token endpoint answered \(answer.status)\(error)")) }
                return refused("the token endpoint answered \(answer.status)\(error)")
            }
            guard let idToken = Self.jsonField("id_token", in: answer.body) else { return refused("the token endpoint's answer has no id_token") }
            switch self.verifyIDToken(idToken, nonce: login.nonce) {
            case .success(let identity):
                return eventLoop.makeSucceededFuture(self.loggedIn(identity, login: login, site: site))
            case .failure(.unknownKey):
                // A key the provider has just rotated in: fetch its key set once and try again.
                guard let refetch = self.keys.refetch() else { return refused("id_token: no key for its kid") }
                return refetch.hop(to: eventLoop).map { _ in
                    switch self.verifyIDToken(idToken, nonce: login.nonce) {
                    case .success(let identity): return self.loggedIn(identity, login: login, site: site)
                    case .failure(let rejection): return .refused("id_token after JWKS refetch: \(rejection)")
                    }
                }.recover { _ in .refused("id_token: no key for its kid") }
            case .failure(let rejection):
                return refused("id_token: \(rejection)")
            }
        }.recover { error in .unavailable("\(error)") }
    }

    public enum LoginOutcome: Sendable {
        /// The session cookie set, the browser sent on to the page it first asked for.
        case loggedIn(GatewayResponse, subject: String)
        /// The login failed (401 for the client, the reason for the log).
        case refused(String)
        /// The token endpoint could not be asked (503).
        case unavailable(String)
    }

    func verifyIDToken(_ token: String, nonce: String) -> Result<Identity, JWTRejection> {
        verifier.verify(token, keys: keys.keys, now: now()).flatMap { identity in
            // The nonce ties the ID token to this login (OIDC Core §3.1.3.7): a token from another login is refused.
            guard let sent = identity.claims["nonce"], sent.count == 1, ConstantTime.equals(Array(sent[0].utf8), Array(nonce.utf8)) else {
                return .failure(.missingClaim("nonce (or it does not match the login)"))
            }
            if let refusal = Self.emailRefusal(identity.claims, domains: config.emailDomains) { return .failure(refusal) }
            var identity = identity
            identity.method = .oidc
            identity.claims = identity.claims.filter { keptClaims.contains($0.key) }
            return .success(identity)
        }
    }

    /// `email_domains`: why the ID token's email does not admit the person (nil when it does, or no domains are set).
    /// A provider may let people type an address they do not own: one marked `email_verified: false` never counts.
    static func emailRefusal(_ claims: [String: [String]], domains: [String]) -> JWTRejection? {
        guard !domains.isEmpty else { return nil }
        guard let email = claims["email"]?.first, let at = email.lastIndex(of: "@") else { return .missingClaim("email") }
        if claims["email_verified"]?.first == "false" { return .refusedClaim("the email address is not verified") }
        let domain = email[email.index(after: at)...].lowercased()
        guard domains.contains(domain) else { return .refusedClaim("email domain \(domain) is not in email_domains") }
        return nil
    }

    private func loggedIn(_ identity: Identity, login: Login, site: Site) -> LoginOutcome {
        let now = now()
        var session = Session(subject: identity.subject, claims: identity.claims, expires: now + Int64(config.sessionSeconds))
        session.idleUntil = config.idleSeconds.map { now + Int64($0) }
        let value = sessionSeal.seal(session.json)
        let sessionCookie = cookie(config.cookieName, value, path: "/", maxAge: Int64(config.sessionSeconds), secure: site.isSecure)
        guard sessionCookie.utf8.count <= Self.maxCookieBytes else {
            return .refused("the session would need a \(sessionCookie.utf8.count)-byte cookie (browsers keep at most 4096): keep fewer claims")
        }
        let clearLogin = cookie(loginCookieName(state: login.state), "", path: config.redirectPath, maxAge: 0, secure: site.isSecure)
        return .loggedIn(Self.redirect(to: login.returnTo, cookies: [sessionCookie, clearLogin]), subject: identity.subject)
    }

    // MARK: Logout

    /// Ends the session: the cookie cleared, the browser sent to `logout_redirect`.
    public func logout(site: Site) -> GatewayResponse {
        Self.redirect(to: config.logoutRedirect, cookies: [cookie(config.cookieName, "", path: "/", maxAge: 0, secure: site.isSecure)])
    }

    // MARK: Pieces

    /// Where the browser reached the gateway: what the redirect URI is built from and whether cookies are `Secure`.
    public struct Site: Sendable {
        /// `https://host[:port]`, as the browser addressed it.
        public var origin: String
        public var isSecure: Bool

        /// nil when the request names no usable host (the redirect URI needs one). `X-Forwarded-Proto` counts only
        /// from a trusted proxy (one that terminated TLS in front of the gateway).
        public init?(headers: HeaderList, isTLS: Bool, peerIsTrustedProxy: Bool) {
            guard let host = headers.first(name: "host"), !host.isEmpty, HeaderRules.isValidHost(host) else { return nil }
            self.isSecure = Self.isSecure(headers: headers, isTLS: isTLS, peerIsTrustedProxy: peerIsTrustedProxy)
            self.origin = (isSecure ? "https://" : "http://") + host
        }

        /// Whether the browser came over HTTPS: to the gateway, or to a trusted proxy that says so.
        public static func isSecure(headers: HeaderList, isTLS: Bool, peerIsTrustedProxy: Bool) -> Bool {
            isTLS || (peerIsTrustedProxy && headers.first(name: "x-forwarded-proto")?.lowercased() == "https")
        }

        public init(origin: String, isSecure: Bool) { (self.origin, self.isSecure) = (origin, isSecure) }
    }

    /// `Set-Cookie` (RFC 6265): HttpOnly (scripts never see it), SameSite=Lax (sent on the provider's top-level
    /// redirect back, not on cross-site subrequests), Secure when the browser came over HTTPS.
    private func cookie(_ name: String, _ value: String, path: String, maxAge: Int64, secure: Bool) -> String {
        "\(name)=\(value); Path=\(path); Max-Age=\(maxAge); HttpOnly; SameSite=Lax" + (secure ? "; Secure" : "")
    }

    static func redirect(to location: String, cookies: [String]) -> GatewayResponse {
        var headers = HeaderList()
        headers.add(name: "location", value: location)
        for cookie in cookies { headers.add(name: "set-cookie", value: cookie) }
        headers.add(name: "cache-control", value: "no-store")
        headers.add(name: "content-length", value: "0")
        return GatewayResponse(status: 302, headers: headers)
    }

    /// Only a path on this site: anything else (`//evil.example`, `https://...`, `/\evil`) would make the login an
    /// open redirect.
    static func safeReturn(_ target: String) -> String {
        guard target.hasPrefix("/"), !target.hasPrefix("//"), !target.hasPrefix("/\\"),
            !target.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F })
        else { return "/" }
        return target
    }

    static func jsonField(_ name: String, in body: ByteBuffer) -> String? {
        guard case .object(let fields)? = try? JSONParser.parse(Array(body.readableBytesView)) else { return nil }
        for (key, value) in fields where key == name {
            if case .string(let text) = value { return text }
        }
        return nil
    }

    /// What a session cookie holds.
    struct Session: Equatable {
        var subject: String
        var claims: [String: [String]]
        /// Seconds since 1970.
        var expires: Int64
        /// With `idle_seconds`: when the session ends unless a request renews it (seconds since 1970).
        var idleUntil: Int64?

        var json: [UInt8] {
            var text = #"{"sub":"#
            JSONText.appendQuoted(subject, to: &text)
            text += #","exp":\#(expires),"#
            if let idleUntil { text += #""idle":\#(idleUntil),"# }
            text += #""claims":{"#
            for (index, (name, values)) in claims.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { text += "," }
                JSONText.appendQuoted(name, to: &text)
                text += ":[" + values.map(JSONText.quoted).joined(separator: ",") + "]"
            }
            return Array((text + "}}").utf8)
        }

        init(subject: String, claims: [String: [String]], expires: Int64) {
            (self.subject, self.claims, self.expires) = (subject, claims, expires)
        }

        init?(json: [UInt8]) {
            guard case .object(let fields)? = try? JSONParser.parse(json) else { return nil }
            var subject: String?
            var expires: Int64?
            var idleUntil: Int64?
            var claims: [String: [String]] = [:]
            for (key, value) in fields {
                switch (key, value) {
                case ("sub", .string(let text)): subject = text
                case ("exp", .integer(let seconds)): expires = Int64(seconds)
                case ("idle", .integer(let seconds)): idleUntil = Int64(seconds)
                case ("claims", .object(let entries)):
                    for (name, values) in entries {
                        guard case .array(let items) = values else { return nil }
                        claims[name] = items.compactMap { if case .string(let text) = $0 { text } else { nil } }
                    }
                default: break
                }
            }
            guard let subject, let expires else { return nil }
            (self.subject, self.claims, self.expires, self.idleUntil) = (subject, claims, expires, idleUntil)
        }
    }

    /// What a login cookie holds while the browser is at the provider.
    struct Login: Equatable {
        var state: String
        var nonce: String
        var verifier: String
        var returnTo: String
        var expires: Int64

        var json: [UInt8] {
            var text = "{"
            for (name, value) in [("state", state), ("nonce", nonce), ("verifier", verifier), ("return_to", returnTo)] {
                JSONText.appendQuoted(name, to: &text)
                text += ":"
                JSONText.appendQuoted(value, to: &text)
                text += ","
            }
            return Array((text + #""exp":\#(expires)}"#).utf8)
        }

        init(state: String, nonce: String, verifier: String, returnTo: String, expires: Int64) {
            (self.state, self.nonce, self.verifier, self.returnTo, self.expires) = (state, nonce, verifier, returnTo, expires)
        }

        init?(json: [UInt8]) {
            guard case .object(let fields)? = try? JSONParser.parse(json) else { return nil }
            var texts: [String: String] = [:]
            var expires: Int64?
            for (key, value) in fields {
                if case .string(let text) = value { texts[key] = text }
                if key == "exp", case .integer(let seconds) = value { expires = Int64(seconds) }
            }
            guard let state = texts["state"], let nonce = texts["nonce"], let verifier = texts["verifier"], let returnTo = texts["return_to"],
                let expires
            else { return nil }
            (self.state, self.nonce, self.verifier, self.returnTo, self.expires) = (state, nonce, verifier, returnTo, expires)
        }
    }
}

/// Cookie values only the gateway can read and make: AES-256-GCM (a random 96-bit nonce per seal, the 128-bit
/// tag authenticating), base64url, under a key derived from the secret for one purpose.
struct CookieSeal: Sendable {
    private let key: SymmetricKey

    init(secret: String, purpose: String) {
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Array(secret.utf8)), salt: Array("gateway-oidc-cookie".utf8), info: Array(purpose.utf8),
            outputByteCount: 32)
    }

    func seal(_ plaintext: [UInt8]) -> String {
        // Sealing with a fresh random nonce cannot fail for a 256-bit key.
        let box = try! AES.GCM.seal(plaintext, using: key)
        return Base64URL.encode(box.combined!)
    }

    func open(_ text: String) -> [UInt8]? {
        guard let bytes = Base64URL.decode(Substring(text).utf8), let box = try? AES.GCM.SealedBox(combined: bytes) else { return nil }
        return (try? AES.GCM.open(box, using: key)).map { Array($0) }
    }
}

/// A JWKS URL's keys, fetched at start and kept fresh in the background (`auth.oidc.jwks_url`).
public final class FetchedKeys: Sendable {
    private let current: NIOLockedValueBox<JWTKeySet>
    /// nil for a fixed key set.
    private let source: JWKSSource?

    init(url: String, refreshSeconds: Int, minRefetchSeconds: Int, eventLoop: EventLoop, logger: Logger) {
        let current = NIOLockedValueBox(JWTKeySet([]))
        let source = JWKSSource(
            url: url, configPath: "auth.oidc.jwks_url", refresh: .seconds(Int64(refreshSeconds)), minimumRefetch: .seconds(Int64(minRefetchSeconds)),
            eventLoop: eventLoop, logger: logger)
        source.onUpdate = { keys in current.withLockedValue { $0 = keys } }
        (self.current, self.source) = (current, source)
    }

    /// A fixed key set, never fetched (tests).
    public init(fixed keys: JWTKeySet) {
        (current, source) = (NIOLockedValueBox(keys), nil)
    }

    func start() async { await source?.start() }
    func stop() { source?.stop() }
    var keys: JWTKeySet { current.withLockedValue { $0 } }
    /// A refetch for an unknown `kid` (nil when the last one was too recent, or the set is fixed).
    func refetch() -> EventLoopFuture<Void>? { source?.refetch() }
}
