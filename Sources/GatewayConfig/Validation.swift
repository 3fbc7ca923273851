import GatewayPolicy

extension GatewayConfig {
    /// Checks that span several keys (names that must exist or be unique, features that need each other,
    /// combinations that cannot work as meant).
    func validate(into context: DecodingContext) {
        let root = JSONPath.root
        /// Whether `name` is one of `known` (a `kind` such as "upstream"); if not, an error at `at` with the
        /// closest known name, or `hint`.
        func refers(to name: String, among known: Set<String>, kind: String, at: JSONPath, hint: String? = nil) -> Bool {
            if known.contains(name) { return true }
            if let guess = closestMatch(to: name, among: known) {
                context.error(at, "unknown \(kind) \"\(name)\" (did you mean \"\(guess)\"?)")
            } else {
                context.error(at, "unknown \(kind) \"\(name)\"" + (hint.map { " (\($0))" } ?? ""))
            }
            return false
        }

        var listenerNames: Set<String> = []
        var endpoints: Set<String> = []
        for (index, listener) in listeners.enumerated() {
            let path = root / "listeners" / index
            if !listenerNames.insert(listener.name).inserted {
                context.error(path / "name", "duplicate listener name \"\(listener.name)\"")
            }
            if let socketPath = listener.socketPath {
                if !endpoints.insert("unix:" + socketPath).inserted { context.error(path / "path", "another listener already uses \(socketPath)") }
            } else if listener.port != 0 && !endpoints.insert("\(listener.address):\(listener.port)").inserted {
                context.error(path / "port", "another listener already uses \(listener.address):\(listener.port)")
            }
            if listener.socketPath != nil && listener.proxyProtocol && !trustsUnixPeers {
                context.error(path / "proxy_protocol", #"needs "unix:" in trusted_proxies: the proxies on this socket are then allowed to send the header"#)
            } else if listener.socketPath == nil && listener.proxyProtocol && trustedProxies.isEmpty {
                context.error(
                    path / "proxy_protocol", "needs trusted_proxies: the load balancers allowed to send the header (connections from anyone else are refused)")
            }
            if listener.tls != nil && listener.redirectHTTPSPort != nil {
                context.error(path / "redirect_https_port", "only a plaintext listener can redirect to https")
            }
        }

        var upstreamNames: Set<String> = []
        for upstream in upstreams {
            upstreamNames.insert(upstream.name)
            let path = root / "upstreams" / upstream.name
            let usesTLS = upstream.targets.contains { $0.scheme == .https }
            if !usesTLS && (upstream.tls.caFile != nil || upstream.tls.clientCert != nil || upstream.tls.insecureSkipVerify) {
                context.warning(path / "tls", "unused: no target is https://")
            } else if usesTLS && upstream.tls.insecureSkipVerify {
                context.warning(
                    path / "tls" / "insecure_skip_verify", "upstream certificates are not verified: anyone on the path can impersonate the upstream")
            }
            for (index, target) in upstream.targets.enumerated() {
                guard let listener = listeners.first(where: { $0.receives(target) }) else { continue }
                context.warning(
                    path / "targets" / index,
                    "is this gateway's own listener \"\(listener.name)\": "
                        + (loopDetection
                            ? "loop_detection answers what comes back through it with 508 (turn it off if the gateway is meant to call itself)"
                            : "requests sent there come back to the gateway"))
            }
            if let retries = upstream.retries, let perTry = retries.perTryTimeoutMs, let total = upstream.totalTimeoutMs, perTry >= total {
                context.warning(path / "retries" / "per_try_timeout_ms", "is not shorter than total_timeout_ms, so no retry fits")
            }
            if let total = upstream.totalTimeoutMs, total < upstream.readTimeoutMs {
                context.warning(path / "total_timeout_ms", "is shorter than read_timeout_ms, so the read timeout never applies")
            }
            if let hedge = upstream.retries?.hedgeAfterMs {
                // The first call's own deadline comes first: it fails (or retries) before a hedge would go out.
                let deadline = [upstream.retries?.perTryTimeoutMs, upstream.readTimeoutMs, upstream.totalTimeoutMs].compactMap { $0 }.min()
                if let deadline, hedge >= deadline {
                    context.warning(path / "retries" / "hedge_after_ms", "is not shorter than the timeouts (\(deadline) ms), so no hedge is ever sent")
                }
            }
        }

        var routeNames: Set<String> = []
        var usedUpstreams: Set<String> = []
        // Authorization services ask their upstream on behalf of the routes that name them.
        let externalAuthNames = Set(externalAuth.map(\.name))
        var usedExternalAuth: Set<String> = []
        for service in externalAuth where !service.upstream.isEmpty {
            if refers(to: service.upstream, among: upstreamNames, kind: "upstream", at: root / "external_auth" / service.name / "upstream") {
                usedUpstreams.insert(service.upstream)
            }
        }
        // TLS passthrough relays whole connections to its upstreams' targets.
        for (index, listener) in listeners.enumerated() {
            for (rule, passthrough) in (listener.tls?.passthrough ?? []).enumerated()
            where refers(to: passthrough.upstream, among: upstreamNames, kind: "upstream", at: root / "listeners" / index / "tls" / "passthrough" / rule / "upstream") {
                usedUpstreams.insert(passthrough.upstream)
            }
        }
        if let introspection = auth?.introspection,
            refers(to: introspection.upstream, among: upstreamNames, kind: "upstream", at: root / "auth" / "introspection" / "upstream")
        {
            usedUpstreams.insert(introspection.upstream)
        }
        if let oidc = auth?.oidc, refers(to: oidc.upstream, among: upstreamNames, kind: "upstream", at: root / "auth" / "oidc" / "upstream") {
            usedUpstreams.insert(oidc.upstream)
        }
        if let oidc = auth?.oidc {
            // The provider's redirect back and logout are answered by a route that takes sessions: without one
            // they would go to an upstream, or match no route at all.
            let sessionRoutes = routes.filter { $0.auth?.require.contains(.oidc) == true }
            for (key, path) in [("redirect_path", oidc.redirectPath), ("logout_path", oidc.logoutPath)]
            where !sessionRoutes.isEmpty && !sessionRoutes.contains(where: { Self.matchesPath($0.match, path) }) {
                context.warning(root / "auth" / "oidc" / key, "\(path) is under no route that requires \"oidc\": put it under one (the login cannot finish otherwise)")
            }
        }
        var matches: [String: Int] = [:]
        for (index, route) in routes.enumerated() {
            let path = root / "routes" / index
            if !routeNames.insert(route.name).inserted {
                context.error(path / "name", "duplicate route name \"\(route.name)\"")
            }
            for (listenerIndex, name) in route.match.listeners.enumerated() {
                _ = refers(to: name, among: listenerNames, kind: "listener", at: path / "match" / "listeners" / listenerIndex)
            }
            // Ties go to the route listed first, so a later route with the very same match never gets a request.
            // (A match with errors is left out: what is left of it says nothing about the route meant.)
            let matchPath = (path / "match").description
            let matchBroken = context.diagnostics.contains { diagnostic in
                diagnostic.severity == .error
                    && (diagnostic.path == matchPath || diagnostic.path.hasPrefix(matchPath + ".") || diagnostic.path.hasPrefix(matchPath + "["))
            }
            if matchBroken {
                // reported already
            } else if let first = matches[route.match.canonicalText] {
                context.warning(
                    path / "match", "never matches: routes[\(first)] (\"\(routes[first].name)\") has the same match and comes first")
            } else {
                matches[route.match.canonicalText] = index
            }
            // A route that answers itself (redirect or respond) names no upstream.
            var named: [(name: String, at: JSONPath)] =
                route.split.map { split in split.members.enumerated().map { ($1.upstream, path / "split" / "upstreams" / $0 / "name") } }
                ?? (route.upstream.isEmpty ? [] : [(route.upstream, path / "upstream")])
            if let mirror = route.mirror {
                if route.upstreamNames.contains(mirror.upstream) {
                    context.warning(path / "mirror" / "upstream", "the route forwards to \"\(mirror.upstream)\" already: mirrored requests reach it twice")
                }
                named.append((mirror.upstream, path / "mirror" / "upstream"))
            }
            for (name, at) in named where refers(to: name, among: upstreamNames, kind: "upstream", at: at) {
                usedUpstreams.insert(name)
            }
            // AWS services other than S3 need the body's hash in the signature, so the body must be whole before the call.
            if !route.requestBuffering, let signed = upstreams.first(where: { upstream in
                route.upstreamNames.contains(upstream.name) && upstream.awsSigV4.map { !$0.signsStreamedBodies } == true
            }) {
                context.error(
                    path / "request_buffering",
                    "upstream \"\(signed.name)\" signs requests for \(signed.awsSigV4?.service ?? "") with aws_sigv4, which covers the body's hash: set request_buffering true")
            }
            if let name = route.externalAuth {
                if route.cache?.enabled == true {
                    context.warning(
                        path / "cache",
                        "the cache is shared by everyone external_auth allows: per-user responses need Cache-Control: private or a Vary on the session field")
                }
                if refers(
                    to: name, among: externalAuthNames, kind: "external_auth service", at: path / "external_auth",
                    hint: "define it in the top-level external_auth")
                {
                    usedExternalAuth.insert(name)
                }
            }
            // Who the consumer is comes from the route's auth, or from its authorization service's consumer_header.
            let namesConsumer =
                route.auth != nil || externalAuth.contains { $0.name == route.externalAuth && $0.consumerHeader != nil }
            if route.grpcWeb, let plain = upstreams.first(where: { upstream in
                route.upstreamNames.contains(upstream.name) && upstream.targets.contains { $0.httpProtocol != .h2 }
            }) {
                context.warning(path / "grpc_web", "upstream \"\(plain.name)\" is not \"protocol\": \"h2\": gRPC servers answer over HTTP/2 only")
            }
            if let split = route.split, split.stickyOn == .consumer, !namesConsumer {
                context.warning(path / "split" / "sticky_on", "\"consumer\" on a route without auth keeps clients by their ip")
            }
            if let strip = route.stripPrefix, let prefix = route.match.pathPrefix ?? route.match.path,
                !PathRules.hasSegmentPrefix(prefix, strip)
            {
                context.warning(path / "strip_prefix", "\"\(strip)\" is not a prefix of the matched path \"\(prefix)\", so nothing is stripped")
            }
            if let auth = route.auth {
                if auth.require.contains(.jwt) && self.auth?.jwt == nil {
                    context.error(path / "auth" / "require", "\"jwt\" needs auth.jwt to be configured")
                }
                if auth.require.contains(.apiKey) && (self.auth?.apiKeys.isEmpty ?? true) && self.auth?.apiKeysFile == nil {
                    context.error(path / "auth" / "require", "\"api_key\" needs auth.api_keys or auth.api_keys_file to be configured")
                }
                if auth.require.contains(.introspection) && self.auth?.introspection == nil {
                    context.error(path / "auth" / "require", "\"introspection\" needs auth.introspection to be configured")
                }
                if auth.require.contains(.oidc) && self.auth?.oidc == nil {
                    context.error(path / "auth" / "require", "\"oidc\" needs auth.oidc to be configured")
                }
                if auth.require.contains(.basic) && self.auth?.basic == nil {
                    context.error(path / "auth" / "require", "\"basic\" needs auth.basic to be configured")
                }
                // Basic sends the password itself with every request, a login session its cookie: on a plaintext listener
                // anyone on the path reads them.
                let serving = route.match.listeners.isEmpty ? listeners : listeners.filter { route.match.listeners.contains($0.name) }
                let plaintext = serving.filter { $0.tls == nil && $0.redirectHTTPSPort == nil && !$0.proxyProtocol && !Self.isLoopback($0.address) }
                let names = plaintext.map { "\"\($0.name)\"" }.joined(separator: ", ")
                for (method, what) in [(RouteAuthConfig.Method.basic, "passwords"), (.oidc, "session cookies")] where auth.require.contains(method) && !plaintext.isEmpty {
                    context.warning(
                        path / "auth" / "require",
                        "\"\(method.rawValue)\" sends \(what) in clear text on plaintext listener \(names) (limit the route to TLS listeners with match.listeners)")
                }
                if auth.require.contains(.mtls) {
                    if self.auth?.mtlsClients.isEmpty ?? true {
                        context.error(path / "auth" / "require", "\"mtls\" needs auth.mtls_clients to be configured")
                    }
                    if !listeners.contains(where: { ($0.tls?.clientAuth ?? .none) != .none }) {
                        context.warning(
                            path / "auth" / "require", "\"mtls\": no listener asks for client certificates (tls.client_auth), so no request can present one")
                    }
                }
            }
            if let cors = route.cors, let auth = route.auth { checkCredentials(cors, auth, at: path / "cors", context) }
            if let total = route.totalTimeoutMs,
                upstreams.contains(where: { route.upstreamNames.contains($0.name) && total < route.readTimeoutMs ?? $0.readTimeoutMs })
            {
                context.warning(path / "total_timeout_ms", "is shorter than the read timeout, so the read timeout never applies")
            }
            // Route retries and hedges follow the upstream's retries section (statuses, backoff, budget).
            if let plain = upstreams.first(where: { route.upstreamNames.contains($0.name) && $0.retries == nil }) {
                if let attempts = route.retryAttempts, attempts > 0 {
                    context.error(
                        path / "retries" / "attempts",
                        "upstream \"\(plain.name)\" has no retries section: its statuses, backoff and budget are what retries follow")
                }
                if let hedge = route.hedgeAfterMs, hedge > 0 {
                    context.error(
                        path / "retries" / "hedge_after_ms",
                        "upstream \"\(plain.name)\" has no retries section: hedges are limited by its retry budget")
                }
            }
            if route.rateLimits.contains(where: { $0.key == .consumer }) && !namesConsumer {
                context.warning(path / "rate_limits", "key \"consumer\" on a route without auth counts per client ip")
            }
            let takesTokens = route.auth?.require.contains(where: \.carriesClaims) ?? false
            let claimKeys = route.rateLimits.map(\.key) + [route.concurrencyLimit?.key].compactMap { $0 }
            if !takesTokens, claimKeys.contains(where: { if case .claim = $0 { true } else { false } }) {
                context.warning(path / "auth", "a \"claim:\" key on a route that takes no tokens (jwt, introspection, oidc) counts per client ip")
            }
            if route.answer == .upstreamTokenKeys, auth?.upstreamToken.map({ $0.alg != "HS256" }) != true {
                context.error(
                    path / "direct_response" / "jwks",
                    "needs auth.upstream_token with ES256 or RS256 (an HS256 secret has no public key to publish)")
            }
            var overrides: [(callers: Callers, at: JSONPath)] = []
            for (index, limit) in route.rateLimits.enumerated() {
                overrides += limit.overrides.enumerated().map { ($1.callers, path / "rate_limits" / index / "overrides" / $0) }
            }
            overrides += (route.concurrencyLimit?.overrides ?? []).enumerated().map { ($1.callers, path / "concurrency_limit" / "overrides" / $0) }
            for (callers, at) in overrides {
                if !namesConsumer {
                    context.error(at, "applies to authenticated callers, and this route has no auth: it would never apply")
                } else if !callers.claims.isEmpty && !takesTokens {
                    context.error(at / "claims", "claims come from tokens: the route's auth must take \"jwt\", \"introspection\" or \"oidc\"")
                }
            }
        }
        for service in externalAuth where !usedExternalAuth.contains(service.name) {
            context.warning(root / "external_auth" / service.name, "not used by any route")
        }
        for upstream in upstreams where !usedUpstreams.contains(upstream.name) {
            context.warning(root / "upstreams" / upstream.name, "not used by any route")
        }

        if let redis, redis.usesTLS, redis.tls.insecureSkipVerify {
            context.warning(root / "redis" / "tls" / "insecure_skip_verify", "the Redis certificate is not verified: anyone on the path can impersonate Redis")
        }
        if let header = auth?.apiKeyHeader, let index = logging.accessLogHeaders.firstIndex(of: header) {
            context.error(root / "logging" / "access_log_headers" / index, "\(header) carries API keys (auth.api_key_header) and is never logged")
        }
        if geoip?.database == nil {
            // Country rules need the database that places addresses in countries.
            let rules = [(root, countries)] + routes.enumerated().map { (root / "routes" / $0.offset, $0.element.countries) }
            for (path, rule) in rules where !rule.isEmpty {
                context.error(path / (rule.allow.isEmpty ? "deny_countries" : "allow_countries"), "needs the top-level geoip section (its database)")
            }
        }
        if geoip?.asnDatabase == nil {
            let rules = [(root, asns)] + routes.enumerated().map { (root / "routes" / $0.offset, $0.element.asns) }
            for (path, rule) in rules where !rule.isEmpty {
                context.error(path / (rule.allow.isEmpty ? "deny_asns" : "allow_asns"), "needs geoip.asn_database")
            }
        }
        if redis == nil {
            let keys = [
                rateLimiting.store == .redis ? root / "rate_limiting" / "store" : nil, cache.store == .redis ? root / "cache" / "store" : nil,
                acme?.store == .redis ? root / "acme" / "store" : nil,
            ]
            for key in keys.compactMap({ $0 }) { context.error(key, "\"redis\" needs a top-level redis section with its url") }
        }
        if let admin, admin.token == nil, !Self.isLoopback(admin.address) {
            context.warning(root / "admin" / "address", "the admin API listens beyond loopback without a token: anyone who reaches it can reload and read the config")
        }
    }

    /// A browser sends a route's credentials cross-origin only when `cors` lets it: a header must be in
    /// `allow_headers`, a cookie needs `allow_credentials`. When none of the accepted credentials can be sent,
    /// every browser call fails its preflight or arrives without credentials, which is hard to tell from outside.
    private func checkCredentials(_ cors: CORSConfig, _ auth: RouteAuthConfig, at path: JSONPath, _ context: DecodingContext) {
        let allowed = Set(cors.allowHeaders.map { $0.lowercased() })
        let sendsHeader = { (name: String) in allowed.contains("*") || allowed.contains(name) }
        var missing: [String] = []
        if auth.require.contains(.jwt) {
            let hasCookie = self.auth?.jwt?.cookie != nil
            if sendsHeader("authorization") || (hasCookie && cors.allowCredentials) { return }
            missing.append("\"Authorization\" in allow_headers for the JWT" + (hasCookie ? " (or allow_credentials for its cookie)" : ""))
        }
        if auth.require.contains(.apiKey) {
            let header = self.auth?.apiKeyHeader ?? "x-api-key"
            if sendsHeader(header) || sendsHeader("authorization") || self.auth?.apiKeyQueryParam != nil { return }
            missing.append("\"\(header == "x-api-key" ? "X-API-Key" : header)\" in allow_headers for the API key")
        }
        guard !missing.isEmpty else { return }
        context.warning(path, "browsers cannot send this route's credentials cross-origin; it needs \(missing.joined(separator: " or "))")
    }

    /// Whether a route's path conditions admit `path` (hosts, methods and headers aside), by the rules routing uses.
    static func matchesPath(_ match: MatchConfig, _ path: String) -> Bool {
        if let exact = match.path { return PathRules.pathEquals(Substring(path), exact) }
        if let template = match.pathTemplate { return template.match(Substring(path)) != nil }
        guard let prefix = match.pathPrefix else { return true }
        return PathRules.hasSegmentPrefix(path, prefix)
    }

    private static func isLoopback(_ address: String) -> Bool {
        address == "localhost" || address == "::1" || address.hasPrefix("127.")
    }
}

extension MatchConfig {
    /// The match as one text, equal for two matches that accept exactly the same requests as written (order of
    /// hosts, methods and headers aside; a prefix's trailing slash aside).
    var canonicalText: String {
        let pathRule =
            path.map { "=" + $0.lowercased() } ?? pathPrefix.map { "^" + PathRules.normalisedPrefix($0).lowercased() }
            ?? pathTemplate.map { "~" + $0.description.lowercased() } ?? "*"
        let headerRules = headers.map { "\($0.name)\($0.rule)" }.sorted()
        let queryRules = query.map { "\($0.name)\($0.rule)" }.sorted()
        return [
            hosts.sorted().joined(separator: ","), pathRule, methods.sorted().joined(separator: ","), headerRules.joined(separator: "\u{0}"),
            queryRules.joined(separator: "\u{0}"), listeners.sorted().joined(separator: ","),
        ].joined(separator: "\u{1}")
    }
}

/// Path comparisons on whole segments: "/api" is a prefix of "/api" and "/api/x", not of "/apix".
public enum PathRules {
    public static func hasSegmentPrefix(_ path: some StringProtocol, _ prefix: some StringProtocol) -> Bool {
        hasNormalisedSegmentPrefix(Substring(path), normalisedPrefix(prefix))
    }

    /// The per-request form: `prefix` is already normalised (routes normalise theirs once), and the
    /// comparison runs on UTF-8 bytes.
    @inlinable
    public static func hasNormalisedSegmentPrefix(_ path: Substring, _ prefix: String) -> Bool {
        let pathBytes = path.utf8
        let prefixBytes = prefix.utf8
        if prefixBytes.count == 1 { return pathBytes.first == UInt8(ascii: "/") }  // "/" matches every path
        // ASCII case-insensitive: "/API/x" must not slip past the route that guards "/api" to a catch-all
        // (many backends treat paths case-insensitively).
        guard pathBytes.count >= prefixBytes.count,
            pathBytes.starts(with: prefixBytes, by: { $0 == $1 || ($0 | 0x20 == $1 | 0x20 && ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A) })
        else { return false }
        let next = pathBytes.index(pathBytes.startIndex, offsetBy: prefixBytes.count)
        return next == pathBytes.endIndex || pathBytes[next] == UInt8(ascii: "/")
    }

    /// Exact path equality, ASCII case-insensitive like prefixes.
    @inlinable
    public static func pathEquals(_ path: Substring, _ exact: String) -> Bool {
        path.utf8.elementsEqual(exact.utf8) { $0 == $1 || ($0 | 0x20 == $1 | 0x20 && ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A) }
    }

    /// "/api/" and "/api" name the same prefix; "/" stays "/".
    public static func normalisedPrefix(_ prefix: some StringProtocol) -> String {
        var text = String(prefix)
        while text.count > 1 && text.hasSuffix("/") { text.removeLast() }
        return text
    }
}

extension ListenerConfig {
    /// Whether connections to `target` reach this listener: the same Unix socket, or its port at its own address (or a
    /// loopback one, when it listens on every address).
    func receives(_ target: UpstreamTarget) -> Bool {
        if let socketPath { return target.socketPath == socketPath }
        return target.socketPath == nil && target.port == port && accepts(host: target.host)
    }

    private func accepts(host: String) -> Bool {
        let target = host.lowercased()
        if target == address.lowercased() { return true }
        let isLoopback = { (name: String) in name == "localhost" || name == "::1" || name.hasPrefix("127.") }
        if address == "0.0.0.0" || address == "::" { return isLoopback(target) }
        return target == "localhost" && isLoopback(address)
    }
}
