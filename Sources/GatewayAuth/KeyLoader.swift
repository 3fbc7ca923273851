import Foundation
import GatewayConfig
import JWTKit

/// Turns configured keys and JWKS documents into pinned `VerificationKey`s, using jwt-kit's key types and
/// algorithms (built once here; verifying later is synchronous).
public enum KeyLoader {
    public struct KeyError: Error, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    /// The keys of `auth.jwt.keys` (secrets and PEM public keys, inline or from files).
    public static func configuredKeys(_ config: JWTConfig) async throws -> [VerificationKey] {
        var keys: [VerificationKey] = []
        for (index, key) in config.keys.enumerated() {
            let path = "auth.jwt.keys[\(index)]"
            do {
                keys.append(try await load(key))
            } catch let error as KeyError {
                throw KeyError(path: path + error.path, message: error.message)
            } catch {
                throw KeyError(path: path, message: "cannot be used as an \(key.alg) key: \(error)")
            }
        }
        return keys
    }

    static func load(_ key: JWTConfig.Key) async throws -> VerificationKey {
        let collection = JWTKeyCollection()
        let kid = key.kid.map { JWKIdentifier(string: $0) }
        let digest: DigestAlgorithm
        switch key.alg.suffix(3) {
        case "384": digest = .sha384
        case "512": digest = .sha512
        default: digest = .sha256
        }
        if key.alg.hasPrefix("HS") {
            guard let secret = key.secret else { throw KeyError(path: ".secret", message: "missing") }
            guard secret.utf8.count >= 32 else {
                throw KeyError(path: ".secret", message: "an HMAC secret needs at least 32 bytes (256 bits)")
            }
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: digest, kid: kid)
        } else {
            let pem = try publicKeyPEM(key)
            switch key.alg {
            case "RS256", "RS384", "RS512":
                await collection.add(rsa: try Insecure.RSA.PublicKey(pem: pem), digestAlgorithm: digest, kid: kid)
            case "PS256", "PS384", "PS512":
                await collection.add(pss: try Insecure.RSA.PublicKey(pem: pem), digestAlgorithm: digest, kid: kid)
            case "ES256":
                await collection.add(ecdsa: try ES256PublicKey(pem: pem), kid: kid)
            case "ES384":
                await collection.add(ecdsa: try ES384PublicKey(pem: pem), kid: kid)
            case "EdDSA":
                await collection.add(eddsa: try EdDSA.PublicKey(pem: pem), kid: kid)
            default:
                throw KeyError(path: ".alg", message: "unsupported algorithm \(key.alg)")
            }
        }
        let algorithm = try await collection.getKey(for: kid, alg: key.alg)
        return VerificationKey(kid: key.kid, alg: key.alg, algorithm: algorithm)
    }

    private static func publicKeyPEM(_ key: JWTConfig.Key) throws -> String {
        if let pem = key.publicKey { return pem.replacingOccurrences(of: "\\n", with: "\n") }
        guard let file = key.publicKeyFile else { throw KeyError(path: "", message: "needs public_key or public_key_file") }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw KeyError(path: ".public_key_file", message: "\(file) cannot be read")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Problems with the key material a config names (for `gateway check`): each key must load, a JWKS file
    /// must parse and hold at least one usable key. Returns (JSON path, message, isError).
    public static func findings(_ config: JWTConfig) async -> [(path: String, message: String, isError: Bool)] {
        var findings: [(path: String, message: String, isError: Bool)] = []
        for (index, key) in config.keys.enumerated() {
            do {
                _ = try await load(key)
            } catch let error as KeyError {
                findings.append(("auth.jwt.keys[\(index)]\(error.path)", error.message, true))
            } catch {
                findings.append(("auth.jwt.keys[\(index)]", "cannot be used as an \(key.alg) key: \(error)", true))
            }
        }
        if let file = config.jwksFile {
            if let data = FileManager.default.contents(atPath: file) {
                do {
                    let (keys, skipped) = try await jwksKeys(data)
                    for reason in skipped { findings.append(("auth.jwt.jwks_file", "key skipped: \(reason)", false)) }
                    if keys.isEmpty { findings.append(("auth.jwt.jwks_file", "\(file) holds no usable signing key", true)) }
                } catch {
                    findings.append(("auth.jwt.jwks_file", "\(file): \(error)", true))
                }
            } else {
                findings.append(("auth.jwt.jwks_file", "\(file) cannot be read", true))
            }
        }
        return findings
    }

    /// The usable signing keys of a JWKS document (RFC 7517): keys for encryption (`use: enc`), without `kid`,
    /// of unknown types or broken are skipped and reported in `skipped`. A key's algorithm is its `alg`, or
    /// follows from its curve (EC P-256: ES256, P-384: ES384, OKP Ed25519: EdDSA); an RSA key without `alg`
    /// is taken as RS256.
    public static func jwksKeys(_ data: Data) async throws -> (keys: [VerificationKey], skipped: [String]) {
        guard let document = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let entries = document["keys"] as? [[String: Any]]
        else { throw KeyError(path: "", message: "not a JWKS document ({\"keys\": [...]})") }
        var keys: [VerificationKey] = []
        var skipped: [String] = []
        for (index, entry) in entries.enumerated() {
            let kid = entry["kid"] as? String
            let label = kid.map { "kid \"\($0)\"" } ?? "key \(index)"
            if entry["use"] as? String == "enc" {
                skipped.append("\(label): an encryption key")
                continue
            }
            guard let kid else {
                skipped.append("\(label): no kid")
                continue
            }
            guard let alg = pinnedAlgorithm(entry) else {
                skipped.append("\(label): no signature algorithm for kty \(entry["kty"] as? String ?? "?")")
                continue
            }
            do {
                let jwk = try JSONDecoder().decode(JWK.self, from: JSONSerialization.data(withJSONObject: entry))
                let collection = JWTKeyCollection()
                try await collection.add(jwk: jwk)
                let algorithm = try await collection.getKey(for: JWKIdentifier(string: kid), alg: alg)
                guard algorithm.name == alg else {
                    skipped.append("\(label): alg \(alg) does not fit the key (\(algorithm.name))")
                    continue
                }
                keys.append(VerificationKey(kid: kid, alg: alg, algorithm: algorithm))
            } catch {
                skipped.append("\(label): \(error)")
            }
        }
        return (keys, skipped)
    }

    static func pinnedAlgorithm(_ entry: [String: Any]) -> String? {
        if let alg = entry["alg"] as? String { return JWTConfig.algorithms.contains(alg) && !alg.hasPrefix("HS") ? alg : nil }
        switch (entry["kty"] as? String, entry["crv"] as? String) {
        case ("EC", "P-256"): return "ES256"
        case ("EC", "P-384"): return "ES384"
        case ("OKP", "Ed25519"): return "EdDSA"
        case ("RSA", _): return "RS256"
        default: return nil
        }
    }
}
