import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import CoreMetrics
import Logging
import NIOCore
import NIOConcurrencyHelpers
import Synchronization

/// Applies a route's rate limits: builds each limit's key, asks the store for one atomic decision, answers
/// 429 (or passes), and puts the limit state on the response headers.
///
/// Headers: `X-RateLimit-Limit/-Remaining/-Reset` for the most constrained enforced limit, and the IETF
/// draft's `RateLimit-Policy` and `RateLimit` listing every enforced limit.
public struct RateLimitFilter: GatewayFilter {
    /// Everything fixed per route lives in one object, so the per-request closures hold one reference
    /// rather than a copy of every field.
    private let limiter: RouteRateLimiter

    /// - Parameter headers: false leaves the limit state headers off the answers (`rate_limit_headers`).
    public init(
        routeName: String, rules: [RateLimitRule], store: RateLimitStore, logger: Logger, metrics: GatewayMetrics = .disabled, headers: Bool = true
    ) {
        limiter = RouteRateLimiter(routeName: routeName, rules: rules, store: store, logger: logger, metrics: metrics, headers: headers)
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        limiter.onRequest(&head, context: &context)
    }
}

/// One route's limits: keys, the store call, the decision and its headers.
private final class RouteRateLimiter: Sendable {
    /// A rule with what is fixed per route: its key prefix and header texts.
    private final class Limit: Sendable {
        let rule: RateLimitRule
        /// `gw:rl:{route}:limit:`
        let keyPrefix: String
        let limitText: String
        /// `gateway_rate_limit_decisions_total` by outcome: allowed, limited, shadow_limited.
        let allowed: Counter
        let limited: Counter
        let shadowLimited: Counter
        /// The rule's overrides compiled the same way, sharing its key prefix and counters (nil: exempt).
        let overrides: [(callers: Callers, limit: Limit?)]

        init(rule: RateLimitRule, keyPrefix: String, allowed: Counter, limited: Counter, shadowLimited: Counter) {
            self.rule = rule
            self.keyPrefix = keyPrefix
            self.limitText = String(rule.quota.limit)
            self.allowed = allowed
            self.limited = limited
            self.shadowLimited = shadowLimited
            overrides = rule.overrides.map { callers, rule in
                (callers, rule.map { Limit(rule: $0, keyPrefix: keyPrefix, allowed: allowed, limited: limited, shadowLimited: shadowLimited) })
            }
        }

        /// Which of the limit's forms holds this request: 0 for its own, 1 + n for its override n.
        func choice(for context: RequestContext) -> Int {
            overrides.firstIndex { $0.callers.include(consumer: context.consumer, claims: context.claims) }.map { $0 + 1 } ?? 0
        }

        /// The form `choice` names; nil when those callers are exempt.
        func variant(_ choice: Int) -> Limit? { choice == 0 ? self : overrides[choice - 1].limit }
    }

    /// The limits one request is held to, with the texts built from them: the route's own, or the combination
    /// of overrides that names a caller (built the first time it is needed, then kept).
    private struct Plan: Sendable {
        let limits: [Limit]
        /// Every limit's rule as a shared store's script takes it (`RateLimitRequest.scriptRules`).
        let scriptRules: String
        /// `RateLimit-Policy`.
        let policyHeader: String?

        init(_ limits: [Limit]) {
            self.limits = limits
            scriptRules = limits.map(\.rule.scriptText).joined(separator: ";")
            let enforced = limits.map(\.rule).filter(\.enforce)
            policyHeader =
                enforced.isEmpty
                ? nil : enforced.map { "\"\($0.name)\";q=\($0.quota.limit);w=\($0.quota.windowSeconds)" }.joined(separator: ", ")
        }
    }

    /// One request's decision in flight, and the suspension the exchange waits on: what the store's answer
    /// is applied to. The store's callback holds only this object.
    private final class Decision: FilterSuspension {
        let limiter: RouteRateLimiter
        let plan: Plan
        let checks: [RateLimitCheck]
        let requestID: String
        /// True while the store's `check` runs: an answer then (the memory store's) is used at once.
        var checking = true
        var immediate: Result<RateLimitResult, any Error>?

        init(limiter: RouteRateLimiter, plan: Plan, checks: [RateLimitCheck], requestID: String) {
            self.limiter = limiter
            self.plan = plan
            self.checks = checks
            self.requestID = requestID
        }

        func answered(_ result: Result<RateLimitResult, any Error>) {
            if checking {
                immediate = result
            } else {
                resume(limiter.resumption(for: result, plan: plan, checks: checks, requestID: requestID))
            }
        }
    }

    private let routeName: String
    private let limits: [Limit]
    /// The route's own limits, for every request no override applies to.
    private let plan: Plan
    private let hasOverrides: Bool
    /// The plans of override combinations seen so far, by their index (the limits' choices as digits of a
    /// mixed-radix number): each is built once, not per request.
    private let overriddenPlans = NIOLockedValueBox<[Int: Plan]>([:])
    /// `rate_limit_headers`.
    private let sendsHeaders: Bool
    private let store: RateLimitStore
    private let logger: Logger

    private let storeErrors: Counter

    init(routeName: String, rules: [RateLimitRule], store: RateLimitStore, logger: Logger, metrics: GatewayMetrics, headers: Bool) {
        self.routeName = routeName
        self.sendsHeaders = headers
        func decisions(_ rule: RateLimitRule, _ outcome: String) -> Counter {
            metrics.counter("gateway_rate_limit_decisions_total", [("route", routeName), ("limit", rule.name), ("outcome", outcome)])
        }
        self.limits = rules.map {
            Limit(
                rule: $0, keyPrefix: "gw:rl:{\(routeName)}:\($0.name):", allowed: decisions($0, "allowed"),
                limited: decisions($0, "limited"), shadowLimited: decisions($0, "shadow_limited"))
        }
        self.plan = Plan(limits)
        self.hasOverrides = rules.contains { !$0.overrides.isEmpty }
        self.storeErrors = metrics.counter("gateway_rate_limit_decisions_total", [("route", routeName), ("limit", "*"), ("outcome", "store_error")])
        self.store = store
        self.logger = logger
    }

    func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let plan = hasOverrides ? plan(for: context) : self.plan
        if plan.limits.isEmpty { return .proceed }
        var checks: [RateLimitCheck] = []
        checks.reserveCapacity(plan.limits.count)
        for limit in plan.limits { checks.append(RateLimitCheck(rule: limit.rule, key: key(for: limit, head: head, context: context))) }
        let request = RateLimitRequest(hashTag: routeName, checks: checks, nonce: context.requestID, scriptRules: plan.scriptRules)
        let decision = Decision(limiter: self, plan: plan, checks: checks, requestID: context.requestID)
        // The memory store answers inside `check`; Redis answers later, on this event loop.
        store.check(request, on: context.eventLoop, completion: decision.answered)
        decision.checking = false
        if let immediate = decision.immediate {
            let resumption = resumption(for: immediate, plan: plan, checks: checks, requestID: context.requestID)
            resumption.apply(to: &head, context: &context)
            switch resumption.decision {
            case .proceed: return .proceed
            case .respond(let response): return .respond(response)
            }
        }
        return .suspend(decision)
    }

    /// The route's own plan unless an override names this caller; exempt limits drop out.
    private func plan(for context: RequestContext) -> Plan {
        var index = 0
        for limit in limits { index = index * (limit.overrides.count + 1) + limit.choice(for: context) }
        guard index != 0 else { return plan }
        return overriddenPlans.withLockedValue { plans in
            if let known = plans[index] { return known }
            let made = Plan(limits.compactMap { $0.variant($0.choice(for: context)) })
            plans[index] = made
            return made
        }
    }

    private func resumption(
        for result: Result<RateLimitResult, any Error>, plan: Plan, checks: [RateLimitCheck], requestID: String
    ) -> FilterResumption {
        guard case .success(let result) = result else {
            storeErrors.increment()
            // Only `on_store_error: deny` lets a store failure reach here.
            return FilterResumption(decision: .respond(.error(.rateLimitUnavailable, requestID: requestID)))
        }
        let headers: [(name: String, value: String)] = sendsHeaders ? self.headers(for: result, plan: plan) : []
        for (limit, evaluation) in zip(plan.limits, result.evaluations) {
            if evaluation.allowed {
                limit.allowed.increment()
            } else if limit.rule.enforce {
                limit.limited.increment()
            } else {
                limit.shadowLimited.increment()
            }
        }
        for (check, evaluation) in zip(checks, result.evaluations) where !check.rule.enforce && !evaluation.allowed {
            logger.notice(
                "rate limit would reject (shadow mode)",
                metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "limit": "\(check.rule.name)"])
        }
        guard !result.allowed else { return FilterResumption(decision: .proceed, responseHeaders: headers) }
        var retryMicros: Int64 = 0
        for (check, evaluation) in zip(checks, result.evaluations) where check.rule.enforce && !evaluation.allowed {
            retryMicros = max(retryMicros, evaluation.retryAfterMicros)
        }
        let retrySeconds = Int((Double(max(retryMicros, 1)) / 1_000_000).rounded(.up))
        return FilterResumption(
            decision: .respond(.error(.rateLimited(retryAfterSeconds: retrySeconds), requestID: requestID)), responseHeaders: headers)
    }

    private func headers(for result: RateLimitResult, plan: Plan) -> [(name: String, value: String)] {
        let limits = plan.limits
        guard let policyHeader = plan.policyHeader, result.evaluations.count == limits.count else { return [] }
        // The most constrained enforced limit speaks for the X-RateLimit-* trio.
        var tightest: Int?
        var state = ""
        for index in limits.indices where limits[index].rule.enforce {
            let evaluation = result.evaluations[index]
            if let current = tightest {
                let best = result.evaluations[current]
                if evaluation.remaining < best.remaining || (evaluation.remaining == best.remaining && !evaluation.allowed) { tightest = index }
            } else {
                tightest = index
            }
            if !state.isEmpty { state += ", " }
            state += "\"\(limits[index].rule.name)\";r=\(evaluation.remaining);t=\(Self.seconds(evaluation.resetAfterMicros))"
        }
        guard let tightest else { return [] }
        let evaluation = result.evaluations[tightest]
        return [
            ("x-ratelimit-limit", limits[tightest].limitText),
            ("x-ratelimit-remaining", String(evaluation.remaining)),
            ("x-ratelimit-reset", String(Self.seconds(evaluation.resetAfterMicros))),
            ("ratelimit-policy", policyHeader),
            ("ratelimit", state),
        ]
    }

    private static func seconds(_ micros: Int64) -> Int { max(0, Int((micros + 999_999) / 1_000_000)) }

    /// `gw:rl:{route}:limit:kind:value`. Values that are long or contain characters unsafe in a key (a `}`
    /// would end the hash tag early) are replaced by their SHA-1.
    private func key(for limit: Limit, head: RequestHead, context: RequestContext) -> String {
        let (kind, value) = limit.rule.key.counted(head: head, context: context)
        return limit.keyPrefix + kind + ":" + Self.safe(value)
    }

    private static func safe(_ value: String) -> String {
        let plain = value.utf8.count <= 64 && value.utf8.allSatisfy { byte in
            (ASCII.isToken(byte) && byte != UInt8(ascii: "{") && byte != UInt8(ascii: "}")) || byte == UInt8(ascii: ":")
        }
        return plain ? value : "sha1-" + SHA1.hex(value)
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

    public func check(
        _ request: RateLimitRequest, on eventLoop: EventLoop,
        completion: @escaping (Result<RateLimitResult, any Error>) -> Void
    ) {
        primary.check(request, on: eventLoop) { result in
            switch result {
            case .success:
                self.recovered()
                completion(result)
            case .failure(let error):
                self.failed(error)
                switch self.mode {
                case .allow:
                    completion(.success(RateLimitResult(allowed: true, evaluations: [])))
                case .deny:
                    completion(.failure(error))
                case .local:
                    self.local.check(request, on: eventLoop, completion: completion)
                }
            }
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
