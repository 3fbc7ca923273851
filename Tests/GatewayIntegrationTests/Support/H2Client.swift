import NIOCore
import NIOConcurrencyHelpers
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import Synchronization

/// An HTTP/2 client (h2c, prior knowledge) that keeps one connection and sends requests on it whenever
/// the test says, so a test can pause between streams (curl 7.88 cannot reuse a prior-knowledge connection).
final class H2Client: Sendable {
    struct Response: Sendable {
        var status: Int
        var bytes: [UInt8]
        var headers: [(name: String, value: String)] = []
        /// The trailer fields of the last HEADERS frame, if the response had them.
        var trailers: [(name: String, value: String)] = []
        /// Interim (1xx) responses that came first, in order.
        var interim: [(status: Int, headers: [(name: String, value: String)])] = []

        var body: String { String(decoding: bytes, as: UTF8.self) }

        func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name }?.value }
        func trailer(_ name: String) -> String? { trailers.first { $0.name.lowercased() == name }?.value }
    }

    let channel: Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer

    private init(channel: Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
        self.channel = channel
        self.multiplexer = multiplexer
    }

    /// `validating: false` lets the client send header blocks HTTP/2 forbids (for `sendHeaderBlock`).
    static func connect(port: Int, validating: Bool = true) async throws -> H2Client {
        let box = NIOLockedValueBox<NIOHTTP2Handler.StreamMultiplexer?>(nil)
        let configuration = {
            var configuration = NIOHTTP2Handler.ConnectionConfiguration()
            if !validating { configuration.headerBlockValidation = .disabled }
            return configuration
        }()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: configuration, streamConfiguration: .init()
                    ) { stream in stream.eventLoop.makeSucceededVoidFuture() }
                    box.withLockedValue { $0 = multiplexer }
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        guard let multiplexer = box.withLockedValue({ $0 }) else { throw ChannelError.inappropriateOperationForState }
        return H2Client(channel: channel, multiplexer: multiplexer)
    }

    /// One GET on a new stream of the same connection.
    func get(_ path: String) async throws -> Response { try await request("GET", path) }

    /// One request (with a body when given) on a new stream of the same connection.
    func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) async throws -> Response {
        let promise = channel.eventLoop.makePromise(of: Response.self)
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .http))
                try stream.pipeline.syncOperations.addHandler(Collector(promise: promise))
            }
        }.get()
        // The authority is test.local unless the headers name another Host.
        var fields = HTTPHeaders([("host", headers.first { $0.0.lowercased() == "host" }?.1 ?? "test.local")])
        for (name, value) in headers where name.lowercased() != "host" { fields.add(name: name, value: value) }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: fields)
        stream.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { stream.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        try await stream.writeAndFlush(HTTPClientRequestPart.end(nil))
        return try await promise.futureResult.get()
    }

    func close() async { try? await channel.close() }

    /// Sends a GET on a new stream that then reads nothing: its window is never credited, so the gateway may send
    /// at most a window's worth of the answer (a client that stopped reading, at the HTTP/2 level).
    func getWithoutReading(_ path: String, headers: [(String, String)] = []) async throws {
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .http))
            }
        }.get()
        var fields = HTTPHeaders([("host", "test.local")])
        for (name, value) in headers { fields.add(name: name, value: value) }
        stream.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: fields)), promise: nil)
        try await stream.writeAndFlush(HTTPClientRequestPart.end(nil))
    }

    /// What a stream opened with a raw header block got back.
    enum Outcome: Equatable, Sendable {
        case response(status: Int)
        case reset(HTTP2ErrorCode)
    }

    /// Opens a stream with exactly these fields, in this order (pseudo-headers included, nothing added or
    /// lowercased), then, unless `trailers` is nil, a DATA frame and a second header block ending the stream.
    func sendHeaderBlock(_ fields: [(String, String)], trailers: [(String, String)]? = nil) async throws -> Outcome {
        let promise = channel.eventLoop.makePromise(of: Outcome.self)
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(OutcomeCollector(promise: promise))
            }
        }.get()
        let block = HPACKHeaders(fields.map { ($0.0, $0.1) })
        if let trailers {
            stream.write(HTTP2Frame.FramePayload.headers(.init(headers: block)), promise: nil)
            stream.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: "body")))), promise: nil)
            let ending = HPACKHeaders(trailers.map { ($0.0, $0.1) })
            try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: ending, endStream: true)))
        } else {
            try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: block, endStream: true)))
        }
        return try await promise.futureResult.get()
    }

    /// The final response head's fields as they were decoded, with how HPACK sent each (RFC 7541 §6.2: whether the
    /// gateway let the field into the connection's dynamic table).
    func responseFields(_ fields: [(String, String)]) async throws -> [(name: String, value: String, indexing: HPACKIndexing)] {
        let promise = channel.eventLoop.makePromise(of: Outcome.self)
        let collector = OutcomeCollector(promise: promise)
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(collector) }
        }.get()
        try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: HPACKHeaders(fields), endStream: true)))
        _ = try await promise.futureResult.get()
        return try await stream.eventLoop.submit { collector.fields }.get()
    }

    final class OutcomeCollector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        let promise: EventLoopPromise<Outcome>
        /// The first outcome counts (a response may be followed by a reset of the rest of the request).
        var done = false
        /// The final response head's fields (read on the stream's event loop).
        var fields: [(name: String, value: String, indexing: HPACKIndexing)] = []
        init(promise: EventLoopPromise<Outcome>) { self.promise = promise }

        private func finish(_ result: Result<Outcome, any Error>) {
            guard !done else { return }
            done = true
            promise.completeWith(result)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .headers(let headers):
                if let status = headers.headers.first(name: ":status").flatMap({ Int($0) }), status >= 200 {
                    if !done { fields = headers.headers.map { ($0.name, $0.value, $0.indexable) } }
                    finish(.success(.response(status: status)))
                }
            case .rstStream(let code): finish(.success(.reset(code)))
            default: break
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if let closed = error as? NIOHTTP2Errors.StreamClosed { finish(.success(.reset(closed.errorCode))) } else { finish(.failure(error)) }
        }

        func channelInactive(context: ChannelHandlerContext) { finish(.failure(ChannelError.eof)) }
    }

    final class Collector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Response>
        var status = 0
        var body: [UInt8] = []
        var headers: [(name: String, value: String)] = []
        var trailers: [(name: String, value: String)] = []
        var interim: [(status: Int, headers: [(name: String, value: String)])] = []

        init(promise: EventLoopPromise<Response>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head) where head.status.code < 200:
                interim.append((Int(head.status.code), head.headers.map { ($0.name, $0.value) }))
            case .head(let head):
                status = Int(head.status.code)
                headers = head.headers.map { ($0.name, $0.value) }
            case .body(let buffer): body += Array(buffer: buffer)
            case .end(let fields):
                trailers = fields.map { $0.map { ($0.name, $0.value) } } ?? []
                promise.succeed(Response(status: status, bytes: body, headers: headers, trailers: trailers, interim: interim))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.eof)
        }
    }
}
