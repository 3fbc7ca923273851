import GatewayPolicy
import NIOHTTP1

/// Header rewriting at the proxy boundary, as pure functions on header lists.
public enum HeaderRules {
    /// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies must not forward.
    /// Lowercase; compared case-insensitively.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization",
    ]

    /// Response headers that only advertise the upstream's software.
    static let upstreamIdentity: [String] = ["server", "x-powered-by"]

    /// Removes hop-by-hop headers, including every header the Connection header names.
    /// Cheap when there is nothing to remove, which is the common case.
    public static func removeHopByHop(_ headers: inout HTTPHeaders, alsoRemoving extra: [String] = []) {
        var toRemove: [String] = []
        for (name, value) in headers {
            if name.equalsASCIICaseInsensitive("connection") {
                for token in value.split(separator: ",") {
                    let trimmed = token.trimmingASCIISpaces()
                    if !trimmed.isEmpty { toRemove.append(trimmed.lowercased()) }
                }
                toRemove.append("connection")
            } else if hopByHop.contains(where: name.equalsASCIICaseInsensitive)
                || extra.contains(where: name.equalsASCIICaseInsensitive)
            {
                toRemove.append(name)
            }
        }
        for name in toRemove { headers.remove(name: name) }
    }

    /// Sets X-Forwarded-For/-Proto/-Host for the upstream. A trusted proxy's values are kept (and XFF
    /// extended with the proxy's own address); anyone else's are replaced, so clients cannot forge them.
    public static func setForwarded(
        _ headers: inout HTTPHeaders, peer: String, peerIsTrusted: Bool, proto: String, host: String?
    ) {
        if peerIsTrusted, headers.contains(name: "x-forwarded-for") {
            let chain = headers["x-forwarded-for"].joined(separator: ", ")
            headers.replaceOrAdd(name: "x-forwarded-for", value: chain + ", " + peer)
        } else {
            headers.replaceOrAdd(name: "x-forwarded-for", value: peer)
        }
        if !(peerIsTrusted && headers.contains(name: "x-forwarded-proto")) {
            headers.replaceOrAdd(name: "x-forwarded-proto", value: proto)
        }
        if !(peerIsTrusted && headers.contains(name: "x-forwarded-host")) {
            if let host {
                headers.replaceOrAdd(name: "x-forwarded-host", value: host)
            } else {
                headers.remove(name: "x-forwarded-host")
            }
        }
    }

    /// The client address as trusted proxies report it: walking X-Forwarded-For from the right, the
    /// first address that is not itself a trusted proxy. Without a trusted peer, the peer is the client.
    public static func clientAddress(peer: IPAddress?, forwardedFor: [String], trusted: AddressSet) -> String {
        guard let peer else { return "unix" }
        guard trusted.contains(peer), !forwardedFor.isEmpty else { return peer.description }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingASCIISpaces() }
        var leftmost: IPAddress?
        for hop in hops.reversed() {
            guard let address = IPAddress(hop) else { break }  // garbage ends the trustworthy part
            leftmost = address
            if !trusted.contains(address) { return address.description }
        }
        return (leftmost ?? peer).description
    }

    /// Splits an absolute-form request target (`http://host:8080/p?q`) into its authority and origin form
    /// (`/p?q`, or `/` when the path is empty). nil for the usual origin form.
    public static func splitAbsoluteForm(_ uri: String) -> (authority: String, originForm: String)? {
        guard uri.utf8.first != UInt8(ascii: "/") else { return nil }
        let schemeLength: Int
        if uri.utf8.prefix(7).elementsEqual("http://".utf8, by: { ($0 | 0x20) == $1 }) {
            schemeLength = 7
        } else if uri.utf8.prefix(8).elementsEqual("https://".utf8, by: { ($0 | 0x20) == $1 }) {
            schemeLength = 8
        } else {
            return nil
        }
        let rest = uri.utf8.dropFirst(schemeLength)
        let end = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        let authority = String(Substring(rest[..<end]))
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        let tail = String(Substring(rest[end...]))
        return (authority, tail.hasPrefix("/") ? tail : "/" + tail)
    }

    /// The Host header's name part, lowercased, without port ("Api.Example.com:8080" -> "api.example.com").
    public static func hostName(_ host: String) -> Substring {
        var text = Substring(host)
        if text.hasPrefix("[") {  // IPv6 literal
            if let close = text.firstIndex(of: "]") { text = text[...close] }
        } else if let colon = text.lastIndex(of: ":") {
            text = text[..<colon]
        }
        if text.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) {
            return Substring(text.lowercased())
        }
        return text
    }
}

extension StringProtocol {
    /// ASCII case-insensitive equality against a lowercase literal, without allocating.
    @inlinable
    public func equalsASCIICaseInsensitive(_ lowercase: String) -> Bool {
        guard self.utf8.count == lowercase.utf8.count else { return false }
        for (a, b) in zip(self.utf8, lowercase.utf8) {
            let folded = (a >= UInt8(ascii: "A") && a <= UInt8(ascii: "Z")) ? a | 0x20 : a
            if folded != b { return false }
        }
        return true
    }

    public func trimmingASCIISpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
