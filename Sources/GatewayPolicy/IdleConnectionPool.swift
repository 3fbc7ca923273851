/// The idle half of an upstream keep-alive pool: which parked connection to reuse, which to close.
///
/// Pure bookkeeping; the NIO shell owns the sockets and asks this type what to do. Time is injected as
/// monotonic nanoseconds so expiry is tested without sleeping.
///
/// Reuse is LIFO: the most recently parked connection is the one least likely to have been closed by
/// the upstream's own keep-alive timer, and the cold tail is what expires.
///
/// Everything is `@inlinable` so callers in other modules get a specialised copy (a generic call across
/// the module boundary costs a runtime metadata lookup per request).
public struct IdleConnectionPool<Connection: Hashable> {
    @usableFromInline
    struct Entry {
        @usableFromInline var connection: Connection
        @usableFromInline var parkedAt: UInt64

        @inlinable
        init(connection: Connection, parkedAt: UInt64) {
            self.connection = connection
            self.parkedAt = parkedAt
        }
    }

    /// Oldest first; `take` pops from the end.
    @usableFromInline var entries: [Entry] = []
    public let maxIdle: Int
    public let idleTimeoutNanos: UInt64

    @inlinable
    public init(maxIdle: Int, idleTimeoutNanos: UInt64) {
        precondition(maxIdle >= 0)
        self.maxIdle = maxIdle
        self.idleTimeoutNanos = idleTimeoutNanos
    }

    @inlinable
    public var count: Int { entries.count }

    /// The newest idle connection that has not outlived the idle timeout, if any. Expired entries met on
    /// the way are dropped from the pool and returned in `expired` for the caller to close.
    @inlinable
    public mutating func take(now: UInt64) -> (connection: Connection?, expired: [Connection]) {
        let expired = expire(now: now)
        guard let entry = entries.popLast() else { return (nil, expired) }
        return (entry.connection, expired)
    }

    /// Parks a connection that finished an exchange cleanly. Returns the connection to close when the
    /// pool is full (the oldest one), or nil.
    @inlinable
    public mutating func park(_ connection: Connection, now: UInt64) -> Connection? {
        guard maxIdle > 0 else { return connection }
        entries.append(Entry(connection: connection, parkedAt: now))
        if entries.count > maxIdle { return entries.removeFirst().connection }
        return nil
    }

    /// Forgets a connection the upstream closed while it sat idle. Returns whether it was parked here.
    @inlinable
    @discardableResult
    public mutating func remove(_ connection: Connection) -> Bool {
        guard let index = entries.firstIndex(where: { $0.connection == connection }) else { return false }
        entries.remove(at: index)
        return true
    }

    /// Drops and returns every connection idle for longer than the timeout.
    @inlinable
    public mutating func expire(now: UInt64) -> [Connection] {
        let alive = entries.firstIndex { now &- $0.parkedAt < idleTimeoutNanos } ?? entries.endIndex
        guard alive > 0 else { return [] }
        let expired = entries[..<alive].map(\.connection)
        entries.removeFirst(alive)
        return expired
    }

    /// When the next expiry sweep is due, or nil with nothing parked.
    @inlinable
    public var nextExpiry: UInt64? { entries.first.map { $0.parkedAt &+ idleTimeoutNanos } }

    /// Empties the pool (shutdown), returning everything that was parked.
    @inlinable
    public mutating func drain() -> [Connection] {
        defer { entries.removeAll() }
        return entries.map(\.connection)
    }
}
