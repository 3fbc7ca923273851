import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// A deliberately dumb HTTP/1.1 client over a real TCP socket: it sends exactly the bytes a test
/// writes and parses exactly what comes back, so tests can pipeline, send malformed requests, stall
/// mid-head, or watch for the connection closing.
final class RawClient {
    struct TimeoutError: Error, CustomStringConvertible {
        let what: String
        var description: String { "timed out waiting for \(what)" }
    }

    final class Inbox: Sendable {
        struct State {
            var bytes: [UInt8] = []
            var closed = false
        }
        let state = NIOLockedValueBox(State())
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let inbox: Inbox
        init(inbox: Inbox) { self.inbox = inbox }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            inbox.state.withLockedValue { $0.bytes.append(contentsOf: buffer.readableBytesView) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            inbox.state.withLockedValue { $0.closed = true }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    let channel: Channel
    private let inbox: Inbox

    private init(channel: Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    /// - Parameter reading: false makes a client that never reads (the server's writes back up, as with a stalled reader).
    static func connect(port: Int, host: String = "127.0.0.1", reading: Bool = true) async throws -> RawClient {
        let inbox = Inbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelOption(.autoRead, value: reading)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(inbox: inbox))
                }
            }
            .connect(host: host, port: port)
            .get()
        return RawClient(channel: channel, inbox: inbox)
    }

    /// Connects over TLS and completes the handshake (throws when the server refuses it).
    /// `preamble`: bytes sent in the clear before the handshake (a load balancer's PROXY header).
    static func connectTLS(
        port: Int, configuration: TLSConfiguration, serverName: String? = nil, host: String = "127.0.0.1", preamble: [UInt8]? = nil
    ) async throws -> RawClient {
        let inbox = Inbox()
        let context = try NIOSSLContext(configuration: configuration)
        let handshake = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: handshake.futureResult.eventLoop)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let preamble { try channel.pipeline.syncOperations.addHandler(PreambleWriter(bytes: preamble)) }
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(HandshakeWatcher(promise: handshake))
                    try channel.pipeline.syncOperations.addHandler(Collector(inbox: inbox))
                }
            }
            .connect(host: host, port: port)
            .get()
        do {
            try await handshake.futureResult.get()
        } catch {
            try? await channel.close()
            throw error
        }
        return RawClient(channel: channel, inbox: inbox)
    }

    /// Writes its bytes as soon as the connection is up, ahead of anything the handlers after it send.
    final class PreambleWriter: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let bytes: [UInt8]
        init(bytes: [UInt8]) { self.bytes = bytes }

        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            context.fireChannelActive()
        }
    }

    /// The certificate the server presented (TLS connections).
    func peerCertificate() async throws -> NIOSSLCertificate? {
        let channel = self.channel
        return try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
        }.get()
    }

    /// Completes when the TLS handshake does, fails when the connection dies first.
    final class HandshakeWatcher: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let promise: EventLoopPromise<Void>
        init(promise: EventLoopPromise<Void>) { self.promise = promise }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case TLSUserEvent.handshakeCompleted = event { promise.succeed() }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.fireErrorCaught(error)
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)
            context.fireChannelInactive()
        }
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    func send(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func close() async {
        try? await channel.close()
    }

    var isClosed: Bool { inbox.state.withLockedValue { $0.closed } }

    /// Waits until the server closes the connection; returns false on timeout.
    func waitForClose(timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if isClosed { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return isClosed
    }

    /// Parses the next complete response. `head: true` for responses to HEAD (no body follows).
    func readResponse(head: Bool = false, timeout: Duration = .seconds(10)) async throws -> TestResponse {
        let deadline = ContinuousClock.now + timeout
        while true {
            let closed = isClosed
            let parsed: TestResponse? = inbox.state.withLockedValue { state in
                guard let (response, consumed) = TestResponse.parse(state.bytes, isHead: head, closed: closed) else {
                    return nil
                }
                state.bytes.removeFirst(consumed)
                return response
            }
            if let parsed { return parsed }
            if closed {
                throw TimeoutError(what: "a response, but the connection closed (unparsed: \(pendingText.prefix(200)))")
            }
            if ContinuousClock.now > deadline { throw TimeoutError(what: "a response (have: \(pendingText.prefix(200)))") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Waits for `count` raw bytes and takes them (for protocols after an upgrade).
    func readBytes(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let taken: [UInt8]? = inbox.state.withLockedValue { state in
                guard state.bytes.count >= count else { return nil }
                defer { state.bytes.removeFirst(count) }
                return Array(state.bytes[0..<count])
            }
            if let taken { return taken }
            if isClosed { throw TimeoutError(what: "\(count) bytes, but the connection closed") }
            if ContinuousClock.now > deadline { throw TimeoutError(what: "\(count) bytes") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Waits for a response head (through the blank line) and takes it, leaving what follows.
    func readHead(timeout: Duration = .seconds(10)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            let head: String? = inbox.state.withLockedValue { state in
                guard state.bytes.count >= 4 else { return nil }
                for index in 0...(state.bytes.count - 4) where Array(state.bytes[index..<index + 4]) == end {
                    defer { state.bytes.removeFirst(index + 4) }
                    return String(decoding: state.bytes[0..<index], as: UTF8.self)
                }
                return nil
            }
            if let head { return head }
            if isClosed { throw TimeoutError(what: "a response head, but the connection closed") }
            if ContinuousClock.now > deadline { throw TimeoutError(what: "a response head") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Bytes received so far and not yet parsed, raw.
    var pendingBytes: [UInt8] { inbox.state.withLockedValue { $0.bytes } }

    /// Bytes received so far and not yet parsed.
    var pendingText: String { inbox.state.withLockedValue { String(decoding: $0.bytes, as: UTF8.self) } }
}

/// One parsed HTTP/1.1 response.
struct TestResponse: CustomStringConvertible {
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// false when the body ended early (connection closed before Content-Length or the last chunk).
    var complete: Bool

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    func headers(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    /// The echo endpoint's view of the request headers.
    var echoedHeaders: [String: String] { json["headers"] as? [String: String] ?? [:] }

    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorRequestID: String? { (json["error"] as? [String: Any])?["request_id"] as? String }

    var description: String { "\(status) \(reason) \(headers) \(text.prefix(300))" }

    /// Returns the response and the number of bytes it used, or nil if more bytes are needed.
    static func parse(_ bytes: [UInt8], isHead: Bool, closed: Bool) -> (TestResponse, Int)? {
        guard let headEnd = find([13, 10, 13, 10], in: bytes, from: 0) else { return nil }
        let headText = String(decoding: bytes[..<headEnd], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        let headers = lines.compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var response = TestResponse(
            status: status, reason: statusLine.count > 2 ? String(statusLine[2]) : "", headers: headers, body: [],
            complete: true)
        var offset = headEnd + 4
        if isHead || status < 200 || status == 204 || status == 304 { return (response, offset) }
        if let length = response.header("content-length").flatMap(Int.init) {
            if bytes.count - offset >= length {
                response.body = Array(bytes[offset..<offset + length])
                return (response, offset + length)
            }
            guard closed else { return nil }
            response.body = Array(bytes[offset...])
            response.complete = false
            return (response, bytes.count)
        }
        if response.header("transfer-encoding")?.lowercased() == "chunked" {
            var body: [UInt8] = []
            while true {
                guard let lineEnd = find([13, 10], in: bytes, from: offset) else {
                    if closed {
                        response.body = body
                        response.complete = false
                        return (response, bytes.count)
                    }
                    return nil
                }
                let sizeText = String(decoding: bytes[offset..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
                offset = lineEnd + 2
                if size == 0 {
                    // Skip trailers up to the empty line.
                    guard let end = find([13, 10, 13, 10], in: bytes, from: offset - 2) else {
                        if closed {
                            response.body = body
                            response.complete = false
                            return (response, bytes.count)
                        }
                        return nil
                    }
                    response.body = body
                    return (response, end + 4)
                }
                guard bytes.count >= offset + size + 2 else {
                    if closed {
                        body.append(contentsOf: bytes[offset...])
                        response.body = body
                        response.complete = false
                        return (response, bytes.count)
                    }
                    return nil
                }
                body.append(contentsOf: bytes[offset..<offset + size])
                offset += size + 2
            }
        }
        // Delimited by close.
        guard closed else { return nil }
        response.body = Array(bytes[offset...])
        return (response, bytes.count)
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= needle.count, start >= 0, start <= bytes.count - needle.count else { return nil }
        var index = start
        while index <= bytes.count - needle.count {
            if bytes[index] == needle[0] && bytes[index..<index + needle.count].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}
