/// Tokens that verified recently, so a client sending the same token again skips the base64, JSON and
/// signature work (most of a JWT route's cost; Envoy's `jwt_cache_config` does the same).
///
/// A hit needs the byte-identical token, the same key set it verified under (a JWKS refresh or reload
/// makes a new one, so a removed key stops working at once), and a time inside the window its `nbf`, `iat`
/// and `exp` claims accept (checked on every hit with the caller's clock). Bounded: when full, an
/// arbitrary entry makes room.
public final class VerifiedTokenCache: Sendable {
    private struct Entry: Sendable {
        var verified: JWTVerifier.Verified
        var keys: JWTKeySet
    }

    private let entries: BoundedCache<String, Entry>

    public init(capacity: Int) {
        entries = BoundedCache(capacity: capacity)
    }

    public var capacity: Int { entries.capacity }
    public var count: Int { entries.count }

    /// The identity of `token` if it verified under `keys` and its claims still accept it at `now`
    /// (seconds since 1970). An entry that no longer applies is dropped.
    public func identity(of token: String, keys: JWTKeySet, now: Int64) -> Identity? {
        let current = Double(now)
        return entries.value(for: token) { entry in
            entry.keys === keys && current >= entry.verified.validFrom && current < entry.verified.validUntil
        }?.verified.identity
    }

    public func insert(_ token: String, _ verified: JWTVerifier.Verified, keys: JWTKeySet) {
        entries.insert(Entry(verified: verified, keys: keys), for: token)
    }

    public func removeAll() {
        entries.removeAll()
    }
}
