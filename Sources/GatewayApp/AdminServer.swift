import Foundation
import GatewayAuth
import GatewayConfig
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The admin API, on its own listener (loopback unless configured otherwise). With `admin.token` set, every
/// call needs `Authorization: Bearer <token>`.
///
/// - `GET /healthz`: the process is alive.
/// - `GET /readyz`: 200 when it should get traffic (not draining, Redis reachable when configured), else 503.
/// - `GET /metrics`: Prometheus text.
/// - `GET /config`: the running config as written, secrets redacted.
/// - `GET /upstreams`: every target with its health, breaker state and requests in flight.
/// - `POST /reload`: reload gateway.json (as SIGHUP does); 200, or 422 with the problems (nothing changed).
/// - `GET /certificates`: what each TLS listener serves (names, issuer, end of validity, ACME or not).
/// - `POST /certificates/reload`: read the TLS certificate files again.
/// - `POST /cache/purge[?url=URL|?route=NAME|?tag=T]`: drop stored responses (both cache tiers).
/// - `GET /explain?url=URL[&method=M][&listener=L][&client_ip=A][&header=Name:%20value...]`: the route a request would take in the
///   running config, as `gateway explain` tells it.
final class AdminServer: Sendable {
    private let channel: Channel

    private init(channel: Channel) { self.channel = channel }

    var port: Int { channel.localAddress?.port ?? 0 }

    static func start(config: AdminConfig, gateway: Gateway, group: EventLoopGroup, logger: Logger) async throws -> AdminServer {
        let token = config.token
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(gateway: gateway, token: token))
                }
            }
            .bind(host: config.address, port: config.port)
            .get()
        logger.info(
            "admin API listening",
            metadata: ["address": "\(channel.localAddress?.ipAddress ?? config.address)", "port": .stringConvertible(channel.localAddress?.port ?? 0)])
        return AdminServer(channel: channel)
    }

    func stop() async { try? await channel.close() }
}

/// One admin connection: a request at a time, answered as JSON (metrics as Prometheus text).
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let gateway: Gateway
    private let token: String?
    private var head: HTTPRequestHead?

    init(gateway: Gateway, token: String?) {
        self.gateway = gateway
        self.token = token
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break  // no admin call takes a body
        case .end:
            guard let head else { return }
            self.head = nil
            handle(head, context: context)
        }
    }

    private func handle(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let requestID = RequestID.generate()
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        var query: [String: String] = [:]
        for item in URLComponents(string: head.uri)?.queryItems ?? [] {
            // A repeated `header` keeps every value (one per line); other parameters take their last.
            if item.name == "header", let earlier = query["header"] {
                query["header"] = earlier + "\n" + (item.value ?? "")
            } else {
                query[item.name] = item.value ?? ""
            }
        }
        guard authorized(head) else {
            var headers = HTTPHeaders()
            headers.add(name: "www-authenticate", value: #"Bearer realm="gateway-admin""#)
            return error(context, .unauthorized, "UNAUTHENTICATED", "The admin API needs its bearer token.", requestID, headers: headers)
        }
        guard let endpoint = AdminEndpoint(rawValue: path) else {
            return error(context, .notFound, "ROUTE_NOT_FOUND", "No admin endpoint has this path.", requestID)
        }
        guard head.method == endpoint.method else {
            var headers = HTTPHeaders()
            headers.add(name: "allow", value: endpoint.method.rawValue)
            return error(context, .methodNotAllowed, "METHOD_NOT_ALLOWED", "This admin endpoint does not accept this method.", requestID, headers: headers)
        }
        let keepAlive = head.isKeepAlive
        let loop = context.eventLoop
        let boundContext = NIOLoopBound(context, eventLoop: loop)
        let boundSelf = NIOLoopBound(self, eventLoop: loop)
        let gateway = self.gateway
        let promise = loop.makePromise(of: AdminReply.self)
        promise.completeWithTask { [query] in await endpoint.perform(gateway: gateway, query: query) }
        promise.futureResult.whenSuccess { reply in
            boundSelf.value.send(boundContext.value, status: reply.status, contentType: reply.contentType, body: reply.body, keepAlive: keepAlive)
        }
    }

    private func authorized(_ head: HTTPRequestHead) -> Bool {
        guard let token else { return true }
        guard let value = head.headers.first(name: "authorization"), value.lowercased().hasPrefix("bearer ") else { return false }
        return ConstantTime.equals(Array(value.utf8.dropFirst(7)), Array(token.utf8))
    }

    private func error(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ code: String, _ message: String, _ requestID: String,
        headers: HTTPHeaders = [:]
    ) {
        let body = #"{"error":{"code":"\#(code)","message":"\#(message)","request_id":"\#(requestID)"}}"#
        send(context, status: status, contentType: "application/json", body: body, keepAlive: true, extra: headers)
    }

    private func send(
        _ context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String, body: String, keepAlive: Bool,
        extra: HTTPHeaders = [:]
    ) {
        var headers = extra
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "cache-control", value: "no-store")
        headers.add(name: "date", value: WallClock.httpDate())
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}

struct AdminReply: Sendable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: String

    init(_ status: HTTPResponseStatus, _ contentType: String, _ body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// The admin endpoints: a path, the one method it answers, and what it does.
enum AdminEndpoint: String, Sendable {
    case healthz = "/healthz"
    case readyz = "/readyz"
    case metrics = "/metrics"
    case config = "/config"
    case upstreams = "/upstreams"
    case reload = "/reload"
    case certificates = "/certificates"
    case certificatesReload = "/certificates/reload"
    case cachePurge = "/cache/purge"
    case drain = "/upstreams/drain"
    case undrain = "/upstreams/undrain"
    case explain = "/explain"

    var method: HTTPMethod {
        switch self {
        case .reload, .certificatesReload, .cachePurge, .drain, .undrain: .POST
        default: .GET
        }
    }

    func perform(gateway: Gateway, query: [String: String]) async -> AdminReply {
        switch self {
        case .healthz: AdminReply(.ok, "application/json", #"{"status":"ok"}"#)
        case .readyz: await Self.readiness(gateway)
        case .metrics: Self.metrics(gateway)
        case .config: AdminReply(.ok, "application/json", (gateway.config.source ?? .object([])).redactingSecrets().rendered)
        case .upstreams: Self.upstreams(gateway)
        case .reload: await Self.reload(gateway)
        case .certificates: Self.certificates(gateway)
        case .certificatesReload: Self.reloadCertificates(gateway)
        case .cachePurge: await Self.purgeCache(gateway, query: query)
        case .drain: Self.drain(gateway, query: query, drained: true)
        case .undrain: Self.drain(gateway, query: query, drained: false)
        case .explain: Self.explain(gateway, query: query)
        }
    }

    /// What each TLS listener serves now: `{"certificates": [{"listener", "file", "names", "issuer", "not_after",
    /// "not_after_seconds", "acme"}], "revocation_lists": [{"listener", "issuer", "revoked", "next_update"}]}`, for
    /// checking a renewal (by hand or by ACME) or a refreshed revocation list took effect.
    private static func certificates(_ gateway: Gateway) -> AdminReply {
        let items = gateway.certificates.map { listener, certificate in
            JSONValue.object([
                ("listener", .string(listener)), ("file", .string(certificate.file)), ("names", .array(certificate.names.map { .string($0) })),
                ("issuer", .string(certificate.issuer)),
                ("not_after", .string(Date(timeIntervalSince1970: TimeInterval(certificate.notAfter)).ISO8601Format())),
                ("not_after_seconds", .integer(Int(certificate.notAfter))), ("acme", .bool(certificate.acme)),
            ])
        }
        // The client CAs' revocation lists (`client_crl`), per issuer: to check that a refreshed list was read.
        let lists = gateway.revocationLists.flatMap { listener, list in
            list.issuers.map { issuer in
                JSONValue.object(
                    [("listener", .string(listener)), ("issuer", .string(issuer.name)), ("revoked", .integer(issuer.revoked))]
                        + (issuer.nextUpdate.map { [("next_update", JSONValue.string($0.ISO8601Format()))] } ?? []))
            }
        }
        return AdminReply(
            .ok, "application/json", JSONValue.object([("certificates", .array(items)), ("revocation_lists", .array(lists))]).rendered)
    }

    /// `gateway explain` against the running config: `{"explanation": ["request: ...", "route: ...", ...]}`.
    private static func explain(_ gateway: Gateway, query: [String: String]) -> AdminReply {
        guard let url = query["url"], !url.isEmpty else {
            return AdminReply(.badRequest, "application/json", JSONValue.object([("error", .string("give ?url=URL (an absolute URL, or a path with a Host header)"))]).rendered)
        }
        let headers = query["header"].map { $0.split(separator: "\n").map(String.init) } ?? []
        do {
            let lines = try ExplainCommand.explain(
                method: query["method"] ?? "GET", url: url, headers: headers, listener: query["listener"], clientIP: query["client_ip"],
                config: gateway.config)
            return AdminReply(.ok, "application/json", JSONValue.object([("explanation", .array(lines.map { .string($0) }))]).rendered)
        } catch {
            return AdminReply(.badRequest, "application/json", JSONValue.object([("error", .string("\(error)"))]).rendered)
        }
    }

    /// `?upstream=NAME&target=HOST:PORT`: the target takes no new requests (drain) or takes them again (undrain).
    private static func drain(_ gateway: Gateway, query: [String: String], drained: Bool) -> AdminReply {
        guard let upstream = query["upstream"], let target = query["target"] else {
            return AdminReply(
                .badRequest, "application/json", JSONValue.object([("error", .string("give ?upstream=NAME&target=HOST:PORT (as /upstreams lists it)"))]).rendered)
        }
        guard gateway.setDrained(upstream: upstream, target: target, drained: drained) else {
            return AdminReply(
                .notFound, "application/json", JSONValue.object([("error", .string("upstream \"\(upstream)\" has no target \"\(target)\""))]).rendered)
        }
        let body = JSONValue.object([("upstream", .string(upstream)), ("target", .string(target)), ("drained", .bool(drained))])
        return AdminReply(.ok, "application/json", body.rendered)
    }

    private static func readiness(_ gateway: Gateway) async -> AdminReply {
        let (ready, problems) = await gateway.readiness()
        let body = JSONValue.object([("ready", .bool(ready)), ("problems", .array(problems.map { .string($0) }))])
        return AdminReply(ready ? .ok : .serviceUnavailable, "application/json", body.rendered)
    }

    private static func metrics(_ gateway: Gateway) -> AdminReply {
        AdminReply(.ok, "text/plain; version=0.0.4; charset=utf-8", gateway.prometheusText())
    }

    private static func upstreams(_ gateway: Gateway) -> AdminReply {
        let items = gateway.upstreams.targetStates().map { state in
            JSONValue.object([
                ("upstream", .string(state.upstream)), ("target", .string(state.target)), ("healthy", .bool(state.healthy)),
                ("breaker", .string(state.breaker)), ("in_flight", .integer(state.inFlight)), ("drained", .bool(state.drained)),
                ("backup", .bool(state.backup)), ("connections", .integer(state.openConnections)),
            ])
        }
        // Upstreams called with the gateway's own token (`oauth2`): whether it holds one, and for how long.
        let tokens = gateway.upstreamTokens.map { upstream, secondsLeft in
            JSONValue.object(
                [("upstream", .string(upstream)), ("valid", .bool(secondsLeft != nil))]
                    + (secondsLeft.map { [("expires_in_seconds", JSONValue.integer($0))] } ?? []))
        }
        return AdminReply(.ok, "application/json", JSONValue.object([("targets", .array(items)), ("tokens", .array(tokens))]).rendered)
    }

    private static func reload(_ gateway: Gateway) async -> AdminReply {
        do {
            try await gateway.reloadFromFile()
            return AdminReply(.ok, "application/json", #"{"reloaded":true}"#)
        } catch let error as Gateway.ReloadError {
            let problems = JSONValue.array(error.problems.map { .string($0) })
            return AdminReply(.unprocessableEntity, "application/json", JSONValue.object([("reloaded", .bool(false)), ("problems", problems)]).rendered)
        } catch {
            return AdminReply(.unprocessableEntity, "application/json", JSONValue.object([("reloaded", .bool(false)), ("problems", .array([.string("\(error)")]))]).rendered)
        }
    }

    /// `?url=URL` drops one URI's stored responses, `?route=NAME` a route's, `?tag=T` (several separated by spaces or
    /// commas) those the upstream tagged so, none of them everything.
    private static func purgeCache(_ gateway: Gateway, query: [String: String]) async -> AdminReply {
        do {
            let tags = (query["tag"] ?? "").split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
            if query["tag"] != nil && tags.isEmpty {
                return AdminReply(.unprocessableEntity, "application/json", JSONValue.object([("error", .string("tag is empty"))]).rendered)
            }
            let purged = try await gateway.purgeCache(url: query["url"], route: query["route"], tags: tags)
            return AdminReply(.ok, "application/json", JSONValue.object([("purged", .integer(purged))]).rendered)
        } catch {
            return AdminReply(.unprocessableEntity, "application/json", JSONValue.object([("error", .string("\(error)"))]).rendered)
        }
    }

    private static func reloadCertificates(_ gateway: Gateway) -> AdminReply {
        let failures = gateway.reloadCertificates()
        let fields = failures.sorted { $0.key < $1.key }.map { (key: $0.key, value: JSONValue.string($0.value)) }
        return AdminReply(failures.isEmpty ? .ok : .unprocessableEntity, "application/json", JSONValue.object([("failures", .object(fields))]).rendered)
    }

}
