import Foundation
import GatewayCore
import GatewayHTTP
import NIOCore

/// The gateway as an OAuth client of an authorization server on one of its upstreams: form posts
/// (`application/x-www-form-urlencoded`) with the gateway's own client credentials in HTTP Basic (RFC 6749
/// §2.3.1), through the same per-loop pools as requests (keep-alive, TLS, breakers), answers collected whole.
/// Token introspection and the OIDC code exchange both ask this way.
struct AuthorizationServerClient: Sendable {
    static let maxAnswerBytes = 64 * 1024

    let upstreamIndex: Int
    let forwarders: LoopLocal<any UpstreamForwarder>
    /// `request_id.header`: each question carries the request's id.
    let requestIDHeader: String
    /// `Basic base64(urlencode(client_id) ":" urlencode(client_secret))`.
    private let clientAuthorization: String

    init(upstreamIndex: Int, forwarders: LoopLocal<any UpstreamForwarder>, clientID: String, clientSecret: String, requestIDHeader: String) {
        self.upstreamIndex = upstreamIndex
        self.forwarders = forwarders
        self.requestIDHeader = requestIDHeader
        let credentials = QueryString.encoded(clientID) + ":" + QueryString.encoded(clientSecret)
        self.clientAuthorization = "Basic " + Data(credentials.utf8).base64EncodedString()
    }

    /// `POST path` with `form` (names and values percent-encoded here), on `eventLoop` (the request's).
    func post(
        _ path: String, form: [(String, String)], timeout: TimeAmount, requestID: String, clientIP: String, on eventLoop: EventLoop
    ) -> EventLoopFuture<CollectedCall.Answer> {
        var body = ByteBuffer()
        body.writeString(form.map { QueryString.encoded($0.0) + "=" + QueryString.encoded($0.1) }.joined(separator: "&"))
        var head = RequestHead(method: .POST, target: path)
        head.headers.add(name: "authorization", value: clientAuthorization)
        head.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
        head.headers.add(name: "accept", value: "application/json")
        head.headers.add(name: requestIDHeader, value: requestID)
        let promise = eventLoop.makePromise(of: CollectedCall.Answer.self)
        let collector = CollectedCall(maxBodyBytes: Self.maxAnswerBytes) { promise.completeWith($0.mapError { $0 as any Error }) }
        let call = forwarders.value(on: eventLoop).makeCall(
            upstream: upstreamIndex, head: head, framing: .length(body.readableBytes), preserveHost: false, requestID: requestID,
            clientIP: clientIP, settings: CallSettings(read: timeout, total: timeout), delegate: collector)
        collector.start(call, body: body, on: eventLoop, timeout: timeout)
        return promise.futureResult
    }
}
