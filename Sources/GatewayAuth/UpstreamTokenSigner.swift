import Foundation
import GatewayConfig
import GatewayCore
import GatewayPolicy
import JWTKit

/// `auth.upstream_token`: the identity the gateway established for a request, as a short-lived JWT it signs, so an
/// upstream can verify the caller cryptographically (with the gateway's public key or shared secret) instead of
/// trusting `X-Auth-*` headers to have come through the gateway.
///
/// Claims: `iss`, `sub` (the consumer), `aud` (when configured), `iat`, `exp` (`iat` + `ttl_seconds`), `scope`
/// (space-separated), `auth_method` (`jwt`, `api_key`, `mtls`, `basic`, `introspection`), and the claims routes
/// ask about (`auth.claims`, `claim:` keys) as strings or arrays of strings. A token is signed once per identity
/// and reused for the first half of its life, so signing (an ECDSA or RSA operation) does not happen per request.
public final class UpstreamTokenSigner: Sendable {
    /// The request field it goes in, and whether its value is `Bearer <token>`.
    public let header: String
    let bearer: Bool
    private let issuer: String
    private let audience: String?
    private let ttlSeconds: Int64
    private let algorithm: any JWTAlgorithm
    /// The encoded JOSE header and its dot, the same for every token.
    private let headerSegment: String
    private let issued = BoundedCache<String, Issued>(capacity: 4096)
    /// The public key as a JWK Set (`{"keys":[...]}`), for `direct_response: {"jwks": "upstream_token"}`; nil
    /// for HS256, whose secret is not to be published.
    public let keySet: String?

    struct Issued: Sendable {
        let token: String
        let issuedAt: Int64
    }

    public struct KeyError: Error, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    private init(config: UpstreamTokenConfig, algorithm: any JWTAlgorithm, publicKey: [(String, String)]?) {
        header = config.header
        bearer = config.header == "authorization"
        issuer = config.issuer
        audience = config.audience
        ttlSeconds = Int64(config.ttlSeconds)
        self.algorithm = algorithm
        var jose = #"{"alg":"\#(config.alg)","typ":"JWT""#
        if let kid = config.kid {
            jose += #","kid":"#
            JSONText.appendQuoted(kid, to: &jose)
        }
        jose += "}"
        headerSegment = Base64URL.encode(Array(jose.utf8)) + "."
        keySet = publicKey.map { members in
            var key = "{"
            for (name, value) in members + [("alg", config.alg), ("use", "sig")] + (config.kid.map { [("kid", $0)] } ?? []) {
                if key.count > 1 { key += "," }
                JSONText.appendQuoted(name, to: &key)
                key += ":"
                JSONText.appendQuoted(value, to: &key)
            }
            return #"{"keys":["# + key + "}]}"
        }
    }

    /// Loads the signing key (the PEM file is read now; a reload reads it again).
    public static func load(_ config: UpstreamTokenConfig) async throws -> UpstreamTokenSigner {
        let collection = JWTKeyCollection()
        let kid = JWKIdentifier(string: "upstream-token")
        var publicKey: [(String, String)]?
        switch config.alg {
        case "HS256":
            guard let secret = config.secret else { throw KeyError(path: "auth.upstream_token.secret", message: "missing") }
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: kid)
        default:
            let path = "auth.upstream_token.private_key_file"
            guard let file = config.privateKeyFile else { throw KeyError(path: path, message: "missing") }
            guard let data = FileManager.default.contents(atPath: file), let pem = String(data: data, encoding: .utf8) else {
                throw KeyError(path: path, message: "\(file) cannot be read")
            }
            do {
                if config.alg == "ES256" {
                    let key = try ES256PrivateKey(pem: pem)
                    if let (x, y) = key.publicKey.parameters { publicKey = [("kty", "EC"), ("crv", "P-256"), ("x", x), ("y", y)] }
                    await collection.add(ecdsa: key, kid: kid)
                } else {
                    let key = try Insecure.RSA.PrivateKey(pem: pem)
                    let (modulus, exponent) = try key.publicKey.getKeyPrimitives()
                    publicKey = [("kty", "RSA"), ("n", Base64URL.encode(modulus)), ("e", Base64URL.encode(exponent))]
                    await collection.add(rsa: key, digestAlgorithm: .sha256, kid: kid)
                }
            } catch {
                let kind = config.alg == "ES256" ? "a P-256 EC private key" : "an RSA private key (2048 bits or more)"
                throw KeyError(path: path, message: "\(file) is not \(kind) in PEM: \(error)")
            }
        }
        let algorithm = try await collection.getKey(for: kid, alg: config.alg)
        return UpstreamTokenSigner(config: config, algorithm: algorithm, publicKey: publicKey)
    }

    /// The token for `identity` at `now` (Unix seconds): one already signed for the same identity while it is in
    /// the first half of its life, else a new one. nil only if signing fails.
    public func token(for identity: Identity, now: Int64) -> String? {
        let key = Self.cacheKey(identity)
        let halfLife = ttlSeconds / 2
        if let reused = issued.value(for: key, isValid: { now >= $0.issuedAt && now - $0.issuedAt < halfLife }) { return reused.token }
        guard let token = sign(identity, now: now) else { return nil }
        issued.insert(Issued(token: token, issuedAt: now), for: key)
        return token
    }

    /// The field value: the token, after `Bearer ` in `Authorization`.
    public func fieldValue(for identity: Identity, now: Int64) -> String? {
        token(for: identity, now: now).map { bearer ? "Bearer " + $0 : $0 }
    }

    func sign(_ identity: Identity, now: Int64) -> String? {
        var payload = #"{"iss":"#
        JSONText.appendQuoted(issuer, to: &payload)
        payload += #","sub":"#
        JSONText.appendQuoted(identity.subject, to: &payload)
        if let audience {
            payload += #","aud":"#
            JSONText.appendQuoted(audience, to: &payload)
        }
        payload += #","iat":\#(now),"exp":\#(now + ttlSeconds),"scope":"#
        JSONText.appendQuoted(identity.scopes.joined(separator: " "), to: &payload)
        payload += #","auth_method":"#
        JSONText.appendQuoted(identity.method.rawValue, to: &payload)
        for name in identity.claims.keys.sorted() where !Self.registered.contains(name) {
            let values = identity.claims[name] ?? []
            payload += ","
            JSONText.appendQuoted(name, to: &payload)
            payload += ":"
            if values.count == 1 {
                JSONText.appendQuoted(values[0], to: &payload)
            } else {
                payload += "["
                for (index, value) in values.enumerated() {
                    if index > 0 { payload += "," }
                    JSONText.appendQuoted(value, to: &payload)
                }
                payload += "]"
            }
        }
        payload += "}"
        let signingInput = headerSegment + Base64URL.encode(Array(payload.utf8))
        guard let signature = try? algorithm.sign(Array(signingInput.utf8)) else { return nil }
        return signingInput + "." + Base64URL.encode(signature)
    }

    /// Claims the gateway sets itself: a token claim of the same name never overrides them.
    private static let registered: Set<String> = ["iss", "sub", "aud", "iat", "exp", "nbf", "jti", "scope", "auth_method"]

    private static func cacheKey(_ identity: Identity) -> String {
        var key = identity.method.rawValue + "\u{0}" + identity.subject + "\u{0}" + identity.scopes.joined(separator: " ")
        for name in identity.claims.keys.sorted() { key += "\u{0}" + name + "=" + (identity.claims[name] ?? []).joined(separator: "\u{1}") }
        return key
    }
}
