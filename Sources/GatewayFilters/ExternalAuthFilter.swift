import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore

/// A route's `external_auth`: before anything else is spent on a request, an authorization service is asked
/// about it (NGINX's `auth_request`, Traefik's ForwardAuth, Envoy's `ext_authz` over HTTP), so one login service
/// (oauth2-proxy, Authelia, a company's own) guards every backend.
///
/// The check is a `GET` of the service's `path` on its upstream pool, carrying the client's header fields (all
/// but hop-by-hop and framing ones, or the listed `request_headers`) and what it asked for: `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto`, `-For`, with
/// the request id and `traceparent`. Never a body.
/// - 2xx: allowed. The answer's `upstream_headers` go upstream (client-sent fields of those names never do),
///   and `consumer_header` names the consumer.
/// - 5xx, unreachable, too slow, or an answer larger than 64 KiB: `on_error` decides (503 `AUTH_UNAVAILABLE`,
///   or through without identity).
/// - anything else (401, 403, a 302 to a login page): refused. The client gets that status, the answer's
///   `client_headers` and body; a 401 or 403 without a body becomes the gateway's usual JSON error.
public struct ExternalAuthFilter: GatewayFilter {
    /// The most of a refusing answer's body relayed to the client; a larger one counts as no answer.
    static let maxAnswerBytes = 64 * 1024

    let service: ExternalAuthConfig
    let upstreamIndex: Int
    let routeName: String
    let logger: Logger
    let metrics: GatewayMetrics
    private let forwarders: LoopLocal<any UpstreamForwarder>
    private let timeout: TimeAmount
    /// `request_id.header`: the check carries the request's id in it, as the upstream request does.
    private let requestIDHeader: String

    /// `upstreamIndex` is the service's upstream in `config.upstreams`; `forwarders` are the ones the same
    /// runtime forwards with, so checks and requests see the same pools.
    public init(
        service: ExternalAuthConfig, upstreamIndex: Int, forwarders: LoopLocal<any UpstreamForwarder>, routeName: String, logger: Logger,
        metrics: GatewayMetrics, requestIDHeader: String = RequestIDFilter.defaultHeader
    ) {
        self.requestIDHeader = requestIDHeader
        self.service = service
        self.upstreamIndex = upstreamIndex
        self.forwarders = forwarders
        self.routeName = routeName
        self.logger = logger
        self.metrics = metrics
        self.timeout = .milliseconds(Int64(service.timeoutMs))
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let check = ExternalAuthCheck(filter: self, requestID: context.requestID)
        let collector = check.collector()
        let call = forwarders.value(on: context.eventLoop).makeCall(
            upstream: upstreamIndex, head: checkHead(for: head, context: context), framing: .none, preserveHost: false,
            requestID: context.requestID, clientIP: context.clientIP, settings: CallSettings(read: timeout, total: timeout), delegate: collector)
        collector.start(call, on: context.eventLoop, timeout: timeout)
        return .suspend(check)
    }

    /// What the service is asked: the configured path, the client's credentials, and what the client wants.
    func checkHead(for head: RequestHead, context: RequestContext) -> RequestHead {
        var check = RequestHead(method: .GET, target: service.path)
        if let names = service.requestHeaders {
            for name in names {
                for value in head.headers.values(name: name) { check.headers.add(name: name, value: value) }
            }
        } else {
            for field in head.headers {
                let name = field.name.lowercased()
                guard !ExternalAuthConfig.setByGateway.contains(name), name != requestIDHeader else { continue }
                check.headers.add(name: field.name, value: field.value)
            }
        }
        check.headers.add(name: "x-forwarded-method", value: head.method.description)
        check.headers.add(name: "x-forwarded-uri", value: head.target)
        if let host = context.host ?? head.headers.first(name: "host") { check.headers.add(name: "x-forwarded-host", value: host) }
        check.headers.add(name: "x-forwarded-proto", value: context.connection.isTLS ? "https" : "http")
        check.headers.add(name: "x-forwarded-for", value: context.clientIP)
        check.headers.add(name: requestIDHeader, value: context.requestID)
        if let traceparent = head.headers.first(name: "traceparent") { check.headers.add(name: "traceparent", value: traceparent) }
        return check
    }

    /// The service's answer as the request's fate.
    func decide(status: Int, headers: HeaderList, body: ByteBuffer, requestID: String) -> FilterResumption {
        switch status {
        case 200..<300:
            metrics.externalAuthCheck(service: service.name, outcome: "allowed")
            var fields: [(name: String, value: String)] = []
            for name in service.upstreamHeaders {
                for value in headers.values(name: name) { fields.append((name, value)) }
            }
            let consumer = service.consumerHeader.flatMap { headers.first(name: $0)?.trimmingASCIISpaces() }.flatMap { $0.isEmpty ? nil : $0 }
            let (names, added) = (service.upstreamHeaders, fields)
            return FilterResumption(decision: .proceed) { head, context in
                for name in names { head.headers.remove(name: name) }
                for field in added { head.headers.add(name: field.name, value: field.value) }
                if let consumer { context.consumer = consumer }
            }
        case 500...:
            return failed("the service answered \(status)", requestID: requestID)
        default:
            metrics.externalAuthCheck(service: service.name, outcome: "denied")
            metrics.authFailure(route: routeName, reason: "external_auth_denied")
            logger.info(
                "authorization refused",
                metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "external_auth": "\(service.name)", "status": "\(status)"])
            return FilterResumption(decision: .respond(refusal(status: status, headers: headers, body: body, requestID: requestID)))
        }
    }

    /// No usable answer: refused with 503, or let through as `on_error` says (without anything the client could
    /// pass off as the service's).
    func failed(_ reason: String, requestID: String) -> FilterResumption {
        logger.warning(
            "authorization service failed",
            metadata: [
                "request_id": "\(requestID)", "route": "\(routeName)", "external_auth": "\(service.name)", "reason": "\(reason)",
                "on_error": "\(service.onError.rawValue)",
            ])
        switch service.onError {
        case .deny:
            metrics.externalAuthCheck(service: service.name, outcome: "error")
            return FilterResumption(decision: .respond(.error(.authUnavailable, requestID: requestID)))
        case .allow:
            metrics.externalAuthCheck(service: service.name, outcome: "error_allowed")
            let names = service.upstreamHeaders
            return FilterResumption(decision: .proceed) { head, _ in
                for name in names { head.headers.remove(name: name) }
            }
        }
    }

    /// The service's refusal as the client gets it: a login redirect or an error page passes through; a bare
    /// 401 or 403 becomes the gateway's JSON error.
    private func refusal(status: Int, headers: HeaderList, body: ByteBuffer, requestID: String) -> GatewayResponse {
        var response: GatewayResponse
        if body.readableBytes == 0 && (status == 401 || status == 403) {
            let (code, message) =
                status == 401
                ? ("UNAUTHENTICATED", "Authentication is required, or the credentials are not valid.")
                : ("FORBIDDEN", "The credentials do not grant access to this resource.")
            response = .error(status: status, code: code, message: message, requestID: requestID)
        } else {
            var fields = HeaderList()
            if body.readableBytes > 0, let type = headers.first(name: "content-type") { fields.add(name: "content-type", value: type) }
            fields.add(name: "content-length", value: String(body.readableBytes))
            response = GatewayResponse(status: status, headers: fields, body: body.readableBytes > 0 ? body : nil)
            response.errorCode = "EXTERNAL_AUTH_DENIED"
        }
        for name in service.clientHeaders {
            for value in headers.values(name: name) { response.head.headers.add(name: name, value: value) }
        }
        return response
    }
}

/// One request's check: the decision the request waits for, made when the service's answer (collected by a
/// `CollectedCall`) is complete or has failed.
final class ExternalAuthCheck: FilterSuspension {
    private let filter: ExternalAuthFilter
    private let requestID: String

    init(filter: ExternalAuthFilter, requestID: String) {
        self.filter = filter
        self.requestID = requestID
    }

    /// The delegate the check's upstream call reports to.
    func collector() -> CollectedCall {
        CollectedCall(maxBodyBytes: ExternalAuthFilter.maxAnswerBytes) { [self] result in
            switch result {
            case .success(let answer):
                resume(filter.decide(status: answer.status, headers: answer.headers, body: answer.body, requestID: requestID))
            case .failure(let failure):
                resume(filter.failed(failure.description, requestID: requestID))
            }
        }
    }
}
