import GatewayPolicy
import Testing

/// `limit_rate` without sockets or sleeps: time is what the test says it is.
@Suite struct TransferRateTests {
    static let second: UInt64 = 1_000_000_000

    // At 1000 bytes/s: the first free bytes cost nothing; beyond them each 1000 bytes owe a second from the first byte.
    @Test func holdsToTheAverage() {
        var rate = TransferRate(bytesPerSecond: 1000, freeBytes: 500)
        #expect(rate.sent(500, now: 10 * Self.second) == 0)
        #expect(rate.sent(1000, now: 10 * Self.second) == Self.second)
        // Half a second later, half a second still owed; once it has passed, nothing.
        #expect(rate.sent(0, now: 10 * Self.second + Self.second / 2) == Self.second / 2)
        #expect(rate.sent(0, now: 11 * Self.second) == 0)
        // A client that was slow (4 s in, 1000 bytes past the free ones so far) may catch up to the average, no
        // further: 3000 more at once, then the next 1000 wait their second.
        #expect(rate.sent(1000, now: 14 * Self.second) == 0)
        #expect(rate.sent(1000, now: 14 * Self.second) == 0)
        #expect(rate.sent(1000, now: 14 * Self.second) == 0)
        #expect(rate.sent(1000, now: 14 * Self.second) == Self.second)
    }

    @Test func withoutFreeBytes() {
        var rate = TransferRate(bytesPerSecond: 4096)
        #expect(rate.sent(1024, now: 0) == Self.second / 4)
        #expect(rate.sent(3072, now: Self.second / 4) == 3 * Self.second / 4)
    }
}
