import GatewayConfig
import GatewayHTTP
import GatewayPolicy

/// `intercept_errors`: an upstream answer with a covered status reaches the client as the gateway's JSON error
/// (`UPSTREAM_ERROR`, the upstream's status kept) instead of the upstream's own body: a backend's stack trace or
/// framework error page never leaves, and clients get one error shape from every service.
public struct ErrorInterception: Sendable {
    public static let code = "UPSTREAM_ERROR"
    private let config: InterceptErrorsConfig

    /// A route's own setting, else the top-level one; nil when neither intercepts anything.
    public init?(route: InterceptErrorsConfig?, global: InterceptErrorsConfig?) {
        guard let config = InterceptErrorsConfig.effective(route: route, global: global) else { return nil }
        self.config = config
    }

    /// Whether this upstream answer is replaced (1xx, 2xx and 3xx never are).
    public func intercepts(_ head: ResponseHead) -> Bool {
        guard head.status >= 400, config.covers(head.status) else { return false }
        return !(config.keepJSON && MediaType.isJSON(head.headers.first(name: "content-type")))
    }

    /// The gateway's answer in place of `upstream`: its status, the fields `keep_headers` names, a JSON body.
    public func answer(for upstream: ResponseHead, requestID: String) -> GatewayResponse {
        let reason = HTTPStatusText.reason(for: upstream.status)
        let message = "The upstream service answered \(upstream.status)\(reason.isEmpty ? "" : " " + reason)."
        var response = GatewayResponse.error(status: upstream.status, code: Self.code, message: message, requestID: requestID)
        for name in config.keepHeaders {
            for value in upstream.headers[name] { response.head.headers.add(name: name, value: value) }
        }
        return response
    }
}
