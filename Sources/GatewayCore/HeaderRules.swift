import GatewayHTTP
import GatewayPolicy

/// Header rewriting at the proxy boundary, as pure functions on header lists.
public enum HeaderRules {
    /// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies must not forward. Lowercase.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization",
    ]

    /// Response headers that only advertise the upstream's software.
    public static let upstreamIdentity: [String] = ["server", "x-powered-by"]

    /// Removes hop-by-hop headers, including every header the Connection header names, plus `extra`.
    /// One pass over the received fields; nothing is allocated unless Connection names other headers.
    public static func removeHopByHop(_ headers: inout HeaderList, alsoRemoving extra: [String] = []) {
        // Headers the Connection header names are hop-by-hop too ("close" and "keep-alive" are options).
        var named: [String] = []
        if headers.contains(name: "connection") {
            for value in headers["connection"] {
                for token in value.split(separator: ",") {
                    let name = token.trimmingASCIISpaces().lowercased()
                    if !name.isEmpty && name != "close" && name != "keep-alive" { named.append(name) }
                }
            }
        }
        headers.removeReceived { name in
            isHopByHop(name) || extra.contains { name.equalsCaseInsensitively($0.utf8) }
                || (!named.isEmpty && named.contains { name.equalsCaseInsensitively($0.utf8) })
        }
        headers.removeAdded { name in
            hopByHop.contains { name.equalsCaseInsensitively($0) } || extra.contains { name.equalsCaseInsensitively($0) }
                || named.contains { name.equalsCaseInsensitively($0) }
        }
    }

    /// Dispatches on length and first letter, so most names are ruled out with two comparisons.
    @inline(__always)
    static func isHopByHop(_ name: UnsafeRawBufferPointer) -> Bool {
        switch (name.count, name.first.map(ASCII.lower)) {
        case (2, UInt8(ascii: "t")): return name.equalsCaseInsensitively("te".utf8)
        case (7, UInt8(ascii: "t")): return name.equalsCaseInsensitively("trailer".utf8)
        case (7, UInt8(ascii: "u")): return name.equalsCaseInsensitively("upgrade".utf8)
        case (10, UInt8(ascii: "c")): return name.equalsCaseInsensitively("connection".utf8)
        case (10, UInt8(ascii: "k")): return name.equalsCaseInsensitively("keep-alive".utf8)
        case (16, UInt8(ascii: "p")): return name.equalsCaseInsensitively("proxy-connection".utf8)
        case (17, UInt8(ascii: "t")): return name.equalsCaseInsensitively("transfer-encoding".utf8)
        case (19, UInt8(ascii: "p")): return name.equalsCaseInsensitively("proxy-authorization".utf8)
        default: return false
        }
    }

    /// Sets X-Forwarded-For/-Proto/-Host for the upstream. A trusted proxy's values are kept (and XFF
    /// extended with the proxy's own address); anyone else's are replaced, so clients cannot forge them.
    public static func setForwarded(
        _ headers: inout HeaderList, peer: String, peerIsTrusted: Bool, proto: String, host: String?
    ) {
        guard peerIsTrusted else {
            headers.remove(name: "x-forwarded-for")
            headers.remove(name: "x-forwarded-proto")
            headers.remove(name: "x-forwarded-host")
            headers.add(name: "x-forwarded-for", value: peer)
            headers.add(name: "x-forwarded-proto", value: proto)
            if let host { headers.add(name: "x-forwarded-host", value: host) }
            return
        }
        let chain = headers["x-forwarded-for"]
        headers.replaceOrAdd(name: "x-forwarded-for", value: chain.isEmpty ? peer : chain.joined(separator: ", ") + ", " + peer)
        if !headers.contains(name: "x-forwarded-proto") { headers.add(name: "x-forwarded-proto", value: proto) }
        if !headers.contains(name: "x-forwarded-host"), let host { headers.add(name: "x-forwarded-host", value: host) }
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
        if uri.utf8.prefix(7).elementsEqual("http://".utf8, by: { ASCII.lower($0) == $1 }) {
            schemeLength = 7
        } else if uri.utf8.prefix(8).elementsEqual("https://".utf8, by: { ASCII.lower($0) == $1 }) {
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
    public func trimmingASCIISpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
