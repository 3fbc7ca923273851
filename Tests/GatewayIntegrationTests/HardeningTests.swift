import DemoUpstream
import Foundation
import Testing
import TestSupport

/// Requests crafted to slip past routing, authentication or the parser, over real sockets.
@Suite struct HardeningTests {
    static let protectedRoutes = #"""
        [{ "name": "admin", "match": { "path_prefix": "/admin" }, "upstream": "demo", "auth": { "require": ["api_key"] } },
         { "name": "public", "upstream": "demo" }]
        """#
    static let top = #""auth": { "api_keys": [{ "id": "demo", "sha256": "\#(OperationsTests.demoKeyHash)" }] },"#

    // A client's path and method overrides never reach the upstream (limits.override_headers "drop", the default):
    // a framework reading X-HTTP-Method-Override or X-Original-URL would serve a DELETE or /admin to a request the
    // gateway routed and authorized as a GET of /public. "allow" passes them. TRACE is refused where not named.
    @Test func overrideFieldsCannotChangeWhatWasRouted() async throws {
        let sent = [("X-HTTP-Method-Override", "DELETE"), ("X-Original-URL", "/admin/users"), ("X-Rewrite-URL", "/admin"), ("X-Kept", "yes")]
        let routes = #"[{ "name": "public", "match": { "methods": ["GET"] }, "upstream": "demo" }]"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let echoed = try await gateway.request("GET", "/public", headers: sent).echoedHeaders
                #expect(echoed["x-kept"] == "yes")
                #expect(echoed["x-http-method-override"] == nil && echoed["x-original-url"] == nil && echoed["x-rewrite-url"] == nil, "\(echoed)")
            }
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                // TRACE would echo the gateway's own fields back to the client: refused where a route does not name it.
                let trace = try await gateway.request("TRACE", "/echo")
                #expect(trace.status == 405 && trace.errorCode == "METHOD_NOT_ALLOWED" && trace.header("allow")?.contains("TRACE") == false, "\(trace)")
            }
            try await withGateway(basicConfig(routes: routes, limits: #"{ "override_headers": "allow" }"#), upstreams: upstreams) { gateway in
                let echoed = try await gateway.request("GET", "/public", headers: sent).echoedHeaders
                #expect(echoed["x-http-method-override"] == "DELETE" && echoed["x-original-url"] == "/admin/users")
            }
        }
    }

    // Fields with underscores are dropped (limits.underscores_in_headers "drop", the default): an upstream that reads
    // names as CGI does would take X_Auth_Subject or X_Forwarded_For for the gateway's own. "allow" passes them, but
    // never an x_auth_ spelling of the identity prefix. Over HTTP/1.1 and HTTP/2.
    @Test func underscoredFieldsCannotPassForTheGatewaysOwn() async throws {
        let sent = [("X_Auth_Subject", "admin"), ("x-auth_consumer", "admin"), ("X_Forwarded_For", "6.6.6.6"), ("X_Legacy", "1"), ("X-Kept", "yes")]
        try await withUpstreams { upstreams in
            let h2c = { (json: String) in json.replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#) }
            try await withGateway(h2c(basicConfig()), upstreams: upstreams) { gateway in
                let echoed = try await gateway.request("GET", "/echo", headers: sent).echoedHeaders
                #expect(echoed["x-kept"] == "yes")
                let underscored = echoed.keys.filter { $0.contains("_") || $0.hasPrefix("x-auth") }
                #expect(underscored.isEmpty, "\(underscored)")
                let client = try await H2Client.connect(port: gateway.port)
                let overH2 = try await client.request("GET", "/echo", headers: sent)
                await client.close()
                let h2Headers = (try JSONSerialization.jsonObject(with: Data(overH2.bytes)) as? [String: Any])?["headers"] as? [String: String] ?? [:]
                let h2Underscored = h2Headers.keys.filter { $0.contains("_") }
                #expect(h2Headers["x-kept"] == "yes" && h2Underscored.isEmpty, "\(h2Headers)")
            }
            try await withGateway(h2c(basicConfig(limits: #"{ "underscores_in_headers": "allow" }"#)), upstreams: upstreams) { gateway in
                let echoed = try await gateway.request("GET", "/echo", headers: sent).echoedHeaders
                #expect(echoed["x_legacy"] == "1" && echoed["x_forwarded_for"] == "6.6.6.6")
                #expect(echoed["x_auth_subject"] == nil && echoed["x-auth_consumer"] == nil)
            }
        }
    }

    // Dot segments, encoded dots, doubled slashes and case changes cannot reach /admin without its key;
    // the upstream sees the normalised path that was matched; encoded slashes, bad escapes and fragments are 400.
    @Test func pathTricksCannotBypassARoute() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: Self.protectedRoutes, top: Self.top), upstreams: upstreams) { test in
                for attack in ["/public/../admin/x", "/public/%2e%2e/admin/x", "/public/%2E%2E/admin/x", "//admin/x", "/ADMIN/x",
                               "/./admin/x", "/Admin/x", "/public/..%2fadmin/x"] {
                    let response = try await test.request("GET", attack)
                    #expect([401, 400].contains(response.status), "\(attack) -> \(response.status)")
                }
                #expect(try await test.request("GET", "/admin%2Fx").status == 400)
                #expect(try await test.request("GET", "/a%zz").status == 400)
                #expect(try await test.request("GET", "/a%00b").status == 400)
                // A fragment is never sent: "/admin#" is not under /admin for the route table (the segment is "admin#"),
                // but a backend dropping the fragment would serve /admin to the public route's caller.
                for attack in ["/admin#", "/admin#x", "/admin?#x"] {
                    let fragment = try await test.request("GET", attack)
                    #expect(fragment.status == 400, "\(attack) -> \(fragment.status)")
                    #expect(fragment.errorCode == "BAD_REQUEST")
                }
                let normalised = try await test.request("GET", "/public/./a/../b//c?q=%2e%2e")
                #expect(normalised.json["uri"] as? String == "/public/b/c?q=%2e%2e")
                let keyed = try await test.request("GET", "/public/../admin/x", headers: [("X-API-Key", "demo-key-not-for-production")])
                #expect(keyed.status == 200)
                #expect(keyed.json["path"] as? String == "/admin/x")
            }
        }
    }
}

/// Request smuggling and parser edge cases: raw bytes in, the expected answer out, and nothing ambiguous
/// ever reaching the upstream.
@Suite struct SmugglingTests {
    /// (name, raw request, expected status; nil: the gateway just closes).
    static let rejected: [(String, String, Int?)] = [
        ("CL and TE", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE and CL", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
        ("two differing CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
        ("CL list", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcde", 400),
        ("CL sign", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", 400),
        ("TE not chunked last", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
        ("TE gzip", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd", 400),
        ("TE identity", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\nabcd", 400),
        ("TE in HTTP/1.0", "POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("obs-fold", "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", 400),
        ("bare CR", "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
        ("bare LF", "GET /echo HTTP/1.1\nHost: x\n\n", 400),
        ("NUL in value", "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n", 400),
        ("control in name", "GET /echo HTTP/1.1\r\nHost: x\r\nX\u{1}A: a\r\n\r\n", 400),
        ("space before colon", "GET /echo HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("bad chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400),
        ("huge chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nab\r\n0\r\n\r\n", 400),
        ("wrapping chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nBBBBBBBBBBBBBBBB\r\nab\r\n0\r\n\r\n", 400),
        ("two Host", "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("Host with a space", "GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("Host with userinfo", "GET /echo HTTP/1.1\r\nHost: evil.example@x\r\n\r\n", 400),
        ("Host with a path", "GET /echo HTTP/1.1\r\nHost: x/../reset\r\n\r\n", 400),
        ("Host with a bad port", "GET /echo HTTP/1.1\r\nHost: x:8o\r\n\r\n", 400),
        ("absolute form with a bad port", "GET http://x:99999/echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("no Host", "GET /echo HTTP/1.1\r\nX-A: a\r\n\r\n", 400),
        ("double space", "GET  /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("bad method", "G(T /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("HTTP/2 in HTTP/1 framing", "GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    ]

    @Test(arguments: rejected.indices) func rejectedAndClosed(_ index: Int) async throws {
        let (name, raw, status) = Self.rejected[index]
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { test in
                let before = upstreams[0].requestsServed
                let client = try await test.connect()
                try await client.send(raw)
                if let status {
                    let response = try await client.readResponse()
                    #expect(response.status == status, "\(name)")
                    #expect(response.errorCode == "BAD_REQUEST", "\(name)")
                }
                #expect(await client.waitForClose(timeout: .seconds(5)), "\(name): the connection closes")
                #expect(upstreams[0].requestsServed == before, "\(name): nothing reached the upstream")
                await client.close()
            }
        }
    }

    // Well-formed but unusual requests are accepted and sent upstream in one canonical form.
    @Test func canonicalForwarding() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { test in
                let client = try await test.connect()
                // Chunked with an extension and a trailer, "Chunked" in odd case: the upstream gets the same bytes.
                try await client.send(
                    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
                let chunked = try await client.readResponse()
                #expect(chunked.status == 200)
                #expect(chunked.json["body"] as? String == "abcde")
                // Absolute form: its authority replaces Host.
                try await client.send("GET http://other.example/echo?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                let absolute = try await client.readResponse()
                #expect(absolute.echoedHeaders["host"] == "other.example")
                #expect(absolute.json["uri"] as? String == "/echo?q=1")
                // IPv6 literals, ports and a trailing dot are valid Host values.
                for host in ["[::1]:8080", "Example.COM.", "example.com:"] {
                    try await client.send("GET /echo HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                    let valid = try await client.readResponse()
                    #expect(valid.status == 200, "\(host)")
                    #expect(valid.echoedHeaders["host"] == host)
                }
                // Pipelined requests are answered in order.
                try await client.send("GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
                let first = try await client.readResponse()
                let second = try await client.readResponse()
                #expect(first.json["uri"] as? String == "/echo?n=1")
                #expect(second.json["uri"] as? String == "/echo?n=2")
                await client.close()
            }
        }
    }
}

/// Abuse limits, with real sockets.
@Suite struct AbuseLimitTests {
    static func config(_ limits: String) -> String { basicConfig(limits: limits, top: #""admin": { "address": "127.0.0.1", "port": 0 },"#) }

    // max_connections_per_ip: the next connection from the same address is closed at once, and counted.
    @Test func connectionsPerAddress() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(#"{ "max_connections_per_ip": 2 }"#), upstreams: upstreams) { test in
                var held: [RawClient] = []
                for _ in 0..<2 {
                    let client = try await test.connect()
                    try await client.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                    #expect(try await client.readResponse().status == 200)
                    held.append(client)
                }
                let refused = try await test.connect()
                #expect(await refused.waitForClose(timeout: .seconds(5)))
                await held[0].close()
                // The gateway frees the slot once it has seen that close (not within a fixed time on a busy machine).
                let deadline = ContinuousClock.now + .seconds(5)
                while test.gateway.openConnections > 1 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
                let again = try await test.connect()
                try await again.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await again.readResponse().status == 200)
                await again.close()
                await held[1].close()
                let metrics = PrometheusText(try await OperationsTests.admin(test.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_connections_rejected_total", ["listener": "test", "reason": "max_connections_per_ip"]) == 1)
            }
        }
    }

    // max_connections over all clients.
    @Test func connectionsOverall() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(#"{ "max_connections": 1 }"#), upstreams: upstreams) { test in
                let first = try await test.connect()
                try await first.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await first.readResponse().status == 200)
                let second = try await test.connect()
                #expect(await second.waitForClose(timeout: .seconds(5)))
                await first.close()
            }
        }
    }

    // max_requests_per_connection: the last allowed answer says close, then the connection ends.
    @Test func requestsPerConnection() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(#"{ "max_requests_per_connection": 3 }"#), upstreams: upstreams) { test in
                let client = try await test.connect()
                for index in 1...3 {
                    try await client.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                    let response = try await client.readResponse()
                    #expect(response.status == 200)
                    #expect((response.header("connection") == "close") == (index == 3))
                }
                #expect(await client.waitForClose(timeout: .seconds(5)))
            }
        }
    }

    // max_header_count: 431.
    @Test func headerCount() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(#"{ "max_header_count": 10 }"#), upstreams: upstreams) { test in
                let many = (0..<20).map { "X-H\($0): v" }
                let response = try await test.request("GET", "/echo", headers: many.map { line in
                    let parts = line.split(separator: ":", maxSplits: 1)
                    return (String(parts[0]), String(parts[1]).trimmingCharacters(in: .whitespaces))
                })
                #expect(response.status == 431)
                #expect(try await test.request("GET", "/echo").status == 200)
            }
        }
    }

    // body_timeout_ms: a client that stops sending its body gets 408 and is disconnected; a slow upstream
    // that makes the gateway stop reading does not count against the client.
    @Test(.timeLimit(.minutes(1))) func slowBody() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(#"{ "body_timeout_ms": 2000 }"#), upstreams: upstreams) { test in
                let client = try await test.connect()
                try await client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
                let started = ContinuousClock.now
                let response = try await client.readResponse(timeout: .seconds(8))
                #expect(response.status == 408)
                #expect(response.errorCode == "REQUEST_TIMEOUT")
                #expect(ContinuousClock.now - started < .seconds(6))
                #expect(await client.waitForClose(timeout: .seconds(3)))
                // A body that keeps coming, a little at a time within the limit, is fine.
                let steady = try await test.connect()
                try await steady.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n")
                for _ in 0..<3 {
                    try await Task.sleep(for: .milliseconds(300))
                    try await steady.send("0123456789")
                }
                let done = try await steady.readResponse()
                #expect(done.status == 200)
                #expect(done.json["bytes"] as? Int == 30)
                await steady.close()
            }
        }
    }

    // Malformed HTTP/2 header blocks (RFC 9113 §8.2, §8.3) never reach the upstream as a request: each gets a 400 on
    // its stream (or, for bad trailers, RST_STREAM PROTOCOL_ERROR), and the connection goes on serving. A header
    // value with CR LF is the classic way to smuggle a field (or a whole request) into the HTTP/1.1 upstream.
    @Test func malformedHTTP2HeaderBlocksAreRefused() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig().replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port, validating: false)
                let base = [(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "test.local")]
                #expect(try await client.sendHeaderBlock(base) == .response(status: 200))
                #expect(try await client.sendHeaderBlock(base + [("te", "trailers")]) == .response(status: 200))
                let malformed: [(String, [(String, String)])] = [
                    ("upper-case name", base + [("X-Upper", "1")]),
                    ("CR LF in a value", base + [("x-note", "a\r\nx-injected: 1")]),
                    ("LF in a value", base + [("x-note", "a\nx-injected: 1")]),
                    ("NUL in a value", base + [("x-note", "a\u{0}b")]),
                    ("space in a name", base + [("bad name", "1")]),
                    ("connection field", base + [("connection", "close")]),
                    ("transfer-encoding", base + [("transfer-encoding", "chunked")]),
                    ("te other than trailers", base + [("te", "gzip")]),
                    ("pseudo-header after a field", [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/echo")]),
                    ("duplicate :path", base + [(":path", "/other")]),
                    ("unknown pseudo-header", base + [(":tenant", "a")]),
                    ("extended CONNECT's :protocol", base + [(":protocol", "websocket")]),
                    ("no :scheme", [(":method", "GET"), (":path", "/echo"), (":authority", "test.local")]),
                    ("empty :path", [(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "test.local")]),
                    ("space in :path", [(":method", "GET"), (":scheme", "http"), (":path", "/echo HTTP/1.1"), (":authority", "test.local")]),
                    ("CR LF in :authority", [(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "a\r\nx: 1")]),
                ]
                for (label, fields) in malformed {
                    let outcome = try await client.sendHeaderBlock(fields)
                    #expect(outcome == .response(status: 400), "\(label): \(outcome)")
                }
                let badTrailers = try await client.sendHeaderBlock(
                    [(":method", "POST"), (":scheme", "http"), (":path", "/echo"), (":authority", "test.local")], trailers: [(":path", "/x")])
                #expect(badTrailers == .reset(.protocolError), "\(badTrailers)")
                #expect(try await client.sendHeaderBlock(base) == .response(status: 200))
                await client.close()
            }
        }
    }

    // HPACK (RFC 7541): a response's cookies are never put in the connection's shared compression table (§7.1.3: one
    // response's secret could be probed through another's size), values that change every response (date, request
    // id) are not put there either, and the fields that repeat are.
    @Test func http2ResponseFieldIndexing() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig().replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port)
                let fields = try await client.responseFields(
                    [(":method", "GET"), (":scheme", "http"), (":path", "/status/200?set_cookie=session%3Dsecret"), (":authority", "test.local")])
                await client.close()
                let indexing = Dictionary(fields.map { ($0.name, $0.indexing) }, uniquingKeysWith: { first, _ in first })
                #expect(indexing["set-cookie"] == .neverIndexed, "\(fields)")
                #expect(indexing["x-request-id"] == .nonIndexable)
                #expect(indexing["date"] == .nonIndexable)
                #expect(indexing["x-content-type-options"] == .indexable)
            }
        }
    }

    // http2_max_concurrent_streams is what the gateway announces in its SETTINGS.
    @Test func http2StreamLimitIsAnnounced() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig(limits: #"{ "http2_max_concurrent_streams": 7 }"#)
                .replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { test in
                let result = try await shell("nghttp -nv http://127.0.0.1:\(test.port)/echo", timeout: .seconds(30))
                #expect(result.stdout.contains("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7"), "\(result.stdout)")
                #expect(result.stdout.contains(":status: 200"))
            }
        }
    }

    // HTTP/2 rapid reset (CVE-2023-44487): a client opening and cancelling streams in a loop is cut off with GOAWAY.
    @Test(.timeLimit(.minutes(1))) func http2RapidReset() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig().replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { test in
                let client = try await test.connect()
                var bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
                bytes += Self.frame(type: 0x4, flags: 0, stream: 0, payload: [])  // SETTINGS
                // HPACK: :method GET, :scheme http, :path /, :authority x (literal, indexed name 1).
                let block: [UInt8] = [0x82, 0x86, 0x84, 0x41, 0x01, UInt8(ascii: "x")]
                for index in 0..<400 {
                    let stream = UInt32(1 + 2 * index)
                    bytes += Self.frame(type: 0x1, flags: 0x5, stream: stream, payload: block)  // HEADERS, END_STREAM|END_HEADERS
                    bytes += Self.frame(type: 0x3, flags: 0, stream: stream, payload: [0, 0, 0, 0x8])  // RST_STREAM CANCEL
                }
                try? await client.send(bytes: bytes)
                #expect(await client.waitForClose(timeout: .seconds(10)), "the connection is cut off")
                // A GOAWAY frame (type 7) came before the close.
                let received = client.pendingBytes
                #expect(Self.containsFrame(type: 0x7, in: received))
            }
        }
    }

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF), type, flags,
                UInt8((stream >> 24) & 0x7F), UInt8((stream >> 16) & 0xFF), UInt8((stream >> 8) & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    static func containsFrame(type: UInt8, in bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset + 9 <= bytes.count {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            if bytes[offset + 3] == type { return true }
            offset += 9 + length
        }
        return false
    }
}
