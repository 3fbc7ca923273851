import GatewayConfig
import GatewayCore
import GatewayHTTP

/// A route's `response_headers`, on every response of the route: the upstream's, cached ones and the gateway's own
/// errors. Added last among the route's filters, so it runs first on the way back: CORS and the global security
/// headers (when `override_upstream` is off, they keep what is already there) see the edited response.
public struct ResponseHeaderEditsFilter: GatewayFilter {
    private let edits: HeaderEdits

    public init(_ edits: HeaderEdits) {
        self.edits = edits
    }

    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {
        HeaderRules.apply(edits, to: &head.headers, context: context)
    }
}
