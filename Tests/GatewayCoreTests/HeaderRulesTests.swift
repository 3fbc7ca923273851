import GatewayConfig
import GatewayCore
import GatewayFilters
import GatewayHTTP
import GatewayPolicy
import NIOCore
import NIOEmbedded
import Testing

@Suite struct HeaderRulesTests {
    // One cookie goes (the OIDC session, say); the others stay, joined into one field; no cookie left, no field.
    @Test func removesOneCookie() {
        var headers = HeaderList([("Cookie", "theme=dark; session=abc"), ("X-Other", "1"), ("cookie", "lang=en;session=def; sessionx=1")])
        HeaderRules.removeCookie(named: "session", from: &headers)
        #expect(headers["cookie"] == ["theme=dark; lang=en; sessionx=1"])
        #expect(headers.first(name: "x-other") == "1")
        var only = HeaderList([("Cookie", "session=abc")])
        HeaderRules.removeCookie(named: "session", from: &only)
        #expect(only["cookie"].isEmpty)
        var untouched = HeaderList([("Cookie", "a=1;b=2")])
        HeaderRules.removeCookie(named: "session", from: &untouched)
        #expect(untouched["cookie"] == ["a=1;b=2"], "left as it was when the cookie is not there")
    }

    // Hop-by-hop headers go, including those the Connection header names; end-to-end headers stay.
    @Test func removesHopByHop() {
        var headers = HeaderList([
            ("Connection", "Keep-Alive, X-Private"), ("X-Private", "1"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Proxy-Connection", "close"),
            ("Proxy-Authorization", "secret"), ("Trailer", "X-Sum"), ("Content-Type", "text/plain"), ("X-Keep", "yes"),
        ])
        HeaderRules.removeHopByHop(&headers)
        #expect(headers.map(\.name) == ["Content-Type", "X-Keep"])
        // Received (parsed) fields go the same way.
        var parser = HTTP1HeadParser(maxHeadBytes: 4096)
        var raw = ByteBuffer(string: "GET / HTTP/1.1\r\nConnection: close, X-Private\r\nX-Private: 1\r\nTE: trailers\r\nHost: h\r\n\r\n")
        var received = try! parser.parseRequest(&raw)!.head.headers
        HeaderRules.removeHopByHop(&received, alsoRemoving: ["host"])
        #expect(received.isEmpty)
        // A response built field by field (an HTTP/2 upstream's, an interim one) loses what its Connection names too.
        var response = HeaderList([("Connection", "X-Private"), ("X-Private", "1"), ("Server", "app"), ("Link", "</a>")])
        HeaderRules.prepareDownstreamResponse(&response)
        #expect(response.map(\.name) == ["Link"])
    }

    // Client identity fields go in any spelling CGI-style upstreams would read as X-Auth-*; with dropUnderscores,
    // every underscored name goes; parsed (HTTP/1) and built (HTTP/2) lists alike.
    @Test func clientIdentityAndUnderscoredFields() throws {
        var parser = HTTP1HeadParser(maxHeadBytes: 4096)
        var raw = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: h\r\nX-AUTH-Subject: a\r\nx_auth_x: b\r\nX_Custom: c\r\nX-Authority: d\r\nX-Kept: e\r\n\r\n")
        let parsed = try #require(try parser.parseRequest(&raw)).head.headers
        var allowed = parsed
        HeaderRules.removeClientIdentityHeaders(&allowed, dropUnderscores: false)
        #expect(allowed.map(\.name) == ["Host", "X_Custom", "X-Authority", "X-Kept"])
        var dropped = parsed
        HeaderRules.removeClientIdentityHeaders(&dropped, dropUnderscores: true)
        #expect(dropped.map(\.name) == ["Host", "X-Authority", "X-Kept"])
        var built = HeaderList([("x-auth-subject", "a"), ("x_auth_x", "b"), ("x_custom", "c"), ("x-kept", "e")])
        HeaderRules.removeClientIdentityHeaders(&built, dropUnderscores: false)
        #expect(built.map(\.name) == ["x_custom", "x-kept"])
        HeaderRules.removeClientIdentityHeaders(&built, dropUnderscores: true)
        #expect(built.map(\.name) == ["x-kept"])

        // Path and method overrides, when asked.
        var overrides = HeaderList([("X-Original-URL", "/admin"), ("x-rewrite-url", "/a"), ("X-HTTP-Method-Override", "DELETE"), ("X-HTTP-Method", "PUT"),
                                    ("X-Method-Override", "PATCH"), ("X-Original-Host", "h")])
        var kept = overrides
        HeaderRules.removeClientIdentityHeaders(&kept, dropUnderscores: true, dropOverrides: false)
        #expect(kept.count == 6)
        HeaderRules.removeClientIdentityHeaders(&overrides, dropUnderscores: true, dropOverrides: true)
        #expect(overrides.map(\.name) == ["X-Original-Host"])
        var rawOverrides = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: h\r\nX-ORIGINAL-URL: /admin\r\nX-Http-Method-Override: DELETE\r\nX-Kept: e\r\n\r\n")
        var parsedOverrides = try #require(try parser.parseRequest(&rawOverrides)).head.headers
        HeaderRules.removeClientIdentityHeaders(&parsedOverrides, dropUnderscores: true, dropOverrides: true)
        #expect(parsedOverrides.map(\.name) == ["Host", "X-Kept"])
    }

    // CDN-Loop (RFC 8586): our id among the elements, with or without parameters, in any case, in parsed (HTTP/1) and
    // built (HTTP/2) field lists; other ids, or ours as a prefix of another, are not a loop.
    @Test func forwardingLoops() throws {
        let id = HeaderRules.newLoopID()
        #expect(id.hasPrefix("gw-") && id.count == 11 && HeaderRules.newLoopID() != id)
        var parser = HTTP1HeadParser(maxHeadBytes: 4096)
        func parsed(_ fields: String) throws -> HeaderList {
            var raw = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: h\r\n\(fields)\r\n")
            return try #require(try parser.parseRequest(&raw)).head.headers
        }
        #expect(HeaderRules.cameThrough("gw-0000abcd", in: try parsed("CDN-Loop: cdn.example, GW-0000ABCD ; hops=2\r\n")))
        #expect(HeaderRules.cameThrough("gw-0000abcd", in: try parsed("cdn-loop: a\r\ncdn-loop: gw-0000abcd\r\n")))
        #expect(!HeaderRules.cameThrough("gw-0000abcd", in: try parsed("CDN-Loop: gw-0000abcde, x;gw-0000abcd\r\n")))
        #expect(!HeaderRules.cameThrough("gw-0000abcd", in: try parsed("")))
        #expect(HeaderRules.cameThrough("gw-0000abcd", in: HeaderList([("cdn-loop", "other, gw-0000abcd;x=1")])))
        #expect(!HeaderRules.cameThrough("gw-0000abcd", in: HeaderList([("cdn-loop", "other")])))
    }

    // X-Forwarded-For is replaced for untrusted peers and extended for trusted ones.
    @Test func forwardedHeaders() {
        var untrusted = HeaderList([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "https")])
        HeaderRules.setForwarded(&untrusted, peer: "9.9.9.9", peerIsTrusted: false, proto: "http", host: "a.example")
        #expect(untrusted["x-forwarded-for"] == ["9.9.9.9"])
        #expect(untrusted["x-forwarded-proto"] == ["http"])
        #expect(untrusted["x-forwarded-host"] == ["a.example"])

        var trusted = HeaderList([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")])
        HeaderRules.setForwarded(&trusted, peer: "10.0.0.1", peerIsTrusted: true, proto: "http", host: nil)
        #expect(trusted["x-forwarded-for"] == ["1.1.1.1, 2.2.2.2, 10.0.0.1"])
        #expect(trusted["x-forwarded-host"] == [])
    }

    // X-Forwarded-Port: the Host field's port, else the scheme's default; a client's own is replaced, a trusted
    // proxy's kept (and its X-Forwarded-Proto decides the default).
    @Test func forwardedPort() {
        let cases: [(host: String?, proto: String, port: String)] = [
            ("a.example:8443", "https", "8443"), ("a.example", "https", "443"), ("a.example", "http", "80"), (nil, "http", "80"),
            ("[2001:db8::1]", "https", "443"), ("[2001:db8::1]:8080", "http", "8080"), ("10.0.0.1:9000", "http", "9000"),
        ]
        for (host, proto, port) in cases {
            var headers = HeaderList([("X-Forwarded-Port", "1")])
            HeaderRules.setForwarded(&headers, peer: "9.9.9.9", peerIsTrusted: false, proto: proto, host: host)
            #expect(headers["x-forwarded-port"] == [port], "\(host ?? "-") \(proto)")
        }
        var kept = HeaderList([("X-Forwarded-Port", "8443")])
        HeaderRules.setForwarded(&kept, peer: "10.0.0.1", peerIsTrusted: true, proto: "http", host: "a.example")
        #expect(kept["x-forwarded-port"] == ["8443"])
        var behindTLS = HeaderList([("X-Forwarded-Proto", "https")])
        HeaderRules.setForwarded(&behindTLS, peer: "10.0.0.1", peerIsTrusted: true, proto: "http", host: "a.example")
        #expect(behindTLS["x-forwarded-port"] == ["443"])
        var parser = HTTP1HeadParser(maxHeadBytes: 4096)
        var raw = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: h:8080\r\nX-Forwarded-Port: 1\r\n\r\n")
        var received = try! parser.parseRequest(&raw)!.head.headers
        HeaderRules.prepareUpstreamRequest(&received, peer: "9.9.9.9", peerIsTrusted: false, proto: "http", host: "h:8080")
        #expect(received["x-forwarded-port"] == ["8080"], "a client's own field is dropped as the request is read")
    }

    // RFC 7239 Forwarded: this hop's element replaces an untrusted client's field and extends a trusted proxy's;
    // IPv6 nodes are bracketed and quoted, values that are not tokens quoted.
    @Test func forwardedField() {
        #expect(HeaderRules.forwardedElement(peer: "192.0.2.60", host: "example.com", proto: "http") == "for=192.0.2.60;host=example.com;proto=http")
        #expect(HeaderRules.forwardedElement(peer: "2001:db8::17", host: "example.com:8443", proto: "https")
            == #"for="[2001:db8::17]";host="example.com:8443";proto=https"#)
        #expect(HeaderRules.forwardedElement(peer: "unix", host: nil, proto: "http") == "for=unknown;proto=http")
        #expect(HeaderRules.forwardedElement(peer: "10.0.0.1", host: "", proto: "http") == "for=10.0.0.1;proto=http")
        #expect(HeaderRules.forwardedElement(peer: "10.0.0.1", host: #"a"b\c"#, proto: "http") == #"for=10.0.0.1;host="a\"b\\c";proto=http"#)

        var untrusted = HeaderList([("Forwarded", "for=6.6.6.6;proto=https")])
        HeaderRules.setForwarded(&untrusted, peer: "9.9.9.9", peerIsTrusted: false, proto: "http", host: "a.example", forwardedHeader: true)
        #expect(untrusted["forwarded"] == ["for=9.9.9.9;host=a.example;proto=http"])

        var trusted = HeaderList([("Forwarded", "for=192.0.2.43"), ("forwarded", #"for="[2001:db8:cafe::17]""#)])
        HeaderRules.setForwarded(&trusted, peer: "10.0.0.1", peerIsTrusted: true, proto: "https", host: "a.example", forwardedHeader: true)
        #expect(trusted["forwarded"] == [#"for=192.0.2.43, for="[2001:db8:cafe::17]", for=10.0.0.1;host=a.example;proto=https"#])

        // Off: a trusted proxy's field passes as it came; an untrusted client's never reaches the upstream.
        var passed = HeaderList([("Forwarded", "for=192.0.2.43")])
        HeaderRules.setForwarded(&passed, peer: "10.0.0.1", peerIsTrusted: true, proto: "http", host: nil)
        #expect(passed["forwarded"] == ["for=192.0.2.43"])
        var parser = HTTP1HeadParser(maxHeadBytes: 4096)
        var raw = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=6.6.6.6\r\nX-Keep: 1\r\n\r\n")
        var received = try! parser.parseRequest(&raw)!.head.headers
        HeaderRules.prepareUpstreamRequest(&received, peer: "9.9.9.9", peerIsTrusted: false, proto: "http", host: "h")
        #expect(received["forwarded"] == [])
        #expect(received["x-keep"] == ["1"])
    }

    // An HTTP/2 request's fields are all added ones (no received bytes): an untrusted client's Forwarded and
    // X-Forwarded-Prefix go as a received one's do, hop-by-hop fields too, and a trusted proxy's stay.
    @Test func untrustedFieldsGoFromHTTP2Requests() {
        let fields = [
            ("forwarded", "for=6.6.6.6"), ("x-forwarded-prefix", "/forged"), ("x-forwarded-for", "6.6.6.6"), ("te", "trailers"),
            ("content-length", "5"), ("x-keep", "1"),
        ]
        var untrusted = HeaderList(fields)
        HeaderRules.prepareUpstreamRequest(&untrusted, peer: "9.9.9.9", peerIsTrusted: false, proto: "https", host: "h")
        #expect(untrusted["forwarded"] == [])
        #expect(untrusted["x-forwarded-prefix"] == [])
        #expect(untrusted["x-forwarded-for"] == ["9.9.9.9"])
        #expect(untrusted["te"] == [] && untrusted["content-length"] == [])
        #expect(untrusted["x-keep"] == ["1"])
        var trusted = HeaderList(fields)
        HeaderRules.prepareUpstreamRequest(&trusted, peer: "10.0.0.1", peerIsTrusted: true, proto: "https", host: "h")
        #expect(trusted["forwarded"] == ["for=6.6.6.6"])
        #expect(trusted["x-forwarded-prefix"] == ["/forged"])
        #expect(trusted["x-forwarded-for"] == ["6.6.6.6, 10.0.0.1"])
        #expect(trusted["te"] == [] && trusted["content-length"] == [])
    }

    // The client is the rightmost address in X-Forwarded-For that is not a trusted proxy.
    @Test func clientAddress() {
        let trusted = AddressSet([CIDR("10.0.0.0/8")!])
        let proxy = IPAddress("10.0.0.2")
        #expect(HeaderRules.clientAddress(peer: proxy, peerIsTrusted: true, forwardedFor: ["5.5.5.5, 10.0.0.7"], trusted: trusted) == "5.5.5.5")
        #expect(HeaderRules.clientAddress(peer: proxy, peerIsTrusted: true, forwardedFor: ["6.6.6.6", "5.5.5.5"], trusted: trusted) == "5.5.5.5")
        #expect(HeaderRules.clientAddress(peer: proxy, peerIsTrusted: true, forwardedFor: ["10.1.1.1"], trusted: trusted) == "10.1.1.1")
        #expect(HeaderRules.clientAddress(peer: proxy, peerIsTrusted: true, forwardedFor: ["garbage"], trusted: trusted) == "10.0.0.2")
        #expect(HeaderRules.clientAddress(peer: IPAddress("8.8.8.8"), peerIsTrusted: false, forwardedFor: ["1.2.3.4"], trusted: trusted) == "8.8.8.8")
    }

    // Absolute-form targets become origin form plus the authority for Host.
    @Test func absoluteForm() {
        #expect(HeaderRules.splitAbsoluteForm("http://a.example:8080/p?q=1")! == ("a.example:8080", "/p?q=1"))
        #expect(HeaderRules.splitAbsoluteForm("HTTPS://a.example")! == ("a.example", "/"))
        #expect(HeaderRules.splitAbsoluteForm("http://a.example?x")! == ("a.example", "/?x"))
        #expect(HeaderRules.splitAbsoluteForm("/plain") == nil)
        #expect(HeaderRules.splitAbsoluteForm("http://user@a.example/") == nil)
        #expect(HeaderRules.splitAbsoluteForm("*") == nil)
    }

    @Test func hostName() {
        #expect(HeaderRules.hostName("API.Example.com:8080") == "api.example.com")
        #expect(HeaderRules.hostName("[::1]:8080") == "[::1]")
        #expect(HeaderRules.hostName("plain") == "plain")
        #expect(HeaderRules.hostName("") == "")
        #expect(HeaderRules.hostName("[::ABCD]") == "[::abcd]")
        #expect(HeaderRules.hostName("[::1]:8080:9") == "[::1]")
        #expect(HeaderRules.hostName("example.com:") == "example.com")
        #expect(HeaderRules.hostName("caf\u{E9}.example:80") == "caf\u{E9}.example")
    }

    // Host values: uri-host [":" port] (RFC 9112 §3.2); what Host-header injection sends is refused.
    @Test func validHosts() {
        let valid = ["example.com", "API.Example.com:8080", "example.com.", "example.com:", "127.0.0.1:443", "[::1]", "[::1]:8080",
                     "[2001:DB8::7]:80", "a_b-c~d", "xn--caf-dma.example", "%41.example", "", "x:0", "x:65535"]
        let invalid = ["a b", "a\tb", "user@example.com", "x/../y", "x\\y", "x?y", "x#y", "example.com:abc", "example.com:99999",
                       "example.com:123456", "a..b", "[::1", "[]", "[::1]x", "[::g]", "[:::::]", "caf\u{E9}.example", "x:8:9", "\"x\""]
        let wronglyRejected = valid.filter { !HeaderRules.isValidHost($0) }
        let wronglyAccepted = invalid.filter { HeaderRules.isValidHost($0) }
        #expect(wronglyRejected.isEmpty)
        #expect(wronglyAccepted.isEmpty)
    }

    // Request ids: the allowed alphabet and length; generated ids are 32 hex digits and differ.
    @Test func requestIDs() {
        #expect(RequestID.isValid("abc-DEF_1.2"))
        #expect(!RequestID.isValid(""))
        #expect(!RequestID.isValid("has space"))
        #expect(!RequestID.isValid("quote\""))
        #expect(RequestID.isValid(String(repeating: "a", count: 128)))
        #expect(!RequestID.isValid(String(repeating: "a", count: 129)))
        let first = RequestID.generate()
        #expect(first.count == 32 && first.allSatisfy(\.isHexDigit))
        #expect(RequestID.generate() != first)
    }

    // Span ids: 64 random bits, never zero, written as 16 lowercase hex digits (leading zeros kept).
    @Test func spanIDs() {
        #expect(RequestID.spanID(0x00f0_67aa_0ba9_02b7) == "00f067aa0ba902b7")
        #expect(RequestID.spanID(.max) == "ffffffffffffffff")
        let bits = RequestID.generateSpanBits()
        #expect(bits != 0)
        #expect(RequestID.generateSpanBits() != bits)
        var context = RequestContext(
            connection: ConnectionInfo(listener: "l", peer: nil, isTLS: false, peerIsTrustedProxy: false), clientIP: "-",
            method: .GET, uri: "/", startedAt: .now(), eventLoop: EmbeddedEventLoop())
        #expect(context.spanID == nil)
        context.spanBits = 0x1
        #expect(context.spanID == "0000000000000001")
    }

    // Error bodies are the documented JSON shape, escaped, with status and headers from the error.
    @Test func errorBody() {
        let response = GatewayResponse.error(.methodNotAllowed(allowed: ["GET", "HEAD"]), requestID: "r-1")
        #expect(response.head.status == 405)
        #expect(response.head.headers["allow"] == ["GET, HEAD"])
        #expect(response.head.headers["content-type"] == ["application/json"])
        let body = String(buffer: response.body!)
        #expect(body == #"{"error":{"code":"METHOD_NOT_ALLOWED","message":"This path does not accept this method.","request_id":"r-1"}}"# + "\n")
        #expect(response.head.headers["content-length"] == [String(body.utf8.count)])
        #expect(JSONText.quoted("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
    }

    // Each error code maps to one status.
    @Test func errorStatuses() {
        let cases: [(GatewayError, Int, String)] = [
            (.routeNotFound, 404, "ROUTE_NOT_FOUND"), (.payloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
            (.headersTooLarge, 431, "HEADERS_TOO_LARGE"), (.requestTimeout, 408, "REQUEST_TIMEOUT"),
            (.badRequest(), 400, "BAD_REQUEST"), (.upstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
            (.upstreamTimeout, 504, "UPSTREAM_TIMEOUT"), (.internalError, 500, "INTERNAL"),
        ]
        for (error, status, code) in cases {
            #expect(error.status == status)
            #expect(error.code == code)
        }
        struct Unknown: Error {}
        #expect(GatewayError(mapping: Unknown()) == .internalError)
    }

    // Security headers: upstream values win unless told otherwise; HSTS only over TLS.
    @Test func securityHeaders() {
        var config = SecurityHeadersConfigForTests.make()
        let filter = SecurityHeadersFilter(config)
        var head = ResponseHead(status: 200, headers: HeaderList([("X-Frame-Options", "SAMEORIGIN")]))
        filter.onResponse(&head, context: SecurityHeadersConfigForTests.context(tls: false))
        #expect(head.headers["x-frame-options"] == ["SAMEORIGIN"])
        #expect(head.headers["x-content-type-options"] == ["nosniff"])
        #expect(head.headers["strict-transport-security"] == [])

        config.overrideUpstream = true
        var tlsHead = ResponseHead(status: 200, headers: HeaderList([("X-Frame-Options", "SAMEORIGIN")]))
        SecurityHeadersFilter(config).onResponse(&tlsHead, context: SecurityHeadersConfigForTests.context(tls: true))
        #expect(tlsHead.headers["x-frame-options"] == ["DENY"])
        #expect(tlsHead.headers["strict-transport-security"] == ["max-age=31536000"])

        config.hstsIncludeSubdomains = true
        config.hstsPreload = true
        var preloaded = ResponseHead(status: 200, headers: HeaderList())
        SecurityHeadersFilter(config).onResponse(&preloaded, context: SecurityHeadersConfigForTests.context(tls: true))
        #expect(preloaded.headers["strict-transport-security"] == ["max-age=31536000; includeSubDomains; preload"])

        // Without HSTS every other field goes out, over plain HTTP as over TLS (HSTS is the one left out on plain HTTP).
        var withoutHSTS = SecurityHeadersConfigForTests.make()
        withoutHSTS.hstsMaxAgeSeconds = nil
        withoutHSTS.permissionsPolicy = "camera=()"
        for tls in [false, true] {
            var plain = ResponseHead(status: 200, headers: HeaderList())
            SecurityHeadersFilter(withoutHSTS).onResponse(&plain, context: SecurityHeadersConfigForTests.context(tls: tls))
            var expected = ResponseHead(status: 200, headers: HeaderList())
            SecurityHeadersFilter(config).onResponse(&expected, context: SecurityHeadersConfigForTests.context(tls: true))
            expected.headers.remove(name: "strict-transport-security")
            expected.headers.add(name: "permissions-policy", value: "camera=()")
            let sent = plain.headers.map { "\($0.name): \($0.value)" }.sorted()
            let wanted = expected.headers.map { "\($0.name): \($0.value)" }.sorted()
            #expect(sent == wanted)
            #expect(plain.headers["permissions-policy"] == ["camera=()"] && plain.headers["strict-transport-security"] == [])
        }
    }
}

enum SecurityHeadersConfigForTests {
    static func make() -> SecurityHeadersConfig { SecurityHeadersConfig() }

    static func context(tls: Bool) -> RequestContext {
        RequestContext(
            connection: ConnectionInfo(listener: "l", peer: nil, isTLS: tls, peerIsTrustedProxy: false), clientIP: "1.2.3.4",
            method: .GET, uri: "/", startedAt: .now(), eventLoop: EmbeddedEventLoop())
    }
}
