import GatewayHTTP
import Testing

/// `FieldNameSet` and the HTTP/2 field-name lists built on it.
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
