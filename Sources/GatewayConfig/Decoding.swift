import Foundation
import GatewayPolicy

// Field-by-field decoding of gateway.json. Each decoder reads every key it knows (so unknown keys can be
// reported), records problems with their paths, and returns nil only when a value cannot be built.

private let maxMilliseconds = 86_400_000  // one day: larger timeouts are almost certainly a unit mistake

extension GatewayConfig {
    static func decode(_ node: ConfigNode) -> GatewayConfig? {
        node.object { o in
            let workers = o.optional("workers") { $0.int(1...1024) }
            let listeners = o.required("listeners") { node -> [ListenerConfig]? in
                if case .array(let raw) = node.value, raw.isEmpty { node.error("at least one listener is required") }
                return node.array(ListenerConfig.decode)
            }
            let admin = o.optional("admin", AdminConfig.decode)
            let redis = o.optional("redis", RedisConfig.decode)
            let limits = o.optional("limits", LimitsConfig.decode) ?? LimitsConfig()
            // `"unix:"` among them trusts peers on Unix-socket listeners (they have no address to list).
            var trustsUnixPeers = false
            let trusted = o.optional("trusted_proxies") { node -> [CIDR]? in
                if case .array(let items) = node.value { trustsUnixPeers = items.contains(.string("unix:")) }
                return node.addressRanges(allowingUnix: true)
            }
            // A provider's published ranges (Cloudflare's, a cloud balancer's), refreshed by a job: read like deny_ips_file.
            let trustedFile = o.optional("trusted_proxies_file") { $0.addressListFile() } ?? []
            let clientIPHeader = o.optional("client_ip_header") { node -> String? in
                guard let name = node.token()?.lowercased() else { return nil }
                guard !["x-forwarded-for", "forwarded", "host", "authorization", "cookie"].contains(name) else {
                    node.error("\(name) cannot name the client: give the field the proxy in front sets (CF-Connecting-IP, True-Client-IP, X-Real-IP)")
                    return nil
                }
                return name
            }
            let (denyIPs, allowIPs) = o.addressRules()
            let countries = o.countryRule()
            let geoip = o.optional("geoip") { node in
                node.object { g -> GeoIPConfig? in
                    let config = GeoIPConfig(database: g.optional("database") { $0.filePath() }, asnDatabase: g.optional("asn_database") { $0.filePath() })
                    if !g.has("database") && !g.has("asn_database") { g.node.context.error(g.path, "give a database (countries) or an asn_database") }
                    return config.files.isEmpty ? nil : config
                }
            }
            let asns = o.asnRule()
            let forwardedHeader = o.optional("forwarded_header") { $0.bool() } ?? false
            // true: the pseudonym "gateway"; a string: its own (a token, so no host name or address leaks by accident).
            let via = o.optional("via") { node -> String?? in
                if case .bool(let on) = node.value { return .some(on ? "gateway" : nil) }
                guard let text = node.nonEmptyString() else { return nil }
                guard isToken(text) else {
                    node.error("expected true, false or a pseudonym (letters, digits and -._~ and the like: RFC 9110's token), such as edge-1")
                    return nil
                }
                return .some(text)
            } ?? nil
            let loopDetection = o.optional("loop_detection") { $0.bool() } ?? true
            let security = o.optional("security_headers", SecurityHeadersConfig.decode) ?? SecurityHeadersConfig()
            let rateLimiting = o.optional("rate_limiting", RateLimitingConfig.decode) ?? RateLimitingConfig()
            let cache = o.optional("cache", CacheConfig.decode) ?? CacheConfig()
            let auth = o.optional("auth", AuthConfig.decode)
            let upstreams = o.required("upstreams") { node in
                node.map { name, value in UpstreamConfig.decode(name: name, value) }.map { $0.map(\.value) }
            }
            let routes = o.required("routes") { $0.array(RouteConfig.decode) }
            let logging = o.optional("logging", LoggingConfig.decode) ?? LoggingConfig()
            let reload = o.optional("reload", ReloadConfig.decode) ?? ReloadConfig()
            let tracing = o.optional("tracing", TracingConfig.decode)
            let compression = o.optional("compression", CompressionConfig.decode)
            let externalAuth = o.optional("external_auth") { node in
                node.map { name, value in ExternalAuthConfig.decode(name: name, value) }.map { $0.map(\.value) }
            }
            let requestID = o.optional("request_id", RequestIDConfig.decode)
            let interceptErrors = o.optional("intercept_errors", InterceptErrorsConfig.decode)
            let csrf = o.optional("csrf", CSRFConfig.decode)
            let acme = o.optional("acme", ACMEConfig.decode)
            o.accept("include")  // merged in before decoding (ConfigIncludes)
            guard var listeners, let upstreams, let routes else { return nil }
            ACMEConfig.placeCertificates(&listeners, acme: acme, reader: o)
            var config = GatewayConfig(
                workers: workers, listeners: listeners, admin: admin, redis: redis, limits: limits,
                trustedProxies: (trusted ?? []) + trustedFile, securityHeaders: security, rateLimiting: rateLimiting,
                cache: cache, auth: auth, upstreams: upstreams, routes: routes, logging: logging, reload: reload, tracing: tracing
            )
            config.compression = compression
            config.forwardedHeader = forwardedHeader
            config.via = via
            config.loopDetection = loopDetection
            config.trustsUnixPeers = trustsUnixPeers
            config.externalAuth = externalAuth ?? []
            config.requestID = requestID ?? RequestIDConfig()
            config.interceptErrors = interceptErrors?.enabled == true ? interceptErrors : nil
            config.csrf = csrf
            config.acme = acme
            config.denyIPs = denyIPs
            config.allowIPs = allowIPs
            config.geoip = geoip
            config.countries = countries
            config.asns = asns
            config.clientIPHeader = clientIPHeader
            if clientIPHeader != nil && (trusted ?? []).isEmpty && trustedFile.isEmpty && !trustsUnixPeers {
                o.node.context.warning(o.path / "client_ip_header", "read only from trusted_proxies, and none is listed")
            }
            return config
        }
    }
}

extension ACMEConfig {
    /// `{"email": "ops@example.com", "storage": "/var/lib/gateway/acme"}`; `directory_url` (Let's Encrypt's by default),
    /// `ca_file`, `renew_before_days`, `store`; `agree_to_terms` must be true (the CA's subscriber agreement).
    static func decode(_ node: ConfigNode) -> ACMEConfig? {
        node.object { o in
            let directory = o.optional("directory_url") { node -> String? in
                guard let url = node.nonEmptyString() else { return nil }
                guard url.hasPrefix("https://") else {
                    node.error("expected the CA's https:// directory URL, e.g. \(ACMEConfig.letsEncrypt)")
                    return nil
                }
                return url
            } ?? ACMEConfig.letsEncrypt
            let email = o.optional("email") { node -> String? in
                guard let email = node.nonEmptyString() else { return nil }
                guard email.contains("@"), !email.contains(where: { $0 == " " || $0 == ":" || $0 == "\"" }) else {
                    node.error("expected an e-mail address such as ops@example.com")
                    return nil
                }
                return email
            }
            let storage = o.required("storage") { $0.filePath() }
            let caFile = o.optional("ca_file") { $0.filePath() }
            let renewBefore = o.optional("renew_before_days") { $0.int(1...60) }
            let store = o.optional("store") { $0.oneOf(["files", "redis"]).flatMap(ACMEConfig.Store.init) }
            let dnsUpdate = o.optional("dns_update", DNSUpdateConfig.decode)
            let externalAccount = o.optional("external_account_binding") { node in
                node.object { e -> ACMEConfig.ExternalAccountBinding? in
                    let keyID = e.required("key_id") { $0.nonEmptyString() }
                    let key = e.required("hmac_key") { node -> [UInt8]? in
                        guard let text = node.nonEmptyString() else { return nil }
                        // Base64url as CAs hand it out; padded standard base64 is taken too.
                        let normalized = text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                            .trimmingCharacters(in: CharacterSet(charactersIn: "="))
                        guard let bytes = Base64URL.decode(Substring(normalized).utf8), bytes.count >= 16 else {
                            node.error("expected the CA's base64url MAC key (EAB HMAC key), at least 16 bytes")
                            return nil
                        }
                        return bytes
                    }
                    guard let keyID, let key else { return nil }
                    return ACMEConfig.ExternalAccountBinding(keyID: keyID, hmacKey: key)
                }
            }
            let agreed = o.required("agree_to_terms") { $0.bool() }
            if agreed == false {
                o.node.context.error(o.path / "agree_to_terms", "the CA issues certificates only to accounts that agree to its terms of service")
            }
            guard let storage else { return nil }
            var config = ACMEConfig(directoryURL: directory, storage: storage)
            config.email = email
            config.caFile = caFile
            config.renewBeforeDays = renewBefore ?? config.renewBeforeDays
            config.store = store ?? .files
            config.dnsUpdate = dnsUpdate
            config.externalAccount = externalAccount
            return config
        }
    }

    /// Gives every listener certificate marked `"acme": true` its files under `acme.storage` (named after its first name),
    /// or reports that there is no `acme` section to get it from.
    static func placeCertificates(_ listeners: inout [ListenerConfig], acme: ACMEConfig?, reader o: ObjectReader) {
        for listenerIndex in listeners.indices {
            guard var tls = listeners[listenerIndex].tls else { continue }
            for certificateIndex in tls.certificates.indices where tls.certificates[certificateIndex].acme {
                guard let acme else {
                    o.node.context.error(
                        o.path / "listeners" / listenerIndex / "tls" / "certificates" / certificateIndex / "acme",
                        "needs the top-level acme section (the CA to ask and where to keep the certificates)")
                    continue
                }
                let path = o.path / "listeners" / listenerIndex / "tls" / "certificates" / certificateIndex / "server_names"
                for (index, name) in tls.certificates[certificateIndex].serverNames.enumerated() {
                    if let dns = acme.dnsUpdate {
                        if !dns.contains(name) {
                            o.node.context.error(path / index, "is not in acme.dns_update.zone \(dns.zone): its challenge record could not be put there")
                        }
                    } else if name.hasPrefix("*.") {
                        o.node.context.error(path / index, "a wildcard needs a DNS-01 challenge: give acme.dns_update (HTTP-01 cannot prove a wildcard)")
                    }
                }
                let folder = acme.storage + "/" + (tls.certificates[certificateIndex].serverNames.first ?? "default")
                tls.certificates[certificateIndex].cert = folder + "/cert.pem"
                tls.certificates[certificateIndex].key = folder + "/key.pem"
            }
            listeners[listenerIndex].tls = tls
        }
        let asksCA = listeners.contains { $0.tls?.certificates.contains(where: \.acme) == true }
        // With the store in Redis an instance without certificates of its own still answers the others' challenges.
        if let acme, acme.store == .files, !asksCA {
            o.node.context.warning(o.path / "acme", "no listener certificate has \"acme\": true")
        }
        // The CA's HTTP-01 checks come to port 80 (a balancer in front may forward them to another port); DNS-01's go to DNS.
        if let acme, acme.dnsUpdate == nil && asksCA && !listeners.contains(where: { $0.tls == nil && $0.socketPath == nil && $0.port == 80 }) {
            o.node.context.warning(
                o.path / "acme",
                "no plaintext listener on port 80, where the CA checks HTTP-01 challenges (fine if a balancer forwards port 80 to one)")
        }
    }
}

extension AdaptiveConcurrency.Settings {
    /// `true` (Envoy's gradient controller defaults), `false` (nil: off), or `{"min_limit": 3, "max_limit": 1000,
    /// "update_interval_ms": 100, "min_rtt_interval_ms": 60000, "min_rtt_requests": 50, "buffer_percent": 25, "percentile": 50,
    /// "jitter_percent": 10}`.
    static func decode(_ node: ConfigNode) -> AdaptiveConcurrency.Settings? {
        if case .bool(let on) = node.value { return on ? AdaptiveConcurrency.Settings() : nil }
        return node.object { o in
            let defaults = AdaptiveConcurrency.Settings()
            let minLimit = o.optional("min_limit") { $0.int(1...100_000) } ?? defaults.minLimit
            let maxLimit = o.optional("max_limit") { $0.int(1...1_000_000) } ?? defaults.maxLimit
            let update = o.optional("update_interval_ms") { $0.int(10...60_000) }
            let interval = o.optional("min_rtt_interval_ms") { $0.int(1_000...maxMilliseconds) }
            let requests = o.optional("min_rtt_requests") { $0.int(1...10_000) } ?? defaults.minRTTRequests
            let buffer = o.optional("buffer_percent") { $0.number(0...1_000) } ?? defaults.bufferPercent
            let percentile = o.optional("percentile") { $0.number(1...100) } ?? defaults.percentile
            let jitter = o.optional("jitter_percent") { $0.number(0...100) } ?? defaults.jitterPercent
            if minLimit > maxLimit { o.node.context.error(o.path / "max_limit", "must be at least min_limit (\(minLimit))") }
            return AdaptiveConcurrency.Settings(
                minLimit: minLimit, maxLimit: maxLimit, updateIntervalNanos: update.map { Int64($0) * 1_000_000 } ?? defaults.updateIntervalNanos,
                minRTTIntervalNanos: interval.map { Int64($0) * 1_000_000 } ?? defaults.minRTTIntervalNanos, minRTTRequests: requests,
                bufferPercent: buffer, percentile: percentile, jitterPercent: jitter)
        }
    }
}

extension RequestValidationConfig {
    /// `{"body_schema": {...}, "query_schema": {...}, "path_schema": {...}, "header_schema": {...}}`: at least one;
    /// `template` is the route's `match.path_template`, whose variables `path_schema` checks.
    static func decode(_ node: ConfigNode, template: PathTemplate?) -> RequestValidationConfig? {
        node.object { v in
            let body = v.optional("body_schema", JSONSchema.decode)
            let query = v.optional("query_schema", JSONSchema.decode)
            let path = v.optional("path_schema", JSONSchema.decode)
            let headers = v.optional("header_schema", JSONSchema.decode)
            let maxBytes = v.optional("max_body_bytes") { $0.int(0...(8 << 20)) }
            let bodyRequired = v.optional("body_required") { $0.bool() } ?? true
            let keys = ["body_schema", "query_schema", "path_schema", "header_schema"]
            if !keys.contains(where: v.has) { v.node.context.error(v.path, "give at least one of \(keys.joined(separator: ", "))") }
            for (key, schema) in [("query_schema", query), ("path_schema", path), ("header_schema", headers)] where schema?.types.map({ $0 != [.object] }) == true {
                v.node.context.error(v.path / key / "type", "the parameters make an object: leave type out or make it \"object\"")
            }
            if let path {
                if let template {
                    let known = template.variables
                    let listed = known.map { "{\($0)}" }.joined(separator: ", ")
                    for (name, at) in Self.named(path, at: v.path / "path_schema") where !known.contains(name) {
                        v.node.context.error(at, "match.path_template has no variable {\(name)} (it has \(listed))")
                    }
                } else {
                    v.node.context.error(v.path / "path_schema", "checks the variables of match.path_template, which this route does not have")
                }
            }
            if let headers {
                var seen: Set<String> = []
                for (name, at) in Self.named(headers, at: v.path / "header_schema") {
                    if !isToken(name) {
                        v.node.context.error(at, "\"\(name)\" is not a header field name")
                    } else if !seen.insert(name.lowercased()).inserted {
                        v.node.context.error(at, "\(name) is named twice (field names ignore case: write it one way)")
                    }
                }
                // The document holds only the fields the schema names: rules about the others could never apply.
                for (key, given) in [("additionalProperties", !headers.additionalProperties.isEmpty), ("minProperties", headers.minProperties != nil),
                    ("maxProperties", headers.maxProperties != nil)] where given {
                    v.node.context.error(v.path / "header_schema" / key, "only the fields named in properties and required are checked (clients send others)")
                }
            }
            if body == nil {
                for key in ["max_body_bytes", "body_required"] where v.has(key) {
                    v.node.context.warning(v.path / key, "applies to body_schema, which is not given")
                }
            }
            guard body != nil || query != nil || path != nil || headers != nil else { return nil }
            var config = RequestValidationConfig(bodySchema: body, querySchema: query)
            config.pathSchema = path
            config.headerSchema = headers
            config.maxBodyBytes = maxBytes ?? config.maxBodyBytes
            config.bodyRequired = bodyRequired
            return config
        }
    }

    /// The names a parameter schema gives (its properties, then those only `required` lists), each with where it is written.
    private static func named(_ schema: JSONSchema, at path: JSONPath) -> [(name: String, at: JSONPath)] {
        var names = schema.properties.keys.sorted().map { ($0, path / "properties" / $0) }
        for name in schema.required where !names.contains(where: { $0.0 == name }) { names.append((name, path / "required")) }
        return names
    }
}

extension WebhookSignatureConfig {
    /// `{"scheme": "github", "secrets": ["${file:/run/secrets/github_webhook}"]}`; `hmac` also takes `header`,
    /// `algorithm`, `encoding` and `prefix`.
    static func decode(_ node: ConfigNode) -> WebhookSignatureConfig? {
        node.object { o in
            let scheme = o.required("scheme") { $0.oneOf(Scheme.allCases.map(\.rawValue)).flatMap(Scheme.init(rawValue:)) }
            let secrets = o.required("secrets") { node -> [String]? in
                if case .array(let items) = node.value, items.isEmpty { node.error("list at least one secret") }
                return node.array { item -> String? in
                    guard let secret = item.nonEmptyString() else { return nil }
                    // Secrets shorter than this are guessable offline from one signed delivery.
                    if secret.utf8.count < 16 { item.error("is shorter than 16 bytes; use the secret the sender generated") }
                    return secret
                }
            }
            let tolerance = o.optional("tolerance_seconds") { $0.int(1...86_400) }
            let maxBytes = o.optional("max_body_bytes") { $0.int(0...(8 << 20)) }
            let header = o.optional("header") { $0.nonEmptyString() }
            let algorithm = o.optional("algorithm") { $0.oneOf(Algorithm.allCases.map(\.rawValue)).flatMap(Algorithm.init(rawValue:)) }
            let encoding = o.optional("encoding") { $0.oneOf(Encoding.allCases.map(\.rawValue)).flatMap(Encoding.init(rawValue:)) }
            let prefix = o.optional("prefix") { $0.string() }
            let replayProtection = o.optional("replay_protection") { $0.bool() }
            guard let scheme, let secrets else { return nil }
            if replayProtection == true, !scheme.signsTime {
                o.node.context.error(
                    o.path / "replay_protection",
                    "\(scheme.rawValue) signatures carry no time: a replay looks the same as the sender's own redelivery")
            }
            if scheme == .hmac {
                if header == nil { o.node.context.error(o.path / "header", "the hmac scheme needs the field that carries the signature") }
                if let header, !isToken(header) { o.node.context.error(o.path / "header", "is not a header field name") }
            } else {
                for key in ["header", "algorithm", "encoding", "prefix"] where o.has(key) {
                    o.node.context.error(o.path / key, "applies to the hmac scheme only; \(scheme.rawValue) says how it signs")
                }
            }
            if scheme == .github || scheme == .shopify || scheme == .hmac, o.has("tolerance_seconds") {
                o.node.context.warning(o.path / "tolerance_seconds", "\(scheme.rawValue) signatures carry no time to check")
            }
            var config = WebhookSignatureConfig(scheme: scheme, secrets: secrets)
            config.toleranceSeconds = tolerance ?? config.toleranceSeconds
            config.maxBodyBytes = maxBytes ?? config.maxBodyBytes
            config.header = header?.lowercased() ?? ""
            config.algorithm = algorithm ?? .sha256
            config.encoding = encoding ?? .hex
            config.prefix = prefix ?? ""
            config.replayProtection = replayProtection ?? scheme.signsTime
            return config
        }
    }
}

extension LocationRewriteConfig {
    /// `true` (the default), `false`, or `{"relative_paths": true, "rules": [{"from": "http://legacy:8080/", "to": "/legacy/"}]}`.
    static func decode(_ node: ConfigNode) -> LocationRewriteConfig? {
        node.switchOrObject { o, config in
            config.relativePaths = o.optional("relative_paths") { $0.bool() } ?? false
            config.rules = o.optional("rules") { node in
                node.array { item in
                    item.object { r -> RewriteRule? in
                        let from = r.required("from") { $0.nonEmptyString() }
                        let to = r.required("to") { $0.headerValue() }  // written into the response's Location
                        guard let from, let to else { return nil }
                        return RewriteRule(from: from, to: to)
                    }
                }
            } ?? []
        }
    }
}

extension EarlyHintsConfig {
    /// `true` (the default), `false`, or `{"relay": true, "links": ["</app.css>; rel=preload; as=style"], "http1": false,
    /// "learn": false}`.
    static func decode(_ node: ConfigNode) -> EarlyHintsConfig? {
        node.switchOrObject { o, config in
            config.relay = o.optional("relay") { $0.bool() } ?? true
            config.http1 = o.optional("http1") { $0.bool() } ?? false
            config.learn = o.optional("learn") { $0.bool() } ?? false
            config.links = o.optional("links") { node in
                node.array { item -> String? in
                    guard let link = item.headerValue() else { return nil }
                    // RFC 8288's link-value: a URI reference in angle brackets, then its parameters.
                    guard link.hasPrefix("<"), link.contains(">") else {
                        item.error("expected a Link value such as \"</app.css>; rel=preload; as=style\"")
                        return nil
                    }
                    return link
                }
            } ?? []
            if !config.relay && config.links.isEmpty && !config.learn {
                o.node.context.warning(o.path, "sends no hint: relay and learn are off and there are no links")
            }
        }
    }
}

extension CookieRewriteConfig {
    /// `{"path": true, "domains": [{"from": "orders.internal", "to": "shop.example.com"}], "flags": {"secure": true,
    /// "http_only": true, "same_site": "Lax"}}`.
    static func decode(_ node: ConfigNode) -> CookieRewriteConfig? {
        node.object { o in
            var config = CookieRewriteConfig()
            config.path = o.optional("path") { $0.bool() } ?? false
            config.domains = o.optional("domains") { node in
                node.array { item in
                    item.object { r -> RewriteRule? in
                        let from = r.required("from") { $0.cookieDomain(allowEmpty: false) }
                        let to = r.required("to") { $0.cookieDomain(allowEmpty: true) }
                        guard let from, let to else { return nil }
                        return RewriteRule(from: from, to: to)
                    }
                }
            } ?? []
            _ = o.optional("flags") { node in
                node.object { f -> Bool? in
                    config.secure = f.optional("secure") { $0.bool() } ?? false
                    config.httpOnly = f.optional("http_only") { $0.bool() } ?? false
                    config.sameSite = f.optional("same_site") { $0.oneOf(["Strict", "Lax", "None"]) }
                    if config.sameSite == "None" && !config.secure {
                        f.node.context.error(f.path / "same_site", "browsers take SameSite=None only with Secure: add \"secure\": true")
                    }
                    return true
                }
            }
            let flags = config.secure || config.httpOnly || config.sameSite != nil
            if !config.path && config.domains.isEmpty && !flags { o.node.context.warning(o.path, "rewrites nothing: give path, domains, flags, or some of them") }
            return config
        }
    }
}

extension ConfigNode {
    /// A cookie `Domain` as written in `cookie_rewrite` (lowercase, without a leading dot): a host name or address.
    fileprivate func cookieDomain(allowEmpty: Bool) -> String? {
        guard let text = string() else { return nil }
        let domain = (text.hasPrefix(".") ? String(text.dropFirst()) : text).lowercased()
        if domain.isEmpty && allowEmpty { return "" }
        guard !domain.isEmpty, domain.utf8.count <= 253,
            domain.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == ":") })
        else {
            error("expected a domain name (\(allowEmpty ? "or \"\" to drop the attribute" : "example.com"))")
            return nil
        }
        return domain
    }
}

extension ConfigNode {
    /// A query parameter name a credential may come in: letters, digits and `- . _ ~` (nothing to percent-encode).
    func queryParameterName() -> String? {
        guard let name = nonEmptyString() else { return nil }
        guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._~".contains($0)) }) else {
            error("\"\(name)\": letters, digits and - . _ ~ only")
            return nil
        }
        return name
    }
}

extension ObjectReader {
    /// `deny_countries` and `allow_countries` (top level and routes): ISO 3166 alpha-2 codes, any case, or `unknown`.
    func countryRule() -> CountryRule {
        func codes(_ node: ConfigNode) -> Set<String>? {
            node.array { item -> String? in
                guard let text = item.string() else { return nil }
                if text == CountryRule.unknown { return text }
                guard text.utf8.count == 2, text.utf8.allSatisfy({ ($0 | 0x20) >= UInt8(ascii: "a") && ($0 | 0x20) <= UInt8(ascii: "z") }) else {
                    item.error("expected a two-letter ISO 3166 country code (\"DE\", \"US\") or \"unknown\"")
                    return nil
                }
                return text.uppercased()
            }.map(Set.init)
        }
        return CountryRule(deny: optional("deny_countries", codes) ?? [], allow: optional("allow_countries", codes) ?? [])
    }

    /// `deny_asns` and `allow_asns` (top level and routes): autonomous system numbers.
    func asnRule() -> ASNRule {
        func numbers(_ node: ConfigNode) -> Set<UInt32>? { node.array { $0.int(1...Int(UInt32.max)).map(UInt32.init) }.map(Set.init) }
        return ASNRule(deny: optional("deny_asns", numbers) ?? [], allow: optional("allow_asns", numbers) ?? [])
    }

    /// `deny_ips` and `allow_ips` with the ranges of `deny_ips_file` and `allow_ips_file` added (top level and routes).
    func addressRules() -> (deny: [CIDR], allow: [CIDR]) {
        let deny = (optional("deny_ips") { $0.addressRanges() } ?? []) + (optional("deny_ips_file") { $0.addressListFile() } ?? [])
        let allow = (optional("allow_ips") { $0.addressRanges() } ?? []) + (optional("allow_ips_file") { $0.addressListFile() } ?? [])
        return (deny, allow)
    }
}

extension DeprecationConfig {
    /// `{"date": "2026-06-01", "sunset": "2027-01-01T00:00:00Z", "link": "https://developer.example.com/v2",
    /// "refuse_after_sunset": true}`: dates as RFC 3339 dates (midnight UTC) or date-times.
    static func decode(_ node: ConfigNode) -> DeprecationConfig? {
        node.object { o in
            let date = o.required("date") { $0.instant() }
            let sunset = o.optional("sunset") { $0.instant() }
            let link = o.optional("link") { node -> String? in
                guard let url = node.nonEmptyString() else { return nil }
                let lowered = url.lowercased()
                guard lowered.hasPrefix("https://") || lowered.hasPrefix("http://"),
                    url.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F && $0 != ">" && $0 != "<" && $0 != "\"" })
                else {
                    node.error("expected an absolute http(s) URL (printable ASCII, no spaces, quotes or angle brackets)")
                    return nil
                }
                return url
            }
            let refuse = o.optional("refuse_after_sunset") { $0.bool() } ?? false
            if refuse && !o.has("sunset") { o.node.context.error(o.path / "refuse_after_sunset", "needs a sunset date") }
            if let date, let sunset, sunset < date { o.node.context.error(o.path / "sunset", "comes before the deprecation date") }
            if refuse, let sunset, sunset <= Int(Date().timeIntervalSince1970) {
                o.node.context.warning(o.path / "sunset", "has passed: every request of this route is answered 410 API_SUNSET")
            }
            guard let date else { return nil }
            var config = DeprecationConfig(date: date)
            (config.sunset, config.link, config.refuseAfterSunset) = (sunset, link, refuse)
            return config
        }
    }
}

extension InterceptErrorsConfig {
    /// `true`, `false` (off; on a route, off whatever the top level says), or `{"statuses": ["5xx", 404],
    /// "keep_json": false, "keep_headers": ["retry-after", "www-authenticate", "allow"]}`.
    static func decode(_ node: ConfigNode) -> InterceptErrorsConfig? {
        node.switchOrObject { o, config in
            config.statuses = o.optional("statuses") { node -> [Int]? in
                if case .array(let items) = node.value, items.isEmpty { node.error("list at least one status, or set intercept_errors to false") }
                return node.statusRules(400...599, example: "5xx")
            } ?? config.statuses
            config.keepJSON = o.optional("keep_json") { $0.bool() } ?? false
            config.keepHeaders = o.optional("keep_headers") { node in
                node.array { item -> String? in
                    guard let name = item.nonEmptyString() else { return nil }
                    guard isAnswerField(name) else {
                        item.error("\"\(name)\" is not a field the gateway's answer can take from the upstream's (framing, hop-by-hop and Content-Type are its own)")
                        return nil
                    }
                    return name.lowercased()
                }
            } ?? config.keepHeaders
        }
    }
}

extension FaultConfig {
    /// `{"delay": {"ms": 200, "percent": 10}, "abort": {"status": 503, "percent": 5}}` (percent defaults to 100).
    static func decode(_ node: ConfigNode) -> FaultConfig? {
        node.object { o in
            let delay = o.optional("delay") { node in
                node.object { d -> Delay? in
                    let ms = d.required("ms") { $0.int(1...maxMilliseconds) }
                    let percent = d.optional("percent") { $0.number(0...100) } ?? 100
                    return ms.map { Delay(ms: $0, percent: percent) }
                }
            }
            let abort = o.optional("abort") { node in
                node.object { a -> Abort? in
                    let status = a.required("status") { $0.int(400...599) }
                    let percent = a.optional("percent") { $0.number(0...100) } ?? 100
                    return status.map { Abort(status: $0, percent: percent) }
                }
            }
            if !o.has("delay") && !o.has("abort") { o.node.context.error(o.path, "give a delay, an abort, or both") }
            return FaultConfig(delay: delay, abort: abort)
        }
    }
}

extension RequestIDConfig {
    static func decode(_ node: ConfigNode) -> RequestIDConfig? {
        node.object { o in
            var config = RequestIDConfig()
            config.header =
                o.optional("header") { node -> String? in
                    guard let name = node.token()?.lowercased() else { return nil }
                    // Fields with a meaning of their own to HTTP, to the gateway or to tracing.
                    let taken = HeaderEdits.reservedInRequests + ["authorization", "cookie", "set-cookie", "traceparent", "tracestate", "x-forwarded-for"]
                    guard !taken.contains(name) else {
                        node.error("\(name) has a meaning of its own and cannot carry the request id")
                        return nil
                    }
                    return name
                } ?? config.header
            config.preserveIncoming =
                o.optional("preserve_incoming") { $0.oneOf(Preserve.allCases.map(\.rawValue)).flatMap(Preserve.init) } ?? .always
            return config
        }
    }
}

extension ListenerConfig {
    static func decode(_ node: ConfigNode) -> ListenerConfig? {
        node.object { o in
            let name = o.required("name") { $0.nonEmptyString() }
            let socketPath = o.optional("path") { node -> String? in
                guard let path = node.filePath() else { return nil }
                guard path.utf8.count <= 107 else {
                    node.error("a Unix socket path has at most 107 bytes (this one has \(path.utf8.count))")
                    return nil
                }
                return path
            }
            let mode = o.optional("mode") { node -> Int? in
                guard let text = node.string() else { return nil }
                guard text.count == 4, text.hasPrefix("0"), let mode = Int(text, radix: 8) else {
                    node.error("expected file permissions in octal, such as \"0660\"")
                    return nil
                }
                return mode
            }
            if o.has("path") {
                for key in ["address", "port", "reuse_port"] where o.has(key) {
                    o.node.context.error(o.path / key, "a listener on a Unix socket (path) has no \(key)")
                    o.accept(key)  // reported once
                }
            } else if o.has("mode") {
                o.node.context.error(o.path / "mode", "is for listeners on a Unix socket (path)")
            }
            let address = o.optional("address") { $0.bindAddress() } ?? "0.0.0.0"
            let port = o.has("path") ? 0 : o.required("port") { $0.int(0...65535) }
            let tls = o.optional("tls", TLSConfig.decode)
            let redirect = o.optional("redirect_https_port") { $0.int(1...65535) }
            let h2c = o.optional("h2c") { $0.bool() } ?? false
            if tls != nil && h2c {
                o.node.context.error(o.path / "h2c", "h2c is for plaintext listeners; a TLS listener offers h2 through alpn")
            }
            let proxyProtocol = o.optional("proxy_protocol") { $0.bool() } ?? false
            let reusePort = o.optional("reuse_port") { $0.bool() } ?? false
            guard let name, let port else { return nil }
            var listener = ListenerConfig(name: name, address: address, port: port, tls: tls, redirectHTTPSPort: redirect, h2c: h2c)
            listener.proxyProtocol = proxyProtocol
            listener.reusePort = reusePort
            listener.socketPath = socketPath
            listener.socketMode = mode ?? listener.socketMode
            return listener
        }
    }
}

extension TLSConfig {
    /// `certificates`: files with the names they serve, or `"acme": true` entries the gateway keeps itself.
    static func decodeCertificates(_ node: ConfigNode) -> [Certificate]? {
        node.array { item in
            item.object { c -> Certificate? in
                let names = c.optional("server_names") { $0.array { $0.hostPattern() } } ?? []
                if c.optional("acme", { $0.bool() }) == true {
                    // The files are the ACME manager's, under acme.storage (filled in with the top-level section).
                    for key in ["cert", "key"] where c.has(key) {
                        c.accept(key)
                        c.node.context.error(c.path / key, "an acme certificate is kept by the gateway under acme.storage; leave cert and key out")
                    }
                    if names.isEmpty { c.node.context.error(c.path / "server_names", "an acme certificate needs the names to ask the CA for") }
                    return Certificate(cert: "", key: "", serverNames: names, acme: true)
                }
                let cert = c.required("cert") { $0.filePath() }
                let key = c.required("key") { $0.filePath() }
                guard let cert, let key else { return nil }
                return Certificate(cert: cert, key: key, serverNames: names)
            }
        }
    }

    static func decode(_ node: ConfigNode) -> TLSConfig? {
        node.object { o in
            // A listener that only relays (`passthrough`) may have no certificate of its own.
            let certificates =
                o.has("passthrough") ? o.optional("certificates", Self.decodeCertificates) ?? [] : o.required("certificates", Self.decodeCertificates)
            let minVersion = o.optional("min_version") { $0.oneOf(["1.2", "1.3"]).flatMap(Version.init) } ?? .tls12
            let alpn = o.optional("alpn") { $0.array { $0.oneOf(["h2", "http/1.1"]) } } ?? ["h2", "http/1.1"]
            let clientCA = o.optional("client_ca") { $0.filePath() }
            // One file or several (a CRL per issuing CA), PEM or DER.
            let clientCRL = o.optional("client_crl") { node -> [String]? in
                if case .array = node.value { return node.array { $0.filePath() } }
                return node.filePath().map { [$0] }
            }
            let subjectHeader = o.optional("client_subject_header") { node -> String? in
                guard let name = node.nonEmptyString() else { return nil }
                guard isToken(name) else {
                    node.error("\"\(name)\" is not a valid header name")
                    return nil
                }
                return name.lowercased()
            } ?? "x-client-cert-subject"
            let clientAuth =
                o.optional("client_auth") { $0.oneOf(["none", "optional", "required"]).flatMap(ClientAuth.init) }
                ?? (clientCA == nil ? ClientAuth.none : .required)
            let passthrough = o.optional("passthrough") { node in
                node.array { item in
                    item.object { p -> Passthrough? in
                        let names = p.required("server_names") { $0.array { $0.hostPattern() } }
                        let upstream = p.required("upstream") { $0.nonEmptyString() }
                        let proxyProtocol = p.optional("proxy_protocol") { $0.bool() } ?? false
                        if names?.isEmpty == true { p.node.context.error(p.path / "server_names", "name at least one server") }
                        guard let names, let upstream else { return nil }
                        var rule = Passthrough(serverNames: names, upstream: upstream)
                        rule.proxyProtocol = proxyProtocol
                        return rule
                    }
                }
            } ?? []
            // A listener that only relays (every name passed through) needs no certificate of its own.
            if let certificates, certificates.isEmpty, passthrough.isEmpty {
                o.node.context.error(o.path / "certificates", "at least one certificate is required (or passthrough rules alone)")
            }
            if clientAuth != .none && clientCA == nil {
                o.node.context.error(o.path / "client_ca", "client_auth \"\(clientAuth.rawValue)\" needs a client_ca file")
            }
            if clientCRL != nil && (clientCA == nil || clientAuth == .none) {
                o.node.context.error(o.path / "client_crl", "revocation lists apply to client certificates: set client_ca (and client_auth)")
            }
            guard let certificates else { return nil }
            var config = TLSConfig(
                certificates: certificates, minVersion: minVersion, alpn: alpn, clientCA: clientCA,
                clientAuth: clientAuth, clientSubjectHeader: subjectHeader
            )
            config.clientCRL = clientCRL ?? []
            config.passthrough = passthrough
            config.clientCertHeader = o.optional("client_cert_header") { node -> String? in
                guard let name = node.token()?.lowercased() else { return nil }
                if name == subjectHeader { node.error("is the client_subject_header too: give them different names") }
                return name
            }
            if config.clientCertHeader != nil && clientAuth == .none {
                o.node.context.warning(o.path / "client_cert_header", "the listener asks for no client certificate (client_auth)")
            }
            return config
        }
    }
}

extension TracingConfig {
    static func decode(_ node: ConfigNode) -> TracingConfig? {
        node.object { o in
            let endpoint = o.required("otlp_endpoint") { node -> String? in
                guard let url = node.nonEmptyString() else { return nil }
                guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
                    node.error("expected the collector's http:// or https:// traces URL, e.g. http://127.0.0.1:4318/v1/traces")
                    return nil
                }
                return url
            }
            let serviceName = o.optional("service_name") { $0.nonEmptyString() }
            let interval = o.optional("flush_interval_ms") { $0.int(10...maxMilliseconds) }
            let queue = o.optional("max_queue_spans") { $0.int(1...1_000_000) }
            let headers = o.optional("headers") { node in
                node.map { name, value -> String? in
                    guard isToken(name) else {
                        value.error("\"\(name)\" is not a valid header name")
                        return nil
                    }
                    return value.string()
                }
            }
            guard let endpoint else { return nil }
            var config = TracingConfig(otlpEndpoint: endpoint)
            config.serviceName = serviceName ?? config.serviceName
            config.flushIntervalMs = interval ?? config.flushIntervalMs
            config.maxQueueSpans = queue ?? config.maxQueueSpans
            for (name, value) in headers ?? [] { config.headers[name] = value }
            return config
        }
    }
}

extension ReloadConfig {
    static func decode(_ node: ConfigNode) -> ReloadConfig? {
        node.object { o in
            var config = ReloadConfig()
            config.watch = o.optional("watch") { $0.bool() } ?? config.watch
            config.intervalMs = o.optional("interval_ms") { $0.int(100...maxMilliseconds) } ?? config.intervalMs
            return config
        }
    }
}

extension AdminConfig {
    static func decode(_ node: ConfigNode) -> AdminConfig? {
        node.object { o in
            let address = o.optional("address") { $0.bindAddress() } ?? "127.0.0.1"
            let port = o.optional("port") { $0.int(0...65535) } ?? 9901
            let token = o.optional("token") { $0.string() }
            return AdminConfig(address: address, port: port, token: token?.isEmpty == true ? nil : token)
        }
    }
}

extension RedisConfig {
    static func decode(_ node: ConfigNode) -> RedisConfig? {
        node.object { o in
            let url = o.required("url") { node -> String? in
                guard let text = node.nonEmptyString() else { return nil }
                guard text.hasPrefix("redis://") || text.hasPrefix("rediss://") || text.hasPrefix("unix://") else {
                    node.error("expected a redis://, rediss:// (TLS) or unix:// URL")
                    return nil
                }
                guard let components = URLComponents(string: text),
                    text.hasPrefix("unix://") ? !components.path.isEmpty : !(components.host ?? "").isEmpty
                else {
                    node.error("\"\(text)\" is not a valid Redis URL (redis[s]://[user:password@]host[:port][/db] or unix:///path)")
                    return nil
                }
                return text
            }
            let poolSize = o.optional("pool_size") { $0.int(1...256) } ?? 4
            let timeout = o.optional("timeout_ms") { $0.int(1...60_000) } ?? 100
            let tls = o.optional("tls", UpstreamTLSConfig.decode)
            let sentinels = o.optional("sentinels") { node -> [RedisConfig.Sentinel]? in
                let nodes = node.array { item -> RedisConfig.Sentinel? in
                    guard let text = item.nonEmptyString() else { return nil }
                    guard let (host, port) = hostAndPort(text, defaultPort: 26379) else {
                        item.error("expected a sentinel's HOST:PORT (an address or a name; the port defaults to 26379)")
                        return nil
                    }
                    return RedisConfig.Sentinel(host: host, port: port)
                }
                if case .array(let items) = node.value, items.isEmpty { node.error("list at least one sentinel, or leave sentinels out") }
                return nodes
            }
            let sentinelPassword = o.optional("sentinel_password") { $0.nonEmptyString() }
            guard let url else { return nil }
            var config = RedisConfig(url: url, poolSize: poolSize, timeoutMs: timeout)
            if let tls {
                config.tls = tls
                if !config.usesTLS { o.node.context.warning(o.path / "tls", "unused: the url is not rediss://") }
            }
            if o.has("sentinels") {
                config.sentinels = sentinels ?? []
                // The sentinels say where the master is: the URL names the group (and keeps the credentials and database).
                if url.hasPrefix("unix://") || URLComponents(string: url)?.port != nil {
                    o.node.context.error(
                        o.path / "url", "with sentinels the URL's host is the master group's name (redis://:PASSWORD@mymaster/0), without a port")
                }
            }
            if sentinelPassword != nil && !o.has("sentinels") {
                o.node.context.warning(o.path / "sentinel_password", "unused without sentinels")
            }
            config.sentinelPassword = sentinelPassword
            return config
        }
    }
}

extension LimitsConfig {
    static func decode(_ node: ConfigNode) -> LimitsConfig? {
        node.object { o in
            var limits = LimitsConfig()
            // NIO's parser counts header names and values; 1 KiB..1 MiB keeps both sane.
            limits.maxHeaderBytes = o.optional("max_header_bytes") { $0.int(1024...1_048_576) } ?? limits.maxHeaderBytes
            limits.maxBodyBytes = o.optional("max_body_bytes") { $0.int(0...Int.max) } ?? limits.maxBodyBytes
            limits.headerTimeoutMs = o.optional("header_timeout_ms") { $0.int(1...maxMilliseconds) } ?? limits.headerTimeoutMs
            limits.idleTimeoutMs = o.optional("idle_timeout_ms") { $0.int(1...maxMilliseconds) } ?? limits.idleTimeoutMs
            limits.drainTimeoutMs = o.optional("drain_timeout_ms") { $0.int(0...maxMilliseconds) } ?? limits.drainTimeoutMs
            limits.encodedSlashes =
                o.optional("encoded_slashes") { $0.oneOf(LimitsConfig.EncodedSlashes.allCases.map(\.rawValue)).flatMap(LimitsConfig.EncodedSlashes.init) }
                ?? limits.encodedSlashes
            limits.maxConnections = o.optional("max_connections") { $0.int(1...1_000_000) } ?? limits.maxConnections
            limits.maxConnectionsPerIP = o.optional("max_connections_per_ip") { $0.int(0...1_000_000) } ?? limits.maxConnectionsPerIP
            limits.maxRequestsPerConnection =
                o.optional("max_requests_per_connection") { $0.int(1...Int.max) } ?? limits.maxRequestsPerConnection
            limits.maxHeaderCount = o.optional("max_header_count") { $0.int(1...10_000) } ?? limits.maxHeaderCount
            limits.bodyTimeoutMs = o.optional("body_timeout_ms") { $0.int(1...maxMilliseconds) } ?? limits.bodyTimeoutMs
            limits.tunnelIdleTimeoutMs = o.optional("tunnel_idle_timeout_ms") { $0.int(0...maxMilliseconds) } ?? limits.tunnelIdleTimeoutMs
            limits.sendTimeoutMs = o.optional("send_timeout_ms") { $0.int(0...maxMilliseconds) } ?? limits.sendTimeoutMs
            let policy = { (node: ConfigNode) in node.oneOf(LimitsConfig.FieldPolicy.allCases.map(\.rawValue)).flatMap(LimitsConfig.FieldPolicy.init) }
            limits.underscoresInHeaders = o.optional("underscores_in_headers", policy) ?? limits.underscoresInHeaders
            limits.overrideHeaders = o.optional("override_headers", policy) ?? limits.overrideHeaders
            limits.http2MaxConcurrentStreams =
                o.optional("http2_max_concurrent_streams") { $0.int(1...10_000) } ?? limits.http2MaxConcurrentStreams
            return limits
        }
    }
}

extension SecurityHeadersConfig {
    static let referrerPolicies = [
        "no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin", "same-origin",
        "strict-origin", "strict-origin-when-cross-origin", "unsafe-url",
    ]

    static func decode(_ node: ConfigNode) -> SecurityHeadersConfig? {
        node.object { o in
            var config = SecurityHeadersConfig()
            config.hstsMaxAgeSeconds = o.nullable("hsts_max_age_seconds", default: config.hstsMaxAgeSeconds) {
                $0.int(0...315_360_000)
            }
            config.hstsIncludeSubdomains = o.optional("hsts_include_subdomains") { $0.bool() } ?? false
            config.frameOptions = o.nullable("frame_options", default: config.frameOptions) {
                $0.oneOf(["DENY", "SAMEORIGIN"])
            }
            config.contentTypeOptions = o.nullable("content_type_options", default: config.contentTypeOptions) {
                $0.oneOf(["nosniff"])
            }
            config.referrerPolicy = o.nullable("referrer_policy", default: config.referrerPolicy) {
                $0.oneOf(referrerPolicies)
            }
            config.contentSecurityPolicy = o.optional("content_security_policy") { $0.headerValue() }
            config.permissionsPolicy = o.optional("permissions_policy") { $0.headerValue() }
            config.contentSecurityPolicyReportOnly = o.optional("content_security_policy_report_only") { $0.headerValue() }
            config.hstsPreload = o.optional("hsts_preload") { $0.bool() } ?? false
            if config.hstsPreload && (!config.hstsIncludeSubdomains || (config.hstsMaxAgeSeconds ?? 0) < 31_536_000) {
                // hstspreload.org refuses a site otherwise; the header would promise what the lists will not keep.
                o.node.context.error(o.path / "hsts_preload", "preload lists need hsts_include_subdomains and a max age of at least a year (31536000)")
            }
            config.crossOriginOpenerPolicy = o.optional("cross_origin_opener_policy") {
                $0.oneOf(["same-origin", "same-origin-allow-popups", "noopener-allow-popups", "unsafe-none"])
            }
            config.crossOriginEmbedderPolicy = o.optional("cross_origin_embedder_policy") { $0.oneOf(["require-corp", "credentialless", "unsafe-none"]) }
            config.crossOriginResourcePolicy = o.optional("cross_origin_resource_policy") { $0.oneOf(["same-origin", "same-site", "cross-origin"]) }
            config.overrideUpstream = o.optional("override_upstream") { $0.bool() } ?? false
            return config
        }
    }
}

extension RateLimitingConfig {
    static func decode(_ node: ConfigNode) -> RateLimitingConfig? {
        node.object { o in
            var config = RateLimitingConfig()
            config.store = o.optional("store") { $0.oneOf(["memory", "redis"]).flatMap(Store.init) } ?? .memory
            config.onStoreError =
                o.optional("on_store_error") { $0.oneOf(["allow", "deny", "local"]).flatMap(OnStoreError.init) }
                ?? .allow
            return config
        }
    }
}

extension CacheConfig {
    static func decode(_ node: ConfigNode) -> CacheConfig? {
        node.object { o in
            var config = CacheConfig()
            config.store = o.optional("store") { $0.oneOf(["memory", "redis"]).flatMap(Store.init) } ?? .memory
            config.memoryBytes = o.optional("memory_bytes") { $0.int(0...Int.max) } ?? config.memoryBytes
            config.maxObjectBytes = o.optional("max_object_bytes") { $0.int(0...Int.max) } ?? config.maxObjectBytes
            config.lockTimeoutMs = o.optional("lock_timeout_ms") { $0.int(0...maxMilliseconds) } ?? config.lockTimeoutMs
            if config.maxObjectBytes > config.memoryBytes {
                o.node.context.error(o.path / "max_object_bytes", "is larger than memory_bytes")
            }
            return config
        }
    }
}

extension AuthConfig {
    static func decode(_ node: ConfigNode) -> AuthConfig? {
        node.object { o in
            let jwt = o.optional("jwt", JWTConfig.decode)
            let apiKeys = o.optional("api_keys") { $0.array(APIKeyConfig.decode) } ?? []
            let mtlsClients = o.optional("mtls_clients") { node in
                node.array { item in
                    item.object { c -> MTLSClientConfig? in
                        let id = c.required("id") { $0.consumerText() }
                        let subject = c.optional("subject") { $0.nonEmptyString() }
                        let commonName = c.optional("common_name") { $0.nonEmptyString() }
                        let uri = c.optional("uri") { node -> String? in
                            guard let text = node.nonEmptyString() else { return nil }
                            guard let colon = text.firstIndex(of: ":"), colon != text.startIndex, !text.contains(where: \.isWhitespace) else {
                                node.error("expected a URI such as spiffe://example.org/ns/billing/sa/api")
                                return nil
                            }
                            return text
                        }
                        let scopes = c.optional("scopes") { $0.array { $0.consumerText() } } ?? []
                        let given = ["subject", "common_name", "uri"].filter(c.has)
                        if given.isEmpty {
                            c.node.context.error(c.path, "give the certificate's subject, its common_name or a uri it carries")
                        } else if given.count > 1 {
                            c.node.context.error(c.path / given[1], "give one of subject, common_name and uri")
                        }
                        guard let id else { return nil }
                        var client = MTLSClientConfig(id: id, subject: subject, commonName: commonName, scopes: scopes)
                        client.uri = uri
                        return client
                    }
                }
            } ?? []
            // One consumer may hold several keys (rotation); one key may not belong to two.
            var digests: Set<String> = []
            for (index, key) in apiKeys.enumerated() where !digests.insert(key.sha256).inserted {
                o.node.context.error(o.path / "api_keys" / index / "sha256", "the same key is already listed (for \"\(apiKeys.first { $0.sha256 == key.sha256 }?.id ?? "")\")")
            }
            var ids = Set(apiKeys.map(\.id))
            for (index, client) in mtlsClients.enumerated() where !ids.insert(client.id).inserted {
                o.node.context.error(o.path / "mtls_clients" / index / "id", "duplicate consumer id \"\(client.id)\"")
            }
            let basic = o.optional("basic") { [ids] in BasicAuthConfig.decode($0, otherConsumers: ids) }
            var auth = AuthConfig(jwt: jwt, apiKeys: apiKeys)
            auth.mtlsClients = mtlsClients
            auth.basic = basic
            auth.introspection = o.optional("introspection", IntrospectionConfig.decode)
            auth.upstreamToken = o.optional("upstream_token", UpstreamTokenConfig.decode)
            auth.oidc = o.optional("oidc", OIDCConfig.decode)
            auth.apiKeysFile = o.optional("api_keys_file") { $0.filePath() }
            auth.apiKeyHeader = o.optional("api_key_header") { node -> String? in
                guard let name = node.token()?.lowercased() else { return nil }
                // Fields with a meaning of their own, or that the gateway sets itself, cannot carry keys.
                guard !["authorization", "proxy-authorization", "cookie", "host"].contains(name), !name.hasPrefix("x-auth-") else {
                    node.error("\(name) has a meaning of its own; name a field of your own (X-API-Key, Api-Key)")
                    return nil
                }
                return name
            } ?? auth.apiKeyHeader
            auth.apiKeyQueryParam = o.optional("api_key_query_param") { $0.queryParameterName() }
            return auth
        }
    }
}

extension JWTConfig {
    static func decode(_ node: ConfigNode) -> JWTConfig? {
        node.object { o in
            let issuer = o.optional("issuer") { $0.nonEmptyString() }
            let audiences = o.optional("audiences") { $0.array { $0.nonEmptyString() } } ?? []
            let leeway = o.optional("leeway_seconds") { $0.int(0...3600) } ?? 30
            let keys = o.optional("keys") { $0.array(Key.decode) } ?? []
            let jwksFile = o.optional("jwks_file") { $0.filePath() }
            let jwksURL = o.optional("jwks_url") { $0.httpURL() }
            let cookie = o.optional("cookie") { $0.token() }
            let queryParam = o.optional("query_param") { $0.queryParameterName() }
            let refresh = o.optional("jwks_refresh_seconds") { $0.int(30...86_400) } ?? 300
            let minRefetch = o.optional("jwks_min_refetch_seconds") { $0.int(1...3600) } ?? 10
            let cacheSize = o.optional("cache_size") { $0.int(0...1_000_000) } ?? 4096
            let forward = o.optional("forward_claims") { $0.forwardedClaims() } ?? []
            if keys.isEmpty && jwksFile == nil && jwksURL == nil {
                o.node.context.error(o.path, "needs keys, a jwks_file or a jwks_url to verify tokens with")
            }
            if keys.count > 1 {
                var kids: Set<String> = []
                for (index, key) in keys.enumerated() {
                    guard let kid = key.kid else {
                        o.node.context.error(o.path / "keys" / index / "kid", "required when there are several keys (tokens pick their key by kid)")
                        continue
                    }
                    if !kids.insert(kid).inserted { o.node.context.error(o.path / "keys" / index / "kid", "duplicate kid \"\(kid)\"") }
                }
            }
            var config = JWTConfig(
                issuer: issuer, audiences: audiences, leewaySeconds: leeway, keys: keys, jwksFile: jwksFile,
                jwksURL: jwksURL, cookie: cookie
            )
            config.jwksRefreshSeconds = refresh
            config.jwksMinRefetchSeconds = minRefetch
            config.queryParam = queryParam
            config.cacheSize = cacheSize
            config.forwardClaims = forward
            return config
        }
    }
}

extension JWTConfig.Key {
    static func decode(_ node: ConfigNode) -> JWTConfig.Key? {
        node.object { o in
            let kid = o.optional("kid") { $0.nonEmptyString() }
            let alg = o.required("alg") { $0.oneOf(JWTConfig.algorithms) }
            let secret = o.optional("secret") { $0.nonEmptyString() }
            let publicKey = o.optional("public_key") { $0.nonEmptyString() }
            let publicKeyFile = o.optional("public_key_file") { $0.filePath() }
            guard let alg else { return nil }
            if alg.hasPrefix("HS") {
                if secret == nil { o.node.context.error(o.path / "secret", "an \(alg) key needs a secret") }
                // RFC 7518 §3.2: the key must be at least as long as the hash output.
                let minimum = Int(alg.dropFirst(2))! / 8
                if let secret, secret.utf8.count < minimum {
                    o.node.context.error(o.path / "secret", "an \(alg) secret needs at least \(minimum) bytes (it has \(secret.utf8.count))")
                }
                if publicKey != nil || publicKeyFile != nil {
                    o.node.context.error(o.path, "an \(alg) key takes a secret, not a public key")
                }
            } else {
                if secret != nil { o.node.context.error(o.path / "secret", "an \(alg) key takes public_key or public_key_file, not a secret") }
                if (publicKey == nil) == (publicKeyFile == nil) {
                    o.node.context.error(o.path, "an \(alg) key needs exactly one of public_key and public_key_file")
                }
            }
            return JWTConfig.Key(kid: kid, alg: alg, secret: secret, publicKey: publicKey, publicKeyFile: publicKeyFile)
        }
    }
}

extension OIDCConfig {
    /// `{"issuer", "authorization_url", "upstream", "token_path", "jwks_url", "client_id", "client_secret", "cookie_secret",
    ///   "scopes", "redirect_path", "logout_path", "logout_redirect", "cookie_name", "session_seconds", "idle_seconds", "timeout_ms",
    ///   "jwks_refresh_seconds", "jwks_min_refetch_seconds", "forward_claims"}`
    static func decode(_ node: ConfigNode) -> OIDCConfig? {
        node.object { o in
            let issuer = o.required("issuer") { $0.nonEmptyString() }
            let authorizationURL = o.required("authorization_url") { node -> String? in
                guard let url = node.httpURL() else { return nil }
                if url.contains("#") { node.error("\"\(url)\" must not have a fragment") }
                return url
            }
            let upstream = o.required("upstream") { $0.nonEmptyString() }
            let tokenPath = o.required("token_path") { $0.absolutePath() }
            let jwksURL = o.required("jwks_url") { $0.httpURL() }
            let clientID = o.required("client_id") { $0.headerValue() }
            let clientSecret = o.required("client_secret") { $0.headerValue() }
            let cookieSecret = o.required("cookie_secret") { node -> String? in
                guard let secret = node.nonEmptyString() else { return nil }
                guard secret.utf8.count >= 32 else {
                    node.error("needs at least 32 bytes (it has \(secret.utf8.count)); make one with `openssl rand -base64 32`")
                    return nil
                }
                return secret
            }
            let scopes = o.optional("scopes") { node -> [String]? in
                guard let scopes = node.array({ $0.token() }) else { return nil }
                if !scopes.contains("openid") { node.error("must include \"openid\" (without it the provider sends no ID token)") }
                return scopes
            }
            let redirectPath = o.optional("redirect_path") { $0.absolutePath() }
            let logoutPath = o.optional("logout_path") { $0.absolutePath() }
            let logoutRedirect = o.optional("logout_redirect") { node -> String? in
                guard let text = node.nonEmptyString() else { return nil }
                if text.hasPrefix("/") && !text.hasPrefix("//") && !text.contains("\\") { return node.absolutePath() }
                return node.httpURL()
            }
            let cookieName = o.optional("cookie_name") { $0.token() }
            let sessionSeconds = o.optional("session_seconds") { $0.int(60...31_536_000) }
            let idleSeconds = o.optional("idle_seconds") { $0.int(60...31_536_000) }
            if let idleSeconds, idleSeconds >= sessionSeconds ?? OIDCConfig.defaultSessionSeconds {
                o.node.context.error(o.path / "idle_seconds", "must be shorter than session_seconds (\(sessionSeconds ?? OIDCConfig.defaultSessionSeconds)), which ends every session anyway")
            }
            let timeout = o.optional("timeout_ms") { $0.int(1...maxMilliseconds) }
            let refresh = o.optional("jwks_refresh_seconds") { $0.int(30...86_400) }
            let minRefetch = o.optional("jwks_min_refetch_seconds") { $0.int(1...3600) }
            let forward = o.optional("forward_claims") { $0.forwardedClaims() } ?? []
            let emailDomains = o.optional("email_domains") { node in
                node.array { item -> String? in
                    guard let domain = item.nonEmptyString() else { return nil }
                    guard !domain.contains("@"), !domain.contains(where: \.isWhitespace) else {
                        item.error("\"\(domain)\": a domain name (example.com), not an address")
                        return nil
                    }
                    return domain.lowercased()
                }
            } ?? []
            if let redirectPath, let logoutPath, redirectPath == logoutPath {
                o.node.context.error(o.path / "logout_path", "must differ from redirect_path")
            }
            guard let issuer, let authorizationURL, let upstream, let tokenPath, let jwksURL, let clientID, let clientSecret, let cookieSecret
            else { return nil }
            var config = OIDCConfig(
                issuer: issuer, authorizationURL: authorizationURL, upstream: upstream, tokenPath: tokenPath, jwksURL: jwksURL, clientID: clientID,
                clientSecret: clientSecret, cookieSecret: cookieSecret)
            config.scopes = scopes ?? config.scopes
            config.redirectPath = redirectPath ?? config.redirectPath
            config.logoutPath = logoutPath ?? config.logoutPath
            config.logoutRedirect = logoutRedirect ?? config.logoutRedirect
            config.cookieName = cookieName ?? config.cookieName
            config.sessionSeconds = sessionSeconds ?? config.sessionSeconds
            config.idleSeconds = idleSeconds
            config.timeoutMs = timeout ?? config.timeoutMs
            config.jwksRefreshSeconds = refresh ?? config.jwksRefreshSeconds
            config.jwksMinRefetchSeconds = minRefetch ?? config.jwksMinRefetchSeconds
            config.forwardClaims = forward.map { ForwardedClaim(claim: $0.claim, header: $0.header) }
            config.emailDomains = emailDomains
            return config
        }
    }
}

extension IntrospectionConfig {
    /// `{"upstream": "idp", "path": "/oauth2/introspect", "client_id": "gateway", "client_secret": "${SECRET}",
    ///   "timeout_ms": 1000, "cache_seconds": 30, "cache_size": 10000, "issuer": "...", "audiences": [...]}`
    static func decode(_ node: ConfigNode) -> IntrospectionConfig? {
        node.object { o in
            let upstream = o.required("upstream") { $0.nonEmptyString() }
            let path = o.required("path") { $0.absolutePath() }
            let clientID = o.required("client_id") { $0.headerValue() }
            let clientSecret = o.required("client_secret") { $0.headerValue() }
            let timeout = o.optional("timeout_ms") { $0.int(1...maxMilliseconds) }
            let cacheSeconds = o.optional("cache_seconds") { $0.int(0...86_400) }
            let cacheSize = o.optional("cache_size") { $0.int(0...10_000_000) }
            let issuer = o.optional("issuer") { $0.nonEmptyString() }
            let audiences = o.optional("audiences") { $0.array { $0.nonEmptyString() } }
            guard let upstream, let path, let clientID, let clientSecret else { return nil }
            var config = IntrospectionConfig(upstream: upstream, path: path, clientID: clientID, clientSecret: clientSecret)
            config.timeoutMs = timeout ?? config.timeoutMs
            config.cacheSeconds = cacheSeconds ?? config.cacheSeconds
            config.cacheSize = cacheSize ?? config.cacheSize
            config.issuer = issuer
            config.audiences = audiences ?? []
            return config
        }
    }
}

extension BasicAuthConfig {
    /// `otherConsumers`: the API key and certificate ids, which a user name must not repeat.
    static func decode(_ node: ConfigNode, otherConsumers: Set<String>) -> BasicAuthConfig? {
        node.object { o in
            var config = BasicAuthConfig()
            var seen: Set<String> = []
            config.users =
                o.optional("users") { node in
                    node.array { item in
                        item.object { u -> User? in
                            let username = u.required("username") { node -> String? in
                                guard let name = node.nonEmptyString() else { return nil }
                                // RFC 7617: the user-id ends at the first colon; control characters cannot be typed.
                                guard !name.contains(":"), !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                                    node.error("a user name cannot contain a colon or control characters")
                                    return nil
                                }
                                if !seen.insert(name).inserted {
                                    node.error("duplicate user \"\(name)\"")
                                } else if otherConsumers.contains(name) {
                                    node.error("duplicate consumer id \"\(name)\" (an API key or client certificate has it)")
                                }
                                return name
                            }
                            let hash = u.required("password_hash") { node -> String? in
                                guard let hash = node.nonEmptyString() else { return nil }
                                if let problem = Self.hashProblem(hash) {
                                    node.error(problem)
                                    return nil
                                }
                                return hash
                            }
                            let scopes = u.optional("scopes") { $0.array { $0.consumerText() } } ?? []
                            guard let username, let hash else { return nil }
                            return User(username: username, passwordHash: hash, scopes: scopes)
                        }
                    }
                } ?? []
            config.htpasswdFile = o.optional("htpasswd_file") { $0.filePath() }
            config.realm =
                o.optional("realm") { node -> String? in
                    guard let realm = node.headerValue() else { return nil }
                    guard !realm.contains("\""), !realm.contains("\\") else {
                        node.error("a realm cannot contain quotes or backslashes")
                        return nil
                    }
                    return realm
                } ?? config.realm
            config.cacheSize = o.optional("cache_size") { $0.int(0...1_000_000) } ?? config.cacheSize
            config.maxPendingChecks = o.optional("max_pending_checks") { $0.int(1...100_000) } ?? config.maxPendingChecks
            config.maxFailures = o.nullable("max_failures", default: config.maxFailures) { node in
                node.object { f -> FailureLimit? in
                    let limit = f.required("limit") { $0.int(1...1_000_000) }
                    let window = f.required("window_seconds") { $0.int(1...86_400) }
                    guard let limit, let window else { return nil }
                    return FailureLimit(limit: limit, windowSeconds: window)
                }
            }
            if !o.has("users") && !o.has("htpasswd_file") {
                o.node.context.error(o.path, "give users, an htpasswd_file, or both")
            }
            return config
        }
    }
}

extension UpstreamTokenConfig {
    static func decode(_ node: ConfigNode) -> UpstreamTokenConfig? {
        node.object { o in
            let issuer = o.required("issuer") { $0.nonEmptyString() }
            let alg = o.required("alg") { $0.oneOf(["HS256", "ES256", "RS256"]) }
            let header = o.optional("header") { node -> String? in
                guard let name = node.token()?.lowercased() else { return nil }
                guard name == "authorization" || (name.hasPrefix("x-auth-") && name.count > 7) else {
                    node.error("use \"authorization\" or an X-Auth-* name (the gateway removes client-sent X-Auth-* fields, so no client can forge it)")
                    return nil
                }
                guard !["x-auth-subject", "x-auth-scopes", "x-auth-method"].contains(name) else {
                    node.error("\(name) already carries part of the identity; choose another X-Auth-* name")
                    return nil
                }
                return name
            }
            let secret = o.optional("secret") { $0.nonEmptyString() }
            let keyFile = o.optional("private_key_file") { $0.filePath() }
            switch alg {
            case "HS256":
                if secret == nil && !o.has("secret") { o.node.context.error(o.path / "secret", "HS256 signs with a secret (at least 32 bytes; use ${ENV})") }
                if let secret, secret.utf8.count < 32 { o.node.context.error(o.path / "secret", "needs at least 32 bytes (it has \(secret.utf8.count))") }
                if keyFile != nil { o.node.context.error(o.path / "private_key_file", "HS256 signs with secret, not a key file") }
            case .some:
                if keyFile == nil && !o.has("private_key_file") {
                    o.node.context.error(o.path / "private_key_file", "\(alg ?? "") signs with a private key (a PEM file)")
                }
                if secret != nil { o.node.context.error(o.path / "secret", "\(alg ?? "") signs with private_key_file, not a secret") }
            case nil:
                break
            }
            guard let issuer, let alg else { return nil }
            var config = UpstreamTokenConfig(issuer: issuer, alg: alg)
            config.header = header ?? config.header
            config.audience = o.optional("audience") { $0.nonEmptyString() }
            config.ttlSeconds = o.optional("ttl_seconds") { $0.int(10...86_400) } ?? config.ttlSeconds
            config.kid = o.optional("kid") { $0.nonEmptyString() }
            config.secret = secret
            config.privateKeyFile = keyFile
            return config
        }
    }
}

extension APIKeyConfig {
    static func decode(_ node: ConfigNode) -> APIKeyConfig? {
        node.object { o in
            let id = o.required("id") { $0.consumerText() }
            let hash = o.required("sha256") { node -> String? in
                guard let text = node.string() else { return nil }
                guard text.utf8.count == 64, text.allSatisfy(\.isHexDigit) else {
                    node.error("expected 64 hex characters (the SHA-256 of the key; see `gateway hash-key`)")
                    return nil
                }
                return text.lowercased()
            }
            let scopes = o.optional("scopes") { $0.array { $0.consumerText() } } ?? []
            let expiresAt = o.optional("expires_at") { node -> Int? in
                guard let seconds = node.instant() else { return nil }
                if seconds <= Int(Date().timeIntervalSince1970) { node.warning("\(node.string() ?? "") has passed: this key is refused") }
                return seconds
            }
            guard let id, let hash else { return nil }
            return APIKeyConfig(id: id, sha256: hash, scopes: scopes, expiresAt: expiresAt)
        }
    }
}

extension UpstreamConfig {
    static func decode(name: String, _ node: ConfigNode) -> UpstreamConfig? {
        node.object { o in
            let httpProtocol = o.optional("protocol", UpstreamTarget.HTTPProtocol.decode) ?? .http1
            let targets = o.required("targets") { node -> [UpstreamTarget]? in
                if case .array(let raw) = node.value, raw.isEmpty { node.error("at least one target is required") }
                return node.array { UpstreamTarget.decode($0, defaultProtocol: httpProtocol) }
            }
            let balance =
                o.optional("balance") { $0.oneOf(Balance.allCases.map(\.rawValue)).flatMap(Balance.init) } ?? .roundRobin
            let connect = o.optional("connect_timeout_ms") { $0.int(1...maxMilliseconds) } ?? 1000
            let read = o.optional("read_timeout_ms") { $0.int(1...maxMilliseconds) } ?? 30_000
            let total = o.optional("total_timeout_ms") { $0.int(1...maxMilliseconds) }
            let retries = o.optional("retries", RetryConfig.decode)
            let breaker = o.optional("circuit_breaker", CircuitBreakerConfig.decode)
            let health = o.optional("health_check", HealthCheckConfig.decode)
            let pool = o.optional("pool", PoolConfig.decode) ?? PoolConfig()
            let tls = o.optional("tls", UpstreamTLSConfig.decode) ?? UpstreamTLSConfig()
            let hashOn = o.optional("hash_on") { $0.requestKey(allowingConsumer: false) }
            if o.has("hash_on") && balance != .consistentHash {
                o.node.context.warning(o.path / "hash_on", "only consistent_hash uses hash_on")
            }
            let maxRequests = o.optional("max_requests") { $0.int(1...10_000_000) }
            let maxConnections = o.optional("max_connections") { $0.int(1...10_000_000) }
            let maxPending = o.optional("max_pending_requests") { $0.int(0...10_000_000) } ?? 1024
            let dnsRefresh = o.optional("dns_refresh_ms") { $0.int(100...86_400_000) }
            let slowStart = o.optional("slow_start_ms") { $0.int(1...3_600_000) }
            if slowStart != nil && balance == .consistentHash {
                o.node.context.warning(o.path / "slow_start_ms", "consistent_hash keeps its ring: slow start does not apply to it")
            }
            if dnsRefresh != nil, let targets, !targets.contains(where: \.hasHostName) {
                o.node.context.warning(o.path / "dns_refresh_ms", "every target is an IP address or a Unix socket: there is nothing to resolve")
            }
            if dnsRefresh == nil, let targets, let index = targets.firstIndex(where: \.isServiceName) {
                o.node.context.error(
                    o.path / "targets" / index, "\(targets[index].host) is an SRV name: its instances are looked up with dns_refresh_ms")
            }
            let dnsServer = o.optional("dns_server") { node -> DNSServerAddress? in
                guard let text = node.nonEmptyString() else { return nil }
                let parts = text.split(separator: ":", omittingEmptySubsequences: false)
                guard case .v4? = IPAddress(parts[0]), parts.count <= 2, let port = parts.count == 2 ? Int(parts[1]) : 53, (1...65535).contains(port) else {
                    node.error("expected an IPv4 address and an optional port, such as 127.0.0.1:8600")
                    return nil
                }
                return DNSServerAddress(host: String(parts[0]), port: port)
            }
            if dnsServer != nil && dnsRefresh == nil {
                o.node.context.warning(o.path / "dns_server", "used only with dns_refresh_ms")
            }
            if health?.grpcService != nil, let targets, let plain = targets.first(where: { $0.httpProtocol != .h2 }) {
                o.node.context.error(
                    o.path / "health_check" / "grpc_service", "gRPC health checks speak HTTP/2: target \(plain.label) is not \"protocol\": \"h2\"")
            }
            if let targets, !targets.isEmpty, targets.allSatisfy(\.backup) {
                o.node.context.error(o.path / "targets", "every target is a backup: at least one must take requests normally")
            }
            if let targets, targets.contains(where: \.backup), health == nil, breaker == nil, retries == nil {
                o.node.context.warning(
                    o.path / "targets",
                    "backup targets take over from targets that fail health checks, have an open breaker or failed this request's try: "
                        + "without health_check, circuit_breaker or retries, they get requests only while the others are drained")
            }
            guard let targets else { return nil }
            var upstream = UpstreamConfig(
                name: name, targets: targets, balance: balance, connectTimeoutMs: connect, readTimeoutMs: read,
                totalTimeoutMs: total, retries: retries, circuitBreaker: breaker, healthCheck: health, pool: pool, tls: tls,
                hashOn: hashOn ?? .ip, maxRequests: maxRequests, maxConnections: maxConnections, maxPendingRequests: maxPending
            )
            upstream.dnsRefreshMs = dnsRefresh
            upstream.dnsServer = dnsServer
            upstream.oauth2 = o.optional("oauth2") { node in
                node.object { c -> UpstreamOAuth2Config? in
                    let url = c.required("token_url") { $0.httpURL() }
                    let id = c.required("client_id") { $0.nonEmptyString() }
                    let secret = c.required("client_secret") { $0.nonEmptyString() }
                    // RFC 6749 §3.3: printable ASCII but space, quote and backslash.
                    let scopes = c.optional("scopes") { node in
                        node.array { item -> String? in
                            guard let scope = item.nonEmptyString() else { return nil }
                            guard scope.unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) && $0 != "\"" && $0 != "\\" }) else {
                                item.error("a scope is printable ASCII without spaces, quotes or backslashes")
                                return nil
                            }
                            return scope
                        }
                    } ?? []
                    let audience = c.optional("audience") { $0.nonEmptyString() }
                    let clientAuth = c.optional("client_auth") { $0.oneOf(["basic", "body"]).flatMap(UpstreamOAuth2Config.ClientAuth.init) }
                    let caFile = c.optional("ca_file") { $0.filePath() }
                    let host = url.map { $0.dropFirst("http://".count).prefix { $0 != ":" && $0 != "/" } }
                    if let url, url.hasPrefix("http://"), let host, host != "localhost", !host.hasPrefix("127.") {
                        c.node.context.warning(c.path / "token_url", "the client secret would cross the network in the clear: use https://")
                    }
                    guard let url, let id, let secret else { return nil }
                    var config = UpstreamOAuth2Config(tokenURL: url, clientID: id, clientSecret: secret)
                    config.scopes = scopes
                    config.audience = audience
                    config.clientAuth = clientAuth ?? .basic
                    config.caFile = caFile
                    return config
                }
            }
            upstream.awsSigV4 = o.optional("aws_sigv4") { node in
                node.object { c -> UpstreamAWSSigV4Config? in
                    // Region and service names: lowercase letters, digits and dashes (eu-west-1, s3, execute-api, lambda).
                    func awsName(_ node: ConfigNode, example: String) -> String? {
                        guard let text = node.nonEmptyString() else { return nil }
                        guard text.utf8.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }) else {
                            node.error("expected an AWS name such as \(example)")
                            return nil
                        }
                        return text
                    }
                    let region = c.required("region") { awsName($0, example: "eu-west-1") }
                    let service = c.required("service") { awsName($0, example: "s3, lambda or execute-api") }
                    let keyID = c.required("access_key_id") { $0.nonEmptyString() }
                    let secret = c.required("secret_access_key") { $0.nonEmptyString() }
                    let token = c.optional("session_token") { $0.nonEmptyString() }
                    guard let region, let service, let keyID, let secret else { return nil }
                    var config = UpstreamAWSSigV4Config(region: region, service: service, accessKeyID: keyID, secretAccessKey: secret)
                    config.sessionToken = token
                    return config
                }
            }
            if upstream.awsSigV4 != nil {
                if upstream.oauth2 != nil {
                    o.node.context.error(o.path / "aws_sigv4", "an upstream takes one kind of credentials: oauth2 or aws_sigv4")
                }
                // The signature covers Host: every target must be the one endpoint it names.
                if Set(targets.map { "\($0.scheme)://\($0.host):\($0.port)" }).count > 1 || targets.contains(where: { $0.socketPath != nil }) {
                    o.node.context.error(o.path / "targets", "with aws_sigv4 every target is the same AWS endpoint (its Host is signed)")
                }
                if dnsRefresh != nil {
                    o.node.context.error(o.path / "dns_refresh_ms", "with aws_sigv4 the target's name is signed as Host: leave out dns_refresh_ms")
                }
            }
            upstream.slowStartMs = slowStart
            upstream.stickyCookie = o.optional("sticky_cookie") { node in
                node.object { c -> StickyCookie? in
                    let name = c.required("name") { $0.token() }
                    let maxAge = c.optional("max_age_seconds") { $0.int(1...315_360_000) }
                    let secure = c.optional("secure") { $0.bool() } ?? false
                    guard let name else { return nil }
                    var sticky = StickyCookie(name: name)
                    sticky.maxAgeSeconds = maxAge
                    sticky.secure = secure
                    return sticky
                }
            }
            return upstream
        }
    }
}

extension UpstreamTarget.HTTPProtocol {
    static func decode(_ node: ConfigNode) -> UpstreamTarget.HTTPProtocol? {
        node.oneOf(allCases.map(\.rawValue)).flatMap(Self.init)
    }
}

extension UpstreamTarget {
    /// `"http://host:port"` or `{"url": "http://host:port", "weight": 3, "protocol": "h2", "backup": true}`; the
    /// upstream's `protocol` applies unless the target names its own.
    static func decode(_ node: ConfigNode, defaultProtocol: HTTPProtocol) -> UpstreamTarget? {
        if case .object = node.value {
            return node.object { o in
                let target = o.required("url") { UpstreamTarget.parse($0) }
                let weight = o.optional("weight") { $0.int(1...1000) } ?? 1
                let httpProtocol = o.optional("protocol", HTTPProtocol.decode) ?? defaultProtocol
                let backup = o.optional("backup") { $0.bool() } ?? false
                return target.map {
                    var t = $0
                    t.weight = weight
                    t.httpProtocol = httpProtocol
                    t.backup = backup
                    return t
                }
            }
        }
        return parse(node).map { var t = $0; t.httpProtocol = defaultProtocol; return t }
    }

    static func parse(_ node: ConfigNode) -> UpstreamTarget? {
        guard let text = node.string() else { return nil }
        guard let target = UpstreamTarget(url: text) else {
            node.error("\"\(text)\" is not a valid upstream URL (expected http://host:port, https://host:port or unix:///path/to/app.sock)")
            return nil
        }
        return target
    }

    /// Parses `scheme://host[:port][/]` (paths, queries, fragments and credentials are not allowed) or `unix:///path`
    /// (an absolute path that fits a socket address: at most 107 bytes).
    public init?(url: String) {
        if url.lowercased().hasPrefix("unix://") {
            let path = String(url.dropFirst("unix://".count))
            guard path.hasPrefix("/"), path.utf8.count <= 107, !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            else { return nil }
            self.init(scheme: .http, host: "localhost", port: 80, weight: 1)
            socketPath = path
            return
        }
        let schemeEnd = url.firstRange(of: "://")
        guard let schemeEnd, let scheme = Scheme(rawValue: String(url[..<schemeEnd.lowerBound]).lowercased()) else {
            return nil
        }
        var rest = url[schemeEnd.upperBound...]
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.isEmpty, !rest.contains(where: { "/?#@ ".contains($0) }) else { return nil }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
            guard case .v6 = IPAddress(host) else { return nil }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return nil }
            host = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
            guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") })
            else { return nil }
        }
        var port = scheme == .https ? 443 : 80
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else { return nil }
            port = parsed
        }
        self.init(scheme: scheme, host: host.lowercased(), port: port, weight: 1)
    }
}

extension UpstreamTLSConfig {
    static func decode(_ node: ConfigNode) -> UpstreamTLSConfig? {
        node.object { o in
            var tls = UpstreamTLSConfig()
            tls.caFile = o.optional("ca_file") { $0.filePath() }
            tls.serverName = o.optional("server_name") { $0.hostPattern() }
            tls.clientCert = o.optional("client_cert") { $0.filePath() }
            tls.clientKey = o.optional("client_key") { $0.filePath() }
            tls.insecureSkipVerify = o.optional("insecure_skip_verify") { $0.bool() } ?? false
            if (tls.clientCert == nil) != (tls.clientKey == nil) {
                o.node.context.error(o.path / (tls.clientCert == nil ? "client_cert" : "client_key"), "client_cert and client_key go together")
            }
            if tls.insecureSkipVerify && tls.caFile != nil {
                o.node.context.warning(o.path / "ca_file", "unused: insecure_skip_verify accepts any certificate")
            }
            return tls
        }
    }
}

extension RetryConfig {
    static func decode(_ node: ConfigNode) -> RetryConfig? {
        node.object { o in
            let backoff = o.optional("backoff_ms") { $0.int(0...60_000) } ?? 25
            var retries = RetryConfig(
                attempts: o.optional("attempts") { $0.int(0...10) } ?? 2,
                backoffMs: backoff,
                onStatus: o.optional("on_status") { $0.array { $0.int(100...599) } } ?? [502, 503, 504],
                budgetRatio: o.optional("budget_ratio") { $0.number(0...1) } ?? 0.2,
                perTryTimeoutMs: o.optional("per_try_timeout_ms") { $0.int(1...maxMilliseconds) },
                maxBackoffMs: o.optional("max_backoff_ms") { $0.int(0...600_000) } ?? max(backoff * 10, 250)
            )
            retries.replayBodyBytes = o.optional("replay_body_bytes") { $0.int(0...16 << 20) } ?? retries.replayBodyBytes
            retries.idempotencyKey = o.optional("idempotency_key") { $0.bool() } ?? false
            retries.hedgeAfterMs = o.optional("hedge_after_ms") { $0.int(1...maxMilliseconds) }
            return retries
        }
    }
}

extension CircuitBreakerConfig {
    static func decode(_ node: ConfigNode) -> CircuitBreakerConfig? {
        node.object { o in
            let open = o.optional("open_ms") { $0.int(1...maxMilliseconds) } ?? 30_000
            return CircuitBreakerConfig(
                failureThreshold: o.optional("failure_threshold") { $0.int(1...10_000) } ?? 5,
                openMs: open,
                halfOpenRequests: o.optional("half_open_requests") { $0.int(1...1000) } ?? 1,
                failureRatio: o.optional("failure_ratio") { $0.number(0...1) },
                minimumRequests: o.optional("minimum_requests") { $0.int(1...1_000_000) } ?? 20,
                windowMs: o.optional("window_ms") { $0.int(100...maxMilliseconds) } ?? 10_000,
                maxOpenMs: o.optional("max_open_ms") { $0.int(1...maxMilliseconds) } ?? max(open, 300_000),
                failureStatuses: o.optional("failure_statuses") { $0.array { $0.int(100...599) } } ?? [502, 503, 504],
                maxEjectionPercent: o.optional("max_ejection_percent") { $0.int(0...100) } ?? 100
            )
        }
    }
}

extension HealthCheckConfig {
    static func decode(_ node: ConfigNode) -> HealthCheckConfig? {
        node.object { o in
            let grpcService = o.optional("grpc_service") { $0.string() }
            let path = o.has("grpc_service") && !o.has("path") ? "/grpc.health.v1.Health/Check" : o.required("path") { $0.absolutePath() }
            if o.has("grpc_service") && o.has("path") {
                o.node.context.error(o.path / "path", "a gRPC health check asks grpc.health.v1.Health/Check; leave path out")
            }
            var config = HealthCheckConfig(
                path: path ?? "/",
                intervalMs: o.optional("interval_ms") { $0.int(100...maxMilliseconds) } ?? 5000,
                timeoutMs: o.optional("timeout_ms") { $0.int(1...maxMilliseconds) } ?? 1000,
                healthyThreshold: o.optional("healthy_threshold") { $0.int(1...100) } ?? 2,
                unhealthyThreshold: o.optional("unhealthy_threshold") { $0.int(1...100) } ?? 3
            )
            config.grpcService = grpcService
            config.host = o.optional("host") { node -> String? in
                guard let host = node.nonEmptyString() else { return nil }
                guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.:[]_".contains($0)) }) else {
                    node.error("\"\(host)\" is not a host[:port]")
                    return nil
                }
                return host
            }
            config.headers =
                o.optional("headers") { node in
                    node.headerFields { name in
                        guard ["host", "content-length", "transfer-encoding", "connection"].contains(name.lowercased()) else { return nil }
                        return "\(name) is set by the gateway itself" + (name.lowercased() == "host" ? " (use health_check.host)" : "")
                    }
                } ?? []
            config.expectedStatuses =
                o.optional("expected_statuses") { $0.statusRules(100...599, example: "2xx") } ?? config.expectedStatuses
            return path == nil ? nil : config
        }
    }
}

extension PoolConfig {
    static func decode(_ node: ConfigNode) -> PoolConfig? {
        node.object { o in
            var pool = PoolConfig()
            pool.maxIdlePerTarget = o.optional("max_idle_per_target") { $0.int(0...100_000) } ?? pool.maxIdlePerTarget
            pool.idleTimeoutMs = o.optional("idle_timeout_ms") { $0.int(1...maxMilliseconds) } ?? pool.idleTimeoutMs
            pool.maxRequestsPerConnection = o.optional("max_requests_per_connection") { $0.int(1...100_000_000) }
            pool.maxConnectionAgeMs = o.optional("max_connection_age_ms") { $0.int(1...maxMilliseconds) }
            return pool
        }
    }
}

extension RouteConfig {
    static func decode(_ node: ConfigNode) -> RouteConfig? {
        node.object { o in
            let name = o.required("name") { $0.nonEmptyString() }
            let match = o.optional("match", MatchConfig.decode) ?? MatchConfig()
            let answering = ["redirect", "respond", "direct_response"].first(where: o.has).map { "a route with \($0) answers itself" }
            let answer = RouteAnswer.decode(o)
            let split = o.optional("split", RouteSplitConfig.decode)
            let mirror = o.optional("mirror") { node in
                node.object { m -> RouteMirrorConfig? in
                    let upstream = m.required("upstream") { $0.nonEmptyString() }
                    let percent = m.optional("percent") { $0.number(0...100) } ?? 100
                    return upstream.map { RouteMirrorConfig(upstream: $0, percent: percent) }
                }
            }
            let compression = o.optional("compression", CompressionConfig.decode)
            let accessLog = o.optional("access_log") { node -> RouteConfig.AccessLog? in
                if case .bool(let on) = node.value { return on ? .all : .off }
                if case .string("errors") = node.value { return .errors }
                if case .object = node.value {
                    return node.object { a in a.required("sample_percent") { $0.number(0...100) }.map { .sampled($0 / 100) } }
                }
                node.error(#"expected true, false, "errors" or {"sample_percent": N}"#)
                return nil
            }
            // A route that answers itself needs no upstream (and may not name one); a split names its own.
            if let answering {
                if o.has("split") { o.node.context.error(o.path / "split", answering + " and forwards nowhere") }
                if o.has("mirror") { o.node.context.error(o.path / "mirror", answering + ": there is nothing to mirror") }
            }
            let upstream: String?
            if answering != nil || o.has("split") {
                upstream = o.optional("upstream") { node -> String? in
                    node.error(answering.map { $0 + " and forwards nowhere" } ?? "a route forwards either to one upstream or to a split, not both")
                    return nil
                } ?? ""
            } else {
                upstream = o.required("upstream") { $0.nonEmptyString() }
            }
            let strip = o.optional("strip_prefix") { $0.absolutePath() }
            let addPrefix = o.optional("add_prefix") { node -> String? in
                guard let path = node.absolutePath() else { return nil }
                // Sent as it is in request targets: only characters a path may hold, no dot segments.
                let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%")
                guard path.allSatisfy(allowed.contains), !path.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) else {
                    node.error("\"\(path)\" may hold only URI path characters (percent-encode others) and no . or .. segments")
                    return nil
                }
                let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
                if trimmed.isEmpty { node.warning("\"/\" adds nothing") }
                return trimmed.isEmpty ? nil : trimmed
            }
            let rewritePath = o.optional("rewrite_path") { node -> PathRewrite? in
                guard let text = node.string() else { return nil }
                guard let template = match.pathTemplate else {
                    // A template that failed to parse is reported already.
                    var writesTemplate = false
                    if case .object(let members) = o.node.value, case .object(let match)? = members.first(where: { $0.key == "match" })?.value {
                        writesTemplate = match.contains { $0.key == "path_template" }
                    }
                    if !writesTemplate { node.error("needs match.path_template: its variables build the new path") }
                    return nil
                }
                switch PathRewrite.parse(text, for: template) {
                case .success(let rewrite): return rewrite
                case .failure(let problem):
                    node.error("\"\(text)\": \(problem)")
                    return nil
                }
            }
            if rewritePath != nil || o.has("rewrite_path") {
                for key in ["strip_prefix", "add_prefix"] where o.has(key) {
                    o.node.context.error(o.path / key, "rewrite_path sets the whole upstream path; drop \(key)")
                }
            }
            let preserveHost = o.optional("preserve_host") { $0.bool() } ?? true
            let hostRewrite = o.optional("host_rewrite") { $0.authority() }
            let requestQuery = o.optional("request_query") { node in
                node.object { q -> QueryEdits? in
                    var edits = QueryEdits()
                    edits.remove = q.optional("remove") { $0.array { $0.nonEmptyString() } } ?? []
                    edits.set = (q.optional("set") { node in node.map { _, value in value.string() } } ?? []).map { (name: $0.key, value: $0.value) }
                    for (name, _) in edits.set where name.isEmpty { q.node.context.error(q.path / "set", "a parameter name cannot be empty") }
                    return edits
                }
            }
            if o.has("host_rewrite") && o.has("preserve_host") {
                o.node.context.error(o.path / "host_rewrite", "host_rewrite decides the upstream's Host; drop preserve_host")
            }
            let auth = o.optional("auth", RouteAuthConfig.decode)
            let externalAuth = o.optional("external_auth") { $0.nonEmptyString() }
            let grpcWeb = o.optional("grpc_web") { $0.bool() } ?? false
            let requestBuffering = o.optional("request_buffering") { $0.bool() } ?? false
            // `true` (8 MiB), `false`, or `{"max_bytes": N}`.
            let responseBufferBytes = o.optional("response_buffering") { node -> Int? in
                switch node.value {
                case .bool(let on): return on ? RouteConfig.defaultResponseBufferBytes : 0
                case .object: return node.object { b in b.required("max_bytes") { $0.int(65_536...(1 << 30)) } }
                default:
                    node.error("expected true, false or an object")
                    return nil
                }
            }.flatMap { $0 > 0 ? $0 : nil }
            // `{"bytes_per_second": 1048576, "after_bytes": 10485760}`.
            let limitRate = o.optional("limit_rate") { node in
                node.object { r -> (bytesPerSecond: Int, afterBytes: Int)? in
                    let rate = r.required("bytes_per_second") { $0.int(1024...(1 << 40)) }
                    let after = r.optional("after_bytes") { $0.int(0...Int.max) } ?? 0
                    return rate.map { ($0, after) }
                }
            }
            let limits = o.optional("rate_limits") { $0.array(RateLimitConfig.decode) } ?? []
            let concurrency = o.optional("concurrency_limit") { node in
                node.object { c -> ConcurrencyLimitConfig? in
                    let key = c.optional("key", RateLimitConfig.Key.decode) ?? .ip
                    let max = c.required("max") { $0.int(1...1_000_000) }
                    let overrides = c.optional("overrides") { node in
                        node.array { item in
                            item.object { v -> ConcurrencyLimitConfig.Override? in
                                var override = ConcurrencyLimitConfig.Override()
                                override.callers = Callers.decode(v)
                                override.exempt = v.optional("exempt") { $0.bool() } ?? false
                                override.max = v.optional("max") { $0.int(1...1_000_000) }
                                if override.exempt == v.has("max") {
                                    v.node.context.error(v.path, "give these callers their max, or exempt: true")
                                }
                                return override
                            }
                        }
                    } ?? []
                    return max.map {
                        var limit = ConcurrencyLimitConfig(key: key, max: $0)
                        limit.overrides = overrides
                        return limit
                    }
                }
            }
            let cache = o.optional("cache", RouteCacheConfig.decode)
            let cors = o.optional("cors", CORSConfig.decode)
            let csrf = o.optional("csrf", CSRFConfig.decode)
            var seen: Set<String> = []
            for (index, limit) in limits.enumerated() where !seen.insert(limit.name).inserted {
                o.node.context.error(o.path / "rate_limits" / index / "name", "duplicate limit name \"\(limit.name)\" in this route")
            }
            let (denyIPs, allowIPs) = o.addressRules()
            let countries = o.countryRule()
            let asns = o.asnRule()
            let maxBodyBytes = o.optional("max_body_bytes") { $0.int(0...Int.max) }
            let tunnelIdleTimeoutMs = o.optional("tunnel_idle_timeout_ms") { $0.int(0...maxMilliseconds) }
            let adaptive = o.optional("adaptive_concurrency", AdaptiveConcurrency.Settings.decode)
            let requestValidation = o.optional("request_validation") { RequestValidationConfig.decode($0, template: match.pathTemplate) }
            let webhookSignature = o.optional("webhook_signature", WebhookSignatureConfig.decode)
            let locationRewrite = o.optional("location_rewrite", LocationRewriteConfig.decode)
            let cookieRewrite = o.optional("cookie_rewrite", CookieRewriteConfig.decode)
            let earlyHints = o.optional("early_hints", EarlyHintsConfig.decode)
            if let answering, o.has("early_hints") {
                o.node.context.warning(o.path / "early_hints", "\(answering): hints go out while an upstream works, and none does here")
            }
            if let answering, o.has("cookie_rewrite") {
                o.node.context.warning(o.path / "cookie_rewrite", "\(answering): no upstream cookies to rewrite")
            }
            if cookieRewrite?.path == true, !o.has("strip_prefix") && !o.has("add_prefix") {
                o.node.context.warning(o.path / "cookie_rewrite" / "path", "maps strip_prefix and add_prefix back, and the route has neither")
            }
            if let answering, o.has("location_rewrite") {
                o.node.context.warning(o.path / "location_rewrite", "\(answering): no upstream answer to rewrite")
            }
            if locationRewrite?.relativePaths == true, !o.has("strip_prefix") {
                o.node.context.warning(o.path / "location_rewrite" / "relative_paths", "puts strip_prefix back, and the route strips none")
            }
            if let answering, webhookSignature != nil {
                o.node.context.warning(o.path / "webhook_signature", "\(answering): signatures are checked before forwarding, and nothing is forwarded")
            }
            if grpcWeb, webhookSignature != nil {
                o.node.context.error(o.path / "webhook_signature", "gRPC-Web requests are not webhooks; check signatures on another route")
            }
            if let answering, o.has("request_validation") {
                o.node.context.warning(o.path / "request_validation", "\(answering): bodies are checked before forwarding, and nothing is forwarded")
            }
            if requestValidation?.bodySchema != nil, !match.methods.isEmpty, match.methods.allSatisfy(RequestValidationConfig.bodilessMethods.contains) {
                o.node.context.warning(
                    o.path / "request_validation" / "body_schema", "the route takes only \(match.methods.joined(separator: ", ")): no body to check")
            }
            if grpcWeb, o.has("request_validation") {
                o.node.context.error(o.path / "request_validation", "gRPC-Web bodies are not JSON; validate on another route")
            }
            let deprecation = o.optional("deprecation", DeprecationConfig.decode)
            let interceptErrors = o.optional("intercept_errors", InterceptErrorsConfig.decode)
            if let answering, interceptErrors?.enabled == true {
                o.node.context.warning(o.path / "intercept_errors", "does nothing here: \(answering), no upstream answers")
            }
            let fault = o.optional("fault", FaultConfig.decode)
            if fault != nil {
                o.node.context.warning(o.path / "fault", "injects delays or errors into this route's live traffic")
            }
            let readTimeout = o.optional("read_timeout_ms") { $0.int(1...maxMilliseconds) }
            let totalTimeout = o.optional("total_timeout_ms") { $0.int(1...maxMilliseconds) }
            let routeRetries = o.optional("retries") { node in
                node.object { r -> (attempts: Int?, hedgeAfterMs: Int?)? in
                    let attempts = r.optional("attempts") { $0.int(0...10) }
                    let hedge = r.optional("hedge_after_ms") { $0.int(0...maxMilliseconds) }
                    if !r.has("attempts") && !r.has("hedge_after_ms") { r.node.context.error(r.path, "give attempts, hedge_after_ms, or both") }
                    return (attempts, hedge)
                }
            }
            let requestHeaders = o.optional("request_headers") { HeaderEdits.decode($0, reserved: HeaderEdits.reservedInRequests) }
            let responseHeaders = o.optional("response_headers") { HeaderEdits.decode($0, reserved: HeaderEdits.reservedInResponses) }
            guard let name, let upstream else { return nil }
            var route = RouteConfig(
                name: name, match: match, upstream: upstream, stripPrefix: strip, preserveHost: preserveHost,
                auth: auth, rateLimits: limits, cache: cache, cors: cors
            )
            (route.denyIPs, route.allowIPs) = (denyIPs, allowIPs)
            route.countries = countries
            route.asns = asns
            route.maxBodyBytes = maxBodyBytes
            route.tunnelIdleTimeoutMs = tunnelIdleTimeoutMs
            route.fault = fault
            route.interceptErrors = interceptErrors
            route.requestValidation = requestValidation
            route.webhookSignature = webhookSignature
            route.locationRewrite = locationRewrite ?? LocationRewriteConfig()
            route.cookieRewrite = cookieRewrite
            route.earlyHints = earlyHints ?? EarlyHintsConfig()
            if webhookSignature != nil, cache?.enabled == true {
                o.node.context.error(o.path / "cache", "a stored answer would be served without the webhook_signature check; leave the cache off here")
            }
            route.deprecation = deprecation
            route.hostRewrite = hostRewrite
            route.requestQuery = requestQuery
            route.answer = answer
            route.split = split
            route.addPrefix = addPrefix
            route.rewritePath = rewritePath
            route.mirror = mirror
            route.compression = compression
            route.accessLog = accessLog ?? .all
            route.rateLimitHeaders = o.optional("rate_limit_headers") { $0.bool() } ?? true
            if !route.rateLimitHeaders && limits.isEmpty {
                o.node.context.warning(o.path / "rate_limit_headers", "the route has no rate_limits")
            }
            route.externalAuth = externalAuth
            route.grpcWeb = grpcWeb
            route.requestBuffering = requestBuffering
            route.responseBufferBytes = responseBufferBytes
            route.limitRate = limitRate
            if let answering, o.has("limit_rate") {
                o.node.context.warning(o.path / "limit_rate", "\(answering): its answers are small and not paced")
            }
            if let answering, o.has("response_buffering") {
                o.node.context.warning(o.path / "response_buffering", "\(answering): no upstream answer to hold")
            }
            route.concurrencyLimit = concurrency ?? nil
            route.adaptiveConcurrency = adaptive
            (route.readTimeoutMs, route.totalTimeoutMs) = (readTimeout, totalTimeout)
            route.retryAttempts = routeRetries?.attempts
            route.hedgeAfterMs = routeRetries?.hedgeAfterMs
            route.csrf = csrf
            route.requestHeaders = requestHeaders ?? HeaderEdits()
            route.responseHeaders = responseHeaders ?? HeaderEdits()
            return route
        }
    }
}

extension CSRFConfig {
    /// `true`, `false` (off, `enabled` false), or `{"trusted_origins": ["https://app.example.com"], "report_only": false}`.
    static func decode(_ node: ConfigNode) -> CSRFConfig? {
        node.switchOrObject { o, config in
            config.trustedOrigins =
                o.optional("trusted_origins") { node in
                    node.array { item -> String? in
                        guard let origin = item.nonEmptyString() else { return nil }
                        guard let rule = CORSPolicy.parseOrigin(origin), rule != .any else {
                            item.error(
                                "expected an origin like \"https://app.example.com\" (scheme, host and port only) or \"https://*.example.com\"; \"*\" would trust every site")
                            return nil
                        }
                        return origin
                    }
                } ?? []
            config.reportOnly = o.optional("report_only") { $0.bool() } ?? false
        }
    }
}

extension ExternalAuthConfig {
    /// `{"upstream": "sso", "path": "/verify", "request_headers": [...], "upstream_headers": [...], "client_headers": [...],
    ///   "consumer_header": "x-user", "timeout_ms": 1000, "on_error": "deny"}`
    static func decode(name: String, _ node: ConfigNode) -> ExternalAuthConfig? {
        node.object { o in
            let upstream = o.required("upstream") { $0.nonEmptyString() }
            let path = o.required("path") { $0.absolutePath() }
            // Framing and connection fields belong to each hop: copying them would break the message they land in.
            let framing = ["connection", "content-length", "transfer-encoding", "keep-alive", "te", "trailer", "upgrade"]
            let names = { (key: String, reserved: [String]) -> [String]? in
                o.optional(key) { node in
                    node.array { item -> String? in
                        guard let name = item.token()?.lowercased() else { return nil }
                        if reserved.contains(name) {
                            item.error("\(name) is set by the gateway itself and cannot be copied here")
                            return nil
                        }
                        return name
                    }
                }
            }
            let requestHeaders = names("request_headers", Array(ExternalAuthConfig.setByGateway))
            let upstreamHeaders = names("upstream_headers", framing + ["host", "x-forwarded-for", "x-request-id", "traceparent"])
            let clientHeaders = names("client_headers", framing)
            let consumerHeader = o.optional("consumer_header") { $0.token()?.lowercased() }
            let timeout = o.optional("timeout_ms") { $0.int(1...maxMilliseconds) }
            let onError = o.optional("on_error") { $0.oneOf(["deny", "allow"]).flatMap(OnError.init) }
            // Returned even when broken (its mistakes are reported already), so routes naming it are not told
            // it does not exist.
            var config = ExternalAuthConfig(name: name, upstream: upstream ?? "", path: path ?? "/")
            config.requestHeaders = requestHeaders
            config.upstreamHeaders = upstreamHeaders ?? config.upstreamHeaders
            config.clientHeaders = clientHeaders ?? config.clientHeaders
            config.consumerHeader = consumerHeader
            config.timeoutMs = timeout ?? config.timeoutMs
            config.onError = onError ?? config.onError
            return config
        }
    }
}

extension CompressionConfig {
    /// `{"enabled": true, "level": 5, "min_bytes": 1024, "content_types": ["application/json", "text/*", "+json"]}`
    static func decode(_ node: ConfigNode) -> CompressionConfig? {
        node.object { o in
            var config = CompressionConfig()
            config.enabled = o.optional("enabled") { $0.bool() } ?? config.enabled
            config.level = o.optional("level") { $0.int(1...9) } ?? config.level
            config.minBytes = o.optional("min_bytes") { $0.int(0...Int.max) } ?? config.minBytes
            config.contentTypes = o.optional("content_types") { node in
                node.array { item -> String? in
                    guard let text = item.nonEmptyString()?.lowercased() else { return nil }
                    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
                    let valid =
                        text.hasPrefix("+") ? isToken(String(text.dropFirst()))
                        : parts.count == 2 && isToken(String(parts[0])) && (parts[1] == "*" || isToken(String(parts[1])))
                    guard valid else {
                        item.error("expected a media type (\"application/json\"), a whole type (\"text/*\") or a suffix (\"+json\")")
                        return nil
                    }
                    return text
                }
            } ?? config.contentTypes
            config.encodings = o.optional("encodings") { node -> [ContentCoding.Coding]? in
                guard let list = node.array({ $0.oneOf(ContentCoding.Coding.allCases.map(\.rawValue)).flatMap(ContentCoding.Coding.init) }) else {
                    return nil
                }
                if case .array(let raw) = node.value, raw.isEmpty { node.error("list at least one of \"zstd\", \"br\", \"gzip\" (or set enabled to false)") }
                return list
            } ?? config.encodings
            config.brotliLevel = o.optional("brotli_level") { $0.int(0...11) } ?? config.brotliLevel
            config.zstdLevel = o.optional("zstd_level") { $0.int(1...19) } ?? config.zstdLevel
            return config
        }
    }
}

extension RouteSplitConfig {
    /// `{"upstreams": [{"name": "orders-v1", "weight": 95}, {"name": "orders-v2", "weight": 5}], "sticky_on": "cookie:session"}`
    static func decode(_ node: ConfigNode) -> RouteSplitConfig? {
        node.object { o in
            let members = o.required("upstreams") { node in
                node.array { item in
                    item.object { m -> Member? in
                        let name = m.required("name") { $0.nonEmptyString() }
                        let weight = m.optional("weight") { $0.int(0...10_000) } ?? 1
                        return name.map { Member(upstream: $0, weight: weight) }
                    }
                }
            }
            let sticky = o.optional("sticky_on") { $0.requestKey(allowingConsumer: true) }
            let setCookie = o.optional("set_cookie") { $0.bool() } ?? false
            if setCookie && sticky?.cookieName == nil {
                o.node.context.error(o.path / "set_cookie", "needs sticky_on \"cookie:NAME\" (the cookie it sets)")
            }
            guard let members else { return nil }
            if members.isEmpty {
                o.node.context.error(o.path / "upstreams", "a split needs at least one upstream")
                return nil
            }
            var seen: Set<String> = []
            for (index, member) in members.enumerated() where !seen.insert(member.upstream).inserted {
                o.node.context.error(o.path / "upstreams" / index / "name", "\"\(member.upstream)\" is already in this split")
            }
            if members.allSatisfy({ $0.weight == 0 }) {
                o.node.context.error(o.path / "upstreams", "at least one weight must be above 0")
                return nil
            }
            return RouteSplitConfig(members: members, stickyOn: sticky, setCookie: setCookie)
        }
    }
}

extension MatchConfig {
    static func decode(_ node: ConfigNode) -> MatchConfig? {
        node.object { o in
            var match = MatchConfig()
            match.hosts = o.optional("hosts") { $0.array { $0.hostPattern() } } ?? []
            match.listeners = o.optional("listeners") { $0.array { $0.nonEmptyString() } } ?? []
            match.pathPrefix = o.optional("path_prefix") { $0.absolutePath() }
            match.path = o.optional("path") { $0.absolutePath() }
            match.pathTemplate = o.optional("path_template") { node -> PathTemplate? in
                guard let text = node.absolutePath() else { return nil }
                switch PathTemplate.parse(text) {
                case .success(let template): return template
                case .failure(let problem):
                    node.error("\"\(text)\": \(problem)")
                    return nil
                }
            }
            match.methods = o.optional("methods") { $0.array { $0.method() } } ?? []
            match.headers =
                o.optional("headers") { node in
                    node.map { name, value -> HeaderRule? in
                        guard isToken(name) else {
                            value.error("\"\(name)\" is not a valid header name")
                            return nil
                        }
                        return value.headerRule()
                    }.map { pairs in pairs.map { (name: $0.key.lowercased(), rule: $0.value) } }
                } ?? []
            match.query =
                o.optional("query") { node in
                    node.map { name, value -> MatchConfig.QueryRule? in
                        guard !name.isEmpty else {
                            value.error("a query parameter needs a name")
                            return nil
                        }
                        switch value.value {
                        case .string: return value.string().map { .equals($0) }
                        case .bool(let present): return .present(present)
                        default:
                            value.error("expected a string (the value) or true/false (present or absent)")
                            return nil
                        }
                    }.map { pairs in pairs.map { (name: $0.key, rule: $0.value) } }
                } ?? []
            match.clientIPs = o.optional("client_ips") { node -> [CIDR]? in
                if case .array(let items) = node.value, items.isEmpty {
                    node.error("an empty list matches no client; leave client_ips out to match every client")
                }
                return node.addressRanges()
            } ?? []
            if match.path != nil && match.pathPrefix != nil {
                o.node.context.error(o.path / "path", "use either path (exact) or path_prefix, not both")
            }
            if o.has("path_template") && (o.has("path") || o.has("path_prefix")) {
                o.node.context.error(o.path / "path_template", "use one of path, path_prefix and path_template")
            }
            return match
        }
    }
}

extension RouteAuthConfig {
    static func decode(_ node: ConfigNode) -> RouteAuthConfig? {
        node.object { o in
            let require = o.required("require") { $0.array { $0.oneOf(["jwt", "api_key", "mtls", "basic", "introspection", "oidc"]).flatMap(Method.init) } }
            let scopes = o.optional("scopes") { $0.array { $0.nonEmptyString() } } ?? []
            if let require, require.isEmpty {
                o.node.context.error(o.path / "require", "list at least one of \"jwt\", \"api_key\", \"mtls\", \"basic\", \"introspection\", \"oidc\" (omit auth for a public route)")
            }
            let claims = o.optional("claims") { $0.claimConditions() } ?? []
            if !claims.isEmpty, let require, !require.contains(where: \.carriesClaims) {
                o.node.context.error(o.path / "claims", "claims are checked on tokens: require \"jwt\", \"introspection\" or \"oidc\"")
            }
            guard let require else { return nil }
            var auth = RouteAuthConfig(require: require, scopes: scopes)
            auth.claims = claims
            return auth
        }
    }
}

extension RateLimitConfig.Key {
    /// `ip`, `consumer`, `route`, `header:NAME` or `claim:NAME` (rate limits and concurrency limits).
    static func decode(_ node: ConfigNode) -> RateLimitConfig.Key? {
        guard let text = node.string() else { return nil }
        switch text {
        case "ip": return .ip
        case "consumer": return .consumer
        case "route": return .route
        default:
            if text.hasPrefix("header:"), isToken(String(text.dropFirst(7))) {
                return .header(String(text.dropFirst(7)).lowercased())
            }
            if text.hasPrefix("claim:"), text.count > 6 { return .claim(String(text.dropFirst(6))) }
            let guess = closestMatch(to: text, among: ["ip", "consumer", "route"])
            node.error(
                "unknown key \"\(text)\"" + (guess.map { " (did you mean \"\($0)\"?)" } ?? "")
                    + "; expected \"ip\", \"consumer\", \"route\", \"header:NAME\" or \"claim:NAME\"")
            return nil
        }
    }
}

extension RateLimitConfig {
    static func decode(_ node: ConfigNode) -> RateLimitConfig? {
        node.object { o in
            let name = o.required("name") { $0.token() }
            let algorithm = o.required("algorithm") {
                $0.oneOf(["token_bucket", "sliding_window", "fixed_window"]).flatMap(Algorithm.init)
            }
            let key = o.required("key", Key.decode)
            let capacity = o.optional("capacity") { $0.int(1...1_000_000_000) }
            let refill = o.optional("refill_per_second") { $0.number(0.000_001...1_000_000_000) }
            let cost = o.optional("cost") { $0.int(1...1_000_000_000) } ?? 1
            let limit = o.optional("limit") { $0.int(1...1_000_000_000) }
            let window = o.optional("window_seconds") { $0.int(1...31_536_000) }
            let enforce = o.optional("enforce") { $0.bool() } ?? true
            let overrides = o.optional("overrides") { $0.array { RateLimitOverride.decode($0, algorithm: algorithm) } } ?? []
            switch algorithm {
            case .tokenBucket:
                if capacity == nil && !o.has("capacity") { o.node.context.error(o.path / "capacity", "token_bucket needs a capacity") }
                if refill == nil && !o.has("refill_per_second") {
                    o.node.context.error(o.path / "refill_per_second", "token_bucket needs refill_per_second")
                }
                if limit != nil || window != nil { o.node.context.error(o.path, "limit and window_seconds belong to sliding_window and fixed_window") }
                if let capacity, cost > capacity { o.node.context.error(o.path / "cost", "is larger than capacity; no request could ever pass") }
            case .slidingWindow, .fixedWindow:
                let kind = algorithm?.rawValue ?? ""
                if limit == nil && !o.has("limit") { o.node.context.error(o.path / "limit", "\(kind) needs a limit") }
                if window == nil && !o.has("window_seconds") {
                    o.node.context.error(o.path / "window_seconds", "\(kind) needs window_seconds")
                }
                if algorithm == .slidingWindow, let limit, limit > 10_000 {
                    o.node.context.warning(
                        o.path / "limit",
                        "a sliding window keeps the time of every counted request (up to \(limit) per key in memory or Redis); "
                            + "for a quota this large, fixed_window keeps one counter")
                }
                if capacity != nil || refill != nil { o.node.context.error(o.path, "capacity and refill_per_second belong to token_bucket") }
                if let limit, cost > limit { o.node.context.error(o.path / "cost", "is larger than limit; no request could ever pass") }
            case nil:
                break
            }
            guard let name, let algorithm, let key else { return nil }
            var config = RateLimitConfig(
                name: name, algorithm: algorithm, key: key, capacity: capacity, refillPerSecond: refill, cost: cost,
                limit: limit, windowSeconds: window, enforce: enforce
            )
            config.overrides = overrides
            for (index, override) in overrides.enumerated() where !override.exempt {
                let numbers = config.overridden(by: override)
                let ceiling = algorithm == .tokenBucket ? (numbers.capacity, "capacity") : (numbers.limit, "limit")
                if let most = ceiling.0, cost > most {
                    o.node.context.error(o.path / "overrides" / index / ceiling.1, "is smaller than the limit's cost; no request of these callers could ever pass")
                }
            }
            return config
        }
    }
}

extension Callers {
    /// `consumers` and/or `claims` of an override object, each non-empty, at least one given.
    static func decode(_ o: ObjectReader) -> Callers {
        var callers = Callers()
        let consumers = o.optional("consumers") { $0.array { $0.consumerText() } }
        let claims = o.optional("claims") { $0.claimConditions() }
        if consumers?.isEmpty == true { o.node.context.error(o.path / "consumers", "list at least one consumer id") }
        if claims?.isEmpty == true { o.node.context.error(o.path / "claims", "name at least one claim") }
        if !o.has("consumers") && !o.has("claims") {
            o.node.context.error(o.path, "name the callers it applies to: consumers, claims or both")
        }
        callers.consumers = consumers ?? []
        callers.claims = claims ?? []
        return callers
    }
}

extension RateLimitOverride {
    /// An override names its callers (`consumers`, `claims`) and gives either numbers of the limit's own
    /// algorithm or `exempt: true`.
    static func decode(_ node: ConfigNode, algorithm: RateLimitConfig.Algorithm?) -> RateLimitOverride? {
        node.object { o in
            var override = RateLimitOverride()
            override.callers = Callers.decode(o)
            override.exempt = o.optional("exempt") { $0.bool() } ?? false
            override.capacity = o.optional("capacity") { $0.int(1...1_000_000_000) }
            override.refillPerSecond = o.optional("refill_per_second") { $0.number(0.000_001...1_000_000_000) }
            override.limit = o.optional("limit") { $0.int(1...1_000_000_000) }
            override.windowSeconds = o.optional("window_seconds") { $0.int(1...31_536_000) }
            let bucketKeys = ["capacity", "refill_per_second"].filter(o.has)
            let windowKeys = ["limit", "window_seconds"].filter(o.has)
            if override.exempt {
                if !(bucketKeys + windowKeys).isEmpty { o.node.context.error(o.path / "exempt", "an exempt override takes no numbers") }
            } else if bucketKeys.isEmpty && windowKeys.isEmpty {
                o.node.context.error(
                    o.path, "give these callers their numbers (capacity and/or refill_per_second, or limit and/or window_seconds) or exempt: true")
            }
            switch algorithm {
            case .tokenBucket where !windowKeys.isEmpty:
                o.node.context.error(o.path / windowKeys[0], "belongs to sliding_window and fixed_window; this limit is a token_bucket")
            case .slidingWindow where !bucketKeys.isEmpty, .fixedWindow where !bucketKeys.isEmpty:
                o.node.context.error(o.path / bucketKeys[0], "belongs to token_bucket; this limit is a \(algorithm?.rawValue ?? "")")
            default:
                break
            }
            return override
        }
    }
}

extension RouteCacheConfig {
    static func decode(_ node: ConfigNode) -> RouteCacheConfig? {
        node.object { o in
            var config = RouteCacheConfig(
                enabled: o.optional("enabled") { $0.bool() } ?? true,
                defaultTTLSeconds: o.optional("default_ttl_seconds") { $0.int(0...31_536_000) } ?? 0,
                keyHeaders: o.optional("key_headers") { $0.array { $0.token() } }?.map { $0.lowercased() } ?? [],
                ignoreQueryParameters: o.optional("ignore_query_params") { $0.array { $0.nonEmptyString() } } ?? []
            )
            config.allowSetCookie = o.optional("allow_set_cookie") { $0.bool() } ?? false
            return config
        }
    }
}

extension CORSConfig {
    static func decode(_ node: ConfigNode) -> CORSConfig? {
        node.object { o in
            let origins = o.required("allow_origins") { node in
                node.array { item -> String? in
                    guard let origin = item.nonEmptyString() else { return nil }
                    guard CORSPolicy.parseOrigin(origin) != nil else {
                        item.error("expected \"*\", an origin like \"https://app.example.com\" (scheme, host and port only, no path or trailing slash) or \"https://*.example.com\"")
                        return nil
                    }
                    return origin
                }
            }
            let config = CORSConfig(
                allowOrigins: origins ?? [],
                allowMethods: o.optional("allow_methods") { $0.array { item in item.isString("*") ? "*" : item.method() } } ?? ["GET", "HEAD", "POST"],
                allowHeaders: o.optional("allow_headers") { $0.array { $0.token() } } ?? [],
                exposeHeaders: o.optional("expose_headers") { $0.array { $0.token() } } ?? [],
                allowCredentials: o.optional("allow_credentials") { $0.bool() } ?? false,
                maxAgeSeconds: o.optional("max_age_seconds") { $0.int(0...86_400) }
            )
            if config.allowCredentials && config.allowOrigins.contains("*") {
                o.node.context.error(o.path / "allow_credentials", "cannot be true with allow_origins \"*\" (browsers refuse it)")
            }
            return origins == nil ? nil : config
        }
    }
}

extension RouteAnswer {
    static func decode(_ o: ObjectReader) -> RouteAnswer? {
        let redirect = o.optional("redirect") { node in
            node.object { r -> RouteAnswer? in
                let location = r.required("location") { node -> String? in
                    guard let text = node.headerValue() else { return nil }
                    guard text.hasPrefix("https://") || text.hasPrefix("http://") || text.hasPrefix("/") else {
                        node.error("expected an absolute URL (https://...) or a path (/...)")
                        return nil
                    }
                    return text
                }
                let status = r.optional("status") { node -> Int? in
                    guard let status = node.int(301...308) else { return nil }
                    guard [301, 302, 303, 307, 308].contains(status) else {
                        node.error("expected 301, 302, 303, 307 or 308")
                        return nil
                    }
                    return status
                } ?? 308
                let appendPath = r.optional("append_path") { $0.bool() } ?? false
                return location.map { .redirect(location: $0, status: status, appendPath: appendPath) }
            }
        }
        let respond = o.optional("respond") { node in
            node.object { r -> RouteAnswer? in
                let status = r.required("status") { $0.int(400...599) }
                let code = r.required("code") { node -> String? in
                    guard let code = node.nonEmptyString() else { return nil }
                    guard code.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") }) else {
                        node.error("codes are upper case with underscores, like the gateway's own (e.g. \"API_RETIRED\")")
                        return nil
                    }
                    return code
                }
                let message = r.required("message") { $0.nonEmptyString() }
                let retryAfter = r.optional("retry_after_seconds") { $0.int(1...86_400) }
                guard let status, let code, let message else { return nil }
                return .error(status: status, code: code, message: message, retryAfterSeconds: retryAfter)
            }
        }
        let direct = o.optional("direct_response") { node in
            node.object { r -> RouteAnswer? in
                if r.has("jwks") {
                    let source = r.optional("jwks") { $0.oneOf(["upstream_token"]) }
                    for key in ["status", "body", "content_type", "headers"] where r.has(key) {
                        r.node.context.error(r.path / key, "the key set is the whole answer: leave \(key) out")
                        r.accept(key)  // reported here, not again as unknown
                    }
                    return source.map { _ in .upstreamTokenKeys }
                }
                let status = r.optional("status") { $0.int(200...599) } ?? 200
                let body = r.optional("body") { $0.string() } ?? ""
                let contentType = r.optional("content_type") { $0.headerValue() } ?? "text/plain; charset=utf-8"
                let headers = r.optional("headers") { node in
                    node.map { name, value -> String? in
                        guard isAnswerField(name) else {
                            value.error("\(name) cannot be set here (framing fields are the gateway's; the type is content_type)")
                            return nil
                        }
                        return value.headerValue()
                    }?.map { (name: $0.key.lowercased(), value: $0.value) }
                } ?? []
                if status == 204 || status == 304, !body.isEmpty { r.node.context.error(r.path / "body", "a \(status) answer has no body") }
                if body.utf8.count > 1 << 20 { r.node.context.error(r.path / "body", "is over 1 MiB; serve large content from an upstream") }
                return .content(status: status, contentType: contentType, body: body, headers: headers)
            }
        }
        let given = ["redirect", "respond", "direct_response"].filter(o.has)
        if given.count > 1 {
            o.node.context.error(o.path / given[1], "a route answers itself in one way: \(given.joined(separator: ", ")) are given")
        }
        return redirect ?? respond ?? direct
    }
}

extension HeaderEdits {
    /// Fields the gateway owns in a request: framing and hop-by-hop fields (the forwarder writes its own), Host
    /// (`preserve_host` decides it), and the identity authentication vouches for.
    static let reservedInRequests: [String] = framingFields + ["host", "expect", "x-auth-subject", "x-auth-scopes", "x-auth-method"]
    /// Fields the gateway owns in a response: framing and hop-by-hop fields.
    static let reservedInResponses: [String] = framingFields
    private static let framingFields = [
        "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
    ]

    static func decode(_ node: ConfigNode, reserved: [String]) -> HeaderEdits? {
        node.object { o in
            var edits = HeaderEdits()
            let allowed = { (name: String, at: ConfigNode) -> Bool in
                guard isToken(name) else {
                    at.error("\"\(name)\" is not a valid header name")
                    return false
                }
                guard !reserved.contains(name.lowercased()) else {
                    at.error("\(name) is set by the gateway itself and cannot be changed here")
                    return false
                }
                return true
            }
            edits.remove = o.optional("remove") { node in
                node.array { item -> String? in
                    guard let name = item.string(), allowed(name, item) else { return nil }
                    return name.lowercased()
                }
            } ?? []
            edits.set = (o.optional("set") { node in
                node.map { name, value -> String? in
                    guard allowed(name, value) else { return nil }
                    return value.headerValue()
                }
            } ?? []).map { (name: $0.key.lowercased(), value: $0.value) }
            edits.setFrom = (o.optional("set_from") { node in
                node.map { name, value -> RequestValue? in
                    guard allowed(name, value) else { return nil }
                    if edits.set.contains(where: { $0.name == name.lowercased() }) {
                        value.error("\(name) is also in set: give it one value")
                        return nil
                    }
                    return value.oneOf(RequestValue.allCases.map(\.rawValue)).flatMap(RequestValue.init)
                }
            } ?? []).map { (name: $0.key.lowercased(), value: $0.value) }
            return edits
        }
    }
}

extension LoggingConfig {
    static func decode(_ node: ConfigNode) -> LoggingConfig? {
        node.object { o in
            var config = LoggingConfig()
            config.level = o.optional("level") { $0.oneOf(Level.allCases.map(\.rawValue)).flatMap(Level.init) } ?? .info
            config.accessLog = o.optional("access_log") { $0.bool() } ?? true
            config.accessLogHeaders =
                o.optional("access_log_headers") { node in
                    node.array { item -> String? in
                        guard let name = item.token()?.lowercased() else { return nil }
                        guard !LoggingConfig.credentialHeaders.contains(name) else {
                            item.error("\(name) carries credentials and is never logged")
                            return nil
                        }
                        return name
                    }
                } ?? []
            config.accessLogFormat =
                o.optional("access_log_format") { $0.oneOf(AccessLogFormat.allCases.map(\.rawValue)).flatMap(AccessLogFormat.init) } ?? .json
            config.file = o.optional("file") { $0.filePath() }
            config.accessLogFile = o.optional("access_log_file") { $0.filePath() }
            config.bufferBytes = o.optional("buffer_bytes") { $0.int(65_536...1 << 30) } ?? config.bufferBytes
            if let file = config.file, file == config.accessLogFile {
                o.node.context.error(o.path / "access_log_file", "is the same file as logging.file; leave it out to log everything there")
            }
            config.syslog = o.optional("syslog", SyslogConfig.decode)
            switch config.syslog?.lines {
            case .all? where config.file != nil:
                o.node.context.error(o.path / "syslog", "takes every line, and logging.file too: leave out file, or send syslog only the access lines (\"lines\": \"access\")")
            case .access? where config.accessLogFile != nil:
                o.node.context.error(o.path / "syslog" / "lines", "access lines go to logging.access_log_file already: leave out one of them")
            default: break
            }
            return config
        }
    }
}

extension DNSUpdateConfig {
    /// `{"server": "10.0.0.53:53", "zone": "example.com", "tsig_key": {"name": "acme-key", "algorithm": "hmac-sha256",
    /// "secret": "${ACME_TSIG_SECRET}"}}`, with `ttl_seconds` and `propagation_seconds`.
    static func decode(_ node: ConfigNode) -> DNSUpdateConfig? {
        node.object { o in
            let server = o.required("server") { node -> (String, Int)? in
                guard let text = node.nonEmptyString() else { return nil }
                guard let server = hostAndPort(text, defaultPort: 53) else {
                    node.error("expected the zone's primary server as HOST:PORT (an address or a name; the port defaults to 53)")
                    return nil
                }
                return server
            }
            let zone = o.required("zone") { node -> String? in
                guard let text = node.nonEmptyString() else { return nil }
                let zone = text.hasSuffix(".") ? String(text.dropLast()) : text
                guard isHostName(zone), zone.contains(".") else {
                    node.error("expected the zone's name, such as example.com")
                    return nil
                }
                return zone.lowercased()
            }
            let key = o.required("tsig_key") { node in
                node.object { k -> TSIGKey? in
                    let name = k.required("name") { node -> String? in
                        guard let text = node.nonEmptyString() else { return nil }
                        let name = text.hasSuffix(".") ? String(text.dropLast()) : text
                        guard isHostName(name) else {
                            node.error("expected the key's name as the server knows it (a DNS name, such as acme-key)")
                            return nil
                        }
                        return name
                    }
                    let algorithm = k.optional("algorithm") { $0.oneOf(TSIGKey.Algorithm.allCases.map(\.rawValue)).flatMap(TSIGKey.Algorithm.init) }
                    let secret = k.required("secret") { node -> [UInt8]? in
                        guard let text = node.nonEmptyString() else { return nil }
                        guard let bytes = Data(base64Encoded: text), bytes.count >= 16 else {
                            node.error("expected the key's base64 secret (tsig-keygen's \"secret\"), at least 16 bytes")
                            return nil
                        }
                        return Array(bytes)
                    }
                    guard let name, let secret else { return nil }
                    return TSIGKey(name: name, algorithm: algorithm ?? .hmacSHA256, secret: secret)
                }
            }
            let ttl = o.optional("ttl_seconds") { $0.int(1...86_400) }
            let propagation = o.optional("propagation_seconds") { $0.int(0...3_600) }
            guard let server, let zone, let key else { return nil }
            var config = DNSUpdateConfig(host: server.0, port: server.1, zone: zone, key: key)
            config.ttlSeconds = ttl ?? config.ttlSeconds
            config.propagationSeconds = propagation ?? config.propagationSeconds
            return config
        }
    }
}

extension SyslogConfig {
    static func decode(_ node: ConfigNode) -> SyslogConfig? {
        node.object { o in
            let address = o.required("address") { node -> Address? in
                guard let text = node.nonEmptyString() else { return nil }
                if text.hasPrefix("unix:") {
                    let path = String(text.dropFirst(5))
                    guard path.hasPrefix("/") else {
                        node.error("expected an absolute socket path after unix:, such as unix:/dev/log")
                        return nil
                    }
                    return .unix(path: path)
                }
                guard let (host, port) = hostAndPort(text, defaultPort: 514) else {
                    node.error("expected HOST:PORT (an address or a name; the port defaults to 514), or unix:/dev/log")
                    return nil
                }
                return .network(host: host, port: port)
            }
            let transport = o.optional("transport") { $0.oneOf(Transport.allCases.map(\.rawValue)).flatMap(Transport.init) }
            let format = o.optional("format") { $0.oneOf(Format.allCases.map(\.rawValue)).flatMap(Format.init) }
            let facility = o.optional("facility") { $0.oneOf(Self.facilities).flatMap(Self.facilities.firstIndex(of:)) }
            let tag = o.optional("tag") { node -> String? in
                guard let text = node.nonEmptyString() else { return nil }
                guard text.utf8.count <= 32, text.utf8.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }) else {
                    node.error("expected 1-32 letters, digits, '-', '_' or '.' (RFC 3164's TAG)")
                    return nil
                }
                return text
            }
            let lines = o.optional("lines") { $0.oneOf(Lines.allCases.map(\.rawValue)).flatMap(Lines.init) }
            guard let address else { return nil }
            var config = SyslogConfig(address: address)
            if let transport {
                if case .unix = address, transport == .tcp {
                    o.node.context.error(o.path / "transport", "a unix: address is the local daemon's datagram socket; tcp is for a host and port")
                }
                config.transport = transport
            }
            if let format { config.format = format }
            if let facility { config.facility = facility }
            if let tag { config.tag = tag }
            if let lines { config.lines = lines }
            return config
        }
    }
}

/// `host:port`, `[v6]:port`, or a host alone (`defaultPort`).
func hostAndPort(_ text: String, defaultPort: Int) -> (String, Int)? {
    var host = Substring(text)
    var portText: Substring?
    if host.hasPrefix("[") {
        guard let close = host.firstIndex(of: "]") else { return nil }
        let rest = host[host.index(after: close)...]
        host = host[host.index(after: host.startIndex)..<close]
        guard case .v6? = IPAddress(String(host)) else { return nil }
        if !rest.isEmpty {
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        }
    } else if let colon = host.firstIndex(of: ":") {
        portText = host[host.index(after: colon)...]
        host = host[..<colon]
        guard IPAddress(String(host)) != nil || isHostName(host) else { return nil }
    } else {
        guard IPAddress(String(host)) != nil || isHostName(host) else { return nil }
    }
    let port = portText.map { Int($0) } ?? defaultPort
    guard let port, (1...65535).contains(port) else { return nil }
    return (String(host), port)
}

private func isAlphanumeric(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
}

// MARK: - Value shapes shared by several keys

/// RFC 9110 token characters (header names, methods).
/// A DNS name: dot-separated labels of letters, digits, `-` (not first or last) and `_`, each 1-63 long.
func isHostName(_ name: some StringProtocol) -> Bool {
    !name.isEmpty && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
        !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
            && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }
}

func isToken(_ text: String) -> Bool {
    !text.isEmpty && text.utf8.allSatisfy { byte in
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

/// A field the gateway's own answers may take from configuration or an upstream: not framing, hop-by-hop or
/// `Content-Type`, which the gateway writes itself.
func isAnswerField(_ name: String) -> Bool {
    let lowered = name.lowercased()
    return isToken(name) && !HeaderEdits.reservedInResponses.contains(lowered) && lowered != "content-type"
}

/// Settings that `true` (the defaults) and `false` (`enabled` false: off, even where a default would turn them on) can
/// stand for.
protocol SwitchableSettings {
    init()
    var enabled: Bool { get set }
}

extension CSRFConfig: SwitchableSettings {}
extension InterceptErrorsConfig: SwitchableSettings {}
extension LocationRewriteConfig: SwitchableSettings {}
extension EarlyHintsConfig: SwitchableSettings {}

extension ConfigNode {
    /// `true`, `false`, or an object `read` fills in over the defaults.
    func switchOrObject<Settings: SwitchableSettings>(_ read: (ObjectReader, inout Settings) -> Void) -> Settings? {
        var settings = Settings()
        switch value {
        case .bool(let on):
            settings.enabled = on
            return settings
        case .object:
            return object { o in
                read(o, &settings)
                return settings
            }
        default:
            error("expected true, false or an object")
            return nil
        }
    }

    /// An RFC 3339 date (`2026-06-01`, midnight UTC) or date-time (`2026-06-01T12:00:00+02:00`), as seconds since the
    /// Unix epoch.
    func instant() -> Int? {
        guard let text = string() else { return nil }
        guard let seconds = RFC3339.seconds(text) else {
            error("expected an RFC 3339 time such as \"2027-01-31T00:00:00Z\" (or a date, \"2027-01-31\", meaning its midnight UTC)")
            return nil
        }
        return seconds
    }

    /// Statuses in `range` or classes (`"2xx"`, kept as the digit 2) of that range, as `StatusRules` reads them.
    func statusRules(_ range: ClosedRange<Int>, example: String) -> [Int]? {
        let classes = (range.lowerBound / 100)...(range.upperBound / 100)
        return array { item -> Int? in
            if case .string(let text) = item.value, text.count == 3, text.hasSuffix("xx"), let digit = Int(text.prefix(1)), classes.contains(digit) {
                return digit
            }
            if case .integer(let code) = item.value, range.contains(code) { return code }
            item.error("expected a status (\(range.lowerBound)-\(range.upperBound)) or a class (\"\(example)\")")
            return nil
        }
    }

    func token() -> String? {
        guard let text = string() else { return nil }
        guard isToken(text) else {
            error("\"\(text)\" is not a valid token (letters, digits and !#$%&'*+-.^_`|~)")
            return nil
        }
        return text
    }

    /// An object of header fields (`{"X-Tenant": "acme"}`): token names (lowercased in the result) and values
    /// without control characters. `refuse` gives the reason a name cannot be set here, or nil.
    func headerFields(refusing refuse: (String) -> String? = { _ in nil }) -> [(name: String, value: String)]? {
        map { name, value -> String? in
            guard isToken(name) else {
                value.error("\"\(name)\" is not a valid header name")
                return nil
            }
            if let reason = refuse(name) {
                value.error(reason)
                return nil
            }
            return value.headerValue()
        }.map { pairs in pairs.map { (name: $0.key.lowercased(), value: $0.value) } }
    }

    /// A consumer id or scope: non-empty, and fit to go upstream in an `X-Auth-*` field as it is.
    /// Claim conditions (`auth.claims`, rate-limit overrides): claim name -> an accepted value or a list of them.
    func claimConditions() -> [(name: String, values: [String])]? {
        map { _, value -> [String]? in
            if case .string = value.value { return value.nonEmptyString().map { [$0] } }
            let values = value.array { $0.nonEmptyString() }
            if values?.isEmpty == true { value.error("list at least one accepted value") }
            return values
        }.map { pairs in pairs.map { (name: $0.key, values: $0.value) } }
    }

    func consumerText() -> String? {
        guard let text = nonEmptyString() else { return nil }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            error("cannot contain control characters or line breaks (it goes upstream in an X-Auth-* header)")
            return nil
        }
        return text
    }

    /// A `match.headers` condition: a string (the exact value), or an object with one of `prefix`, `suffix`,
    /// `contains` (strings) and `present` (a boolean).
    func headerRule() -> HeaderRule? {
        if case .string = value { return headerValue().map(HeaderRule.equals) }
        return object { o -> HeaderRule? in
            let prefix = o.optional("prefix") { $0.headerValue() }
            let suffix = o.optional("suffix") { $0.headerValue() }
            let contains = o.optional("contains") { $0.headerValue() }
            let present = o.optional("present") { $0.bool() }
            let given = [prefix.map(HeaderRule.prefix), suffix.map(HeaderRule.suffix), contains.map(HeaderRule.contains), present.map(HeaderRule.present)]
                .compactMap { $0 }
            guard given.count == 1 else {
                if given.count > 1 || (!o.has("prefix") && !o.has("suffix") && !o.has("contains") && !o.has("present")) {
                    o.node.context.error(o.path, "give one of prefix, suffix, contains or present (or a string for the exact value)")
                }
                return nil
            }
            return given[0]
        }
    }

    /// A header value: no control characters, so nothing can split a response.
    func headerValue() -> String? {
        guard let text = string() else { return nil }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }) else {
            error("header values may not contain control characters or line breaks")
            return nil
        }
        return text
    }

    /// A list of ranges from a file (`deny_ips_file`, `allow_ips_file`), relative to the config's folder.
    func addressListFile() -> [CIDR]? {
        guard let written = nonEmptyString() else { return nil }
        return context.addressList(written, at: path)
    }

    /// An array of IP addresses and CIDR ranges (`"10.0.0.0/8"`, `"127.0.0.1"`, `"fd00::/8"`).
    func addressRanges(allowingUnix: Bool = false) -> [CIDR]? {
        array { item -> CIDR? in
            guard let text = item.string() else { return nil }
            if allowingUnix && text == "unix:" { return nil }  // read by the caller
            guard let range = CIDR(text) else {
                item.error("\"\(text)\" is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")")
                return nil
            }
            return range
        }
    }

    /// Whether the value is this exact string (before substitution), without reporting anything if not.
    func isString(_ text: String) -> Bool {
        if case .string(let value) = value { return value == text }
        return false
    }

    func method() -> String? {
        guard let text = string() else { return nil }
        guard isToken(text) else {
            error("\"\(text)\" is not a valid HTTP method")
            return nil
        }
        guard text == text.uppercased() else {
            error("methods are case-sensitive (did you mean \"\(text.uppercased())\"?)")
            return nil
        }
        return text
    }

    /// An `http://` or `https://` URL.
    func httpURL() -> String? {
        guard let url = nonEmptyString() else { return nil }
        guard url.hasPrefix("https://") || url.hasPrefix("http://"), !url.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
            error("expected an http:// or https:// URL")
            return nil
        }
        return url
    }

    /// `forward_claims`: claim name -> header name (lowercased), for names the gateway does not own.
    func forwardedClaims() -> [(claim: String, header: String)]? {
        map { name, value -> String? in
            guard let header = value.token() else { return nil }
            let lowered = header.lowercased()
            let reserved = ["host", "authorization", "cookie", "content-length", "transfer-encoding", "connection"]
            if lowered.hasPrefix("x-auth-") || reserved.contains(lowered) {
                value.error("\"\(header)\" is reserved; choose another header name")
                return nil
            }
            return lowered
        }?.map { (claim: $0.key, header: $0.value) }
    }

    func absolutePath() -> String? {
        guard let text = string() else { return nil }
        guard text.hasPrefix("/"), !text.contains("?"), !text.contains("#"),
            !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F })
        else {
            error("\"\(text)\" must be a path starting with \"/\" (no query, fragment or spaces)")
            return nil
        }
        return text
    }

    /// A `RequestKey`: `ip`, `consumer` (where allowed), `header:NAME` or `cookie:NAME`.
    func requestKey(allowingConsumer: Bool) -> RequestKey? {
        guard let text = string() else { return nil }
        if text == "ip" { return .ip }
        if text == "consumer" && allowingConsumer { return .consumer }
        if text.hasPrefix("header:"), isToken(String(text.dropFirst(7))) { return .header(String(text.dropFirst(7)).lowercased()) }
        if text.hasPrefix("cookie:"), isToken(String(text.dropFirst(7))) { return .cookie(String(text.dropFirst(7))) }
        error("expected \"ip\", " + (allowingConsumer ? "\"consumer\", " : "") + "\"header:NAME\" or \"cookie:NAME\"")
        return nil
    }

    /// `api.example.com` or `*.example.com`; returned lowercase.
    /// `host` or `host:port` for a Host field the gateway sends: a host name (no wildcard), an IPv4 address or a
    /// bracketed IPv6 one, and a port 1-65535.
    func authority() -> String? {
        guard let text = string() else { return nil }
        var host = Substring(text)
        if let colon = text.lastIndex(of: ":"), !text.hasSuffix("]"), text.hasPrefix("[") || text.firstIndex(of: ":") == colon {
            guard let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
                error("\"\(text)\" has no valid port after its colon")
                return nil
            }
            host = text[..<colon]
        }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? host.dropFirst().dropLast() : host
        let isName = isHostName(bare)
        let isAddress = IPAddress(String(bare)) != nil && (bare.contains(":") == host.hasPrefix("["))
        guard isName || isAddress else {
            error("\"\(text)\" is not host or host:port (\"api.internal\", \"10.0.0.5:8080\", \"[fd00::5]:8080\")")
            return nil
        }
        return text.lowercased()
    }

    func hostPattern() -> String? {
        guard let text = string() else { return nil }
        let lowered = text.lowercased()
        let name = lowered.hasPrefix("*.") ? String(lowered.dropFirst(2)) : lowered
        guard isHostName(name) || IPAddress(name) != nil else {
            error("\"\(text)\" is not a host name (use \"api.example.com\" or \"*.example.com\", without port)")
            return nil
        }
        return lowered
    }

    /// An IP literal to bind to (or "localhost").
    func bindAddress() -> String? {
        guard let text = string() else { return nil }
        if text == "localhost" { return "127.0.0.1" }
        guard IPAddress(text) != nil else {
            error("\"\(text)\" is not an IP address to listen on (e.g. \"0.0.0.0\", \"127.0.0.1\", \"::\")")
            return nil
        }
        return text
    }
}
