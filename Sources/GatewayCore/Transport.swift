import GatewayHTTP
import NIOCore

/// The client side of one exchange, as the edge offers it (HTTP/1 today, HTTP/2 streams later).
/// Bound to the connection's event loop; writes are not flushed until `flush()`.
public protocol DownstreamStream: AnyObject {
    var isWritable: Bool { get }
    /// A 1xx response (100 Continue) ahead of the real one.
    func writeInformational(_ head: ResponseHead)
    /// The response head; `bodyFraming` says how the body that follows is delimited by the sender
    /// (`.length` when Content-Length is set, `.none` when no body may follow).
    func writeResponseHead(_ head: consuming ResponseHead)
    func writeResponseBody(_ buffer: ByteBuffer)
    func writeResponseEnd()
    /// Trailer fields sent with the end of the response (gRPC's `grpc-status`, say), before `writeResponseEnd`.
    /// HTTP/2 streams send them as a final HEADERS frame; HTTP/1.1 connections drop them (RFC 9110 §6.5.1 lets
    /// a recipient discard trailers, and gRPC needs HTTP/2 anyway).
    func writeResponseTrailers(_ trailers: HeaderList)
    func flush()
    /// Ends the response as broken (the client must not take it as complete): closes the connection.
    func abortResponse()
    /// Stops (or resumes) reading the request body from the client, for backpressure.
    func setRequestBodyPaused(_ paused: Bool)
    /// After a `101 Switching Protocols` head: the connection becomes a byte tunnel. Every byte the client
    /// sends from now on (including any already received after the request head) arrives as a request
    /// body part, `writeResponseBody` writes raw bytes, and `writeResponseEnd` closes the connection once
    /// they are flushed. Only HTTP/1.1 connections can switch; others close.
    func switchToTunnel()
}

/// What the edge tells an exchange about the client side.
public protocol ExchangeDriver: AnyObject {
    func requestBodyPart(_ buffer: ByteBuffer)
    func requestEnded()
    func downstreamWritabilityChanged(isWritable: Bool)
    /// The client connection closed or failed before the exchange finished.
    func downstreamClosed()
}

/// A request as the edge hands it over: the head plus what the codec learnt about it.
public struct IncomingRequest: Sendable {
    public var head: RequestHead
    /// `.none`, `.length` or `.chunked` (a body of unknown length, also used for HTTP/2 streams).
    public var framing: BodyFraming
    public var expectsContinue: Bool

    public init(head: RequestHead, framing: BodyFraming, expectsContinue: Bool) {
        self.head = head
        self.framing = framing
        self.expectsContinue = expectsContinue
    }
}

/// The per-connection entry point the edge calls (one instance per client connection, loop-bound).
public protocol ConnectionResponder: AnyObject {
    func startExchange(_ request: consuming IncomingRequest, stream: DownstreamStream) -> ExchangeDriver
    /// Answers a request the edge could not even parse (400, 431, 408); the connection closes after.
    func respondToProtocolError(_ error: GatewayError, stream: DownstreamStream)
}

// MARK: - Upstream side

/// What a route sets for its calls to an upstream, instead of the upstream's own: timeouts (`read_timeout_ms`,
/// `total_timeout_ms`) and retries (`retries.attempts`). nil: the upstream's.
public struct CallSettings: Sendable {
    public var read: TimeAmount?
    public var total: TimeAmount?
    /// Retries after the first try.
    public var retryAttempts: Int?
    /// The client's own deadline for the whole call (gRPC's `grpc-timeout`): it can only shorten the configured one.
    public var clientTimeout: TimeAmount?
    /// `retries.hedge_after_ms` (the route's, else the upstream's): when a request that may be sent twice has no
    /// response head after this long, it goes to a second target too. nil: no hedging.
    public var hedgeAfter: TimeAmount?

    /// The call's whole deadline: the configured one (`total`, else `fallback`) or the client's, whichever is
    /// sooner. Per request, so no array of candidates is built for it.
    public func totalTimeout(orElse fallback: TimeAmount? = nil) -> TimeAmount? {
        let configured = total ?? fallback
        guard let client = clientTimeout else { return configured }
        guard let configured else { return client }
        return min(configured, client)
    }

    public init(read: TimeAmount? = nil, total: TimeAmount? = nil, retryAttempts: Int? = nil) {
        self.read = read
        self.total = total
        self.retryAttempts = retryAttempts
    }
}

/// Forwards requests to upstreams; one per event loop, owning that loop's connection pools.
public protocol UpstreamForwarder: AnyObject {
    /// Prepares a call; nothing happens (and no delegate method runs) until `start()`.
    /// `clientIP` is the client's address (a consistent-hash key).
    /// The head is handed over (`consuming`): the call keeps it for retries without copying it.
    func makeCall(
        upstream: Int, head: consuming RequestHead, framing: BodyFraming, preserveHost: Bool, requestID: String, clientIP: String,
        settings: CallSettings, delegate: UpstreamCallDelegate
    ) -> UpstreamCall

    /// Closes every idle pooled connection (graceful stop).
    func closeIdleConnections()
}

/// One request in flight to an upstream.
public protocol UpstreamCall: AnyObject {
    /// false while connecting or while the upstream socket's send buffer is full.
    var isWritable: Bool { get }
    /// The chosen target ("127.0.0.1:9001"), once known.
    var target: String? { get }
    /// Leases a pooled connection (or connects) and sends the head. May fail synchronously through
    /// the delegate.
    func start()
    func sendBody(_ buffer: ByteBuffer)
    func sendEnd()
    /// Stops (or resumes) reading the response from the upstream, for backpressure.
    func setResponsePaused(_ paused: Bool)
    /// The client is gone: drop the upstream connection (it is not reused).
    func cancel()
}

public protocol UpstreamCallDelegate: AnyObject {
    /// The request head has been handed to a connected upstream (time to send 100 Continue).
    func upstreamConnected()
    /// A `103 Early Hints` ahead of the response (the only interim answer a proxy passes on).
    func upstreamEarlyHints(_ head: ResponseHead)
    func upstreamResponseHead(_ head: consuming ResponseHead)
    func upstreamResponseBody(_ buffer: ByteBuffer)
    func upstreamResponseEnd()
    /// The response's trailer fields (an HTTP/2 upstream's final HEADERS frame), just before `upstreamResponseEnd`.
    func upstreamResponseTrailers(_ trailers: HeaderList)
    /// One socket read's worth of response parts has been delivered: a good moment to flush downstream.
    func upstreamReadComplete()
    func upstreamWritabilityChanged(isWritable: Bool)
    /// The call failed; no more delegate calls follow.
    func upstreamFailed(_ error: GatewayError)
}

extension UpstreamCallDelegate {
    /// Most delegates read the answer for themselves (a mirror, an authorization check): trailers and hints say nothing to them.
    public func upstreamResponseTrailers(_ trailers: HeaderList) {}
    /// Hints are for browsers; the other delegates wait for the answer itself.
    public func upstreamEarlyHints(_ head: ResponseHead) {}
}
