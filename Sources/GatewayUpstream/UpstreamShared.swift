import Foundation
import GatewayConfig
import NIOConcurrencyHelpers
import GatewayCore
import GatewayPolicy
import GatewayTLS
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// What every event loop shares about one upstream target: its circuit breaker, its health (from active
/// checks) and how many requests it is serving. Breakers must be process-wide: a target that fails for one
/// loop fails for all of them.
final class TargetShared: Sendable {
    let index: Int
    let target: UpstreamTarget
    /// What goes in Host headers (the host name, even for a discovered address).
    let authority: String
    /// What logs, metrics and the admin API call it (a discovered target by its address).
    let label: String
    private let breaker: NIOLockedValueBox<CircuitBreaker?>
    let hasBreaker: Bool
    /// Mirrors "the breaker is closed", so the common case admits without taking the lock.
    private let breakerClosed = Atomic<Bool>(true)
    let healthy = Atomic<Bool>(true)
    /// Taken out of rotation through the admin API: no new requests, those in flight finish.
    let drained = Atomic<Bool>(false)
    /// When the target last joined the rotation (`UpstreamShared.now()`), for slow start; 0: it has been in it
    /// from the start.
    let joinedAt = Atomic<Int64>(0)
    let inFlight = Atomic<Int>(0)
    /// Connections to the target open (or opening) on every loop, and how many were ever opened: for operators who
    /// want to see keep-alive working (opened stays flat under steady load) and the pools' size. Touched only when a
    /// connection opens or ends, never per request.
    let openConnections = Atomic<Int>(0)
    let connectionsOpened = Atomic<Int>(0)
    let metrics: TargetMetrics

    init(index: Int, target: UpstreamTarget, breaker: CircuitBreaker.Settings?, metrics: TargetMetrics) {
        self.index = index
        self.target = target
        self.authority = target.authority
        self.label = target.label
        self.metrics = metrics
        self.breaker = NIOLockedValueBox(breaker.map { CircuitBreaker(settings: $0) })
        self.hasBreaker = breaker != nil
    }

    /// Whether the breaker is open right now (for ejection accounting; a due half-open counts as closed).
    func isShutOut(now: Int64) -> Bool {
        guard hasBreaker, !breakerClosed.load(ordering: .relaxed) else { return false }
        return breaker.withLockedValue { !($0?.wouldAdmit(now: now) ?? true) }
    }

    func wouldAdmit(now: Int64) -> Bool {
        guard hasBreaker, !breakerClosed.load(ordering: .relaxed) else { return true }
        return breaker.withLockedValue { $0?.wouldAdmit(now: now) ?? true }
    }

    /// The breaker's answer, and the state it moved to if admitting changed it (open -> half-open).
    func admit(now: Int64) -> (CircuitBreaker.Admission, CircuitBreaker.State?) {
        guard hasBreaker, !breakerClosed.load(ordering: .relaxed) else { return (.allowed, nil) }
        return breaker.withLockedValue { breaker in
            guard let before = breaker?.state, let admission = breaker?.admit(now: now), let after = breaker?.state else {
                return (.allowed, nil)
            }
            return (admission, after == before ? nil : after)
        }
    }

    /// Returns the new state when the outcome changed it.
    func record(success: Bool, now: Int64) -> CircuitBreaker.State? {
        guard hasBreaker else { return nil }
        return breaker.withLockedValue { breaker in
            let change = breaker?.record(success: success, now: now)
            breakerClosed.store(breaker?.state == .closed, ordering: .relaxed)
            return change
        }
    }

    func release(probe: Bool) {
        guard probe, hasBreaker else { return }
        breaker.withLockedValue { $0?.release(probe: true) }
    }

    func retryAfterMicros(now: Int64) -> Int64 {
        guard hasBreaker else { return 1_000_000 }
        return breaker.withLockedValue { breaker in
            if case .open(let until) = breaker?.state { return max(1, until - now) }
            return 1_000_000
        }
    }

    var breakerState: CircuitBreaker.State {
        breaker.withLockedValue { $0?.state } ?? .closed
    }
}

/// Process-wide state of one upstream: its targets, the retry budget and the in-flight request count.
final class UpstreamShared: Sendable {
    let config: UpstreamConfig
    let targets: [TargetShared]
    private let retryBudget: NIOLockedValueBox<RetryBudget?>
    let requestsInFlight = Atomic<Int>(0)
    let retryStatuses: Set<Int>
    let failureStatuses: Set<Int>
    let logger: Logger
    /// For `https://` targets (built once: contexts are shared by all loops); `h2` targets offer only "h2".
    let tlsContext: NIOSSLContext?
    let http2TLSContext: NIOSSLContext?
    /// `slow_start_ms`, when set (and the balancer is not a hash ring).
    let slowStart: SlowStart?
    let metrics: GatewayMetrics
    /// The bytes of the TLS files when the contexts were made (compared at reload).
    let tlsFiles: [Data?]

    init(config: UpstreamConfig, logger: Logger, metrics: GatewayMetrics) throws {
        self.config = config
        self.metrics = metrics
        self.tlsFiles = Self.read(config.tls.files)
        self.slowStart = config.slowStartMs.flatMap { config.balance == .consistentHash ? nil : SlowStart(windowMicros: Int64($0) * 1000) }
        let secure = config.targets.filter { $0.scheme == .https }
        tlsContext = secure.contains { $0.httpProtocol == .http1 } ? try UpstreamTLS.makeContext(config.tls) : nil
        http2TLSContext = secure.contains { $0.httpProtocol == .h2 } ? try UpstreamTLS.makeContext(config.tls, applicationProtocols: ["h2"]) : nil
        let breaker = config.circuitBreaker.map { settings in
            CircuitBreaker.Settings(
                failureThreshold: settings.failureThreshold, failureRatio: settings.failureRatio,
                minimumRequests: settings.minimumRequests, windowMicros: Int64(settings.windowMs) * 1000,
                openMicros: Int64(settings.openMs) * 1000, maxOpenMicros: Int64(settings.maxOpenMs) * 1000,
                halfOpenRequests: settings.halfOpenRequests)
        }
        self.targets = config.targets.enumerated().map { index, target in
            TargetShared(index: index, target: target, breaker: breaker, metrics: metrics.target(upstream: config.name, target: target.label))
        }
        if breaker != nil { for target in targets { target.metrics.breakerState(0) } }
        self.retryBudget = NIOLockedValueBox(config.retries.map { RetryBudget(ratio: $0.budgetRatio) })
        self.retryStatuses = Set(config.retries?.onStatus ?? [])
        self.failureStatuses = Set(config.circuitBreaker?.failureStatuses ?? [])
        self.logger = logger
    }

    static func now() -> Int64 { Int64(EventClock.now().uptimeNanoseconds / 1000) }

    static func read(_ files: [String]) -> [Data?] { files.map { FileManager.default.contents(atPath: $0) } }

    /// The TLS context for a target: none for `http://`, the one offering only "h2" for `h2` targets.
    func tlsContext(for target: UpstreamTarget) -> NIOSSLContext? {
        guard target.scheme == .https else { return nil }
        return target.httpProtocol == .h2 ? http2TLSContext : tlsContext
    }

    /// Whether open breakers shut out more targets than `max_ejection_percent` allows; then breakers are
    /// ignored (panic mode) so that some traffic still flows.
    func inPanic(now: Int64) -> Bool {
        guard let percent = config.circuitBreaker?.maxEjectionPercent, percent < 100 else { return false }
        let shutOut = targets.reduce(0) { $0 + ($1.isShutOut(now: now) ? 1 : 0) }
        return shutOut * 100 > targets.count * percent
    }

    /// A target may take a request: healthy by active checks (when configured) and admitted by its breaker.
    func isEligible(_ index: Int, now: Int64, panic: Bool) -> Bool {
        let target = targets[index]
        guard target.healthy.load(ordering: .relaxed), !target.drained.load(ordering: .relaxed) else { return false }
        return panic || target.wouldAdmit(now: now)
    }

    /// Seconds until the first shut-out target may be tried again (for Retry-After): the end of an open
    /// breaker, or the next health check for a target that failed them.
    func retryAfterSeconds(now: Int64) -> Int {
        let healthInterval = Int64(config.healthCheck?.intervalMs ?? 1000) * 1000
        let micros = targets.map { target in
            target.healthy.load(ordering: .relaxed) ? target.retryAfterMicros(now: now) : healthInterval
        }.min() ?? 1_000_000
        return Int((micros + 999_999) / 1_000_000)
    }

    /// A target's weight now, in thousandths of a weight unit: its configured weight, scaled down while it ramps.
    func effectiveWeight(_ index: Int, now: Int64, slowStart: SlowStart) -> Int {
        let target = targets[index]
        let permille = slowStart.permille(joinedAt: target.joinedAt.load(ordering: .relaxed), now: now) ?? 1000
        return max(1, target.target.weight) * permille
    }

    /// The target joins the rotation (again): with slow start it ramps from now.
    func joined(_ target: TargetShared) {
        if slowStart != nil { target.joinedAt.store(Self.now(), ordering: .relaxed) }
    }

    func logTransition(_ target: TargetShared, to state: CircuitBreaker.State) {
        let name: String
        switch state {
        case .closed:
            name = "closed"
            target.metrics.breakerState(0)
            joined(target)
        case .open:
            name = "open"
            target.metrics.breakerState(2)
        case .halfOpen:
            name = "half-open"
            target.metrics.breakerState(1)
        }
        logger.warning(
            "circuit breaker \(name)", metadata: ["upstream": "\(config.name)", "target": "\(target.label)", "state": "\(name)"])
    }

    func tryRetry(now: Int64) -> Bool {
        guard config.retries != nil else { return false }
        return retryBudget.withLockedValue { $0?.tryRetry(now: now) ?? false }
    }

    func recordRequest() {
        guard config.retries != nil else { return }
        let now = Self.now()
        retryBudget.withLockedValue { $0?.recordRequest(now: now) }
    }

    /// Targets with their health, breaker state and load (for the admin API and metrics).
    func snapshot() -> [UpstreamTargetState] {
        targets.map { target in
            let breaker: String
            switch target.breakerState {
            case .closed: breaker = "closed"
            case .open: breaker = "open"
            case .halfOpen: breaker = "half-open"
            }
            return UpstreamTargetState(
                upstream: config.name, target: target.label, healthy: target.healthy.load(ordering: .relaxed),
                breaker: breaker, inFlight: target.inFlight.load(ordering: .relaxed), drained: target.drained.load(ordering: .relaxed),
                backup: target.target.backup, openConnections: target.openConnections.load(ordering: .relaxed),
                connectionsOpened: target.connectionsOpened.load(ordering: .relaxed))
        }
    }
}

/// One target's state as operators see it.
public struct UpstreamTargetState: Sendable, Equatable {
    public let upstream: String
    public let target: String
    public let healthy: Bool
    /// "closed", "open" or "half-open".
    public let breaker: String
    public let inFlight: Int
    /// Taken out of rotation through the admin API.
    public let drained: Bool
    /// A `backup` target (takes requests only while no other target can).
    public var backup = false
    /// Connections open to it on every event loop (HTTP/1.1 connections, or HTTP/2 sessions), idle or busy.
    public var openConnections = 0
    /// Connections opened to it since the gateway started (attempts that failed included).
    public var connectionsOpened = 0
}
