import GatewayConfig
import GatewayCore
import GatewayHTTP
import NIOCore

/// A route's `fault`: a share of its requests is held back before going on, and a share is answered with an
/// error instead of reaching the upstream, so teams can see how their clients and dashboards cope with a slow
/// or failing service without breaking one (Envoy's fault filter). Runs after the route's checks, so only
/// requests that would have been forwarded are touched; the answer is the gateway's JSON error with the code
/// `FAULT_INJECTED`. Each injection is counted in `gateway_faults_injected_total{route,kind}`.
public struct FaultInjectionFilter: GatewayFilter {
    let fault: FaultConfig
    let routeName: String
    let metrics: GatewayMetrics

    public init(_ fault: FaultConfig, routeName: String, metrics: GatewayMetrics) {
        self.fault = fault
        self.routeName = routeName
        self.metrics = metrics
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let delay = fault.delay.flatMap { Chance.happens($0.percent / 100) ? $0.ms : nil }
        let abort = fault.abort.flatMap { Chance.happens($0.percent / 100) ? $0.status : nil }
        var response: GatewayResponse?
        if let abort {
            metrics.faultInjected(route: routeName, kind: "abort")
            response = .error(
                status: abort, code: "FAULT_INJECTED", message: "This answer is a fault the gateway injected (the route's fault settings).",
                requestID: context.requestID)
        }
        guard let delay else { return response.map(FilterStep.respond) ?? .proceed }
        metrics.faultInjected(route: routeName, kind: "delay")
        let resumption = FilterResumption(decision: response.map(FilterDecision.respond) ?? .proceed)
        return .suspend(context.eventLoop.scheduleTask(in: .milliseconds(Int64(delay))) { resumption }.futureResult, on: context.eventLoop)
    }
}
