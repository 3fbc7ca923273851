import Crypto
import Foundation
import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Logging
import NIOCore

/// `webhook_signature`: a webhook's body must carry an HMAC under one of the route's secrets, in the form its sender
/// (GitHub, Stripe, Slack, Standard Webhooks, Shopify, or one described field by field) writes it, and for senders that
/// sign a time, a time within `tolerance_seconds` of the gateway's clock, and (`replay_protection`) content not
/// delivered before. Checked on the whole body before anything goes upstream; every refusal is the same
/// `403 INVALID_SIGNATURE` to the client, the reason is logged and counted.
public struct WebhookSignatureCheck: RequestBodyCheck {
    private let config: WebhookSignatureConfig
    private let keys: [SymmetricKey]
    private let routeName: String
    private let logger: Logger
    private let metrics: GatewayMetrics
    /// Where accepted deliveries are remembered, when the route refuses replays.
    private let replayGuard: (any ReplayGuard)?
    /// The gateway's clock in Unix seconds (injected for tests).
    private let now: @Sendable () -> Int

    /// How much longer than its tolerance window a delivery is remembered: instances whose clocks differ by less
    /// still refuse its replay.
    static let clockSlackSeconds = 60

    public init(
        _ config: WebhookSignatureConfig, routeName: String, logger: Logger, metrics: GatewayMetrics, replayGuard: (any ReplayGuard)? = nil,
        now: @escaping @Sendable () -> Int = { WallClock.coarseSeconds() }
    ) {
        self.config = config
        self.keys = config.secrets.map { Self.key(for: $0, scheme: config.scheme) }
        self.routeName = routeName
        self.logger = logger
        self.metrics = metrics
        self.replayGuard = config.replayProtection ? replayGuard : nil  // only schemes that sign a time have it (config)
        self.now = now
    }

    public var maxBodyBytes: Int { config.maxBodyBytes }

    public func check(_ head: RequestHead, body: [ByteBuffer], context: RequestContext) -> FilterStep {
        let signed: Signed
        switch verify(head.headers, body: body) {
        case .failure(let reason): return refuse(reason.text, context: context)
        case .success(let verified): signed = verified
        }
        guard let replayGuard, let time = signed.time else { return .proceed }
        // The signed content (time, id and body), not the signature: another presentation of the same signatures
        // (one of two dropped while a secret rotates) is the same delivery.
        var digest = SHA256()
        digest.update(data: signed.prefix)
        for part in body { part.withUnsafeReadableBytes { digest.update(bufferPointer: $0) } }
        let key = Base64URL.encode(digest.finalize())
        let seconds = max(1, time + config.toleranceSeconds - now()) + Self.clockSlackSeconds
        let suspension = FilterSuspension()
        let (logger, metrics, routeName, requestID) = (logger, metrics, routeName, context.requestID)
        replayGuard.firstUse(of: key, forSeconds: seconds, on: context.eventLoop) { result in
            switch result {
            case .success(true):
                suspension.resume(FilterResumption(decision: .proceed))
            case .success(false):
                metrics.authFailure(route: routeName, reason: "replayed_delivery")
                logger.info(
                    "webhook signature refused",
                    metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "reason": "this delivery was accepted before (a replay)"])
                suspension.resume(FilterResumption(decision: .respond(.error(.invalidSignature, requestID: requestID))))
            case .failure(let error):
                // Refused rather than let through unchecked: the sender retries a 503 later, with a new signature.
                logger.error(
                    "webhook replay check failed", metadata: ["request_id": "\(requestID)", "route": "\(routeName)", "error": "\(error)"])
                suspension.resume(FilterResumption(decision: .respond(.error(.deliveryUncheckable, requestID: requestID))))
            }
        }
        return .suspend(suspension)
    }

    private func refuse(_ reason: String, context: RequestContext) -> FilterStep {
        metrics.authFailure(route: routeName, reason: "invalid_signature")
        logger.info(
            "webhook signature refused",
            metadata: ["request_id": "\(context.requestID)", "route": "\(routeName)", "reason": "\(reason)"])
        return .respond(.error(.invalidSignature, requestID: context.requestID))
    }

    /// Why the request fails, or nil when a signature verifies. The reasons name what was wrong, never a value.
    func problem(_ headers: HeaderList, body: [ByteBuffer]) -> String? {
        if case .failure(let reason) = verify(headers, body: body) { return reason.text }
        return nil
    }

    /// What was signed, when a signature over it verifies under one of the secrets at an acceptable time.
    private func verify(_ headers: HeaderList, body: [ByteBuffer]) -> Result<Signed, Reason> {
        let signed: Signed
        do {
            signed = try Self.signed(headers, scheme: config.scheme, header: config.header, prefix: config.prefix, encoding: config.encoding)
        } catch {
            return .failure(error)
        }
        if let time = signed.time, abs(now() - time) > config.toleranceSeconds {
            return .failure(Reason(text: "the signed time is more than \(config.toleranceSeconds) s from the gateway's clock"))
        }
        for key in keys {
            for signature in signed.signatures where Self.verifies(signature, key: key, algorithm: config.algorithm, prefix: signed.prefix, body: body) {
                return .success(signed)
            }
        }
        return .failure(Reason(text: "no signature matches the body under the route's secrets"))
    }

    // MARK: What the sender sends

    /// The signatures a request carries (decoded), the bytes signed before the body, and the signed time if any.
    struct Signed {
        var signatures: [[UInt8]]
        var prefix: [UInt8] = []
        var time: Int?
    }

    /// Why a request's signature fields cannot be read: a reason for the log, never a value.
    struct Reason: Error { let text: String }

    static func signed(
        _ headers: HeaderList, scheme: WebhookSignatureConfig.Scheme, header: String, prefix: String, encoding: WebhookSignatureConfig.Encoding
    ) throws(Reason) -> Signed {
        func field(_ name: String) throws(Reason) -> String {
            let values = headers.values(name: name)
            guard let value = values.first, !value.isEmpty else { throw Reason(text: "no \(name) field") }
            guard values.count == 1 else { throw Reason(text: "\(name) is given more than once") }
            return value
        }
        func time(_ text: Substring, _ name: String) throws(Reason) -> Int {
            guard text.count <= 12, let seconds = Int(text), seconds > 0 else { throw Reason(text: "\(name) is not a Unix time") }
            return seconds
        }
        switch scheme {
        case .github:
            return Signed(signatures: [try hex(try field("x-hub-signature-256"), after: "sha256=")])
        case .shopify:
            return Signed(signatures: [try base64(Substring(try field("x-shopify-hmac-sha256")))])
        case .hmac:
            let value = try field(header)
            if encoding == .hex { return Signed(signatures: [try hex(value, after: prefix)]) }
            guard value.hasPrefix(prefix) else { throw Reason(text: "the signature does not start with \(prefix)") }
            return Signed(signatures: [try base64(value.dropFirst(prefix.count))])
        case .slack:
            let stamp = try field("x-slack-request-timestamp")
            let seconds = try time(Substring(stamp), "x-slack-request-timestamp")
            return Signed(signatures: [try hex(try field("x-slack-signature"), after: "v0=")], prefix: Array("v0:\(stamp):".utf8), time: seconds)
        case .stripe:
            // t=1492774577,v1=5257a8...,v1=...,v0=... (v0 is Stripe's test-mode scheme: not accepted).
            var stamp: Substring?
            var signatures: [[UInt8]] = []
            for element in try field("stripe-signature").split(separator: ",") {
                let pair = element.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard pair.count == 2 else { continue }
                if pair[0] == "t" {
                    stamp = Substring(pair[1])
                } else if pair[0] == "v1", signatures.count < 8 {
                    signatures.append(try hex(pair[1], after: ""))
                }
            }
            guard let stamp else { throw Reason(text: "stripe-signature has no t=") }
            guard !signatures.isEmpty else { throw Reason(text: "stripe-signature has no v1=") }
            return Signed(signatures: signatures, prefix: Array("\(stamp).".utf8), time: try time(stamp, "stripe-signature t="))
        case .standard:
            let id = try field("webhook-id")
            let stamp = try field("webhook-timestamp")
            let seconds = try time(Substring(stamp), "webhook-timestamp")
            // Space-separated "v1,<base64>" entries; other versions (v1a: asymmetric) are skipped.
            var signatures: [[UInt8]] = []
            for entry in try field("webhook-signature").split(separator: " ").prefix(8) where entry.hasPrefix("v1,") {
                signatures.append(try base64(entry.dropFirst(3)))
            }
            guard !signatures.isEmpty else { throw Reason(text: "webhook-signature has no v1 signature") }
            return Signed(signatures: signatures, prefix: Array("\(id).\(stamp).".utf8), time: seconds)
        }
    }

    private static func hex(_ text: String, after prefix: String) throws(Reason) -> [UInt8] {
        guard text.hasPrefix(prefix) else { throw Reason(text: "the signature does not start with \(prefix)") }
        let digits = Array(text.utf8.dropFirst(prefix.utf8.count))
        guard digits.count >= 2, digits.count <= 256, digits.count % 2 == 0 else { throw Reason(text: "the signature is not hex") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = PathNormalizer.hexValue(digits[index]), let low = PathNormalizer.hexValue(digits[index + 1]) else {
                throw Reason(text: "the signature is not hex")
            }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func base64(_ text: Substring) throws(Reason) -> [UInt8] {
        guard text.utf8.count <= 344, let data = Data(base64Encoded: String(text)), !data.isEmpty else {
            throw Reason(text: "the signature is not base64")
        }
        return Array(data)
    }

    // MARK: Checking

    /// The secret as HMAC key bytes: Standard Webhooks' `whsec_` secrets are base64, every other secret is its text.
    static func key(for secret: String, scheme: WebhookSignatureConfig.Scheme) -> SymmetricKey {
        if scheme == .standard, secret.hasPrefix("whsec_"), let decoded = Data(base64Encoded: String(secret.dropFirst(6))) {
            return SymmetricKey(data: decoded)
        }
        return SymmetricKey(data: Array(secret.utf8))
    }

    /// HMAC over `prefix` then the body's parts, compared in constant time.
    static func verifies(_ signature: [UInt8], key: SymmetricKey, algorithm: WebhookSignatureConfig.Algorithm, prefix: [UInt8], body: [ByteBuffer]) -> Bool {
        func verify<H: HashFunction>(_: H.Type) -> Bool {
            var mac = HMAC<H>(key: key)
            mac.update(data: prefix)
            for part in body { part.withUnsafeReadableBytes { mac.update(data: $0) } }
            return ConstantTime.equals(Array(mac.finalize()), signature)
        }
        switch algorithm {
        case .sha1: return verify(Insecure.SHA1.self)
        case .sha256: return verify(SHA256.self)
        case .sha512: return verify(SHA512.self)
        }
    }
}

