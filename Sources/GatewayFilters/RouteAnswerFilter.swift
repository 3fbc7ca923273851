import GatewayConfig
import GatewayCore
import GatewayHTTP
import NIOCore

/// A route's `redirect`, `respond` or `direct_response`: the route answers itself instead of forwarding. It runs after the route's
/// other request checks (addresses, CORS, authentication, rate limits), so a protected redirect stays protected,
/// and its answer gets the route's response headers like any other.
public struct RouteAnswerFilter: GatewayFilter {
    private let answer: RouteAnswer
    private let stripPrefix: String?

    public init(_ answer: RouteAnswer, stripPrefix: String?) {
        self.answer = answer
        self.stripPrefix = stripPrefix.map { PathRules.normalisedPrefix($0) }
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        switch answer {
        case .redirect(let location, let status, let appendPath):
            var target = location
            if appendPath {
                let rest = stripPrefix.map { PathRules.strip($0, from: head.target) } ?? head.target
                if target.hasSuffix("/") && rest.hasPrefix("/") { target.removeLast() }
                target += rest
            }
            var headers = HeaderList()
            headers.add(name: "location", value: target)
            headers.add(name: "content-length", value: "0")
            return .respond(GatewayResponse(status: status, headers: headers))
        case .content(let status, let contentType, let body, let extra):
            var headers = HeaderList()
            headers.add(name: "content-type", value: contentType)
            headers.add(name: "content-length", value: String(body.utf8.count))
            for (name, value) in extra { headers.add(name: name, value: value) }
            return .respond(GatewayResponse(status: status, headers: headers, body: body.isEmpty ? nil : ByteBuffer(string: body)))
        case .upstreamTokenKeys:
            // Gateway.build turns it into `.content` with the loaded key set; unreachable otherwise.
            return .respond(.error(.routeNotFound, requestID: context.requestID))
        case .error(let status, let code, let message, let retryAfterSeconds):
            var response = GatewayResponse.error(status: status, code: code, message: message, requestID: context.requestID)
            if let retryAfterSeconds { response.head.headers.add(name: "retry-after", value: String(retryAfterSeconds)) }
            return .respond(response)
        }
    }
}
