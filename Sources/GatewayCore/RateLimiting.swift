import GatewayConfig
import GatewayHTTP
import GatewayPolicy
import NIOCore

/// One configured limit, compiled: its algorithm with numbers in the units the stores use.
public struct RateLimitRule: Sendable {
    public enum Algorithm: Sendable, Equatable {
        case tokenBucket(TokenBucket)
        case slidingWindow(SlidingWindowLog)
        case fixedWindow(FixedWindow)
    }

    public let name: String
    public let algorithm: Algorithm
    public let cost: Int
    public let key: RateLimitConfig.Key
    /// false: shadow mode, the decision is logged and counted but never rejects.
    public let enforce: Bool
    /// The rule as a shared store's script takes it: algorithm ("tb"/"sw"/"fw"), two parameters (capacity and
    /// refill per second, or limit and window in µs), cost, enforce ("1"/"0"), separated by spaces. Built
    /// once, not per request.
    public let scriptText: String
    /// `overrides`: the rule for some callers instead of this one (nil: exempt), the first that applies wins.
    public var overrides: [(callers: Callers, rule: RateLimitRule?)] = []

    public init(name: String, algorithm: Algorithm, cost: Int = 1, key: RateLimitConfig.Key = .ip, enforce: Bool = true) {
        self.name = name
        self.algorithm = algorithm
        self.cost = cost
        self.key = key
        self.enforce = enforce
        switch algorithm {
        case .tokenBucket(let bucket):
            scriptText = "tb \(Self.number(bucket.capacity)) \(Self.number(bucket.refillPerSecond)) \(cost) \(enforce ? 1 : 0)"
        case .slidingWindow(let window):
            scriptText = "sw \(window.limit) \(window.windowMicros) \(cost) \(enforce ? 1 : 0)"
        case .fixedWindow(let window):
            scriptText = "fw \(window.limit) \(window.windowMicros) \(cost) \(enforce ? 1 : 0)"
        }
    }

    public init(config: RateLimitConfig) {
        let algorithm: Algorithm
        switch config.algorithm {
        case .tokenBucket:
            algorithm = .tokenBucket(TokenBucket(capacity: Double(config.capacity ?? 1), refillPerSecond: config.refillPerSecond ?? 1))
        case .slidingWindow:
            algorithm = .slidingWindow(SlidingWindowLog(limit: config.limit ?? 1, windowMicros: Int64(config.windowSeconds ?? 1) * 1_000_000))
        case .fixedWindow:
            algorithm = .fixedWindow(FixedWindow(limit: config.limit ?? 1, windowMicros: Int64(config.windowSeconds ?? 1) * 1_000_000))
        }
        self.init(name: config.name, algorithm: algorithm, cost: config.cost, key: config.key, enforce: config.enforce)
        overrides = config.overrides.map { ($0.callers, $0.exempt ? nil : RateLimitRule(config: config.overridden(by: $0))) }
    }

    /// Whole numbers without a fraction (Lua's tonumber reads both forms; exact either way).
    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }

    public var isSlidingWindow: Bool {
        if case .slidingWindow = algorithm { return true }
        return false
    }

    /// The quota as headers state it: `q` (requests) and `w` (seconds) of RateLimit-Policy.
    public var quota: (limit: Int, windowSeconds: Int) {
        switch algorithm {
        case .tokenBucket(let bucket):
            return (Int(bucket.capacity), max(1, Int((bucket.capacity / bucket.refillPerSecond).rounded(.up))))
        case .slidingWindow(let window):
            return (window.limit, Int(window.windowMicros / 1_000_000))
        case .fixedWindow(let window):
            return (window.limit, Int(window.windowMicros / 1_000_000))
        }
    }
}

/// One limit to apply to one request: the rule and the storage key it counts under.
public struct RateLimitCheck: Sendable {
    public let rule: RateLimitRule
    public let key: String

    public init(rule: RateLimitRule, key: String) {
        self.rule = rule
        self.key = key
    }
}

/// Everything one request asks of a store, decided atomically: either every enforced limit allows it and
/// all of them are charged, or nothing is charged.
public struct RateLimitRequest: Sendable {
    /// Shared by all keys of the request (`{route}`), so a Redis Cluster keeps them in one slot and one
    /// script can decide them together.
    public let hashTag: String
    public let checks: [RateLimitCheck]
    /// Unique per request (the request id): makes sliding-window log entries distinct.
    public let nonce: String
    /// Every check's `RateLimitRule.scriptText`, in order, separated by ";". A route's requests all have the
    /// same, so its filter builds it once and passes it in.
    public let scriptRules: String

    public init(hashTag: String, checks: [RateLimitCheck], nonce: String, scriptRules: String? = nil) {
        self.hashTag = hashTag
        self.checks = checks
        self.nonce = nonce
        self.scriptRules = scriptRules ?? checks.map(\.rule.scriptText).joined(separator: ";")
    }
}

public struct RateLimitResult: Sendable, Equatable {
    /// Every enforced limit allowed the request (shadow limits never refuse).
    public let allowed: Bool
    /// One per check, in order.
    public let evaluations: [LimitEvaluation]

    public init(allowed: Bool, evaluations: [LimitEvaluation]) {
        self.allowed = allowed
        self.evaluations = evaluations
    }
}

/// Where counters live: `memory` (this process) or `redis` (shared by every instance).
public protocol RateLimitStore: Sendable {
    /// Decides `request`. `completion` runs exactly once, on `eventLoop`: right away for the memory store,
    /// when the reply arrives for Redis. A callback rather than a future: on the hot path it saves the
    /// promise-and-closure chain each layer of futures would allocate per request.
    func check(
        _ request: RateLimitRequest, on eventLoop: EventLoop,
        completion: @escaping (Result<RateLimitResult, any Error>) -> Void)
}

/// Why a store could not decide (Redis down, timed out, script error). The filter applies `on_store_error`.
public struct RateLimitStoreError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension RateLimitConfig.Key {
    /// What a rate or concurrency limit counts this request under: the key's kind and the request's value for it.
    /// A request without the consumer or claim the key names counts by its client address, as `ip`.
    public func counted(head: RequestHead, context: RequestContext) -> (kind: String, value: String) {
        switch self {
        case .ip: return ("ip", context.clientIP)
        case .consumer: return context.consumer.map { ("consumer", $0) } ?? ("ip", context.clientIP)
        case .route: return ("route", "")
        case .header(let name): return ("header", head.headers.first(name: name) ?? "")
        case .claim(let name):
            return context.claims?[name].map { ("claim", name + "=" + $0.joined(separator: " ")) } ?? ("ip", context.clientIP)
        }
    }
}
