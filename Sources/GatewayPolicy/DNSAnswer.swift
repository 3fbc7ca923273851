/// The parts of a DNS answer (RFC 1035 §4) that service discovery reads: SRV records (RFC 2782) and the addresses
/// (A, AAAA) a server adds for their targets. Pure: tested on bytes, without a server.
public struct DNSAnswer: Sendable, Equatable {
    /// One SRV record: where an instance of the service listens, and how to choose among instances.
    public struct Service: Sendable, Hashable {
        public var priority: Int
        public var weight: Int
        public var port: Int
        /// The instance's host name, lowercased, without the final dot.
        public var target: String
        public init(priority: Int, weight: Int, port: Int, target: String) {
            (self.priority, self.weight, self.port, self.target) = (priority, weight, port, target)
        }
    }

    public struct Malformed: Error, CustomStringConvertible {
        public let description: String
    }

    public static let srv = 33, a = 1, aaaa = 28

    public var services: [Service] = []
    /// Host name (lowercased, no final dot) -> its addresses as text, from any section.
    public var addresses: [String: [String]] = [:]

    public init(services: [Service] = [], addresses: [String: [String]] = [:]) {
        self.services = services
        self.addresses = addresses
    }

    /// Reads the answer, authority and additional sections of `message`; other record types are skipped.
    public init(parsing message: [UInt8]) throws {
        var reader = Reader(bytes: message)
        let header = Array(try reader.bytes(12))
        let count = { (index: Int) in Int(header[index]) << 8 | Int(header[index + 1]) }
        for _ in 0..<count(4) {
            _ = try reader.name()
            try reader.skip(4)
        }
        for _ in 0..<(count(6) + count(8) + count(10)) {
            let owner = try reader.name()
            let type = try reader.uint16()
            try reader.skip(6)  // class, TTL
            let length = try reader.uint16()
            let end = reader.offset + length
            guard end <= message.count else { throw Malformed(description: "a record runs past the message") }
            switch type {
            case Self.srv:
                let (priority, weight, port) = (try reader.uint16(), try reader.uint16(), try reader.uint16())
                services.append(Service(priority: priority, weight: weight, port: port, target: try reader.name()))
            case Self.a where length == 4:
                addresses[owner, default: []].append(try reader.bytes(4).map(String.init).joined(separator: "."))
            case Self.aaaa where length == 16:
                let bytes = Array(try reader.bytes(16))
                let groups = stride(from: 0, to: 16, by: 2).map { String(Int(bytes[$0]) << 8 | Int(bytes[$0 + 1]), radix: 16) }
                addresses[owner, default: []].append(groups.joined(separator: ":"))
            default:
                break
            }
            reader.offset = end
        }
    }

    /// Reads a DNS message's fields from the front (names with their compression pointers); shared with the readers of
    /// other DNS messages (DNS UPDATE responses).
    public struct Reader {
        public let bytes: [UInt8]
        public var offset: Int

        public init(bytes: [UInt8], offset: Int = 0) {
            self.bytes = bytes
            self.offset = offset
        }

        public mutating func bytes(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, offset + count <= bytes.count else { throw Malformed(description: "the message ends early") }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }

        public mutating func skip(_ count: Int) throws { _ = try bytes(count) }

        public mutating func uint16() throws -> Int {
            let pair = try bytes(2)
            return Int(pair[pair.startIndex]) << 8 | Int(pair[pair.startIndex + 1])
        }

        /// A domain name, following compression pointers (a bounded number of them: a loop is an error).
        public mutating func name() throws -> String {
            var labels: [String] = []
            var position = offset
            var jumped = false
            var jumps = 0
            var length = 0
            while true {
                guard position < bytes.count else { throw Malformed(description: "a name runs past the message") }
                let size = Int(bytes[position])
                if size & 0xC0 == 0xC0 {
                    guard position + 1 < bytes.count, jumps < 32 else { throw Malformed(description: "a bad name pointer") }
                    if !jumped { offset = position + 2 }
                    jumped = true
                    jumps += 1
                    position = (size & 0x3F) << 8 | Int(bytes[position + 1])
                    continue
                }
                guard size & 0xC0 == 0 else { throw Malformed(description: "an unknown label type") }
                if size == 0 {
                    if !jumped { offset = position + 1 }
                    return labels.joined(separator: ".").lowercased()
                }
                length += size + 1
                guard position + 1 + size <= bytes.count, length <= 255 else { throw Malformed(description: "a name too long") }
                labels.append(String(decoding: bytes[(position + 1)...(position + size)], as: UTF8.self))
                position += 1 + size
            }
        }
    }
}
