import GatewayHTTP
import NIOCore
import NIOPosix
import NIOSSL

/// A one-shot HTTP/1.1 request for the gateway's own needs (JWKS documents, OTLP exports): a fresh
/// connection, `Connection: close`, the response read to the end with the gateway's own parser, bounded in
/// size and time. https verifies the server against the system trust store.
public enum HTTPFetch {
    public struct Response: Sendable {
        public var status: Int
        public var headers: HeaderList
        public var body: [UInt8]
    }

    public enum FetchError: Error, CustomStringConvertible {
        case badURL(String)
        case tooLarge
        case timedOut
        case incomplete

        public var description: String {
            switch self {
            case .badURL(let url): return "cannot fetch \(url)"
            case .tooLarge: return "the response is larger than allowed"
            case .timedOut: return "timed out"
            case .incomplete: return "the connection closed before a complete response"
            }
        }
    }

    public struct Target: Sendable {
        public let https: Bool
        public let host: String
        public let port: Int
        public let path: String
    }

    public static func parse(_ url: String) -> Target? {
        let https: Bool
        let rest: Substring
        if url.hasPrefix("https://") {
            https = true
            rest = url.dropFirst(8)
        } else if url.hasPrefix("http://") {
            https = false
            rest = url.dropFirst(7)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let path = authorityEnd == rest.endIndex ? "/" : String(rest[authorityEnd...])
        var host = String(authority)
        var port = https ? 443 : 80
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { guard let value = Int(after.dropFirst()) else { return nil }; port = value }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let value = Int(authority[authority.index(after: colon)...]) else { return nil }
            port = value
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        return Target(https: https, host: host, port: port, path: path)
    }

    public static func get(_ url: String, on eventLoop: EventLoop, timeout: TimeAmount, maxBytes: Int) -> EventLoopFuture<Response> {
        request("GET", url, headers: [("Accept", "application/json")], on: eventLoop, timeout: timeout, maxBytes: maxBytes)
    }

    /// Sends `method` with `body` (Content-Length framed when present) and reads the whole response. `tls`: the context for
    /// an https URL when the server is not to be verified against the system trust store (a private CA).
    public static func request(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8]? = nil, on eventLoop: EventLoop,
        timeout: TimeAmount, maxBytes: Int, tls custom: NIOSSLContext? = nil
    ) -> EventLoopFuture<Response> {
        guard let target = parse(url) else { return eventLoop.makeFailedFuture(FetchError.badURL(url)) }
        let hostHeader = target.host.contains(":") ? "[\(target.host)]" : target.host
        let defaultPort = target.https ? 443 : 80
        var head = "\(method) \(target.path) HTTP/1.1\r\nHost: \(hostHeader)\(target.port == defaultPort ? "" : ":\(target.port)")\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "User-Agent: gateway\r\nConnection: close\r\n\r\n"
        let request = Array(head.utf8) + (body ?? [])
        let tls: NIOSSLContext?
        do {
            tls = target.https ? try custom ?? NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        let serverName = target.host.contains(":") || target.host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : target.host
        return OneShotExchange.run(
            host: target.host, port: target.port, on: eventLoop, timeout: timeout, timeoutError: FetchError.timedOut,
            tls: tls.map { ($0, serverName) }
        ) { promise in
            FetchHandler(request: request, maxBytes: maxBytes, promise: promise)
        }
    }
}

/// Writes the request, collects the response until the server closes, then parses it.
private final class FetchHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let request: [UInt8]
    private let maxBytes: Int
    private let promise: EventLoopPromise<HTTPFetch.Response>
    private var input = ByteBuffer()

    init(request: [UInt8], maxBytes: Int, promise: EventLoopPromise<HTTPFetch.Response>) {
        self.request = request
        self.maxBytes = maxBytes
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard input.readableBytes + bytes.readableBytes <= maxBytes + 65_536 else {
            promise.fail(HTTPFetch.FetchError.tooLarge)
            context.close(promise: nil)
            return
        }
        input.writeBuffer(&bytes)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.completeWith(Result { try parse() })
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    private func parse() throws -> HTTPFetch.Response {
        var parser = HTTP1HeadParser(maxHeadBytes: 65_536, maxFields: 256)
        guard let response = try parser.parseResponse(&input, requestMethod: .GET) else { throw HTTPFetch.FetchError.incomplete }
        var decoder = BodyDecoder(framing: response.framing)
        var body: [UInt8] = []
        reading: while true {
            guard let event = try decoder.next(&input) else {
                guard try decoder.endOfInput() == .end else { throw HTTPFetch.FetchError.incomplete }
                break
            }
            switch event {
            case .data(let slice):
                body += slice.readableBytesView
                guard body.count <= maxBytes else { throw HTTPFetch.FetchError.tooLarge }
            case .end:
                break reading
            }
        }
        return HTTPFetch.Response(status: response.head.status, headers: response.head.headers, body: body)
    }
}
