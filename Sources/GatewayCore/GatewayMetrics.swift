import CoreMetrics
import NIOConcurrencyHelpers
import Synchronization
import GatewayHTTP

/// The gateway's metrics through swift-metrics (the Prometheus backend lives in the app). Names start with
/// `gateway_`; label values are bounded: route, upstream, target and listener names from the config, method
/// folded to the standard ones, status to its class, reasons and outcomes from fixed lists. Never a raw path,
/// header or credential.
///
/// Handles are created once per label set and kept, so recording costs a dictionary lookup under an
/// uncontended lock rather than a registry lookup; the per-request ones (`RouteMetrics`, `TargetMetrics`)
/// keep theirs and take no lock at all.
public final class GatewayMetrics: Sendable {
    private let factory: any MetricsFactory
    private let counters = NIOLockedValueBox<[String: Counter]>([:])
    private let meters = NIOLockedValueBox<[String: Meter]>([:])
    private let gauges = NIOLockedValueBox<[String: Gauge]>([:])
    /// The duration histograms (the two per-request ones), kept out of the factory (see `LatencyHistogram`)
    /// and emitted by `emitOwnMetrics(into:)` after the registry's metrics.
    private let histograms = NIOLockedValueBox<[String: LatencyHistogram]>([:])
    /// The per-request counters, kept out of the factory too (see `ShardedCounter`).
    private let shardedCounters = NIOLockedValueBox<[String: ShardedCounter]>([:])

    /// Bucket bounds of every duration histogram in nanoseconds: 0.5 ms to 30 s.
    private static let durationBounds: [Int64] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10), .seconds(30),
    ].map { (bound: Duration) in bound.components.seconds * 1_000_000_000 + bound.components.attoseconds / 1_000_000_000 }

    public init(factory: any MetricsFactory) {
        self.factory = factory
    }

    /// Metrics that go nowhere (tests and tools that do not scrape).
    public static let disabled = GatewayMetrics(factory: NOOPMetricsHandler.instance)

    // MARK: Requests

    /// The request metrics of one route (made once per route: recording needs no label building).
    public func route(_ name: String) -> RouteMetrics { RouteMetrics(route: name, metrics: self) }

    /// The metrics of one upstream target.
    public func target(upstream: String, target: String) -> TargetMetrics {
        TargetMetrics(
            duration: latencyHistogram("gateway_upstream_request_duration_seconds", [("upstream", upstream), ("target", target)]),
            upstream: upstream, target: target, metrics: self)
    }

    /// `gateway_upstream_retries_total{upstream,outcome}`: retries made (`sent`) and refused by the retry budget
    /// (`budget_exhausted`: the failure was answered as it was).
    public func upstreamRetry(upstream: String, outcome: String) {
        counter("gateway_upstream_retries_total", [("upstream", upstream), ("outcome", outcome)]).increment()
    }

    /// `gateway_upstream_hedges_total{upstream,outcome}`: what became of a hedge (`retries.hedge_after_ms`):
    /// `won` (its answer was relayed), `lost` (the first call answered first), `failed` (it got no answer),
    /// `budget_exhausted` (not sent: the retry budget was spent).
    public func upstreamHedge(upstream: String, outcome: String) {
        counter("gateway_upstream_hedges_total", [("upstream", upstream), ("outcome", outcome)]).increment()
    }

    /// `gateway_csrf_refusals_total{route,mode}`: cross-origin requests a route's `csrf` refused (`enforced`) or
    /// would have refused (`report_only`).
    public func crossOriginRefusal(route: String, reportOnly: Bool) {
        counter("gateway_csrf_refusals_total", [("route", route), ("mode", reportOnly ? "report_only" : "enforced")]).increment()
    }

    /// `gateway_request_validation_failures_total{route,part}`: requests a route's `request_validation` refused, by
    /// what was wrong (`query`, `body`). The handles are kept by the route.
    public func requestValidationFailures(route: String, part: String) -> Counter {
        counter("gateway_request_validation_failures_total", [("route", route), ("part", part)])
    }

    /// `gateway_deprecated_requests_total{route}`: requests to a route with `deprecation` (who still calls the old
    /// API shows in the access log's `consumer`). The handle is kept by the route's filter.
    public func deprecatedRequests(route: String) -> Counter {
        counter("gateway_deprecated_requests_total", [("route", route)])
    }

    /// `gateway_tls_certificate_expiry_timestamp_seconds{listener,certificate}`: when a listener's certificate
    /// (the `cert` file) stops being valid, for an alert well before it does.
    public func certificateExpiry(listener: String, certificate: String, notAfter: Int64) {
        gauge("gateway_tls_certificate_expiry_timestamp_seconds", [("listener", listener), ("certificate", certificate)]).record(notAfter)
    }

    /// `gateway_tls_crl_next_update_timestamp_seconds{listener,issuer}`: when a client CA promises its next revocation
    /// list (`client_crl`), for an alert when the file is not refreshed in time.
    public func revocationListNextUpdate(listener: String, issuer: String, nextUpdate: Int64) {
        gauge("gateway_tls_crl_next_update_timestamp_seconds", [("listener", listener), ("issuer", issuer)]).record(nextUpdate)
    }

    /// 0 closed, 1 half-open, 2 open.
    public func breakerState(upstream: String, target: String, state: Int) {
        gauge("gateway_circuit_breaker_state", [("upstream", upstream), ("target", target)]).record(state)
    }

    /// 1 healthy, 0 failing its active health checks.
    public func targetHealth(upstream: String, target: String, healthy: Bool) {
        gauge("gateway_upstream_target_healthy", [("upstream", upstream), ("target", target)]).record(healthy ? 1 : 0)
    }

    // MARK: Filters

    /// outcome: `allowed`, `limited`, `shadow_limited` (shadow mode would have refused) or `store_error`.
    public func rateLimitDecision(route: String, limit: String, outcome: String) {
        counter("gateway_rate_limit_decisions_total", [("route", route), ("limit", limit), ("outcome", outcome)]).increment()
    }

    /// reason: a fixed code (`expired`, `bad_signature`, `unknown_api_key`, `missing_credentials`, ...).
    public func authFailure(route: String, reason: String) {
        counter("gateway_auth_failures_total", [("route", route), ("reason", reason)]).increment()
    }


    /// outcome: `allowed` (2xx), `denied` (any other answer), `error` (no usable answer) or `error_allowed`
    /// (no answer, let through by `on_error: allow`).
    public func externalAuthCheck(service: String, outcome: String) {
        counter("gateway_external_auth_checks_total", [("service", service), ("outcome", outcome)]).increment()
    }

    /// A request refused by its route's `concurrency_limit`.
    public func concurrencyLimited(route: String) {
        counter("gateway_concurrency_limited_total", [("route", route)]).increment()
    }

    /// `gateway_adaptive_concurrency_limit{route}` and `gateway_adaptive_concurrency_min_rtt_seconds{route}`: where a
    /// route's adaptive limit stands, and the idle latency it compares against (0 until first measured).
    public func adaptiveConcurrency(route: String, limit: Int, minRTTNanos: Int64?) {
        gauge("gateway_adaptive_concurrency_limit", [("route", route)]).record(limit)
        gauge("gateway_adaptive_concurrency_min_rtt_seconds", [("route", route)]).record(Double(minRTTNanos ?? 0) / 1e9)
    }

    /// A request refused by its route's `adaptive_concurrency` (503).
    public func adaptiveConcurrencyRefused(route: String) {
        counter("gateway_adaptive_concurrency_refused_total", [("route", route)]).increment()
    }

    /// kind: `delay` or `abort`.
    public func faultInjected(route: String, kind: String) {
        counter("gateway_faults_injected_total", [("route", route), ("kind", kind)]).increment()
    }

    /// outcome: `success` or `failure`.
    public func configReload(outcome: String) {
        counter("gateway_config_reloads_total", [("outcome", outcome)]).increment()
    }

    // MARK: Labels

    static func methodLabel(_ method: HTTPMethod) -> String {
        switch method {
        case .other: return "OTHER"
        default: return method.name
        }
    }

    static func statusClass(_ status: Int) -> String {
        switch status {
        case 100..<200: return "1xx"
        case 200..<300: return "2xx"
        case 300..<400: return "3xx"
        case 400..<500: return "4xx"
        default: return "5xx"
        }
    }

    // MARK: Handle caches

    private static func key(_ name: String, _ labels: [(String, String)]) -> String {
        var key = name
        for (label, value) in labels {
            key += "|"
            key += label
            key += "="
            key += value
        }
        return key
    }

    public func counter(_ name: String, _ labels: [(String, String)]) -> Counter {
        Self.cached(counters, name, labels) { Counter(label: name, dimensions: labels, factory: factory) }
    }

    public func latencyHistogram(_ name: String, _ labels: [(String, String)]) -> LatencyHistogram {
        Self.cached(histograms, name, labels) { LatencyHistogram(name: name, labels: labels, bounds: Self.durationBounds) }
    }

    /// A per-request counter (`gateway_requests_total`, the body byte counters): made once per label set.
    func shardedCounter(_ name: String, _ labels: [(String, String)]) -> ShardedCounter {
        Self.cached(shardedCounters, name, labels) { ShardedCounter(name: name, labels: labels) }
    }

    /// The gateway's own per-request counters and duration histograms in Prometheus text.
    public func emitOwnMetrics(into out: inout [UInt8]) {
        Self.emit(shardedCounters, into: &out)
        Self.emit(histograms, into: &out)
    }

    /// Every series of `all`, one `# TYPE` line per name. Keys start with the name and `|`, so sorted keys keep
    /// each name's series together.
    private static func emit<Series: PrometheusSeries>(_ all: NIOLockedValueBox<[String: Series]>, into out: inout [UInt8]) {
        var currentName: String?
        for (_, series) in all.withLockedValue({ $0 }).sorted(by: { $0.key < $1.key }) {
            if series.name != currentName {
                out.append(contentsOf: "# TYPE \(series.name) \(Series.prometheusType)\n".utf8)
                currentName = series.name
            }
            series.emit(into: &out)
        }
    }

    public func meter(_ name: String, _ labels: [(String, String)]) -> Meter {
        Self.cached(meters, name, labels) { Meter(label: name, dimensions: labels, factory: factory) }
    }

    private func gauge(_ name: String, _ labels: [(String, String)]) -> Gauge {
        Self.cached(gauges, name, labels) { Gauge(label: name, dimensions: labels, factory: factory) }
    }

    /// The handle for one name and label set, made once.
    private static func cached<Handle>(
        _ cache: NIOLockedValueBox<[String: Handle]>, _ name: String, _ labels: [(String, String)], make: () -> Handle
    ) -> Handle {
        let key = key(name, labels)
        return cache.withLockedValue { cache in
            if let handle = cache[key] { return handle }
            let handle = make()
            cache[key] = handle
            return handle
        }
    }
}

/// A metric the gateway keeps itself rather than in the swift-metrics registry, emitted by `emitOwnMetrics`.
protocol PrometheusSeries: AnyObject, Sendable {
    /// The Prometheus type on the family's `# TYPE` line.
    static var prometheusType: String { get }
    var name: String { get }
    /// The series' exposition lines.
    func emit(into out: inout [UInt8])
}

/// `gateway_requests_total{route,method,status_class}`, `gateway_request_duration_seconds{route}` and the body
/// bytes each way (`gateway_request_body_bytes_total{route}`, `gateway_response_body_bytes_total{route}`) for
/// one route. Request counters are made on first use of a method/status pair (so unused pairs do not clutter
/// /metrics).
public final class RouteMetrics: @unchecked Sendable {
    // @unchecked: `counters` is shared memory of atomics; a slot, once set, holds its counter until deinit.
    private static let slots = 40
    private let route: String
    private let metrics: GatewayMetrics
    private let duration: LatencyHistogram
    private let requestBodyBytes: ShardedCounter
    private let responseBodyBytes: ShardedCounter
    /// 8 method slots (7 standard + OTHER) x 5 status classes, each a retained `ShardedCounter` or nil until
    /// the pair is first seen. Read without a lock on every request.
    private let counters: UnsafeMutablePointer<Synchronization.Atomic<UnsafeMutableRawPointer?>>

    init(route: String, metrics: GatewayMetrics) {
        self.route = route
        self.metrics = metrics
        self.duration = metrics.latencyHistogram("gateway_request_duration_seconds", [("route", route)])
        self.requestBodyBytes = metrics.shardedCounter("gateway_request_body_bytes_total", [("route", route)])
        self.responseBodyBytes = metrics.shardedCounter("gateway_response_body_bytes_total", [("route", route)])
        self.counters = .allocate(capacity: Self.slots)
        for slot in 0..<Self.slots { (counters + slot).initialize(to: Synchronization.Atomic(nil)) }
    }

    deinit {
        for slot in 0..<Self.slots {
            if let counter = counters[slot].load(ordering: .acquiring) { Unmanaged<ShardedCounter>.fromOpaque(counter).release() }
        }
        counters.deinitialize(count: Self.slots)
        counters.deallocate()
    }

    /// `bytesIn`/`bytesOut`: body bytes received from the client and sent to it (compressed size when compressed).
    public func record(method: HTTPMethod, status: Int, durationNanos: Int64, bytesIn: Int = 0, bytesOut: Int = 0) {
        if bytesIn > 0 { requestBodyBytes.increment(by: Int64(bytesIn)) }
        if bytesOut > 0 { responseBodyBytes.increment(by: Int64(bytesOut)) }
        let methodSlot = switch method {
        case .GET: 0
        case .HEAD: 1
        case .POST: 2
        case .PUT: 3
        case .DELETE: 4
        case .PATCH: 5
        case .OPTIONS: 6
        default: 7  // OTHER
        }
        let classSlot = min(4, max(0, status / 100 - 1))
        let slot = methodSlot * 5 + classSlot
        if let counter = counters[slot].load(ordering: .acquiring) {
            Unmanaged<ShardedCounter>.fromOpaque(counter)._withUnsafeGuaranteedRef { $0.increment() }
        } else {
            requestCounter(slot: slot, method: method, status: status).increment()
        }
        duration.record(nanoseconds: durationNanos)
    }

    /// The pair's counter on its first request. Threads racing here get the same counter from the registry;
    /// one of them stores it.
    private func requestCounter(slot: Int, method: HTTPMethod, status: Int) -> ShardedCounter {
        let counter = metrics.shardedCounter(
            "gateway_requests_total",
            [("route", route), ("method", GatewayMetrics.methodLabel(method)), ("status_class", GatewayMetrics.statusClass(status))])
        let retained = Unmanaged.passRetained(counter).toOpaque()
        if !counters[slot].compareExchange(expected: nil, desired: retained, ordering: .acquiringAndReleasing).exchanged {
            Unmanaged<ShardedCounter>.fromOpaque(retained).release()
        }
        return counter
    }

    /// What became of a copy sent to the route's `mirror`: `answered` (the mirror upstream answered, whatever
    /// the status), `failed` (it could not: refused, timed out, broke) or `dropped` (the gateway gave it up:
    /// it fell behind the client's body, or the request never completed).
    public func mirrorOutcome(_ outcome: String) {
        metrics.counter("gateway_mirror_requests_total", [("route", route), ("outcome", outcome)]).increment()
    }
}

/// `gateway_upstream_request_duration_seconds{upstream,target}` and `gateway_upstream_errors_total{...,kind}`.
public final class TargetMetrics: Sendable {
    private let duration: LatencyHistogram
    private let upstream: String
    private let target: String
    private let metrics: GatewayMetrics

    init(duration: LatencyHistogram, upstream: String, target: String, metrics: GatewayMetrics) {
        self.duration = duration
        self.upstream = upstream
        self.target = target
        self.metrics = metrics
    }

    /// A try that got a response head after `nanos`.
    public func answered(afterNanos nanos: Int64) { duration.record(nanoseconds: nanos) }

    /// kind: `connect`, `timeout`, `reset`, `status` (a failure status), `overloaded`.
    public func failed(_ kind: String) {
        metrics.counter("gateway_upstream_errors_total", [("upstream", upstream), ("target", target), ("kind", kind)]).increment()
    }

    public func breakerState(_ state: Int) { metrics.breakerState(upstream: upstream, target: target, state: state) }

    public func health(_ healthy: Bool) { metrics.targetHealth(upstream: upstream, target: target, healthy: healthy) }
}
