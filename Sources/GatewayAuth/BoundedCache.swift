import NIOConcurrencyHelpers

/// What the credential checks remember (verified tokens, Basic logins, introspection answers): a map shared by
/// every event loop behind one lock, holding at most `capacity` entries; when full, an arbitrary entry makes
/// room. A capacity of 0 remembers nothing.
final class BoundedCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    let capacity: Int
    private let entries = NIOLockedValueBox<[Key: Value]>([:])

    init(capacity: Int) {
        self.capacity = capacity
    }

    var count: Int { entries.withLockedValue { $0.count } }

    /// The entry for `key`, if `isValid` accepts it; one it refuses is dropped.
    func value(for key: Key, isValid: (Value) -> Bool = { _ in true }) -> Value? {
        entries.withLockedValue { entries in
            guard let value = entries[key] else { return nil }
            guard isValid(value) else {
                entries[key] = nil
                return nil
            }
            return value
        }
    }

    func insert(_ value: Value, for key: Key) {
        guard capacity > 0 else { return }
        entries.withLockedValue { entries in
            if entries[key] == nil, entries.count >= capacity { entries.remove(at: entries.startIndex) }
            entries[key] = value
        }
    }

    func removeAll() {
        entries.withLockedValue { $0.removeAll() }
    }
}
