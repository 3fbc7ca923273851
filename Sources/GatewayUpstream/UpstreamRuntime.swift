import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Logging
import NIOCore

/// One upstream (as configured) on one event loop: its targets' connection pools, the balancer over them,
/// and this loop's share of the connection cap with the requests queued for it.
///
/// Loop-bound, so none of this needs a lock; what all loops must agree on (breakers, health, in-flight
/// counts, the retry budget) lives in the process-wide `UpstreamShared`.
final class UpstreamRuntime {
    let config: UpstreamConfig
    let shared: UpstreamShared
    let eventLoop: EventLoop
    let logger: Logger
    private(set) var pools: [TargetPool] = []

    let readTimeout: TimeAmount
    let connectTimeout: TimeAmount
    let perTryTimeout: TimeAmount?
    let totalTimeout: TimeAmount?
    /// Tries per request: the first plus `retries.attempts`.
    let maxTries: Int
    private let backoff: Backoff?

    private var balancer: Balancer
    private var random = SplitMix64()
    /// `sticky_cookie`: the cookie value naming each target (empty without one: the hot path checks that), and
    /// the way back from a value to its target.
    let stickyValues: [String]
    private let stickyTargets: [String: Int]
    /// Which targets are `backup` ones (empty when none is: the usual case takes the plain path).
    private let backupTargets: [Bool]

    /// Connections open or being opened to any target of this upstream on this loop.
    private(set) var openConnections = 0
    /// This loop's share of `max_connections` (nil: unlimited).
    private let connectionLimit: Int?
    /// This loop's share of `max_pending_requests`.
    private let pendingLimit: Int
    /// Requests waiting for a connection slot, oldest first.
    private var waiters: [ForwardingCall] = []
    private var serveScheduled = false

    init(config: UpstreamConfig, shared: UpstreamShared, eventLoop: EventLoop, loopIndex: Int, loopCount: Int, logger: Logger) {
        self.config = config
        self.shared = shared
        self.eventLoop = eventLoop
        self.logger = logger
        self.readTimeout = .milliseconds(Int64(config.readTimeoutMs))
        self.connectTimeout = .milliseconds(Int64(config.connectTimeoutMs))
        self.perTryTimeout = config.retries?.perTryTimeoutMs.map { .milliseconds(Int64($0)) }
        self.totalTimeout = config.totalTimeoutMs.map { .milliseconds(Int64($0)) }
        self.maxTries = 1 + (config.retries?.attempts ?? 0)
        stickyValues = config.stickyCookie == nil ? [] : config.targets.map { Self.stickyValue(upstream: config.name, target: $0.label) }
        stickyTargets = Dictionary(stickyValues.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        backupTargets = config.targets.contains(where: \.backup) ? config.targets.map(\.backup) : []
        if let retries = config.retries, retries.backoffMs > 0 {
            let base = Int64(retries.backoffMs) * 1000
            backoff = Backoff(baseMicros: base, capMicros: max(base, Int64(retries.maxBackoffMs) * 1000))
        } else {
            backoff = nil
        }
        // Caps are split evenly over the loops (each gets at least one), so no loop waits on another's.
        let loops = max(1, loopCount)
        connectionLimit = config.maxConnections.map { max(1, ($0 + loops - 1) / loops) }
        pendingLimit = (config.maxPendingRequests + loops - 1) / loops
        let strategy: Balancer.Strategy
        switch config.balance {
        case .roundRobin: strategy = .roundRobin
        case .random: strategy = .random
        case .leastRequest: strategy = .leastRequest
        case .consistentHash: strategy = .consistentHash
        }
        balancer = Balancer(strategy: strategy, weights: config.targets.map(\.weight))
        // Loops start at different targets so that, across loops, the first requests spread out.
        for _ in 0..<(loopIndex % max(1, config.targets.count)) {
            _ = balancer.pick(eligible: { _ in true }, random: &random)
        }
        pools = shared.targets.map { TargetPool(shared: $0, runtime: self) }
    }

    // MARK: Choosing a target

    enum Choice {
        /// Send to this target; `probe` when its breaker admitted the request as a half-open probe.
        case target(TargetPool, probe: Bool)
        /// No target may take the request now.
        case shutOut(retryAfterSeconds: Int)
    }

    /// Picks a target the balancer likes among those that are healthy and whose breaker admits a request,
    /// preferring ones this request has not tried yet. `preferred` (the sticky cookie's target) goes first when
    /// it can take the request.
    func choose(tried: TriedTargets, hashKey: String?, preferred: Int? = nil) -> Choice {
        let now = UpstreamShared.now()
        let panic = shared.inPanic(now: now)
        if !backupTargets.isEmpty { return chooseWithBackups(tried: tried, hashKey: hashKey, preferred: preferred, now: now, panic: panic) }
        if let preferred, !tried.contains(preferred), shared.isEligible(preferred, now: now, panic: panic),
            let choice = admitted(preferred, now: now, panic: panic)
        {
            return choice  // else balanced like any request
        }
        if let choice = pickAdmitted(now: now, panic: panic, hashKey: hashKey, allowed: { !tried.contains($0) }) {
            return choice
        }
        if !tried.isEmpty, let choice = pickAdmitted(now: now, panic: panic, hashKey: hashKey, allowed: { _ in true }) {
            return choice
        }
        return .shutOut(retryAfterSeconds: shared.retryAfterSeconds(now: now))
    }

    /// `choose` for an upstream with backup targets: the other targets first, then the backups, each before a
    /// target this request has tried already; breakers are ignored (panic) only when neither tier can take it.
    /// A sticky cookie naming a backup is followed only while no other target can take the request, so clients
    /// return to the primary targets when they recover.
    private func chooseWithBackups(tried: TriedTargets, hashKey: String?, preferred: Int?, now: Int64, panic: Bool) -> Choice {
        for backup in [false, true] {
            if let preferred, backupTargets[preferred] == backup, !tried.contains(preferred),
                shared.isEligible(preferred, now: now, panic: false), let choice = admitted(preferred, now: now, panic: false)
            {
                return choice
            }
            let tier = backupTargets
            if let choice = pickAdmitted(now: now, panic: false, hashKey: hashKey, allowed: { tier[$0] == backup && !tried.contains($0) }) {
                return choice
            }
        }
        if panic, let choice = pickAdmitted(now: now, panic: true, hashKey: hashKey, allowed: { !tried.contains($0) }) { return choice }
        if !tried.isEmpty, let choice = pickAdmitted(now: now, panic: panic, hashKey: hashKey, allowed: { _ in true }) { return choice }
        return .shutOut(retryAfterSeconds: shared.retryAfterSeconds(now: now))
    }

    private func pickAdmitted(now: Int64, panic: Bool, hashKey: String?, allowed: (Int) -> Bool) -> Choice? {
        var refused: [Int] = []
        while true {
            let shared = self.shared
            let pick = balancer.pick(
                eligible: { index in
                    allowed(index) && !refused.contains(index) && shared.isEligible(index, now: now, panic: panic)
                },
                inFlight: { shared.targets[$0].inFlight.load(ordering: .relaxed) },
                hashKey: hashKey,
                weight: shared.slowStart.map { slowStart in { shared.effectiveWeight($0, now: now, slowStart: slowStart) } },
                random: &random)
            guard let pick else { return nil }
            if let choice = admitted(pick, now: now, panic: panic) { return choice }
            refused.append(pick)  // another loop took the last probe slot meanwhile
        }
    }

    /// Target `index` as the choice if its breaker admits a request now (in panic, every target does); nil when
    /// it refuses.
    private func admitted(_ index: Int, now: Int64, panic: Bool) -> Choice? {
        if panic { return .target(pools[index], probe: false) }
        let (admission, change) = shared.targets[index].admit(now: now)
        if let change { shared.logTransition(shared.targets[index], to: change) }
        switch admission {
        case .allowed: return .target(pools[index], probe: false)
        case .probe: return .target(pools[index], probe: true)
        case .refused: return nil
        }
    }

    /// The pause before retry number `retry` (0 for the first retry): exponential from `backoff_ms`, with jitter.
    func backoffDelay(retry: Int) -> TimeAmount {
        guard let backoff else { return .zero }
        let unit = Double(random.next() >> 11) / Double(1 << 53)
        return .microseconds(backoff.delayMicros(attempt: retry, random: unit))
    }

    /// The target the request's sticky cookie names, when the upstream has one and the cookie names a target.
    func stickyTarget(headers: HeaderList) -> Int? {
        guard let sticky = config.stickyCookie, let value = HeaderRules.cookie(named: sticky.name, in: headers) else { return nil }
        return stickyTargets[value]
    }

    /// The `Set-Cookie` value that keeps a client on target `index`.
    func stickySetCookie(target index: Int) -> String? {
        guard let sticky = config.stickyCookie, stickyValues.indices.contains(index) else { return nil }
        var cookie = "\(sticky.name)=\(stickyValues[index]); Path=/; HttpOnly; SameSite=Lax"
        if let maxAge = sticky.maxAgeSeconds { cookie += "; Max-Age=\(maxAge)" }
        if sticky.secure { cookie += "; Secure" }
        return cookie
    }

    /// A target's cookie value: FNV-1a (64 bits, hex) of the upstream's name and the target, so every gateway
    /// instance (and the next one after a restart) names a target alike, and no address shows in the cookie.
    static func stickyValue(upstream: String, target: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in (upstream + "|" + target).utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The consistent-hash key of a request (nil when the balancer does not hash or the key is absent).
    func hashKey(headers: HeaderList, clientIP: String) -> String? {
        guard config.balance == .consistentHash else { return nil }
        return config.hashOn.value(in: headers, clientIP: clientIP, consumer: nil)
    }

    // MARK: Connections and the connection cap

    /// Gives `call` a connection to `pool`: an idle one, a new one within the cap, or a place in the queue.
    func acquireConnection(for call: ForwardingCall, to pool: TargetPool) {
        if pool.isHTTP2 {
            call.connect(to: pool)
        } else if let connection = pool.takeIdle() {
            call.attach(connection)
        } else if makeRoom(for: pool) {
            call.connect(to: pool)
        } else if waiters.count < pendingLimit {
            waiters.append(call)
            call.waitForConnection(timeout: connectTimeout)
        } else {
            call.connectionCapReached()
        }
    }

    func removeWaiter(_ call: ForwardingCall) {
        if let index = waiters.firstIndex(where: { $0 === call }) { waiters.remove(at: index) }
    }

    /// Whether a new connection to `pool` fits under the cap, closing another target's idle connection
    /// to make room when needed.
    private func makeRoom(for pool: TargetPool) -> Bool {
        guard let connectionLimit, openConnections >= connectionLimit else { return true }
        for other in pools where other !== pool {
            if let idle = other.takeIdle() {
                idle.close()  // releases its slot at once
                return openConnections < connectionLimit
            }
        }
        return false
    }

    func connectionOpened() { openConnections += 1 }

    func connectionEnded() {
        openConnections -= 1
        scheduleServingWaiters()
    }

    func connectionParked() { scheduleServingWaiters() }

    /// Hands freed slots and parked connections to queued requests, on a later tick: this runs from inside
    /// another call's close or park, which must finish first.
    private func scheduleServingWaiters() {
        guard !waiters.isEmpty, !serveScheduled else { return }
        serveScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            serveScheduled = false
            while let call = waiters.first, let pool = call.pool {
                if let connection = pool.takeIdle() {
                    waiters.removeFirst()
                    call.attach(connection)
                } else if makeRoom(for: pool) {
                    waiters.removeFirst()
                    call.connect(to: pool)
                } else {
                    break
                }
            }
        }
    }
}

/// The targets one request tried, in order. Most requests make one try, which needs no allocation.
struct TriedTargets {
    private(set) var count = 0
    private var first = -1
    private var rest: [Int] = []

    var isEmpty: Bool { count == 0 }

    mutating func append(_ index: Int) {
        if count == 0 { first = index } else { rest.append(index) }
        count += 1
    }

    func contains(_ index: Int) -> Bool {
        count > 0 && (first == index || rest.contains(index))
    }

    var all: [Int] { count == 0 ? [] : [first] + rest }
}
