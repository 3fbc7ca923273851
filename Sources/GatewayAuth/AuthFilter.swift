import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Logging
import NIOCore

/// A route's authentication: any one of the accepted methods must present a valid credential (JWT as
/// `Authorization: Bearer`, the configured cookie or query parameter; API key as `X-API-Key` or
/// `Authorization: ApiKey`; client certificate; Basic user and password), and that credential must hold
/// every required scope.
///
/// - No valid credential: 401 `UNAUTHENTICATED` with `WWW-Authenticate`, the same message whatever went
///   wrong (unknown key, bad signature, expired...); the reason goes to the log, never the credential.
/// - Valid but lacking a scope: 403 `FORBIDDEN`.
/// - Valid: the consumer is the JWT `sub`, the API key's or certificate's id, or the Basic user (rate limits
///   and the access log use it), and `X-Auth-Subject`, `X-Auth-Scopes`, `X-Auth-Method` (and forwarded
///   claims) go upstream. API keys and passwords themselves never leave the gateway. Client-sent `X-Auth-*` headers are removed before any filter runs.
public struct AuthFilter: GatewayFilter {
    private let routeName: String
    private let methods: [RouteAuthConfig.Method]
    private let scopes: [String]
    /// `auth.claims`: each named claim must hold one of its values.
    private let claims: [(name: String, values: [String])]
    private let authenticator: Authenticator
    private let logger: Logger
    private let challenges: [String]
    private let metrics: GatewayMetrics
    /// `auth.introspection`, for routes that accept opaque tokens.
    private let introspector: TokenIntrospector?
    /// `auth.oidc`, for routes that accept login sessions (nil on the others).
    private let oidc: OIDCLogin?

    public init(
        routeName: String, config: RouteAuthConfig, authenticator: Authenticator, introspector: TokenIntrospector? = nil, oidc: OIDCLogin? = nil,
        logger: Logger, metrics: GatewayMetrics = .disabled
    ) {
        self.introspector = introspector
        self.oidc = config.require.contains(.oidc) ? oidc : nil
        self.metrics = metrics
        self.routeName = routeName
        self.methods = config.require
        self.scopes = config.scopes
        self.claims = config.claims
        self.authenticator = authenticator
        self.logger = logger
        // A 401 names a scheme the client can answer with; a certificate has none in HTTP, so an mTLS-only route
        // names its own (the client must reconnect with a certificate). Basic gets a challenge of its own next to
        // the others, so a browser (which knows no Bearer) still prompts for a password.
        var challenges: [String] = []
        if config.require.contains(.jwt) || config.require.contains(.introspection) {
            challenges.append(#"Bearer realm="gateway""#)
        } else if config.require.contains(.apiKey) {
            challenges.append(#"ApiKey realm="gateway""#)
        } else if config.require.contains(.mtls) {
            challenges.append(#"ClientCertificate realm="gateway""#)
        }
        if config.require.contains(.basic) {
            challenges.append(#"Basic realm=""# + (authenticator.basicUsers?.realm ?? "gateway") + #"", charset="UTF-8""#)
        }
        self.challenges = challenges
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        if let oidc, let step = loginStep(oidc, head: head, context: context) { return step }
        var presented = false
        var presentedOther = false
        var unknownKID: String?
        var reasons: [String] = []
        var code = "missing_credentials"
        var unverifiedBasic: BasicUsers.Credentials?
        var unintrospectedToken: String?
        for method in methods {
            switch method {
            case .jwt:
                guard
                    let token = Self.bearerToken(head.headers) ?? authenticator.cookie.flatMap({ HeaderRules.cookie(named: $0, in: head.headers) })
                        ?? authenticator.queryParam.flatMap({ QueryString.value(of: $0, in: head.target) })
                else { continue }
                presented = true
                presentedOther = true
                switch authenticator.verifyJWT(token) {
                case .success(let identity):
                    return accept(identity, head: &head, context: &context)
                case .failure(.unknownKey(let kid)):
                    unknownKID = token
                    code = "unknown_key"
                    reasons.append("jwt: no key for kid \(kid ?? "(none)")")
                case .failure(let rejection):
                    code = rejection.code
                    reasons.append("jwt: \(rejection)")
                }
            case .apiKey:
                guard let key = apiKey(head) else { continue }
                presented = true
                presentedOther = true
                switch authenticator.apiKeys.identify(key) {
                case .valid(let identity):
                    return accept(identity, head: &head, context: &context)
                case .expired(let consumer):
                    code = "expired_api_key"
                    reasons.append("api_key: the key of \(consumer) has expired")
                case .unknown:
                    code = "unknown_api_key"
                    reasons.append("api_key: unknown key")
                }
            case .mtls:
                // The listener verified the certificate against its client_ca; this names who holds it.
                guard let certificate = context.connection.clientCertificate else { continue }
                let subject = certificate.subject
                presented = true
                presentedOther = true
                if let identity = authenticator.mtlsClients.identify(subject: subject, uris: certificate.uris) {
                    return accept(identity, head: &head, context: &context)
                }
                code = "unknown_client_certificate"
                reasons.append("mtls: no consumer for \(subject)")
            case .basic:
                guard let users = authenticator.basicUsers, let encoded = Self.authorization(head.headers, scheme: "basic") else { continue }
                presented = true
                presentedOther = true
                if let wait = users.failures?.blockedFor(context.clientIP) {
                    // Too many wrong passwords from this address: no check at all, not even against remembered ones.
                    return .respond(tooManyFailures(retryAfterMicros: wait, context: context))
                }
                guard let credentials = BasicUsers.credentials(encoded) else {
                    code = "malformed_basic_credentials"
                    reasons.append("basic: not base64 of user:password")
                    continue
                }
                if let identity = users.remembered(credentials) { return accept(identity, head: &head, context: &context) }
                unverifiedBasic = credentials  // checked below, off the event loop, if nothing else admits the request
            case .introspection:
                guard let introspector, let token = Self.bearerToken(head.headers) else { continue }
                presented = true
                presentedOther = true
                switch introspector.remembered(token) {
                case .active(let identity)?:
                    return accept(identity, head: &head, context: &context)
                case .inactive(let reason)?:
                    code = "inactive_token"
                    reasons.append("introspection: \(reason) (remembered)")
                case nil:
                    unintrospectedToken = token  // asked below, if nothing else admits the request
                }
            case .oidc:
                guard let oidc, let session = HeaderRules.cookie(named: oidc.config.cookieName, in: head.headers), !session.isEmpty else { continue }
                presented = true
                let secure = OIDCLogin.Site.isSecure(
                    headers: head.headers, isTLS: context.connection.isTLS, peerIsTrustedProxy: context.connection.peerIsTrustedProxy)
                switch oidc.identity(fromSession: session, secure: secure) {
                case .success(let admission):
                    if let cookie = admission.renewedCookie { context.responseHeaders.append((name: "set-cookie", value: cookie)) }
                    return accept(admission.identity, head: &head, context: &context)
                case .failure(let refusal):
                    code = refusal == .unreadable ? "invalid_session" : "expired_session"
                    reasons.append("oidc: \(refusal)")
                }
            }
        }
        if let credentials = unverifiedBasic, let users = authenticator.basicUsers {
            return checkPassword(credentials, users: users, context: context, reasons: reasons)
        }
        if let token = unintrospectedToken, let introspector {
            return introspect(token, with: introspector, context: context, reasons: reasons)
        }
        // A token naming a kid we have not seen may be signed with a rotated key: fetch the JWKS once and retry.
        if let token = unknownKID, let refetch = authenticator.refetchKeys() {
            let requestID = context.requestID
            let fallback = reasons
            let this = self
            return .suspend(
                refetch.hop(to: context.eventLoop).map { _ in
                    this.resume(token: token, requestID: requestID, reasons: fallback)
                }.recover { _ in
                    FilterResumption(decision: .respond(this.unauthenticated(presented: true, requestID: requestID, reasons: fallback, code: "unknown_key")))
                }, on: context.eventLoop)
        }
        // A browser loading a page without a (valid) session goes to log in, unless it tried another credential.
        if let oidc, !presentedOther, OIDCLogin.isNavigation(method: head.method, headers: head.headers),
            let site = OIDCLogin.Site(headers: head.headers, isTLS: context.connection.isTLS, peerIsTrustedProxy: context.connection.peerIsTrustedProxy)
        {
            if presented { logger.info("session refused; logging in again", metadata: ["request_id": "\(context.requestID)", "route": "\(routeName)", "reason": "\(reasons.joined(separator: "; "))"]) }
            return .respond(oidc.loginRedirect(returnTo: context.uri, site: site))
        }
        return .respond(unauthenticated(presented: presented, requestID: context.requestID, reasons: reasons, code: code))
    }

    /// The login's own paths on a route that accepts sessions: the provider's redirect back, and logout.
    private func loginStep(_ oidc: OIDCLogin, head: RequestHead, context: RequestContext) -> FilterStep? {
        guard let loginPath = oidc.config.loginPath(head.path) else { return nil }
        let requestID = context.requestID
        guard let site = OIDCLogin.Site(headers: head.headers, isTLS: context.connection.isTLS, peerIsTrustedProxy: context.connection.peerIsTrustedProxy)
        else { return .respond(.error(.badRequest("The request names no host."), requestID: requestID)) }
        if loginPath == .logout {
            logger.info("logged out", metadata: ["request_id": "\(requestID)", "route": "\(routeName)"])
            return .respond(oidc.logout(site: site))
        }
        let outcome = oidc.finishLogin(
            target: head.target, headers: head.headers, site: site, requestID: requestID, clientIP: context.clientIP, on: context.eventLoop)
        let this = self
        return .suspend(
            outcome.map { outcome in
                switch outcome {
                case .loggedIn(let response, let subject):
                    this.logger.info("logged in", metadata: ["request_id": "\(requestID)", "route": "\(this.routeName)", "consumer": "\(subject)"])
                    return FilterResumption(decision: .respond(response))
                case .refused(let reason):
                    this.metrics.authFailure(route: this.routeName, reason: "login_failed")
                    this.logger.info("login failed", metadata: ["request_id": "\(requestID)", "route": "\(this.routeName)", "reason": "\(reason)"])
                    return FilterResumption(decision: .respond(.error(.unauthenticated(challenges: []), requestID: requestID)))
                case .unavailable(let reason):
                    this.metrics.authFailure(route: this.routeName, reason: "login_unavailable")
                    this.logger.warning(
                        "login failed: the token endpoint could not be asked", metadata: ["request_id": "\(requestID)", "route": "\(this.routeName)", "error": "\(reason)"])
                    return FilterResumption(decision: .respond(.error(.authUnavailable, requestID: requestID)))
                }
            }, on: context.eventLoop)
    }

    /// The slow part of Basic: the password hash runs on the thread pool while the request waits.
    private func checkPassword(_ credentials: BasicUsers.Credentials, users: BasicUsers, context: RequestContext, reasons: [String]) -> FilterStep {
        let requestID = context.requestID
        guard let check = users.check(credentials, from: context.clientIP, on: context.eventLoop) else {
            metrics.authFailure(route: routeName, reason: "basic_checks_busy")
            logger.warning(
                "password checks busy; refusing the request", metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "user": "\(credentials.username)"])
            return .respond(.error(.authUnavailable, requestID: requestID))
        }
        let this = self
        return .suspend(
            check.map { identity in
                guard let identity else {
                    return FilterResumption(
                        decision: .respond(
                            this.unauthenticated(
                                presented: true, requestID: requestID, reasons: reasons + ["basic: password check failed for user \"\(credentials.username)\" (wrong password or no such user)"],
                                code: "invalid_password")))
                }
                return this.resumption(admitting: identity, requestID: requestID)
            }.recover { _ in FilterResumption(decision: .respond(.error(.authUnavailable, requestID: requestID))) },
            on: context.eventLoop)
    }

    /// An opaque token the introspection endpoint has not been asked about lately: the request waits for it.
    private func introspect(_ token: String, with introspector: TokenIntrospector, context: RequestContext, reasons: [String]) -> FilterStep {
        let requestID = context.requestID
        let this = self
        let answer = introspector.introspect(token, requestID: requestID, clientIP: context.clientIP, on: context.eventLoop)
        return .suspend(
            answer.map { answer in
                switch answer {
                case .active(let identity):
                    return this.resumption(admitting: identity, requestID: requestID)
                case .inactive(let reason):
                    return FilterResumption(
                        decision: .respond(
                            this.unauthenticated(presented: true, requestID: requestID, reasons: reasons + ["introspection: \(reason)"], code: "inactive_token")))
                }
            }.recover { error in
                this.metrics.authFailure(route: this.routeName, reason: "introspection_unavailable")
                this.logger.warning(
                    "token introspection failed", metadata: ["request_id": "\(requestID)", "route": "\(this.routeName)", "error": "\(error)"])
                return FilterResumption(decision: .respond(.error(.authUnavailable, requestID: requestID)))
            },
            on: context.eventLoop)
    }

    private func tooManyFailures(retryAfterMicros: Int64, context: RequestContext) -> GatewayResponse {
        metrics.authFailure(route: routeName, reason: "too_many_failures")
        logger.info(
            "authentication refused: too many failed password checks from this address",
            metadata: ["request_id": "\(context.requestID)", "route": "\(routeName)", "client_ip": "\(context.clientIP)"])
        let seconds = Int((retryAfterMicros + 999_999) / 1_000_000)
        return .error(.rateLimited(retryAfterSeconds: seconds), requestID: context.requestID)
    }

    private func resume(token: String, requestID: String, reasons: [String]) -> FilterResumption {
        switch authenticator.verifyJWT(token) {
        case .success(let identity):
            return resumption(admitting: identity, requestID: requestID)
        case .failure(let rejection):
            return FilterResumption(
                decision: .respond(
                    unauthenticated(presented: true, requestID: requestID, reasons: reasons + ["jwt after JWKS refetch: \(rejection)"], code: rejection.code)))
        }
    }

    private func resumption(admitting identity: Identity, requestID: String) -> FilterResumption {
        if let missing = missingScopes(identity) {
            return FilterResumption(decision: .respond(forbidden(identity, missing: missing, requestID: requestID)))
        }
        let this = self
        return FilterResumption(decision: .proceed) { head, context in this.admit(identity, head: &head, context: &context) }
    }

    private func accept(_ identity: Identity, head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        if let missing = missingScopes(identity) { return .respond(forbidden(identity, missing: missing, requestID: context.requestID)) }
        admit(identity, head: &head, context: &context)
        return .proceed
    }

    /// What the identity lacks: required scopes, or (as `claim:NAME`) a claim without an accepted value.
    private func missingScopes(_ identity: Identity) -> [String]? {
        var missing = scopes.filter { !identity.scopes.contains($0) }
        for claim in claims where !RouteAuthConfig.claimHolds(claim, in: identity.claims) {
            missing.append("claim:" + claim.name)
        }
        return missing.isEmpty ? nil : missing
    }

    private func admit(_ identity: Identity, head: inout RequestHead, context: inout RequestContext) {
        context.consumer = identity.subject
        if !identity.claims.isEmpty { context.claims = identity.claims }
        // A token in the URL stops here: upstream access logs and Referer headers never see it.
        if let name = authenticator.queryParam, head.target.contains("?") { head.target = QueryString.removing(name, from: head.target) }
        // Passwords and API keys never leave the gateway.
        if identity.method == .apiKey {
            head.headers.remove(name: authenticator.apiKeyHeader)
            if Self.authorization(head.headers, scheme: "apikey") != nil { head.headers.remove(name: "authorization") }
            if let name = authenticator.apiKeyQueryParam, head.target.contains("?") { head.target = QueryString.removing(name, from: head.target) }
        } else if identity.method == .basic {
            head.headers.remove(name: "authorization")
        } else if identity.method == .oidc, let oidc {
            // The session cookie is the gateway's: an upstream (or its logs) holding it could act as the user.
            HeaderRules.removeCookie(named: oidc.config.cookieName, from: &head.headers)
        }
        if let signer = authenticator.upstreamTokens, let value = signer.fieldValue(for: identity, now: Authenticator.now()) {
            head.headers.replaceOrAdd(name: signer.header, value: value)
        }
        head.headers.add(name: "x-auth-subject", value: identity.subject)
        head.headers.add(name: "x-auth-scopes", value: identity.scopes.joined(separator: " "))
        head.headers.add(name: "x-auth-method", value: identity.method.rawValue)
        for (name, value) in identity.forwardedClaims { head.headers.add(name: name, value: value) }
    }

    private func unauthenticated(presented: Bool, requestID: String, reasons: [String], code: String) -> GatewayResponse {
        metrics.authFailure(route: routeName, reason: code)
        logger.info(
            "authentication failed",
            metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "reason": "\(presented ? reasons.joined(separator: "; ") : "no credentials")"])
        // RFC 6750 §3.1: invalid_token when a token was presented and refused; no error code when none was sent.
        var challenges = self.challenges
        if presented, let first = challenges.first, first.hasPrefix("Bearer") { challenges[0] = first + #", error="invalid_token""# }
        return .error(.unauthenticated(challenges: challenges), requestID: requestID)
    }

    private func forbidden(_ identity: Identity, missing: [String], requestID: String) -> GatewayResponse {
        metrics.authFailure(route: routeName, reason: "insufficient_scope")
        logger.info(
            "authorization failed",
            metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "consumer": "\(identity.subject)", "missing": "\(missing.joined(separator: " "))"])
        var challenges = self.challenges
        if let first = challenges.first { challenges[0] = first + #", error="insufficient_scope", scope=""# + scopes.joined(separator: " ") + "\"" }
        return .error(.forbidden(challenges: challenges), requestID: requestID)
    }

    // MARK: Credentials

    static func bearerToken(_ headers: HeaderList) -> String? { authorization(headers, scheme: "bearer") }

    /// The key in the configured field, `Authorization: ApiKey`, or the configured query parameter, in that order.
    func apiKey(_ head: RequestHead) -> String? {
        if let key = head.headers.first(name: authenticator.apiKeyHeader), !key.isEmpty { return key }
        if let key = Self.authorization(head.headers, scheme: "apikey") { return key }
        guard let name = authenticator.apiKeyQueryParam, let key = QueryString.value(of: name, in: head.target), !key.isEmpty else { return nil }
        return key
    }

    /// The credentials of an `Authorization: <scheme> <credentials>` header (scheme case-insensitive).
    static func authorization(_ headers: HeaderList, scheme: String) -> String? {
        guard let value = headers.first(name: "authorization") else { return nil }
        guard let space = value.firstIndex(of: " "), value[..<space].lowercased() == scheme else { return nil }
        let credentials = value[value.index(after: space)...].trimmingASCIISpaces()
        return credentials.isEmpty ? nil : credentials
    }
}
