import GatewayPolicy
import NIOConcurrencyHelpers
import NIOCore

/// `auth.basic.max_failures`: failed password checks counted per client address over a sliding window. At the
/// limit the address is refused (429) for every Basic attempt, remembered credentials included (otherwise
/// guesses could be tested against the cache for free), until its oldest failure leaves the window.
///
/// Per process, in memory; a reload starts the counts afresh. At most `maxAddresses` addresses are tracked
/// (expired ones are swept first, then arbitrary ones make room), so a flood from many addresses cannot grow
/// it without bound.
public final class FailedLoginThrottle: Sendable {
    private struct State {
        var failures: [String: [Int64]] = [:]
        var operationsSinceSweep = 0
    }

    private let window: SlidingWindowLog
    private let maxAddresses: Int
    private let clock: @Sendable () -> Int64
    private let state = NIOLockedValueBox(State())

    /// `clock`: monotonic microseconds (injected for tests).
    public init(
        limit: Int, windowSeconds: Int, maxAddresses: Int = 65_536,
        clock: @escaping @Sendable () -> Int64 = { Int64(NIODeadline.now().uptimeNanoseconds / 1000) }
    ) {
        self.window = SlidingWindowLog(limit: limit, windowMicros: Int64(windowSeconds) * 1_000_000)
        self.maxAddresses = maxAddresses
        self.clock = clock
    }

    /// Microseconds until `address` may try again, or nil when it may now.
    public func blockedFor(_ address: String) -> Int64? {
        let now = clock()
        return state.withLockedValue { state -> Int64? in
            guard var log = state.failures[address] else { return nil }
            window.prune(&log, now: now)
            let evaluation = window.evaluate(log, cost: 1, now: now)
            state.failures[address] = log.isEmpty ? nil : log
            return evaluation.allowed ? nil : evaluation.retryAfterMicros
        }
    }

    public func recordFailure(_ address: String) {
        let now = clock()
        state.withLockedValue { state in
            state.operationsSinceSweep += 1
            if state.operationsSinceSweep >= 1024 || state.failures.count >= maxAddresses {
                state.operationsSinceSweep = 0
                state.failures = state.failures.filter { $0.value.last.map { $0 > now - window.windowMicros } ?? false }
            }
            var log = state.failures[address] ?? []
            if log.isEmpty, state.failures.count >= maxAddresses { state.failures.remove(at: state.failures.startIndex) }
            window.prune(&log, now: now)
            window.charge(&log, cost: 1, now: now)
            // Only the newest `limit` failures matter to the decision.
            if log.count > window.limit { log.removeFirst(log.count - window.limit) }
            state.failures[address] = log
        }
    }

    /// Addresses currently tracked (for tests).
    public var trackedAddresses: Int { state.withLockedValue { $0.failures.count } }
}
