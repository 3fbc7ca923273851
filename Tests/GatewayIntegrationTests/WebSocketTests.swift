import DemoUpstream
import Foundation
import GatewayApp
import Testing
import TestSupport

/// A minimal WebSocket client (RFC 6455) over `RawClient`: the handshake, masked frames out, frames in.
struct WebSocketClient {
    /// The RFC 6455 §1.3 example key and the accept value it must produce.
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="
    static let expectedAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    let raw: RawClient

    /// Sends the opening handshake and returns the client with the response head (status line first).
    static func open(port: Int, path: String = "/ws", headers: String = "") async throws -> (WebSocketClient, String) {
        let raw = try await RawClient.connect(port: port)
        try await raw.send(
            "GET \(path) HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\(headers)\r\n")
        return (WebSocketClient(raw: raw), try await raw.readHead())
    }

    /// One masked frame (clients must mask).
    func send(opcode: UInt8, _ payload: [UInt8]) async throws {
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        let mask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try await raw.send(bytes: frame)
    }

    func sendText(_ text: String) async throws { try await send(opcode: 0x1, Array(text.utf8)) }

    /// The next frame from the server (unmasked, as servers send).
    func receive() async throws -> (opcode: UInt8, payload: [UInt8]) {
        let header = try await raw.readBytes(2)
        var length = Int(header[1] & 0x7F)
        if length == 126 {
            let extended = try await raw.readBytes(2)
            length = Int(extended[0]) << 8 | Int(extended[1])
        } else if length == 127 {
            let extended = try await raw.readBytes(8)
            length = extended.reduce(0) { $0 << 8 | Int($1) }
        }
        return (header[0] & 0x0F, try await raw.readBytes(length))
    }

    func receiveText() async throws -> String {
        let frame = try await receive()
        return String(decoding: frame.payload, as: UTF8.self)
    }
}

extension String {
    /// A header's value in a raw response head ("Name: value" lines), case-insensitive.
    func headerValue(_ name: String) -> String? {
        for line in split(separator: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() { return parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }
}

/// WebSocket (and any HTTP/1.1 Upgrade) through the gateway: routed, authenticated and rate limited on the
/// handshake, then a transparent tunnel both ways until either side closes.
@Suite struct WebSocketTests {
    // The handshake passes the gateway (101 with the upstream's accept key, the request id added), messages
    // echo both ways (small, 64 KiB and 1 MiB frames), ping gets pong, and a close ends both connections.
    @Test(.timeLimit(.minutes(1))) func echoThroughTheGateway() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { test in
                let (socket, head) = try await WebSocketClient.open(port: test.port)
                #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
                #expect(head.headerValue("upgrade")?.lowercased() == "websocket")
                #expect(head.headerValue("connection")?.lowercased() == "upgrade")
                #expect(head.headerValue("sec-websocket-accept") == WebSocketClient.expectedAccept)
                let requestID = head.headerValue("x-request-id")
                #expect(requestID != nil)

                for message in ["hello", "through", "the gateway"] {
                    try await socket.sendText(message)
                    #expect(try await socket.receiveText() == message)
                }
                for size in [65_536, 1 << 20] {
                    let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                    try await socket.send(opcode: 0x2, payload)
                    let echoed = try await socket.receive()
                    #expect(echoed.opcode == 0x2)
                    #expect(echoed.payload == payload, "\(size) bytes")
                }
                try await socket.send(opcode: 0x9, Array("ping".utf8))
                let pong = try await socket.receive()
                #expect(pong.opcode == 0xA)
                #expect(pong.payload == Array("ping".utf8))

                try await socket.send(opcode: 0x8, [0x03, 0xE8])
                #expect(try await socket.receive().opcode == 0x8)
                #expect(await socket.raw.waitForClose(timeout: .seconds(15)), "the upstream closed, so does the client's side")

                let log = try #require(await test.logs.accessEntry(requestID: requestID ?? "-"))
                #expect(log["status"] as? Int == 101)
                #expect(log["route"] as? String == "all")
                #expect(log["completed"] == nil)
            }
        }
    }

    // An upgrade the upstream declines is an ordinary response, and the connection stays usable; a request
    // to upgrade to h2c is forwarded as a plain request.
    @Test func declinedUpgradeIsAnOrdinaryExchange() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(), upstreams: upstreams) { test in
                let (socket, head) = try await WebSocketClient.open(port: test.port, path: "/echo")
                #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")
                let length = Int(head.headerValue("content-length") ?? "") ?? 0
                let body = try await socket.raw.readBytes(length)
                let echoed = (try JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
                let headers = echoed?["headers"] as? [String: String] ?? [:]
                #expect(headers["upgrade"] == "websocket", "the upgrade was asked of the upstream")
                try await socket.raw.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await socket.raw.readResponse().status == 200)
                await socket.raw.close()

                let h2c = try await test.request("GET", "/echo", headers: [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
                #expect(h2c.status == 200)
                #expect(h2c.echoedHeaders["upgrade"] == nil)
                #expect(h2c.echoedHeaders["http2-settings"] == nil)
            }
        }
    }

    // The handshake goes through routing, authentication and rate limits like any request.
    @Test func handshakeIsAuthenticatedAndLimited() async throws {
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "live", "match": { "path_prefix": "/ws" }, "upstream": "demo", "auth": { "require": ["api_key"] },
                   "rate_limits": [{ "name": "per-ip", "algorithm": "token_bucket", "key": "ip", "capacity": 1, "refill_per_second": 0.001 }] }]
                """#
            let top = #""auth": { "api_keys": [{ "id": "demo", "sha256": "\#(OperationsTests.demoKeyHash)" }] },"#
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { test in
                let (anonymous, refused) = try await WebSocketClient.open(port: test.port)
                #expect(refused.hasPrefix("HTTP/1.1 401"), "\(refused)")
                await anonymous.raw.close()

                let key = "X-API-Key: demo-key-not-for-production\r\n"
                let (socket, head) = try await WebSocketClient.open(port: test.port, headers: key)
                #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
                try await socket.sendText("authenticated")
                #expect(try await socket.receiveText() == "authenticated")
                #expect(head.headerValue("x-ratelimit-remaining") == "0")

                let (second, limited) = try await WebSocketClient.open(port: test.port, headers: key)
                #expect(limited.hasPrefix("HTTP/1.1 429"), "\(limited)")
                await second.raw.close()
                await socket.raw.close()
            }
        }
    }

    // A WebSocket opened before a reload keeps echoing after it; the client closing ends the upstream side.
    @Test(.timeLimit(.minutes(1))) func survivesReload() async throws {
        try await withUpstreams(2) { upstreams in
            let before = OperationsTests.config(routes: #"[{ "name": "old", "upstream": "a" }]"#)
            try await OperationsTests.withFileGateway(before, upstreams: upstreams) { gateway, file, _ in
                let port = try #require(gateway.port(of: "test"))
                let (socket, head) = try await WebSocketClient.open(port: port)
                #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
                try await socket.sendText("before")
                #expect(try await socket.receiveText() == "before")

                try file.write(OperationsTests.config(routes: #"[{ "name": "new", "upstream": "b" }]"#), upstreams: upstreams)
                #expect(try await OperationsTests.admin(gateway, "/reload", method: "POST").status == 200)
                #expect(try await OperationsTests.get(port, "/echo").json["upstream"] as? String == "b")

                try await socket.sendText("after")
                #expect(try await socket.receiveText() == "after")
                await socket.raw.close()
                let deadline = ContinuousClock.now + .seconds(5)
                while gateway.openConnections > 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
                #expect(gateway.openConnections == 0)
            }
        }
    }

    // tunnel_idle_timeout_ms: a tunnel that talks stays open past the timeout; one quiet for that long is closed
    // (both sides), logged, and still a complete 101 exchange; a route's 0 keeps its tunnels however quiet.
    @Test(.timeLimit(.minutes(1))) func idleTunnelsAreClosed() async throws {
        let routes = #"""
            [{ "name": "patient", "match": { "path_prefix": "/patient" }, "upstream": "demo", "strip_prefix": "/patient", "tunnel_idle_timeout_ms": 0 },
             { "name": "all", "upstream": "demo" }]
            """#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, limits: #"{ "tunnel_idle_timeout_ms": 400 }"#), upstreams: upstreams) { test in
                let (socket, head) = try await WebSocketClient.open(port: test.port)
                #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
                let (patient, patientHead) = try await WebSocketClient.open(port: test.port, path: "/patient/ws")
                #expect(patientHead.hasPrefix("HTTP/1.1 101"), "\(patientHead)")
                var lastTraffic = ContinuousClock.now
                for index in 0..<6 {  // 900 ms of traffic, more than twice the timeout
                    try await Task.sleep(for: .milliseconds(150))
                    try await socket.sendText("message \(index)")
                    #expect(try await socket.receiveText() == "message \(index)")
                    lastTraffic = ContinuousClock.now
                }
                #expect(!socket.raw.isClosed, "traffic keeps the tunnel open")
                #expect(await socket.raw.waitForClose(timeout: .seconds(5)))
                let quietFor = ContinuousClock.now - lastTraffic
                #expect(quietFor >= .milliseconds(350), "closed \(quietFor) after the last message")
                #expect(!patient.raw.isClosed, "the route without an idle timeout keeps its tunnel")
                try await patient.sendText("still here")
                #expect(try await patient.receiveText() == "still here")

                #expect(test.logs.entries("tunnel closed after its idle timeout").count == 1)
                let requestID = head.headerValue("x-request-id") ?? "-"
                let log = try #require(await test.logs.accessEntry(requestID: requestID))
                #expect(log["status"] as? Int == 101)
                #expect(log["completed"] == nil)
                await patient.raw.close()
            }
        }
    }
}
