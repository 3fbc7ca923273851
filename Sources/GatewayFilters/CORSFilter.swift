import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy

/// A route's `cors`: answers browsers' preflights itself (before authentication and rate limits: a preflight
/// never carries credentials) and marks the responses of allowed cross-origin requests, the gateway's own
/// errors included, so a browser app can read a 401 or 429 too.
///
/// On such a route the gateway owns CORS: the upstream's own `Access-Control-Allow-*` answers are replaced.
/// A request from an origin that is not allowed still goes upstream (the browser, not the server, withholds
/// the response from the page; same-origin requests carry an Origin too), only without CORS headers.
public struct CORSFilter: GatewayFilter {
    private let policy: CORSPolicy

    public init(_ config: CORSConfig) {
        self.policy = CORSPolicy(
            origins: config.allowOrigins, allowMethods: config.allowMethods, allowHeaders: config.allowHeaders,
            exposeHeaders: config.exposeHeaders, allowCredentials: config.allowCredentials, maxAgeSeconds: config.maxAgeSeconds)
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        guard let origin = head.headers.first(name: "origin") else { return .proceed }
        if head.method == .OPTIONS, let requestMethod = head.headers.first(name: "access-control-request-method") {
            return preflight(origin: origin, requestMethod: requestMethod, head: head, context: &context)
        }
        context.corsAllowOrigin = policy.allowOrigin(for: origin)
        return .proceed
    }

    private func preflight(origin: String, requestMethod: String, head: RequestHead, context: inout RequestContext) -> FilterStep {
        let requestHeaders = head.headers["access-control-request-headers"]
        let decision = policy.preflight(
            origin: origin, requestMethod: requestMethod,
            requestHeaders: requestHeaders.isEmpty ? nil : requestHeaders.joined(separator: ","))
        switch decision {
        case .refuse(let refusal):
            let message: String
            switch refusal {
            case .origin: message = "This origin may not make cross-origin requests to this route."
            case .method: message = "This method is not allowed in cross-origin requests to this route."
            case .headers: message = "A requested header is not allowed in cross-origin requests to this route."
            }
            return .respond(.error(.corsNotAllowed(message), requestID: context.requestID))
        case .allow(let allowed):
            context.corsAllowOrigin = policy.allowOrigin(for: origin)
            var headers = HeaderList()
            for header in allowed { headers.add(name: header.name, value: header.value) }
            // The answer depends on all three; an intermediary cache must not hand it to a different question.
            headers.add(name: "vary", value: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
            return .respond(GatewayResponse(status: 204, headers: headers))
        }
    }

    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {
        head.headers.remove(name: "access-control-allow-origin")
        head.headers.remove(name: "access-control-allow-credentials")
        head.headers.remove(name: "access-control-expose-headers")
        if let origin = context.corsAllowOrigin {
            head.headers.add(name: "access-control-allow-origin", value: origin)
            if policy.allowCredentials { head.headers.add(name: "access-control-allow-credentials", value: "true") }
            if let exposeHeaders = policy.exposeHeaders { head.headers.add(name: "access-control-expose-headers", value: exposeHeaders) }
        }
        // Responses to other origins (or none) differ, so a cache must keep them apart.
        if policy.variesByOrigin { HeaderRules.addVary("Origin", to: &head.headers) }
    }
}
