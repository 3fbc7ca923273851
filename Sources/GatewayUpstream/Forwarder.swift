import Foundation
import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore

/// Every configured upstream, process-wide: the state all event loops share (breakers, health, in-flight
/// counts, retry budgets), the per-loop forwarders built on it, and the active health checks.
public final class UpstreamSet: Sendable {
    let upstreams: [UpstreamShared]
    private let healthCheckers: [HealthChecker]

    /// - Parameters:
    ///   - configs: in the runtime's order (routes refer to upstreams by index).
    ///   - previous: the set a reload replaces. An upstream whose config did not change keeps its state
    ///     (breakers, health, health checks, and on each loop its connection pools).
    /// Throws when an upstream's TLS files cannot be used.
    public init(configs: [UpstreamConfig], logger: Logger, metrics: GatewayMetrics = .disabled, previous: UpstreamSet? = nil) throws {
        var upstreams: [UpstreamShared] = []
        var checkers: [HealthChecker] = []
        for config in configs {
            // Kept only when its TLS files are unchanged as well: a renewed client certificate or CA bundle
            // under the same names needs new TLS contexts.
            if let old = previous?.upstreams.first(where: { $0.config == config && $0.tlsFiles == UpstreamShared.read(config.tls.files) }) {
                upstreams.append(old)
                if let checker = previous?.healthCheckers.first(where: { $0.upstream === old }) { checkers.append(checker) }
            } else {
                let shared = try UpstreamShared(config: config, logger: logger, metrics: metrics)
                // A rebuilt upstream (its config or its DNS answer changed) keeps the operator's drains and the
                // ramps under way; a target it did not have joins now.
                if let old = previous?.upstreams.first(where: { $0.config.name == config.name }) {
                    let before = Dictionary(old.targets.map { ($0.label, $0) }, uniquingKeysWith: { first, _ in first })
                    for target in shared.targets {
                        if let was = before[target.label] {
                            target.drained.store(was.drained.load(ordering: .relaxed), ordering: .relaxed)
                            target.joinedAt.store(was.joinedAt.load(ordering: .relaxed), ordering: .relaxed)
                        } else {
                            shared.joined(target)
                        }
                    }
                }
                upstreams.append(shared)
                if let settings = config.healthCheck { checkers.append(HealthChecker(upstream: shared, settings: settings, logger: logger)) }
            }
        }
        self.upstreams = upstreams
        self.healthCheckers = checkers
    }

    /// The forwarder of one event loop (call on that loop). `previous` is that loop's forwarder before a
    /// reload: upstreams kept by the reload keep their pools.
    public func makeForwarder(
        eventLoop: EventLoop, loopIndex: Int, loopCount: Int, logger: Logger, previous: (any UpstreamForwarder)? = nil
    ) -> LoopForwarder {
        let old = previous as? LoopForwarder
        return LoopForwarder(
            upstreams: upstreams.map { shared in
                old?.runtime(for: shared)
                    ?? UpstreamRuntime(
                        config: shared.config, shared: shared, eventLoop: eventLoop, loopIndex: loopIndex, loopCount: loopCount, logger: logger)
            },
            eventLoop: eventLoop)
    }

    /// Starts the active health checks that are not running yet (one timer per upstream that has them).
    public func startHealthChecks(on eventLoop: EventLoop) async throws {
        for checker in healthCheckers { try await checker.start(on: eventLoop) }
    }

    public func stopHealthChecks() async {
        for checker in healthCheckers { await checker.stop() }
    }

    /// After a reload to `replacement`: stops the health checks of upstreams it did not keep.
    public func retire(replacedBy replacement: UpstreamSet) async {
        for checker in healthCheckers where !replacement.healthCheckers.contains(where: { $0 === checker }) { await checker.stop() }
    }

    func keeps(_ shared: UpstreamShared) -> Bool { upstreams.contains { $0 === shared } }

    /// Every target with its health, breaker state and requests in flight (for the admin API and metrics).
    /// Takes a target (by its label, `host:port` or a discovered `address:port`) out of rotation or puts it back.
    /// Returns false when the upstream has no such target.
    public func setDrained(upstream: String, target: String, drained: Bool) -> Bool {
        guard let shared = upstreams.first(where: { $0.config.name == upstream }),
            let one = shared.targets.first(where: { $0.label == target })
        else { return false }
        one.drained.store(drained, ordering: .relaxed)
        if !drained { shared.joined(one) }
        return true
    }

    public func targetStates() -> [UpstreamTargetState] {
        upstreams.flatMap { $0.snapshot() }
    }
}

/// The forwarder of one event loop: owns that loop's upstream connection pools.
public final class LoopForwarder: UpstreamForwarder {
    private let upstreams: [UpstreamRuntime]
    public let eventLoop: EventLoop

    init(upstreams: [UpstreamRuntime], eventLoop: EventLoop) {
        self.eventLoop = eventLoop
        self.upstreams = upstreams
    }

    public func makeCall(
        upstream: Int, head: consuming RequestHead, framing: BodyFraming, preserveHost: Bool, requestID: String, clientIP: String,
        settings: CallSettings, delegate: UpstreamCallDelegate
    ) -> UpstreamCall {
        let runtime = upstreams[upstream]
        let hashKey = runtime.hashKey(headers: head.headers, clientIP: clientIP)
        let sticky = runtime.stickyValues.isEmpty ? nil : runtime.stickyTarget(headers: head.headers)
        if let delay = settings.hedgeAfter, HedgedCall.mayHedge(head, framing: framing) {
            return HedgedCall(
                upstream: runtime, head: head, preserveHost: preserveHost, requestID: requestID, hashKey: hashKey,
                stickyTarget: sticky, settings: settings, delay: delay, delegate: delegate)
        }
        let call = ForwardingCall(
            upstream: runtime, head: consume head, framing: framing, preserveHost: preserveHost, requestID: requestID,
            hashKey: hashKey, settings: settings, delegate: delegate)
        call.stickyTarget = sticky
        return call
    }

    /// Closes every idle pooled connection (shutdown).
    public func closeIdleConnections() {
        for upstream in upstreams { for pool in upstream.pools { pool.closeAll() } }
    }

    /// After a reload: closes the idle connections of upstreams the new set does not keep.
    public func closeIdleConnections(notKeptBy set: UpstreamSet) {
        for upstream in upstreams where !set.keeps(upstream.shared) { for pool in upstream.pools { pool.closeAll() } }
    }

    func runtime(for shared: UpstreamShared) -> UpstreamRuntime? { upstreams.first { $0.shared === shared } }
}
