import GatewayConfig
import GatewayCore
import GatewayHTTP
import NIOConcurrencyHelpers

/// A route's `concurrency_limit`: at most `max` requests per key (client address, consumer, header value, or the
/// whole route) in flight at once in this process; beyond it `429 TOO_MANY_CONCURRENT_REQUESTS`. Where a rate
/// limit counts arrivals, this counts what is still running: one client's slow requests (or HTTP/2 streams, or
/// open WebSockets) cannot take all of an upstream's capacity. A slot is taken after the route's other checks and
/// given back when the request completes, however it ends.
public struct ConcurrencyLimitFilter: GatewayFilter {
    private let config: ConcurrencyLimitConfig
    private let counter: InFlightCounter
    private let routeName: String
    private let metrics: GatewayMetrics

    public init(routeName: String, config: ConcurrencyLimitConfig, metrics: GatewayMetrics = .disabled) {
        self.config = config
        self.counter = InFlightCounter()
        self.routeName = routeName
        self.metrics = metrics
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        // overrides: another max for some callers, or none.
        guard let max = config.max(consumer: context.consumer, claims: context.claims) else { return .proceed }
        let (kind, value) = config.key.counted(head: head, context: context)
        let slot = kind + ":" + value
        guard counter.acquire(slot, max: max) else {
            metrics.concurrencyLimited(route: routeName)
            return .respond(.error(.concurrencyLimited, requestID: context.requestID))
        }
        context.concurrencySlot = slot
        return .proceed
    }

    public func onComplete(context: RequestContext, outcome: RequestOutcome) {
        if let slot = context.concurrencySlot { counter.release(slot) }
    }
}

/// Requests in flight per key, shared by every event loop.
final class InFlightCounter: Sendable {
    private let counts = NIOLockedValueBox<[String: Int]>([:])

    init() {}

    /// Takes a slot for `key`; false when it has `max` already.
    func acquire(_ key: String, max: Int) -> Bool {
        counts.withLockedValue { counts in
            let current = counts[key, default: 0]
            guard current < max else { return false }
            counts[key] = current + 1
            return true
        }
    }

    func release(_ key: String) {
        counts.withLockedValue { counts in
            let remaining = counts[key, default: 1] - 1
            counts[key] = remaining > 0 ? remaining : nil  // an idle key costs nothing
        }
    }

    func inFlight(_ key: String) -> Int { counts.withLockedValue { $0[key, default: 0] } }
}
