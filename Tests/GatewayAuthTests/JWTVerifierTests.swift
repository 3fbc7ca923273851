import Crypto
import Foundation
@testable import GatewayAuth
@testable import GatewayConfig
import GatewayPolicy
import Testing

/// The token rules with an injected clock: HS256 tokens made here byte by byte.
@Suite struct JWTVerifierTests {
    static let secret = String(repeating: "k", count: 32)
    let now: Int64 = 1_800_000_000

    static func keys() async throws -> JWTKeySet {
        let key = try await KeyLoader.load(JWTConfig.Key(kid: "a", alg: "HS256", secret: secret, publicKey: nil, publicKeyFile: nil))
        return JWTKeySet([key])
    }

    static func token(_ payload: String, header: String = #"{"alg":"HS256","kid":"a"}"#) -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return input + "." + Base64URL.encode(Array(mac))
    }

    func verify(_ payload: String, verifier: JWTVerifier = JWTVerifier(issuer: "i", audiences: ["a1", "a2"], leewaySeconds: 30)) async throws
        -> Result<Identity, JWTRejection>
    {
        verifier.verify(Self.token(payload), keys: try await Self.keys(), now: now)
    }

    // The verified-token cache answers only for the same token, the same key set and a time its claims
    // still accept (nbf/iat and exp with the leeway, checked again on every hit); it stays within capacity.
    @Test func verifiedTokenCacheRechecksTimeAndKeys() async throws {
        let verifier = JWTVerifier(issuer: nil, audiences: [], leewaySeconds: 30)
        let keys = try await Self.keys()
        let token = Self.token(#"{"sub":"u1","exp":\#(now + 100),"nbf":\#(now - 10)}"#)
        let verified = try verifier.verifiedToken(token, keys: keys, now: now).get()
        #expect(verified.validFrom == Double(now - 40) && verified.validUntil == Double(now + 130))
        let cache = VerifiedTokenCache(capacity: 2)
        cache.insert(token, verified, keys: keys)
        #expect(cache.identity(of: token, keys: keys, now: now)?.subject == "u1")
        #expect(cache.identity(of: token, keys: keys, now: now + 129)?.subject == "u1")
        #expect(cache.identity(of: token, keys: keys, now: now + 130) == nil, "expired (exp + leeway)")
        #expect(cache.count == 0, "an entry that no longer applies is dropped")
        cache.insert(token, verified, keys: keys)
        #expect(cache.identity(of: token, keys: keys, now: now - 41) == nil, "before nbf - leeway (a clock stepped back)")
        cache.insert(token, verified, keys: keys)
        #expect(cache.identity(of: token, keys: try await Self.keys(), now: now) == nil, "another key set (a JWKS refresh)")
        #expect(cache.identity(of: token + "x", keys: keys, now: now) == nil)
        for index in 0..<5 {
            let other = Self.token(#"{"sub":"u\#(index)","exp":\#(now + 100)}"#)
            cache.insert(other, try verifier.verifiedToken(other, keys: keys, now: now).get(), keys: keys)
        }
        #expect(cache.count == 2)
        let empty = VerifiedTokenCache(capacity: 0)
        empty.insert(token, verified, keys: keys)
        #expect(empty.count == 0)
    }

    // exp and nbf with the leeway on both sides of each boundary.
    @Test func timeClaimsAndLeeway() async throws {
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":\#(now - 29)}"#).isSuccess, "expired 29 s ago: within the leeway")
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":\#(now - 30)}"#).failure == .expired)
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":\#(now + 10),"nbf":\#(now + 29)}"#).isSuccess)
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":\#(now + 10),"nbf":\#(now + 31)}"#).failure == .notYetValid)
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":\#(now + 10),"iat":\#(now + 31)}"#).failure == .issuedInFuture)
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":1.9e9}"#).isSuccess, "a NumericDate may be a float")
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":"\#(now + 10)"}"#).failure == .badClaim("exp"))
        #expect(try await verify(#"{"iss":"i","aud":"a1"}"#).failure == .missingClaim("exp"))
    }

    // aud as a string or an array (any configured one matches); iss exact; duplicate names refused.
    @Test func audienceIssuerAndDuplicates() async throws {
        #expect(try await verify(#"{"iss":"i","aud":["x","a2"],"exp":\#(now + 10)}"#).isSuccess)
        #expect(try await verify(#"{"iss":"i","aud":["x"],"exp":\#(now + 10)}"#).failure == .wrongAudience)
        #expect(try await verify(#"{"iss":"i","exp":\#(now + 10)}"#).failure == .wrongAudience)
        #expect(try await verify(#"{"iss":"I","aud":"a1","exp":\#(now + 10)}"#).failure == .wrongIssuer)
        #expect(try await verify(#"{"iss":"i","aud":"a1","exp":\#(now + 10),"sub":"a","sub":"b"}"#).failure == .malformed("payload is not a JSON object"))
        let open = JWTVerifier(issuer: nil, audiences: [], leewaySeconds: 0)
        #expect(try await verify(#"{"exp":\#(now + 10)}"#, verifier: open).isSuccess, "no issuer or audience configured")
    }

    // Scopes from scope (string) and scp (array), subject, forwarded claims (objects are not forwarded).
    @Test func identityAndForwardedClaims() async throws {
        let verifier = JWTVerifier(
            issuer: nil, audiences: [], leewaySeconds: 0, forwardClaims: [("tenant", "x-tenant"), ("roles", "x-roles"), ("meta", "x-meta")])
        let result = try await verify(
            #"{"exp":\#(now + 10),"sub":"u1","scope":"a b","scp":["c"],"tenant":"t-9","roles":["admin","ops"],"meta":{"k":1}}"#,
            verifier: verifier)
        let identity = try result.get()
        #expect(identity.subject == "u1")
        #expect(identity.scopes == ["a", "b", "c"])
        let forwarded = identity.forwardedClaims.map { "\($0.0)=\($0.1)" }
        #expect(forwarded == ["x-tenant=t-9", "x-roles=admin ops"])
    }

    // The claims routes ask about are kept as text values: strings, arrays of strings, numbers and booleans.
    @Test func keptClaims() async throws {
        let verifier = JWTVerifier(issuer: nil, audiences: [], leewaySeconds: 0, keptClaims: ["tenant", "roles", "level", "beta", "absent"])
        let identity = try await verify(
            #"{"exp":\#(now + 10),"sub":"u","tenant":"acme","roles":["a","b",3],"level":2,"beta":true,"other":"x"}"#, verifier: verifier
        ).get()
        #expect(identity.claims == ["tenant": ["acme"], "roles": ["a", "b"], "level": ["2"], "beta": ["true"]])
    }

    // A subject or scope with a control character would write its own fields into the upstream request (they
    // go up in X-Auth-*): such a token is refused, however well signed.
    @Test func controlCharactersInIdentityClaimsAreRefused() async throws {
        let open = JWTVerifier(issuer: nil, audiences: [], leewaySeconds: 0)
        #expect(try await verify(#"{"exp":\#(now + 10),"sub":"u1\r\nX-Admin: yes"}"#, verifier: open).failure == .badClaim("sub"))
        #expect(try await verify(#"{"exp":\#(now + 10),"sub":"u1","scope":"a\nb"}"#, verifier: open).failure == .badClaim("scope"))
        #expect(try await verify(#"{"exp":\#(now + 10),"sub":"u1","scp":"a\u0000"}"#, verifier: open).failure == .badClaim("scp"))
        #expect(try await verify(#"{"exp":\#(now + 10),"sub":"u1","scp":["ok","b\r"]}"#, verifier: open).failure == .badClaim("scp"))
        #expect(try await verify(#"{"exp":\#(now + 10),"sub":"ünïcode ok","scope":"a b"}"#, verifier: open).isSuccess)
    }

    @Test func base64URLIsStrict() {
        #expect(Base64URL.decode("AQID"[...].utf8) == [1, 2, 3])
        #expect(Base64URL.decode("AQI"[...].utf8) == [1, 2])
        #expect(Base64URL.decode("AQJ"[...].utf8) == nil, "non-zero leftover bits")
        #expect(Base64URL.decode("AQ=="[...].utf8) == nil, "no padding in JWTs")
        #expect(Base64URL.decode("A"[...].utf8) == nil)
        #expect(Base64URL.decode("+/"[...].utf8) == nil, "standard base64 characters")
        #expect(Base64URL.encode([0xFB, 0xFF]) == "-_8")
    }
}

extension Result {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }

    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
