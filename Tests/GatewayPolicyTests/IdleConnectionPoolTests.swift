import GatewayPolicy
import Testing

@Suite struct IdleConnectionPoolTests {
    let second: UInt64 = 1_000_000_000

    // The most recently parked connection is reused first.
    @Test func reusesNewestFirst() {
        var pool = IdleConnectionPool<String>(maxIdle: 4, idleTimeoutNanos: 10 * second)
        _ = pool.park("a", now: 0)
        _ = pool.park("b", now: 1 * second)
        let first = pool.take(now: 2 * second).connection
        let secondTaken = pool.take(now: 2 * second).connection
        let third = pool.take(now: 2 * second).connection
        #expect([first, secondTaken, third] == ["b", "a", nil])
    }

    // Past maxIdle the oldest connection is handed back for closing.
    @Test func evictsOldestWhenFull() {
        var pool = IdleConnectionPool<Int>(maxIdle: 2, idleTimeoutNanos: 10 * second)
        _ = pool.park(1, now: 0)
        _ = pool.park(2, now: 0)
        let evicted = pool.park(3, now: 0)
        #expect(evicted == 1)
        #expect(pool.count == 2)
        var none = IdleConnectionPool<Int>(maxIdle: 0, idleTimeoutNanos: second)
        let refused = none.park(9, now: 0)
        #expect(refused == 9)
    }

    // Connections idle longer than the timeout expire, on a sweep or when met by take.
    @Test func expiresIdleConnections() {
        var pool = IdleConnectionPool<String>(maxIdle: 8, idleTimeoutNanos: 5 * second)
        _ = pool.park("old", now: 0)
        _ = pool.park("new", now: 4 * second)
        #expect(pool.nextExpiry == 5 * second)
        let early = pool.expire(now: 5 * second - 1)
        let due = pool.expire(now: 5 * second)
        #expect(early == [])
        #expect(due == ["old"])
        #expect(pool.nextExpiry == 9 * second)
        let taken = pool.take(now: 10 * second)
        #expect(taken.connection == nil)
        #expect(taken.expired == ["new"])
    }

    // A connection closed by the upstream while parked is forgotten.
    @Test func removesClosedConnection() {
        var pool = IdleConnectionPool<String>(maxIdle: 8, idleTimeoutNanos: 5 * second)
        _ = pool.park("x", now: 0)
        _ = pool.park("y", now: 0)
        let removed = pool.remove("x")
        let removedAgain = pool.remove("x")
        #expect(removed)
        #expect(!removedAgain)
        let drained = pool.drain()
        #expect(drained == ["y"])
        #expect(pool.count == 0)
    }
}
