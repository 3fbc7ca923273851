import Foundation
import GatewayClient
import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import GatewayTLS
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// `upstreams.<name>.oauth2`: an access token the gateway gets for itself with the OAuth 2.0 client-credentials grant
/// (RFC 6749 §4.4) and sends to the upstream as `Authorization: Bearer`, renewed in the background before it ends
/// (`TokenRenewal`). A failed renewal keeps the current token until its end, then calls to the upstream are answered 503
/// until a token arrives. Kept across reloads while the settings stay.
final class UpstreamToken: UpstreamCredentials {
    let upstream: String
    let config: UpstreamOAuth2Config
    private let eventLoop: EventLoop
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let tls: NIOSSLContext?
    /// The `Authorization` value and when the token ends.
    private let current = NIOLockedValueBox<(value: String, ends: NIODeadline)?>(nil)
    /// The renewal loop, and whether the token was retired (a loop started after that is cancelled at once).
    private let loop = NIOLockedValueBox<(task: Task<Void, Never>?, stopped: Bool)>((nil, false))
    /// When a 401 last had a new token asked for: at most one such request every `refusalInterval`, whatever the traffic.
    private let lastEarlyRenewal = NIOLockedValueBox<NIODeadline?>(nil)
    static let refusalInterval = TimeAmount.seconds(10)

    struct Refused: Error, CustomStringConvertible {
        let description: String
    }

    init(upstream: String, config: UpstreamOAuth2Config, eventLoop: EventLoop, logger: Logger, metrics: GatewayMetrics = .disabled) throws {
        self.upstream = upstream
        self.config = config
        self.eventLoop = eventLoop
        self.logger = logger
        self.metrics = metrics
        tls = try UpstreamTLS.makeContext(caFile: config.caFile)
    }

    /// The current token while it has not ended.
    private var valid: (value: String, ends: NIODeadline)? {
        current.withLockedValue { current in
            guard let current, current.ends > NIODeadline.now() else { return nil }
            return current
        }
    }

    /// The seconds the current token has left; nil when there is none valid.
    var secondsLeft: Int? { valid.map { Int(($0.ends - NIODeadline.now()).nanoseconds / 1_000_000_000) } }

    var authorization: String? { valid?.value }

    var isAvailable: Bool { valid != nil }

    func authorize(_ head: inout RequestHead, body: UpstreamBody) {
        if let authorization { head.headers.replaceOrAdd(name: "authorization", value: authorization) }
    }

    /// Asks for a token now (at start, so the first requests find one), then renews in the background.
    func start() async {
        var wait = await renew(failures: 0)
        let work = Task { [self] in
            var failures = wait.failed ? 1 : 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(wait.seconds))
                if Task.isCancelled { return }
                wait = await renew(failures: failures)
                failures = wait.failed ? failures + 1 : 0
            }
        }
        let kept = loop.withLockedValue { loop in
            guard !loop.stopped else { return false }
            loop.task?.cancel()
            loop.task = work
            return true
        }
        if !kept { work.cancel() }
    }

    func stop() {
        loop.withLockedValue { loop in
            loop.stopped = true
            loop.task?.cancel()
        }
    }

    /// The upstream refused the token before its end (revoked, a rotated signing key): the renewal loop starts over now,
    /// at most once every ten seconds.
    func refused() {
        let now = NIODeadline.now()
        let due = lastEarlyRenewal.withLockedValue { last in
            guard last.map({ now - $0 >= Self.refusalInterval }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        logger.info("upstream refused the gateway's token; asking for a new one", metadata: ["upstream": "\(upstream)"])
        Task { await self.start() }
    }

    /// One token request; how long to wait before the next, and whether this one failed.
    private func renew(failures: Int) async -> (seconds: Double, failed: Bool) {
        do {
            let (value, lifetime) = try await requestToken()
            let ends = NIODeadline.now() + .milliseconds(Int64((lifetime ?? 86_400) * 1000))
            current.withLockedValue { $0 = (value, ends) }
            metrics.counter("gateway_upstream_token_requests_total", [("upstream", upstream), ("outcome", "issued")]).increment()
            if failures > 0 { logger.info("upstream token obtained again", metadata: ["upstream": "\(upstream)"]) }
            return (TokenRenewal.renewAfter(lifetime: lifetime), false)
        } catch {
            let kept = authorization != nil
            metrics.counter("gateway_upstream_token_requests_total", [("upstream", upstream), ("outcome", "failed")]).increment()
            logger.warning(
                "upstream token request failed",
                metadata: ["upstream": "\(upstream)", "error": "\(error)", "using": "\(kept ? "the current token until it ends" : "none: calls get 503")"])
            return (TokenRenewal.retryAfter(failures: failures + 1), true)
        }
    }

    /// POSTs the grant to the token endpoint; the `Authorization` value and the token's lifetime in seconds, if stated.
    private func requestToken() async throws -> (String, Double?) {
        var form = [("grant_type", "client_credentials")]
        if !config.scopes.isEmpty { form.append(("scope", config.scopes.joined(separator: " "))) }
        if let audience = config.audience { form.append(("audience", audience)) }
        var headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")]
        switch config.clientAuth {
        case .basic:
            // RFC 6749 §2.3.1: each part form-encoded before they are joined and base64-encoded.
            let credentials = Self.formEncoded(config.clientID) + ":" + Self.formEncoded(config.clientSecret)
            headers.append(("Authorization", "Basic " + Data(credentials.utf8).base64EncodedString()))
        case .body:
            form += [("client_id", config.clientID), ("client_secret", config.clientSecret)]
        }
        let body = form.map { Self.formEncoded($0.0) + "=" + Self.formEncoded($0.1) }.joined(separator: "&")
        let response = try await HTTPFetch.request(
            "POST", config.tokenURL, headers: headers, body: Array(body.utf8), on: eventLoop, timeout: .seconds(10), maxBytes: 64 << 10, tls: tls
        ).get()
        let json = try? JSONParser.parse(response.body)
        guard response.status == 200 else {
            // The error code (invalid_client, invalid_scope...) is the server's own word; never the body as a whole.
            throw Refused(description: "HTTP \(response.status)" + (json?.string("error").map { ": \($0)" } ?? ""))
        }
        guard let token = json?.string("access_token"), !token.isEmpty, !token.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            throw Refused(description: "the answer has no access_token")
        }
        if let type = json?.string("token_type"), type.lowercased() != "bearer" {
            throw Refused(description: "token_type \(type) is not Bearer")
        }
        let lifetime: Double? =
            switch json?["expires_in"] {
            case .integer(let seconds)?: Double(seconds)
            case .double(let seconds)?: seconds
            case .string(let text)?: Double(text)
            default: nil
            }
        return ("Bearer " + token, lifetime)
    }

    private static func formEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }
}
