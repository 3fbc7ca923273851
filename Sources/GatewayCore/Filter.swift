import GatewayHTTP
import GatewayPolicy
import NIOCore

/// Facts about the client connection, fixed for its lifetime.
public struct ConnectionInfo: Sendable {
    public var listener: String
    /// The TCP peer (nil for Unix sockets).
    public var peer: IPAddress?
    public var isTLS: Bool
    /// Whether the peer is in `trusted_proxies`, so its X-Forwarded-* headers may be believed.
    public var peerIsTrustedProxy: Bool
    /// The client certificate the TLS handshake verified (mTLS).
    public var clientCertificate: PeerCertificate?
    /// Its subject, e.g. `CN=billing,O=Example`.
    public var clientCertificateSubject: String? { clientCertificate?.subject }
    /// The listener's header for that subject upstream (`tls.client_subject_header`), when it checks client certificates.
    public var clientSubjectHeader: String?
    /// The listener's header for the whole certificate upstream (`tls.client_cert_header`), if it sends it.
    public var clientCertHeader: String?

    public init(
        listener: String, peer: IPAddress?, isTLS: Bool, peerIsTrustedProxy: Bool, clientCertificate: PeerCertificate? = nil,
        clientSubjectHeader: String? = nil, clientCertHeader: String? = nil
    ) {
        self.listener = listener
        self.peer = peer
        self.isTLS = isTLS
        self.peerIsTrustedProxy = peerIsTrustedProxy
        self.clientCertificate = clientCertificate
        self.clientSubjectHeader = clientSubjectHeader
        self.clientCertHeader = clientCertHeader
    }
}

/// What the gateway keeps of a verified client certificate.
public struct PeerCertificate: Sendable, Equatable {
    /// `CN=billing,O=Example` (RFC 4514).
    public var subject: String
    /// Its URI subject alternative names: a workload's SPIFFE ID (`spiffe://example.org/ns/billing/sa/api`).
    public var uris: [String]
    /// The certificate as PEM, percent-encoded for a header (NGINX's `$ssl_client_escaped_cert`), when the listener
    /// sends it upstream.
    public var escapedPEM: String?

    public init(subject: String, uris: [String] = [], escapedPEM: String? = nil) {
        (self.subject, self.uris, self.escapedPEM) = (subject, uris, escapedPEM)
    }
}

/// Per-request state shared by the filters and the forwarder.
public struct RequestContext: Sendable {
    public var requestID: String = ""
    public let connection: ConnectionInfo
    /// The client as far as trusted proxies let us know it (X-Forwarded-For resolved).
    public var clientIP: String
    /// The client address's country (ISO 3166 code) with `geoip`; nil without it, or when the database does not place it.
    public var country: String?
    /// The client address's autonomous system number with `geoip.asn_database`.
    public var asn: UInt32?
    public var method: HTTPMethod
    /// The request target as received (path and query).
    public var uri: String
    /// Set once routing has chosen a route.
    public var route: CompiledRoute?
    /// The request's Host header (authority), once routing has read it.
    public var host: String?
    /// The W3C trace this request belongs to (32 hex digits), continued from `traceparent` or started here.
    public var traceID: String?
    /// The gateway's span in that trace (64 random bits; 0 until trace context is set): the parent the upstream
    /// sees in `traceparent`. Kept as bits: only exported spans need its text.
    public var spanBits: UInt64 = 0
    /// The span id as 16 hex digits, when there is one.
    public var spanID: String? { spanBits == 0 ? nil : RequestID.spanID(spanBits) }
    /// The client's span, when it sent a valid `traceparent`.
    public var parentSpanID: String?
    /// The trace's sampled flag: only sampled requests are exported as spans.
    public var traceSampled = false
    /// Who is calling, once authentication has said (JWT `sub` or API-key id); nil when anonymous.
    public var consumer: String?
    /// The verified token's claims routes ask about (`auth.claims`, `claim:NAME` keys); nil without them.
    public var claims: [String: [String]]?
    /// The `Access-Control-Allow-Origin` a route's CORS filter granted this request (nil: not a cross-origin
    /// request it allows): every response of the request carries it, the gateway's own errors included.
    public var corsAllowOrigin: String?
    /// For the access log, when it is on: the client's `User-Agent` and HTTP version, and the values of
    /// `logging.access_log_headers` (nil when none is configured).
    public var loggedHeaders: [(name: String, value: String)]?
    public var userAgent: String?
    public var version: HTTPVersion?
    /// The `concurrency_limit` slot this request holds (its key), released when it completes.
    public var concurrencySlot: String?
    /// When the route's `adaptive_concurrency` admitted this request (it gives the slot back when it completes).
    public var adaptiveConcurrencyAdmittedAt: NIODeadline?
    /// When the request was handed to the upstream call (nil when the gateway answered before forwarding).
    public var forwardedAt: NIODeadline?
    /// When the upstream's response head arrived (nil when none did: the gateway answered, or the upstream failed).
    public var upstreamAnsweredAt: NIODeadline?
    /// Headers filters want on the response, whoever produces it (rate-limit state, for one). They replace fields of the
    /// same name, except `set-cookie` (lowercase), which is added.
    public var responseHeaders: [(name: String, value: String)] = []
    /// The connection's event loop: filters that suspend complete their futures here.
    public let eventLoop: EventLoop
    /// Monotonic start time, for durations.
    public let startedAt: NIODeadline

    public init(
        connection: ConnectionInfo, clientIP: String, method: HTTPMethod, uri: String, startedAt: NIODeadline,
        eventLoop: EventLoop
    ) {
        self.eventLoop = eventLoop
        self.connection = connection
        self.clientIP = clientIP
        self.method = method
        self.uri = uri
        self.startedAt = startedAt
    }
}

/// How a request ended, for completion hooks (access log, metrics).
public struct RequestOutcome: Sendable {
    /// The status sent to the client; 499 when the client went away first (NGINX's convention).
    public var status: Int
    public var bytesIn: Int
    public var bytesOut: Int
    /// The upstream target that served it, e.g. "127.0.0.1:9001".
    public var upstreamTarget: String?
    public var durationNanos: Int64
    /// The gateway error code when the gateway answered with an error itself.
    public var errorCode: String?
    /// false when the response was cut short (client gone, upstream broke mid-body).
    public var completed: Bool

    public init(
        status: Int, bytesIn: Int, bytesOut: Int, upstreamTarget: String?, durationNanos: Int64,
        errorCode: String?, completed: Bool
    ) {
        self.status = status
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.upstreamTarget = upstreamTarget
        self.durationNanos = durationNanos
        self.errorCode = errorCode
        self.completed = completed
    }
}

/// What a filter decided about a request.
public enum FilterDecision: Sendable {
    case proceed
    case respond(GatewayResponse)
}

/// A request hook's answer. Most filters decide at once; one that needs I/O (Redis, a JWKS fetch)
/// suspends until it knows, on the connection's event loop, and may then edit the request.
public enum FilterStep {
    case proceed
    case respond(GatewayResponse)
    /// Waits for `FilterSuspension.resume`.
    case suspend(FilterSuspension)

    /// Waits for a future (completed on any loop); the filters go on on `eventLoop`, the connection's. A
    /// failed future becomes the error response its error maps to.
    public static func suspend(_ future: EventLoopFuture<FilterResumption>, on eventLoop: EventLoop) -> FilterStep {
        let suspension = FilterSuspension()
        future.hop(to: eventLoop).assumeIsolated().whenComplete { suspension.resume($0) }
        return .suspend(suspension)
    }
}

/// A decision a filter will make later, resumed once on the connection's event loop. A filter that suspends
/// on every request (a Redis rate limit) may subclass it to keep its per-request state in the same object:
/// no promise, future and callback per request.
///
/// Not thread-safe: created, resumed and waited for on the connection's event loop only.
open class FilterSuspension {
    private var result: Result<FilterResumption, any Error>?
    private var waiter: (any FilterSuspensionWaiter)?

    public init() {}

    /// Hands the decision (or why there is none) to whoever waits, now or when they start waiting. Later
    /// calls are ignored.
    public final func resume(_ result: Result<FilterResumption, any Error>) {
        if let waiter {
            self.waiter = nil
            waiter.filterResumed(result)
        } else if self.result == nil {
            self.result = result
        }
    }

    public final func resume(_ resumption: FilterResumption) { resume(.success(resumption)) }

    /// Called by the exchange: `waiter` gets the decision once, at once if it is already known.
    final func wait(_ waiter: any FilterSuspensionWaiter) {
        if let result {
            self.result = nil
            waiter.filterResumed(result)
        } else {
            self.waiter = waiter
        }
    }
}

/// What waits for a `FilterSuspension` (the exchange).
protocol FilterSuspensionWaiter: AnyObject {
    func filterResumed(_ result: Result<FilterResumption, any Error>)
}

public struct FilterResumption: Sendable {
    public var decision: FilterDecision
    /// Applied to the request on the event loop before the next filter runs.
    public var edit: (@Sendable (inout RequestHead, inout RequestContext) -> Void)?
    /// Added to `RequestContext.responseHeaders` (the response gets them whoever produces it). Plain data
    /// rather than an `edit`: the common case needs no closure.
    public var responseHeaders: [(name: String, value: String)]

    public init(
        decision: FilterDecision, responseHeaders: [(name: String, value: String)] = [],
        edit: (@Sendable (inout RequestHead, inout RequestContext) -> Void)? = nil
    ) {
        self.decision = decision
        self.responseHeaders = responseHeaders
        self.edit = edit
    }

    /// Applies the response headers and the edit to the request.
    public func apply(to head: inout RequestHead, context: inout RequestContext) {
        if !responseHeaders.isEmpty {
            if context.responseHeaders.isEmpty {
                context.responseHeaders = responseHeaders
            } else {
                context.responseHeaders += responseHeaders
            }
        }
        edit?(&head, &context)
    }
}

/// The one filter contract (see DESIGN.md). It returns a value instead of calling `next`, so a
/// short-circuit is plain data a test can look at.
///
/// Hooks run synchronously on the connection's event loop: the proxy's hot path never hops threads or
/// allocates a task per request. Asynchronous work goes through `FilterStep.suspend`.
public protocol GatewayFilter: Sendable {
    func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep
    /// Runs for every response, upstream or gateway-made, in reverse filter order.
    func onResponse(_ head: inout ResponseHead, context: RequestContext)
    func onComplete(context: RequestContext, outcome: RequestOutcome)
}

extension GatewayFilter {
    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep { .proceed }
    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {}
    public func onComplete(context: RequestContext, outcome: RequestOutcome) {}
}

/// A check on a route's whole request body before anything goes upstream (a webhook's signature): the route then
/// receives bodies whole first, at most `maxBodyBytes` (a larger one is refused with 413).
public protocol RequestBodyCheck: Sendable {
    var maxBodyBytes: Int { get }
    /// `body` is every part received (none for a request without one). A check that asks a store (whether a webhook
    /// was delivered before) suspends; a refusal is answered as it is.
    func check(_ head: RequestHead, body: [ByteBuffer], context: RequestContext) -> FilterStep
}
