import NIOCore

/// Short texts that every gateway instance sharing a Redis sees: what `acme.store: "redis"` keeps there (the open
/// challenges, the account key, the certificates, the lock that lets one instance order at a time).
public protocol SharedKeyValueStore: Sendable {
    /// The value of `key`, nil when it has none. `completion` runs once, on `eventLoop`; must be called on `eventLoop`.
    func get(_ key: String, on eventLoop: EventLoop, completion: @escaping (Result<String?, any Error>) -> Void)

    /// The value of `key`, nil when it has none, from any thread.
    func get(_ key: String) async throws -> String?

    /// Gives `key` the value, forgotten after `seconds` when given. With `onlyIfAbsent`, a key that has a value keeps it
    /// and the answer is false (a lock someone else holds).
    @discardableResult
    func set(_ key: String, to value: String, expiringAfter seconds: Int?, onlyIfAbsent: Bool) async throws -> Bool

    /// Removes `key` if it still holds `value` (a lock is released only by its holder, never after it expired and
    /// another instance took it).
    func delete(_ key: String, ifItHolds value: String) async throws
}
