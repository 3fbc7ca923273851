/// An error the gateway answers itself. Each has a stable `code` for clients and dashboards; the
/// status for each code is decided here and nowhere else.
///
/// Messages are fixed, client-safe sentences: internal details (addresses, errno, stack) go to the log,
/// never into a response body.
public struct GatewayError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Base: Hashable, Sendable {
        case routeNotFound, methodNotAllowed, payloadTooLarge, headersTooLarge, requestTimeout, badRequest
        /// 414: the request line alone is larger than `limits.max_header_bytes`.
        case uriTooLong
        /// 502: the upstream could not be reached or answered badly.
        case upstreamUnavailable
        /// 503: the gateway did not try, because every target is shut out or the upstream is at capacity.
        case upstreamShutOut
        case upstreamTimeout, rateLimited, rateLimitUnavailable, internalError, unauthenticated, forbidden
        /// The route's authorization service gave no usable answer.
        case authUnavailable
        /// 429: the route's `concurrency_limit` for this client is reached.
        case concurrencyLimited
        /// 504 for `Cache-Control: only-if-cached` with nothing usable stored (RFC 9111 §5.2.1.7).
        case notCached
        /// 403 for a CORS preflight the route's `cors` does not allow.
        case corsRefused
        /// 403: the route's `deny_ips` / `allow_ips` refuse the client's address.
        case addressRefused
        /// 403: the route's `deny_countries` / `allow_countries` refuse the client's country.
        case countryRefused
        /// 403: `deny_asns` / `allow_asns` refuse the client's network.
        case networkRefused
        /// 403: the route's `csrf` refuses a cross-origin state-changing request from a browser.
        case crossOriginRefused
        /// 400: the body is not the JSON the route's `request_validation` asks for.
        case invalidBody
        /// 400: the query parameters do not match the route's `request_validation.query_schema`.
        case invalidQuery
        /// 400: the path's variables do not match the route's `request_validation.path_schema`.
        case invalidPath
        /// 400: the header fields do not match the route's `request_validation.header_schema`.
        case invalidHeader
        /// 403: the route's `webhook_signature` found no valid signature of the body.
        case invalidSignature
        /// 415: the route checks JSON bodies, and this one is declared as something else.
        case unsupportedMediaType
        /// 410: the route's `deprecation.sunset` has passed and it refuses requests since.
        case apiSunset
        /// 508: the request came back to this gateway through its own upstream (a forwarding loop, RFC 8586).
        case loopDetected

        var code: String {
            switch self {
            case .routeNotFound: return "ROUTE_NOT_FOUND"
            case .methodNotAllowed: return "METHOD_NOT_ALLOWED"
            case .payloadTooLarge: return "PAYLOAD_TOO_LARGE"
            case .headersTooLarge: return "HEADERS_TOO_LARGE"
            case .uriTooLong: return "URI_TOO_LONG"
            case .requestTimeout: return "REQUEST_TIMEOUT"
            case .badRequest: return "BAD_REQUEST"
            case .upstreamUnavailable, .upstreamShutOut: return "UPSTREAM_UNAVAILABLE"
            case .upstreamTimeout: return "UPSTREAM_TIMEOUT"
            case .rateLimited: return "RATE_LIMITED"
            case .rateLimitUnavailable: return "RATE_LIMIT_UNAVAILABLE"
            case .authUnavailable: return "AUTH_UNAVAILABLE"
            case .concurrencyLimited: return "TOO_MANY_CONCURRENT_REQUESTS"
            case .internalError: return "INTERNAL"
            case .unauthenticated: return "UNAUTHENTICATED"
            case .forbidden: return "FORBIDDEN"
            case .notCached: return "NOT_CACHED"
            case .corsRefused: return "CORS_NOT_ALLOWED"
            case .addressRefused: return "IP_NOT_ALLOWED"
            case .countryRefused: return "COUNTRY_NOT_ALLOWED"
            case .networkRefused: return "NETWORK_NOT_ALLOWED"
            case .crossOriginRefused: return "CROSS_ORIGIN_REQUEST_REFUSED"
            case .invalidBody: return "INVALID_BODY"
            case .invalidQuery: return "INVALID_QUERY"
            case .invalidPath: return "INVALID_PATH"
            case .invalidHeader: return "INVALID_HEADER"
            case .invalidSignature: return "INVALID_SIGNATURE"
            case .unsupportedMediaType: return "UNSUPPORTED_MEDIA_TYPE"
            case .apiSunset: return "API_SUNSET"
            case .loopDetected: return "LOOP_DETECTED"
            }
        }
    }

    private let base: Base
    public let message: String
    /// For 405: the methods the matched path accepts (sent as `Allow`).
    public let allowedMethods: [String]
    /// For 429: seconds until a retry may succeed (sent as `Retry-After`).
    public let retryAfterSeconds: Int?
    /// For 401/403: the `WWW-Authenticate` challenges, one field each (a route accepting Bearer tokens and
    /// Basic passwords names both, so a browser can prompt for the one it knows).
    public let challenges: [String]

    private init(_ base: Base, _ message: String, allowedMethods: [String] = [], retryAfterSeconds: Int? = nil, challenges: [String] = []) {
        self.base = base
        self.message = message
        self.allowedMethods = allowedMethods
        self.retryAfterSeconds = retryAfterSeconds
        self.challenges = challenges
    }

    public var code: String { base.code }

    public var status: Int {
        switch base {
        case .routeNotFound: return 404
        case .methodNotAllowed: return 405
        case .payloadTooLarge: return 413
        case .headersTooLarge: return 431
        case .uriTooLong: return 414
        case .requestTimeout: return 408
        case .badRequest, .invalidBody, .invalidQuery, .invalidPath, .invalidHeader: return 400
        case .unsupportedMediaType: return 415
        case .apiSunset: return 410
        case .loopDetected: return 508
        case .upstreamUnavailable: return 502
        case .upstreamShutOut: return 503
        case .upstreamTimeout: return 504
        case .rateLimited, .concurrencyLimited: return 429
        case .rateLimitUnavailable, .authUnavailable: return 503
        case .internalError: return 500
        case .unauthenticated: return 401
        case .forbidden: return 403
        case .notCached: return 504
        case .corsRefused, .addressRefused, .countryRefused, .networkRefused, .crossOriginRefused, .invalidSignature: return 403
        }
    }

    /// Whether the connection must close after this answer (the request stream can no longer be trusted).
    public var closesConnection: Bool {
        switch base {
        case .badRequest, .headersTooLarge, .uriTooLong, .requestTimeout: return true
        default: return false
        }
    }

    public var description: String { "\(code): \(message)" }

    public static let routeNotFound = GatewayError(.routeNotFound, "No route matches this request.")
    public static func methodNotAllowed(allowed: [String]) -> GatewayError {
        GatewayError(.methodNotAllowed, "This path does not accept this method.", allowedMethods: allowed)
    }
    public static let payloadTooLarge = GatewayError(.payloadTooLarge, "The request body is larger than this gateway accepts.")
    public static let headersTooLarge = GatewayError(.headersTooLarge, "The request headers are larger than this gateway accepts.")
    public static let uriTooLong = GatewayError(.uriTooLong, "The request target is longer than this gateway accepts.")
    public static let requestTimeout = GatewayError(.requestTimeout, "The request was not received in time.")
    public static func badRequest(_ message: String = "The request is malformed.") -> GatewayError {
        GatewayError(.badRequest, message)
    }
    public static let upstreamUnavailable = GatewayError(.upstreamUnavailable, "The upstream service could not be reached.")
    /// Every target is shut out (breakers open or health checks failing): answered at once.
    public static func upstreamUnavailable(retryAfterSeconds: Int) -> GatewayError {
        GatewayError(.upstreamShutOut, "The upstream service is unavailable; retry later.", retryAfterSeconds: max(1, retryAfterSeconds))
    }
    /// A concurrency cap of the upstream (max_requests, max_pending_requests) is reached.
    public static let upstreamOverloaded = GatewayError(.upstreamShutOut, "The upstream service is at capacity; retry later.", retryAfterSeconds: 1)
    /// The upstream's `oauth2` token endpoint gave the gateway no valid token.
    public static let upstreamCredentialsUnavailable = GatewayError(
        .upstreamShutOut, "The gateway could not get credentials for the upstream service; retry later.", retryAfterSeconds: 5)
    public static let upstreamBrokenResponse = GatewayError(.upstreamUnavailable, "The upstream service sent an invalid or incomplete response.")
    public static let upstreamTimeout = GatewayError(.upstreamTimeout, "The upstream service did not answer in time.")
    public static let internalError = GatewayError(.internalError, "The gateway failed to handle this request.")
    public static func rateLimited(retryAfterSeconds: Int) -> GatewayError {
        GatewayError(.rateLimited, "Too many requests; retry later.", retryAfterSeconds: max(1, retryAfterSeconds))
    }
    /// One message for every authentication failure, so a client learns nothing about which check failed.
    public static func unauthenticated(challenges: [String]) -> GatewayError {
        GatewayError(.unauthenticated, "Authentication is required, or the credentials are not valid.", challenges: challenges)
    }
    public static func forbidden(challenges: [String]) -> GatewayError {
        GatewayError(.forbidden, "The credentials do not grant access to this resource.", challenges: challenges)
    }
    public static let notCached = GatewayError(.notCached, "The request asked for a cached response only, and none is stored.")
    /// A preflight asked for something the route's `cors` does not allow: the message says which part.
    public static func corsNotAllowed(_ message: String) -> GatewayError { GatewayError(.corsRefused, message) }
    public static let ipNotAllowed = GatewayError(.addressRefused, "This route does not accept requests from this client address.")
    public static let countryNotAllowed = GatewayError(.countryRefused, "This route does not accept requests from this client's country.")
    public static let networkNotAllowed = GatewayError(.networkRefused, "This route does not accept requests from this client's network.")
    public static let crossOriginRefused = GatewayError(
        .crossOriginRefused, "This route does not accept state-changing requests sent from another site.")
    /// `message` says what is wrong with the body (where, for a schema rule): it is the client's own data.
    public static func invalidBody(_ message: String) -> GatewayError { GatewayError(.invalidBody, message) }
    public static func invalidQuery(_ message: String) -> GatewayError { GatewayError(.invalidQuery, message) }
    public static func invalidPath(_ message: String) -> GatewayError { GatewayError(.invalidPath, message) }
    public static func invalidHeader(_ message: String) -> GatewayError { GatewayError(.invalidHeader, message) }
    public static let invalidSignature = GatewayError(.invalidSignature, "The request is not signed by the sender this route takes.")
    public static let unsupportedMediaType = GatewayError(
        .unsupportedMediaType, "This route takes JSON request bodies (Content-Type: application/json).")
    /// `sunset` as an HTTP date.
    public static let loopDetected = GatewayError(
        .loopDetected, "The request came back to this gateway: an upstream forwards to the gateway itself.")
    public static func apiSunset(_ sunset: String) -> GatewayError { GatewayError(.apiSunset, "This API was retired on \(sunset).") }
    public static let rateLimitUnavailable = GatewayError(
        .rateLimitUnavailable, "Rate limits cannot be checked right now; retry later.", retryAfterSeconds: 1)

    public static let concurrencyLimited = GatewayError(
        .concurrencyLimited, "Too many requests from this client are in progress; retry when one has finished.", retryAfterSeconds: 1)
    /// A webhook's replay check could not ask its store (Redis down): the sender retries later.
    public static let deliveryUncheckable = GatewayError(
        .authUnavailable, "The delivery cannot be checked right now; retry later.", retryAfterSeconds: 1)

    public static let authUnavailable = GatewayError(
        .authUnavailable, "Authorization cannot be checked right now; retry later.", retryAfterSeconds: 1)

    /// The single place where arbitrary errors become gateway errors: anything unknown is a 500.
    public init(mapping error: any Error) {
        self = (error as? GatewayError) ?? .internalError
    }
}
