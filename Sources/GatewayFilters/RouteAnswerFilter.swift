import GatewayConfig
import GatewayCore
import GatewayHTTP
import NIOCore

/// A route's `redirect`, `respond` or `direct_response`: the route answers itself instead of forwarding. It runs after the route's
/// other request checks (addresses, CORS, authentication, rate limits), so a protected redirect stays protected,
/// and its answer gets the route's response headers like any other.
public struct RouteAnswerFilter: GatewayFilter {
    private enum Answer: Sendable {
        case redirect(location: String, status: Int, appendPath: Bool)
        case error(status: Int, code: String, message: String, retryAfterSeconds: Int?)
        /// `direct_response`: the same every time, so built once.
        case fixed(GatewayResponse)
    }

    private let answer: Answer
    private let stripPrefix: String?

    /// - Parameter upstreamTokenKeys: the key set `direct_response {"jwks": "upstream_token"}` answers with.
    public init(_ answer: RouteAnswer, stripPrefix: String?, upstreamTokenKeys: String? = nil) {
        switch answer {
        case .redirect(let location, let status, let appendPath):
            self.answer = .redirect(location: location, status: status, appendPath: appendPath)
        case .error(let status, let code, let message, let retryAfterSeconds):
            self.answer = .error(status: status, code: code, message: message, retryAfterSeconds: retryAfterSeconds)
        case .content(let status, let contentType, let body, let extra):
            self.answer = .fixed(Self.fixed(status: status, contentType: contentType, body: body, headers: extra))
        case .upstreamTokenKeys:
            // Validation made sure an ES256 or RS256 key is configured; its signer built the key set.
            self.answer = .fixed(
                Self.fixed(
                    status: 200, contentType: "application/jwk-set+json", body: upstreamTokenKeys ?? #"{"keys":[]}"#,
                    headers: [("cache-control", "max-age=300")]))
        }
        self.stripPrefix = stripPrefix.map { PathRules.normalisedPrefix($0) }
    }

    private static func fixed(status: Int, contentType: String, body: String, headers extra: [(name: String, value: String)]) -> GatewayResponse {
        var headers = HeaderList()
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: String(body.utf8.count))
        for (name, value) in extra { headers.add(name: name, value: value) }
        return GatewayResponse(status: status, headers: headers, body: body.isEmpty ? nil : ByteBuffer(string: body))
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
        case .fixed(let response):
            return .respond(response)
        case .error(let status, let code, let message, let retryAfterSeconds):
            var response = GatewayResponse.error(status: status, code: code, message: message, requestID: context.requestID)
            if let retryAfterSeconds { response.head.headers.add(name: "retry-after", value: String(retryAfterSeconds)) }
            return .respond(response)
        }
    }
}
