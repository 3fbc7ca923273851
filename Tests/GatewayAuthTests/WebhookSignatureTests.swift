import Crypto
import Foundation
import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore
import Testing

@testable import GatewayAuth

/// `webhook_signature`: each sender's scheme against the examples it publishes, times, rotation and malformed fields.
@Suite struct WebhookSignatureTests {
    func check(_ scheme: WebhookSignatureConfig.Scheme, _ secrets: [String], now: Int = 1_614_265_330, edit: (inout WebhookSignatureConfig) -> Void = { _ in })
        -> WebhookSignatureCheck
    {
        var config = WebhookSignatureConfig(scheme: scheme, secrets: secrets)
        edit(&config)
        return WebhookSignatureCheck(config, routeName: "hooks", logger: Logger(label: "test"), metrics: .disabled, now: { now })
    }

    /// The body in two parts, as it may arrive.
    func body(_ text: String) -> [ByteBuffer] {
        let bytes = Array(text.utf8)
        let middle = bytes.count / 2
        return [ByteBuffer(bytes: bytes[..<middle]), ByteBuffer(bytes: bytes[middle...])]
    }

    // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
    @Test func github() {
        let verifier = check(.github, ["It's a Secret to Everybody"])
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        #expect(verifier.problem(HeaderList([("X-Hub-Signature-256", signature)]), body: body("Hello, World!")) == nil)
        #expect(verifier.problem(HeaderList([("X-Hub-Signature-256", signature.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256="))]), body: body("Hello, World!")) == nil)
        #expect(verifier.problem(HeaderList([("X-Hub-Signature-256", signature)]), body: body("Hello, World?")) == "no signature matches the body under the route's secrets")
        #expect(verifier.problem(HeaderList([]), body: body("Hello, World!")) == "no x-hub-signature-256 field")
        #expect(verifier.problem(HeaderList([("X-Hub-Signature-256", "sha1=" + signature.dropFirst(7))]), body: []) == "the signature does not start with sha256=")
        #expect(verifier.problem(HeaderList([("X-Hub-Signature-256", "sha256=zz")]), body: []) == "the signature is not hex")
        let twice = HeaderList([("X-Hub-Signature-256", signature), ("X-Hub-Signature-256", signature)])
        #expect(verifier.problem(twice, body: body("Hello, World!")) == "x-hub-signature-256 is given more than once")
        // Rotation: the old secret first, the new one second; either verifies.
        #expect(check(.github, ["a new secret of 16+ bytes", "It's a Secret to Everybody"]).problem(HeaderList([("X-Hub-Signature-256", signature)]), body: body("Hello, World!")) == nil)
    }

    // Standard Webhooks' test vector (whsec_ secrets are base64), within and outside the tolerance.
    @Test func standardWebhooks() {
        let headers = HeaderList([
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("webhook-timestamp", "1614265330"),
            ("webhook-signature", "v1a,ignored v1,bm90IHRoaXMgb25l v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ])
        let payload = #"{"test": 2432232314}"#
        #expect(check(.standard, ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).problem(headers, body: body(payload)) == nil)
        #expect(check(.standard, ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], now: 1_614_265_330 + 301).problem(headers, body: body(payload))
            == "the signed time is more than 300 s from the gateway's clock")
        #expect(check(.standard, ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], now: 1_614_265_330 - 250).problem(headers, body: body(payload)) == nil)
        let noV1 = HeaderList([("webhook-id", "m"), ("webhook-timestamp", "1614265330"), ("webhook-signature", "v1a,xyz")])
        #expect(check(.standard, ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).problem(noV1, body: []) == "webhook-signature has no v1 signature")
    }

    // Slack's documented example.
    @Test func slack() {
        let text =
            "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
        let headers = HeaderList([
            ("X-Slack-Request-Timestamp", "1531420618"), ("X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
        ])
        #expect(check(.slack, ["8f742231b10e8888abcd99yyyzzz85a5"], now: 1_531_420_618).problem(headers, body: body(text)) == nil)
        #expect(check(.slack, ["8f742231b10e8888abcd99yyyzzz85a5"]).problem(headers, body: body(text)) == "the signed time is more than 300 s from the gateway's clock")
        let badTime = HeaderList([("X-Slack-Request-Timestamp", "soon"), ("X-Slack-Signature", "v0=00")])
        #expect(check(.slack, ["8f742231b10e8888abcd99yyyzzz85a5"]).problem(badTime, body: []) == "x-slack-request-timestamp is not a Unix time")
    }

    // Stripe, Shopify and a described hmac scheme, signed here with swift-crypto's HMAC directly.
    @Test func stripeShopifyAndDescribed() {
        let secret = "whsec_stripe_test_secret_0123"
        let payload = #"{"id":"evt_1","type":"invoice.paid"}"#
        let stamp = 1_614_265_330
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(stamp).\(payload)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
        let hex = mac.map { String(format: "%02x", $0) }.joined()
        let stripe = HeaderList([("Stripe-Signature", "t=\(stamp),v1=\(String(repeating: "0", count: 64)), v1=\(hex),v0=\(hex)")])
        #expect(check(.stripe, [secret]).problem(stripe, body: body(payload)) == nil, "the stripe scheme's secret is its text, whsec_ included")
        #expect(check(.stripe, [secret]).problem(HeaderList([("Stripe-Signature", "t=\(stamp),v0=\(hex)")]), body: body(payload)) == "stripe-signature has no v1=")
        #expect(check(.stripe, [secret]).problem(HeaderList([("Stripe-Signature", "v1=\(hex)")]), body: body(payload)) == "stripe-signature has no t=")

        let shopifyMac = HMAC<SHA256>.authenticationCode(for: Array(payload.utf8), using: SymmetricKey(data: Array("shopify-secret-0123".utf8)))
        let shopify = HeaderList([("X-Shopify-Hmac-Sha256", Data(shopifyMac).base64EncodedString())])
        #expect(check(.shopify, ["shopify-secret-0123"]).problem(shopify, body: body(payload)) == nil)

        let sha512 = HMAC<SHA512>.authenticationCode(for: Array(payload.utf8), using: SymmetricKey(data: Array("partner-secret-0123".utf8)))
        let described = check(.hmac, ["partner-secret-0123"]) {
            $0.header = "x-partner-signature"
            $0.algorithm = .sha512
            $0.encoding = .base64
            $0.prefix = "hmac-sha512 "
        }
        #expect(described.problem(HeaderList([("X-Partner-Signature", "hmac-sha512 " + Data(sha512).base64EncodedString())]), body: body(payload)) == nil)
        #expect(described.problem(HeaderList([("X-Partner-Signature", Data(sha512).base64EncodedString())]), body: body(payload)) == "the signature does not start with hmac-sha512 ")
        #expect(described.problem(HeaderList([("X-Partner-Signature", "hmac-sha512 !!")]), body: body(payload)) == "the signature is not base64")
    }

    // Config: the scheme's own fields only for hmac, secrets long enough, no cache on a checked route.
    @Test func decoding() {
        func errors(_ webhook: String, route extra: String = "") -> [String] {
            let json = #"""
                { "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
                  "routes": [{ "name": "r", "upstream": "u", "webhook_signature": \#(webhook) \#(extra) }] }
                """#
            return ConfigLoader.load(text: json, environment: [:]).errors.map(\.description)
        }
        #expect(errors(#"{ "scheme": "github", "secrets": ["0123456789abcdef"] }"#).isEmpty)
        let loaded = ConfigLoader.load(
            text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u", "webhook_signature": { "scheme": "github", "secrets": ["hush-0123456789abcdef"] } }] }"#,
            environment: [:])
        let shown = loaded.config?.source?.redactingSecrets().rendered ?? ""
        #expect(shown.contains(#""secrets":"<redacted>""#) && !shown.contains("hush"), "\(shown)")
        #expect(errors(#"{ "scheme": "github", "secrets": ["short"], "header": "x-sig" }"#) == [
            "routes[0].webhook_signature.secrets[0]: is shorter than 16 bytes; use the secret the sender generated",
            "routes[0].webhook_signature.header: applies to the hmac scheme only; github says how it signs",
        ])
        #expect(errors(#"{ "scheme": "hmac", "secrets": ["0123456789abcdef"] }"#) == [
            "routes[0].webhook_signature.header: the hmac scheme needs the field that carries the signature"
        ])
        #expect(errors(#"{ "scheme": "stripe", "secrets": [] }"#) == ["routes[0].webhook_signature.secrets: list at least one secret"])
        #expect(errors(#"{ "scheme": "slack", "secrets": ["0123456789abcdef"] }"#, route: #", "cache": { "enabled": true }"#) == [
            "routes[0].cache: a stored answer would be served without the webhook_signature check; leave the cache off here"
        ])
        // replay_protection: on by default where the sender signs a time; refused where it signs none.
        func replayProtection(_ webhook: String) -> Bool? {
            let json = #"""
                { "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
                  "routes": [{ "name": "r", "upstream": "u", "webhook_signature": \#(webhook) }] }
                """#
            return ConfigLoader.load(text: json, environment: [:]).config?.routes.first?.webhookSignature?.replayProtection
        }
        #expect(replayProtection(#"{ "scheme": "stripe", "secrets": ["0123456789abcdef"] }"#) == true)
        #expect(replayProtection(#"{ "scheme": "standard", "secrets": ["0123456789abcdef"], "replay_protection": false }"#) == false)
        #expect(replayProtection(#"{ "scheme": "github", "secrets": ["0123456789abcdef"] }"#) == false)
        #expect(errors(#"{ "scheme": "shopify", "secrets": ["0123456789abcdef"], "replay_protection": true }"#) == [
            "routes[0].webhook_signature.replay_protection: shopify signatures carry no time: a replay looks the same as the sender's own redelivery"
        ])
    }
}
