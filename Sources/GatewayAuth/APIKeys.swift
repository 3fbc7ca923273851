import Crypto
import GatewayConfig
import GatewayCore
import GatewayPolicy

/// The configured API keys, as SHA-256 digests only. A presented key is hashed and compared with every
/// digest in constant time (no early exit, no dictionary lookup whose timing depends on the key).
public struct APIKeyTable: Sendable {
    struct Entry: Sendable {
        let id: String
        let digest: [UInt8]
        let scopes: [String]
        let expiresAt: Int?
    }

    let entries: [Entry]

    public init(_ keys: [APIKeyConfig]) {
        entries = keys.map { Entry(id: $0.id, digest: Self.bytes(hex: $0.sha256), scopes: $0.scopes, expiresAt: $0.expiresAt) }
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// What a presented key is.
    public enum Verdict: Sendable, Equatable {
        case valid(Identity)
        /// A configured key past its `expires_at` (the consumer's id, for the log).
        case expired(consumer: String)
        case unknown
    }

    /// The identity of `key`, or why it has none. `now`: Unix seconds (the clock is read only for a key that expires).
    public func identify(_ key: String, now: Int? = nil) -> Verdict {
        let digest = Array(SHA256.hash(data: Array(key.utf8)))
        var match: Entry?
        for entry in entries {
            if ConstantTime.equals(digest, entry.digest) && match == nil { match = entry }
        }
        guard let match else { return .unknown }
        if let expiresAt = match.expiresAt, (now ?? Int(WallClock.nanoseconds() / 1_000_000_000)) >= expiresAt {
            return .expired(consumer: match.id)
        }
        return .valid(Identity(method: .apiKey, subject: match.id, scopes: match.scopes))
    }

    /// Every configured key: `auth.api_keys` and the entries of `auth.api_keys_file` (read now), with what is wrong
    /// (errors, and warnings such as keys past their time) at JSON paths. `keys` is nil when there is an error: a
    /// file that does not load, the same key twice, or a file id that is a client certificate's consumer.
    public static func configuredKeys(_ config: AuthConfig) -> (keys: [APIKeyConfig]?, problems: [(path: String, message: String, isError: Bool)]) {
        guard let file = config.apiKeysFile else { return (config.apiKeys, []) }
        let (loaded, diagnostics) = APIKeyConfig.loadFile(path: file)
        var problems = diagnostics.map { (path: $0.path, message: $0.message, isError: $0.severity == .error) }
        guard let loaded else { return (nil, problems) }
        let inline = Dictionary(config.apiKeys.map { ($0.sha256, $0.id) }, uniquingKeysWith: { first, _ in first })
        var seen: [String: String] = [:]
        let certificateIDs = Set(config.mtlsClients.map(\.id))
        for (index, key) in loaded.enumerated() {
            let at = "auth.api_keys_file[\(index)]"
            if let owner = inline[key.sha256] ?? seen[key.sha256] {
                problems.append((at + ".sha256", "the same key is already listed (for \"\(owner)\")", true))
            }
            seen[key.sha256] = key.id
            if certificateIDs.contains(key.id) {
                problems.append((at + ".id", "\"\(key.id)\" is already a client certificate's consumer id", true))
            }
        }
        return (problems.contains(where: \.isError) ? nil : config.apiKeys + loaded, problems)
    }

    /// Lowercase hex SHA-256 of a key, as `auth.api_keys[].sha256` wants it.
    public static func digestHex(of key: String) -> String {
        SHA256.hash(data: Array(key.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// A new random key: 32 bytes from the system's secure generator, base64url, prefixed `gw_`.
    public static func generateKey() -> String { "gw_" + Base64URL.random(bytes: 32) }

    static func bytes(hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var iterator = hex.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            bytes.append(nibble(high) << 4 | nibble(low))
        }
        return bytes
    }

    private static func nibble(_ byte: UInt8) -> UInt8 {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return 0
        }
    }
}

/// Comparison of secrets whose time does not depend on where they differ (no early exit).
public enum ConstantTime {
    /// Equal length and bytes; the time depends only on the longer length.
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}

/// `auth.mtls_clients`: consumers known by the client certificate a TLS listener verified. A subject matches
/// when it has the same attributes, in any order (certificates and their renderings differ in order); a
/// common name when the subject's `CN` is it.
public struct MTLSClientTable: Sendable {
    struct Entry: Sendable {
        let id: String
        let attributes: Set<String>?
        let commonName: String?
        let uri: String?
        let scopes: [String]
    }

    let entries: [Entry]

    public init(_ clients: [MTLSClientConfig]) {
        entries = clients.map { client in
            Entry(
                id: client.id, attributes: client.subject.map(Self.attributes), commonName: client.commonName, uri: client.uri, scopes: client.scopes)
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// The consumer whose certificate has `subject` (as `PeerIdentity.certificate` renders it), or carries one of `uris`, if any.
    public func identify(subject: String, uris: [String] = []) -> Identity? {
        let presented = Self.attributes(subject)
        let match = entries.first { entry in
            if let attributes = entry.attributes { return attributes == presented }
            if let uri = entry.uri { return uris.contains(uri) }
            return entry.commonName.map { presented.contains("CN=" + $0) } ?? false
        }
        return match.map { Identity(method: .mtls, subject: $0.id, scopes: $0.scopes) }
    }

    /// `CN=a,O=b` as {"CN=a", "O=b"}: split on commas that are not escaped (RFC 4514), types upper-cased.
    static func attributes(_ subject: String) -> Set<String> {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for character in subject {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                current.append(character)
                escaped = true
            } else if character == "," || character == "+" {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return Set(parts.compactMap { part in
            let trimmed = part.trimmingCharacters(in: " ")
            guard let equals = trimmed.firstIndex(of: "=") else { return nil }
            return trimmed[..<equals].uppercased() + trimmed[equals...]
        })
    }
}

extension String {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        var text = Substring(self)
        while text.first == character { text = text.dropFirst() }
        while text.last == character { text = text.dropLast() }
        return String(text)
    }
}
