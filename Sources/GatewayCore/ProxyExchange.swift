import GatewayConfig
import Logging
import NIOCore
import NIOHTTP1

/// One request/response exchange: request filters, routing, forwarding with streaming in both
/// directions, response filters, completion hooks. Lives on the client connection's event loop.
///
/// The phases follow DESIGN.md: global filters -> route match -> route filters -> forward; responses
/// pass the filters in reverse; any gateway error becomes its JSON response in `respond(error:)`.
final class ProxyExchange: ExchangeDriver, UpstreamCallDelegate {
    private enum State {
        /// Running request filters; body parts that arrive meanwhile are held (reading is paused).
        case filtering
        /// `call` carries the request upstream and the response back.
        case forwarding
        /// The gateway answered itself; whatever request body still arrives is dropped.
        case respondedLocally
        case finished
    }

    private enum FilterStage { case global, route }

    private let connection: GatewayConnection
    private var stream: DownstreamStream?
    private var head: HTTPRequestHead
    private var context: RequestContext
    private let framing: RequestBodyFraming
    private var state: State = .filtering
    private var call: UpstreamCall?

    private var heldBody: [ByteBuffer] = []
    private var requestComplete = false
    private var expectsContinue = false
    private var bytesIn = 0
    private var bytesOut = 0
    private var status: HTTPResponseStatus?
    private var responseStarted = false
    private var errorCode: String?
    private var totalTimeout: Scheduled<Void>?

    private var runtime: GatewayRuntime { connection.runtime }

    init(connection: GatewayConnection, head: HTTPRequestHead, framing: RequestBodyFraming, stream: DownstreamStream) {
        var head = head
        // RFC 9112 §3.2.2: a server must accept the absolute form, and its authority replaces Host.
        if let (authority, originForm) = HeaderRules.splitAbsoluteForm(head.uri) {
            head.uri = originForm
            head.headers.replaceOrAdd(name: "host", value: authority)
        }
        self.connection = connection
        self.head = head
        self.framing = framing
        self.stream = stream
        let clientIP =
            connection.info.peerIsTrustedProxy
            ? HeaderRules.clientAddress(
                peer: connection.info.peer, forwardedFor: head.headers["x-forwarded-for"],
                trusted: connection.runtime.trustedProxies)
            : connection.peerText
        self.context = RequestContext(
            connection: connection.info, clientIP: clientIP, method: head.method, uri: head.uri, startedAt: .now())
    }

    func start() {
        runFilters(.global, from: 0)
    }

    // MARK: Request phases

    private func runFilters(_ stage: FilterStage, from start: Int) {
        let filters = stage == .global ? runtime.globalFilters : (context.route?.filters ?? [])
        var index = start
        while index < filters.count {
            switch filters[index].onRequest(&head, context: &context) {
            case .proceed:
                index += 1
            case .respond(let response):
                respond(response)
                return
            case .suspend(let future):
                let next = index + 1
                future.hop(to: connection.eventLoop).assumeIsolated().whenComplete { result in
                    self.resume(stage, at: next, with: result)
                }
                return
            }
        }
        switch stage {
        case .global: route()
        case .route: forward()
        }
    }

    private func resume(_ stage: FilterStage, at index: Int, with result: Result<FilterResumption, any Error>) {
        guard case .filtering = state else { return }  // the client left meanwhile
        switch result {
        case .success(let resumption):
            resumption.edit?(&head, &context)
            switch resumption.decision {
            case .proceed: runFilters(stage, from: index)
            case .respond(let response): respond(response)
            }
        case .failure(let error):
            runtime.logger.error("filter failed", metadata: ["request_id": "\(context.requestID)", "error": "\(error)"])
            respond(error: GatewayError(mapping: error))
        }
    }

    private func route() {
        if let port = connection.redirectHTTPSPort {
            respond(redirectToHTTPS(port: port))
            return
        }
        let hosts = head.headers["host"]
        guard hosts.count <= 1 else {
            respond(error: .badRequest("The request has more than one Host header."))
            return
        }
        if hosts.isEmpty && head.version.minor >= 1 && head.version.major == 1 {
            respond(error: .badRequest("HTTP/1.1 requests need a Host header."))
            return
        }
        let host = HeaderRules.hostName(hosts.first ?? "")
        let uri = head.uri
        let path = uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { uri[..<$0] } ?? Substring(uri)
        switch runtime.routes.match(host: host, path: path, method: head.method, headers: head.headers) {
        case .notFound:
            respond(error: .routeNotFound)
        case .methodNotAllowed(let allowed):
            respond(error: .methodNotAllowed(allowed: allowed))
        case .matched(let route):
            context.route = route
            if case .contentLength(let length) = framing, length > runtime.limits.maxBodyBytes {
                respond(error: .payloadTooLarge)
                return
            }
            runFilters(.route, from: 0)
        }
    }

    private func forward() {
        guard let route = context.route, let stream else { return }
        var upstreamHead = head
        upstreamHead.version = .http1_1
        if let prefix = route.stripPrefix { upstreamHead.uri = PathRules.strip(prefix, from: head.uri) }
        if framing.hasBody, head.headers["expect"].contains(where: { $0.equalsASCIICaseInsensitive("100-continue") }) {
            expectsContinue = true
        }
        // The gateway answers Expect itself (it sends 100 Continue once the upstream is connected).
        HeaderRules.removeHopByHop(&upstreamHead.headers, alsoRemoving: ["expect"])
        HeaderRules.setForwarded(
            &upstreamHead.headers, peer: connection.peerText, peerIsTrusted: connection.info.peerIsTrustedProxy,
            proto: connection.info.isTLS ? "https" : "http", host: head.headers.first(name: "host"))

        let call = connection.forwarder.makeCall(
            upstream: route.upstreamIndex, head: upstreamHead, framing: framing, preserveHost: route.preserveHost,
            requestID: context.requestID, delegate: self)
        self.call = call
        state = .forwarding
        if let total = runtime.config.upstreams[route.upstreamIndex].totalTimeoutMs {
            totalTimeout = connection.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(total))) {
                self.totalTimeoutFired()
            }
        }
        call.start()
        guard case .forwarding = state else { return }  // failed synchronously
        for part in heldBody { call.sendBody(part) }
        heldBody.removeAll()
        if requestComplete { call.sendEnd() }
        stream.setRequestBodyPaused(!call.isWritable)
    }

    private func redirectToHTTPS(port: Int) -> GatewayResponse {
        let host = HeaderRules.hostName(head.headers.first(name: "host") ?? "")
        guard !host.isEmpty else { return .error(.badRequest("A redirect to https needs a Host header."), requestID: context.requestID) }
        let authority = port == 443 ? String(host) : "\(host):\(port)"
        var headers = HTTPHeaders()
        headers.add(name: "location", value: "https://\(authority)\(head.uri)")
        headers.add(name: "content-length", value: "0")
        return GatewayResponse(status: .permanentRedirect, headers: headers)
    }

    // MARK: ExchangeDriver (client side)

    func requestBodyPart(_ buffer: ByteBuffer) {
        bytesIn += buffer.readableBytes
        if bytesIn > runtime.limits.maxBodyBytes {
            switch state {
            case .respondedLocally, .finished: return
            case .filtering, .forwarding: respond(error: .payloadTooLarge)
            }
            return
        }
        switch state {
        case .filtering:
            heldBody.append(buffer)
            stream?.setRequestBodyPaused(true)
        case .forwarding:
            guard let call else { return }
            call.sendBody(buffer)
            if !call.isWritable { stream?.setRequestBodyPaused(true) }
        case .respondedLocally, .finished:
            break
        }
    }

    func requestEnded() {
        requestComplete = true
        if case .forwarding = state { call?.sendEnd() }
    }

    func downstreamWritabilityChanged(isWritable: Bool) {
        if case .forwarding = state { call?.setResponsePaused(!isWritable) }
    }

    func downstreamClosed() {
        if case .forwarding = state { call?.cancel() }
        finish(status: status ?? HTTPResponseStatus(statusCode: 499), completed: false)
    }

    // MARK: UpstreamCallDelegate

    func upstreamConnected() {
        guard expectsContinue, !requestComplete, !responseStarted, let stream else { return }
        expectsContinue = false
        stream.writeInformational(HTTPResponseHead(version: head.version, status: .continue))
        stream.flush()
    }

    func upstreamResponseHead(_ upstreamHead: HTTPResponseHead) {
        guard case .forwarding = state, let stream else { return }
        var response = upstreamHead
        HeaderRules.removeHopByHop(&response.headers, alsoRemoving: HeaderRules.upstreamIdentity)
        applyResponseFilters(&response)
        status = response.status
        responseStarted = true
        stream.writeResponseHead(response)
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard case .forwarding = state else { return }
        bytesOut += buffer.readableBytes
        stream?.writeResponseBody(buffer)
    }

    func upstreamReadComplete() {
        if case .forwarding = state { stream?.flush() }
    }

    func upstreamResponseEnd(trailers: HTTPHeaders?) {
        guard case .forwarding = state, let stream else { return }
        stream.writeResponseEnd(trailers: trailers)
        stream.flush()
        finish(status: status ?? .ok, completed: true)
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if case .forwarding = state { stream?.setRequestBodyPaused(!isWritable) }
    }

    func upstreamFailed(_ error: GatewayError) {
        guard case .forwarding = state else { return }
        respond(error: error)
    }

    private func totalTimeoutFired() {
        totalTimeout = nil
        guard case .forwarding = state else { return }
        call?.cancel()
        runtime.logger.warning(
            "upstream total timeout",
            metadata: ["request_id": "\(context.requestID)", "upstream": "\(context.route?.upstreamName ?? "-")"])
        respond(error: .upstreamTimeout)
    }

    // MARK: Responses made by the gateway

    private func respond(error: GatewayError) {
        errorCode = error.code
        respond(.error(error, requestID: context.requestID))
    }

    /// Writes a complete gateway-made response, or breaks the connection if a response is already under way.
    private func respond(_ response: GatewayResponse) {
        if case .forwarding = state { call?.cancel() }
        guard let stream else { return }
        guard !responseStarted else {
            stream.abortResponse()
            finish(status: status ?? .badGateway, completed: false)
            return
        }
        state = .respondedLocally
        var response = response
        response.head.version = head.version
        applyResponseFilters(&response.head)
        status = response.head.status
        responseStarted = true
        heldBody.removeAll()
        stream.writeResponseHead(response.head)
        if let body = response.body, head.method != .HEAD {
            bytesOut += body.readableBytes
            stream.writeResponseBody(body)
        }
        stream.writeResponseEnd(trailers: nil)
        stream.flush()
        finish(status: response.head.status, completed: true)
    }

    private func applyResponseFilters(_ response: inout HTTPResponseHead) {
        if let routeFilters = context.route?.filters {
            for filter in routeFilters.reversed() { filter.onResponse(&response, context: context) }
        }
        for filter in runtime.globalFilters.reversed() { filter.onResponse(&response, context: context) }
    }

    // MARK: Completion

    private func finish(status: HTTPResponseStatus, completed: Bool) {
        if case .finished = state { return }
        state = .finished
        totalTimeout?.cancel()
        totalTimeout = nil
        heldBody.removeAll()
        let target = call?.target
        // Drop the references both ways so the connection handler, this exchange and the upstream call
        // do not keep each other alive.
        call = nil
        stream = nil
        let outcome = RequestOutcome(
            status: Int(status.code), bytesIn: bytesIn, bytesOut: bytesOut, upstreamTarget: target,
            durationNanos: (NIODeadline.now() - context.startedAt).nanoseconds, errorCode: errorCode,
            completed: completed)
        for filter in runtime.globalFilters { filter.onComplete(context: context, outcome: outcome) }
        if let routeFilters = context.route?.filters {
            for filter in routeFilters { filter.onComplete(context: context, outcome: outcome) }
        }
    }
}
