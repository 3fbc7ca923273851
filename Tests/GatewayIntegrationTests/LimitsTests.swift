import DemoUpstream
import Foundation
import NIOCore
import NIOPosix
import Testing

/// Client limits and upstream failures, each answered with the JSON error body.
@Suite struct LimitsTests {
    // send_timeout_ms: a client that stops reading an answer under way is disconnected once it has taken nothing for
    // that long, which frees the upstream connection it held (one allowed here: the next request gets it) and logs why.
    @Test func clientsThatStopReadingAreDisconnected() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig(
                limits: #"{ "send_timeout_ms": \#(TestTime.ms(300)) }"#, upstreamExtra: #", "max_connections": 1, "max_pending_requests": 0"#,
                top: #""admin": { "address": "127.0.0.1", "port": 0 },"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let stalled = try await RawClient.connect(port: gateway.port, reading: false)
                try await stalled.send("GET /bytes/64000000 HTTP/1.1\r\nHost: x\r\nX-Request-ID: stalled-1\r\n\r\n")
                try await Self.expectStalledAnswerIsCutOff(gateway, requestID: "stalled-1")
                let access = await gateway.logs.accessEntry(requestID: "stalled-1")
                #expect(access?["completed"] as? Bool == false && access?["status"] as? Int == 200, "\(String(describing: access))")
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_client_send_timeouts_total", ["route": "all"]) == 1)
                await stalled.close()
            }
        }
    }

    // The same at the HTTP/2 level: a stream whose window the client never credits. The gateway stops at the window
    // (the stream is not writable, so the upstream is paused rather than read into memory), and after send_timeout_ms
    // resets that stream, freeing the upstream connection.
    @Test func http2StreamsThatStopReadingAreReset() async throws {
        try await withUpstreams { upstreams in
            let json = basicConfig(
                limits: #"{ "send_timeout_ms": \#(TestTime.ms(300)) }"#, upstreamExtra: #", "max_connections": 1, "max_pending_requests": 0"#,
                top: #""admin": { "port": 0, "address": "127.0.0.1" },"#)
                .replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0, "h2c": true }"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port)
                try await client.getWithoutReading("/bytes/64000000", headers: [("x-request-id", "stalled-h2")])
                try await Self.expectStalledAnswerIsCutOff(gateway, requestID: "stalled-h2")
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_client_send_timeouts_total", ["route": "all"]) == 1)
                await client.close()
            }
        }
    }

    /// With the only upstream connection held by an answer nobody reads: other requests get 503 until
    /// send_timeout_ms cuts the stalled one off (logged with its request id), then 200.
    static func expectStalledAnswerIsCutOff(_ gateway: TestGateway, requestID: String) async throws {
        try await Task.sleep(for: .milliseconds(100))
        let busy = try await gateway.request("GET", "/echo")
        #expect(busy.status == 503, "the stalled answer holds the only upstream connection")
        let status = try await OperationsTests.poll(until: 200) { try await gateway.request("GET", "/echo").status }
        #expect(status == 200)
        let logged = gateway.logs.entries("client stopped reading the answer: disconnected")
        #expect(logged.first?["request_id"] as? String == requestID)
    }

    // Headers beyond max_header_bytes: 431 and close.
    @Test func oversizedHeadersAre431() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "max_header_bytes": 2048 }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 4000))\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 431)
                #expect(response.errorCode == "HEADERS_TOO_LARGE")
                #expect(response.errorRequestID == response.header("x-request-id"))
                #expect(response.header("x-content-type-options") == "nosniff")
                #expect(await client.waitForClose())
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // A request line longer than max_header_bytes: 414 (as NGINX answers it) and close.
    @Test func overlongTargetIs414() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "max_header_bytes": 2048 }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /echo?\(String(repeating: "q", count: 4000)) HTTP/1.1\r\nHost: x\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 414 && response.errorCode == "URI_TOO_LONG")
                #expect(await client.waitForClose())
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // A Content-Length over max_body_bytes is refused at once with 413.
    @Test func oversizedContentLengthIs413() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "max_body_bytes": 1000 }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 413)
                #expect(response.errorCode == "PAYLOAD_TOO_LARGE")
                #expect(await client.waitForClose())
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // A chunked body that grows past max_body_bytes mid-stream is cut off with 413.
    @Test func oversizedChunkedBodyIs413MidStream() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "max_body_bytes": 1000 }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                let chunk = String(repeating: "z", count: 600)
                try await client.send("258\r\n\(chunk)\r\n")
                try await client.send("258\r\n\(chunk)\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 413)
                #expect(response.errorCode == "PAYLOAD_TOO_LARGE")
                #expect(await client.waitForClose())
            }
        }
    }

    // A route's max_body_bytes replaces the global limit for that route, larger or smaller, for Content-Length and
    // chunked bodies alike.
    @Test func routeBodyLimits() async throws {
        let routes = #"""
            [{ "name": "uploads", "match": { "path_prefix": "/big" }, "upstream": "demo", "strip_prefix": "/big", "max_body_bytes": 100000 },
             { "name": "tiny", "match": { "path_prefix": "/tiny" }, "upstream": "demo", "strip_prefix": "/tiny", "max_body_bytes": 10 },
             { "name": "rest", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, limits: #"{ "max_body_bytes": 1000 }"#), upstreams: upstreams) { gateway in
                let body = String(repeating: "b", count: 5000)
                let big = try await gateway.request("POST", "/big/upload", body: body)
                #expect(big.status == 200)
                #expect(big.json["bytes"] as? Int == 5000)
                let rest = try await gateway.request("POST", "/upload", body: body)
                #expect(rest.status == 413)
                let tiny = try await gateway.request("POST", "/tiny/upload", body: "eleven byte")
                #expect(tiny.status == 413)

                let client = try await gateway.connect()
                try await client.send("POST /big/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                let chunk = String(repeating: "z", count: 3000)
                try await client.send("bb8\r\n\(chunk)\r\nbb8\r\n\(chunk)\r\n0\r\n\r\n")
                let chunked = try await client.readResponse()
                await client.close()
                #expect(chunked.status == 200)
                #expect(chunked.json["bytes"] as? Int == 6000)
            }
        }
    }

    // A request head that trickles in slower than header_timeout_ms gets 408 and the connection closes.
    @Test func slowHeadersAre408() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "header_timeout_ms": 300 }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /echo HTTP/1.1\r\nHost: x\r\n")
                try await Task.sleep(for: .milliseconds(100))
                try await client.send("X-Slow: 1\r\n")
                let response = try await client.readResponse(timeout: .seconds(5))
                #expect(response.status == 408)
                #expect(response.errorCode == "REQUEST_TIMEOUT")
                #expect(await client.waitForClose())
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // A connection that never sends a byte is closed too, on every kind of listener (plain, h2c, PROXY protocol):
    // the first bytes decide the pipeline there, and waiting for them must not hold the socket forever.
    @Test func silentConnectionsAreClosed() async throws {
        try await withUpstreams { upstreams in
            let config = basicConfig(limits: #"{ "header_timeout_ms": 300, "idle_timeout_ms": 300 }"#, top: #""trusted_proxies": ["127.0.0.1"],"#)
            for extra in ["", #", "h2c": true"#, #", "proxy_protocol": true"#] {
                let json = config.replacingOccurrences(of: #""port": 0 }"#, with: #""port": 0 \#(extra) }"#)
                try await withGateway(json, upstreams: upstreams) { gateway in
                    let client = try await gateway.connect()
                    #expect(await client.waitForClose(timeout: .seconds(5)), "listener extra: \(extra)")
                }
            }
        }
    }

    // Garbage and contradictory framing are 400 with the JSON body, then close.
    @Test func malformedRequestsAre400() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                for bad in [
                    "NOT HTTP AT ALL\r\n\r\n",
                    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                    "GET /echo HTTP/1.1\r\n\r\n",  // HTTP/1.1 without Host
                ] {
                    let client = try await gateway.connect()
                    try await client.send(bad)
                    let response = try await client.readResponse()
                    #expect(response.status == 400, "\(bad)")
                    #expect(response.errorCode == "BAD_REQUEST")
                    await client.close()
                }
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // Nothing listening on the target: 502 UPSTREAM_UNAVAILABLE, and the access log names the target.
    @Test func upstreamDownIs502() async throws {
        let port = try await unusedPort()
        try await withGateway(basicConfig(targets: "\"http://127.0.0.1:\(port)\"")) { gateway in
            let response = try await gateway.request("GET", "/echo")
            #expect(response.status == 502)
            #expect(response.errorCode == "UPSTREAM_UNAVAILABLE")
            #expect(!response.text.contains("\(port)"))  // no internals in the body
            let log = try await gateway.accessLog(for: response)
            #expect(log["upstream"] as? String == "127.0.0.1:\(port)")
            let failure = gateway.logs.entries("upstream connect failed").first
            #expect(failure?["request_id"] as? String == response.header("x-request-id"))
        }
    }

    // An upstream slower than read_timeout_ms: 504 UPSTREAM_TIMEOUT.
    @Test func slowUpstreamIs504() async throws {
        try await withUpstreams { upstreams in
            // 1 s: long enough that the follow-up request is not cut off on a loaded machine, far below the 5 s.
            let json = basicConfig(upstreamExtra: #", "read_timeout_ms": \#(TestTime.ms(1000))"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let started = ContinuousClock.now
                let response = try await gateway.request("GET", "/slow?ms=\(TestTime.ms(5000))", timeout: TestTime.seconds(10))
                #expect(response.status == 504)
                #expect(response.errorCode == "UPSTREAM_TIMEOUT")
                #expect(ContinuousClock.now - started < TestTime.seconds(4))
                // The gateway still serves normally afterwards.
                #expect(try await gateway.request("GET", "/echo").status == 200)
            }
        }
    }

    // The read timeout also applies between body reads of a response that stalls.
    @Test func stalledResponseBodyIsCutOff() async throws {
        try await withUpstreams { upstreams in
            // The head comes at once, the first chunk after 2 s: generous margins, as other tests load the machine.
            try await withGateway(basicConfig(upstreamExtra: #", "read_timeout_ms": \#(TestTime.ms(700))"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /stream?chunks=3&interval_ms=\(TestTime.ms(2000)) HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(await client.waitForClose(timeout: TestTime.seconds(5)))
                let response = try await client.readResponse()
                #expect(response.status == 200)
                #expect(!response.complete)
            }
        }
    }

    // total_timeout_ms bounds the whole exchange.
    @Test func totalTimeoutIs504() async throws {
        try await withUpstreams { upstreams in
            let extra = #", "read_timeout_ms": 5000, "total_timeout_ms": 300"#
            try await withGateway(basicConfig(upstreamExtra: extra), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", "/slow?ms=3000")
                #expect(response.status == 504)
                #expect(response.errorCode == "UPSTREAM_TIMEOUT")
            }
        }
    }

    // A route's read_timeout_ms / total_timeout_ms replace its upstream's for that route only.
    @Test func routeTimeouts() async throws {
        let routes = #"""
            [{ "name": "patient", "match": { "path_prefix": "/patient" }, "upstream": "demo", "strip_prefix": "/patient",
               "read_timeout_ms": \#(TestTime.ms(5000)) },
             { "name": "hasty", "match": { "path_prefix": "/hasty" }, "upstream": "demo", "strip_prefix": "/hasty",
               "total_timeout_ms": \#(TestTime.ms(300)) },
             { "name": "rest", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            let json = basicConfig(routes: routes, upstreamExtra: #", "read_timeout_ms": \#(TestTime.ms(300))"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let slow = "/slow?ms=\(TestTime.ms(1000))"
                let patient = try await gateway.request("GET", "/patient" + slow)
                #expect(patient.status == 200)
                let rest = try await gateway.request("GET", slow)
                #expect(rest.status == 504)
                #expect(rest.errorCode == "UPSTREAM_TIMEOUT")
                // The upstream's read timeout would also fire; the route's shorter total one answers first.
                let started = ContinuousClock.now
                let hasty = try await gateway.request("GET", "/hasty/slow?ms=\(TestTime.ms(5000))")
                #expect(hasty.status == 504)
                #expect(ContinuousClock.now - started < TestTime.seconds(3))
            }
        }
    }

    /// A port nothing listens on: bind one, note it, close it.
    private func unusedPort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }
}
