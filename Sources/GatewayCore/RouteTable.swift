import GatewayConfig
import GatewayHTTP
import GatewayPolicy
import NIOCore

/// One upstream a route forwards to, with the timeouts and retries of calls made to it for this route.
public struct RouteDestination: Sendable {
    /// Index into `config.upstreams` (and the forwarder's upstream runtimes).
    public let upstreamIndex: Int
    public let upstreamName: String
    public var settings: CallSettings
    /// Appended to the route's cache keys: a split's upstreams are different versions of the service, and each
    /// keeps its own answers ("" on a route with one upstream).
    public let cacheKeySuffix: String
    /// Some target speaks HTTP/2, so gRPC calls can go there: only then is a request's `grpc-timeout` looked at.
    public var speaksHTTP2 = false
    /// The upstream's `oauth2`: the `Authorization` its calls carry, got by the gateway itself.
    public var credentials: (any UpstreamCredentials)?
}

/// Credentials the gateway holds for calling an upstream (`upstreams.<name>.oauth2`).
public protocol UpstreamCredentials: Sendable {
    /// Whether there are credentials to send now; false when the gateway has none valid (the token endpoint fails):
    /// the request is answered 503 without reaching the upstream.
    var isAvailable: Bool { get }

    /// Whether `authorize` sets the request's `Host` itself (a signature covers it): the call then keeps it.
    var setsHost: Bool { get }

    /// Adds the credentials to the request going upstream, once its head is final (`body`: what the signature may
    /// cover of the body).
    func authorize(_ head: inout RequestHead, body: UpstreamBody)

    /// The upstream answered 401 to a call that carried them: the credentials are no longer good.
    func refused()
}

extension UpstreamCredentials {
    public var setsHost: Bool { false }
}

/// The request body as credentials that sign it see it.
public enum UpstreamBody {
    /// No body.
    case none
    /// The whole body, received before the call (`request_buffering`).
    case whole([ByteBuffer])
    /// A body that streams to the upstream as it arrives.
    case streamed
}

/// One route from gateway.json, compiled for matching: hosts split into exact and wildcard, the path
/// rule normalised, methods parsed, header names lowercased. A class: requests hold a reference.
public final class CompiledRoute: Sendable {
    public enum PathRule: Sendable, Equatable {
        case any
        case exact(String)
        /// Whole-segment prefix, without trailing slash ("/" matches everything).
        case prefix(String)
        /// `path_template`: segments with variables.
        case template(PathTemplate)
    }

    public let index: Int
    public let name: String
    public let exactHosts: Set<String>
    /// Suffixes including the dot: "*.example.com" is stored as ".example.com".
    public let wildcardHosts: [String]
    public let path: PathRule
    /// The `path_template`, when the path rule is one.
    public var pathTemplate: PathTemplate? {
        if case .template(let template) = path { return template }
        return nil
    }
    /// nil: any method. GET implies HEAD.
    public let methods: [HTTPMethod]?
    public let headers: [(name: String, rule: HeaderRule)]
    /// `match.query`: conditions on the query parameters.
    public let query: [(name: String, rule: MatchConfig.QueryRule)]
    /// Where the route forwards: one upstream, or the members of its `split` (see `chooseDestination`).
    public let destinations: [RouteDestination]
    private let split: WeightedSplit?
    private let stickyOn: RequestKey?
    /// `set_cookie`: the name of the cookie given to clients that lack it.
    private let stickyCookieToSet: String?
    /// `mirror`: the upstream (index into `config.upstreams`) that gets copies, and the share of requests copied.
    public let mirror: (upstreamIndex: Int, share: Double)?
    /// gzip for this route's responses (its own `compression`, else the top-level one); nil: off.
    public let compression: CompressionPolicy?
    /// `access_log`: which of the route's requests are logged.
    public let accessLog: RouteConfig.AccessLog
    /// `grpc_web`: gRPC-Web requests are translated to gRPC and their answers back.
    public let grpcWeb: Bool
    /// `request_buffering` (or `request_validation`): the body is received whole before the upstream is called.
    public let buffersRequests: Bool
    /// `response_buffering`: bytes of an answer held for a client that reads slower than the upstream sends (nil: none).
    public let responseBufferBytes: Int?
    /// `limit_rate`: the pace of each answer's body (a fresh copy per answer); nil: as fast as the client takes it.
    public let limitRate: TransferRate?
    public let stripPrefix: String?
    /// `add_prefix`, without a trailing slash.
    public let addPrefix: String?
    /// `rewrite_path`: the upstream path from the template's variables.
    public let rewritePath: PathRewrite?
    /// The upstream gets the request's own Host (true), or the forwarder writes the target's.
    public let preserveHost: Bool
    /// `host_rewrite`: the Host the upstream gets instead.
    public let hostRewrite: String?
    /// Filters that run only for this route, after the global ones.
    public let filters: [any GatewayFilter]
    public let metrics: RouteMetrics
    /// Set when the route has `cache.enabled`.
    public let cache: RouteCachePolicy?
    /// The route has `cors`: a preflight matches it by the method it asks about (see `RouteTable.match`).
    public let answersPreflight: Bool
    /// The route's body limit, if it overrides `limits.max_body_bytes` (its own `max_body_bytes`, or
    /// `request_validation.max_body_bytes` where that is smaller).
    public let maxBodyBytes: Int?
    /// `tunnel_idle_timeout_ms` for this route's upgraded connections (nil: `limits`').
    public let tunnelIdleTimeoutMs: Int?
    /// `intercept_errors` (the route's own, else the top-level one): upstream errors answered as the gateway's.
    public let errorInterception: ErrorInterception?
    /// `request_validation`: the schema request bodies must match (they are then received whole first).
    public let requestValidation: RequestValidation?
    /// `webhook_signature`: what the whole body is checked for first (it is then received whole too).
    public let bodyCheck: (any RequestBodyCheck)?
    /// `location_rewrite`: redirects' `Location` as the client must read it; nil when off.
    public let locationRewrite: LocationRewrite?
    /// `cookie_rewrite`: the upstream's cookies' `Path` and `Domain` as the browser must see them; nil when not asked.
    public let cookieRewrite: CookieRewrite?
    /// `early_hints`: which 103s the route's clients get; nil when none.
    public let earlyHints: EarlyHints?
    /// `match.listeners`: the listeners this route serves (nil: all).
    let listeners: [String]?
    /// `match.client_ips`: the client addresses this route serves (nil: all).
    let clientAddresses: AddressSet?
    /// `request_headers`: applied last to the request the upstream gets, so they also cover the forwarding headers.
    public let requestHeaderEdits: HeaderEdits
    /// `request_query`: parameters removed from and added to the target the upstream gets (nil: none).
    public let queryEdits: QueryEdits?

    public init(
        config: RouteConfig, index: Int, upstreams: [(index: Int, config: UpstreamConfig?)], mirrorIndex: Int? = nil,
        compression: CompressionConfig? = nil, interceptErrors: InterceptErrorsConfig? = nil,
        defaultMaxBodyBytes: Int = LimitsConfig().maxBodyBytes, filters: [any GatewayFilter] = [], bodyCheck: (any RequestBodyCheck)? = nil,
        metrics: GatewayMetrics = .disabled,
        cache: ResponseCache? = nil, credentials: [String: any UpstreamCredentials] = [:]
    ) {
        self.metrics = metrics.route(config.name)
        if let cache, let settings = config.cache, settings.enabled {
            self.cache = RouteCachePolicy(cache: cache, route: config.name, config: settings, metrics: metrics)
        } else {
            self.cache = nil
        }
        self.index = index
        self.name = config.name
        self.listeners = config.match.listeners.isEmpty ? nil : config.match.listeners
        self.clientAddresses = config.match.clientIPs.isEmpty ? nil : AddressSet(config.match.clientIPs)
        self.exactHosts = Set(config.match.hosts.filter { !$0.hasPrefix("*.") })
        self.wildcardHosts = config.match.hosts.filter { $0.hasPrefix("*.") }.map { String($0.dropFirst()) }
        if let exact = config.match.path {
            self.path = .exact(exact)
        } else if let prefix = config.match.pathPrefix {
            self.path = .prefix(PathRules.normalisedPrefix(prefix))
        } else if let template = config.match.pathTemplate {
            self.path = .template(template)
        } else {
            self.path = .any
        }
        self.methods = config.match.methods.isEmpty ? nil : config.match.methods.map { HTTPMethod($0) }
        self.headers = config.match.headers
        self.query = config.match.query
        self.stripPrefix = config.stripPrefix.map { PathRules.normalisedPrefix($0) }
        self.addPrefix = config.addPrefix
        self.rewritePath = config.rewritePath
        self.preserveHost = config.preserveHost || config.hostRewrite != nil
        self.hostRewrite = config.hostRewrite
        self.filters = filters
        self.answersPreflight = config.cors != nil
        self.requestHeaderEdits = config.requestHeaders
        self.queryEdits = config.requestQuery
        // A body request_validation or a body check reads is held whole in memory: their own, usually smaller, limits
        // apply too.
        let heldLimits = [config.requestValidation?.bodySchema != nil ? config.requestValidation?.maxBodyBytes : nil, bodyCheck?.maxBodyBytes]
            .compactMap { $0 }
        self.maxBodyBytes = heldLimits.isEmpty ? config.maxBodyBytes : heldLimits.reduce(config.maxBodyBytes ?? defaultMaxBodyBytes, min)
        self.bodyCheck = bodyCheck
        let prefixes = PrefixMapping(strip: stripPrefix, add: addPrefix)
        self.locationRewrite = LocationRewrite(
            config.locationRewrite, prefixes: prefixes, hostRewrite: hostRewrite, upstreams: upstreams.compactMap(\.config))
        self.cookieRewrite = CookieRewrite(config.cookieRewrite, prefixes: prefixes)
        self.earlyHints = EarlyHints(config.earlyHints)
        self.tunnelIdleTimeoutMs = config.tunnelIdleTimeoutMs
        self.errorInterception = ErrorInterception(route: config.interceptErrors, global: interceptErrors)
        self.requestValidation = RequestValidation(config.requestValidation, route: config.name, metrics: metrics)
        let splits = (config.split?.members.count ?? 0) > 1
        self.destinations = zip(config.upstreamNames, upstreams).map { name, upstream in
            // The route's own read_timeout_ms / total_timeout_ms, else the upstream's, decided here once.
            let readMs = config.readTimeoutMs ?? upstream.config?.readTimeoutMs
            let totalMs = config.totalTimeoutMs ?? upstream.config?.totalTimeoutMs
            var destination = RouteDestination(
                upstreamIndex: upstream.index, upstreamName: name,
                settings: CallSettings(
                    read: readMs.map { .milliseconds(Int64($0)) }, total: totalMs.map { .milliseconds(Int64($0)) },
                    retryAttempts: config.retryAttempts),
                cacheKeySuffix: splits ? " " + name : "")
            destination.settings.hedgeAfter = config.hedgeDelayMs(to: upstream.config).map { .milliseconds(Int64($0)) }
            destination.speaksHTTP2 = upstream.config?.targets.contains { $0.httpProtocol == .h2 } ?? false
            destination.credentials = credentials[name]
            return destination
        }
        self.compression = CompressionPolicy(config.compression ?? compression)
        self.accessLog = config.accessLog
        self.grpcWeb = config.grpcWeb
        self.responseBufferBytes = config.responseBufferBytes
        self.limitRate = config.limitRate.map { TransferRate(bytesPerSecond: $0.bytesPerSecond, freeBytes: $0.afterBytes) }
        self.buffersRequests = config.requestBuffering || config.requestValidation?.bodySchema != nil || bodyCheck != nil
        if let mirrorIndex, let mirror = config.mirror {
            self.mirror = (mirrorIndex, mirror.percent / 100)
        } else {
            self.mirror = nil
        }
        if splits, let split = config.split {
            self.split = WeightedSplit(weights: split.members.map(\.weight))
            self.stickyOn = split.stickyOn
            self.stickyCookieToSet = split.setCookie ? split.stickyOn?.cookieName : nil
        } else {
            (self.split, self.stickyOn, self.stickyCookieToSet) = (nil, nil, nil)
        }
    }

    /// Whether this request is copied to the route's mirror (a draw against its `percent`).
    public func mirrorsThisRequest() -> Bool {
        guard let mirror, mirror.share > 0 else { return false }
        return Chance.happens(mirror.share)
    }

    /// True when the route shares its traffic between upstreams.
    public var splits: Bool { split != nil }

    /// The upstream this request goes to: the route's only one, or a split member drawn by weight. A sticky
    /// key keeps its member on every request and every gateway instance; a request without one is drawn at random.
    /// Returns an index into `destinations` (there is none on a route that answers itself), and with
    /// `set_cookie` for a client without the cookie, the `Set-Cookie` value that keeps it where it was drawn.
    public func chooseDestination(
        headers: HeaderList, clientIP: String, consumer: String?, isTLS: Bool
    ) -> (index: Int, setCookie: String?) {
        guard let split else { return (0, nil) }
        if let key = stickyOn?.value(in: headers, clientIP: clientIP, consumer: consumer) { return (split.choose(key: key), nil) }
        guard let cookie = stickyCookieToSet else { return (split.choose(ThreadRandom.next()), nil) }
        // A session cookie, unreadable by scripts, sent on same-site navigation; Secure where it came over TLS.
        let value = RequestID.spanID(ThreadRandom.next())
        return (split.choose(key: value), "\(cookie)=\(value); Path=/; HttpOnly; SameSite=Lax" + (isTLS ? "; Secure" : ""))
    }

    var hasHostRule: Bool { !exactHosts.isEmpty || !wildcardHosts.isEmpty }

    /// How well this route's host rule fits `host`: nil when it does not match. Exact beats the longest
    /// wildcard suffix, which beats no host rule at all.
    func hostScore(_ host: Substring) -> Int? {
        guard hasHostRule else { return 0 }
        if exactHosts.contains(String(host)) { return Int.max }
        var best: Int?
        for suffix in wildcardHosts where host.count > suffix.count && host.hasSuffix(suffix) {
            best = max(best ?? 0, suffix.count)
        }
        return best
    }

    /// nil when the path does not match; otherwise a score where exact > longer prefix > shorter prefix.
    func pathScore(_ path: Substring) -> Int? {
        switch self.path {
        case .any:
            return 0
        case .exact(let exact):
            return PathRules.pathEquals(path, exact) ? Int.max : nil
        case .prefix(let prefix):
            return PathRules.hasNormalisedSegmentPrefix(path, prefix) ? 1 + prefix.utf8.count : nil
        case .template(let template):
            return template.match(path) != nil ? template.specificity : nil
        }
    }

    /// The upstream target under `rewrite_path`: the new path from this request's variables, and its query.
    /// The target the upstream gets for the client's (normalised) `target`: `strip_prefix`, then `add_prefix`, or
    /// `rewrite_path`; then `request_query`. `stripped`: the prefix removed, as the client wrote it (for
    /// `X-Forwarded-Prefix`).
    public func upstreamTarget(for target: String) -> (target: String, stripped: Substring?) {
        var upstream = target
        var stripped: Substring?
        if let prefix = stripPrefix, let (rest, removed) = PathRules.stripping(prefix, from: target) {
            upstream = rest
            stripped = removed
        }
        if let prefix = addPrefix, upstream.hasPrefix("/") { upstream = prefix + upstream }
        if let rewritten = rewrittenTarget(target) { upstream = rewritten }
        if let edits = queryEdits {
            upstream = QueryString.editing(upstream, remove: edits.remove + edits.set.map(\.name), add: edits.set)
        }
        return (upstream, stripped)
    }

    public func rewrittenTarget(_ target: String) -> String? {
        guard let rewritePath, let template = pathTemplate else { return nil }
        let queryStart = target.utf8.firstIndex(of: UInt8(ascii: "?")) ?? target.utf8.endIndex
        guard let captures = template.match(target[..<queryStart]) else { return nil }
        return rewritePath.apply(captures) + target[queryStart...]
    }

    func headersMatch(_ requestHeaders: HeaderList, preflight: Preflight?) -> Bool {
        // A preflight carries only the names of the headers the request will have (Access-Control-Request-Headers).
        if answersPreflight, let preflight {
            return headers.allSatisfy { condition in
                preflight.headerNames.contains { $0.equalsCaseInsensitively(condition.name) } != (condition.rule == .present(false))
            }
        }
        return headers.allSatisfy { condition in condition.rule.matches(requestHeaders[condition.name]) }
    }

    /// Whether the query (without `?`) meets every `match.query` condition.
    func queryMatches(_ parameters: QueryParameters) -> Bool {
        query.allSatisfy { condition in
            switch condition.rule {
            case .present(let present): return parameters.contains(condition.name) == present
            case .equals(let value): return parameters.values(condition.name).contains(value)
            }
        }
    }

    func accepts(_ method: HTTPMethod, preflight: Preflight?) -> Bool {
        // TRACE answers with the request as received, the fields the gateway added (identity, forwarding, tokens)
        // with it: only a route that names it takes it (NGINX refuses it outright).
        guard let methods else { return method != .TRACE }
        if methods.contains(method) || (method == .HEAD && methods.contains(.GET)) { return true }
        // A browser's preflight for a method the route takes is the route's to answer (its CORS filter does),
        // so `match.methods` need not list OPTIONS.
        if answersPreflight, let preflight { return accepts(preflight.method, preflight: nil) }
        return false
    }

    /// The methods to list in `Allow` for a 405.
    var allowedMethodNames: [String] {
        guard let methods else { return ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] }
        var names = methods.map(\.name)
        if methods.contains(.GET) && !methods.contains(.HEAD) { names.append("HEAD") }
        return names
    }
}

/// A CORS preflight: OPTIONS from a browser, asking whether a request with this method and these headers may
/// follow. Routes with `cors` match it as they would match that request.
struct Preflight {
    let method: HTTPMethod
    let headerNames: [String]

    init?(_ headers: HeaderList) {
        guard headers.contains(name: "origin"), let method = headers.first(name: "access-control-request-method") else { return nil }
        self.method = HTTPMethod(method)
        self.headerNames = CORSPolicy.requestedHeaderNames(headers["access-control-request-headers"].joined(separator: ","))
    }
}

public enum RouteMatch: Sendable {
    case matched(CompiledRoute)
    /// The path matched routes, but none of them takes this method.
    case methodNotAllowed(allowed: [String])
    case notFound
}

/// The immutable routing table: built once per config, read by every request.
///
/// Specificity, highest first: host (exact, then longest wildcard suffix, then none), path (exact, then
/// longest prefix), number of header and query conditions, a method list. Ties go to the route listed first.
public struct RouteTable: Sendable {
    public let routes: [CompiledRoute]
    /// Some route has `cors`: only then is an OPTIONS request read as a preflight.
    private let answersPreflights: Bool

    public init(routes: [CompiledRoute]) {
        self.routes = routes
        self.answersPreflights = routes.contains { $0.answersPreflight }
    }

    /// - Parameters:
    ///   - host: the request's host, lowercased and without port ("" when absent).
    ///   - path: the request target's path, without the query.
    ///   - query: the request target's query, without `?` ("" when absent); read only when a route has query conditions.
    /// `listener`: the name of the listener the request came in on (for `match.listeners`); `clientIP`: the client's
    /// address as `trusted_proxies` resolve it (for `match.client_ips`; nil for a Unix-socket peer), read only when a
    /// route has client conditions.
    public func match(
        host: Substring, path: Substring, query: @autoclosure () -> Substring = "", method: HTTPMethod, headers: HeaderList, listener: String,
        clientIP: @autoclosure () -> IPAddress? = nil
    ) -> RouteMatch {
        var best: (route: CompiledRoute, score: (Int, Int, Int, Int))?
        var allowed: [String] = []
        var methodMismatch = false
        let preflight = answersPreflights && method == .OPTIONS ? Preflight(headers) : nil
        var parameters: QueryParameters?  // parsed once, and only for a route with query conditions
        var client: IPAddress??  // the same for the client's address and client conditions
        for route in routes {
            if let listeners = route.listeners, !listeners.contains(listener) { continue }
            if let addresses = route.clientAddresses {
                if client == nil { client = .some(clientIP()) }
                guard let address = client!, addresses.contains(address) else { continue }
            }
            guard let hostScore = route.hostScore(host), let pathScore = route.pathScore(path),
                route.headersMatch(headers, preflight: preflight)
            else { continue }
            if !route.query.isEmpty {
                if parameters == nil { parameters = QueryParameters(query()) }
                guard route.queryMatches(parameters!) else { continue }
            }
            guard route.accepts(method, preflight: preflight) else {
                methodMismatch = true
                for name in route.allowedMethodNames where !allowed.contains(name) { allowed.append(name) }
                continue
            }
            // A listener or client rule counts like one more condition: an internal listener's own route, or the office
            // network's, wins over a general one.
            let conditions =
                route.headers.count + route.query.count + (route.listeners == nil ? 0 : 1) + (route.clientAddresses == nil ? 0 : 1)
            let score = (hostScore, pathScore, conditions, route.methods == nil ? 0 : 1)
            if best == nil || score > best!.score { best = (route, score) }
        }
        if let best { return .matched(best.route) }
        if methodMismatch { return .methodNotAllowed(allowed: allowed) }
        return .notFound
    }
}

extension PathRules {
    /// Removes `prefix` (whole segments) from the path of `uri`, keeping the query string byte for byte.
    /// "/api/v1/orders?x=1" without "/api" is "/v1/orders?x=1"; "/api" alone becomes "/".
    /// `prefix` must be normalised (compiled routes hold it so).
    public static func strip(_ prefix: String, from uri: String) -> String {
        stripping(prefix, from: uri)?.uri ?? uri
    }

    /// `strip`, also telling the part removed as the client wrote it (path rules ignore case): nil when `uri` is
    /// not under `prefix`, or `prefix` is "/".
    public static func stripping(_ prefix: String, from uri: String) -> (uri: String, removed: Substring)? {
        let queryStart = uri.utf8.firstIndex(of: UInt8(ascii: "?")) ?? uri.utf8.endIndex
        let path = uri[..<queryStart]
        guard prefix.utf8.count > 1, hasNormalisedSegmentPrefix(path, prefix) else { return nil }
        let split = uri.utf8.index(uri.utf8.startIndex, offsetBy: prefix.utf8.count)
        let rest = uri[split...]
        return (rest.utf8.first == UInt8(ascii: "/") ? String(rest) : "/" + rest, uri[..<split])
    }
}

/// A query string's parameters, names and values percent-decoded (`+` is left as it is: only HTML forms mean a
/// space by it). A parameter without `=` has the value "".
struct QueryParameters {
    private let pairs: [(name: String, value: String)]

    init(_ query: Substring) {
        pairs = query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            guard let equals = pair.firstIndex(of: "=") else { return (Self.decoded(pair), "") }
            return (Self.decoded(pair[..<equals]), Self.decoded(pair[pair.index(after: equals)...]))
        }
    }

    /// Every parameter in order, repeated names included.
    var all: [(name: String, value: String)] { pairs }
    func contains(_ name: String) -> Bool { pairs.contains { $0.name == name } }
    func values(_ name: String) -> [String] { pairs.filter { $0.name == name }.map(\.value) }

    /// `%XX` decoded; a malformed escape is kept as written.
    static func decoded(_ text: Substring) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%"), utf8.count >= 2,
                let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Query-string helpers for filters that read or drop one parameter of a request target.
public enum QueryString {
    /// The first value of `name` in `target`'s query, percent-decoded; nil when absent.
    public static func value(of name: String, in target: String) -> String? {
        guard let query = query(of: target) else { return nil }
        return QueryParameters(query).values(name).first
    }

    /// Every parameter of `target`'s query in order, names and values percent-decoded.
    public static func parameters(of target: String) -> [(name: String, value: String)] {
        query(of: target).map { QueryParameters($0).all } ?? []
    }

    /// `target` without any `name` parameter (the other parameters keep their order and spelling).
    public static func removing(_ name: String, from target: String) -> String {
        guard let mark = target.firstIndex(of: "?") else { return target }
        let kept = target[target.index(after: mark)...].split(separator: "&", omittingEmptySubsequences: false).filter { pair in
            QueryParameters.decoded(pair.prefix { $0 != "=" }) != name
        }
        return kept.isEmpty ? String(target[..<mark]) : target[..<mark] + "?" + kept.joined(separator: "&")
    }

    private static func query(of target: String) -> Substring? {
        guard let mark = target.firstIndex(of: "?") else { return nil }
        return target[target.index(after: mark)...]
    }

    /// `target` without the parameters named in `remove` (compared percent-decoded), then with `add` appended
    /// (percent-encoded), the others keeping their order and spelling.
    public static func editing(_ target: String, remove: [String], add: [(name: String, value: String)]) -> String {
        var edited = target
        for name in remove { edited = removing(name, from: edited) }
        guard !add.isEmpty else { return edited }
        let appended = add.map { encoded($0.name) + "=" + encoded($0.value) }.joined(separator: "&")
        return edited + (edited.contains("?") ? "&" : "?") + appended
    }

    /// A query component (or `application/x-www-form-urlencoded` value, RFC 6749 Appendix B): unreserved
    /// characters as they are, every other byte percent-encoded.
    public static func encoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                output.append(byte)
            default:
                output += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: output, as: UTF8.self)
    }
}
