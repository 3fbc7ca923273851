import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Logging
import NIOCore
import Synchronization

/// Applies a route's rate limits: builds each limit's key, asks the store for one atomic decision, answers
/// 429 (or passes), and puts the limit state on the response headers.
///
/// Headers: `X-RateLimit-Limit/-Remaining/-Reset` for the most constrained enforced limit, and the IETF
/// draft's `RateLimit-Policy` and `RateLimit` listing every enforced limit.
public struct RateLimitFilter: GatewayFilter {
    private let routeName: String
    private let rules: [RateLimitRule]
    private let store: RateLimitStore
    private let logger: Logger
    /// `RateLimit-Policy`, fixed per route.
    private let policyHeader: String?

    public init(routeName: String, rules: [RateLimitRule], store: RateLimitStore, logger: Logger) {
        self.routeName = routeName
        self.rules = rules
        self.store = store
        self.logger = logger
        let enforced = rules.filter(\.enforce)
        policyHeader =
            enforced.isEmpty
            ? nil : enforced.map { "\"\($0.name)\";q=\($0.quota.limit);w=\($0.quota.windowSeconds)" }.joined(separator: ", ")
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let checks = rules.map { RateLimitCheck(rule: $0, key: key(for: $0, head: head, context: context)) }
        let request = RateLimitRequest(hashTag: routeName, checks: checks, nonce: context.requestID)
        switch store.check(request, on: context.eventLoop) {
        case .now(let result):
            context.responseHeaders += headers(for: result)
            return decide(result, checks: checks, requestID: context.requestID)
        case .later(let future):
            let requestID = context.requestID
            return .suspend(
                future.map { result in
                    let headers = self.headers(for: result)
                    let decision: FilterDecision
                    switch self.decide(result, checks: checks, requestID: requestID) {
                    case .respond(let response): decision = .respond(response)
                    default: decision = .proceed
                    }
                    return FilterResumption(decision: decision) { _, context in context.responseHeaders += headers }
                }.flatMapErrorThrowing { error in
                    guard error is RateLimitStoreError else { throw error }
                    return FilterResumption(decision: .respond(.error(.rateLimitUnavailable, requestID: requestID)))
                })
        }
    }

    private func decide(_ result: RateLimitResult, checks: [RateLimitCheck], requestID: String) -> FilterStep {
        for (check, evaluation) in zip(checks, result.evaluations) where !check.rule.enforce && !evaluation.allowed {
            logger.notice(
                "rate limit would reject (shadow mode)",
                metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "limit": "\(check.rule.name)"])
        }
        guard !result.allowed else { return .proceed }
        let retryMicros = zip(checks, result.evaluations).filter { $0.rule.enforce && !$1.allowed }.map(\.1.retryAfterMicros).max() ?? 1_000_000
        return .respond(.error(.rateLimited(retryAfterSeconds: Int((Double(retryMicros) / 1_000_000).rounded(.up))), requestID: requestID))
    }

    private func headers(for result: RateLimitResult) -> [(name: String, value: String)] {
        let enforced = zip(rules, result.evaluations).filter { $0.0.enforce }
        guard let policyHeader, !enforced.isEmpty else { return [] }
        // The most constrained limit speaks for the X-RateLimit-* trio.
        let (rule, tightest) = enforced.min { a, b in a.1.remaining < b.1.remaining || (a.1.remaining == b.1.remaining && !a.1.allowed) }!
        let seconds: (Int64) -> Int = { max(0, Int((Double($0) / 1_000_000).rounded(.up))) }
        let state = enforced.map { "\"\($0.0.name)\";r=\($0.1.remaining);t=\(seconds($0.1.resetAfterMicros))" }.joined(separator: ", ")
        return [
            ("x-ratelimit-limit", String(rule.quota.limit)),
            ("x-ratelimit-remaining", String(tightest.remaining)),
            ("x-ratelimit-reset", String(seconds(tightest.resetAfterMicros))),
            ("ratelimit-policy", policyHeader),
            ("ratelimit", state),
        ]
    }

    /// `gw:rl:{route}:limit:kind:value`. Values that are long or contain characters unsafe in a key (a `}`
    /// would end the hash tag early) are replaced by their SHA-1.
    private func key(for rule: RateLimitRule, head: RequestHead, context: RequestContext) -> String {
        let kind: String
        let value: String
        switch rule.key {
        case .ip:
            (kind, value) = ("ip", context.clientIP)
        case .consumer:
            if let consumer = context.consumer {
                (kind, value) = ("consumer", consumer)
            } else {
                (kind, value) = ("ip", context.clientIP)
            }
        case .route:
            (kind, value) = ("route", "")
        case .header(let name):
            (kind, value) = ("header", head.headers.first(name: name) ?? "")
        }
        let safe =
            value.utf8.count <= 64
                && value.utf8.allSatisfy { ASCII.isToken($0) && $0 != UInt8(ascii: "{") && $0 != UInt8(ascii: "}") || $0 == UInt8(ascii: ":") }
            ? value : "sha1-" + SHA1.hex(value)
        return "gw:rl:{\(routeName)}:\(rule.name):\(kind):\(safe)"
    }
}

/// Wraps the shared store with the configured behaviour for when it cannot answer
/// (`rate_limiting.on_store_error`): `allow` passes requests, `deny` answers 503, `local` falls back to
/// in-process counters. An outage is logged once when it starts and once when it ends, not per request.
public final class FailoverRateLimitStore: RateLimitStore {
    private let primary: RateLimitStore
    private let mode: RateLimitingConfig.OnStoreError
    private let local: MemoryRateLimitStore
    private let logger: Logger
    private let inOutage = Atomic<Bool>(false)
    private let failures = Atomic<Int>(0)

    public init(primary: RateLimitStore, mode: RateLimitingConfig.OnStoreError, local: MemoryRateLimitStore = MemoryRateLimitStore(), logger: Logger) {
        self.primary = primary
        self.mode = mode
        self.local = local
        self.logger = logger
    }

    /// Decisions the primary store could not make since start.
    public var storeFailures: Int { failures.load(ordering: .relaxed) }

    public func check(_ request: RateLimitRequest, on eventLoop: EventLoop) -> RateLimitAnswer {
        switch primary.check(request, on: eventLoop) {
        case .now(let result):
            recovered()
            return .now(result)
        case .later(let future):
            return .later(
                future.map { result in
                    self.recovered()
                    return result
                }.flatMapError { error in
                    self.failed(error)
                    switch self.mode {
                    case .allow:
                        return eventLoop.makeSucceededFuture(RateLimitResult(allowed: true, evaluations: []))
                    case .deny:
                        return eventLoop.makeFailedFuture(error is RateLimitStoreError ? error : RateLimitStoreError("\(error)"))
                    case .local:
                        guard case .now(let result) = self.local.check(request, on: eventLoop) else {
                            return eventLoop.makeFailedFuture(error)
                        }
                        return eventLoop.makeSucceededFuture(result)
                    }
                })
        }
    }

    private func failed(_ error: any Error) {
        failures.add(1, ordering: .relaxed)
        if inOutage.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            logger.error(
                "rate limit store unavailable",
                metadata: ["on_store_error": "\(mode.rawValue)", "error": "\(error)"])
        }
    }

    private func recovered() {
        if inOutage.load(ordering: .relaxed), inOutage.compareExchange(expected: true, desired: false, ordering: .relaxed).exchanged {
            logger.notice("rate limit store available again")
        }
    }
}
