import Crypto
import GatewayConfig
import GatewayPolicy

/// DNS UPDATE messages (RFC 2136) signed with TSIG (RFC 8945): how the gateway puts the TXT records of DNS-01
/// challenges into a zone it does not serve (BIND, Knot, PowerDNS, Windows DNS and most providers' primaries take them).
/// Pure: messages are built and read as bytes, tested without a server.
public enum DNSUpdate {
    public enum Change: Equatable, Sendable {
        /// Adds one TXT record (RFC 2136 §2.5.1: beside any others of that name).
        case addTXT(name: String, value: String, ttl: Int)
        /// Deletes that one TXT record (§2.5.4: class NONE), leaving others of the name alone.
        case deleteTXT(name: String, value: String)
    }

    public struct Refused: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    static let typeTXT: UInt16 = 16, typeSOA: UInt16 = 6, typeTSIG: UInt16 = 250
    static let classIN: UInt16 = 1, classNONE: UInt16 = 254, classANY: UInt16 = 255
    /// TSIG's allowed clock difference between the gateway and the server (the value BIND and nsupdate use).
    static let fudge: UInt16 = 300

    /// An UPDATE of `zone` making `changes`, signed with `key` at `time` (Unix seconds): the message, and its MAC (which
    /// the response's signature covers).
    public static func message(id: UInt16, zone: String, changes: [Change], key: DNSUpdateConfig.TSIGKey, time: UInt64) -> (bytes: [UInt8], mac: [UInt8]) {
        var message: [UInt8] = []
        append16(id, to: &message)
        append16(5 << 11, to: &message)  // opcode UPDATE
        append16(1, to: &message)  // the zone
        append16(0, to: &message)  // no prerequisites
        append16(UInt16(changes.count), to: &message)
        append16(0, to: &message)  // additional: the TSIG record, added below
        appendName(zone, to: &message)
        append16(typeSOA, to: &message)
        append16(classIN, to: &message)
        for change in changes {
            switch change {
            case .addTXT(let name, let value, let ttl):
                appendRecord(name: name, type: typeTXT, class: classIN, ttl: UInt32(ttl), data: textData(value), to: &message)
            case .deleteTXT(let name, let value):
                appendRecord(name: name, type: typeTXT, class: classNONE, ttl: 0, data: textData(value), to: &message)
            }
        }
        let variables = tsigVariables(key: key, time: time, error: 0)
        let mac = sign(key, message + variables)
        appendRecord(name: key.name, type: typeTSIG, class: classANY, ttl: 0, data: tsigData(key: key, time: time, mac: mac, id: id), to: &message)
        message[11] = 1  // ARCOUNT
        return (message, mac)
    }

    /// Reads the server's response to the message with `id` and MAC `requestMAC`: returns when the update was made, throws
    /// `Refused` naming what went wrong (the server's response code, or a TSIG error: the key unknown, the signature
    /// wrong, the clocks too far apart), and when the response's own signature does not check out.
    public static func check(response: [UInt8], id: UInt16, requestMAC: [UInt8], key: DNSUpdateConfig.TSIGKey) throws {
        guard response.count >= 12 else { throw Refused(description: "a response shorter than a DNS header") }
        guard UInt16(response[0]) << 8 | UInt16(response[1]) == id else { throw Refused(description: "a response to another message") }
        let rcode = Int(response[3] & 0x0F)
        var reader = DNSAnswer.Reader(bytes: response, offset: 12)
        let counts = (0..<4).map { Int(response[4 + $0 * 2]) << 8 | Int(response[5 + $0 * 2]) }
        // The TSIG record, last of the additional section, when the server signed its answer.
        var tsig: (start: Int, algorithm: String, time: UInt64, mac: [UInt8], error: Int, other: ArraySlice<UInt8>)?
        do {
            for _ in 0..<counts[0] {
                _ = try reader.name()
                try reader.skip(4)
            }
            for index in 0..<(counts[1] + counts[2] + counts[3]) {
                let start = reader.offset
                _ = try reader.name()
                let type = try reader.uint16()
                try reader.skip(6)
                let length = try reader.uint16()
                let end = reader.offset + length
                guard end <= response.count else { throw Refused(description: "a record runs past the response") }
                if type == Int(typeTSIG), index == counts[1] + counts[2] + counts[3] - 1 {
                    let algorithm = try reader.name()
                    let time = try reader.bytes(6).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    try reader.skip(2)  // fudge
                    let mac = Array(try reader.bytes(try reader.uint16()))
                    try reader.skip(2)  // original id
                    let error = try reader.uint16()
                    let other = try reader.bytes(try reader.uint16())
                    tsig = (start, algorithm, time, mac, error, other)
                }
                reader.offset = end
            }
        } catch let refused as Refused {
            throw refused
        } catch {
            throw Refused(description: "a malformed response")
        }
        if let tsig, tsig.error != 0 {
            throw Refused(description: "the server refused the key: " + (tsigErrors[tsig.error] ?? "TSIG error \(tsig.error)"))
        }
        guard rcode == 0 else { throw Refused(description: "the server answered " + (responseCodes[rcode] ?? "response code \(rcode)")) }
        // RFC 8945 §5.3.4: a signed request gets a signed response; an unsigned or wrongly signed one could be anyone's.
        guard let tsig, tsig.algorithm == key.algorithm.rawValue else { throw Refused(description: "the response is not signed with the key") }
        var unsigned = Array(response[..<tsig.start])
        unsigned[10] = UInt8((counts[3] - 1) >> 8)
        unsigned[11] = UInt8((counts[3] - 1) & 0xFF)
        var input: [UInt8] = []
        append16(UInt16(requestMAC.count), to: &input)
        input += requestMAC
        input += unsigned
        input += tsigVariables(key: key, time: tsig.time, error: UInt16(tsig.error), other: Array(tsig.other))
        guard constantTimeEqual(sign(key, input), tsig.mac) else { throw Refused(description: "the response's signature does not match the key") }
    }

    /// The TXT record's name for a DNS-01 challenge of `domain` (a wildcard's is its base name's, RFC 8555 §8.4).
    public static func challengeName(for domain: String) -> String {
        "_acme-challenge." + (domain.hasPrefix("*.") ? String(domain.dropFirst(2)) : domain)
    }

    /// RFC 8555 §8.4: the base64url SHA-256 of the key authorization.
    public static func challengeValue(keyAuthorization: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Array(keyAuthorization.utf8))))
    }

    static let responseCodes = [
        1: "FORMERR (a malformed update)", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP (no dynamic updates)",
        5: "REFUSED (updates of this zone are not allowed to the key)", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET",
        9: "NOTAUTH (the server is not authoritative for the zone, or the key is not accepted)", 10: "NOTZONE (a name outside the zone)",
    ]
    static let tsigErrors = [16: "BADSIG (the secret is wrong)", 17: "BADKEY (no key of that name and algorithm)", 18: "BADTIME (the clocks differ by more than 5 minutes)"]

    // MARK: Wire format

    static func append16(_ value: UInt16, to bytes: inout [UInt8]) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    /// A name in canonical form (RFC 4034 §6.2: lowercase, never compressed), as TSIG's digest needs it.
    static func appendName(_ name: String, to bytes: inout [UInt8]) {
        for label in name.lowercased().split(separator: ".") {
            bytes.append(UInt8(label.utf8.count))
            bytes += label.utf8
        }
        bytes.append(0)
    }

    static func appendRecord(name: String, type: UInt16, class: UInt16, ttl: UInt32, data: [UInt8], to bytes: inout [UInt8]) {
        appendName(name, to: &bytes)
        append16(type, to: &bytes)
        append16(`class`, to: &bytes)
        append16(UInt16(ttl >> 16), to: &bytes)
        append16(UInt16(ttl & 0xFFFF), to: &bytes)
        append16(UInt16(data.count), to: &bytes)
        bytes += data
    }

    /// A TXT record's data: one character-string (at most 255 bytes; a challenge value is 43).
    static func textData(_ value: String) -> [UInt8] {
        let bytes = Array(value.utf8.prefix(255))
        return [UInt8(bytes.count)] + bytes
    }

    static func append48(_ time: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 40, through: 0, by: -8) { bytes.append(UInt8((time >> UInt64(shift)) & 0xFF)) }
    }

    /// RFC 8945 §4.3.3: what the MAC covers besides the message.
    static func tsigVariables(key: DNSUpdateConfig.TSIGKey, time: UInt64, error: UInt16, other: [UInt8] = []) -> [UInt8] {
        var bytes: [UInt8] = []
        appendName(key.name, to: &bytes)
        append16(classANY, to: &bytes)
        bytes += [0, 0, 0, 0]  // TTL
        appendName(key.algorithm.rawValue, to: &bytes)
        append48(time, to: &bytes)
        append16(fudge, to: &bytes)
        append16(error, to: &bytes)
        append16(UInt16(other.count), to: &bytes)
        return bytes + other
    }

    static func tsigData(key: DNSUpdateConfig.TSIGKey, time: UInt64, mac: [UInt8], id: UInt16) -> [UInt8] {
        var data: [UInt8] = []
        appendName(key.algorithm.rawValue, to: &data)
        append48(time, to: &data)
        append16(fudge, to: &data)
        append16(UInt16(mac.count), to: &data)
        data += mac
        append16(id, to: &data)
        append16(0, to: &data)  // error
        append16(0, to: &data)  // other length
        return data
    }

    static func sign(_ key: DNSUpdateConfig.TSIGKey, _ input: [UInt8]) -> [UInt8] {
        let secret = SymmetricKey(data: key.secret)
        switch key.algorithm {
        case .hmacSHA256: return Array(HMAC<SHA256>.authenticationCode(for: input, using: secret))
        case .hmacSHA512: return Array(HMAC<SHA512>.authenticationCode(for: input, using: secret))
        }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
