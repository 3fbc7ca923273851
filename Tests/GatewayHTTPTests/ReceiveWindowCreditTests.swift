import GatewayHTTP
import Testing

/// HTTP/2 receive windows are given back once half is taken, all of it at once; nothing before.
@Suite struct ReceiveWindowCreditTests {
    @Test func creditsOnceHalfTheWindowIsTaken() {
        var credit = ReceiveWindowCredit(window: 100)
        #expect(credit.received(30) == nil)
        #expect(credit.received(19) == nil)
        #expect(credit.received(1) == 50)
        #expect(credit.taken == 0)
        #expect(credit.received(10) == nil)
        #expect(credit.received(70) == 80)
    }

    @Test func emptyFramesCreditNothing() {
        var credit = ReceiveWindowCredit(window: 65_535)
        #expect(credit.received(0) == nil)
        #expect(credit.received(32_767) == 32_767)
    }
}
