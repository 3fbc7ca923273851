import Foundation
import NIOConcurrencyHelpers
import GatewayClient
import GatewayConfig
import GatewayHTTP
import Logging
import NIOCore

/// Everything authentication needs, process-wide: the JWT rules and keys (configured, from a JWKS file,
/// and from a JWKS URL kept fresh in the background) and the API-key table. Verification itself is
/// synchronous on the request's event loop; only a JWKS fetch goes to the network.
public final class Authenticator: Sendable {
    public let verifier: JWTVerifier?
    public let apiKeys: APIKeyTable
    /// Consumers known by their client certificate (`auth.mtls_clients`).
    public let mtlsClients: MTLSClientTable
    /// HTTP Basic users (`auth.basic`).
    public let basicUsers: BasicUsers?
    /// The cookie a JWT may also come in.
    public let cookie: String?
    /// The query parameter a JWT may also come in (`auth.jwt.query_param`).
    public let queryParam: String?
    /// Where API keys come in: `auth.api_key_header` (lowercased) and `auth.api_key_query_param`.
    public let apiKeyHeader: String
    public let apiKeyQueryParam: String?
    /// Configured keys and the JWKS file's keys (fixed), merged with the JWKS URL's latest good keys.
    private let keySet: NIOLockedValueBox<JWTKeySet>
    private let staticKeys: JWTKeySet
    private let jwks: JWKSSource?
    /// nil when `auth.jwt.cache_size` is 0.
    private let verifiedTokens: VerifiedTokenCache?
    private let logger: Logger
    /// `auth.upstream_token`: signs the identity of each authenticated request for its upstream.
    public let upstreamTokens: UpstreamTokenSigner?
    /// `auth.oidc.jwks_url`: the OpenID provider's keys, for the ID tokens of logins.
    public let oidcKeys: FetchedKeys?

    private init(
        verifier: JWTVerifier?, apiKeys: APIKeyTable, mtlsClients: MTLSClientTable, basicUsers: BasicUsers?, cookie: String?, queryParam: String?,
        apiKeyHeader: String, apiKeyQueryParam: String?, staticKeys: JWTKeySet, jwks: JWKSSource?, cacheSize: Int, upstreamTokens: UpstreamTokenSigner?, oidcKeys: FetchedKeys?,
        logger: Logger
    ) {
        self.oidcKeys = oidcKeys
        self.upstreamTokens = upstreamTokens
        self.basicUsers = basicUsers
        self.mtlsClients = mtlsClients
        self.queryParam = queryParam
        self.apiKeyHeader = apiKeyHeader
        self.apiKeyQueryParam = apiKeyQueryParam
        self.verifier = verifier
        self.verifiedTokens = cacheSize > 0 ? VerifiedTokenCache(capacity: cacheSize) : nil
        self.apiKeys = apiKeys
        self.cookie = cookie
        self.staticKeys = staticKeys
        self.keySet = NIOLockedValueBox(staticKeys)
        self.jwks = jwks
        self.logger = logger
    }

    /// Loads every key; with a `jwks_url`, fetches it once (a failure is logged, not fatal: configured keys
    /// still work and the fetch is retried) and keeps it fresh on `eventLoop`.
    /// `claimNames`: the claims routes' `auth.claims` ask about, kept in verified identities.
    public static func make(_ config: AuthConfig, claimNames: Set<String> = [], eventLoop: EventLoop, logger: Logger) async throws -> Authenticator {
        var verifier: JWTVerifier?
        var staticKeys: [VerificationKey] = []
        var source: JWKSSource?
        if let jwt = config.jwt {
            verifier = JWTVerifier(
                issuer: jwt.issuer, audiences: jwt.audiences, leewaySeconds: jwt.leewaySeconds,
                forwardClaims: jwt.forwardClaims.map { (claim: $0.claim, header: $0.header) }, keptClaims: claimNames)
            staticKeys = try await KeyLoader.configuredKeys(jwt)
            if let file = jwt.jwksFile {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw KeyLoader.KeyError(path: "auth.jwt.jwks_file", message: "\(file) cannot be read")
                }
                let (keys, skipped) = try await KeyLoader.jwksKeys(data)
                for reason in skipped { logger.warning("JWKS key skipped", metadata: ["source": "\(file)", "reason": "\(reason)"]) }
                staticKeys += keys
            }
            if let url = jwt.jwksURL {
                source = JWKSSource(
                    url: url, configPath: "auth.jwt.jwks_url", refresh: .seconds(Int64(jwt.jwksRefreshSeconds)), minimumRefetch: .seconds(Int64(jwt.jwksMinRefetchSeconds)),
                    eventLoop: eventLoop, logger: logger)
            }
        }
        // The htpasswd file's users are consumers too: their names must not be another credential's id.
        let (apiKeys, keyProblems) = APIKeyTable.configuredKeys(config)
        guard let apiKeys else {
            let problem = keyProblems.first(where: \.isError)
            throw KeyLoader.KeyError(path: problem?.path ?? "auth.api_keys_file", message: problem?.message ?? "cannot be loaded")
        }
        let basicUsers = try config.basic.map {
            try BasicUsers.load($0, otherConsumers: config.keyAndCertificateIDs.union(apiKeys.map(\.id)))
        }
        var upstreamTokens: UpstreamTokenSigner?
        if let tokens = config.upstreamToken { upstreamTokens = try await UpstreamTokenSigner.load(tokens) }
        let oidcKeys = config.oidc.map {
            FetchedKeys(
                url: $0.jwksURL, refreshSeconds: $0.jwksRefreshSeconds, minRefetchSeconds: $0.jwksMinRefetchSeconds, eventLoop: eventLoop, logger: logger)
        }
        let authenticator = Authenticator(
            verifier: verifier, apiKeys: APIKeyTable(apiKeys), mtlsClients: MTLSClientTable(config.mtlsClients), basicUsers: basicUsers,
            cookie: config.jwt?.cookie, queryParam: config.jwt?.queryParam, apiKeyHeader: config.apiKeyHeader,
            apiKeyQueryParam: config.apiKeyQueryParam, staticKeys: JWTKeySet(staticKeys),
            jwks: source, cacheSize: config.jwt?.cacheSize ?? 0, upstreamTokens: upstreamTokens, oidcKeys: oidcKeys, logger: logger)
        if let source {
            source.onUpdate = { [weak authenticator] fetched in authenticator?.publish(fetched) }
            await source.start()
        }
        await oidcKeys?.start()
        return authenticator
    }

    private func publish(_ fetched: JWTKeySet) {
        let merged = staticKeys.merging(fetched)
        keySet.withLockedValue { $0 = merged }
        verifiedTokens?.removeAll()  // entries name the old key set and would miss anyway; free them now
    }

    public var keys: JWTKeySet { keySet.withLockedValue { $0 } }

    /// Seconds since 1970 (JWT NumericDate).
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    public func verifyJWT(_ token: String) -> Result<Identity, JWTRejection> {
        guard let verifier else { return .failure(.unknownKey(nil)) }
        let keys = self.keys
        let now = Self.now()
        if let verifiedTokens, let identity = verifiedTokens.identity(of: token, keys: keys, now: now) { return .success(identity) }
        let result = verifier.verifiedToken(token, keys: keys, now: now)
        if case .success(let verified) = result { verifiedTokens?.insert(token, verified, keys: keys) }
        return result.map(\.identity)
    }

    /// A JWKS refetch for a token whose `kid` is unknown, when a JWKS URL is configured and the last fetch is
    /// not too recent (so unknown kids cannot make the gateway hammer the JWKS endpoint). nil otherwise.
    public func refetchKeys() -> EventLoopFuture<Void>? { jwks?.refetch() }

    public func stop() {
        jwks?.stop()
        oidcKeys?.stop()
    }
}

/// A JWKS URL's keys: fetched at start, refreshed every `refresh` (or the document's Cache-Control max-age,
/// between 30 s and 1 day), refetched on demand at most every `minimumRefetch`. A failed fetch keeps the last
/// good keys and is retried after 30 s.
final class JWKSSource: @unchecked Sendable {
    // @unchecked: all mutable state is touched on `eventLoop` only, except `onUpdate`, set once before start.
    let url: String
    /// Where the URL is configured (`auth.jwt.jwks_url`, `auth.oidc.jwks_url`), named in fetch failures.
    let configPath: String
    let refresh: TimeAmount
    let minimumRefetch: TimeAmount
    let eventLoop: EventLoop
    let logger: Logger
    var onUpdate: (@Sendable (JWTKeySet) -> Void)?

    private var lastAttempt: NIODeadline?
    private var inFlight: EventLoopFuture<Void>?
    private var timer: Scheduled<Void>?
    private var stopped = false

    init(url: String, configPath: String, refresh: TimeAmount, minimumRefetch: TimeAmount, eventLoop: EventLoop, logger: Logger) {
        self.url = url
        self.configPath = configPath
        self.refresh = refresh
        self.minimumRefetch = minimumRefetch
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// The first fetch (waited for, so tokens verify from the first request when the endpoint is up).
    func start() async {
        _ = try? await eventLoop.flatSubmit { self.fetch() }.get()
    }

    func stop() {
        eventLoop.execute {
            self.stopped = true
            self.timer?.cancel()
        }
    }

    func refetch() -> EventLoopFuture<Void>? {
        // Called from any loop; the decision is taken on ours.
        let promise = eventLoop.makePromise(of: Bool.self)
        eventLoop.execute {
            if self.inFlight != nil { return promise.succeed(true) }
            if let last = self.lastAttempt, NIODeadline.now() - last < self.minimumRefetch { return promise.succeed(false) }
            promise.succeed(true)
        }
        return promise.futureResult.flatMap { allowed in
            guard allowed else { return self.eventLoop.makeFailedFuture(RefetchRefused()) }
            return self.fetch()
        }
    }

    struct RefetchRefused: Error {}

    private func fetch() -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        if let inFlight { return inFlight }
        lastAttempt = .now()
        let done = HTTPFetch.get(url, on: eventLoop, timeout: .seconds(5), maxBytes: 1 << 20).flatMap { response -> EventLoopFuture<TimeAmount> in
            guard response.status == 200 else {
                return self.eventLoop.makeFailedFuture(KeyLoader.KeyError(path: self.configPath, message: "answered \(response.status)"))
            }
            let promise = self.eventLoop.makePromise(of: TimeAmount.self)
            let body = Data(response.body)
            let maxAge = Self.maxAge(response.headers)
            let url = self.url
            let logger = self.logger
            let onUpdate = self.onUpdate
            let fallback = self.refresh
            promise.completeWithTask {
                let (keys, skipped) = try await KeyLoader.jwksKeys(body)
                for reason in skipped { logger.warning("JWKS key skipped", metadata: ["source": "\(url)", "reason": "\(reason)"]) }
                onUpdate?(JWTKeySet(keys))
                logger.info("JWKS loaded", metadata: ["source": "\(url)", "keys": "\(keys.count)"])
                return maxAge.map { .seconds(min(86_400, max(30, $0))) } ?? fallback
            }
            return promise.futureResult
        }
        let result = done.map { next in self.schedule(in: next) }.flatMapErrorThrowing { error in
            self.logger.warning("JWKS fetch failed; keeping the last good keys", metadata: ["source": "\(self.url)", "error": "\(error)"])
            self.schedule(in: .seconds(30))
            throw error
        }
        inFlight = result
        result.whenComplete { _ in self.inFlight = nil }
        return result
    }

    private func schedule(in delay: TimeAmount) {
        timer?.cancel()
        guard !stopped else { return }
        timer = eventLoop.scheduleTask(in: delay) { _ = self.fetch() }
    }

    /// `Cache-Control: max-age=N` in seconds.
    static func maxAge(_ headers: HeaderList) -> Int64? {
        for value in headers["cache-control"] {
            for directive in value.split(separator: ",") {
                let trimmed = directive.trimmingCharacters(in: .whitespaces).lowercased()
                if trimmed.hasPrefix("max-age="), let seconds = Int64(trimmed.dropFirst(8)) { return seconds }
            }
        }
        return nil
    }
}
