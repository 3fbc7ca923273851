import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore

/// One request forwarded to an upstream, in one or more tries: pick a target, lease (or open) a link to it (a
/// pooled HTTP/1.1 connection or a new stream on the target's HTTP/2 connection), send the head and stream
/// the body up, relay the response down, then release the link or close it.
///
/// A try fails on a connect error, a reset or close before the response head, a timeout (per try or read)
/// or a status listed in `retries.on_status`. The failure counts against the target's breaker, and the
/// request goes to another target after a backoff when all of these hold:
/// - tries are left (`retries.attempts`) and the retry budget allows one;
/// - the request can be made again: no body byte was written, or all that was written is kept (bodies up to
///   `retries.replay_body_bytes`); and a non-idempotent request had not been completely sent (its upstream
///   cannot have acted on it), unless it carries an `Idempotency-Key` the upstream's `retries` trust;
/// - the retry still fits in the request's total deadline.
///
/// Independently, a reused keep-alive connection that the upstream closed just before we used it (or an
/// HTTP/2 stream it refused) is retried once on a fresh link, as NGINX does: that is a race, not a target failure.
final class ForwardingCall: UpstreamCall {
    private enum State {
        case notStarted
        /// Queued at the upstream's connection cap.
        case waitingForConnection(Scheduled<Void>)
        /// Waiting for a new link; body parts are held (the exchange sees `isWritable == false`).
        case connecting
        case active(any UpstreamLink)
        /// Pausing before the next try.
        case backingOff(Scheduled<Void>)
        case done
    }

    private let upstream: UpstreamRuntime
    private var head: RequestHead
    private let framing: BodyFraming
    /// Whether each target's authority goes into Host (false keeps the client's Host).
    private let setsHost: Bool
    private let requestID: String
    private let hashKey: String?
    /// The target the request's sticky cookie names (tried first), when its upstream has `sticky_cookie`.
    var stickyTarget: Int?
    /// A target to pass over like one already tried (a hedge avoids the one the first call is waiting on).
    var avoidedTarget: Int?
    private var delegate: UpstreamCallDelegate?
    private var state: State = .notStarted

    /// The target of the current (or last) try.
    private(set) var pool: TargetPool?
    /// The request has given its last answer or failure (or was cancelled): no more delegate calls.
    var isFinished: Bool {
        if case .done = state { return true }
        return false
    }
    /// Targets tried so far, in order (indices into the upstream's targets).
    private var tried = TriedTargets()
    /// Bumped per connection attempt, so that a connect abandoned meanwhile is recognised when it completes.
    private var connectID = 0
    /// The current try was admitted as a half-open probe.
    private var probe = false
    /// The current try's outcome has not been reported to the target's breaker yet.
    private var verdictPending = false
    /// The current try counts in its target's in-flight requests.
    private var countedInFlight = false
    /// The request counts against `max_requests`.
    private var countedRequest = false
    private var perTryTimer: Scheduled<Void>?
    private var tryStartedAt = NIODeadline.uptimeNanoseconds(0)  // set as each try starts
    /// No retry may start after this (from `total_timeout_ms`).
    private let deadline: NIODeadline?
    /// The route's read timeout, or the upstream's.
    private let readTimeout: TimeAmount
    private var lastError = GatewayError.upstreamUnavailable

    private var heldBody: [ByteBuffer] = []
    /// Some request body left for an upstream: the request can be replayed only from `sentBody`.
    private var bodySent = false
    /// The body parts sent so far, kept for another try while they fit `retries.replay_body_bytes` (nil once
    /// they do not, or when there are no retries: then a sent body ends the retries).
    private var sentBody: [ByteBuffer]? = nil
    private var sentBodyBytes = 0
    private let replayBodyBytes: Int
    /// GET, PUT, DELETE...; or a request with an `Idempotency-Key` where `retries.idempotency_key` trusts it.
    private let isIdempotent: Bool
    private var endRequested = false
    /// The current try sent the whole request.
    private var requestEndSent = false
    /// Some try sent the whole request: a non-idempotent one may have been acted on and is not retried.
    private var completeRequestSent = false
    private var responseStarted = false
    private var responseKeepAlive = false
    private var responsePaused = false
    private var freshConnectionRetryUsed = false
    /// The request asks to switch protocols. Its connection is not reused even when the upstream declines:
    /// servers do not all return cleanly to HTTP after weighing an upgrade (SwiftNIO's own upgrader stalls).
    private let asksUpgrade: Bool
    /// Tries this request may take: the route's `retries.attempts` + 1, else the upstream's.
    private let maxTries: Int

    init(
        upstream: UpstreamRuntime, head: consuming RequestHead, framing: BodyFraming, preserveHost: Bool, requestID: String,
        hashKey: String?, settings: CallSettings = CallSettings(), delegate: UpstreamCallDelegate
    ) {
        switch framing {
        case .none, .untilClose: break
        case .length(let length): head.headers.add(name: "content-length", value: String(length))
        case .chunked: head.headers.add(name: "transfer-encoding", value: "chunked")
        }
        self.setsHost = !preserveHost || !head.headers.contains(name: "host")
        self.asksUpgrade = head.headers.containsToken("upgrade", inField: "connection")
        let retries = upstream.config.retries
        self.isIdempotent =
            head.method.isIdempotent || (retries?.idempotencyKey == true && head.headers.contains(name: "idempotency-key"))
        self.upstream = upstream
        self.head = consume head
        self.framing = framing
        self.requestID = requestID
        self.hashKey = hashKey
        self.delegate = delegate
        self.readTimeout = settings.read ?? upstream.readTimeout
        self.deadline = settings.totalTimeout(orElse: upstream.totalTimeout).map { EventClock.now() + $0 }
        self.maxTries = settings.retryAttempts.map { 1 + $0 } ?? upstream.maxTries
        self.replayBodyBytes = maxTries > 1 ? retries?.replayBodyBytes ?? 0 : 0
        if replayBodyBytes > 0 { sentBody = [] }
    }

    /// The target that answered, or every target tried in order ("a, b") when there were retries.
    var target: String? {
        guard tried.count > 1 else { return pool?.shared.label }
        return tried.all.map { upstream.pools[$0].shared.label }.joined(separator: ", ")
    }

    var isWritable: Bool {
        guard case .active(let connection) = state else { return false }
        return connection.isWritable
    }

    func start() {
        guard case .notStarted = state else { return }
        if let maxRequests = upstream.config.maxRequests {
            countedRequest = true
            if upstream.shared.requestsInFlight.wrappingAdd(1, ordering: .relaxed).newValue > maxRequests {
                log("upstream at max_requests", level: .debug)
                fail(.upstreamOverloaded)
                return
            }
        }
        upstream.shared.recordRequest()
        startTry()
    }

    // MARK: Tries

    private func startTry() {
        var excluded = tried
        if let avoidedTarget, !excluded.contains(avoidedTarget) { excluded.append(avoidedTarget) }
        switch upstream.choose(tried: excluded, hashKey: hashKey, preferred: stickyTarget) {
        case .shutOut(let retryAfter):
            if tried.isEmpty {
                log("no upstream target available", level: .debug)
                fail(.upstreamUnavailable(retryAfterSeconds: retryAfter))
            } else {
                fail(lastError)
            }
        case .target(let pool, let probe):
            if let sent = sentBody, !sent.isEmpty {
                // Another try: the body sent before goes again, ahead of what arrived since.
                heldBody = sent + heldBody
                sentBody = []
                sentBodyBytes = 0
            }
            tried.append(pool.index)
            tryStartedAt = EventClock.now()
            self.pool = pool
            self.probe = probe
            verdictPending = true
            countedInFlight = true
            requestEndSent = false
            pool.shared.inFlight.wrappingAdd(1, ordering: .relaxed)
            if setsHost { head.headers.replaceOrAdd(name: "host", value: pool.authority) }
            if let perTry = upstream.perTryTimeout {
                let number = tried.count
                perTryTimer = upstream.eventLoop.assumeIsolated().scheduleTask(in: perTry) { [self] in
                    guard tried.count == number else { return }
                    perTryTimer = nil
                    perTryTimedOut()
                }
            }
            upstream.acquireConnection(for: self, to: pool)
        }
    }

    /// The current try failed before a response reached the client: retry it elsewhere when allowed,
    /// otherwise answer `error`.
    /// - Parameter kind: for `gateway_upstream_errors_total`: connect, timeout or reset.
    private func tryFailed(_ error: GatewayError, kind: String) {
        pool?.shared.metrics.failed(kind)
        perTryTimer?.cancel()
        perTryTimer = nil
        lastError = error
        report(success: false)
        endTry()
        if mayRetry() {
            scheduleRetry()
        } else {
            fail(error)
        }
    }

    private var isReplayable: Bool {
        (!bodySent || sentBody != nil) && (isIdempotent || !completeRequestSent)
    }

    /// Whether another try is allowed; takes one retry from the budget when it is.
    private func mayRetry() -> Bool {
        guard !responseStarted, tried.count < maxTries, isReplayable else { return false }
        if let deadline, EventClock.now() >= deadline { return false }
        guard upstream.shared.tryRetry(now: UpstreamShared.now()) else {
            log("retry budget exhausted", level: .info)
            upstream.shared.metrics.upstreamRetry(upstream: upstream.config.name, outcome: "budget_exhausted")
            return false
        }
        upstream.shared.metrics.upstreamRetry(upstream: upstream.config.name, outcome: "sent")
        return true
    }

    private func scheduleRetry() {
        var delay = upstream.backoffDelay(retry: tried.count - 1)
        if let deadline {
            let left = deadline - EventClock.now()
            if delay >= left { delay = max(.zero, left - .milliseconds(1)) }
        }
        log("retrying upstream request", level: .info, extra: ["try": "\(tried.count + 1)", "backoff_ms": "\(delay.nanoseconds / 1_000_000)"])
        state = .backingOff(
            upstream.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
                guard case .backingOff = state else { return }
                startTry()
            })
    }

    /// Tells the target's breaker how the current try went (once per try).
    private func report(success: Bool) {
        guard verdictPending, let pool else { return }
        verdictPending = false
        if let change = pool.shared.record(success: success, now: UpstreamShared.now()) {
            upstream.shared.logTransition(pool.shared, to: change)
        }
    }

    /// The current try ended without a verdict on the target (the client left, or the gateway's own caps):
    /// a half-open probe slot is handed back so the breaker cannot wedge.
    private func abandonVerdict() {
        guard verdictPending, let pool else { return }
        verdictPending = false
        pool.shared.release(probe: probe)
    }

    /// The current try no longer occupies its target.
    private func endTry() {
        guard countedInFlight, let pool else { return }
        countedInFlight = false
        pool.shared.inFlight.wrappingSubtract(1, ordering: .relaxed)
    }

    private func perTryTimedOut() {
        switch state {
        case .waitingForConnection(let timer):
            timer.cancel()
            upstream.removeWaiter(self)
        case .active(let connection):
            guard !responseStarted else { return }
            connection.call = nil
            connection.close()
        case .connecting, .notStarted, .backingOff, .done:
            break
        }
        guard !responseStarted, isInTry else { return }
        log("upstream per-try timeout", level: .warning)
        tryFailed(.upstreamTimeout, kind: "timeout")
    }

    private var isInTry: Bool {
        switch state {
        case .waitingForConnection, .connecting, .active: return true
        case .notStarted, .backingOff, .done: return false
        }
    }

    // MARK: Connections (driven by UpstreamRuntime)

    func waitForConnection(timeout: TimeAmount) {
        state = .waitingForConnection(
            upstream.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                guard case .waitingForConnection = state else { return }
                upstream.removeWaiter(self)
                log("no upstream connection slot freed in time (max_connections)", level: .debug)
                abandonVerdict()  // the target did nothing wrong
                pool?.shared.metrics.failed("overloaded")
                fail(.upstreamOverloaded)
            })
    }

    func connectionCapReached() {
        pool?.shared.metrics.failed("overloaded")
        log("upstream at max_connections and max_pending_requests", level: .debug)
        abandonVerdict()
        fail(.upstreamOverloaded)
    }

    func connect(to pool: TargetPool) {
        if case .waitingForConnection(let timer) = state { timer.cancel() }
        state = .connecting
        connectID += 1
        let id = connectID
        pool.connect().assumeIsolated().whenComplete { result in
            switch result {
            case .success(let link):
                guard self.connectID == id, case .connecting = self.state else {
                    link.giveBack()  // abandoned meanwhile
                    return
                }
                self.attach(link)
            case .failure(let error):
                guard self.connectID == id, case .connecting = self.state else { return }
                if case UpstreamHTTP2Error.connectionRetired = error, !self.freshConnectionRetryUsed {
                    // Nothing reached the upstream: a race with its GOAWAY, like a stale keep-alive connection.
                    self.freshConnectionRetryUsed = true
                    self.connect(to: pool)
                    return
                }
                self.log("upstream connect failed", level: .warning, extra: ["error": "\(error)"])
                self.tryFailed(.upstreamUnavailable, kind: "connect")
            }
        }
    }

    func attach(_ connection: any UpstreamLink) {
        if case .waitingForConnection(let timer) = state { timer.cancel() }
        state = .active(connection)
        connection.call = self
        Self.write(&head, framing: framing, to: connection)
        for part in heldBody { writeBody(part, on: connection) }
        heldBody.removeAll()
        if endRequested { writeEnd(on: connection) }
        connection.flush()
        if responsePaused { connection.setReadPaused(true) }
        delegate?.upstreamConnected()
        if case .active(let current) = state, current === connection, connection.isWritable {
            delegate?.upstreamWritabilityChanged(isWritable: true)
        }
    }

    /// The head by exclusive access: passing the stored property itself would copy it (retaining its parts).
    private static func write(_ head: inout RequestHead, framing: BodyFraming, to link: any UpstreamLink) {
        link.writeHead(head, framing: framing)
    }

    private func writeBody(_ buffer: ByteBuffer, on connection: any UpstreamLink) {
        guard buffer.readableBytes > 0 else { return }
        bodySent = true
        if sentBody != nil {
            sentBodyBytes += buffer.readableBytes
            if sentBodyBytes <= replayBodyBytes { sentBody?.append(buffer) } else { sentBody = nil }  // too large to keep
        }
        connection.writeBody(buffer)
    }

    private func writeEnd(on connection: any UpstreamLink) {
        connection.writeEnd()
        requestEndSent = true
        completeRequestSent = true
        connection.startReadTimeout(readTimeout)
    }

    // MARK: UpstreamCall (driven by the exchange)

    func sendBody(_ buffer: ByteBuffer) {
        switch state {
        case .notStarted, .connecting, .waitingForConnection, .backingOff:
            heldBody.append(buffer)
        case .active(let connection):
            writeBody(buffer, on: connection)
            connection.flush()
        case .done:
            break
        }
    }

    func sendEnd() {
        guard !endRequested else { return }
        endRequested = true
        if case .active(let connection) = state {
            writeEnd(on: connection)
            connection.flush()
        }
    }

    func setResponsePaused(_ paused: Bool) {
        responsePaused = paused
        if case .active(let connection) = state { connection.setReadPaused(paused) }
    }

    func cancel() {
        delegate = nil
        switch state {
        case .active(let connection):
            connection.call = nil
            connection.close()
        case .waitingForConnection(let timer), .backingOff(let timer):
            timer.cancel()
            upstream.removeWaiter(self)
        case .notStarted, .connecting, .done:
            break
        }
        abandonVerdict()  // the client left: that says nothing about the target
        finish()
    }

    /// A hedge of this request, sent to another target, answered while this call's try still had no answer.
    /// The try counts as a failure of its target (`kind="slow"`): a stalled target is then shut out by its
    /// breaker instead of losing every race, each one paid for with a hedge. The call ends as if cancelled.
    func outpaced() {
        if verdictPending {
            pool?.shared.metrics.failed("slow")
            report(success: false)
        }
        cancel()
    }

    // MARK: Events from the connection

    func received(_ response: consuming ParsedResponse, from connection: any UpstreamLink) {
        guard case .active(let current) = state, current === connection else { return }
        perTryTimer?.cancel()
        perTryTimer = nil
        let status = response.head.status
        let failed = upstream.shared.failureStatuses.contains(status)
        if let pool {
            pool.shared.metrics.answered(afterNanos: (EventClock.now() - tryStartedAt).nanoseconds)
            if failed || upstream.shared.retryStatuses.contains(status) { pool.shared.metrics.failed("status") }
        }
        if upstream.shared.retryStatuses.contains(status) {
            report(success: !failed)
            if mayRetry() {
                // Drop this answer (and its connection, rather than reading the body through) and try elsewhere.
                log("upstream answered a retryable status", level: .info, extra: ["status": "\(status)"])
                connection.call = nil
                connection.close()
                endTry()
                scheduleRetry()
                return
            }
        }
        report(success: !failed)
        responseStarted = true
        responseKeepAlive = response.keepAlive
        let framing = response.framing
        var head = (consume response).head
        // The body is re-framed downstream; a Content-Length that does not describe it must not pass.
        if case .length = framing {} else if framing != .none { head.headers.remove(name: "content-length") }
        // Sticky sessions: a client not (or no longer) on the target that answered is told which one that is.
        if !upstream.stickyValues.isEmpty, let pool, pool.index != stickyTarget, let cookie = upstream.stickySetCookie(target: pool.index) {
            head.headers.add(name: "set-cookie", value: cookie)
        }
        delegate?.upstreamResponseHead(consume head)
    }

    /// A 103 from the link in use; a retry may bring more, which browsers take as further hints.
    func receivedEarlyHints(_ head: ResponseHead, from connection: any UpstreamLink) {
        guard case .active(let current) = state, current === connection, !responseStarted else { return }
        delegate?.upstreamEarlyHints(head)
    }

    func receivedBody(_ buffer: ByteBuffer, from connection: any UpstreamLink) {
        guard case .active(let current) = state, current === connection else { return }
        delegate?.upstreamResponseBody(buffer)
    }

    func receivedEnd(from connection: any UpstreamLink) {
        guard case .active(let current) = state, current === connection else { return }
        state = .done
        connection.call = nil
        connection.stopReadTimeout()
        // Reuse only a connection whose request and response both completed and that both sides keep alive.
        if requestEndSent && responseKeepAlive && !asksUpgrade && !connection.isClosed {
            connection.release()
        } else {
            connection.close()
        }
        finish()
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamResponseEnd()
    }

    func receivedTrailers(_ trailers: HeaderList, from connection: any UpstreamLink) {
        guard case .active(let current) = state, current === connection else { return }
        delegate?.upstreamResponseTrailers(trailers)
    }

    func readComplete() {
        delegate?.upstreamReadComplete()
    }

    func writabilityChanged(isWritable: Bool) {
        guard case .active = state else { return }
        delegate?.upstreamWritabilityChanged(isWritable: isWritable)
    }

    func connectionTimedOut() {
        guard case .active(let connection) = state else { return }
        log("upstream read timeout", level: .warning)
        connection.call = nil
        connection.close()
        if responseStarted {
            fail(.upstreamTimeout)
        } else {
            tryFailed(.upstreamTimeout, kind: "timeout")
        }
    }

    func connectionClosed(_ connection: any UpstreamLink) {
        connectionFailed(connection, error: nil)
    }

    func connectionFailed(_ connection: any UpstreamLink, error: (any Error)?) {
        guard case .active(let current) = state, current === connection else { return }
        connection.call = nil
        connection.close()
        // A stale keep-alive connection: nothing was answered and nothing unrepeatable was sent.
        if !responseStarted, connection.failedBeforeUse, !bodySent, !freshConnectionRetryUsed, let pool {
            freshConnectionRetryUsed = true
            requestEndSent = false
            connect(to: pool)
            return
        }
        log(
            responseStarted ? "upstream closed mid-response" : "upstream closed before responding", level: .warning,
            extra: ["error": "\(error.map { "\($0)" } ?? "connection closed")"])
        if responseStarted {
            fail(.upstreamBrokenResponse)
        } else {
            tryFailed(.upstreamBrokenResponse, kind: "reset")
        }
    }

    // MARK: Endings

    /// Releases what the request holds: timers, held body, its share of the target and the upstream.
    private func finish() {
        state = .done
        perTryTimer?.cancel()
        perTryTimer = nil
        heldBody.removeAll()
        endTry()
        if countedRequest {
            countedRequest = false
            upstream.shared.requestsInFlight.wrappingSubtract(1, ordering: .relaxed)
        }
    }

    private func fail(_ error: GatewayError) {
        finish()
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(error)
    }

    private func log(_ message: Logger.Message, level: Logger.Level, extra: Logger.Metadata = [:]) {
        var metadata: Logger.Metadata = ["request_id": "\(requestID)", "upstream": "\(upstream.config.name)"]
        if let pool { metadata["target"] = "\(pool.shared.label)" }
        metadata.merge(extra) { $1 }
        upstream.logger.log(level: level, message, metadata: metadata)
    }
}
