import ArgumentParser
import Foundation
import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy

/// `gateway explain GET https://api.example.com/users/1 -H 'X-Tenant: acme'`: which route a request would take and
/// what would happen to it there, worked out from the config alone (nothing is started, nothing is sent). For the
/// question every routing change raises: does this request still land where it should?
public struct ExplainCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show the route a request would take (from the config alone; nothing is sent).")

    @Option(name: .shortAndLong, help: "Path to gateway.json.")
    var config = "gateway.json"

    @Option(help: "The listener the request comes in on (default: the first).")
    var listener: String?

    @Option(name: .customLong("client-ip"), help: "The client's address, as trusted_proxies would resolve it (for match.client_ips).")
    var clientIP: String?

    @Option(name: [.customShort("H"), .customLong("header")], help: "A request header, as `Name: value` (repeatable).")
    var headers: [String] = []

    @Argument(help: "The method (GET, POST, ...).")
    var method: String

    @Argument(help: "An absolute URL (https://api.example.com/path?query), or a path with the Host in -H.")
    var url: String

    public init() {}

    public func run() async throws { try await execute() }

    public func execute() async throws {
        let result = await ConfigCheck.load(path: config)
        guard let gatewayConfig = result.config else {
            for diagnostic in result.diagnostics { print(diagnostic) }
            throw ExitCode(1)
        }
        for line in try Self.explain(
            method: method, url: url, headers: headers, listener: listener, clientIP: clientIP, config: gatewayConfig) { print(line) }
    }

    /// What explain says about a request given as on the command line (and to the admin API's `/explain`): the
    /// listener defaults to the first; without a client address, routes with `match.client_ips` match no request.
    static func explain(
        method: String, url: String, headers: [String], listener: String?, clientIP: String? = nil, config: GatewayConfig
    ) throws -> [String] {
        let name = listener ?? config.listeners.first?.name ?? ""
        guard config.listeners.contains(where: { $0.name == name }) else { throw ValidationError("no listener named \"\(name)\"") }
        var client: IPAddress?
        if let clientIP {
            guard let address = IPAddress(clientIP) else { throw ValidationError("\"\(clientIP)\" is not an IP address") }
            client = address
        }
        return explain(try request(method: method, url: url, headers: headers), listener: name, client: client, config: config)
    }

    /// The request the command line describes: the Host from the URL, else from `-H`.
    static func request(method: String, url: String, headers: [String]) throws -> RequestHead {
        var head = RequestHead(method: HTTPMethod(method.uppercased()), target: url)
        for header in headers {
            guard let colon = header.firstIndex(of: ":") else { throw ValidationError("-H \"\(header)\" is not `Name: value`") }
            head.headers.add(name: String(header[..<colon]).trimmingCharacters(in: .whitespaces), value: String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
        if !url.hasPrefix("/") {
            guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
                throw ValidationError("\"\(url)\" is neither an absolute URL nor a path")
            }
            head.headers.replaceOrAdd(name: "host", value: components.port.map { "\(host):\($0)" } ?? host)
            let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
            head.target = path + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
        }
        return head
    }

    /// What the gateway would do with `request`, one line a fact.
    static func explain(_ request: RequestHead, listener: String, client: IPAddress? = nil, config: GatewayConfig) -> [String] {
        var head = request
        let slashes: PathNormalizer.EncodedSlashes = config.limits.encodedSlashes == .keep ? .keep : .reject
        switch PathNormalizer.normalize(head.target, encodedSlashes: slashes) {
        case .success(let target): head.target = target
        case .failure(let failure): return ["400 BAD_REQUEST: \(failure)"]
        }
        let hostHeader = head.headers.first(name: "host") ?? ""
        guard HeaderRules.isValidHost(hostHeader) else { return ["400 BAD_REQUEST: the Host \"\(hostHeader)\" is not a valid host[:port]"] }
        var lines = ["request: \(head.method) \(head.target) (Host: \(hostHeader.isEmpty ? "none" : hostHeader), listener \(listener)\(client.map { ", client \($0)" } ?? ""))"]
        let table = GatewayRuntime.compileRoutes(config)
        switch table.match(
            host: HeaderRules.hostName(hostHeader), path: head.path, query: head.query, method: head.method, headers: head.headers, listener: listener,
            clientIP: client)
        {
        case .notFound:
            lines.append("404 ROUTE_NOT_FOUND: no route matches")
        case .methodNotAllowed(let allowed):
            lines.append("405 METHOD_NOT_ALLOWED: routes for this path take \(allowed.joined(separator: ", "))")
        case .matched(let compiled):
            let route = config.routes[compiled.index]
            lines.append("route: \(route.name) (\(config.routeLocation(compiled.index)))")
            // On a route that takes login sessions, the login's own paths are answered by the gateway.
            if route.auth?.require.contains(.oidc) == true, let loginPath = config.auth?.oidc?.loginPath(head.path) {
                let what = loginPath == .callback ? "the OpenID provider's redirect back (auth.oidc.redirect_path)" : "logout (auth.oidc.logout_path)"
                lines.append("  answers itself: \(what)")
                return lines
            }
            lines += describe(route, config: config).map { "  " + $0 }
            if route.answer == nil {
                let host = route.hostRewrite ?? (route.preserveHost ? hostHeader : "the target's host:port")
                lines.append("  upstream request: \(head.method) \(compiled.upstreamTarget(for: head.target).target) (Host: \(host))")
            }
        }
        return lines
    }

    /// A route's checks in the order they run, then where its requests go.
    static func describe(_ route: RouteConfig, config: GatewayConfig) -> [String] {
        var checks: [String] = []
        if !route.allowIPs.isEmpty || !route.denyIPs.isEmpty { checks.append("client addresses (allow_ips/deny_ips)") }
        if !route.countries.isEmpty { checks.append("client countries (allow_countries/deny_countries)") }
        if !route.asns.isEmpty { checks.append("client networks (allow_asns/deny_asns)") }
        if route.cors != nil { checks.append("cors") }
        if let csrf = route.effectiveCSRF(global: config.csrf) { checks.append(csrf.reportOnly ? "csrf (report only)" : "csrf") }
        if let auth = route.auth {
            let scopes = auth.scopes.isEmpty ? "" : "; scopes \(auth.scopes.joined(separator: " "))"
            checks.append("auth (\(auth.require.map(\.rawValue).joined(separator: " or "))\(scopes))")
        }
        if let service = route.externalAuth { checks.append("external_auth \(service)") }
        if !route.rateLimits.isEmpty { checks.append("rate_limits (\(route.rateLimits.map(\.name).joined(separator: ", ")))") }
        if let limit = route.concurrencyLimit { checks.append("concurrency_limit (\(limit.max) per \(limit.key))") }
        if route.fault != nil { checks.append("fault injection") }
        if let adaptive = route.adaptiveConcurrency {
            checks.append("adaptive_concurrency (\(adaptive.minLimit)-\(adaptive.maxLimit) in flight, following the upstream's latency)")
        }
        if let webhook = route.webhookSignature {
            let replays = webhook.replayProtection ? ", replays refused" : ""
            checks.append("webhook_signature (\(webhook.scheme.rawValue), bodies up to \(webhook.maxBodyBytes) bytes\(replays))")
        }
        if let validation = route.requestValidation {
            let parts = [
                validation.pathSchema.map { _ in "the path's variables" },
                validation.headerSchema.map { schema in "the headers \(schema.headerNames.joined(separator: ", "))" },
                validation.querySchema.map { _ in "the query" },
                validation.bodySchema.map { _ in "JSON bodies up to \(validation.maxBodyBytes) bytes" },
            ].compactMap { $0 }
            let listed = parts.count > 1 ? parts.dropLast().joined(separator: ", ") + " and " + parts.last! : parts.joined()
            checks.append("request_validation (\(listed), against the route's schemas)")
        }
        var lines = ["checks, in order: " + (checks.isEmpty ? "none (a public route)" : checks.joined(separator: ", "))]
        if let deprecation = route.deprecation {
            let sunset = deprecation.sunset.map { "; sunset \(HTTPDate.format($0))" + (deprecation.refuseAfterSunset ? ", then 410 API_SUNSET" : "") }
            lines.append("deprecated: since \(HTTPDate.format(deprecation.date))\(sunset ?? "") (Deprecation and Sunset on every answer)")
        }
        switch route.answer {
        case .redirect(let location, let status, let appendPath)?:
            lines.append("answers itself: \(status) redirect to \(location)\(appendPath ? " (+ the request's path)" : "")")
            return lines
        case .error(let status, let code, _, _)?:
            lines.append("answers itself: \(status) \(code)")
            return lines
        case .upstreamTokenKeys?:
            lines.append("answers itself: 200 the upstream-token public key set (JWKS)")
            return lines
        case .content(let status, let contentType, let body, _)?:
            lines.append("answers itself: \(status) \(contentType), \(body.utf8.count) bytes")
            return lines
        case nil:
            break
        }
        if let split = route.split {
            let total = max(1, split.members.reduce(0) { $0 + $1.weight })
            let shares = split.members.map { "\($0.upstream) \(Int((Double($0.weight) * 100 / Double(total)).rounded()))%" }
            lines.append("split: " + shares.joined(separator: ", "))
        }
        for name in route.upstreamNames {
            guard let upstream = config.upstream(named: name) else { continue }
            let targets = upstream.targets.map { $0.backup ? $0.label + " (backup)" : $0.label }.joined(separator: ", ")
            let hedge = route.hedgeDelayMs(to: upstream).map { "; GET/HEAD hedged after \($0) ms" }
            lines.append("upstream \(name): \(upstream.balance.rawValue) over \(targets)\(hedge ?? "")")
        }
        if let mirror = route.mirror { lines.append("mirror: \(mirror.upstream) (\(mirror.percent)% of requests)") }
        if route.cache?.enabled == true { lines.append("cache: on") }
        if let intercept = InterceptErrorsConfig.effective(route: route.interceptErrors, global: config.interceptErrors) {
            let statuses = intercept.statuses.map { $0 < 10 ? "\($0)xx" : String($0) }.joined(separator: ", ")
            let json = intercept.keepJSON ? " (JSON answers pass)" : ""
            lines.append("intercept_errors: the upstream's \(statuses) answered as \(ErrorInterception.code)\(json)")
        }
        return lines
    }
}
