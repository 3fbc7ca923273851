import Crypto
import Foundation
@testable import GatewayAuth
import GatewayConfig
import Testing
import TestSupport

/// auth.upstream_token: tokens an upstream can verify with nothing but the gateway's public key or secret.
@Suite struct UpstreamTokenSignerTests {
    static let identity: Identity = {
        var identity = Identity(method: .jwt, subject: "alice", scopes: ["orders:read", "orders:write"])
        identity.claims = ["tenant": ["acme"], "roles": ["admin", "ops"], "sub": ["forged"]]
        return identity
    }()

    static func parts(_ token: String) throws -> (signingInput: String, header: [String: Any], payload: [String: Any], signature: Data) {
        let pieces = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        try #require(pieces.count == 3)
        func decode(_ text: String) throws -> Data {
            var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base64.count % 4 != 0 { base64 += "=" }
            return try #require(Data(base64Encoded: base64))
        }
        let header = try #require(try JSONSerialization.jsonObject(with: decode(pieces[0])) as? [String: Any])
        let payload = try #require(try JSONSerialization.jsonObject(with: decode(pieces[1])) as? [String: Any])
        return (pieces[0] + "." + pieces[1], header, payload, try decode(pieces[2]))
    }

    // ES256: the signature verifies with the public key alone; the claims say who, how and for how long; a
    // token claim named like a registered one cannot override it.
    @Test func es256TokensVerifyWithThePublicKey() async throws {
        let key = P256.Signing.PrivateKey()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("upstream-token-\(UUID().uuidString).pem")
        try key.pemRepresentation.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        var config = UpstreamTokenConfig(issuer: "https://gateway.test", alg: "ES256")
        config.privateKeyFile = file.path
        config.audience = "orders-service"
        config.kid = "gw-1"
        config.ttlSeconds = 60
        let signer = try await UpstreamTokenSigner.load(config)

        let token = try #require(signer.token(for: Self.identity, now: 1_000_000))
        let (input, header, payload, signature) = try Self.parts(token)
        let valid = key.publicKey.isValidSignature(try P256.Signing.ECDSASignature(rawRepresentation: signature), for: Data(input.utf8))
        #expect(valid)
        #expect(header["alg"] as? String == "ES256" && header["kid"] as? String == "gw-1" && header["typ"] as? String == "JWT")
        #expect(payload["iss"] as? String == "https://gateway.test" && payload["aud"] as? String == "orders-service")
        #expect(payload["sub"] as? String == "alice", "a token's own sub claim does not override the consumer")
        #expect(payload["iat"] as? Int == 1_000_000 && payload["exp"] as? Int == 1_000_060)
        #expect(payload["scope"] as? String == "orders:read orders:write" && payload["auth_method"] as? String == "jwt")
        #expect(payload["tenant"] as? String == "acme" && payload["roles"] as? [String] == ["admin", "ops"])

        // Reused for the first half of its life, then signed afresh.
        #expect(signer.token(for: Self.identity, now: 1_000_029) == token)
        let renewed = try #require(signer.token(for: Self.identity, now: 1_000_030))
        #expect(renewed != token)
        #expect(try Self.parts(renewed).payload["iat"] as? Int == 1_000_030)
        var other = Self.identity
        other.subject = "bob"
        #expect(try Self.parts(#require(signer.token(for: other, now: 1_000_000))).payload["sub"] as? String == "bob")
    }

    // HS256 in Authorization: "Bearer <token>", an HMAC-SHA256 with the shared secret.
    @Test func hs256BearerTokens() async throws {
        let secret = "0123456789abcdef0123456789abcdef"
        var config = UpstreamTokenConfig(issuer: "gw", alg: "HS256")
        config.secret = secret
        config.header = "authorization"
        let signer = try await UpstreamTokenSigner.load(config)
        let value = try #require(signer.fieldValue(for: Self.identity, now: 42))
        #expect(value.hasPrefix("Bearer "))
        let (input, header, _, signature) = try Self.parts(String(value.dropFirst(7)))
        let expected = Data(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8))))
        #expect(signature == expected && header["alg"] as? String == "HS256")
    }

    @Test func unusableKeysAreReported() async throws {
        var config = UpstreamTokenConfig(issuer: "gw", alg: "RS256")
        config.privateKeyFile = "/nonexistent/key.pem"
        let error = await thrownError { _ = try await UpstreamTokenSigner.load(config) }
        #expect("\(error.map { "\($0)" } ?? "none")" == "auth.upstream_token.private_key_file: /nonexistent/key.pem cannot be read")
    }
}
