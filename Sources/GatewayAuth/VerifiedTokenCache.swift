import NIOConcurrencyHelpers

/// Tokens that verified recently, so a client sending the same token again skips the base64, JSON and
/// signature work (most of a JWT route's cost; Envoy's `jwt_cache_config` does the same).
///
/// A hit needs the byte-identical token, the same key set it verified under (a JWKS refresh or reload
/// makes a new one, so a removed key stops working at once), and a time inside the window its `nbf`, `iat`
/// and `exp` claims accept (checked on every hit with the caller's clock). Bounded: when full, an
/// arbitrary entry makes room.
public final class VerifiedTokenCache: Sendable {
    private struct Entry {
        var verified: JWTVerifier.Verified
        var keys: JWTKeySet
    }

    public let capacity: Int
    private let entries: NIOLockedValueBox<[String: Entry]>

    public init(capacity: Int) {
        self.capacity = capacity
        entries = NIOLockedValueBox([:])
    }

    public var count: Int { entries.withLockedValue { $0.count } }

    /// The identity of `token` if it verified under `keys` and its claims still accept it at `now`
    /// (seconds since 1970). An entry that no longer applies is dropped.
    public func identity(of token: String, keys: JWTKeySet, now: Int64) -> Identity? {
        entries.withLockedValue { entries in
            guard let entry = entries[token] else { return nil }
            let current = Double(now)
            guard entry.keys === keys, current >= entry.verified.validFrom, current < entry.verified.validUntil else {
                entries[token] = nil
                return nil
            }
            return entry.verified.identity
        }
    }

    public func insert(_ token: String, _ verified: JWTVerifier.Verified, keys: JWTKeySet) {
        guard capacity > 0 else { return }
        entries.withLockedValue { entries in
            if entries[token] == nil, entries.count >= capacity { entries.remove(at: entries.startIndex) }
            entries[token] = Entry(verified: verified, keys: keys)
        }
    }

    public func removeAll() {
        entries.withLockedValue { $0.removeAll() }
    }
}
