/// The PROXY protocol header (HAProxy's, versions 1 and 2) that a layer-4 load balancer (AWS NLB, HAProxy in TCP
/// mode, a TLS passthrough) writes at the start of a connection to say who the client is. Parsed from the first
/// bytes alone, no I/O.
public enum ProxyProtocol {
    public enum Parse: Equatable, Sendable {
        /// A prefix of a valid header so far.
        case needMore
        /// Not a PROXY header (or a malformed one): the connection must be closed.
        case invalid
        /// The header is `length` bytes; `source` is the client's address, nil when the balancer speaks for
        /// itself (v2 LOCAL, a health check) or does not know it (v1 UNKNOWN, v2 UNSPEC or Unix).
        case header(length: Int, source: IPAddress?)
    }

    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Prefix = Array("PROXY ".utf8)
    /// A v1 header is at most 107 bytes, CRLF included.
    static let v1MaxLength = 107

    public static func parse(_ bytes: [UInt8]) -> Parse {
        let signatureSeen = min(bytes.count, v2Signature.count)
        if bytes.prefix(signatureSeen).elementsEqual(v2Signature.prefix(signatureSeen)) {
            return signatureSeen < v2Signature.count ? .needMore : parseV2(bytes)
        }
        let prefixSeen = min(bytes.count, v1Prefix.count)
        if bytes.prefix(prefixSeen).elementsEqual(v1Prefix.prefix(prefixSeen)) {
            return prefixSeen < v1Prefix.count ? .needMore : parseV1(bytes)
        }
        return .invalid
    }

    /// `PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n`, or `PROXY UNKNOWN...\r\n`.
    private static func parseV1(_ bytes: [UInt8]) -> Parse {
        let searched = bytes.prefix(v1MaxLength)
        guard let lineFeed = searched.firstIndex(of: UInt8(ascii: "\n")) else {
            return bytes.count >= v1MaxLength ? .invalid : .needMore
        }
        guard lineFeed > 0, bytes[lineFeed - 1] == UInt8(ascii: "\r") else { return .invalid }
        let line = String(decoding: bytes[..<(lineFeed - 1)], as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        let length = lineFeed + 1
        if fields.count >= 2, fields[1] == "UNKNOWN" { return .header(length: length, source: nil) }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6",
            let source = IPAddress(fields[2]), IPAddress(fields[3]) != nil,
            isPort(fields[4]), isPort(fields[5])
        else { return .invalid }
        switch (fields[1], source) {
        case ("TCP4", .v4), ("TCP6", .v6), ("TCP6", .v4): return .header(length: length, source: source)  // ::ffff:a.b.c.d is v4 here
        default: return .invalid
        }
    }

    /// The binary form: signature, version and command, family, a 16-bit length, then the addresses (and TLVs).
    private static func parseV2(_ bytes: [UInt8]) -> Parse {
        guard bytes.count >= 16 else { return .needMore }
        let versionAndCommand = bytes[12]
        guard versionAndCommand >> 4 == 2 else { return .invalid }
        let command = versionAndCommand & 0x0F
        guard command <= 1 else { return .invalid }
        let addressLength = Int(bytes[14]) << 8 | Int(bytes[15])
        let length = 16 + addressLength
        guard bytes.count >= length else { return .needMore }
        guard command == 1 else { return .header(length: length, source: nil) }  // LOCAL
        switch bytes[13] >> 4 {
        case 1:  // AF_INET: source, destination (4 bytes each), ports
            guard addressLength >= 12 else { return .invalid }
            return .header(length: length, source: IPAddress(bytes: bytes[16..<20]))
        case 2:  // AF_INET6
            guard addressLength >= 36 else { return .invalid }
            return .header(length: length, source: IPAddress(bytes: bytes[16..<32]))
        default:  // AF_UNSPEC, AF_UNIX: nothing to say about an IP client
            return .header(length: length, source: nil)
        }
    }

    private static func isPort(_ text: Substring) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 5, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let port = Int(text)
        else { return false }
        return port <= 65535 && (text == "0" || !text.hasPrefix("0"))
    }
}
