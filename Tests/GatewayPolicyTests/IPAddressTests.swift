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

    // The interval search answers as a scan of the ranges would: at the edges of each range, for overlapping, nested
    // and adjacent ones (merged), for /0 and single addresses, v4 and v6 apart, and for a list of 20,000 ranges.
    @Test func addressSetsAnswerAsAScanWould() throws {
        let texts = [
            "10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/25", "192.168.1.128/25", "203.0.113.7", "172.16.0.0/12", "198.51.100.0/24",
            "2001:db8::/32", "2001:db8:ffff::/48", "fd00::1", "::/128",
        ]
        let ranges = texts.compactMap { CIDR($0) }
        #expect(ranges.count == texts.count)
        let set = AddressSet(ranges)
        let probes = [
            "9.255.255.255", "10.0.0.0", "10.255.255.255", "11.0.0.0", "192.168.1.0", "192.168.1.127", "192.168.1.128", "192.168.1.255",
            "192.168.2.0", "203.0.113.6", "203.0.113.7", "203.0.113.8", "172.15.255.255", "172.31.255.255", "172.32.0.0", "198.51.100.255",
            "198.51.101.0", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::",
            "fd00::", "fd00::1", "fd00::2", "::", "::1", "0.0.0.0", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]
        for text in probes {
            let address = try #require(IPAddress(text), "\(text)")
            let scanned = ranges.contains { $0.contains(address) }
            #expect(set.contains(address) == scanned, "\(text)")
        }
        let everything = AddressSet([try #require(CIDR("0.0.0.0/0")), try #require(CIDR("::/0"))])
        let (top, v6, private10) = (try #require(IPAddress("255.255.255.255")), try #require(IPAddress("ffff::1")), try #require(IPAddress("10.0.0.1")))
        #expect(everything.contains(top) && everything.contains(v6))
        #expect(!AddressSet([]).contains(private10))

        // 20,000 /24s with gaps: every probe agrees with a scan.
        var generator = SystemRandomNumberGenerator()
        let many = (0..<20_000).map { _ in CIDR("\(UInt8.random(in: 1...223, using: &generator)).\(UInt8.random(in: 0...255, using: &generator)).\(UInt8.random(in: 0...255, using: &generator)).0/24")! }
        let large = AddressSet(many)
        for index in 0..<400 {
            // Half the probes inside a listed range, half anywhere.
            let address: IPAddress
            if index % 2 == 0, case .v4(let network) = many[index].network {
                address = .v4(network | UInt32.random(in: 0...255, using: &generator))
            } else {
                address = .v4(UInt32.random(in: 0...UInt32.max, using: &generator))
            }
            let scanned = many.contains { $0.contains(address) }
            #expect(large.contains(address) == scanned, "\(address)")
        }
    }
}
