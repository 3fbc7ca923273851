import Crypto
import Foundation
import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore

/// `auth.introspection`: opaque access tokens (not JWTs: random strings only the authorization server can read)
/// checked at its OAuth 2.0 token introspection endpoint (RFC 7662), as Kong's enterprise introspection plugin
/// does. The question is a `POST` of `token=...` with the gateway's own client credentials, through the same
/// per-loop upstream pools as requests (keep-alive, TLS, breakers). The answer is remembered by the token's
/// SHA-256 for `cache_seconds` (an active one never past its `exp`), so a client's requests cost one round trip
/// per token and period, and a revoked token stops working within that period.
public final class TokenIntrospector: Sendable {
    public enum Answer: Sendable, Equatable {
        case active(Identity)
        /// Why the token is not accepted (for the log).
        case inactive(String)
    }

    /// No usable answer: the endpoint was unreachable, too slow, or answered something other than 200 JSON.
    public typealias Failure = CollectedCall.Failure

    private struct Entry: Sendable {
        let answer: Answer
        /// Seconds since 1970.
        let until: Int64
    }

    let config: IntrospectionConfig
    private let server: AuthorizationServerClient
    private let entries: BoundedCache<SHA256Digest, Entry>
    private let logger: Logger
    /// Seconds since 1970 (injected for tests).
    private let now: @Sendable () -> Int64
    /// The answer's fields routes' `auth.claims` ask about, kept in the identity.
    private let keptClaims: Set<String>

    public init(
        config: IntrospectionConfig, upstreamIndex: Int, forwarders: LoopLocal<any UpstreamForwarder>, logger: Logger,
        requestIDHeader: String = "x-request-id", keptClaims: Set<String> = [],
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.keptClaims = keptClaims
        self.config = config
        self.server = AuthorizationServerClient(
            upstreamIndex: upstreamIndex, forwarders: forwarders, clientID: config.clientID, clientSecret: config.clientSecret,
            requestIDHeader: requestIDHeader)
        self.logger = logger
        self.now = now
        self.entries = BoundedCache(capacity: config.cacheSeconds > 0 ? config.cacheSize : 0)
    }

    /// The remembered answer about `token`, if it is still fresh.
    public func remembered(_ token: String) -> Answer? {
        let current = now()
        return entries.value(for: SHA256.hash(data: Array(token.utf8))) { current < $0.until }?.answer
    }

    /// Asks the endpoint about `token` (on `eventLoop`, the request's): its answer, remembered; or a `Failure`.
    public func introspect(_ token: String, requestID: String, clientIP: String, on eventLoop: EventLoop) -> EventLoopFuture<Answer> {
        let answer = server.post(
            config.path, form: [("token", token), ("token_type_hint", "access_token")], timeout: .milliseconds(Int64(config.timeoutMs)),
            requestID: requestID, clientIP: clientIP, on: eventLoop)
        return answer.flatMapThrowing { answer in
            guard answer.status == 200 else { throw Failure("the endpoint answered \(answer.status)") }
            let (decided, expiresAt) = try Self.answer(from: answer.body, config: self.config, now: self.now(), keptClaims: self.keptClaims)
            self.remember(token, decided, expiresAt: expiresAt)
            return decided
        }
    }

    /// The endpoint's JSON as a decision, with the gateway's own checks (time, issuer, audience), and the
    /// token's `exp` (seconds since 1970) when it has one. `now`: seconds since 1970.
    static func answer(
        from body: ByteBuffer, config: IntrospectionConfig, now: Int64, keptClaims: Set<String> = []
    ) throws(Failure) -> (Answer, expiresAt: Int64?) {
        guard case .object(let fields)? = try? JSONParser.parse(Array(body.readableBytesView)) else {
            throw Failure("the answer is not a JSON object")
        }
        let value = { (name: String) in fields.first { $0.key == name }?.value }
        guard case .bool(let active)? = value("active") else { throw Failure("the answer has no boolean \"active\"") }
        guard active else { return (.inactive("the authorization server says inactive"), nil) }
        let current = Double(now)
        let exp = value("exp")?.number
        if let exp, current >= exp { return (.inactive("expired"), nil) }
        if let nbf = value("nbf")?.number, current < nbf { return (.inactive("not valid yet"), nil) }
        if let issuer = config.issuer {
            guard case .string(let iss)? = value("iss"), iss == issuer else { return (.inactive("wrong issuer"), nil) }
        }
        if !config.audiences.isEmpty {
            let audiences: [String]
            switch value("aud") {
            case .string(let one)?: audiences = [one]
            case .array(let items)?: audiences = items.compactMap { if case .string(let text) = $0 { text } else { nil } }
            default: audiences = []
            }
            guard audiences.contains(where: config.audiences.contains) else { return (.inactive("wrong audience"), nil) }
        }
        // The consumer: the resource owner, else (client-credentials tokens) the client.
        var subject = ""
        for name in ["sub", "username", "client_id"] {
            if case .string(let text)? = value(name), !text.isEmpty {
                subject = text
                break
            }
        }
        var scopes: [String] = []
        if case .string(let scope)? = value("scope") { scopes = scope.split(separator: " ").map(String.init) }
        // Both go upstream in X-Auth-* fields.
        guard JWTVerifier.isFieldText(subject), scopes.allSatisfy(JWTVerifier.isFieldText) else {
            return (.inactive("control characters in the subject or scopes"), nil)
        }
        var claims: [String: [String]] = [:]
        for (name, value) in fields where keptClaims.contains(name) { claims[name] = value.claimValues }
        return (.active(Identity(method: .introspection, subject: subject, scopes: scopes, claims: claims)), exp.map { Int64($0.rounded(.down)) })
    }

    private func remember(_ token: String, _ answer: Answer, expiresAt: Int64?) {
        var until = now() + Int64(config.cacheSeconds)
        if let expiresAt { until = min(until, expiresAt) }
        entries.insert(Entry(answer: answer, until: until), for: SHA256.hash(data: Array(token.utf8)))
    }

}
