import GatewayConfig
import GatewayHTTP
import GatewayPolicy
import NIOConcurrencyHelpers

/// `early_hints` (RFC 8297): `103 Early Hints` responses tell a browser what to preload (`Link: </app.css>;
/// rel=preload`) while the upstream is still working on the page. The gateway passes an upstream's 103s on and can
/// send one of its own, with the route's `links` and (`learn`) the preloads the upstream's last answer for the same page
/// named, the moment the request goes upstream. Decided when routes compile.
public struct EarlyHints: Sendable {
    /// Whether the upstream's 103s are passed on.
    public let relay: Bool
    /// The route's own `links`, and the fields of a 103 with them (made once; nil when there are none).
    private let links: [String]
    private let ownFields: HeaderList?
    /// What the route learned per page (`learn`), nil when it does not learn.
    public let learned: LearnedHints?
    /// Whether HTTP/1.1 clients get them too: HTTP/2 clients must take interim responses, while some HTTP/1.1 clients
    /// take the first status line they read for the answer.
    private let http1: Bool
    /// At most this many of an upstream's 103s go to one client: a hint is worth one or two, not a stream.
    public static let maxRelayed = 4

    public init?(_ config: EarlyHintsConfig) {
        guard config.enabled, config.relay || !config.links.isEmpty || config.learn else { return nil }
        relay = config.relay
        links = config.links
        ownFields = links.isEmpty ? nil : HeaderList(links.map { ("link", $0) })
        learned = config.learn ? LearnedHints() : nil
        http1 = config.http1
    }

    /// Whether a client that asked with `version` may get 103s: HTTP/2 always, HTTP/1.1 if asked, HTTP/1.0 never (RFC
    /// 9110 §15.2: a server must not send it a 1xx).
    public func reaches(_ version: HTTPVersion) -> Bool {
        if version.major >= 2 { return true }
        return http1 && version.major == 1 && version.minor >= 1
    }

    /// The gateway's own 103 for a client that asked with `version`: the route's links, then those learned for `page`
    /// (host and path); nil when there are none.
    public func ownHint(version: HTTPVersion, page: String? = nil) -> ResponseHead? {
        var fields = ownFields
        if let learned, let page {
            for link in learned.links(for: page) where !links.contains(link) {
                if fields == nil { fields = HeaderList() }
                fields!.add(name: "link", value: link)
            }
        }
        guard let fields else { return nil }
        return ResponseHead(status: 103, version: version, headers: fields)
    }

    /// An upstream's 103 as the client gets it (hop-by-hop fields and the upstream's software removed, the standard
    /// reason phrase), or nil when it hints nothing (no `Link`).
    public static func relayed(_ upstream: ResponseHead, version: HTTPVersion) -> ResponseHead? {
        guard upstream.status == 103, upstream.headers.first(name: "link") != nil else { return nil }
        var head = ResponseHead(status: 103, version: version, headers: upstream.headers)
        HeaderRules.prepareDownstreamResponse(&head.headers)
        head.headers.remove(name: "set-cookie")  // a cookie belongs on the final answer, which may never say so
        return head
    }
}

/// `early_hints.learn`: the preloads each page's last answer named in its `Link` fields (what Cloudflare's Early Hints
/// does), sent in a 103 the next time the page is asked for, while the upstream is still working on it. Learned only
/// from answers every client may see: a `200` HTML page without `Set-Cookie`, `private` or `no-store`, to a request
/// without `Authorization`; an HTML answer naming no preload forgets the page. Bounded: at most `maxPages` pages,
/// `maxLinks` links each.
public final class LearnedHints: Sendable {
    public static let maxPages = 1_024
    public static let maxLinks = 16
    /// Longer link values are not kept (a preload is a path and a few parameters).
    public static let maxLinkBytes = 1_024
    /// The `rel` types worth a hint: fetch this early, or open a connection to its origin early.
    static let hintedRelations: Set<String> = ["preload", "preconnect", "modulepreload"]

    private let pages = NIOLockedValueBox<[String: [String]]>([:])

    public init() {}

    /// The links learned for `page` (host and path), none if nothing was.
    public func links(for page: String) -> [String] {
        pages.withLockedValue { $0[page] } ?? []
    }

    /// Learns from the upstream's final answer to a GET of `page` without `Authorization`.
    public func observe(_ response: ResponseHead, page: String) {
        guard response.status == 200, Self.isSharedHTML(response.headers) else { return }
        let links = Self.hintedLinks(response.headers.values(name: "link"))
        pages.withLockedValue { pages in
            guard !links.isEmpty else {
                pages[page] = nil
                return
            }
            // Full: an arbitrary page makes room (no order kept: this is a hint, not a cache).
            if pages[page] == nil, pages.count >= Self.maxPages, let any = pages.keys.first { pages[any] = nil }
            pages[page] = links
        }
    }

    /// An HTML page any client could have got: no cookie set, nothing marking it personal.
    static func isSharedHTML(_ headers: HeaderList) -> Bool {
        guard let type = headers.first(name: "content-type"), MediaType.matches(type, ["text/html"]) else { return false }
        if headers.contains(name: "set-cookie") { return false }
        let directives = CacheControl(headers.values(name: "cache-control"))
        return !directives.isPrivate && !directives.noStore
    }

    /// The link-values of `Link` fields whose `rel` names a hinted relation, at most `maxLinks`.
    static func hintedLinks(_ fields: [String]) -> [String] {
        var links: [String] = []
        for field in fields {
            for value in splitLinkValues(field) where links.count < maxLinks && value.utf8.count <= maxLinkBytes {
                if relations(of: value).contains(where: hintedRelations.contains), !links.contains(value) { links.append(value) }
            }
        }
        return links
    }

    /// A `Link` field's link-values (RFC 8288 §3): split at commas outside `<...>` and quoted strings, trimmed.
    static func splitLinkValues(_ field: String) -> [String] {
        var values: [String] = []
        var current = Substring.UnicodeScalarView()
        var inTarget = false
        var inQuotes = false
        var escaped = false
        for scalar in field.unicodeScalars {
            if escaped {
                escaped = false
            } else if inQuotes {
                if scalar == "\\" { escaped = true } else if scalar == "\"" { inQuotes = false }
            } else if inTarget {
                if scalar == ">" { inTarget = false }
            } else if scalar == "<" {
                inTarget = true
            } else if scalar == "\"" {
                inQuotes = true
            } else if scalar == "," {
                values.append(String(current).trimmingASCIISpaces())
                current = Substring.UnicodeScalarView()
                continue
            }
            current.append(scalar)
        }
        values.append(String(current).trimmingASCIISpaces())
        return values.filter { $0.hasPrefix("<") && $0.contains(">") }
    }

    /// The relation types of a link-value's `rel` parameter, lowercased (`rel="preload stylesheet"` names two).
    static func relations(of value: String) -> [String] {
        guard let close = value.firstIndex(of: ">") else { return [] }
        for parameter in value[value.index(after: close)...].split(separator: ";") {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingASCIISpaces().lowercased() == "rel" else { continue }
            var rel = pair[1].trimmingASCIISpaces()
            if rel.hasPrefix("\""), rel.hasSuffix("\""), rel.count >= 2 { rel = String(rel.dropFirst().dropLast()) }
            return rel.lowercased().split(separator: " ").map(String.init)
        }
        return []
    }
}
