/// An IPv4 or IPv6 address parsed from text, without touching the network stack.
///
/// Used to match client and proxy addresses against `trusted_proxies` ranges. IPv4-mapped IPv6
/// addresses (`::ffff:10.0.0.1`) are normalised to IPv4 so a dual-stack listener matches IPv4 ranges.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6(high: UInt64, low: UInt64)

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` compression and an embedded IPv4 tail).
    /// A zone suffix (`fe80::1%eth0`) is ignored.
    public init?(_ text: some StringProtocol) {
        var text = Substring(text)
        if let percent = text.firstIndex(of: "%") { text = text[..<percent] }
        if let v4 = IPAddress.parseV4(text) {
            self = .v4(v4)
        } else if let v6 = IPAddress.parseV6(text) {
            self = IPAddress.normalised(high: v6.0, low: v6.1)
        } else {
            return nil
        }
    }

    /// Builds an address from raw network-order bytes (4 or 16 of them), as a socket address carries them.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            var high: UInt64 = 0
            var low: UInt64 = 0
            for (index, byte) in bytes.enumerated() {
                if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
            }
            self = IPAddress.normalised(high: high, low: low)
        default:
            return nil
        }
    }

    private static func normalised(high: UInt64, low: UInt64) -> IPAddress {
        if high == 0 && low >> 32 == 0xFFFF { return .v4(UInt32(truncatingIfNeeded: low)) }
        return .v6(high: high, low: low)
    }

    public var description: String {
        switch self {
        case .v4(let value):
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        case .v6(let high, let low):
            let groups = (0..<8).map { index -> UInt16 in
                let word = index < 4 ? high : low
                return UInt16(truncatingIfNeeded: word >> (UInt64(3 - index % 4) * 16))
            }
            // Compress the longest run of zero groups (length >= 2), as RFC 5952 asks.
            var bestStart = -1
            var bestLength = 0
            var index = 0
            while index < 8 {
                if groups[index] == 0 {
                    var end = index
                    while end < 8 && groups[end] == 0 { end += 1 }
                    if end - index > bestLength { bestStart = index; bestLength = end - index }
                    index = end
                } else {
                    index += 1
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            if bestLength < 2 { return hex.joined(separator: ":") }
            let head = hex[..<bestStart].joined(separator: ":")
            let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
            return head + "::" + tail
        }
    }

    private static func parseV4(_ text: Substring) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let octet = UInt32(part), octet <= 255,
                part.count == 1 || part.first != "0"
            else { return nil }
            value = value << 8 | octet
            parts += 1
        }
        return parts == 4 ? value : nil
    }

    /// Splits on "::" without Foundation.
    private static func splitOnDoubleColon(_ text: Substring) -> [Substring] {
        var result: [Substring] = []
        var start = text.startIndex
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(after: index)
            if text[index] == ":", next < text.endIndex, text[next] == ":" {
                result.append(text[start..<index])
                start = text.index(after: next)
                index = start
            } else {
                index = next
            }
        }
        result.append(text[start...])
        return result
    }

    private static func parseV6(_ text: Substring) -> (UInt64, UInt64)? {
        guard text.contains(":") else { return nil }
        var groups: [UInt16] = []
        var compressionIndex: Int?
        let halves = splitOnDoubleColon(text)
        guard halves.count <= 2 else { return nil }
        for (halfIndex, half) in halves.enumerated() {
            if halfIndex == 1 { compressionIndex = groups.count }
            if half.isEmpty { continue }
            let pieces = half.split(separator: ":", omittingEmptySubsequences: false)
            for (pieceIndex, piece) in pieces.enumerated() {
                if piece.contains(".") {
                    // An embedded IPv4 address may only end the address.
                    guard halfIndex == halves.count - 1, pieceIndex == pieces.count - 1,
                        let v4 = parseV4(piece)
                    else { return nil }
                    groups.append(UInt16(v4 >> 16))
                    groups.append(UInt16(v4 & 0xFFFF))
                } else {
                    guard (1...4).contains(piece.count), let group = UInt16(piece, radix: 16) else { return nil }
                    groups.append(group)
                }
            }
        }
        if let compressionIndex {
            guard groups.count < 8 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: compressionIndex)
        }
        guard groups.count == 8 else { return nil }
        let high = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return (high, low)
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a range of one.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let maxLength: Int
        switch address {
        case .v4: maxLength = 32
        case .v6: maxLength = 128
        }
        var length = maxLength
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
                let parsed = Int(parts[1]), parsed <= maxLength
            else { return nil }
            length = parsed
        }
        self.prefixLength = length
        self.network = CIDR.mask(address, length: length)
    }

    public var description: String { "\(network)/\(prefixLength)" }

    public func contains(_ address: IPAddress) -> Bool {
        switch (network, address) {
        case (.v4, .v4), (.v6, .v6):
            return CIDR.mask(address, length: prefixLength) == network
        default:
            return false
        }
    }

    private static func mask(_ address: IPAddress, length: Int) -> IPAddress {
        switch address {
        case .v4(let value):
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
            return .v4(value & mask)
        case .v6(let high, let low):
            let highMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
            let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << UInt64(128 - length))
            return .v6(high: high & highMask, low: low & lowMask)
        }
    }
}

/// A set of trusted ranges; answers "is this peer one of ours?".
/// Lookups take a binary search over the ranges sorted and merged into intervals, so a blocklist of tens of thousands of
/// ranges (`deny_ips_file`) costs a request about as little as a list of three.
public struct AddressSet: Sendable {
    public let ranges: [CIDR]
    private let v4: [ClosedRange<UInt32>]
    private let v6: [ClosedRange<UInt128>]

    public init(_ ranges: [CIDR]) {
        self.ranges = ranges
        var v4: [ClosedRange<UInt32>] = []
        var v6: [ClosedRange<UInt128>] = []
        for range in ranges {
            switch range.network {
            case .v4(let network):
                let hosts: UInt32 = range.prefixLength == 0 ? ~0 : (range.prefixLength == 32 ? 0 : ~(~UInt32(0) << UInt32(32 - range.prefixLength)))
                v4.append(network...(network | hosts))
            case .v6(let high, let low):
                let network = UInt128(high) << 64 | UInt128(low)
                let hosts: UInt128 = range.prefixLength == 0 ? ~0 : (range.prefixLength == 128 ? 0 : ~(~UInt128(0) << UInt128(128 - range.prefixLength)))
                v6.append(network...(network | hosts))
            }
        }
        self.v4 = Self.merged(v4)
        self.v6 = Self.merged(v6)
    }

    public var isEmpty: Bool { ranges.isEmpty }

    public func contains(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let value): return Self.search(v4, value)
        case .v6(let high, let low): return Self.search(v6, UInt128(high) << 64 | UInt128(low))
        }
    }

    /// Sorted by start, overlapping and adjacent intervals joined.
    private static func merged<T: FixedWidthInteger>(_ intervals: [ClosedRange<T>]) -> [ClosedRange<T>] {
        var result: [ClosedRange<T>] = []
        for interval in intervals.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = result.last, last.upperBound == T.max || interval.lowerBound <= last.upperBound + 1 {
                result[result.count - 1] = last.lowerBound...max(last.upperBound, interval.upperBound)
            } else {
                result.append(interval)
            }
        }
        return result
    }

    /// Whether `value` lies in one of the sorted, disjoint `intervals`.
    private static func search<T: Comparable>(_ intervals: [ClosedRange<T>], _ value: T) -> Bool {
        var low = 0
        var high = intervals.count
        while low < high {  // the first interval starting above `value`
            let middle = (low + high) / 2
            if intervals[middle].lowerBound <= value { low = middle + 1 } else { high = middle }
        }
        return low > 0 && intervals[low - 1].upperBound >= value
    }
}

/// A route's client-address rule (`deny_ips`, `allow_ips`): denied ranges always lose; when allowed ranges are
/// given, nothing outside them passes. An address that is not known (a Unix-socket client) matches no range.
public struct AddressRule: Sendable {
    public let deny: AddressSet
    public let allow: AddressSet

    public init(deny: [CIDR], allow: [CIDR]) {
        self.deny = AddressSet(deny)
        self.allow = AddressSet(allow)
    }

    public var isEmpty: Bool { deny.isEmpty && allow.isEmpty }

    public func permits(_ address: IPAddress?) -> Bool {
        guard let address else { return allow.isEmpty }
        if deny.contains(address) { return false }
        return allow.isEmpty || allow.contains(address)
    }
}
