import GatewayPolicy
import Testing

@Suite struct ProxyProtocolTests {
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    static func v2(command: UInt8 = 1, family: UInt8, addresses: [UInt8], tlvs: [UInt8] = []) -> [UInt8] {
        let length = addresses.count + tlvs.count
        return v2Signature + [0x20 | command, family, UInt8(length >> 8), UInt8(length & 0xFF)] + addresses + tlvs
    }

    // Version 1: the client's address and the header's length; UNKNOWN names nobody; partial input waits.
    @Test func version1() {
        let line = Array("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n".utf8)
        #expect(ProxyProtocol.parse(line + Array("GET /".utf8)) == .header(length: line.count, source: IPAddress("203.0.113.7")))
        let six = Array("PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n".utf8)
        #expect(ProxyProtocol.parse(six) == .header(length: six.count, source: IPAddress("2001:db8::7")))
        let unknown = Array("PROXY UNKNOWN ff ff\r\n".utf8)
        #expect(ProxyProtocol.parse(unknown) == .header(length: unknown.count, source: nil))
        for cut in [1, 5, 6, 20, line.count - 1] {
            #expect(ProxyProtocol.parse(Array(line.prefix(cut))) == .needMore, "\(cut)")
        }
        for bad in [
            "GET / HTTP/1.1\r\n", "PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n", "PROXY TCP4 203.0.113.7 10.0.0.1 51234 70000\r\n",
            "PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", "PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP4 203.0.113.7 10.0.0.1 +1 2\r\n", "PROXY TCP4 203.0.113.7 10.0.0.1 1 2\n",
            "PROXY " + String(repeating: "x", count: 120),
        ] {
            #expect(ProxyProtocol.parse(Array(bad.utf8)) == .invalid, "\(bad)")
        }
    }

    // Version 2: IPv4 and IPv6 sources (TLVs after the addresses are skipped), LOCAL names nobody, partial waits.
    @Test func version2() {
        let four = Self.v2(family: 0x11, addresses: [203, 0, 113, 7, 10, 0, 0, 1, 0xC8, 0x22, 0x01, 0xBB], tlvs: [0x04, 0x00, 0x01, 0x00])
        #expect(ProxyProtocol.parse(four + [0x16, 0x03]) == .header(length: four.count, source: IPAddress("203.0.113.7")))
        let source6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [7]
        let six = Self.v2(family: 0x21, addresses: source6 + Array(repeating: 0, count: 16) + [0, 1, 0, 2])
        #expect(ProxyProtocol.parse(six) == .header(length: six.count, source: IPAddress("2001:db8::7")))
        let local = Self.v2(command: 0, family: 0x00, addresses: [])
        #expect(ProxyProtocol.parse(local) == .header(length: 16, source: nil))
        let unix = Self.v2(family: 0x31, addresses: Array(repeating: 0, count: 216))
        #expect(ProxyProtocol.parse(unix) == .header(length: unix.count, source: nil))
        for cut in [3, 12, 15, 20, four.count - 1] {
            #expect(ProxyProtocol.parse(Array(four.prefix(cut))) == .needMore, "\(cut)")
        }
        var wrongVersion = four
        wrongVersion[12] = 0x11
        var wrongCommand = four
        wrongCommand[12] = 0x22
        let short = Self.v2(family: 0x11, addresses: [1, 2, 3, 4])
        for bad in [wrongVersion, wrongCommand, short] {
            #expect(ProxyProtocol.parse(bad) == .invalid)
        }
    }
}
