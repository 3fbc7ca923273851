import GatewayConfig
import GatewayHTTP

/// `early_hints` (RFC 8297): `103 Early Hints` responses tell a browser what to preload (`Link: </app.css>;
/// rel=preload`) while the upstream is still working on the page. The gateway passes an upstream's 103s on and can
/// send one of its own, with the route's `links`, the moment the request goes upstream. Decided when routes compile.
public struct EarlyHints: Sendable {
    /// Whether the upstream's 103s are passed on.
    public let relay: Bool
    /// The fields of the gateway's own 103 (`Link` values), nil when the route configures none.
    private let ownFields: HeaderList?
    /// Whether HTTP/1.1 clients get them too: HTTP/2 clients must take interim responses, while some HTTP/1.1 clients
    /// take the first status line they read for the answer.
    private let http1: Bool
    /// At most this many of an upstream's 103s go to one client: a hint is worth one or two, not a stream.
    public static let maxRelayed = 4

    public init?(_ config: EarlyHintsConfig) {
        guard config.enabled, config.relay || !config.links.isEmpty else { return nil }
        relay = config.relay
        if config.links.isEmpty {
            ownFields = nil
        } else {
            var fields = HeaderList()
            for link in config.links { fields.add(name: "link", value: link) }
            ownFields = fields
        }
        http1 = config.http1
    }

    /// Whether a client that asked with `version` may get 103s: HTTP/2 always, HTTP/1.1 if asked, HTTP/1.0 never (RFC
    /// 9110 §15.2: a server must not send it a 1xx).
    public func reaches(_ version: HTTPVersion) -> Bool {
        if version.major >= 2 { return true }
        return http1 && version.major == 1 && version.minor >= 1
    }

    /// The gateway's own 103 for a client that asked with `version`, nil when the route lists no links.
    public func ownHint(version: HTTPVersion) -> ResponseHead? {
        guard let ownFields else { return nil }
        return ResponseHead(status: 103, version: version, headers: ownFields)
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
