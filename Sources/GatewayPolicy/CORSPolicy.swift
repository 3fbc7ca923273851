/// A route's CORS rules (the Fetch standard's CORS protocol, §3.2): which origins may read its responses
/// from a browser, and what a preflight may ask for. Decides from header values alone: no I/O, no state.
public struct CORSPolicy: Sendable {
    /// One `allow_origins` entry.
    public enum OriginRule: Sendable, Equatable {
        /// `*`: any origin.
        case any
        /// `https://app.example.com` (lowercased, default port dropped): that origin only.
        case exact(String)
        /// `https://*.example.com`: any subdomain of example.com (not example.com itself) with that scheme and port.
        case subdomains(scheme: String, suffix: String)

        /// Whether an origin (lowercased, as browsers serialise it) is one this entry names.
        func matches(_ lowered: String) -> Bool {
            switch self {
            case .any:
                return true
            case .exact(let allowed):
                return lowered == allowed
            case .subdomains(let scheme, let suffix):
                guard lowered.hasPrefix(scheme), lowered.hasSuffix(suffix) else { return false }
                let label = lowered.utf8.dropFirst(scheme.utf8.count).dropLast(suffix.utf8.count)
                // At least one label before the suffix, and nothing that is not a host name character.
                return !label.isEmpty && label.allSatisfy(CORSPolicy.isHostNameByte)
            }
        }
    }

    /// Why a preflight is refused.
    public enum Refusal: Sendable, Equatable {
        case origin, method, headers
    }

    public enum PreflightDecision: Sendable, Equatable {
        /// Answer 204 with these headers (the allowed origin itself goes on every response of the route).
        case allow([Header])
        case refuse(Refusal)
    }

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public let origins: [OriginRule]
    public let allowMethods: [String]
    public let allowHeaders: [String]
    /// The `Access-Control-Expose-Headers` value, when there are any.
    public let exposeHeaders: String?
    public let allowCredentials: Bool
    public let maxAgeSeconds: Int?
    /// Whether `Access-Control-Allow-Origin` depends on the request's Origin (so caches must key on it):
    /// false only for `*` without credentials, which answers every origin alike.
    public let variesByOrigin: Bool

    private let anyMethod: Bool
    private let anyHeader: Bool
    private let methodsText: String
    private let headersText: String

    /// `origins` must be valid entries (`parseOrigin`); invalid ones are skipped.
    public init(
        origins: [String], allowMethods: [String], allowHeaders: [String], exposeHeaders: [String], allowCredentials: Bool,
        maxAgeSeconds: Int?
    ) {
        self.origins = origins.compactMap(Self.parseOrigin)
        self.allowMethods = allowMethods
        self.allowHeaders = allowHeaders.map { $0.lowercased() }
        self.exposeHeaders = exposeHeaders.isEmpty ? nil : exposeHeaders.joined(separator: ", ")
        self.allowCredentials = allowCredentials
        self.maxAgeSeconds = maxAgeSeconds
        self.anyMethod = allowMethods.contains("*")
        self.anyHeader = allowHeaders.contains("*")
        self.methodsText = allowMethods.joined(separator: ", ")
        self.headersText = allowHeaders.joined(separator: ", ")
        self.variesByOrigin = allowCredentials || !self.origins.contains(.any)
    }

    /// Parses an `allow_origins` entry: `*`, `scheme://host[:port]` or `scheme://*.domain[:port]`, with no path.
    /// nil when it is none of these (a trailing slash, say: browsers never send one, so it would never match).
    public static func parseOrigin(_ text: String) -> OriginRule? {
        if text == "*" { return .any }
        let lowered = text.lowercased()
        let scheme: String
        if lowered.hasPrefix("https://") {
            scheme = "https"
        } else if lowered.hasPrefix("http://") {
            scheme = "http"
        } else {
            return nil
        }
        var authority = String(lowered.dropFirst(scheme.count + 3))
        guard !authority.isEmpty, !authority.contains(where: { "/?#@ ".contains($0) }) else { return nil }
        // Browsers serialise an origin without its scheme's default port.
        let defaultPort = scheme == "https" ? ":443" : ":80"
        if authority.hasSuffix(defaultPort) { authority.removeLast(defaultPort.count) }
        if authority.hasPrefix("*.") {
            let suffix = String(authority.dropFirst())
            guard suffix.count > 1, !suffix.dropFirst().contains("*") else { return nil }
            return .subdomains(scheme: scheme + "://", suffix: suffix)
        }
        guard !authority.contains("*") else { return nil }
        return .exact(scheme + "://" + authority)
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or nil when that origin is not allowed.
    public func allowOrigin(for origin: String) -> String? {
        guard isAllowed(origin) else { return nil }
        return variesByOrigin ? origin : "*"
    }

    func isAllowed(_ origin: String) -> Bool {
        let lowered = origin.lowercased()
        return origins.contains { $0.matches(lowered) }
    }

    /// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`): allowed when the origin,
    /// the method and every header named in `Access-Control-Request-Headers` are.
    public func preflight(origin: String, requestMethod: String, requestHeaders: String?) -> PreflightDecision {
        guard isAllowed(origin) else { return .refuse(.origin) }
        guard anyMethod || allowMethods.contains(requestMethod) else { return .refuse(.method) }
        let requested = Self.requestedHeaderNames(requestHeaders ?? "")
        if !anyHeader {
            for name in requested where !allowHeaders.contains(name.lowercased()) { return .refuse(.headers) }
        }
        var headers: [Header] = [Header(name: "access-control-allow-methods", value: anyMethod ? requestMethod : methodsText)]
        // `*` in allow_headers echoes what was asked: a literal `*` would not cover Authorization, nor work with credentials.
        let allowedHeaders = anyHeader ? requested.joined(separator: ", ") : headersText
        if !allowedHeaders.isEmpty { headers.append(Header(name: "access-control-allow-headers", value: allowedHeaders)) }
        if let maxAgeSeconds { headers.append(Header(name: "access-control-max-age", value: String(maxAgeSeconds))) }
        return .allow(headers)
    }

    /// The header names an `Access-Control-Request-Headers` value lists (comma-separated, spaces trimmed).
    public static func requestedHeaderNames(_ value: String) -> [String] {
        value.split(separator: ",").map { $0.trimmingASCIISpaces() }.filter { !$0.isEmpty }
    }

    static func isHostNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }
}
