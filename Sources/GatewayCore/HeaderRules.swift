import GatewayConfig
import GatewayHTTP
import GatewayPolicy

/// Header rewriting at the proxy boundary, as pure functions on header lists.
public enum HeaderRules {
    /// What goes upstream: no hop-by-hop headers; no `Expect` (the gateway answers it, sending 100 Continue
    /// once the upstream is connected); no `Content-Length` (the forwarder re-frames the body); and
    /// X-Forwarded-* and `Forwarded` per `setForwarded` (an untrusted client's `X-Forwarded-Prefix` and `Forwarded`
    /// dropped too, whether or not the gateway sends its own). One pass over the received fields, one over the added
    /// ones (all of an HTTP/2 request's fields); the fields the received Connection names go only from the received.
    public static func prepareUpstreamRequest(
        _ headers: inout HeaderList, peer: String, peerIsTrusted: Bool, proto: String, host: String?,
        forwardedHeader: Bool = false
    ) {
        let named = connectionNamedHeaders(headers)
        headers.removeReceived { isWithheldFromUpstream($0, peerIsTrusted: peerIsTrusted) || isNamed($0, in: named) }
        if headers.hasAddedFields { headers.removeAdded { isWithheldFromUpstream($0, peerIsTrusted: peerIsTrusted) } }
        setForwarded(&headers, peer: peer, peerIsTrusted: peerIsTrusted, proto: proto, host: host, forwardedHeader: forwardedHeader)
    }

    /// A request field `prepareUpstreamRequest` does not pass on: hop-by-hop, `Expect`, `Content-Length`, and from
    /// anyone but a trusted proxy the forwarding fields.
    @inline(__always)
    private static func isWithheldFromUpstream(_ name: UnsafeRawBufferPointer, peerIsTrusted: Bool) -> Bool {
        if isHopByHop(name) { return true }
        switch name.count {
        case 6: return ASCII.equalsCaseInsensitively(name, "expect")
        case 9 where !peerIsTrusted: return ASCII.equalsCaseInsensitively(name, "forwarded")
        case 14: return ASCII.equalsCaseInsensitively(name, "content-length")
        case 15 where !peerIsTrusted: return ASCII.equalsCaseInsensitively(name, "x-forwarded-for")
        case 16 where !peerIsTrusted:
            return ASCII.equalsCaseInsensitively(name, "x-forwarded-host") || ASCII.equalsCaseInsensitively(name, "x-forwarded-port")
        case 17 where !peerIsTrusted: return ASCII.equalsCaseInsensitively(name, "x-forwarded-proto")
        case 18 where !peerIsTrusted: return ASCII.equalsCaseInsensitively(name, "x-forwarded-prefix")
        default: return false
        }
    }

    /// The protocol named by `Upgrade` when `Connection` lists `upgrade` (RFC 9110 §7.8), for a request asking
    /// to switch or a 101 answer. `h2c` does not count: HTTP/2 has its own way in (RFC 9113 §3.1).
    public static func requestedUpgrade(_ headers: HeaderList) -> String? {
        guard headers.containsToken("upgrade", inField: "connection"), let value = headers.first(name: "upgrade") else { return nil }
        let trimmed = value.trimmingASCIISpaces()
        guard !trimmed.isEmpty, !trimmed.lowercased().hasPrefix("h2c") else { return nil }
        return trimmed
    }

    /// Removes client-sent `X-Auth-*` headers (any case): only the gateway's authentication sets them, so an
    /// upstream can trust them. Runs when a request arrives, before any filter.
    ///
    /// `dropUnderscores` (`limits.underscores_in_headers: "drop"`, NGINX's default): fields whose names have an
    /// underscore go too. Upstreams that read fields as CGI does (PHP, Python WSGI, Ruby Rack) see `X_User_Email` and
    /// `X-User-Email` as one `HTTP_X_USER_EMAIL`, so a client could otherwise forge any field the gateway sets. The
    /// `x_auth_` spellings of the identity prefix go whatever the setting.
    ///
    /// `dropOverrides` (`limits.override_headers: "drop"`): the fields with which frameworks let a request stand for
    /// another (`overrideFields`) go too: the gateway routes, authorizes and caches the request it sees.
    public static func removeClientIdentityHeaders(_ headers: inout HeaderList, dropUnderscores: Bool, dropOverrides: Bool = false) {
        // Closures passed straight to the calls: a closure kept in a constant and captured again would be heap-allocated,
        // on every request.
        headers.removeReceived { isClientControlled($0, dropUnderscores: dropUnderscores, dropOverrides: dropOverrides) }
        if headers.hasAddedFields {
            // HTTP/2 requests' fields are all added ones: compared in place, no lowercased copies per field.
            headers.removeAdded { isClientControlled($0, dropUnderscores: dropUnderscores, dropOverrides: dropOverrides) }
        }
    }

    /// An identity field (`X-Auth-*`, also with `_`), and as configured any underscored name or override field.
    private static func isClientControlled(_ name: UnsafeRawBufferPointer, dropUnderscores: Bool, dropOverrides: Bool) -> Bool {
        (name.count > 7 && isIdentityPrefix(name)) || (dropUnderscores && name.contains(UInt8(ascii: "_")))
            || (dropOverrides && (13...22).contains(name.count) && overrideFields.contains { ASCII.equalsCaseInsensitively(name, $0) })
    }

    /// Fields that make frameworks treat a request as another: a path (`X-Original-URL`, `X-Rewrite-URL`: Symfony,
    /// Laravel and IIS-fronted apps take them from a proxy) or a method (`X-HTTP-Method-Override` and kin: Express's
    /// method-override, Google APIs). From a client they walk past the route's `methods` and path rules.
    public static let overrideFields = ["x-original-url", "x-rewrite-url", "x-http-method-override", "x-http-method", "x-method-override"]

    /// `x-auth-` in any case, with `_` read as `-` (as CGI-style upstreams read it).
    private static func isIdentityPrefix(_ name: UnsafeRawBufferPointer) -> Bool {
        for (index, expected) in "x-auth-".utf8.enumerated() {
            let byte = name[index]
            if expected == UInt8(ascii: "-") {
                guard byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") else { return false }
            } else if byte | 0x20 != expected {
                return false
            }
        }
        return true
    }

    /// A final response leaves with a `Date` (RFC 9110 §6.6.1): an origin with a clock must send one on 2xx-4xx, and a
    /// proxy with a clock must add one to a forwarded response that lacks it. An upstream's own `Date` is kept.
    public static func addDateIfMissing(_ headers: inout HeaderList) {
        if !headers.contains(name: "date") { headers.add(name: "date", value: WallClock.httpDate()) }
    }

    /// A route's `request_headers` / `response_headers`: removals, then values set (replacing that name's fields).
    public static func apply(_ edits: HeaderEdits, to headers: inout HeaderList, context: RequestContext) {
        for name in edits.remove { headers.remove(name: name) }
        for (name, value) in edits.set { headers.replaceOrAdd(name: name, value: value) }
        for (name, source) in edits.setFrom {
            if let value = context.text(of: source) { headers.replaceOrAdd(name: name, value: value) } else { headers.remove(name: name) }
        }
    }

    /// Adds `name` to the response's `Vary` unless it is there already (or `Vary: *` covers everything).
    public static func addVary(_ name: String, to headers: inout HeaderList) {
        guard !headers.containsToken(name, inField: "vary"), !headers.containsToken("*", inField: "vary") else { return }
        headers.add(name: "vary", value: name)
    }

    /// A fresh `CDN-Loop` id for one gateway process: `gw-` and 8 random hex digits (a token, as RFC 8586's pseudonyms are).
    public static func newLoopID() -> String {
        let digits = String(UInt32.random(in: .min ... .max), radix: 16)
        return "gw-" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// Whether `CDN-Loop` names `id` among the intermediaries the request already went through (a forwarding loop).
    /// Each element is an id, then perhaps `;` parameters. Read in place: this runs for every forwarded request.
    public static func cameThrough(_ id: String, in headers: HeaderList) -> Bool {
        var seen = false
        headers.forEachReceivedValue(name: "cdn-loop") { value in
            HeaderList.forEachToken(value) { element in
                var end = 0
                while end < element.count && element[end] != UInt8(ascii: ";") { end += 1 }
                while end > 0 && (element[end - 1] == 0x20 || element[end - 1] == 0x09) { end -= 1 }
                if ASCII.equalsCaseInsensitively(UnsafeRawBufferPointer(rebasing: element[0..<end]), id) { seen = true }
            }
        }
        guard !seen, headers.hasAddedFields else { return seen }
        for value in headers.addedValues(name: "cdn-loop") {
            for element in value.split(separator: ",") where element.prefix(while: { $0 != ";" }).trimmingASCIISpaces().equalsCaseInsensitively(id) {
                return true
            }
        }
        return false
    }

    /// What goes to the client: no hop-by-hop headers and nothing that advertises the upstream's software.
    public static func prepareDownstreamResponse(_ headers: inout HeaderList) {
        let named = connectionNamedHeaders(headers)
        headers.removeReceived { isWithheldFromClient($0, named: named) }
        if headers.hasAddedFields { headers.removeAdded { isWithheldFromClient($0, named: named) } }
    }

    /// Hop-by-hop (with the fields the Connection header names) or advertising the upstream's software.
    @inline(__always)
    private static func isWithheldFromClient(_ name: UnsafeRawBufferPointer, named: [String]) -> Bool {
        if isHopByHop(name) || isNamed(name, in: named) { return true }
        switch name.count {
        case 6: return ASCII.equalsCaseInsensitively(name, "server")
        case 12: return ASCII.equalsCaseInsensitively(name, "x-powered-by")
        default: return false
        }
    }

    /// Headers the Connection header names are hop-by-hop too ("close" and "keep-alive" are options).
    /// Reads the received values in place; a String is made only for an actual header name (rare).
    static func connectionNamedHeaders(_ headers: HeaderList) -> [String] {
        var named: [String] = []
        headers.forEachReceivedValue(name: "connection") { value in
            HeaderList.forEachToken(value) { token in
                if ASCII.equalsCaseInsensitively(token, "close") || ASCII.equalsCaseInsensitively(token, "keep-alive") { return }
                named.append(String(decoding: token, as: UTF8.self).lowercased())
            }
        }
        if headers.hasAddedFields {
            for value in headers.addedValues(name: "connection") {
                for token in value.split(separator: ",") {
                    let name = token.trimmingASCIISpaces().lowercased()
                    if !name.isEmpty && name != "close" && name != "keep-alive" { named.append(name) }
                }
            }
        }
        return named
    }

    /// Removes hop-by-hop headers, including every header the Connection header names, plus `extra`.
    public static func removeHopByHop(_ headers: inout HeaderList, alsoRemoving extra: [String] = []) {
        let named = connectionNamedHeaders(headers) + extra
        headers.removeReceived { isHopByHop($0) || isNamed($0, in: named) }
        headers.removeAdded { isHopByHop($0) || isNamed($0, in: named) }
    }

    /// One of `named` (the fields a Connection header names, lowercase).
    @inline(__always)
    private static func isNamed(_ name: UnsafeRawBufferPointer, in named: [String]) -> Bool {
        !named.isEmpty && named.contains { ASCII.equalsCaseInsensitively(name, $0) }
    }

    /// Hop-by-hop fields (RFC 9110 §7.6.1) and the legacy ones proxies must not forward. Dispatches on length and
    /// first letter, so most names are ruled out with two comparisons.
    @inline(__always)
    static func isHopByHop(_ name: UnsafeRawBufferPointer) -> Bool {
        switch (name.count, name.first.map(ASCII.lower)) {
        case (2, UInt8(ascii: "t")): return ASCII.equalsCaseInsensitively(name, "te")
        case (7, UInt8(ascii: "t")): return ASCII.equalsCaseInsensitively(name, "trailer")
        case (7, UInt8(ascii: "u")): return ASCII.equalsCaseInsensitively(name, "upgrade")
        case (10, UInt8(ascii: "c")): return ASCII.equalsCaseInsensitively(name, "connection")
        case (10, UInt8(ascii: "k")): return ASCII.equalsCaseInsensitively(name, "keep-alive")
        case (16, UInt8(ascii: "p")): return ASCII.equalsCaseInsensitively(name, "proxy-connection")
        case (17, UInt8(ascii: "t")): return ASCII.equalsCaseInsensitively(name, "transfer-encoding")
        case (19, UInt8(ascii: "p")): return ASCII.equalsCaseInsensitively(name, "proxy-authorization")
        default: return false
        }
    }

    /// Sets X-Forwarded-For/-Proto/-Host/-Port for the upstream, and with `forwardedHeader` the RFC 7239 `Forwarded`
    /// field. A trusted proxy's values are kept (XFF and `Forwarded` extended with this hop); anyone else's are
    /// replaced, so clients cannot forge them.
    public static func setForwarded(
        _ headers: inout HeaderList, peer: String, peerIsTrusted: Bool, proto: String, host: String?,
        forwardedHeader: Bool = false
    ) {
        guard peerIsTrusted else {
            headers.remove(name: "x-forwarded-for")
            headers.remove(name: "x-forwarded-proto")
            headers.remove(name: "x-forwarded-host")
            headers.remove(name: "x-forwarded-port")
            headers.add(name: "x-forwarded-for", value: peer)
            headers.add(name: "x-forwarded-proto", value: proto)
            if let host { headers.add(name: "x-forwarded-host", value: host) }
            headers.add(name: "x-forwarded-port", value: requestPort(host: host, scheme: proto))
            if forwardedHeader { headers.replaceOrAdd(name: "forwarded", value: forwardedElement(peer: peer, host: host, proto: proto)) }
            return
        }
        let chain = headers["x-forwarded-for"]
        headers.replaceOrAdd(name: "x-forwarded-for", value: chain.isEmpty ? peer : chain.joined(separator: ", ") + ", " + peer)
        if !headers.contains(name: "x-forwarded-proto") { headers.add(name: "x-forwarded-proto", value: proto) }
        if !headers.contains(name: "x-forwarded-host"), let host { headers.add(name: "x-forwarded-host", value: host) }
        if !headers.contains(name: "x-forwarded-port") {
            headers.add(name: "x-forwarded-port", value: requestPort(host: host, scheme: headers.first(name: "x-forwarded-proto") ?? proto))
        }
        if forwardedHeader {
            let element = forwardedElement(peer: peer, host: host, proto: proto)
            let earlier = headers["forwarded"]
            headers.replaceOrAdd(name: "forwarded", value: earlier.isEmpty ? element : earlier.joined(separator: ", ") + ", " + element)
        }
    }

    /// The port the client addressed (`X-Forwarded-Port`, as Traefik sends it): `host`'s (the request's Host, as
    /// received), else the scheme's default. Applications behind a gateway on a non-standard port build their links
    /// with it.
    static func requestPort(host: String?, scheme: String) -> String {
        if let host, let colon = host.utf8.lastIndex(of: UInt8(ascii: ":")),
            !host.utf8[colon...].contains(UInt8(ascii: "]"))  // the colons of a bracketed IPv6 address are not a port
        {
            let port = host.utf8[host.utf8.index(after: colon)...]
            if !port.isEmpty, port.count <= 5, port.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }) { return String(Substring(port)) }
        }
        return scheme.lowercased() == "https" ? "443" : "80"
    }

    /// This hop's element of a `Forwarded` field (RFC 7239 §4): `for` the peer the request came from (an IPv6
    /// address bracketed and quoted, `unknown` for a Unix socket), `host` the Host it asked for, `proto` the
    /// scheme it used. Values that are not tokens (a `host:port`) are quoted.
    public static func forwardedElement(peer: String, host: String?, proto: String) -> String {
        let node: String
        if let address = IPAddress(peer) {
            if case .v6 = address { node = "\"[\(address)]\"" } else { node = address.description }
        } else {
            node = "unknown"
        }
        var element = "for=" + node
        if let host, !host.isEmpty { element += ";host=" + forwardedValue(host) }
        element += ";proto=" + forwardedValue(proto)
        return element
    }

    /// A token as it is, anything else as a quoted-string (RFC 9110 §5.6.4), escaping `"` and `\`.
    static func forwardedValue(_ value: String) -> String {
        if !value.isEmpty && value.utf8.allSatisfy(ASCII.isToken) { return value }
        var quoted = "\""
        for character in value {
            if character == "\"" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        return quoted + "\""
    }

    /// `X-Forwarded-Prefix` for a route that strips a prefix: the path part the upstream does not see, so it can
    /// build links the client can follow (Spring, ASP.NET, Traefik's convention). A trusted proxy's own prefix
    /// comes first. Only called after `prepareUpstreamRequest`, which drops an untrusted client's value.
    public static func setForwardedPrefix(_ headers: inout HeaderList, removed: Substring) {
        let outer = headers.first(name: "x-forwarded-prefix").map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? ""
        headers.replaceOrAdd(name: "x-forwarded-prefix", value: outer + removed)
    }

    /// The client address as trusted proxies report it: walking X-Forwarded-For from the right, the
    /// first address that is not itself a trusted proxy. Without a trusted peer, the peer is the client.
    /// `peerIsTrusted`: the connection's `ConnectionInfo.peerIsTrustedProxy`, decided when it was accepted (a
    /// Unix-socket listener's peer, which has no address, by `"unix:"`).
    public static func clientAddress(peer: IPAddress?, peerIsTrusted: Bool, forwardedFor: [String], trusted: AddressSet) -> String {
        let peerText = peer?.description ?? "unix"
        guard peerIsTrusted, !forwardedFor.isEmpty else { return peerText }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingASCIISpaces() }
        var leftmost: IPAddress?
        for hop in hops.reversed() {
            guard let address = IPAddress(hop) else { break }  // garbage ends the trustworthy part
            leftmost = address
            if !trusted.contains(address) { return address.description }
        }
        return leftmost?.description ?? peerText
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

    /// Whether a Host value is `uri-host [":" port]` (RFC 9112 §3.2 requires 400 otherwise): a bracketed IP literal
    /// or a reg-name of unreserved characters, percent-escapes and sub-delims (no `..`, as NGINX), then an optional
    /// port below 65536. Empty is valid (a target without authority). What fails here (a space, `@`, `/`, `\`) is
    /// what Host-header injection against backends that build URLs from Host looks like.
    public static func isValidHost(_ host: String) -> Bool {
        host.withUTF8Bytes { bytes in
            var nameEnd = 0
            if bytes.first == UInt8(ascii: "[") {
                guard let close = bytes.firstIndex(of: UInt8(ascii: "]")),
                    IPAddress(String(decoding: bytes[1..<close], as: UTF8.self)) != nil
                else { return false }
                nameEnd = close + 1
            } else {
                var previous: UInt8 = 0
                while nameEnd < bytes.count, bytes[nameEnd] != UInt8(ascii: ":") {
                    let byte = bytes[nameEnd]
                    guard isRegNameByte(byte), !(byte == UInt8(ascii: ".") && previous == byte) else { return false }
                    previous = byte
                    nameEnd += 1
                }
            }
            guard nameEnd < bytes.count else { return true }
            guard bytes[nameEnd] == UInt8(ascii: ":") else { return false }
            let port = UnsafeRawBufferPointer(rebasing: bytes[(nameEnd + 1)...])
            return port.isEmpty || ASCII.parseDecimal(port).map { $0 <= 65_535 } == true
        }
    }

    /// RFC 3986 reg-name: unreserved, "%" (of a pct-encoding) and sub-delims.
    private static func isRegNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "%"),
            UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }

    /// The Host header's name part, lowercased, without port ("Api.Example.com:8080" -> "api.example.com").
    public static func hostName(_ host: String) -> Substring {
        // One pass over the contiguous bytes: String.UTF8View walks byte by byte with more checks.
        let (end, hasUppercase) = host.withUTF8Bytes { bytes -> (Int, Bool) in
            var end = bytes.count
            if bytes.first == UInt8(ascii: "[") {  // IPv6 literal: keep up to the closing bracket
                if let close = bytes.firstIndex(of: UInt8(ascii: "]")) { end = close + 1 }
            } else if let colon = bytes.lastIndex(of: UInt8(ascii: ":")) {
                end = colon
            }
            return (end, bytes[..<end].contains { $0 &- UInt8(ascii: "A") < 26 })
        }
        let name = host[..<host.utf8.index(host.utf8.startIndex, offsetBy: end)]
        return hasUppercase ? Substring(name.lowercased()) : name
    }

    /// Removes cookie `name` from the request's Cookie headers, keeping the others (joined into one field, as
    /// HTTP/1.1 sends them; the field goes when nothing is left).
    public static func removeCookie(named name: String, from headers: inout HeaderList) {
        let fields = headers["cookie"]
        guard !fields.isEmpty else { return }
        var kept: [String] = []
        var removed = false
        for field in fields {
            for pair in field.split(separator: ";") {
                let trimmed = pair.trimmingASCIISpaces()
                if trimmed.prefix(while: { $0 != "=" }) == name {
                    removed = true
                } else if !trimmed.isEmpty {
                    kept.append(trimmed)
                }
            }
        }
        guard removed else { return }
        headers.remove(name: "cookie")
        if !kept.isEmpty { headers.add(name: "cookie", value: kept.joined(separator: "; ")) }
    }

    /// The value of cookie `name` in the request's Cookie headers (RFC 6265 §5.4: `a=1; b=2`), first wins.
    public static func cookie(named name: String, in headers: HeaderList) -> String? {
        for field in headers["cookie"] {
            for pair in field.split(separator: ";") {
                let trimmed = pair.trimmingASCIISpaces()
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                return String(trimmed[trimmed.index(after: equals)...])
            }
        }
        return nil
    }
}

extension RequestKey {
    /// This key's value in a request (`hash_on`, `sticky_on`); nil when the header or cookie is absent.
    public func value(in headers: HeaderList, clientIP: String, consumer: String?) -> String? {
        switch self {
        case .ip: return clientIP
        case .consumer: return consumer ?? clientIP
        case .header(let name): return headers.first(name: name)
        case .cookie(let name): return HeaderRules.cookie(named: name, in: headers)
        }
    }
}

extension RequestContext {
    /// A `set_from` value of this request; nil when it has none (an anonymous request's consumer, say).
    public func text(of value: RequestValue) -> String? {
        switch value {
        case .clientIP: return clientIP
        case .peerIP: return connection.peer?.description
        case .requestID: return requestID.isEmpty ? nil : requestID
        case .traceID: return traceID
        case .consumer: return consumer
        case .route: return route?.name
        case .host: return host
        case .scheme: return connection.isTLS ? "https" : "http"
        case .method: return method.description
        case .country: return country
        case .asn: return asn.map(String.init)
        }
    }
}
