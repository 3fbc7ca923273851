import GatewayConfig
import GatewayHTTP
import NIOCore

/// `request_validation`: a route's request bodies must be JSON matching its schema before they go upstream, so
/// malformed or unexpected input is refused at the edge with a message that says where it is wrong (Kong's
/// request-validator). The body is received whole first (bounded by `max_body_bytes`), as with `request_buffering`.
public struct RequestValidation: Sendable {
    private let config: RequestValidationConfig

    public init?(_ config: RequestValidationConfig?) {
        guard let config else { return nil }
        self.config = config
    }

    /// The largest body checked, and so the route's body limit (at most; a smaller `max_body_bytes` still applies).
    public var maxBodyBytes: Int { config.maxBodyBytes }

    /// Methods that carry no body by custom; a POST, PUT or PATCH without one is refused (unless `body_required` is false).
    private static func mayOmitBody(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .DELETE, .OPTIONS, .TRACE, .CONNECT: return true
        case .POST, .PUT, .PATCH, .other: return false
        }
    }

    /// What can be told from the head: a body must be declared JSON, and methods that carry one must have one.
    public func checkHead(_ head: RequestHead, hasBody: Bool) -> GatewayError? {
        if hasBody {
            return HeaderRules.isJSON(contentType: head.headers.first(name: "content-type")) ? nil : .unsupportedMediaType
        }
        return !config.bodyRequired || Self.mayOmitBody(head.method) ? nil : .invalidBody("This request needs a JSON body.")
    }

    /// The whole body, as received.
    public func checkBody(_ parts: [ByteBuffer]) -> GatewayError? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(parts.reduce(0) { $0 + $1.readableBytes })
        for part in parts { bytes += part.readableBytesView }
        // The parser would read bad UTF-8 as U+FFFD: the schema must see what the upstream will.
        guard String(validating: bytes, as: UTF8.self) != nil else { return .invalidBody("The request body is not valid UTF-8.") }
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            return .invalidBody("The request body is not valid JSON: \(error.description).")
        }
        guard let violation = config.bodySchema.violation(of: document) else { return nil }
        return .invalidBody("The request body does not match this route's schema: \(violation).")
    }
}
