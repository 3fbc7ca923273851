import GatewayConfig
import GatewayHTTP
import GatewayPolicy
import Logging
import NIOCore

/// One request/response exchange: request filters, routing, forwarding with streaming in both
/// directions, response filters, completion hooks. Lives on the client connection's event loop.
///
/// The phases follow DESIGN.md: global filters -> route match -> route filters -> forward; responses
/// pass the filters in reverse; any gateway error becomes its JSON response in `respond(error:)`.
final class ProxyExchange: ExchangeDriver, UpstreamCallDelegate, FilterSuspensionWaiter {
    enum State {
        /// Running request filters; body parts that arrive meanwhile are held (reading is paused).
        case filtering
        /// `request_buffering`: the filters passed; the body is read whole (held) before the upstream is called.
        case buffering
        /// `call` carries the request upstream and the response back.
        case forwarding
        /// After 101 Switching Protocols: bytes flow both ways until either side closes.
        case tunnel
        /// The gateway answered itself; whatever request body still arrives is dropped.
        case respondedLocally
        case finished
    }

    private enum FilterStage { case global, route }

    /// What waits for a `FilterSuspension`: a filter (the next one to run), or the route's body check.
    private enum Suspended {
        case filter(FilterStage, next: Int)
        case bodyCheck
        /// An ACME challenge looked up in the shared store (`acme.store: "redis"`).
        case challenge
    }

    let connection: GatewayConnection
    var stream: DownstreamStream?
    var head: RequestHead
    var context: RequestContext
    private let framing: BodyFraming
    private let expectsContinue: Bool
    var state: State = .filtering
    var call: UpstreamCall?
    /// The copy of this request going to the route's `mirror`, while the request body still flows.
    private var mirror: RequestMirror?
    /// The coding this client takes among the route's (read when the route is chosen, on routes with `compression`).
    private var acceptedCoding: ContentCoding.Coding?
    /// Compresses the response body on its way to the client, when `compression` chose to.
    private var encoder: (any ResponseBodyEncoder)?
    /// A gRPC-Web request on a `grpc_web` route, translated to gRPC and back.
    private var grpcWeb: GRPCWebTranslation?

    private var heldBody: [ByteBuffer] = []
    var requestComplete = false
    private var continueSent = false
    /// The client stopped keeping up (its connection is not writable), and what of the answer was written since
    /// (`response_buffering`'s measure).
    private var clientBehind = false
    private var heldForClient = 0
    /// Disconnects the client if it stays behind for `limits.send_timeout_ms`.
    private var sendStall: Scheduled<Void>?
    /// `limit_rate`: this answer's pace, and the pause it asked for.
    private var transferRate: TransferRate?
    private var rateHold: Scheduled<Void>?
    /// 103 Early Hints the upstream's answers have sent the client.
    private var hintsSent = 0
    /// The page (host and path) whose answer teaches the route's `early_hints.learn`; nil when it teaches nothing.
    private var hintPage: String?
    private var bytesIn = 0
    private var bytesOut = 0
    var status: Int?
    var responseStarted = false
    private var errorCode: String?
    private var totalTimeout: Scheduled<Void>?
    /// In a tunnel: when a byte last passed either way, and the check that closes the tunnel once it has been
    /// quiet for `tunnel_idle_timeout_ms` (re-armed for what is left rather than moved on every byte).
    private var tunnelActivity = NIODeadline.uptimeNanoseconds(0)
    private var tunnelIdleCheck: Scheduled<Void>?
    /// The protocol an HTTP/1.1 client asked to switch to (`Upgrade`, with `Connection: upgrade`), e.g. websocket.
    let upgrade: String?
    /// Set when the request path cannot be normalised: answered 400 before routing.
    private var pathFailure: PathNormalizer.Failure?
    /// The cache's view of this exchange, on routes with `cache.enabled`.
    var caching: CacheState?
    /// Which of the route's destinations the request goes to (a split's member; 0 for every other route),
    /// chosen once the route's filters have passed (a sticky split may key on the authenticated consumer).
    var destinationIndex = 0
    /// A split's `set_cookie` for a client that had none: added to whatever answers this request.
    private var stickyCookie: String?
    /// Where filtering goes on once a `FilterSuspension` resumes.
    private var suspendedAt: Suspended?
    /// The route's body check passed (after suspending: `forward()` runs again).
    private var bodyChecked = false

    /// The runtime and forwarder current when the request arrived: a reload meanwhile does not change them.
    let runtime: GatewayRuntime
    let forwarder: UpstreamForwarder

    init(connection: GatewayConnection, request: consuming IncomingRequest, stream: DownstreamStream) {
        let framing = request.framing
        let expectsContinue = request.expectsContinue
        // Stored first and edited in place by `admit`: a local head assigned to the property last was copied by the
        // optimiser (and the local released), and `consume` is refused there.
        self.head = (consume request).head
        let (runtime, forwarder) = connection.snapshot()
        (self.upgrade, self.pathFailure) = Self.admit(&self.head, runtime: runtime, peerIsTrustedProxy: connection.info.peerIsTrustedProxy)
        self.connection = connection
        (self.runtime, self.forwarder) = (runtime, forwarder)
        self.framing = framing
        self.expectsContinue = expectsContinue
        self.stream = stream
        let clientIP =
            connection.info.peerIsTrustedProxy
            ? Self.trustedClientAddress(&self.head, connection: connection.info, runtime: runtime)
            : connection.peerText
        self.context = RequestContext(
            connection: connection.info, clientIP: clientIP, method: self.head.method, uri: self.head.target, startedAt: EventClock.now(),
            eventLoop: connection.eventLoop)
    }

    func start() {
        runFilters(.global, from: 0)
    }

    /// What every request goes through before the filters: the absolute form's authority as Host (RFC 9112 §3.2.2),
    /// fields only the gateway or a trusted proxy may set removed, the path normalised. Returns the protocol an
    /// HTTP/1.1 client asks to switch to, and why the path cannot be normalised. On the head in place: read from a
    /// property instead, each field list passed on would be copied.
    private static func admit(
        _ head: inout RequestHead, runtime: GatewayRuntime, peerIsTrustedProxy: Bool
    ) -> (upgrade: String?, pathFailure: PathNormalizer.Failure?) {
        if let (authority, originForm) = HeaderRules.splitAbsoluteForm(head.target) {
            head.target = originForm
            head.headers.replaceOrAdd(name: "host", value: authority)
        }
        HeaderRules.removeClientIdentityHeaders(
            &head.headers, dropUnderscores: runtime.dropsUnderscoredFields, dropOverrides: runtime.dropsOverrideFields)
        for name in runtime.claimHeaders { head.headers.remove(name: name) }
        // Only a trusted proxy may name the client; anyone else's field never reaches an upstream that would believe it.
        if let name = runtime.clientIPHeader, !peerIsTrustedProxy { head.headers.remove(name: name) }
        // One normalised path for routing, filters, the cache key and the upstream (see PathNormalizer).
        var pathFailure: PathNormalizer.Failure?
        switch PathNormalizer.normalize(head.target, encodedSlashes: runtime.encodedSlashes) {
        case .success(let target): head.target = target
        case .failure(let failure): pathFailure = failure
        }
        return (head.version == .http1_1 ? HeaderRules.requestedUpgrade(head.headers) : nil, pathFailure)
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
            case .suspend(let suspension):
                suspendedAt = .filter(stage, next: index + 1)
                suspension.wait(self)
                return
            }
        }
        switch stage {
        case .global: route()
        case .route:
            if let route = context.route, route.splits {
                (destinationIndex, stickyCookie) = route.chooseDestination(
                    headers: head.headers, clientIP: context.clientIP, consumer: context.consumer, isTLS: connection.info.isTLS)
            }
            // Before the cache too: a stored answer must not stand for a request the route refuses.
            if let route = context.route, let validation = route.requestValidation,
                let refusal = validation.checkParameters(head, template: route.pathTemplate)
            {
                return refuseInvalid(refusal)
            }
            lookupCache()
        }
    }

    func filterResumed(_ result: Result<FilterResumption, any Error>) {
        guard let suspended = suspendedAt else { return }
        suspendedAt = nil
        resume(suspended, with: result)
    }

    private func resume(_ suspended: Suspended, with result: Result<FilterResumption, any Error>) {
        switch state {
        case .filtering, .buffering: break  // a body check may wait while the body is held (buffering)
        case .forwarding, .tunnel, .respondedLocally, .finished: return  // the client left meanwhile
        }
        switch result {
        case .success(let resumption):
            resumption.apply(to: &head, context: &context)
            switch resumption.decision {
            case .proceed:
                switch suspended {
                case .filter(let stage, let next): runFilters(stage, from: next)
                case .bodyCheck:
                    bodyChecked = true
                    forward()
                case .challenge: routeByTable(hostHeader: Self.hostField(&head).first)
                }
            case .respond(let response): respond(response)
            }
        case .failure(let error):
            runtime.logger.error("filter failed", metadata: ["request_id": "\(context.requestID)", "error": "\(error)"])
            respond(error: GatewayError(mapping: error))
        }
    }

    private func route() {
        if let pathFailure {
            respond(error: .badRequest(pathFailure.description))
            return
        }
        let (hostHeader, hostCount) = Self.hostField(&head)
        guard hostCount <= 1 else {
            respond(error: .badRequest("The request has more than one Host header."))
            return
        }
        if let hostHeader, !HeaderRules.isValidHost(hostHeader) {
            respond(error: .badRequest("The request's Host header is not a valid host[:port]."))
            return
        }
        // The CA's check of an ACME order comes to port 80 and follows no redirect: answered before anything else.
        if let challenges = runtime.acmeChallenges, head.method == .GET {
            if let keyAuthorization = challenges.answer(path: head.path) {
                respond(ACMEChallenges.response(keyAuthorization))
                return
            }
            if let lookup = challenges.lookUpShared(path: head.path, on: connection.eventLoop) {
                suspendedAt = .challenge
                lookup.wait(self)
                return
            }
        }
        routeByTable(hostHeader: hostHeader)
    }

    /// Routing proper, once the request is known not to be an ACME challenge.
    private func routeByTable(hostHeader: String?) {
        if let port = connection.redirectHTTPSPort {
            respond(redirectToHTTPS(port: port))
            return
        }
        if hostHeader == nil && head.version.minor >= 1 {
            respond(error: .badRequest("HTTP/1.1 requests need a Host header."))
            return
        }
        let host = HeaderRules.hostName(hostHeader ?? "")
        switch Self.match(&head, host: host, listener: connection.info.listener, clientIP: IPAddress(self.context.clientIP), in: runtime.routes) {
        case .notFound:
            respond(error: .routeNotFound)
        case .methodNotAllowed(let allowed):
            respond(error: .methodNotAllowed(allowed: allowed))
        case .matched(let route):
            context.route = route
            context.host = hostHeader
            if let compression = route.compression { acceptedCoding = compression.coding(accepting: head.headers.values(name: "accept-encoding")) }
            if route.grpcWeb { grpcWeb = GRPCWebTranslation(contentType: head.headers.first(name: "content-type")) }
            if case .length(let length) = framing, length > maxBodyBytes {
                respond(error: .payloadTooLarge)
                return
            }
            runFilters(.route, from: 0)
        }
    }

    /// The client a trusted peer names: its `client_ip_header` when it holds an address, else X-Forwarded-For.
    private static func trustedClientAddress(_ head: inout RequestHead, connection: ConnectionInfo, runtime: GatewayRuntime) -> String {
        if let name = runtime.clientIPHeader, let value = head.headers.first(name: name), let address = IPAddress(value.trimmingASCIISpaces()) {
            return address.description
        }
        return HeaderRules.clientAddress(
            peer: connection.peer, peerIsTrusted: true, forwardedFor: head.headers["x-forwarded-for"], trusted: runtime.trustedProxies)
    }

    /// Whether the request already went through this gateway; the head by exclusive access, as in `match`.
    private static func cameThrough(_ loopID: String, _ head: inout RequestHead) -> Bool { HeaderRules.cameThrough(loopID, in: head.headers) }

    /// The Host field and how many there are; the head by exclusive access, as in `match`.
    private static func hostField(_ head: inout RequestHead) -> (first: String?, count: Int) {
        head.headers.firstAndCount(name: "host")
    }

    /// The head by exclusive access: passing the stored property's parts would copy them.
    /// The client's address is parsed only for a route with client conditions.
    private static func match(
        _ head: inout RequestHead, host: Substring, listener: String, clientIP: @autoclosure () -> IPAddress?, in routes: RouteTable
    ) -> RouteMatch {
        let query = head.query  // an autoclosure reading `head` itself made the call copy the field list
        return routes.match(
            host: host, path: head.path, query: query, method: head.method, headers: head.headers, listener: listener, clientIP: clientIP())
    }

    func forward() {
        guard let route = context.route, let stream else { return }
        if let loopID = runtime.loopID, Self.cameThrough(loopID, &head) {
            runtime.logger.warning(
                "forwarding loop: the request came back to this gateway",
                metadata: ["request_id": "\(context.requestID)", "route": "\(route.name)", "cdn_loop": "\(head.headers.values(name: "cdn-loop").joined(separator: ", "))"])
            runtime.metrics.counter("gateway_forwarding_loops_total", [("route", route.name)]).increment()
            return respond(error: .loopDetected)
        }
        // A request without a body is whole already (its end may still be on its way from the edge).
        if let check = route.bodyCheck, !bodyChecked, requestComplete || framing == .none {
            switch check.check(head, body: heldBody, context: context) {
            case .proceed: break
            case .respond(let response): return respond(response)
            case .suspend(let suspension):
                suspendedAt = .bodyCheck
                suspension.wait(self)
                return
            }
        }
        if let validation = route.requestValidation {
            // Whether there is a body: told by the framing, or for a body of unknown length (chunked) once it is whole.
            let hasBody: Bool?
            switch framing {
            case .none: hasBody = false
            case .length(let length): hasBody = length > 0
            case .chunked, .untilClose: hasBody = requestComplete ? heldBody.contains { $0.readableBytes > 0 } : nil
            }
            if let hasBody, let refusal = validation.checkHead(head, hasBody: hasBody) ?? (hasBody && requestComplete ? validation.checkBody(heldBody) : nil) {
                return refuseInvalid(refusal)
            }
        }
        if buffersBody && !requestComplete {
            // A slow upload then never holds an upstream connection, and the upstream gets a Content-Length.
            state = .buffering
            if expectsContinue && !continueSent {
                continueSent = true
                stream.writeInformational(ResponseHead(status: 100, version: head.version))
                stream.flush()
            }
            stream.setRequestBodyPaused(false)
            return
        }
        if let hints = route.earlyHints {
            // A route that learns hints knows pages by host and path; only GETs without credentials teach it.
            let page = hints.learned != nil && head.method == .GET ? String(HeaderRules.hostName(context.host ?? "") + head.path) : nil
            if page != nil, !head.headers.contains(name: "authorization") { hintPage = page }
            if hints.reaches(head.version), let hint = hints.ownHint(version: head.version, page: page) {
                stream.writeInformational(hint)
                stream.flush()
            }
        }
        let destination = route.destinations[destinationIndex]
        var settings = destination.settings
        // A gRPC client's deadline (grpc-timeout) ends the call when it passes, if it is the sooner one. gRPC needs an
        // HTTP/2 upstream, so other requests are spared the field lookups.
        if destination.speaksHTTP2, let value = head.headers.first(name: "grpc-timeout"), let micros = GRPCTimeout.microseconds(value),
            head.headers.first(name: "content-type")?.lowercased().hasPrefix("application/grpc") == true
        {
            settings.clientTimeout = .microseconds(micros)
        }
        // The upstream's own credentials (`oauth2`, `aws_sigv4`) replace whatever the client authenticated to the gateway with.
        if let credentials = destination.credentials, !credentials.isAvailable {
            runtime.logger.warning(
                "no upstream credentials: the token endpoint gave none", metadata: ["request_id": "\(context.requestID)", "upstream": "\(destination.upstreamName)"])
            return respond(error: .upstreamCredentialsUnavailable)
        }
        var upstreamHead = RequestHead(method: head.method, target: head.target, version: .http1_1)
        prepareUpstreamHead(&upstreamHead, for: route)
        if upgrade == nil && route.mirrorsThisRequest() { startMirror(route, head: upstreamHead) }  // the mirror never gets the token
        if let credentials = destination.credentials {
            let body: UpstreamBody = framing == .none ? .none : buffersBody && requestComplete ? .whole(heldBody) : .streamed
            credentials.authorize(&upstreamHead, body: body)
        }
        let call = forwarder.makeCall(
            upstream: destination.upstreamIndex, head: consume upstreamHead, framing: upstreamFraming,
            preserveHost: route.preserveHost || destination.credentials?.setsHost == true,
            requestID: context.requestID, clientIP: context.clientIP, settings: settings, delegate: self)
        self.call = call
        state = .forwarding
        context.forwardedAt = EventClock.now()
        if let total = settings.totalTimeout() {
            totalTimeout = connection.eventLoop.assumeIsolated().scheduleTask(in: total) {
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

    /// A request `request_validation` refused: said in the log too (what the client got told), for whoever looks into
    /// a client's 400s.
    private func refuseInvalid(_ refusal: GatewayError) {
        runtime.logger.info(
            "request refused by request_validation",
            metadata: ["request_id": "\(context.requestID)", "route": "\(context.route?.name ?? "-")", "reason": "\(refusal.message)"])
        respond(error: refusal)
    }

    /// Sends a copy of the request to the route's mirror upstream, with the body received so far; the rest
    /// of the body follows as it arrives. Whatever becomes of the real call, the copy goes on.
    private func startMirror(_ route: CompiledRoute, head: RequestHead) {
        guard let target = route.mirror else { return }
        let mirror = RequestMirror(metrics: route.metrics)
        mirror.start(
            forwarder.makeCall(
                upstream: target.upstreamIndex, head: head, framing: upstreamFraming, preserveHost: route.preserveHost,
                requestID: context.requestID, clientIP: context.clientIP, settings: CallSettings(), delegate: mirror))
        for part in heldBody { mirror.sendBody(part) }
        // A request without a body is whole already (its end may still be on its way from the edge).
        if requestComplete || framing == .none {
            mirror.sendEnd()
        } else {
            self.mirror = mirror
        }
    }

    /// The route's `request_buffering` applies: there is a body, and it is not an upgrade's tunnel.
    private var buffersBody: Bool { context.route?.buffersRequests == true && framing != .none && upgrade == nil }

    /// How the body is framed towards the upstream: a body received whole has a length (whatever it came with), a
    /// gRPC-Web text body loses its length when decoded.
    private var upstreamFraming: BodyFraming {
        if buffersBody && requestComplete {
            return .length(heldBody.reduce(0) { $0 + $1.readableBytes })
        }
        return grpcWeb?.upstreamFraming(framing) ?? framing
    }

    /// The request as the upstream gets it: version, strip_prefix and add_prefix, hop-by-hop and forwarding headers,
    /// the upgrade asked again, client-certificate subject, and the cache's validators when revalidating.
    func makeUpstreamHead(_ route: CompiledRoute) -> RequestHead {
        var upstreamHead = RequestHead(method: head.method, target: head.target, version: .http1_1)
        prepareUpstreamHead(&upstreamHead, for: route)
        return upstreamHead
    }

    /// `makeUpstreamHead` into a head the caller made (with the request's method and target): the forwarding path's
    /// form, since returning the head from the function above made the optimiser copy it (and release the original).
    private func prepareUpstreamHead(_ upstreamHead: inout RequestHead, for route: CompiledRoute) {
        if caching == nil {
            // Nothing reads the request's fields after forwarding but the cache: without one, the upstream head
            // takes the field lists over, so that editing them below copies nothing.
            swap(&upstreamHead.headers, &head.headers)
        } else {
            upstreamHead.headers = head.headers
        }
        // TE is hop-by-hop, but its "trailers" (which gRPC clients send) is asked of the next hop again: the
        // gateway relays trailers on HTTP/2. Only HTTP/2 clients are asked about: HTTP/1.1 ones get none.
        // A gRPC-Web request becomes a gRPC one, which takes trailers whatever the browser's protocol.
        let takesTrailers =
            grpcWeb != nil || (head.version.major == 2 && upstreamHead.headers.containsToken("trailers", inField: "te"))
        HeaderRules.prepareUpstreamRequest(
            &upstreamHead.headers, peer: connection.peerText, peerIsTrusted: connection.info.peerIsTrustedProxy,
            proto: connection.info.isTLS ? "https" : "http", host: context.host, forwardedHeader: runtime.forwardedHeader)
        let (target, stripped) = route.upstreamTarget(for: head.target)
        upstreamHead.target = target
        if let stripped { HeaderRules.setForwardedPrefix(&upstreamHead.headers, removed: stripped) }
        grpcWeb?.translateRequest(&upstreamHead.headers)
        if takesTrailers {
            // An HTTP/1.1 upstream needs TE named in Connection (RFC 9110 §10.1.4); an HTTP/2 one drops Connection.
            upstreamHead.headers.add(name: "te", value: "trailers")
            upstreamHead.headers.add(name: "connection", value: "te")
        }
        if let upgrade {
            // Hop-by-hop, so removed above; an upgrade is asked of the next hop again.
            upstreamHead.headers.add(name: "connection", value: "upgrade")
            upstreamHead.headers.add(name: "upgrade", value: upgrade)
        }
        for name in runtime.clientSubjectHeaders { upstreamHead.headers.remove(name: name) }
        if let name = connection.info.clientSubjectHeader, let subject = connection.info.clientCertificateSubject {
            upstreamHead.headers.add(name: name, value: subject)
        }
        if let name = connection.info.clientCertHeader, let pem = connection.info.clientCertificate?.escapedPEM {
            upstreamHead.headers.add(name: name, value: pem)
        }
        if let loopID = runtime.loopID { upstreamHead.headers.add(name: "cdn-loop", value: loopID) }  // after the client's (RFC 8586)
        if let via = runtime.via { upstreamHead.headers.add(name: "via", value: Self.viaEntry(via, version: head.version)) }  // after the client's
        if let host = route.hostRewrite { upstreamHead.headers.replaceOrAdd(name: "host", value: host) }
        if !route.requestHeaderEdits.isEmpty { HeaderRules.apply(route.requestHeaderEdits, to: &upstreamHead.headers, context: context) }
        if let caching, caching.revalidating, let stale = caching.stale {
            CacheState.addValidators(of: stale, to: &upstreamHead.headers)
        }
    }

    /// RFC 9110 §7.6.3: the protocol the message was received in, then the pseudonym.
    static func viaEntry(_ via: (http1_0: String, http1_1: String, http2: String), version: HTTPVersion) -> String {
        version.major >= 2 ? via.http2 : version.minor == 0 ? via.http1_0 : via.http1_1
    }

    private func redirectToHTTPS(port: Int) -> GatewayResponse {
        let host = HeaderRules.hostName(head.headers.first(name: "host") ?? "")
        guard !host.isEmpty else { return .error(.badRequest("A redirect to https needs a Host header."), requestID: context.requestID) }
        let authority = port == 443 ? String(host) : "\(host):\(port)"
        var headers = HeaderList()
        headers.add(name: "location", value: "https://\(authority)\(head.target)")
        headers.add(name: "content-length", value: "0")
        return GatewayResponse(status: 308, headers: headers)
    }

    // MARK: ExchangeDriver (client side)

    func requestBodyPart(_ buffer: ByteBuffer) {
        bytesIn += buffer.readableBytes
        if case .tunnel = state {
            // Tunnelled bytes are not a request body: no size limit applies.
            tunnelActivity = EventClock.now()
            call?.sendBody(buffer)
            if call?.isWritable == false { stream?.setRequestBodyPaused(true) }
            return
        }
        if bytesIn > maxBodyBytes {
            switch state {
            case .tunnel, .respondedLocally, .finished: return
            case .filtering, .buffering, .forwarding: respond(error: .payloadTooLarge)
            }
            return
        }
        var buffer = buffer
        if let grpcWeb {
            do {
                buffer = try grpcWeb.requestBody(buffer)
            } catch {
                return respond(error: .badRequest("The gRPC-Web request body is not valid base64."))
            }
        }
        switch state {
        case .filtering:
            heldBody.append(buffer)
            stream?.setRequestBodyPaused(true)
        case .buffering:
            heldBody.append(buffer)  // bounded by the body limit checked above
        case .forwarding:
            guard let call else { return }
            call.sendBody(buffer)
            mirror?.sendBody(buffer)
            if !call.isWritable { stream?.setRequestBodyPaused(true) }
        case .tunnel, .respondedLocally, .finished:
            break
        }
    }

    func requestEnded() {
        requestComplete = true
        if grpcWeb?.requestIsIncomplete == true, !responseStarted {
            return respond(error: .badRequest("The gRPC-Web request body ends inside a base64 group."))
        }
        switch state {
        case .forwarding:
            call?.sendEnd()
            mirror?.sendEnd()
            mirror = nil
        case .buffering:
            forward()  // the body is whole now
        case .filtering, .tunnel, .respondedLocally, .finished:
            break
        }
    }

    func downstreamWritabilityChanged(isWritable: Bool) {
        guard isRelaying else { return }
        if isWritable {
            clientBehind = false
            heldForClient = 0
            sendStall?.cancel()
            sendStall = nil
            if rateHold == nil { call?.setResponsePaused(false) }
        } else {
            clientFellBehind()
            if responseBufferBytes == nil { call?.setResponsePaused(true) }
        }
    }

    /// The client's connection stopped taking the answer: unless it takes some again within `limits.send_timeout_ms`,
    /// it is disconnected (a client that stops reading must not hold the upstream connection, or memory, for good).
    private func clientFellBehind() {
        clientBehind = true
        let limit = runtime.limits.sendTimeoutMs
        guard sendStall == nil, limit > 0 else { return }
        sendStall = connection.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(limit))) {
            self.sendStall = nil
            guard self.clientBehind, self.isRelaying else { return }
            self.runtime.logger.info(
                "client stopped reading the answer: disconnected",
                metadata: ["request_id": "\(self.context.requestID)", "route": "\(self.context.route?.name ?? "-")", "send_timeout_ms": "\(limit)"])
            self.runtime.metrics.counter("gateway_client_send_timeouts_total", [("route", self.context.route?.name ?? "-")]).increment()
            self.call?.cancel()
            self.stream?.abortResponse()
            self.finish(status: self.status ?? 200, completed: false)
        }
    }

    /// `response_buffering` (not for tunnels): how much the route holds for a client that is behind; nil when the
    /// upstream waits for the client.
    private var responseBufferBytes: Int? {
        guard case .forwarding = state else { return nil }
        return context.route?.responseBufferBytes
    }

    func downstreamClosed() {
        if isRelaying { call?.cancel() }
        // Closing is how a tunnel ends: that is a complete exchange.
        if case .tunnel = state {
            finish(status: 101, completed: true)
        } else {
            finish(status: status ?? 499, completed: false)
        }
    }

    /// The route's body limit once routing has chosen one (it does when the head arrives, before body parts come),
    /// else `limits.max_body_bytes`.
    private var maxBodyBytes: Int { context.route?.maxBodyBytes ?? runtime.limits.maxBodyBytes }

    /// Bytes move between the client and the upstream call.
    var isRelaying: Bool {
        switch state {
        case .forwarding, .tunnel: return true
        case .filtering, .buffering, .respondedLocally, .finished: return false
        }
    }

    // MARK: UpstreamCallDelegate

    func upstreamConnected() {
        guard expectsContinue, !continueSent, !requestComplete, !responseStarted, let stream else { return }
        continueSent = true
        stream.writeInformational(ResponseHead(status: 100, version: head.version))
        stream.flush()
    }

    /// Passed on while nothing else has gone to the client, within the route's `early_hints` and a bound per request.
    func upstreamEarlyHints(_ upstreamHead: ResponseHead) {
        guard case .forwarding = state, !responseStarted, let stream, let hints = context.route?.earlyHints, hints.relay,
            hintsSent < EarlyHints.maxRelayed, hints.reaches(head.version),
            let relayed = EarlyHints.relayed(upstreamHead, version: head.version)
        else { return }
        hintsSent += 1
        stream.writeInformational(relayed)
        stream.flush()  // a hint is worth something only while the answer is still on its way
    }

    func upstreamResponseHead(_ upstreamHead: consuming ResponseHead) {
        guard case .forwarding = state, let stream else { return }
        context.upstreamAnsweredAt = EventClock.now()  // the access log's upstream_ms, adaptive concurrency's sample
        var response = consume upstreamHead
        if let page = hintPage, let learned = context.route?.earlyHints?.learned { learned.observe(response, page: page) }
        // The upstream refused the gateway's own token (revoked, or signed with a key rotated away): get another now.
        if response.status == 401, let route = context.route, let credentials = route.destinations[destinationIndex].credentials {
            credentials.refused()
        }
        if let interception = context.route?.errorInterception, interception.intercepts(response) {
            if caching != nil, response.status >= 500, serveStaleOnError() { return }
            // The upstream's body is never read: its connection closes rather than being drained for reuse.
            return respond(interception.answer(for: response, requestID: context.requestID))
        }
        let switching = response.status == 101 ? HeaderRules.requestedUpgrade(response.headers) : nil
        HeaderRules.prepareDownstreamResponse(&response.headers)
        if let via = runtime.via { response.headers.add(name: "via", value: Self.viaEntry(via, version: response.version)) }
        if LocationRewrite.applies(to: response.status), let rewrite = context.route?.locationRewrite { rewrite.apply(to: &response.headers) }
        if let cookies = context.route?.cookieRewrite { cookies.apply(to: &response.headers) }
        if caching != nil, cacheResponseHead(&response) != .forward { return }  // the cache answers instead
        if let switching {
            response.headers.add(name: "connection", value: "upgrade")
            response.headers.add(name: "upgrade", value: switching)
        }
        grpcWeb?.translateResponse(&response)
        applyResponseFilters(&response)
        encoder = finishHead(&response, hasBody: switching == nil)
        if switching == nil, let pace = context.route?.limitRate { transferRate = pace }
        status = response.status
        responseStarted = true
        // A client already behind (an earlier answer on its connection is still queued) is told of no change: ask.
        if !stream.isWritable {
            clientFellBehind()
            if responseBufferBytes == nil { call?.setResponsePaused(true) }
        }
        stream.writeResponseHead(consume response)
        if switching != nil {
            // A tunnel lives as long as its two sides do and talk: no total timeout, an idle one.
            state = .tunnel
            totalTimeout?.cancel()
            totalTimeout = nil
            stream.switchToTunnel()
            let idle = context.route?.tunnelIdleTimeoutMs ?? runtime.limits.tunnelIdleTimeoutMs
            if idle > 0 {
                tunnelActivity = EventClock.now()
                armTunnelIdleCheck(in: .milliseconds(Int64(idle)), limit: .milliseconds(Int64(idle)))
            }
        }
    }

    private func armTunnelIdleCheck(in delay: TimeAmount, limit: TimeAmount) {
        tunnelIdleCheck = connection.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.tunnelIdleCheck = nil
            guard case .tunnel = self.state else { return }
            let quiet = NIODeadline.now() - self.tunnelActivity
            guard quiet >= limit else { return self.armTunnelIdleCheck(in: limit - quiet, limit: limit) }
            self.runtime.logger.info(
                "tunnel closed after its idle timeout",
                metadata: ["request_id": "\(self.context.requestID)", "idle_ms": "\(limit.nanoseconds / 1_000_000)"])
            self.call?.cancel()
            self.upstreamResponseEnd()  // closes the client's side, as when the upstream side ends
        }
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard isRelaying else { return }
        if case .tunnel = state { tunnelActivity = EventClock.now() }
        if caching != nil { cacheResponseBody(buffer) }
        let translated = grpcWeb?.responseBody(buffer) ?? buffer
        let sent = encoder?.compress(translated) ?? translated
        bytesOut += sent.readableBytes
        stream?.writeResponseBody(sent)
        // Optional chaining reads the clock only on routes with limit_rate.
        if case .forwarding = state, let wait = transferRate?.sent(sent.readableBytes, now: EventClock.now().uptimeNanoseconds), wait > 0,
            rateHold == nil
        {
            holdForRate(wait)
        }
        if clientBehind {
            // Held in the connection's queue while the client catches up; the upstream waits once the route's share is
            // used (at once where there is none: a tunnel, a route without response_buffering).
            heldForClient += sent.readableBytes
            if heldForClient >= responseBufferBytes ?? 0 { call?.setResponsePaused(true) }
        }
    }

    /// `limit_rate`: the upstream is not read until the answer's pace allows more (unless the client is behind,
    /// whose catching up resumes it).
    private func holdForRate(_ nanoseconds: UInt64) {
        call?.setResponsePaused(true)
        rateHold = connection.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(nanoseconds))) {
            self.rateHold = nil
            if !self.clientBehind { self.call?.setResponsePaused(false) }
        }
    }

    func upstreamReadComplete() {
        if isRelaying { stream?.flush() }
    }

    func upstreamResponseEnd() {
        guard isRelaying, let stream else { return }
        if caching != nil, !cacheResponseEnd() { return }  // a 304 refreshed the stored copy, served instead
        if let tail = grpcWeb?.finishResponse() {
            let sent = encoder?.compress(tail) ?? tail
            bytesOut += sent.readableBytes
            stream.writeResponseBody(sent)
        }
        if let encoder {
            let trailer = encoder.finish()
            bytesOut += trailer.readableBytes
            stream.writeResponseBody(trailer)
        }
        stream.writeResponseEnd()
        stream.flush()
        finish(status: status ?? 200, completed: true)
    }

    /// Relayed to the client with the end (a stored copy keeps none: caches may drop trailers, RFC 9111 §3).
    func upstreamResponseTrailers(_ trailers: HeaderList) {
        guard isRelaying else { return }
        if grpcWeb?.keepTrailers(trailers) != true { stream?.writeResponseTrailers(trailers) }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isRelaying { stream?.setRequestBodyPaused(!isWritable) }
    }

    func upstreamFailed(_ error: GatewayError) {
        switch state {
        case .forwarding:
            if caching != nil, !responseStarted, serveStaleOnError() { return }
            respond(error: error)
        case .tunnel: upstreamResponseEnd()  // the upstream side of the tunnel broke: close the client's
        case .filtering, .buffering, .respondedLocally, .finished: break
        }
    }

    private func totalTimeoutFired() {
        totalTimeout = nil
        guard case .forwarding = state else { return }
        call?.cancel()
        runtime.logger.warning(
            "upstream total timeout",
            metadata: ["request_id": "\(context.requestID)", "upstream": "\(context.route?.destinations[destinationIndex].upstreamName ?? "-")"])
        respond(error: .upstreamTimeout)
    }

    // MARK: Responses made by the gateway

    func respond(error: GatewayError) {
        respond(.error(error, requestID: context.requestID))
    }

    /// Writes a complete gateway-made response, or breaks the connection if a response is already under way.
    func respond(_ response: GatewayResponse) {
        if let code = response.errorCode { errorCode = code }  // logged even when the response can no longer be sent
        if isRelaying { call?.cancel() }
        guard let stream else { return }
        guard !responseStarted else {
            stream.abortResponse()
            finish(status: status ?? 502, completed: false)
            return
        }
        state = .respondedLocally
        var response = response
        response.head.version = head.version
        applyResponseFilters(&response.head)
        if let encoder = finishHead(&response.head, hasBody: response.body != nil), let body = response.body {
            let compressed = encoder.compressAll(body)
            response.body = compressed
            response.head.headers.add(name: "content-length", value: String(compressed.readableBytes))
        }
        status = response.head.status
        responseStarted = true
        heldBody.removeAll()
        stream.writeResponseHead(response.head)
        if let body = response.body, head.method != .HEAD {
            bytesOut += body.readableBytes
            stream.writeResponseBody(body)
        }
        stream.writeResponseEnd()
        stream.flush()
        finish(status: response.head.status, completed: true)
    }

    /// What the route adds to every answer once the filters have run, the gateway's own included: a split's
    /// sticky cookie, and br or gzip when `compression` applies (the encoder for the body is returned).
    private func finishHead(_ response: inout ResponseHead, hasBody: Bool) -> (any ResponseBodyEncoder)? {
        if let stickyCookie { response.headers.add(name: "set-cookie", value: stickyCookie) }
        guard hasBody, let compression = context.route?.compression else { return nil }
        return compression.begin(&response, method: head.method, coding: acceptedCoding)
    }

    private func applyResponseFilters(_ response: inout ResponseHead) {
        Self.applyResponseFilters(&response, context: &context, globalFilters: runtime.globalFilters)
    }

    /// The hooks get the context by exclusive access: passing the stored property itself to each hook would
    /// copy it (retaining everything in it) once per call, and even one local copy costs a dozen retains.
    private static func applyResponseFilters(
        _ response: inout ResponseHead, context: inout RequestContext, globalFilters: [any GatewayFilter]
    ) {
        for (name, value) in context.responseHeaders {
            // Each Set-Cookie is a cookie of its own (a renewed session's beside the upstream's): added, never replacing.
            if name == "set-cookie" {
                response.headers.add(name: name, value: value)
            } else {
                response.headers.replaceOrAdd(name: name, value: value)
            }
        }
        if let routeFilters = context.route?.filters {
            for filter in routeFilters.reversed() { filter.onResponse(&response, context: context) }
        }
        for filter in globalFilters.reversed() { filter.onResponse(&response, context: context) }
    }

    // MARK: Completion

    private func finish(status: Int, completed: Bool) {
        if case .finished = state { return }
        state = .finished
        totalTimeout?.cancel()
        totalTimeout = nil
        tunnelIdleCheck?.cancel()
        tunnelIdleCheck = nil
        sendStall?.cancel()
        sendStall = nil
        rateHold?.cancel()
        rateHold = nil
        heldBody.removeAll()
        encoder = nil
        // A mirror still here never got the end of the request body: its copy must not pass for complete.
        mirror?.abandon()
        mirror = nil
        let target = call?.target
        if caching != nil { cacheExchangeFinished() }
        // Drop the references both ways so the connection handler, this exchange and the upstream call
        // do not keep each other alive.
        call = nil
        stream = nil
        let outcome = RequestOutcome(
            status: status, bytesIn: bytesIn, bytesOut: bytesOut, upstreamTarget: target,
            durationNanos: (EventClock.now() - context.startedAt).nanoseconds, errorCode: errorCode,
            completed: completed)
        Self.complete(outcome, context: &context, runtime: runtime)
    }

    /// Metrics and completion hooks; the context by exclusive access, as in `applyResponseFilters`.
    private static func complete(_ outcome: RequestOutcome, context: inout RequestContext, runtime: GatewayRuntime) {
        (context.route?.metrics ?? runtime.unroutedMetrics).record(
            method: context.method, status: outcome.status, durationNanos: outcome.durationNanos, bytesIn: outcome.bytesIn,
            bytesOut: outcome.bytesOut)
        for filter in runtime.globalFilters { filter.onComplete(context: context, outcome: outcome) }
        if let routeFilters = context.route?.filters {
            for filter in routeFilters { filter.onComplete(context: context, outcome: outcome) }
        }
    }
}
