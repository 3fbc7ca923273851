import DemoUpstream
import Foundation
import NIOSSL
import TestSupport
import Testing

/// Upstream targets that speak HTTP/2 (`"protocol": "h2"`): h2c with prior knowledge and TLS with ALPN,
/// against a real HTTP/2 server (the demo upstream on SwiftNIO's HTTP/2 stack) on 127.0.0.1.
@Suite struct UpstreamHTTP2Tests {
    static func config(target: String, upstreamExtra: String = "", limits: String = "{}") -> String {
        basicConfig(targets: target, limits: limits, upstreamExtra: #", "protocol": "h2""# + upstreamExtra)
    }

    // Requests from HTTP/1.1 clients reach the upstream as HTTP/2 streams with the right pseudo-headers, and
    // many concurrent requests share one upstream connection.
    @Test func forwardsOverH2CAndMultiplexes() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#)) { gateway in
            let response = try await gateway.request("GET", "/echo/x?q=1", headers: [("X-Custom", "yes"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1")])
            #expect(response.status == 200, "\(response)")
            #expect(response.json["version"] as? String == "HTTP/2.0")
            #expect(response.json["uri"] as? String == "/echo/x?q=1")
            let headers = try #require(response.json["headers"] as? [String: String])
            #expect(headers["host"] == "test.local", ":authority carries the client's Host")
            #expect(headers["x-custom"] == "yes")
            #expect(headers["x-hop"] == nil, "a header the Connection field names is hop-by-hop")
            #expect(headers["connection"] == nil)

            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<40 { group.addTask { try await gateway.request("GET", "/echo/\(index)").status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 40))
            #expect(upstream.connectionsAccepted == 1, "every request was a stream on one connection")
            #expect(upstream.requestsServed == 41)
        }
    }

    // gRPC through the gateway: an HTTP/2 client's call reaches an HTTP/2 upstream with `te: trailers`, and the
    // upstream's trailers (grpc-status, grpc-message) come back as the stream's last HEADERS, after the body.
    @Test func grpcCallsKeepTheirTrailers() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        let json = Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#).replacingOccurrences(
            of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
        try await withGateway(json) { gateway in
            let client = try await H2Client.connect(port: gateway.port)
            // One length-prefixed gRPC message: uncompressed, 5 bytes.
            let message: [UInt8] = [0, 0, 0, 0, 5] + Array("hello".utf8)
            let grpcHeaders = [("content-type", "application/grpc"), ("te", "trailers")]
            let ok = try await client.request("POST", "/grpc", headers: grpcHeaders, body: message)
            #expect(ok.status == 200)
            #expect(ok.header("content-type") == "application/grpc")
            #expect(ok.header("x-request-te") == "trailers", "TE: trailers is asked of the upstream again")
            #expect(ok.bytes == message)
            #expect(ok.trailer("grpc-status") == "0")
            #expect(ok.trailer("grpc-message") == "OK")
            let failed = try await client.request("POST", "/grpc?grpc_status=5", headers: grpcHeaders, body: message)
            #expect(failed.trailer("grpc-status") == "5")
            // Without TE: trailers the upstream is not told that the client takes them.
            let plain = try await client.request("POST", "/grpc", headers: [("content-type", "application/grpc")], body: message)
            #expect(plain.header("x-request-te") == "")
            await client.close()
        }
        // An HTTP/1.1 client gets the body; trailers are not sent to it.
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#)) { gateway in
            let response = try await gateway.request("POST", "/grpc", headers: [("TE", "trailers")], body: "hello")
            #expect(response.status == 200)
            #expect(response.text == "hello")
            #expect(response.header("x-request-te") == "", "an HTTP/1.1 client's TE is not passed on")
            #expect(response.complete)
        }
    }

    // A gRPC client's grpc-timeout ends the call at its deadline (504 instead of waiting on the upstream); the
    // field means nothing on other requests.
    @Test(.timeLimit(.minutes(1))) func grpcTimeoutIsHonoured() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#)) { gateway in
            let started = ContinuousClock.now
            let cut = try await gateway.request(
                "POST", "/slow?ms=\(TestTime.ms(5000))", headers: [("Content-Type", "application/grpc"), ("grpc-timeout", "\(TestTime.ms(300))m")],
                body: "x")
            let waited = ContinuousClock.now - started
            #expect(cut.status == 504 && cut.errorCode == "UPSTREAM_TIMEOUT")
            #expect(waited < TestTime.duration(ms: 4000), "ended at the client's deadline, not the upstream's answer")
            let plain = try await gateway.request("GET", "/slow?ms=\(TestTime.ms(400))", headers: [("grpc-timeout", "1m")])
            #expect(plain.status == 200, "not a gRPC request: the field is the upstream's business")
        }
    }

    // health_check.grpc_service: an h2 target is checked with the gRPC health protocol; NOT_SERVING takes it out
    // (logged with what it said), SERVING puts it back.
    @Test func grpcHealthChecks() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        let check = #", "health_check": { "grpc_service": "orders.v1.Orders", "interval_ms": 100, "timeout_ms": 500, "unhealthy_threshold": 2, "healthy_threshold": 2 }"#
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#, upstreamExtra: check)) { gateway in
            func healthy() -> Bool? { gateway.gateway.upstreams.targetStates().first?.healthy }
            let serving = try await gateway.request("GET", "/echo")
            #expect(serving.status == 200)
            upstream.behaviour.healthStatus.store(503, ordering: .relaxed)
            try await waitUntil { healthy() == false }
            let detail = gateway.logs.entries("upstream target unhealthy").first?["last_check"] as? String
            #expect(detail == "gRPC health: NOT_SERVING", "\(gateway.logs.entries("upstream target unhealthy"))")
            let out = try await gateway.request("GET", "/echo")
            #expect(out.status == 503)
            upstream.behaviour.healthStatus.store(200, ordering: .relaxed)
            try await waitUntil { healthy() == true }
            #expect(try await gateway.request("GET", "/echo").status == 200)
        }
    }

    // grpc_web: a browser's gRPC-Web call over HTTP/1.1 reaches the HTTP/2 upstream as gRPC, and the answer comes
    // back with the trailers as the body's last frame; the -text variant is base64 both ways.
    @Test func grpcWebIsTranslated() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        let routes = #"[{ "name": "web", "upstream": "demo", "grpc_web": true }]"#
        let json = basicConfig(targets: #""http://127.0.0.1:\#(upstream.port)""#, routes: routes, upstreamExtra: #", "protocol": "h2""#)
        try await withGateway(json) { gateway in
            let message: [UInt8] = [0, 0, 0, 0, 5] + Array("hello".utf8)
            let block = Array("grpc-status:0\r\ngrpc-message:OK\r\n".utf8)
            let trailerFrame: [UInt8] = [0x80, 0, 0, 0, UInt8(block.count)] + block
            let binary = try await gateway.request(
                "POST", "/grpc", headers: [("Content-Type", "application/grpc-web+proto"), ("X-Grpc-Web", "1")],
                body: String(decoding: message, as: UTF8.self))
            #expect(binary.status == 200)
            #expect(binary.header("content-type") == "application/grpc-web+proto")
            #expect(binary.header("content-length") == nil, "a trailer frame follows the upstream's body")
            #expect(binary.header("x-request-content-type") == "application/grpc+proto")
            #expect(binary.header("x-request-te") == "trailers")
            #expect(binary.body == message + trailerFrame)

            let text = try await gateway.request(
                "POST", "/grpc", headers: [("Content-Type", "application/grpc-web-text"), ("Accept", "application/grpc-web-text")],
                body: Self.base64(message))
            #expect(text.status == 200)
            #expect(text.header("content-type") == "application/grpc-web-text")
            #expect(text.header("x-request-content-type") == "application/grpc")
            #expect(text.text == Self.base64(message + trailerFrame))

            let broken = try await gateway.request("POST", "/grpc", headers: [("Content-Type", "application/grpc-web-text")], body: "AAAA!!!!")
            #expect(broken.status == 400)
            #expect(broken.errorCode == "BAD_REQUEST")

            // Anything else on the route passes as it is.
            let plain = try await gateway.request("POST", "/grpc", headers: [("Content-Type", "application/json")], body: "{}")
            #expect(plain.header("x-request-content-type") == "application/json")
            #expect(plain.header("content-type") == "application/grpc")
            #expect(plain.text == "{}")
        }
    }

    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    // Bodies stream both ways through HTTP/2 flow control: a 20 MB download and an 8 MiB upload, on a client
    // connection that is reused afterwards; a HEAD and an empty 204 keep their framing.
    @Test func streamsLargeBodiesBothWays() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        let json = Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#, limits: #"{ "max_body_bytes": 100000000 }"#)
        try await withGateway(json) { gateway in
            let client = try await gateway.connect()
            try await ConnectionTests.expectLargeBodiesStream(on: client)

            try await client.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            let chunked = try await client.readResponse()
            #expect(chunked.json["bytes"] as? Int == 5)

            try await client.send("HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try await client.readResponse(head: true)
            #expect(head.status == 200)
            #expect(head.header("content-length") == "1000")

            try await client.send("GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n")
            let empty = try await client.readResponse()
            #expect(empty.status == 204)
            #expect(empty.body.isEmpty)
            await client.close()
        }
        #expect(upstream.connectionsAccepted == 1)
    }

    // TLS to an h2 target: ALPN negotiates h2 and the certificate is verified against ca_file; an upstream
    // that offers only http/1.1 is refused (502 JSON), not spoken to in the wrong protocol.
    @Test func negotiatesH2OverTLS() async throws {
        let pki = try TestPKI(name: "upstream-h2")
        let cert = try pki.issueServer("backend", names: ["backend.test", "127.0.0.1"])
        func serverContext(alpn: [String]) throws -> NIOSSLContext {
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(cert.cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: cert.key, format: .pem)))
            configuration.applicationProtocols = alpn
            return try NIOSSLContext(configuration: configuration)
        }
        let secure = try await DemoUpstream.start(name: "h2-tls", tls: try serverContext(alpn: ["h2"]), http2: true)
        let http1Only = try await DemoUpstream.start(name: "h1-tls", tls: try serverContext(alpn: ["http/1.1"]))
        defer {
            Task {
                await secure.shutdown()
                await http1Only.shutdown()
            }
        }
        let tls = #", "tls": { "ca_file": "\#(pki.caFile)", "server_name": "backend.test" }"#
        try await withGateway(Self.config(target: #""https://127.0.0.1:\#(secure.port)""#, upstreamExtra: tls)) { gateway in
            let response = try await gateway.request("GET", "/echo")
            #expect(response.status == 200, "\(response)")
            #expect(response.json["upstream"] as? String == "h2-tls")
            #expect(response.json["version"] as? String == "HTTP/2.0")
        }
        try await withGateway(Self.config(target: #""https://127.0.0.1:\#(http1Only.port)""#, upstreamExtra: tls)) { gateway in
            let response = try await gateway.request("GET", "/echo")
            #expect(response.status == 502)
            #expect(response.errorCode == "UPSTREAM_UNAVAILABLE")
            #expect(http1Only.requestsServed == 0)
        }
        // Untrusted certificate: refused as for HTTP/1.1 targets.
        try await withGateway(Self.config(target: #""https://127.0.0.1:\#(secure.port)""#)) { gateway in
            let response = try await gateway.request("GET", "/echo")
            #expect(response.status == 502)
        }
    }

    // Resilience works the same on h2 targets: a dead target is retried on the live one, a slow answer hits
    // the read timeout (504), a retryable status is retried, and active health checks run over HTTP/2.
    @Test func retriesTimeoutsAndHealthChecks() async throws {
        let live = try await DemoUpstream.start(name: "live", http2: true)
        let sick = try await DemoUpstream.start(name: "sick", http2: true)
        defer {
            Task {
                await live.shutdown()
                await sick.shutdown()
            }
        }
        let dead = try await DemoUpstream.start(name: "dead", http2: true)
        let deadPort = dead.port
        await dead.shutdown()

        let targets = #""http://127.0.0.1:\#(deadPort)", "http://127.0.0.1:\#(live.port)""#
        try await withGateway(Self.config(target: targets, upstreamExtra: #", "retries": { "attempts": 1, "backoff_ms": 0 }"#)) { gateway in
            for _ in 0..<4 {
                let response = try await gateway.request("GET", "/echo")
                #expect(response.status == 200)
                #expect(response.json["upstream"] as? String == "live")
            }
        }
        // 1 s: far above what a loaded machine takes to start an answer, far below the 3 s of /slow.
        let timeout = #", "read_timeout_ms": \#(TestTime.ms(1000))"#
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(live.port)""#, upstreamExtra: timeout)) { gateway in
            let slow = try await gateway.request("GET", "/slow?ms=\(TestTime.ms(3000))")
            #expect(slow.status == 504)
            #expect(slow.errorCode == "UPSTREAM_TIMEOUT")
        }

        sick.behaviour.failStatus.store(503, ordering: .relaxed)
        let health = #", "health_check": { "path": "/healthz", "interval_ms": 100, "timeout_ms": \#(TestTime.ms(2000)), "unhealthy_threshold": 1, "healthy_threshold": 1 }"#
        let pair = #""http://127.0.0.1:\#(sick.port)", "http://127.0.0.1:\#(live.port)""#
        try await withGateway(Self.config(target: pair, upstreamExtra: #", "retries": { "attempts": 1, "backoff_ms": 0 }"# + health)) { gateway in
            for _ in 0..<4 {
                let response = try await gateway.request("GET", "/echo")
                #expect(response.status == 200, "a 503 from sick is retried on live")
            }
            sick.behaviour.healthStatus.store(503, ordering: .relaxed)
            try await waitUntil { gateway.gateway.upstreams.targetStates().first { $0.target.hasSuffix(":\(sick.port)") }?.healthy == false }
            sick.behaviour.healthStatus.store(200, ordering: .relaxed)
            try await waitUntil { gateway.gateway.upstreams.targetStates().first { $0.target.hasSuffix(":\(sick.port)") }?.healthy == true }
        }
    }

    // A client that leaves mid-download resets only its stream: the upstream connection keeps serving.
    @Test func clientLeavingResetsOnlyItsStream() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#)) { gateway in
            let leaving = try await gateway.connect()
            try await leaving.send("GET /bytes/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            _ = try await leaving.readBytes(100_000)
            await leaving.close()
            let after = try await gateway.request("GET", "/echo")
            #expect(after.status == 200)
            #expect(upstream.connectionsAccepted == 1)
        }
    }

    // An HTTP/2 connection without streams closes after pool.idle_timeout_ms; the next request opens a new one.
    // (Reuse while busy is forwardsOverH2CAndMultiplexes; here only the count across the idle pause matters, so a
    // loaded machine that pauses between requests cannot fail it.)
    @Test func idleConnectionClosesAndReopens() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        let json = Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#, upstreamExtra: #", "pool": { "idle_timeout_ms": \#(TestTime.ms(200)) }"#)
        try await withGateway(json) { gateway in
            #expect(try await gateway.request("GET", "/echo").status == 200)
            let before = upstream.connectionsAccepted
            try await Task.sleep(for: TestTime.duration(ms: 800))
            #expect(try await gateway.request("GET", "/echo").status == 200)
            #expect(upstream.connectionsAccepted == before + 1, "the idle connection was closed and a new one opened")
        }
    }

    // GOAWAY from the upstream: the stream it took is answered, the ones above its last stream id are sent
    // again on a new connection (without `retries`: the upstream says it did not process them), and later
    // requests use the new connection.
    @Test func goAwayMovesToANewConnection() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        upstream.behaviour.goAwayAtRequest.store(10, ordering: .relaxed)
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#)) { gateway in
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                // Answers take 1.5 s, so all 20 are in flight when request 10 brings the GOAWAY, even on a loaded machine.
                for _ in 0..<20 { group.addTask { try await gateway.request("GET", "/slow?ms=\(TestTime.ms(1500))").status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 20))
            #expect(upstream.connectionsAccepted == 2)
            #expect(upstream.requestsServed >= 29, "requests 2-10 reached the upstream twice: dropped by GOAWAY, then sent again")
            #expect(try await gateway.request("GET", "/echo").status == 200)
            #expect(upstream.connectionsAccepted == 2)
        }
    }

    // Clients that stop reading pause only their own streams: another download on the same upstream
    // connection goes on.
    @Test func stalledClientDoesNotHoldUpOthers() async throws {
        let upstream = try await DemoUpstream.start(name: "h2", http2: true)
        defer { Task { await upstream.shutdown() } }
        try await withGateway(Self.config(target: #""http://127.0.0.1:\#(upstream.port)""#)) { gateway in
            var stalled: [RawClient] = []
            for _ in 0..<4 {
                let client = try await RawClient.connect(port: gateway.port, reading: false)
                try await client.send("GET /bytes/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
                stalled.append(client)
            }
            try await Task.sleep(for: .milliseconds(300))
            let reader = try await gateway.connect()
            try await reader.send("GET /bytes/4000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try await reader.readResponse(timeout: TestTime.seconds(10))
            #expect(response.body.count == 4_000_000)
            #expect(upstream.connectionsAccepted == 1, "all on one HTTP/2 connection")
            await reader.close()
            for client in stalled { await client.close() }
        }
    }
}
