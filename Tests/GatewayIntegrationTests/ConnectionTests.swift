import DemoUpstream
import Foundation
import Testing
import TestSupport

/// HTTP/1.1 connection behaviour: keep-alive, pipelining, bodies, 100-continue, HEAD, broken upstreams.
@Suite struct ConnectionTests {
    // A listener on a Unix socket (path, mode): requests through it are served as on any listener; the peer has no
    // address ("unix" in the log) and its X-Forwarded-For counts only with "unix:" in trusted_proxies; the socket file
    // has the mode asked for and goes when the gateway stops.
    @Test func unixSocketListeners() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gw-listen-\(UUID().uuidString.prefix(8)).sock").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withUpstreams { upstreams in
            for trusted in [false, true] {
                let json = basicConfig(top: trusted ? #""trusted_proxies": ["unix:"],"# : "")
                    .replacingOccurrences(
                        of: #"{ "name": "test", "address": "127.0.0.1", "port": 0 }"#,
                        with: #"{ "name": "test", "address": "127.0.0.1", "port": 0 }, { "name": "local", "path": "\#(path)", "mode": "0600" }"#)
                try await withGateway(json, upstreams: upstreams) { gateway in
                    let permissions = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
                    #expect(permissions == 0o600)
                    let result = try await shell(
                        "curl -s --unix-socket '\(path)' -H 'X-Request-ID: unix-\(trusted)' -H 'X-Forwarded-For: 203.0.113.7' http://local.test/echo")
                    #expect(result.stdout.contains(#""upstream":"#), "\(result.stdout) \(result.stderr)")
                    let entry = await gateway.logs.accessEntry(requestID: "unix-\(trusted)")
                    #expect(entry?["listener"] as? String == "local")
                    #expect(entry?["client_ip"] as? String == (trusted ? "203.0.113.7" : "unix"), "\(String(describing: entry))")
                }
                #expect(!FileManager.default.fileExists(atPath: path), "the socket file goes with the gateway")
            }
            // The next version binds the same path while the old one still runs: the old one, stopping, leaves the new
            // one's file alone.
            let json = basicConfig().replacingOccurrences(
                of: #"{ "name": "test", "address": "127.0.0.1", "port": 0 }"#,
                with: #"{ "name": "test", "address": "127.0.0.1", "port": 0 }, { "name": "local", "path": "\#(path)" }"#)
            try await withGateway(json, upstreams: upstreams) { _ in
                try await withGateway(json, upstreams: upstreams) { _ in }
                #expect(!FileManager.default.fileExists(atPath: path), "the newer gateway stopped, and its file went with it")
            }
            // Two processes: the older one stops while the newer one runs.
            let processJSON = json.replacingOccurrences(of: "$UP0", with: String(upstreams[0].port))
            let older = try GatewayProcess(config: processJSON)
            try await older.start()
            let newer = try GatewayProcess(config: processJSON)
            try await newer.start()
            older.terminate()
            #expect(await older.waitForExit(timeout: .seconds(10)) == 0)
            #expect(FileManager.default.fileExists(atPath: path), "the older gateway left the newer one's socket file")
            let result = try await shell("curl -s --unix-socket '\(path)' http://local.test/echo")
            #expect(result.stdout.contains(#""upstream":"#), "the newer gateway answers there: \(result.stdout)")
            newer.terminate()
            #expect(await newer.waitForExit(timeout: .seconds(10)) == 0)
            #expect(!FileManager.default.fileExists(atPath: path))
        }
    }

    // Many requests over keep-alive client connections reuse one pooled upstream connection.
    @Test func reusesUpstreamConnections() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                for _ in 0..<3 {
                    let client = try await gateway.connect()
                    for index in 0..<10 {
                        try await client.send("GET /echo?n=\(index) HTTP/1.1\r\nHost: x\r\n\r\n")
                        let response = try await client.readResponse()
                        #expect(response.status == 200)
                    }
                    await client.close()
                }
                #expect(upstreams[0].requestsServed == 30)
                #expect(upstreams[0].connectionsAccepted == 1)
                #expect(gateway.gateway.upstreamConnectionsOpened()["demo"] == 1)
            }
        }
    }

    // Pipelined requests written in one go are answered in order.
    @Test func answersPipelinedRequestsInOrder() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send(
                    "GET /slow?ms=150 HTTP/1.1\r\nHost: x\r\n\r\n"
                        + "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                        + "GET /nope-404 HTTP/1.1\r\nHost: x\r\n\r\n"
                        + "GET /echo?last=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                let first = try await client.readResponse()
                let second = try await client.readResponse()
                let third = try await client.readResponse()
                let fourth = try await client.readResponse()
                #expect(first.json["slept_ms"] as? Int == 150)
                #expect(second.json["body"] as? String == "hello")
                #expect(third.json["uri"] as? String == "/nope-404")
                #expect(fourth.json["uri"] as? String == "/echo?last=1")
                await client.close()
            }
        }
    }

    // A chunked request body is streamed upstream (re-chunked) and arrives whole.
    @Test func forwardsChunkedRequestBody() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                try await Task.sleep(for: .milliseconds(50))
                try await client.send("6\r\n world\r\n0\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 200)
                #expect(response.json["body"] as? String == "hello world")
                #expect(response.echoedHeaders["transfer-encoding"] == "chunked")
                #expect(response.echoedHeaders["content-length"] == nil)
                await client.close()
            }
        }
    }

    // Expect: 100-continue gets an interim 100 before the body is sent, then the real answer.
    @Test func expectContinue() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
                let interim = try await client.readResponse()
                #expect(interim.status == 100)
                try await client.send("data")
                let response = try await client.readResponse()
                #expect(response.status == 200)
                #expect(response.json["body"] as? String == "data")
                #expect(response.echoedHeaders["expect"] == nil)  // the gateway answered Expect itself
                await client.close()
            }
        }
    }

    // A too-large body announced with Expect is refused before the client sends it.
    @Test func expectContinueRefusedWhenTooLarge() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "max_body_bytes": 10 }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.status == 413)
                #expect(response.errorCode == "PAYLOAD_TOO_LARGE")
                #expect(await client.waitForClose())
                #expect(upstreams[0].requestsServed == 0)
            }
        }
    }

    // HEAD gets the upstream's headers (Content-Length included) and no body; the connection stays usable.
    @Test func headRequests() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
                let head = try await client.readResponse(head: true)
                #expect(head.status == 200)
                #expect(head.header("content-length") == "1000")
                try await client.send("GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n")
                let next = try await client.readResponse()
                #expect(next.text == "xxxxxxxxxx")
                await client.close()
            }
        }
    }

    // A response without Content-Length is re-chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones.
    @Test func framesResponsesForClientVersion() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /stream?chunks=3&interval_ms=10 HTTP/1.1\r\nHost: x\r\n\r\n")
                let chunked = try await client.readResponse()
                #expect(chunked.header("transfer-encoding") == "chunked")
                #expect(chunked.text == "chunk 0\nchunk 1\nchunk 2\n")
                await client.close()

                let old = try await gateway.connect()
                try await old.send("GET /stream?chunks=2&interval_ms=10 HTTP/1.0\r\nHost: x\r\n\r\n")
                #expect(await old.waitForClose())
                let response = try await old.readResponse()
                #expect(response.header("transfer-encoding") == nil)
                #expect(response.text == "chunk 0\nchunk 1\n")
            }
        }
    }

    // Large bodies stream both ways with Content-Length and chunked framing.
    @Test func streamsLargeBodies() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "max_body_bytes": 100000000 }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await Self.expectLargeBodiesStream(on: client)
                await client.close()
            }
        }
    }

    /// A 20 MB download, then an 8 MiB upload, on one client connection (through a gateway on the demo upstream).
    static func expectLargeBodiesStream(on client: RawClient) async throws {
        try await client.send("GET /bytes/20000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        let download = try await client.readResponse(timeout: .seconds(60))
        #expect(download.status == 200)
        #expect(download.body.count == 20_000_000)
        #expect(download.complete)

        let chunk = [UInt8](repeating: 0x61, count: 1 << 20)
        try await client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(8 << 20)\r\n\r\n")
        for _ in 0..<8 { try await client.send(bytes: chunk) }
        let upload = try await client.readResponse(timeout: .seconds(60))
        #expect(upload.json["bytes"] as? Int == 8 << 20)
    }

    // An upstream that dies mid-body breaks the client response (connection closed, body short), never a silent truncation.
    @Test func upstreamAbortBreaksClientResponse() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /abort?after=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(await client.waitForClose())
                let response = try await client.readResponse()
                #expect(response.status == 200)
                #expect(response.header("content-length") == "1048576")
                #expect(!response.complete)
                #expect(response.body.count < 1_048_576)
                let id = try #require(response.header("x-request-id"))
                let log = try #require(await gateway.logs.accessEntry(requestID: id))
                #expect(log["completed"] as? Bool == false)
            }
        }
    }

    // An idle keep-alive connection is closed after idle_timeout_ms.
    @Test func closesIdleConnections() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(limits: #"{ "idle_timeout_ms": \#(TestTime.ms(300)) }"#), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                _ = try await client.readResponse()
                try await Task.sleep(for: TestTime.duration(ms: 100))
                #expect(!client.isClosed)
                #expect(await client.waitForClose(timeout: TestTime.seconds(3)))
            }
        }
    }

    // Connection: close from the client is honoured after the response.
    @Test func connectionCloseFromClient() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { gateway in
                let client = try await gateway.connect()
                try await client.send("GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                let response = try await client.readResponse()
                #expect(response.header("connection") == "close")
                #expect(await client.waitForClose())
            }
        }
    }
}
