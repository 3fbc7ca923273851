import GatewayPolicy
import Testing
import TestSupport

/// DNS answers as servers send them (this one from dnsmasq: SRV records with compressed names, the targets' addresses in
/// the additional section), and broken ones.
@Suite struct DNSAnswerTests {
    static func bytes(_ hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    /// `_web._tcp.shop.test SRV`: app2 (priority 1, weight 1, port 9002) and app1 (0, 5, 9001), both at 127.0.0.1.
    static let dnsmasq = bytes(
        "123485800001000200000002045f776562045f7463700473686f7004746573740000210001c00c0021000100000000001600010001232a04617070320473686f70047465737400c00c0021000100000000001600000005232904617070310473686f70047465737400c059000100010000000000047f000001c037000100010000000000047f000001"
    )

    @Test func servicesAndTheirAddresses() throws {
        let answer = try DNSAnswer(parsing: Self.dnsmasq)
        #expect(answer.services == [
            .init(priority: 1, weight: 1, port: 9002, target: "app2.shop.test"),
            .init(priority: 0, weight: 5, port: 9001, target: "app1.shop.test"),
        ])
        #expect(answer.addresses == ["app1.shop.test": ["127.0.0.1"], "app2.shop.test": ["127.0.0.1"]])
    }

    @Test func addressRecords() throws {
        // One question (a.test AAAA), one AAAA answer pointing back at the question's name.
        let message = Self.bytes("0001818000010001000000000161047465737400001c0001c00c001c00010000003c001020010db8000000000000000000000001")
        #expect(try DNSAnswer(parsing: message).addresses == ["a.test": ["2001:db8:0:0:0:0:0:1"]])
    }

    // Cut anywhere, or with a name pointer that points at itself, the message is an error, never a crash or a hang.
    @Test func brokenMessagesAreErrors() {
        var failures = 0
        for length in 0..<Self.dnsmasq.count where thrownError({ _ = try DNSAnswer(parsing: Array(Self.dnsmasq[..<length])) }) != nil {
            failures += 1
        }
        #expect(failures == Self.dnsmasq.count)
        // The answer's name is a pointer to offset 12, where that same pointer is.
        let loop = Self.bytes("000081800000000100000000" + "c00c" + "00010001000000000004" + "7f000001")
        let looped = thrownError { _ = try DNSAnswer(parsing: loop) }
        #expect(looped != nil)
    }
}
