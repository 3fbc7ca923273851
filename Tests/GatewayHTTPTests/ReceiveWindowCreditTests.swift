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

@Suite struct FieldNameSetTests {
    // Exactly the listed names: not a name of the same length that differs in one byte, not a prefix or a
    // longer name, not the name in another case (callers pass lowercased names).
    @Test func containsExactlyItsNames() {
        let set = FieldNameSet(["date", "x-request-id", "x-ratelimit-remaining"])
        #expect(set.contains("date") && set.contains("x-request-id") && set.contains("x-ratelimit-remaining"))
        #expect(!set.contains("data"))
        #expect(!set.contains("dat") && !set.contains("dates") && !set.contains(""))
        #expect(!set.contains("x-request-ie"))
        #expect(!set.contains("Date"))
        #expect(!FieldNameSet([]).contains("date"))
    }

    @Test func connectionSpecificFields() {
        for name in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"] {
            #expect(HTTP2Fields.isConnectionSpecific(name), "\(name)")
        }
        for name in ["te", "content-length", "upgrade-insecure-requests", "connectio"] {
            #expect(!HTTP2Fields.isConnectionSpecific(name), "\(name)")
        }
    }
}
