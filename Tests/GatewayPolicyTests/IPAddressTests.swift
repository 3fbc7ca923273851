import GatewayPolicy
import Testing

@Suite struct IPAddressTests {
    // IPv4 and IPv6 text round-trips in canonical form; malformed text is rejected.
    @Test(arguments: [
        ("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("fe80::1%eth0", "fe80::1"), ("::ffff:10.1.2.3", "10.1.2.3"), ("::", "::"), ("1::", "1::"),
        ("2001:DB8::A", "2001:db8::a"),
    ])
    func parsesAndPrints(_ input: String, _ expected: String) {
        #expect(IPAddress(input)?.description == expected)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1::2::3", "12345::", "abc", "1.2.3.4/8", ":::"])
    func rejectsMalformed(_ input: String) {
        #expect(IPAddress(input) == nil)
    }

    // Range membership, including the IPv4-mapped form a dual-stack socket reports.
    @Test func cidrMembership() throws {
        let ten = try #require(CIDR("10.0.0.0/8"))
        #expect(ten.contains(IPAddress("10.200.3.4")!))
        #expect(!ten.contains(IPAddress("11.0.0.1")!))
        #expect(ten.contains(IPAddress("::ffff:10.0.0.9")!))
        let host = try #require(CIDR("192.168.1.7"))
        #expect(host.prefixLength == 32)
        #expect(host.contains(IPAddress("192.168.1.7")!))
        #expect(!host.contains(IPAddress("192.168.1.8")!))
        let v6 = try #require(CIDR("fd00::/8"))
        #expect(v6.contains(IPAddress("fd12:3456::1")!))
        #expect(!v6.contains(IPAddress("fe00::1")!))
        #expect(!v6.contains(IPAddress("10.0.0.1")!))
        #expect(CIDR("10.1.2.3/8")?.description == "10.0.0.0/8")  // host bits are masked off
        #expect(CIDR("0.0.0.0/0")!.contains(IPAddress("8.8.8.8")!))
        #expect(CIDR("::/0")!.contains(IPAddress("2001::1")!))
        #expect(CIDR("2001:db8::/65")!.contains(IPAddress("2001:db8::7fff:0:0:1")!))
        #expect(!CIDR("2001:db8::/65")!.contains(IPAddress("2001:db8::8000:0:0:1")!))
        #expect(CIDR("10.0.0.0/33") == nil)
        #expect(CIDR("10.0.0.0/") == nil)
    }

    // Raw socket bytes (network order) map to the same addresses as their text.
    @Test func fromBytes() {
        #expect(IPAddress(bytes: [127, 0, 0, 1]) == IPAddress("127.0.0.1"))
        #expect(IPAddress(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4]) == IPAddress("1.2.3.4"))
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
    }

    // deny_ips always wins; a non-empty allow_ips admits only its ranges; an unknown address matches no range.
    @Test func addressRules() throws {
        let ranges = { (texts: [String]) in texts.compactMap { CIDR($0) } }
        let insiders = AddressRule(deny: ranges(["10.9.0.0/16"]), allow: ranges(["10.0.0.0/8", "fd00::/8"]))
        #expect(insiders.permits(IPAddress("10.1.2.3")))
        #expect(insiders.permits(IPAddress("::ffff:10.1.2.3")))
        #expect(insiders.permits(IPAddress("fd00::1")))
        #expect(!insiders.permits(IPAddress("10.9.1.1")))
        #expect(!insiders.permits(IPAddress("192.168.1.1")))
        #expect(!insiders.permits(nil))
        let blockOnly = AddressRule(deny: ranges(["203.0.113.0/24"]), allow: [])
        #expect(blockOnly.permits(IPAddress("198.51.100.7")))
        #expect(!blockOnly.permits(IPAddress("203.0.113.9")))
        #expect(blockOnly.permits(nil))
        #expect(AddressRule(deny: [], allow: []).isEmpty)
    }
}
