#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOConcurrencyHelpers
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

/// A small HTTP/1.1 upstream for the demo and the tests. It needs nothing beyond SwiftNIO. Started with
/// `http2: true` it speaks HTTP/2 instead (with prior knowledge, or after TLS whose ALPN offers "h2"); the
/// endpoints are the same, except `/ws`.
///
/// Endpoints (any other path echoes):
/// - `/echo` (any method): the request as JSON (method, path, version, headers, body size and text)
/// - `/healthz`: `{"status":"ok"}`
/// - `/bytes/N[?chunked=1&type=T]`: N bytes ("x"), streamed with backpressure (Content-Length unless chunked;
///   Content-Type T, default application/octet-stream)
/// - `/slow?ms=N`: answers after N milliseconds
/// - `/early-hints?link=L&count=N&ms=M`: N (1) `103 Early Hints` with `Link: L` (percent-decoded; a stylesheet by default),
///   `X-Hint: <number>`, `Set-Cookie` and `Server`, then a JSON 200 after M (50) milliseconds
/// - `/stream?chunks=N&interval_ms=M`: N chunks, M ms apart
/// - `/status/N`: that status with a small JSON body; `?html=1`: an HTML error page with a stack trace instead (what
///   a framework's debug mode shows), `?retry_after=S`: with `Retry-After: S`, `?location=URL` (percent-encoded): with
///   that `Location` (a redirect), `?set_cookie=C` (percent-encoded): with `Set-Cookie: C`; `?link=L` and
///   `?cache_control=V` (percent-encoded): with that `Link` (preloads) or `Cache-Control`
/// - `/abort?after=N`: promises 1 MiB, sends N bytes, then closes (a broken upstream)
/// - `/upload`: reads the body and answers `{"bytes":N}`
/// - `/hop`: a response carrying hop-by-hop and identity headers a proxy must remove
/// - `/stats`: connections accepted and requests served so far
/// - `/cacheable?cc=..&etag=..&last_modified=..&vary=..&cookie=1&allow_origin=..&surrogate_key=..&cache_tag=..&status=N&size=N&type=T`:
///   a response with those caching (and CORS) headers (query values percent-decoded) and a body naming the upstream and counting hits on this path;
///   answers 304 when If-None-Match matches the etag
/// - `/v1/traces`: keeps the body (an OTLP collector stand-in; `behaviour.collected`)
/// - `/auth`: an authorization service stand-in (for `external_auth`; each check's head goes to
///   `behaviour.authChecks`): `Authorization: Bearer alice-token` or the cookie `session=alice` is allowed (200 with
///   `X-Auth-Request-User: alice` and `X-Auth-Request-Email`), `Bearer forbidden` gets a bare 403, `Bearer broken` a
///   500; without credentials a browser (`Accept: text/html`) is sent to `/login?rd=<X-Forwarded-Uri>` (302), anyone
///   else gets 401 with `WWW-Authenticate` and a JSON body
/// - `/introspect`: an OAuth 2.0 token introspection endpoint (RFC 7662; each token asked about goes to
///   `behaviour.introspections`): the client `gateway:s3cret` in HTTP Basic, else 401; `token=alice-opaque` is active
///   (`sub` alice, scopes `orders:read orders:write`), `reporting-opaque` active for the client `reporting` (no `sub`),
///   `expired-opaque` active but past its `exp`, `broken` a 500; any other token `{"active":false}`
/// - `/token`: an OAuth 2.0 token endpoint stand-in for OpenID Connect logins: the client `gateway:s3cret` in HTTP
///   Basic, else 401; the form (percent-decoded) goes to `behaviour.tokenEndpoint`, whose status and JSON are the
///   answer (400 `invalid_grant` while it is nil)
/// - `/grpc`: a gRPC-shaped answer: 200 `application/grpc`, the request body back, then the trailers
///   `grpc-status: 0` and `grpc-message: OK` (`?grpc_status=N` for another status); `x-request-te` says what `TE`
///   the request came with, `x-request-content-type` its `Content-Type`
/// - `/grpc.health.v1.Health/Check`: the gRPC health protocol's answer, SERVING while `behaviour.healthStatus` is 200,
///   NOT_SERVING otherwise
/// - `/ws`: a WebSocket echo (text and binary messages come back as they were sent; pings are answered)
///
/// `behaviour` turns it into a sick upstream for resilience tests and demos: slow, failing, dropping
/// requests, or failing its health checks (all but `/stats` are affected).
public final class DemoUpstream: Sendable {
    public let name: String
    public let port: Int
    private let channel: Channel
    private let stats: Stats
    public let behaviour: Behaviour

    final class Stats: Sendable {
        let connections = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
    }

    /// How the upstream misbehaves; every setting can change while it runs.
    public final class Behaviour: Sendable {
        /// Delay before every answer except /healthz and /stats (0: none).
        public let delayMs = Atomic<Int>(0)
        /// Answer every request except /healthz and /stats with this status (0: behave).
        public let failStatus = Atomic<Int>(0)
        /// Close the connection after reading a request, without answering.
        public let dropRequests = Atomic<Bool>(false)
        /// The status /healthz answers.
        public let healthStatus = Atomic<Int>(200)
        /// Fixed JSON documents by path (a JWKS for the auth tests, say), served with Cache-Control: no-cache.
        public let documents = NIOLockedValueBox<[String: String]>([:])
        /// Requests /cacheable has answered (304s included).
        public let cacheableHits = Atomic<Int>(0)
        /// Over HTTP/2: the connection that carries request number N (counted from start) gets GOAWAY right after
        /// it, naming only the connection's first stream as processed: the others in flight are dropped (0: never).
        public let goAwayAtRequest = Atomic<Int>(0)
        /// Bodies POSTed to /v1/traces (the upstream standing in for an OpenTelemetry collector).
        public let collected = NIOLockedValueBox<[String]>([])
        /// Requests to /auth: the request line, then one `name: value` line per field.
        public let authChecks = NIOLockedValueBox<[String]>([])
        /// Tokens /introspect was asked about, in order.
        public let introspections = NIOLockedValueBox<[String]>([])
        /// What /token answers a form with (a test plays the OpenID provider here).
        public let tokenEndpoint = NIOLockedValueBox<(@Sendable ([String: String]) -> (status: Int, json: String))?>(nil)

        public init(delayMs: Int = 0, failStatus: Int = 0) {
            self.delayMs.store(delayMs, ordering: .relaxed)
            self.failStatus.store(failStatus, ordering: .relaxed)
        }
    }

    private init(name: String, port: Int, channel: Channel, stats: Stats, behaviour: Behaviour) {
        self.name = name
        self.port = port
        self.channel = channel
        self.stats = stats
        self.behaviour = behaviour
    }

    /// TCP connections accepted so far (lets tests prove keep-alive reuse).
    public var connectionsAccepted: Int { stats.connections.load(ordering: .relaxed) }
    public var requestsServed: Int { stats.requests.load(ordering: .relaxed) }

    public static func start(
        host: String = "127.0.0.1", port: Int = 0, name: String = "demo", behaviour: Behaviour = Behaviour(),
        tls: NIOSSLContext? = nil, http2: Bool = false, unixSocket: String? = nil, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> DemoUpstream {
        let stats = Stats()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                stats.connections.add(1, ordering: .relaxed)
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    if http2 {
                        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                            mode: .server, connectionConfiguration: .init(), streamConfiguration: .init()
                        ) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try stream.pipeline.syncOperations.addHandlers(
                                    HTTP2FramePayloadToHTTP1ServerCodec(), DemoHandler(name: name, stats: stats, behaviour: behaviour))
                            }
                        }
                        return
                    }
                    let demo = DemoHandler(name: name, stats: stats, behaviour: behaviour)
                    let webSocket = NIOWebSocketServerUpgrader(
                        maxFrameSize: 1 << 20,
                        shouldUpgrade: { channel, head in
                            channel.eventLoop.makeSucceededFuture(DemoHandler.split(head.uri).0 == "/ws" ? HTTPHeaders() : nil)
                        },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(WebSocketEcho())
                            }
                        })
                    let loopBoundDemo = NIOLoopBound(demo, eventLoop: channel.eventLoop)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (
                            upgraders: [webSocket],
                            completionHandler: { context in
                                context.pipeline.syncOperations.removeHandler(loopBoundDemo.value, promise: nil)
                            }
                        ),
                        withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(demo)
                }
            }
        // `unixSocket`: listens on that Unix domain socket path instead (replacing a stale socket file); `port` is then 0.
        let channel = try await (unixSocket.map { bootstrap.bind(unixDomainSocketPath: $0, cleanupExistingSocketFile: true) } ?? bootstrap.bind(host: host, port: port)).get()
        return DemoUpstream(name: name, port: channel.localAddress?.port ?? port, channel: channel, stats: stats, behaviour: behaviour)
    }

    public func shutdown() async {
        try? await channel.close()
    }
}

final class DemoHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let name: String
    private let stats: DemoUpstream.Stats
    private let behaviour: DemoUpstream.Behaviour
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var bodyBytes = 0
    /// Remaining bytes of a /bytes response, written as the socket drains.
    private var pendingBytes = 0
    private var chunk = ByteBuffer()

    init(name: String, stats: DemoUpstream.Stats, behaviour: DemoUpstream.Behaviour) {
        self.name = name
        self.stats = stats
        self.behaviour = behaviour
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
            bodyBytes = 0
        case .body(var buffer):
            bodyBytes += buffer.readableBytes
            if body.readableBytes < 65_536 { body.writeBuffer(&buffer) }  // echo at most 64 KiB back
        case .end:
            let number = stats.requests.add(1, ordering: .relaxed).newValue
            if number == behaviour.goAwayAtRequest.load(ordering: .relaxed) { goAway(context) }
            if let head { misbehave(head, context: context) }
        }
    }

    /// Sends GOAWAY on this stream's HTTP/2 connection, naming stream 1 as the last processed: every other
    /// stream of the connection is dropped unanswered.
    private func goAway(_ context: ChannelHandlerContext) {
        guard let parent = context.channel.parent else { return }
        let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: 1, errorCode: .noError, opaqueData: nil))
        parent.writeAndFlush(goAway, promise: nil)
    }

    /// Applies `behaviour` before answering normally.
    private func misbehave(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = Self.split(head.uri).0
        guard path != "/stats" && path != "/healthz" else { return respond(to: head, context: context) }
        if let document = behaviour.documents.withLockedValue({ $0[path] }) {
            var headers = HTTPHeaders()
            headers.add(name: "cache-control", value: "no-cache")
            return send(context, status: .ok, json: document, keepAlive: head.isKeepAlive, extra: headers)
        }
        if behaviour.dropRequests.load(ordering: .relaxed) {
            context.close(promise: nil)
            return
        }
        let failStatus = behaviour.failStatus.load(ordering: .relaxed)
        let delay = behaviour.delayMs.load(ordering: .relaxed)
        let answer = {
            if failStatus > 0 {
                self.send(
                    context, status: HTTPResponseStatus(statusCode: failStatus),
                    json: #"{"upstream":"\#(self.name)","status":\#(failStatus)}"#, keepAlive: head.isKeepAlive)
            } else {
                self.respond(to: head, context: context)
            }
        }
        if delay > 0 {
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(delay))) {
                if context.channel.isActive { answer() }
            }
        } else {
            answer()
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let (path, query) = Self.split(head.uri)
        let keepAlive = head.isKeepAlive
        switch path {
        case "/healthz":
            let status = behaviour.healthStatus.load(ordering: .relaxed)
            send(
                context, status: HTTPResponseStatus(statusCode: status),
                json: #"{"status":"\#(status == 200 ? "ok" : "failing")","upstream":"\#(name)"}"#, keepAlive: keepAlive)
        case "/stats":
            send(
                context, status: .ok,
                json: #"{"upstream":"\#(name)","connections_accepted":\#(stats.connections.load(ordering: .relaxed)),"requests":\#(stats.requests.load(ordering: .relaxed))}"#,
                keepAlive: keepAlive)
        case "/cacheable":
            cacheable(head, query: query, context: context, keepAlive: keepAlive)
        case "/v1/traces":
            behaviour.collected.withLockedValue { $0.append(String(buffer: body)) }
            send(context, status: .ok, json: "{}", keepAlive: keepAlive)
        case "/auth":
            authorize(head, context: context, keepAlive: keepAlive)
        case "/introspect":
            introspect(head, context: context, keepAlive: keepAlive)
        case "/token":
            guard head.method == .POST, head.headers["authorization"].first == "Basic Z2F0ZXdheTpzM2NyZXQ=" else {  // gateway:s3cret
                return send(context, status: .unauthorized, json: #"{"error":"invalid_client"}"#, keepAlive: keepAlive)
            }
            let form = Self.split("/?" + String(buffer: body)).1.mapValues(Self.percentDecoded)
            let (status, json) = behaviour.tokenEndpoint.withLockedValue { $0 }?(form) ?? (400, #"{"error":"invalid_grant"}"#)
            send(context, status: HTTPResponseStatus(statusCode: status), json: json, keepAlive: keepAlive)
        case "/grpc":
            var headers = HTTPHeaders([
                ("content-type", "application/grpc"), ("x-request-te", head.headers["te"].joined(separator: ", ")),
                ("x-request-content-type", head.headers["content-type"].joined(separator: ", ")),
            ])
            if !keepAlive { headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let status = query["grpc_status"] ?? "0"
            let trailers = HTTPHeaders([("grpc-status", status), ("grpc-message", status == "0" ? "OK" : "failed")])
            let done = context.writeAndFlush(wrapOutboundOut(.end(trailers)))
            if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        case "/grpc.health.v1.Health/Check":
            // The gRPC health protocol: SERVING (1) while `healthStatus` is 200, NOT_SERVING (2) otherwise.
            let serving: UInt8 = behaviour.healthStatus.load(ordering: .relaxed) == 200 ? 1 : 2
            var headers = HTTPHeaders([("content-type", "application/grpc")])
            if !keepAlive { headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: [0, 0, 0, 0, 2, 0x08, serving])))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(HTTPHeaders([("grpc-status", "0")]))))
            if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        case "/upload":
            send(context, status: .ok, json: #"{"upstream":"\#(name)","bytes":\#(bodyBytes)}"#, keepAlive: keepAlive)
        case "/hop":
            var headers = HTTPHeaders()
            headers.add(name: "Connection", value: "X-Hop-Secret")
            headers.add(name: "X-Hop-Secret", value: "must-not-pass")
            headers.add(name: "Keep-Alive", value: "timeout=5")
            headers.add(name: "Upgrade", value: "h2c")
            headers.add(name: "Trailer", value: "X-Checksum")
            headers.add(name: "X-End-To-End", value: "kept")
            send(context, status: .ok, json: #"{"upstream":"\#(name)"}"#, keepAlive: keepAlive, extra: headers)
        case "/early-hints":
            // Interim 103s (each with the Link, a cookie and the server's name, which a proxy must not pass), then the answer.
            let link = query["link"].map(Self.percentDecoded) ?? "</style.css>; rel=preload; as=style"
            for number in 1...max(1, min(Int(query["count"] ?? "") ?? 1, 10)) {
                let hints = HTTPHeaders([("link", link), ("x-hint", "\(number)"), ("set-cookie", "hint=1"), ("server", "demo")])
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: 103), headers: hints))), promise: nil)
            }
            let delay = Int64(query["ms"] ?? "") ?? 50
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(delay)) {
                self.send(context, status: .ok, json: #"{"upstream":"\#(self.name)","hinted":true}"#, keepAlive: keepAlive)
            }
        case "/slow":
            let delay = Int64(query["ms"] ?? "") ?? 1000
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(delay)) {
                self.send(context, status: .ok, json: #"{"upstream":"\#(self.name)","slept_ms":\#(delay)}"#, keepAlive: keepAlive)
            }
        case "/stream":
            streamChunks(context, count: Int(query["chunks"] ?? "") ?? 5, interval: Int64(query["interval_ms"] ?? "") ?? 100, keepAlive: keepAlive)
        case "/abort":
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: "1048576")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            let count = Int(query["after"] ?? "") ?? 1000
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(repeating: UInt8(ascii: "a"), count: count)))))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        default:
            if path.hasPrefix("/status/"), let code = Int(path.dropFirst(8)), (200...599).contains(code) {
                var headers = HTTPHeaders()
                if let seconds = query["retry_after"] { headers.add(name: "retry-after", value: seconds) }
                if let location = query["location"] { headers.add(name: "location", value: Self.percentDecoded(location)) }
                if let cookie = query["set_cookie"] { headers.add(name: "set-cookie", value: Self.percentDecoded(cookie)) }
                if let link = query["link"] { headers.add(name: "link", value: Self.percentDecoded(link)) }
                if let cacheControl = query["cache_control"] { headers.add(name: "cache-control", value: Self.percentDecoded(cacheControl)) }
                if query["html"] == "1" {
                    let page = "<html><body><h1>Internal error</h1><pre>Traceback: db.py line 42 in connect (password=hunter2)</pre></body></html>"
                    send(context, status: HTTPResponseStatus(statusCode: code), body: page, contentType: "text/html", keepAlive: keepAlive, extra: headers)
                } else {
                    send(context, status: HTTPResponseStatus(statusCode: code), json: #"{"upstream":"\#(name)","status":\#(code)}"#, keepAlive: keepAlive, extra: headers)
                }
            } else if path.hasPrefix("/bytes/"), let count = Int(path.dropFirst(7)), count >= 0 {
                startBytes(
                    context, count: count, chunked: query["chunked"] == "1", type: query["type"].map(Self.percentDecoded), keepAlive: keepAlive,
                    method: head.method)
            } else {
                echo(head, path: path, query: query, context: context, keepAlive: keepAlive)
            }
        }
    }

    /// What an oauth2-proxy-like service answers about a request (see the endpoint list above).
    private func authorize(_ head: HTTPRequestHead, context: ChannelHandlerContext, keepAlive: Bool) {
        let record = (["\(head.method) \(head.uri)"] + head.headers.map { "\($0.name.lowercased()): \($0.value)" }).joined(separator: "\n")
        behaviour.authChecks.withLockedValue { $0.append(record) }
        let authorization = head.headers["authorization"].first ?? ""
        let cookies = head.headers["cookie"].flatMap { $0.split(separator: ";").map { String($0.drop { $0 == " " }) } }
        var headers = HTTPHeaders()
        if authorization == "Bearer alice-token" || cookies.contains("session=alice") {
            headers.add(name: "X-Auth-Request-User", value: "alice")
            headers.add(name: "X-Auth-Request-Email", value: "alice@example.com")
            headers.add(name: "X-Internal-Note", value: "for the gateway only")
            send(context, status: .ok, json: #"{"user":"alice"}"#, keepAlive: keepAlive, extra: headers)
        } else if authorization == "Bearer forbidden" {
            headers.add(name: "content-length", value: "0")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .forbidden, headers: headers))), promise: nil)
            finish(context, keepAlive: keepAlive)
        } else if authorization == "Bearer broken" {
            send(context, status: .internalServerError, json: #"{"error":"database down"}"#, keepAlive: keepAlive)
        } else if head.headers["accept"].contains(where: { $0.contains("text/html") }) {
            headers.add(name: "Location", value: "/login?rd=" + (head.headers["x-forwarded-uri"].first ?? "/"))
            headers.add(name: "Set-Cookie", value: "login_state=started; HttpOnly")
            headers.add(name: "content-length", value: "0")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .found, headers: headers))), promise: nil)
            finish(context, keepAlive: keepAlive)
        } else {
            headers.add(name: "WWW-Authenticate", value: #"Bearer realm="demo""#)
            send(context, status: .unauthorized, json: #"{"error":"login required","upstream":"\#(name)"}"#, keepAlive: keepAlive, extra: headers)
        }
    }

    /// An OAuth 2.0 introspection endpoint (RFC 7662) stand-in (see the endpoint list above).
    private func introspect(_ head: HTTPRequestHead, context: ChannelHandlerContext, keepAlive: Bool) {
        guard head.method == .POST, head.headers["authorization"].first == "Basic Z2F0ZXdheTpzM2NyZXQ=" else {  // gateway:s3cret
            return send(context, status: .unauthorized, json: #"{"error":"invalid_client"}"#, keepAlive: keepAlive)
        }
        let form = Self.split("/?" + String(buffer: body)).1
        let token = form["token"].map(Self.percentDecoded) ?? ""
        behaviour.introspections.withLockedValue { $0.append(token) }
        let now = time(nil)
        switch token {
        case "alice-opaque":
            send(
                context, status: .ok,
                json: #"{"active":true,"sub":"alice","scope":"orders:read orders:write","client_id":"web","exp":\#(now + 3600),"iss":"https://id.test/","aud":"orders-api"}"#,
                keepAlive: keepAlive)
        case "reporting-opaque":
            send(context, status: .ok, json: #"{"active":true,"client_id":"reporting","scope":"orders:read","exp":\#(now + 3600)}"#, keepAlive: keepAlive)
        case "expired-opaque":
            send(context, status: .ok, json: #"{"active":true,"sub":"bob","exp":\#(now - 10)}"#, keepAlive: keepAlive)
        case "broken":
            send(context, status: .internalServerError, json: #"{"error":"database down"}"#, keepAlive: keepAlive)
        default:
            send(context, status: .ok, json: #"{"active":false}"#, keepAlive: keepAlive)
        }
    }

    private func cacheable(_ head: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext, keepAlive: Bool) {
        let value = { (name: String) in query[name].map(Self.percentDecoded) }
        var headers = HTTPHeaders()
        if let cc = value("cc") { headers.add(name: "Cache-Control", value: cc) }
        if let etag = value("etag") { headers.add(name: "ETag", value: etag) }
        if let modified = value("last_modified") { headers.add(name: "Last-Modified", value: modified) }
        if let vary = value("vary") { headers.add(name: "Vary", value: vary) }
        if let date = value("date") { headers.add(name: "Date", value: date) }
        if query["cookie"] == "1" { headers.add(name: "Set-Cookie", value: "session=secret; HttpOnly") }
        if let keys = value("surrogate_key") { headers.add(name: "Surrogate-Key", value: keys) }
        if let tags = value("cache_tag") { headers.add(name: "Cache-Tag", value: tags) }
        // A backend doing its own CORS (which a gateway route with `cors` replaces).
        if let origin = value("allow_origin") {
            headers.add(name: "Access-Control-Allow-Origin", value: origin)
            headers.add(name: "Access-Control-Allow-Credentials", value: "true")
        }
        let hits = behaviour.cacheableHits.wrappingAdd(1, ordering: .relaxed).newValue
        if let etag = value("etag"), head.headers["if-none-match"].contains(etag) {
            headers.add(name: "content-length", value: "0")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .notModified, headers: headers))), promise: nil)
            finish(context, keepAlive: keepAlive)
            return
        }
        let status = Int(query["status"] ?? "") ?? 200
        if let size = Int(query["size"] ?? "") {
            headers.add(name: "content-type", value: value("type") ?? "application/octet-stream")
            headers.add(name: "content-length", value: String(size))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers))), promise: nil)
            if chunk.readableBytes == 0 { chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 65_536) }
            pendingBytes = size
            keepAliveAfterBytes = keepAlive
            writeBytes(context)
            return
        }
        let varied = value("vary").map { name in head.headers[name].joined(separator: ", ") } ?? ""
        send(
            context, status: HTTPResponseStatus(statusCode: status),
            json: #"{"upstream":"\#(name)","hit":\#(hits),"varied":"\#(varied)"}"#, keepAlive: keepAlive, extra: headers)
    }

    static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else {
                bytes.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func echo(_ head: HTTPRequestHead, path: String, query: [String: String], context: ChannelHandlerContext, keepAlive: Bool) {
        var json = #"{"upstream":"# + Self.quote(name) + #","method":"# + Self.quote(head.method.rawValue)
        json += #","uri":"# + Self.quote(head.uri) + #","version":"# + Self.quote("\(head.version)") + #","path":"# + Self.quote(path) + #","headers":{"#
        var names: [String] = []
        for (name, _) in head.headers where !names.contains(name.lowercased()) { names.append(name.lowercased()) }
        json += names.map { Self.quote($0) + ":" + Self.quote(head.headers[$0].joined(separator: ", ")) }.joined(separator: ",")
        json += #"},"body_bytes":\#(bodyBytes),"body":"# + Self.quote(String(buffer: body)) + "}"
        var extra = HTTPHeaders()
        extra.add(name: "Server", value: "demo-upstream")
        extra.add(name: "X-Powered-By", value: "SwiftNIO")
        send(context, status: .ok, json: json, keepAlive: keepAlive, extra: extra)
    }

    private func send(_ context: ChannelHandlerContext, status: HTTPResponseStatus, json: String, keepAlive: Bool, extra: HTTPHeaders = [:]) {
        send(context, status: status, body: json, contentType: "application/json", keepAlive: keepAlive, extra: extra)
    }

    private func send(
        _ context: ChannelHandlerContext, status: HTTPResponseStatus, body: String, contentType: String, keepAlive: Bool, extra: HTTPHeaders = [:]
    ) {
        var headers = extra
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: String(body.utf8.count))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        finish(context, keepAlive: keepAlive)
    }

    private func finish(_ context: ChannelHandlerContext, keepAlive: Bool) {
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    private func streamChunks(_ context: ChannelHandlerContext, count: Int, interval: Int64, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        sendChunk(context, index: 0, count: count, interval: interval, keepAlive: keepAlive)
    }

    private func sendChunk(_ context: ChannelHandlerContext, index: Int, count: Int, interval: Int64, keepAlive: Bool) {
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(interval)) {
            guard context.channel.isActive else { return }
            if index == count {
                self.finish(context, keepAlive: keepAlive)
                return
            }
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "chunk \(index)\n")))), promise: nil)
            self.sendChunk(context, index: index + 1, count: count, interval: interval, keepAlive: keepAlive)
        }
    }

    private func startBytes(
        _ context: ChannelHandlerContext, count: Int, chunked: Bool, type: String?, keepAlive: Bool, method: HTTPMethod
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: type ?? "application/octet-stream")
        if !chunked { headers.add(name: "content-length", value: String(count)) }
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        if chunk.readableBytes == 0 { chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 65_536) }
        pendingBytes = method == .HEAD ? 0 : count
        self.keepAliveAfterBytes = keepAlive
        writeBytes(context)
    }

    private var keepAliveAfterBytes = true

    /// Writes until the socket's buffer is full; `channelWritabilityChanged` resumes.
    private func writeBytes(_ context: ChannelHandlerContext) {
        while pendingBytes > 0 && context.channel.isWritable {
            let size = min(pendingBytes, chunk.readableBytes)
            pendingBytes -= size
            context.write(wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: chunk.readerIndex, length: size)!))), promise: nil)
        }
        if pendingBytes == 0 {
            pendingBytes = -1
            finish(context, keepAlive: keepAliveAfterBytes)
        } else if pendingBytes > 0 {
            context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if pendingBytes > 0 && context.channel.isWritable { writeBytes(context) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A declined WebSocket upgrade (not /ws) is reported as an error; the request is then answered normally.
        if error is NIOWebSocketUpgradeError { return }
        context.close(promise: nil)
    }

    static func split(_ uri: String) -> (String, [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            query[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return (String(uri[..<mark]), query)
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += "?"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// The /ws endpoint after the upgrade: echoes data messages, answers pings, and closes when asked.
final class WebSocketEcho: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary, .continuation:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
