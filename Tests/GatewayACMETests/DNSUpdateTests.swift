import Crypto
import Foundation
@testable import GatewayACME
import GatewayConfig
import NIOPosix
import Testing
import TestSupport

/// DNS UPDATE with TSIG: the messages and the reading of responses as bytes (responses signed here independently,
/// following RFC 8945's layout), then against BIND's `named` on 127.0.0.1, which checks every signature itself.
@Suite struct DNSUpdateTests {
    static let key = DNSUpdateConfig.TSIGKey(name: "acme-key", algorithm: .hmacSHA256, secret: Array(repeating: 7, count: 32))

    static func name(_ text: String) -> [UInt8] {
        text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
    }

    static func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }

    @Test func updateMessageLayout() throws {
        let (message, mac) = DNSUpdate.message(
            id: 0x1234, zone: "Example.test", changes: [.addTXT(name: "_acme-challenge.example.test", value: "abc", ttl: 60)], key: Self.key,
            time: 1_796_644_800)
        // Header: the id, opcode 5 (UPDATE), one zone, no prerequisites, one update, one additional (TSIG).
        #expect(Array(message[0..<12]) == [0x12, 0x34, 0x28, 0x00, 0, 1, 0, 0, 0, 1, 0, 1])
        // The zone (lowercased), type SOA, class IN.
        let zone = Self.name("example.test") + [0, 6, 0, 1]
        #expect(Array(message[12..<(12 + zone.count)]) == zone)
        // The record to add: TXT, IN, TTL 60, one character-string.
        let record = Self.name("_acme-challenge.example.test") + [0, 16, 0, 1, 0, 0, 0, 60, 0, 4, 3] + Array("abc".utf8)
        let recordStart = 12 + zone.count
        #expect(Array(message[recordStart..<(recordStart + record.count)]) == record)
        // The TSIG record signs everything before it: HMAC-SHA256 over the message (ARCOUNT 0) and RFC 8945's variables.
        let signedPart = Array(message[0..<(recordStart + record.count)])
        var unsigned = signedPart
        unsigned[11] = 0
        let variables = Self.name("acme-key") + [0, 255, 0, 0, 0, 0] + Self.name("hmac-sha256") + [0, 0, 0x6B, 0x16, 0x9F, 0xC0] + [1, 44, 0, 0, 0, 0]
        let expected = Array(HMAC<SHA256>.authenticationCode(for: unsigned + variables, using: SymmetricKey(data: Self.key.secret)))
        #expect(mac == expected)
        let tsig = Self.name("acme-key") + [0, 250, 0, 255, 0, 0, 0, 0]
        #expect(Array(message[signedPart.count..<(signedPart.count + tsig.count)]) == tsig)
        #expect(Array(message.suffix(mac.count + 6)) == mac + [0x12, 0x34, 0, 0, 0, 0], "MAC, original id, no error, no other data")

        let (deletion, _) = DNSUpdate.message(
            id: 1, zone: "example.test", changes: [.deleteTXT(name: "_acme-challenge.example.test", value: "abc")], key: Self.key, time: 0)
        let deleted = Self.name("_acme-challenge.example.test") + [0, 16, 0, 254, 0, 0, 0, 0, 0, 4, 3] + Array("abc".utf8)
        #expect(Array(deletion[recordStart..<(recordStart + deleted.count)]) == deleted, "class NONE, TTL 0: that one record")
    }

    /// A response to a request with `requestMAC`, signed as RFC 8945 §5.3 says (or with `macOverride`).
    static func response(id: Int, rcode: Int, requestMAC: [UInt8], tsigError: Int = 0, signed: Bool = true, secret: [UInt8]? = nil) -> [UInt8] {
        let body = u16(id) + [0xA8, UInt8(rcode)] + [0, 1, 0, 0, 0, 0, 0, 0] + name("example.test") + [0, 6, 0, 1]
        guard signed else { return body }
        let time: [UInt8] = [0, 0, 0x6B, 0x16, 0x9F, 0xC0]
        let variables = name("acme-key") + [0, 255, 0, 0, 0, 0] + name("hmac-sha256") + time + [1, 44] + u16(tsigError) + [0, 0]
        let mac = Array(HMAC<SHA256>.authenticationCode(for: u16(requestMAC.count) + requestMAC + body + variables, using: SymmetricKey(data: secret ?? key.secret)))
        let data = name("hmac-sha256") + time + [1, 44] + u16(mac.count) + mac + u16(id) + u16(tsigError) + [0, 0]
        var message = body + name("acme-key") + [0, 250, 0, 255, 0, 0, 0, 0] + u16(data.count) + data
        message[11] = 1
        return message
    }

    @Test func readsResponses() throws {
        let requestMAC = Array(repeating: UInt8(9), count: 32)
        func outcome(_ response: [UInt8], id: UInt16 = 0x1234) -> String {
            do {
                try DNSUpdate.check(response: response, id: id, requestMAC: requestMAC, key: Self.key)
                return "ok"
            } catch {
                return "\(error)"
            }
        }
        #expect(outcome(Self.response(id: 0x1234, rcode: 0, requestMAC: requestMAC)) == "ok")
        #expect(outcome(Self.response(id: 0x1234, rcode: 5, requestMAC: requestMAC)) == "the server answered REFUSED (updates of this zone are not allowed to the key)")
        #expect(outcome(Self.response(id: 0x1234, rcode: 10, requestMAC: requestMAC)) == "the server answered NOTZONE (a name outside the zone)")
        #expect(outcome(Self.response(id: 0x1234, rcode: 9, requestMAC: requestMAC, tsigError: 16)) == "the server refused the key: BADSIG (the secret is wrong)")
        #expect(outcome(Self.response(id: 0x1234, rcode: 0, requestMAC: requestMAC), id: 1) == "a response to another message")
        // Whoever answers without the key's signature (or with another key's) is not the server the update went to.
        #expect(outcome(Self.response(id: 0x1234, rcode: 0, requestMAC: requestMAC, signed: false)) == "the response is not signed with the key")
        let forged = Self.response(id: 0x1234, rcode: 0, requestMAC: requestMAC, secret: Array(repeating: 8, count: 32))
        #expect(outcome(forged) == "the response's signature does not match the key")
        let otherRequest = Self.response(id: 0x1234, rcode: 0, requestMAC: Array(repeating: 1, count: 32))
        #expect(outcome(otherRequest) == "the response's signature does not match the key", "a response to another request's MAC")
        let whole = Self.response(id: 0x1234, rcode: 0, requestMAC: requestMAC)
        for length in [0, 11, 20, whole.count - 1] {
            #expect(outcome(Array(whole.prefix(length))) != "ok", "cut at \(length)")
        }
    }

    @Test func challengeRecords() {
        #expect(DNSUpdate.challengeName(for: "api.example.com") == "_acme-challenge.api.example.com")
        #expect(DNSUpdate.challengeName(for: "*.example.com") == "_acme-challenge.example.com")
        // base64url(SHA-256("abc")), unpadded.
        #expect(DNSUpdate.challengeValue(keyAuthorization: "abc") == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
    }

    // Against BIND: a record added, seen, deleted (only that one); a wrong secret, a name outside the zone and a server
    // that is not there each fail with what the operator needs to know.
    @Test(.timeLimit(.minutes(1))) func updatesBIND() async throws {
        let named = try await AuthoritativeDNS(zone: "gateway.test")
        let secret = try #require(Data(base64Encoded: named.secret))
        let key = DNSUpdateConfig.TSIGKey(name: named.keyName, algorithm: .hmacSHA256, secret: Array(secret))
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let updater = DNSUpdater(config: DNSUpdateConfig(host: "127.0.0.1", port: named.port, zone: "gateway.test", key: key), eventLoop: loop)
        let name = "_acme-challenge.api.gateway.test"
        try await updater.apply([.addTXT(name: name, value: "first", ttl: 60), .addTXT(name: name, value: "second", ttl: 60)])
        #expect(try named.txt(name) == ["first", "second"], "\(named.logText)")
        try await updater.apply([.deleteTXT(name: name, value: "first")])
        #expect(try named.txt(name) == ["second"])

        var wrong = key
        wrong.secret = Array(repeating: 1, count: 32)
        let refused = await thrownError(async: {
            try await DNSUpdater(config: DNSUpdateConfig(host: "127.0.0.1", port: named.port, zone: "gateway.test", key: wrong), eventLoop: loop)
                .apply([.addTXT(name: name, value: "third", ttl: 60)])
        })
        #expect(refused.map(String.init(describing:)) == "the server refused the key: BADSIG (the secret is wrong)")
        let outside = await thrownError(async: { try await updater.apply([.addTXT(name: "_acme-challenge.other.test", value: "x", ttl: 60)]) })
        #expect(outside.map(String.init(describing:)) == "the server answered NOTZONE (a name outside the zone)")
        #expect(try named.txt(name) == ["second"], "nothing changed by the refused updates")

        named.stop()
        let gone = await thrownError(async: { try await updater.apply([.deleteTXT(name: name, value: "second")]) })
        let goneText = gone.map(String.init(describing:)) ?? "none"
        #expect(goneText.hasPrefix("no answer from 127.0.0.1:\(named.port): "), "\(goneText)")
    }
}
