import GatewayCore
import GatewayHTTP
import NIOCore

/// A request that may go out twice (`retries.hedge_after_ms`; Envoy's and gRPC's request hedging). When the
/// first call has no response head after the delay, the same request goes to another target as well, and the
/// first response head wins: its call is relayed, the other is cancelled (its connection closed, since its
/// answer may be on the way). A stalled or slow target then costs the client the delay plus an ordinary
/// answer time, instead of a timeout.
///
/// Only requests that are safe to send twice and have no body (GET, HEAD, OPTIONS) are hedged, at most once,
/// and only while the upstream's retry budget allows: a hedge is extra load on the upstream, like a retry.
/// Each call keeps its own retries. When the hedge wins, the first call's try counts against its target's
/// breaker (it was outpaced), so a stalled target gets shut out. To the exchange this is one call.
final class HedgedCall: UpstreamCall {
    /// Relays one call's events with the call's identity (delegate methods do not say who calls).
    private final class Leg: UpstreamCallDelegate {
        let owner: HedgedCall
        let isHedge: Bool

        init(owner: HedgedCall, isHedge: Bool) {
            self.owner = owner
            self.isHedge = isHedge
        }

        func upstreamConnected() { owner.connected(self) }
        func upstreamEarlyHints(_ head: ResponseHead) { if owner.winner == nil { owner.delegate?.upstreamEarlyHints(head) } }
        func upstreamResponseHead(_ head: consuming ResponseHead) { owner.responseHead(head, from: self) }
        func upstreamResponseBody(_ buffer: ByteBuffer) { owner.ifWinner(self)?.upstreamResponseBody(buffer) }
        func upstreamResponseTrailers(_ trailers: HeaderList) { owner.ifWinner(self)?.upstreamResponseTrailers(trailers) }
        func upstreamReadComplete() { owner.ifWinner(self)?.upstreamReadComplete() }
        func upstreamWritabilityChanged(isWritable: Bool) { owner.writabilityChanged(isWritable, from: self) }
        func upstreamResponseEnd() { owner.responseEnd(from: self) }
        func upstreamFailed(_ error: GatewayError) { owner.failed(error, from: self) }
    }

    private let upstream: UpstreamRuntime
    /// The request for the hedge (given to it when it is sent).
    private var spareHead: RequestHead?
    private let preserveHost: Bool
    private let requestID: String
    private let hashKey: String?
    private let settings: CallSettings
    private let delay: TimeAmount
    private var delegate: UpstreamCallDelegate?
    private var primary: ForwardingCall?
    private var hedge: ForwardingCall?
    private var winner: Leg?
    private var timer: Scheduled<Void>?
    private var endSent = false
    private var paused = false
    private var connectedReported = false

    init(
        upstream: UpstreamRuntime, head: consuming RequestHead, preserveHost: Bool, requestID: String, hashKey: String?,
        stickyTarget: Int?, settings: CallSettings, delay: TimeAmount, delegate: UpstreamCallDelegate
    ) {
        self.upstream = upstream
        self.spareHead = head
        self.preserveHost = preserveHost
        self.requestID = requestID
        self.hashKey = hashKey
        self.settings = settings
        self.delay = delay
        self.delegate = delegate
        let primary = ForwardingCall(
            upstream: upstream, head: consume head, framing: .none, preserveHost: preserveHost, requestID: requestID,
            hashKey: hashKey, settings: settings, delegate: Leg(owner: self, isHedge: false))
        primary.stickyTarget = stickyTarget
        self.primary = primary
    }

    /// The requests a hedge may copy: no body, and safe to send twice.
    static func mayHedge(_ head: RequestHead, framing: BodyFraming) -> Bool {
        guard framing == .none else { return false }
        switch head.method {
        case .GET, .HEAD, .OPTIONS: return !head.headers.containsToken("upgrade", inField: "connection")
        default: return false
        }
    }

    // MARK: UpstreamCall (driven by the exchange)

    var isWritable: Bool { (call(of: winner) ?? primary)?.isWritable ?? false }

    /// Every target the request went to, the first call's (with its retries) first.
    var target: String? {
        let targets = [primary?.target, hedge?.target].compactMap { $0 }
        return targets.isEmpty ? nil : targets.joined(separator: ", ")
    }

    func start() {
        guard let primary else { return }
        primary.start()
        guard delegate != nil, !primary.isFinished else { return }  // failed at once
        timer = upstream.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            timer = nil
            sendHedge()
        }
    }

    func sendBody(_ buffer: ByteBuffer) {
        primary?.sendBody(buffer)  // not reached: hedged requests have no body
    }

    func sendEnd() {
        endSent = true
        primary?.sendEnd()
        hedge?.sendEnd()
    }

    func setResponsePaused(_ paused: Bool) {
        self.paused = paused
        if let call = call(of: winner) {
            call.setResponsePaused(paused)
        } else {
            primary?.setResponsePaused(paused)
            hedge?.setResponsePaused(paused)
        }
    }

    func cancel() {
        delegate = nil
        timer?.cancel()
        timer = nil
        primary?.cancel()
        hedge?.cancel()
    }

    // MARK: The hedge

    private func sendHedge() {
        guard winner == nil, delegate != nil, let primary, !primary.isFinished, let head = spareHead.take() else { return }
        guard upstream.shared.tryRetry(now: UpstreamShared.now()) else {
            upstream.shared.metrics.upstreamHedge(upstream: upstream.config.name, outcome: "budget_exhausted")
            upstream.logger.debug(
                "hedge not sent: retry budget exhausted", metadata: ["request_id": "\(requestID)", "upstream": "\(upstream.config.name)"])
            return
        }
        let hedge = ForwardingCall(
            upstream: upstream, head: head, framing: .none, preserveHost: preserveHost, requestID: requestID, hashKey: hashKey,
            settings: settings, delegate: Leg(owner: self, isHedge: true))
        hedge.avoidedTarget = primary.pool?.index
        self.hedge = hedge
        upstream.logger.info(
            "hedging upstream request",
            metadata: [
                "request_id": "\(requestID)", "upstream": "\(upstream.config.name)",
                "waiting_on": "\(primary.pool?.shared.label ?? "-")", "after_ms": "\(delay.nanoseconds / 1_000_000)",
            ])
        if endSent { hedge.sendEnd() }  // before start: the head and its end go out in one flush
        if paused { hedge.setResponsePaused(true) }
        hedge.start()
    }

    // MARK: Events from the calls

    private func call(of leg: Leg?) -> ForwardingCall? {
        guard let leg else { return nil }
        return leg.isHedge ? hedge : primary
    }

    private func ifWinner(_ leg: Leg) -> UpstreamCallDelegate? { winner === leg ? delegate : nil }

    private func connected(_ leg: Leg) {
        guard !connectedReported else { return }
        connectedReported = true
        delegate?.upstreamConnected()
    }

    private func writabilityChanged(_ isWritable: Bool, from leg: Leg) {
        if winner === leg || (winner == nil && !leg.isHedge) { delegate?.upstreamWritabilityChanged(isWritable: isWritable) }
    }

    /// The first response head wins; the other call is cancelled.
    private func responseHead(_ head: consuming ResponseHead, from leg: Leg) {
        guard winner == nil else { return }
        winner = leg
        timer?.cancel()
        timer = nil
        spareHead = nil
        if let hedge {
            if leg.isHedge {
                primary?.outpaced()
                upstream.shared.metrics.upstreamHedge(upstream: upstream.config.name, outcome: "won")
            } else if !hedge.isFinished {  // a hedge that failed was counted then
                hedge.cancel()
                upstream.shared.metrics.upstreamHedge(upstream: upstream.config.name, outcome: "lost")
            }
        }
        delegate?.upstreamResponseHead(head)
    }

    private func responseEnd(from leg: Leg) {
        guard winner === leg else { return }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamResponseEnd()
    }

    /// A call gave up (after its own retries). Before any answer, the other call may still bring one.
    private func failed(_ error: GatewayError, from leg: Leg) {
        if winner == nil {
            if leg.isHedge { upstream.shared.metrics.upstreamHedge(upstream: upstream.config.name, outcome: "failed") }
            let other = leg.isHedge ? primary : hedge
            if let other, !other.isFinished { return }  // the other call is still under way
            timer?.cancel()
            timer = nil
        } else if winner !== leg {
            return
        }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(error)
    }
}
