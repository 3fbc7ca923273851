import GatewayConfig
import GatewayPolicy
import JWTKit

/// A key that may verify tokens, pinned to one algorithm: a token must name exactly this `alg`.
public struct VerificationKey: Sendable {
    public let kid: String?
    public let alg: String
    let algorithm: any JWTAlgorithm

    init(kid: String?, alg: String, algorithm: any JWTAlgorithm) {
        self.kid = kid
        self.alg = alg
        self.algorithm = algorithm
    }
}

/// The keys tokens are checked against, by `kid`. Immutable; a JWKS refresh builds a new one.
public final class JWTKeySet: Sendable {
    let byKID: [String: VerificationKey]
    /// Used for tokens without `kid` only when it is the one key there is (never a guess among several).
    let soleKey: VerificationKey?

    public init(_ keys: [VerificationKey]) {
        var byKID: [String: VerificationKey] = [:]
        for key in keys { if let kid = key.kid, byKID[kid] == nil { byKID[kid] = key } }
        self.byKID = byKID
        self.soleKey = keys.count == 1 ? keys[0] : nil
    }

    public var count: Int { byKID.count + (soleKey != nil && soleKey?.kid == nil ? 1 : 0) }

    func key(for kid: String?) -> VerificationKey? {
        guard let kid else { return soleKey }
        return byKID[kid]
    }

    /// This set plus `other`'s keys whose kid is not taken (configured keys win over fetched ones).
    func merging(_ other: JWTKeySet) -> JWTKeySet {
        var keys = Array(byKID.values)
        if let sole = soleKey, sole.kid == nil { keys.append(sole) }
        for (kid, key) in other.byKID where byKID[kid] == nil { keys.append(key) }
        return JWTKeySet(keys)
    }
}

/// Who a valid credential says the caller is.
public struct Identity: Sendable, Equatable {
    public enum Method: String, Sendable { case jwt, apiKey = "api_key", mtls, basic, introspection, oidc }
    public var method: Method
    /// JWT `sub`, the API key's id, the client certificate's consumer id, the Basic user name, or an introspected
    /// token's `sub` (else `username`, else `client_id`).
    public var subject: String
    public var scopes: [String]
    /// Claims to forward upstream as headers (JWT only): (header, value).
    public var forwardedClaims: [(String, String)] = []
    /// The token's claims that routes' `auth.claims` ask about, as text values (a string claim has one, an array
    /// of strings each of its items; numbers and booleans are printed).
    public var claims: [String: [String]] = [:]

    public static func == (lhs: Identity, rhs: Identity) -> Bool {
        lhs.method == rhs.method && lhs.subject == rhs.subject && lhs.scopes == rhs.scopes && lhs.claims == rhs.claims
            && lhs.forwardedClaims.map { "\($0.0)=\($0.1)" } == rhs.forwardedClaims.map { "\($0.0)=\($0.1)" }
    }
}

/// Why a token was refused (for the log; clients always get the same 401).
public enum JWTRejection: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLong
    case malformed(String)
    case forbiddenHeader(String)
    case unknownKey(String?)
    case algorithmMismatch(token: String, key: String)
    case badSignature
    case expired
    case notYetValid
    case issuedInFuture
    case wrongIssuer
    case wrongAudience
    case badClaim(String)
    case missingClaim(String)
    /// A claim with a value this gateway does not accept (an OIDC login's email outside `email_domains`).
    case refusedClaim(String)

    /// A fixed code for metrics labels.
    public var code: String {
        switch self {
        case .tooLong: return "too_long"
        case .malformed: return "malformed"
        case .forbiddenHeader: return "forbidden_header"
        case .unknownKey: return "unknown_key"
        case .algorithmMismatch: return "algorithm_mismatch"
        case .badSignature: return "bad_signature"
        case .expired: return "expired"
        case .notYetValid: return "not_yet_valid"
        case .issuedInFuture: return "issued_in_future"
        case .wrongIssuer: return "wrong_issuer"
        case .wrongAudience: return "wrong_audience"
        case .badClaim: return "bad_claim"
        case .missingClaim: return "missing_claim"
        case .refusedClaim: return "refused_claim"
        }
    }

    public var description: String {
        switch self {
        case .tooLong: return "token longer than 8 KiB"
        case .malformed(let why): return "malformed token: \(why)"
        case .forbiddenHeader(let header): return "token header \(header) is not accepted"
        case .unknownKey(let kid): return "no key for kid \(kid.map { "\"\($0)\"" } ?? "(none)")"
        case .algorithmMismatch(let token, let key): return "token alg \(token) does not match the key's \(key)"
        case .badSignature: return "bad signature"
        case .expired: return "expired"
        case .notYetValid: return "not valid yet (nbf)"
        case .issuedInFuture: return "issued in the future (iat)"
        case .wrongIssuer: return "wrong issuer"
        case .wrongAudience: return "wrong audience"
        case .badClaim(let claim): return "claim \(claim) has the wrong type"
        case .missingClaim(let claim): return "claim \(claim) is missing"
        case .refusedClaim(let why): return why
        }
    }
}

/// Verifies a compact JWS (RFC 7515/7519) against pinned keys, synchronously and without allocation-heavy
/// decoding: the rules are the gateway's, jwt-kit supplies the signature algorithms.
///
/// Refused: more than 8 KiB; anything but three base64url parts; `alg: none` or any `alg` other than the
/// selected key's (so an HS token can never be checked with an RSA public key as its secret); header keys
/// `jwk`, `jku`, `x5u`, `x5c` (keys the token brings itself); any `crit` extension; duplicate JSON names; a
/// missing or non-numeric `exp`; `nbf`/`iat` in the future beyond the leeway; `iss` not equal to `issuer`;
/// no `aud` among `audiences` (when configured).
public struct JWTVerifier: Sendable {
    public static let maxTokenBytes = 8192

    public let issuer: String?
    public let audiences: [String]
    public let leewaySeconds: Int
    /// claim name -> header name, forwarded upstream.
    public let forwardClaims: [(claim: String, header: String)]

    /// The claims routes ask about (`auth.claims`), kept in the identity.
    public let keptClaims: Set<String>

    public init(
        issuer: String?, audiences: [String], leewaySeconds: Int, forwardClaims: [(claim: String, header: String)] = [], keptClaims: Set<String> = []
    ) {
        self.keptClaims = keptClaims
        self.issuer = issuer
        self.audiences = audiences
        self.leewaySeconds = leewaySeconds
        self.forwardClaims = forwardClaims
    }

    /// The `kid` a token names (nil when absent or unreadable), to decide whether a JWKS refresh may help.
    public static func keyID(of token: String) -> String? {
        guard let dot = token.utf8.firstIndex(of: UInt8(ascii: ".")),
            let bytes = Base64URL.decode(token[..<dot].utf8),
            case .object(let fields)? = try? JSONParser.parse(bytes)
        else { return nil }
        for (key, value) in fields where key == "kid" {
            if case .string(let kid) = value { return kid }
        }
        return nil
    }

    /// - Parameter now: seconds since 1970.
    public func verify(_ token: String, keys: JWTKeySet, now: Int64) -> Result<Identity, JWTRejection> {
        verifiedToken(token, keys: keys, now: now).map(\.identity)
    }

    /// A token that verified, with the time window its claims accept (what a cache must check again).
    public struct Verified: Sendable {
        public var identity: Identity
        /// Seconds since 1970 from which `nbf` and `iat` (with the leeway) accept the token.
        public var validFrom: Double
        /// Seconds since 1970 from which `exp` (with the leeway) refuses it.
        public var validUntil: Double
    }

    /// `verify`, also returning the window in which the claims accept the token.
    public func verifiedToken(_ token: String, keys: JWTKeySet, now: Int64) -> Result<Verified, JWTRejection> {
        guard token.utf8.count <= Self.maxTokenBytes else { return .failure(.tooLong) }
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else {
            return .failure(.malformed("expected three non-empty parts"))
        }
        guard let headerBytes = Base64URL.decode(Substring(parts[0]).utf8),
            let payloadBytes = Base64URL.decode(Substring(parts[1]).utf8),
            let signature = Base64URL.decode(Substring(parts[2]).utf8)
        else { return .failure(.malformed("not base64url")) }
        guard case .object(let header)? = try? JSONParser.parse(headerBytes), !hasDuplicates(header) else {
            return .failure(.malformed("header is not a JSON object"))
        }

        var alg: String?
        var kid: String?
        for (name, value) in header {
            switch name {
            case "alg":
                guard case .string(let text) = value else { return .failure(.malformed("alg is not a string")) }
                alg = text
            case "kid":
                guard case .string(let text) = value else { return .failure(.malformed("kid is not a string")) }
                kid = text
            case "jwk", "jku", "x5u", "x5c":
                return .failure(.forbiddenHeader(name))
            case "crit":
                // RFC 7515 §4.1.11: extensions the recipient does not understand must be refused; we know none.
                return .failure(.forbiddenHeader("crit"))
            default:
                break
            }
        }
        guard let alg else { return .failure(.malformed("no alg")) }
        guard alg != "none" else { return .failure(.forbiddenHeader("alg none")) }
        guard let key = keys.key(for: kid) else { return .failure(.unknownKey(kid)) }
        guard alg == key.alg else { return .failure(.algorithmMismatch(token: alg, key: key.alg)) }

        let signingInput = token.utf8.prefix(parts[0].count + 1 + parts[1].count)
        guard (try? key.algorithm.verify(signature, signs: Array(signingInput))) == true else { return .failure(.badSignature) }

        guard case .object(let claims)? = try? JSONParser.parse(payloadBytes), !hasDuplicates(claims) else {
            return .failure(.malformed("payload is not a JSON object"))
        }
        return check(claims, now: now)
    }

    private func check(_ claims: [(key: String, value: JSONValue)], now: Int64) -> Result<Verified, JWTRejection> {
        var expiry: Double?
        var notBefore = -Double.infinity
        var subject = ""
        var scopes: [String] = []
        var audienceMatched = audiences.isEmpty
        var issuerMatched = issuer == nil
        let leeway = Double(leewaySeconds)
        let current = Double(now)
        var forwarded: [(String, String)] = []
        var kept: [String: [String]] = [:]
        for (name, value) in claims {
            switch name {
            case "exp":
                guard let seconds = value.number else { return .failure(.badClaim("exp")) }
                expiry = seconds
            case "nbf":
                guard let seconds = value.number else { return .failure(.badClaim("nbf")) }
                if current + leeway < seconds { return .failure(.notYetValid) }
                notBefore = max(notBefore, seconds)
            case "iat":
                guard let seconds = value.number else { return .failure(.badClaim("iat")) }
                if current + leeway < seconds { return .failure(.issuedInFuture) }
                notBefore = max(notBefore, seconds)
            case "iss":
                guard case .string(let text) = value else { return .failure(.badClaim("iss")) }
                if let issuer { issuerMatched = text == issuer }
            case "aud":
                switch value {
                case .string(let text): audienceMatched = audienceMatched || audiences.contains(text)
                case .array(let items):
                    for item in items {
                        guard case .string(let text) = item else { return .failure(.badClaim("aud")) }
                        if audiences.contains(text) { audienceMatched = true }
                    }
                default: return .failure(.badClaim("aud"))
                }
            // The subject and scopes go upstream in X-Auth-* fields: a control character (CR, LF) in them would
            // let whoever controls a subject at the IdP write fields of their own into the upstream request.
            case "sub":
                guard case .string(let text) = value, Self.isFieldText(text) else { return .failure(.badClaim("sub")) }
                subject = text
            case "scope":
                guard case .string(let text) = value, Self.isFieldText(text) else { return .failure(.badClaim("scope")) }
                scopes += text.split(separator: " ").map(String.init)
            case "scp":
                switch value {
                case .string(let text) where Self.isFieldText(text): scopes += text.split(separator: " ").map(String.init)
                case .array(let items):
                    for item in items {
                        guard case .string(let text) = item, Self.isFieldText(text) else { return .failure(.badClaim("scp")) }
                        scopes.append(text)
                    }
                default: return .failure(.badClaim("scp"))
                }
            default:
                break
            }
            for (claim, header) in forwardClaims where claim == name {
                if let text = value.headerText { forwarded.append((header, text)) }
            }
            if keptClaims.contains(name), let values = value.claimValues { kept[name] = values }
        }
        guard let expiry else { return .failure(.missingClaim("exp")) }
        guard current - leeway < expiry else { return .failure(.expired) }
        guard issuerMatched else { return .failure(.wrongIssuer) }
        guard audienceMatched else { return .failure(.wrongAudience) }
        return .success(
            Verified(
                identity: Identity(method: .jwt, subject: subject, scopes: scopes, forwardedClaims: forwarded, claims: kept),
                validFrom: notBefore - leeway, validUntil: expiry + leeway))
    }

    /// Text that can be a header field value as it is: no control characters (CR, LF, NUL, DEL...).
    static func isFieldText(_ text: String) -> Bool { text.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F } }

    private func hasDuplicates(_ fields: [(key: String, value: JSONValue)]) -> Bool {
        var seen = Set<String>()
        for (key, _) in fields where !seen.insert(key).inserted { return true }
        return false
    }
}

extension JSONValue {
    /// A NumericDate: a JSON number (strings are refused).
    var number: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// A claim's values for `auth.claims`: a string or number or boolean as one text, an array's strings each.
    var claimValues: [String]? {
        if case .array(let items) = self {
            return items.compactMap { if case .string(let text) = $0 { text } else { nil } }
        }
        return headerText.map { [$0] }
    }

    /// A claim's value as header text: strings as they are, numbers and booleans printed, arrays of strings
    /// space-separated; anything else (objects, control characters) is not forwarded.
    var headerText: String? {
        let text: String
        switch self {
        case .string(let value): text = value
        case .integer(let value): text = String(value)
        case .double(let value): text = String(value)
        case .bool(let value): text = value ? "true" : "false"
        case .array(let items):
            var parts: [String] = []
            for item in items {
                guard case .string(let value) = item else { return nil }
                parts.append(value)
            }
            text = parts.joined(separator: " ")
        default: return nil
        }
        return JWTVerifier.isFieldText(text) ? text : nil
    }
}
