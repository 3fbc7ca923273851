import GatewayCore
import GatewayHTTP
import GatewayPolicy

/// A route's `deny_ips` / `allow_ips`: refuses other client addresses with 403 before anything else runs on the
/// route (no preflight, credential check or rate-limit count for them). The address is the one `trusted_proxies`
/// resolves, so a load balancer in front does not hide the client; without trusted proxies, X-Forwarded-For is
/// not believed.
public struct ClientAddressFilter: GatewayFilter {
    private let rule: AddressRule

    public init(_ rule: AddressRule) {
        self.rule = rule
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        rule.permits(IPAddress(context.clientIP)) ? .proceed : .respond(.error(.ipNotAllowed, requestID: context.requestID))
    }
}
