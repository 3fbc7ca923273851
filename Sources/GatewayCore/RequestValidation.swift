import CoreMetrics
import GatewayConfig
import GatewayHTTP
import GatewayPolicy
import NIOCore

/// `request_validation`: a route's request bodies must be JSON matching its `body_schema`, and its query parameters
/// must match its `query_schema`, before anything goes upstream, so malformed or unexpected input is refused at the
/// edge with a message that says where it is wrong (Kong's request-validator). A checked body is received whole
/// first (bounded by `max_body_bytes`), as with `request_buffering`.
public struct RequestValidation: Sendable {
    private let config: RequestValidationConfig
    /// `header_schema`'s field names, in the order they are checked.
    private let headerNames: [String]
    /// `gateway_request_validation_failures_total{route,part}`: refused path variables, headers, queries, and
    /// bodies (415s included).
    private let pathFailures: Counter
    private let headerFailures: Counter
    private let queryFailures: Counter
    private let bodyFailures: Counter

    public init?(_ config: RequestValidationConfig?, route: String, metrics: GatewayMetrics) {
        guard let config else { return nil }
        self.config = config
        self.headerNames = config.headerSchema?.headerNames ?? []
        self.pathFailures = metrics.requestValidationFailures(route: route, part: "path")
        self.headerFailures = metrics.requestValidationFailures(route: route, part: "header")
        self.queryFailures = metrics.requestValidationFailures(route: route, part: "query")
        self.bodyFailures = metrics.requestValidationFailures(route: route, part: "body")
    }

    /// Whether bodies are checked (and so received whole before forwarding).
    public var checksBodies: Bool { config.bodySchema != nil }

    /// What the request line and the head say besides the body: the path's variables (`template` is the route's
    /// `path_template`), then the header fields, then the query parameters of the (normalised) target.
    public func checkParameters(_ head: RequestHead, template: PathTemplate?) -> GatewayError? {
        let target = head.target
        if let schema = config.pathSchema, let template {
            let queryStart = target.utf8.firstIndex(of: UInt8(ascii: "?")) ?? target.utf8.endIndex
            // Routing matched the template already; the variables' text is percent-decoded, as query values are.
            let variables = template.match(target[..<queryStart]).map { captures in
                template.variables.compactMap { name in captures[name].map { (name, QueryParameters.decoded($0)) } }
            } ?? []
            if let violation = schema.violation(of: schema.pathDocument(variables)) {
                pathFailures.increment()
                return .invalidPath("The path does not match this route's schema: \(Self.describe(violation, whole: "the path")).")
            }
        }
        if let schema = config.headerSchema, let violation = schema.violation(of: schema.headerDocument(names: headerNames) { head.headers.values(name: $0) }) {
            headerFailures.increment()
            return .invalidHeader("The request headers do not match this route's schema: \(Self.describe(violation, whole: "the request")).")
        }
        if let schema = config.querySchema, let violation = schema.violation(of: schema.queryDocument(QueryString.parameters(of: target))) {
            queryFailures.increment()
            return .invalidQuery("The query does not match this route's schema: \(Self.describe(violation, whole: "the query")).")
        }
        return nil
    }

    /// The pointer names the parameter: "page must be at least 1", "tags/1 ..." for the second of several; a rule
    /// about the whole (a required one missing) is said of `whole`.
    private static func describe(_ violation: JSONSchema.Violation, whole: String) -> String {
        (violation.pointer.isEmpty ? whole : String(violation.pointer.dropFirst())) + " " + violation.message
    }

    /// What can be told from the head: a body must be declared JSON, and methods that carry one must have one.
    public func checkHead(_ head: RequestHead, hasBody: Bool) -> GatewayError? {
        guard checksBodies else { return nil }
        let refusal: GatewayError?
        if hasBody {
            refusal = MediaType.isJSON(head.headers.first(name: "content-type")) ? nil : .unsupportedMediaType
        } else {
            // A POST, PUT or PATCH without one is refused, unless `body_required` is false.
            let mayOmit = !config.bodyRequired || RequestValidationConfig.bodilessMethods.contains(head.method.name)
            refusal = mayOmit ? nil : .invalidBody("This request needs a JSON body.")
        }
        if refusal != nil { bodyFailures.increment() }
        return refusal
    }

    /// The whole body, as received.
    public func checkBody(_ parts: [ByteBuffer]) -> GatewayError? {
        guard let refusal = bodyRefusal(parts) else { return nil }
        bodyFailures.increment()
        return refusal
    }

    private func bodyRefusal(_ parts: [ByteBuffer]) -> GatewayError? {
        guard let schema = config.bodySchema else { return nil }
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
        guard let violation = schema.violation(of: document) else { return nil }
        return .invalidBody("The request body does not match this route's schema: \(violation).")
    }
}
