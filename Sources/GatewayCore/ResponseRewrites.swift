import GatewayConfig
import GatewayHTTP

/// `location_rewrite` (NGINX's `proxy_redirect`): the `Location` of an upstream's redirect (or of a 201) as the client
/// must read it. An upstream names itself as it knows itself: `http://10.0.0.7:8080/login` is an address clients
/// cannot reach, and `/login` lacks the `strip_prefix` the client's path had. Decided when routes compile, so a
/// response pays only for a status comparison unless it carries a `Location`.
public struct LocationRewrite: Sendable {
    private let rules: [RewriteRule]
    /// `host:port` (lowercase, IPv6 in brackets, port always written) of every target the route forwards to, and of
    /// its `host_rewrite`: absolute locations there become paths on the gateway.
    private let upstreamAuthorities: Set<String>
    private let prefixes: PrefixMapping
    private let relativePaths: Bool

    init?(_ config: LocationRewriteConfig, prefixes: PrefixMapping, hostRewrite: String?, upstreams: [UpstreamConfig]) {
        guard config.enabled else { return nil }
        rules = config.rules
        var authorities = Set(upstreams.flatMap(\.targets).map { $0.authority.lowercased() })
        if let rewrite = hostRewrite?.lowercased() {
            if Self.split(authority: Substring(rewrite)).port != nil {
                authorities.insert(rewrite)
            } else {
                authorities.formUnion([rewrite + ":80", rewrite + ":443"])
            }
        }
        upstreamAuthorities = authorities
        self.prefixes = prefixes
        relativePaths = config.relativePaths && prefixes.stripPrefix != nil
    }

    /// Whether a response with `status` can carry a `Location` worth rewriting (redirects and 201 Created).
    @inline(__always)
    public static func applies(to status: Int) -> Bool { (300..<400).contains(status) || status == 201 }

    /// Rewrites the response's `Location` in place, if it has one that needs it.
    public func apply(to headers: inout HeaderList) {
        guard let location = headers.first(name: "location"), let rewritten = rewrite(location) else { return }
        headers.replaceOrAdd(name: "location", value: rewritten)
    }

    /// The location the client gets, or nil to leave it as the upstream wrote it.
    public func rewrite(_ location: String) -> String? {
        if let rule = rules.first(where: { location.hasPrefix($0.from) }) {
            return rule.to + location.dropFirst(rule.from.count)
        }
        if let (authority, reference) = Self.absolute(location) {
            guard upstreamAuthorities.contains(authority) else { return nil }
            return prefixes.clientReference(reference.isEmpty || reference.first != "/" ? "/" + reference : String(reference))
        }
        // A path, not a network-path reference (`//host/...`), outside the prefix the client's path had.
        guard relativePaths, let stripPrefix = prefixes.stripPrefix, location.hasPrefix("/"), !location.hasPrefix("//"),
            !PathRules.hasNormalisedSegmentPrefix(PrefixMapping.path(of: location), stripPrefix)
        else { return nil }
        return prefixes.clientReference(location)
    }

    /// An `http`/`https` URL's authority, normalised as `upstreamAuthorities` are, and what follows it; nil for
    /// anything else (a path, another scheme).
    static func absolute(_ location: String) -> (authority: String, rest: Substring)? {
        let lowered = location.prefix(8).lowercased()
        let scheme: (length: Int, port: Int)
        if lowered.hasPrefix("http://") {
            scheme = (7, 80)
        } else if lowered.hasPrefix("https://") {
            scheme = (8, 443)
        } else {
            return nil
        }
        let afterScheme = location.dropFirst(scheme.length)
        let end = afterScheme.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? afterScheme.endIndex
        var authority = afterScheme[..<end]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }  // userinfo
        let (host, port) = split(authority: authority)
        guard !host.isEmpty else { return nil }
        let hostText = host.lowercased()
        let written = hostText.contains(":") ? "[\(hostText)]" : hostText
        return ("\(written):\(port ?? scheme.port)", afterScheme[end...])
    }

    /// `host[:port]` or `[v6][:port]`: the host (without brackets) and the port if one is written.
    private static func split(authority: Substring) -> (host: Substring, port: Int?) {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            let host = authority[authority.index(after: authority.startIndex)..<close]
            let rest = authority[authority.index(after: close)...]
            return (host, rest.hasPrefix(":") ? Int(rest.dropFirst()) : nil)
        }
        guard let colon = authority.lastIndex(of: ":") else { return (authority, nil) }
        return (authority[..<colon], Int(authority[authority.index(after: colon)...]))
    }
}

/// A route's `strip_prefix` and `add_prefix` run backwards: an upstream path as the client's.
struct PrefixMapping: Sendable {
    /// Without a trailing slash; nil for none and for "/" (nothing to map back).
    let stripPrefix: String?
    let addPrefix: String?

    /// The route's prefixes as `CompiledRoute` holds them (trailing slashes already removed).
    init(strip: String?, add: String?) {
        stripPrefix = strip == "/" ? nil : strip
        addPrefix = add == "/" ? nil : add
    }

    /// An upstream path (with its query and fragment): `add_prefix` taken off, `strip_prefix` put back. A path
    /// outside `add_prefix` is returned as it is.
    func clientReference(_ reference: String) -> String {
        var rest = Substring(reference)
        if let addPrefix {
            guard PathRules.hasNormalisedSegmentPrefix(Self.path(of: reference), addPrefix) else { return reference }
            rest = rest.dropFirst(addPrefix.count)
            if rest.first != "/" { rest = "/" + rest }
        }
        guard let stripPrefix else { return String(rest) }
        return stripPrefix + rest
    }

    /// The path part of a reference (before `?` or `#`).
    static func path(of reference: String) -> Substring {
        reference[..<(reference.firstIndex { $0 == "?" || $0 == "#" } ?? reference.endIndex)]
    }
}

/// `cookie_rewrite` (NGINX's `proxy_cookie_path` and `proxy_cookie_domain`): the `Path` and `Domain` of the upstream's
/// `Set-Cookie` fields as the browser must see them, or it would not send the cookies back.
public struct CookieRewrite: Sendable {
    private let prefixes: PrefixMapping?
    private let domains: [RewriteRule]
    private let secure: Bool
    private let httpOnly: Bool
    private let sameSite: String?

    init?(_ config: CookieRewriteConfig?, prefixes: PrefixMapping) {
        guard let config, config.path || !config.domains.isEmpty || config.secure || config.httpOnly || config.sameSite != nil else { return nil }
        self.prefixes = config.path ? prefixes : nil
        domains = config.domains
        (secure, httpOnly, sameSite) = (config.secure, config.httpOnly, config.sameSite)
    }

    /// Rewrites every `Set-Cookie` of a response in place (they keep their order, after the other fields).
    public func apply(to headers: inout HeaderList) {
        let cookies = headers.values(name: "set-cookie")
        guard !cookies.isEmpty else { return }
        let rewritten = cookies.map(rewrite)
        guard rewritten != cookies else { return }
        headers.remove(name: "set-cookie")
        for cookie in rewritten { headers.add(name: "set-cookie", value: cookie) }
    }

    /// One `Set-Cookie` value: `name=value` and its attributes, `Path` and `Domain` rewritten, `flags` added (a
    /// `SameSite` replaced), the others as written.
    public func rewrite(_ cookie: String) -> String {
        var parts = cookie.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        var changed = false
        var (hasSecure, hasHttpOnly, hasSameSite) = (false, false, false)
        for index in parts.indices.dropFirst() {
            let attribute = parts[index].trimmingCharacters(in: .whitespaces)
            guard let equals = attribute.firstIndex(of: "=") else {
                switch attribute.lowercased() {
                case "secure": hasSecure = true
                case "httponly": hasHttpOnly = true
                default: break
                }
                continue
            }
            let name = attribute[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = attribute[attribute.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if name == "samesite", let sameSite {
                if value.lowercased() == sameSite.lowercased() && !hasSameSite {
                    hasSameSite = true
                } else {
                    parts[index] = ""
                    changed = true
                }
            } else if name == "path", let prefixes, value.hasPrefix("/") {
                // The upstream's root becomes the prefix itself ("/api", not "/api/"), which covers "/api" and all below.
                var mapped = prefixes.clientReference(value)
                if let strip = prefixes.stripPrefix, mapped == strip + "/" { mapped = strip }
                parts[index] = " Path=" + mapped
                changed = true
            } else if name == "domain" {
                let domain = (value.hasPrefix(".") ? String(value.dropFirst()) : value).lowercased()
                guard let rule = domains.first(where: { $0.from == domain }) else { continue }
                parts[index] = rule.to.isEmpty ? "" : " Domain=" + rule.to
                changed = true
            }
        }
        if let sameSite, !hasSameSite {
            parts.append(" SameSite=" + sameSite)
            changed = true
        }
        if secure && !hasSecure {
            parts.append(" Secure")
            changed = true
        }
        if httpOnly && !hasHttpOnly {
            parts.append(" HttpOnly")
            changed = true
        }
        guard changed else { return cookie }
        return parts.filter { !$0.isEmpty }.joined(separator: ";")
    }
}
