import CoreMetrics
import GatewayClient
import NIOConcurrencyHelpers
import GatewayConfig
import GatewayCore
import Logging
import NIOCore
import Synchronization

/// One finished request as an OpenTelemetry server span.
public struct SpanRecord: Sendable, Equatable {
    public var traceID: String
    public var spanID: String
    public var parentSpanID: String?
    public var name: String
    public var startUnixNanos: UInt64
    public var endUnixNanos: UInt64
    public var isError: Bool
    public var attributes: [(key: String, value: AttributeValue)]

    public enum AttributeValue: Sendable, Equatable {
        case string(String)
        case int(Int)
    }

    public static func == (lhs: SpanRecord, rhs: SpanRecord) -> Bool {
        lhs.traceID == rhs.traceID && lhs.spanID == rhs.spanID && lhs.parentSpanID == rhs.parentSpanID && lhs.name == rhs.name
            && lhs.startUnixNanos == rhs.startUnixNanos && lhs.endUnixNanos == rhs.endUnixNanos && lhs.isError == rhs.isError
            && lhs.attributes.elementsEqual(rhs.attributes) { $0.key == $1.key && $0.value == $1.value }
    }
}

/// Queues finished spans and sends them in batches to an OTLP/HTTP collector, JSON-encoded
/// (https://opentelemetry.io/docs/specs/otlp/#otlphttp). Written here rather than with swift-otel: the
/// wire format is small and stable, and swift-otel's dependency tree would add minutes to every clean build.
///
/// Export never blocks or slows a request: `record` appends under a lock; a timer on one event loop sends
/// what has queued. When the collector is slow or down the queue is capped, and spans beyond the cap are
/// dropped and counted; failures are logged once per outage.
public final class OTLPExporter: Sendable {
    public let config: TracingConfig
    private let eventLoop: EventLoop
    private let logger: Logger
    private let state = NIOLockedValueBox(State())
    private let timer = NIOLockedValueBox<RepeatedTask?>(nil)
    /// One batch at a time is in flight: the next waits for it.
    private let sending = Atomic<Bool>(false)

    private struct State {
        var queue: [SpanRecord] = []
        var failing = false
    }

    /// `gateway_spans_total{outcome}`: spans the collector accepted, and spans dropped (queue full, or a batch
    /// the collector refused or could not be reached for).
    private let exported: Counter
    private let dropped: Counter
    /// Content-Type and the configured extra headers, fixed per exporter.
    private let requestHeaders: [(String, String)]

    /// At most this many spans per request to the collector.
    static let maxBatch = 512

    public init(config: TracingConfig, eventLoop: EventLoop, logger: Logger, metrics: GatewayMetrics = .disabled) {
        self.config = config
        self.eventLoop = eventLoop
        self.logger = logger
        self.exported = metrics.counter("gateway_spans_total", [("outcome", "exported")])
        self.dropped = metrics.counter("gateway_spans_total", [("outcome", "dropped")])
        self.requestHeaders = [("Content-Type", "application/json")] + config.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    public func start() {
        let interval = TimeAmount.milliseconds(Int64(config.flushIntervalMs))
        let task = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.flush()
        }
        timer.withLockedValue { $0 = task }
    }

    /// Stops the timer and sends what is queued (bounded by a few seconds).
    public func shutdown() async {
        timer.withLockedValue { $0 }?.cancel()
        for _ in 0..<4 where state.withLockedValue({ !$0.queue.isEmpty }) {
            try? await flush(force: true).get()
        }
    }

    public func record(_ span: SpanRecord) {
        let queued = state.withLockedValue { state -> Bool in
            guard state.queue.count < config.maxQueueSpans else { return false }
            state.queue.append(span)
            return true
        }
        if !queued { dropped.increment() }
    }

    @discardableResult
    func flush(force: Bool = false) -> EventLoopFuture<Void> {
        guard force || !sending.exchange(true, ordering: .acquiring) else { return eventLoop.makeSucceededVoidFuture() }
        let batch = state.withLockedValue { state -> [SpanRecord] in
            let count = min(Self.maxBatch, state.queue.count)
            defer { state.queue.removeFirst(count) }
            return Array(state.queue.prefix(count))
        }
        guard !batch.isEmpty else {
            sending.store(false, ordering: .releasing)
            return eventLoop.makeSucceededVoidFuture()
        }
        let body = Array(Self.encode(batch, serviceName: config.serviceName).utf8)
        let logger = self.logger
        return HTTPFetch.request(
            "POST", config.otlpEndpoint, headers: requestHeaders, body: body, on: eventLoop, timeout: .seconds(10), maxBytes: 65_536
        ).map { response -> Void in
            let ok = (200..<300).contains(response.status)
            (ok ? self.exported : self.dropped).increment(by: Int64(batch.count))
            let recovered = self.state.withLockedValue { state -> Bool in
                defer { state.failing = !ok }
                return state.failing && ok
            }
            if recovered { logger.info("span export works again", metadata: ["endpoint": "\(self.config.otlpEndpoint)"]) }
            if !ok { self.exportFailed("the collector answered \(response.status)", batch: batch.count) }
        }.recover { error in
            self.dropped.increment(by: Int64(batch.count))
            self.exportFailed("\(error)", batch: batch.count)
        }.always { _ in
            self.sending.store(false, ordering: .releasing)
        }
    }

    private func exportFailed(_ reason: String, batch: Int) {
        let first = state.withLockedValue { state -> Bool in
            defer { state.failing = true }
            return !state.failing
        }
        if first {
            logger.warning(
                "span export failed; dropping spans until the collector answers",
                metadata: ["endpoint": "\(config.otlpEndpoint)", "error": "\(reason)", "spans": .stringConvertible(batch)])
        }
    }

    // MARK: Encoding

    /// The OTLP JSON document for `spans` (ids as lowercase hex, as the OTLP JSON mapping says).
    static func encode(_ spans: [SpanRecord], serviceName: String) -> String {
        var json = #"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"#
        json += quote(serviceName) + #"}}]},"scopeSpans":[{"scope":{"name":"gateway"},"spans":["#
        for (index, span) in spans.enumerated() {
            if index > 0 { json += "," }
            json += #"{"traceId":"\#(span.traceID)","spanId":"\#(span.spanID)""#
            if let parent = span.parentSpanID { json += #","parentSpanId":"\#(parent)""# }
            json += #","name":"# + quote(span.name) + #","kind":2"#
            json += #","startTimeUnixNano":"\#(span.startUnixNanos)","endTimeUnixNano":"\#(span.endUnixNanos)","attributes":["#
            for (position, attribute) in span.attributes.enumerated() {
                if position > 0 { json += "," }
                json += #"{"key":"# + quote(attribute.key) + #","value":"#
                switch attribute.value {
                case .string(let text): json += #"{"stringValue":"# + quote(text) + "}}"
                case .int(let number): json += #"{"intValue":"\#(number)"}}"#
                }
            }
            json += #"],"status":{"code":\#(span.isError ? 2 : 0)}}"#
        }
        return json + "]}]}]}"
    }

    static func quote(_ text: String) -> String { JSONText.quoted(text) }

}

/// Turns each finished, sampled request into a span for the exporter (a completion hook: it adds no work
/// before the response).
public struct SpanExportFilter: GatewayFilter {
    let exporter: OTLPExporter

    public init(exporter: OTLPExporter) { self.exporter = exporter }

    public func onComplete(context: RequestContext, outcome: RequestOutcome) {
        guard context.traceSampled, let traceID = context.traceID, let spanID = context.spanID else { return }
        let end = WallClock.nanoseconds()
        let duration = UInt64(max(0, outcome.durationNanos))
        let routeName = context.route?.name
        var attributes: [(key: String, value: SpanRecord.AttributeValue)] = [
            ("http.request.method", .string(context.method.name)),
            ("http.response.status_code", .int(outcome.status)),
            ("url.path", .string(String(context.uri.split(separator: "?", maxSplits: 1).first ?? ""))),
            ("client.address", .string(context.clientIP)),
            ("gateway.request_id", .string(context.requestID)),
            ("gateway.listener", .string(context.connection.listener)),
        ]
        if let routeName { attributes.append(("http.route", .string(routeName))) }
        if let target = outcome.upstreamTarget { attributes.append(("gateway.upstream.target", .string(target))) }
        if let code = outcome.errorCode { attributes.append(("error.type", .string(code))) }
        if let consumer = context.consumer { attributes.append(("enduser.id", .string(consumer))) }
        exporter.record(
            SpanRecord(
                traceID: traceID, spanID: spanID, parentSpanID: context.parentSpanID,
                name: routeName.map { "\(context.method.name) \($0)" } ?? context.method.name,
                startUnixNanos: end - min(end, duration), endUnixNanos: end,
                isError: outcome.status >= 500 || !outcome.completed, attributes: attributes))
    }
}
