/// A per-target circuit breaker as a pure, clock-injected state machine (time in microseconds).
///
/// - closed: requests flow. It opens after `failureThreshold` consecutive failures, or when, over the last
///   `windowMicros`, at least `minimumRequests` requests were seen and the share that failed exceeds
///   `failureRatio`.
/// - open: requests are refused (the caller answers 503 without touching the target) for an open period
///   that doubles with each consecutive trip, capped: `openMicros`, then 2x, 4x, ... up to `maxOpenMicros`.
/// - half-open: after the open period, up to `halfOpenRequests` probes go through; one success closes the
///   breaker (and resets the trip count), one failure reopens it.
///
/// Worked example: threshold 3, open 30 s. Failures at t=1, 2, 3 s open it until 33 s. A request at 10 s is
/// refused with retry after 23 s. At 33 s one probe is let through; if it fails the breaker reopens, now for
/// 60 s (second trip); if it succeeds the breaker closes and the next trip opens for 30 s again.
public struct CircuitBreaker: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var failureThreshold: Int
        /// 0...1; nil disables the ratio rule.
        public var failureRatio: Double?
        public var minimumRequests: Int
        public var windowMicros: Int64
        public var openMicros: Int64
        public var maxOpenMicros: Int64
        public var halfOpenRequests: Int

        public init(
            failureThreshold: Int, failureRatio: Double? = nil, minimumRequests: Int = 20, windowMicros: Int64 = 10_000_000,
            openMicros: Int64, maxOpenMicros: Int64? = nil, halfOpenRequests: Int = 1
        ) {
            self.failureThreshold = max(1, failureThreshold)
            self.failureRatio = failureRatio
            self.minimumRequests = max(1, minimumRequests)
            self.windowMicros = max(1, windowMicros)
            self.openMicros = max(1, openMicros)
            self.maxOpenMicros = max(self.openMicros, maxOpenMicros ?? self.openMicros * 10)
            self.halfOpenRequests = max(1, halfOpenRequests)
        }
    }

    public enum State: Sendable, Equatable {
        case closed
        case open(until: Int64)
        case halfOpen(probesInFlight: Int)
    }

    /// What the breaker says about sending one request now.
    public enum Admission: Sendable, Equatable {
        case allowed
        /// Allowed as one of the half-open probes; report its outcome like any other request.
        case probe
        case refused(retryAfterMicros: Int64)
    }

    public let settings: Settings
    public private(set) var state: State = .closed
    public private(set) var consecutiveFailures = 0
    /// Consecutive trips without a success in between (sets the open period).
    public private(set) var trips = 0
    private var window: RollingCounts

    public init(settings: Settings) {
        self.settings = settings
        self.window = RollingCounts(windowMicros: settings.windowMicros, buckets: 10)
    }

    /// Whether a request may go to the target now. A probe admission counts as in flight until reported.
    public mutating func admit(now: Int64) -> Admission {
        switch state {
        case .closed:
            return .allowed
        case .open(let until):
            if now < until { return .refused(retryAfterMicros: until - now) }
            state = .halfOpen(probesInFlight: 1)
            return .probe
        case .halfOpen(let inFlight):
            guard inFlight < settings.halfOpenRequests else { return .refused(retryAfterMicros: 1) }
            state = .halfOpen(probesInFlight: inFlight + 1)
            return .probe
        }
    }

    /// Whether the breaker would admit a request now, without admitting it (for choosing among targets).
    public func wouldAdmit(now: Int64) -> Bool {
        switch state {
        case .closed: return true
        case .open(let until): return now >= until
        case .halfOpen(let inFlight): return inFlight < settings.halfOpenRequests
        }
    }

    /// Reports how a request that was admitted ended. Returns the new state when it changed.
    @discardableResult
    public mutating func record(success: Bool, now: Int64) -> State? {
        window.add(failure: !success, now: now)
        let before = state
        switch state {
        case .closed:
            if success {
                consecutiveFailures = 0
            } else {
                consecutiveFailures += 1
                if consecutiveFailures >= settings.failureThreshold || ratioExceeded(now: now) { trip(now: now) }
            }
        case .halfOpen(let inFlight):
            if success {
                state = .closed
                consecutiveFailures = 0
                trips = 0
                window.reset()
            } else {
                _ = inFlight
                trip(now: now)
            }
        case .open:
            // A request admitted before the breaker opened finished late; it does not change the verdict.
            break
        }
        return state == before ? nil : state
    }

    /// An admitted request ended without a verdict on the target (the client went away first). A probe slot
    /// is handed back so the half-open state cannot wedge.
    public mutating func release(probe: Bool) {
        guard probe, case .halfOpen(let inFlight) = state else { return }
        state = .halfOpen(probesInFlight: max(0, inFlight - 1))
    }

    private func ratioExceeded(now: Int64) -> Bool {
        guard let ratio = settings.failureRatio else { return false }
        let (total, failures) = window.totals(now: now)
        return total >= settings.minimumRequests && Double(failures) / Double(total) > ratio
    }

    private mutating func trip(now: Int64) {
        trips += 1
        let shift = Int64(min(trips - 1, 30))
        let period = min(settings.maxOpenMicros, settings.openMicros << shift)
        state = .open(until: now + period)
        consecutiveFailures = 0
        window.reset()
    }

    public var isOpen: Bool {
        if case .open = state { return true }
        return false
    }
}

/// Request and failure counts over a rolling window, kept in `buckets` slices of the window.
public struct RollingCounts: Sendable, Equatable {
    private var totals: [Int]
    private var failures: [Int]
    private var bucketStarts: [Int64]
    private let bucketMicros: Int64

    public init(windowMicros: Int64, buckets: Int) {
        let count = max(1, buckets)
        bucketMicros = max(1, windowMicros / Int64(count))
        totals = Array(repeating: 0, count: count)
        failures = Array(repeating: 0, count: count)
        bucketStarts = Array(repeating: Int64.min, count: count)
    }

    public mutating func add(failure: Bool, now: Int64) {
        let start = now - now % bucketMicros
        let index = Int((now / bucketMicros) % Int64(totals.count))
        if bucketStarts[index] != start {
            bucketStarts[index] = start
            totals[index] = 0
            failures[index] = 0
        }
        totals[index] += 1
        if failure { failures[index] += 1 }
    }

    /// Requests and failures whose bucket still lies in the window ending at `now`.
    public func totals(now: Int64) -> (requests: Int, failures: Int) {
        let oldest = now - bucketMicros * Int64(totals.count)
        var requests = 0
        var failed = 0
        for index in totals.indices where bucketStarts[index] > oldest {
            requests += totals[index]
            failed += failures[index]
        }
        return (requests, failed)
    }

    public mutating func reset() {
        for index in totals.indices {
            totals[index] = 0
            failures[index] = 0
            bucketStarts[index] = Int64.min
        }
    }
}

/// Caps retries at a share of requests over a rolling window, so a failing upstream does not get its load
/// multiplied by retries (a retry storm). A small floor lets the first few retries through on a quiet upstream.
///
/// Worked example: ratio 0.2, floor 3. After 100 requests in the window, up to max(3, 20) = 20 retries are
/// allowed; with only 5 requests, 3.
public struct RetryBudget: Sendable, Equatable {
    public let ratio: Double
    public let minimumRetries: Int
    private var requests: RollingCounts
    private var retries: RollingCounts

    public init(ratio: Double, minimumRetries: Int = 3, windowMicros: Int64 = 10_000_000) {
        self.ratio = max(0, ratio)
        self.minimumRetries = max(0, minimumRetries)
        requests = RollingCounts(windowMicros: windowMicros, buckets: 10)
        retries = RollingCounts(windowMicros: windowMicros, buckets: 10)
    }

    public mutating func recordRequest(now: Int64) { requests.add(failure: false, now: now) }

    /// Takes one retry from the budget if there is one left.
    public mutating func tryRetry(now: Int64) -> Bool {
        let allowed = max(minimumRetries, Int(Double(requests.totals(now: now).requests) * ratio))
        guard retries.totals(now: now).requests < allowed else { return false }
        retries.add(failure: false, now: now)
        return true
    }
}

/// Active health checking: a target turns unhealthy after `unhealthyThreshold` failed probes in a row and
/// healthy again after `healthyThreshold` good ones. Targets start healthy.
public struct HealthCheckState: Sendable, Equatable {
    public let healthyThreshold: Int
    public let unhealthyThreshold: Int
    public private(set) var isHealthy = true
    private var streak = 0

    public init(healthyThreshold: Int, unhealthyThreshold: Int) {
        self.healthyThreshold = max(1, healthyThreshold)
        self.unhealthyThreshold = max(1, unhealthyThreshold)
    }

    /// Returns the new health when it changed.
    public mutating func record(success: Bool) -> Bool? {
        if success == isHealthy {
            streak = 0
            return nil
        }
        streak += 1
        if streak >= (isHealthy ? unhealthyThreshold : healthyThreshold) {
            isHealthy.toggle()
            streak = 0
            return isHealthy
        }
        return nil
    }
}
