import GatewayPolicy
import Testing

@Suite struct ConnectionDeadlinesTests {
    let ms: UInt64 = 1_000_000

    // A new connection must deliver its first head within the header timeout.
    @Test func newConnectionGetsHeaderTimeout() {
        let deadlines = ConnectionDeadlines(now: 0, idleTimeoutNanos: 60_000 * ms, headerTimeoutNanos: 10_000 * ms)
        #expect(deadlines.check(now: 9_999 * ms) == .notYet(remainingNanos: 1 * ms))
        #expect(deadlines.check(now: 10_000 * ms) == .headerExpired)
    }

    // Between requests the idle timeout applies; the first byte of the next request switches to the header timeout.
    @Test func keepAliveCycle() {
        var deadlines = ConnectionDeadlines(now: 0, idleTimeoutNanos: 60_000 * ms, headerTimeoutNanos: 10_000 * ms)
        deadlines.requestStarted()
        #expect(deadlines.check(now: 500_000 * ms) == .none)  // a long request is not the connection's problem
        deadlines.requestFinished(now: 1_000 * ms)
        #expect(deadlines.phase == .idle)
        #expect(deadlines.check(now: 30_000 * ms) == .notYet(remainingNanos: 31_000 * ms))
        deadlines.bytesArrived(now: 40_000 * ms)
        #expect(deadlines.phase == .readingHead)
        #expect(deadlines.check(now: 49_999 * ms) == .notYet(remainingNanos: 1 * ms))
        // More bytes of the same head do not extend the deadline (slowloris).
        deadlines.bytesArrived(now: 49_000 * ms)
        #expect(deadlines.check(now: 50_000 * ms) == .headerExpired)
    }

    @Test func idleExpires() {
        var deadlines = ConnectionDeadlines(now: 0, idleTimeoutNanos: 100 * ms, headerTimeoutNanos: 50 * ms)
        deadlines.requestStarted()
        deadlines.requestFinished(now: 10 * ms)
        #expect(deadlines.check(now: 110 * ms) == .idleExpired)
    }
}
