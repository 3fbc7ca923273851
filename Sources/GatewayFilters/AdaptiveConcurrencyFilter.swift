import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import NIOConcurrencyHelpers

/// A route's `adaptive_concurrency` (Envoy's adaptive concurrency filter): its requests in flight are limited by
/// a number that follows the upstream's latency (`AdaptiveConcurrency`), so an overloaded upstream sheds what it
/// cannot serve with a fast `503` instead of everyone queueing until timeouts. A slot is taken after the route's
/// other checks (and a `fault` delay) and given back when the request completes, with the time from then to the
/// upstream's response head as a sample.
public struct AdaptiveConcurrencyFilter: GatewayFilter {
    private let controller: Controller
    public let settings: AdaptiveConcurrency.Settings
    private let routeName: String
    private let metrics: GatewayMetrics

    /// The route's controller, shared by every event loop. A pthread lock (`NIOLockedValueBox`), not a `Mutex`:
    /// ThreadSanitizer cannot see `Mutex`'s futex on Linux (see the README's Tests section).
    final class Controller: Sendable {
        let state: NIOLockedValueBox<AdaptiveConcurrency>
        init(_ controller: AdaptiveConcurrency) { state = NIOLockedValueBox(controller) }
    }

    public init(routeName: String, settings: AdaptiveConcurrency.Settings, metrics: GatewayMetrics = .disabled) {
        self.controller = Controller(AdaptiveConcurrency(settings: settings, now: EventClock.now().uptimeNanoseconds.signed))
        self.settings = settings
        self.routeName = routeName
        self.metrics = metrics
        metrics.adaptiveConcurrency(route: routeName, limit: settings.minLimit, minRTTNanos: nil)
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        guard controller.state.withLockedValue({ $0.tryAcquire() }) else {
            metrics.adaptiveConcurrencyRefused(route: routeName)
            return .respond(.error(.upstreamOverloaded, requestID: context.requestID))
        }
        context.adaptiveConcurrencyAdmittedAt = EventClock.now()
        return .proceed
    }

    public func onComplete(context: RequestContext, outcome: RequestOutcome) {
        guard let admittedAt = context.adaptiveConcurrencyAdmittedAt else { return }
        let now = EventClock.now().uptimeNanoseconds.signed
        let answeredAt = context.upstreamAnsweredAt?.uptimeNanoseconds.signed
        let (changed, limit, minRTT) = controller.state.withLockedValue { controller in
            let before = (controller.limit, controller.minRTTNanos)
            controller.release(startedAt: admittedAt.uptimeNanoseconds.signed, answeredAt: answeredAt, now: now)
            return (before != (controller.limit, controller.minRTTNanos), controller.limit, controller.minRTTNanos)
        }
        // The gauges move when either does (a measurement can end with the limit where it was).
        if changed { metrics.adaptiveConcurrency(route: routeName, limit: limit, minRTTNanos: minRTT) }
    }
}

extension UInt64 {
    /// Uptime nanoseconds as the controller's signed clock (2^63 ns is 292 years).
    fileprivate var signed: Int64 { Int64(truncatingIfNeeded: self) }
}
