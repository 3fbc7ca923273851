import NIOCore

/// gRPC-Web (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md): what browsers can send instead of
/// gRPC, which needs HTTP/2 trailers that browser APIs do not expose. The messages are the same length-prefixed
/// frames; the differences are the content type, the trailers (sent as a last frame of the body, flagged 0x80)
/// and, in the `-text` variant, base64 around the whole body in both directions.
public enum GRPCWeb {
    public enum Encoding: Sendable, Equatable {
        case binary
        /// `application/grpc-web-text`: both bodies are base64.
        case text
    }

    /// The request's gRPC-Web encoding and message format suffix (`+proto`, `+json`, or empty), from its
    /// `Content-Type`; nil when it is not gRPC-Web.
    public static func encoding(contentType: String) -> (encoding: Encoding, suffix: Substring)? {
        let type = contentType.prefix { $0 != ";" }.filter { $0 != " " && $0 != "\t" }.lowercased()
        let text = "application/grpc-web-text"
        let binary = "application/grpc-web"
        if type.hasPrefix(text), type.count == text.count || type.dropFirst(text.count).first == "+" {
            return (.text, Substring(type.dropFirst(text.count)))
        }
        if type.hasPrefix(binary), type.count == binary.count || type.dropFirst(binary.count).first == "+" {
            return (.binary, Substring(type.dropFirst(binary.count)))
        }
        return nil
    }

    /// The `Content-Type` the gRPC upstream gets.
    public static func upstreamContentType(suffix: Substring) -> String { "application/grpc" + suffix }

    /// The `Content-Type` the browser gets back, in the encoding it asked for.
    public static func responseContentType(_ encoding: Encoding, suffix: Substring) -> String {
        (encoding == .text ? "application/grpc-web-text" : "application/grpc-web") + suffix
    }

    /// The trailers as gRPC-Web's last body frame: the flag byte 0x80, a 4-byte big-endian length, then the
    /// fields as HTTP/1 header lines with lower-case names.
    public static func trailerFrame(_ trailers: HeaderList) -> ByteBuffer {
        var block = ""
        for (name, value) in trailers {
            block += name.lowercased()
            block += ":"
            block += value
            block += "\r\n"
        }
        var frame = ByteBuffer()
        frame.reserveCapacity(5 + block.utf8.count)
        frame.writeInteger(UInt8(0x80))
        frame.writeInteger(UInt32(block.utf8.count))
        frame.writeString(block)
        return frame
    }
}

/// Base64 over a body that arrives in parts: every part is encoded as far as whole 3-byte groups go, the
/// rest waits for the next part, and `finish` pads the last group. The parts joined are one base64 text.
public struct Base64StreamEncoder: Sendable {
    private var carry: [UInt8] = []

    public init() {}

    public mutating func encode(_ buffer: ByteBuffer) -> ByteBuffer {
        var bytes = carry
        bytes.append(contentsOf: buffer.readableBytesView)
        let whole = bytes.count - bytes.count % 3
        carry = Array(bytes[whole...])
        return Self.encoded(bytes[..<whole])
    }

    /// The padded last group (empty when the body was a whole number of groups).
    public mutating func finish() -> ByteBuffer {
        defer { carry = [] }
        return Self.encoded(carry[...])
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encoded(_ bytes: ArraySlice<UInt8>) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let count = min(3, bytes.endIndex - index)
            let b0 = bytes[index]
            let b1 = count > 1 ? bytes[index + 1] : 0
            let b2 = count > 2 ? bytes[index + 2] : 0
            out.writeInteger(alphabet[Int(b0 >> 2)])
            out.writeInteger(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.writeInteger(count > 1 ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.writeInteger(count > 2 ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += count
        }
        return out
    }
}

/// The other way: base64 text arriving in parts, decoded as far as whole 4-character groups go. Padding may
/// end a group anywhere (gRPC-Web clients may send each message padded on its own); anything outside the
/// alphabet is an error.
public struct Base64StreamDecoder: Sendable {
    public struct Malformed: Error, Sendable {}

    private var carry: [UInt8] = []

    public init() {}

    public mutating func decode(_ buffer: ByteBuffer) throws(Malformed) -> ByteBuffer {
        var text = carry
        text.append(contentsOf: buffer.readableBytesView)
        let whole = text.count - text.count % 4
        carry = Array(text[whole...])
        var out = ByteBuffer()
        out.reserveCapacity(whole / 4 * 3)
        var index = 0
        while index < whole {
            var values: [UInt8] = [0, 0, 0, 0]
            var padding = 0
            for offset in 0..<4 {
                let char = text[index + offset]
                if char == UInt8(ascii: "=") {
                    guard offset >= 2 else { throw Malformed() }
                    padding += 1
                } else {
                    guard padding == 0, let value = Self.value(of: char) else { throw Malformed() }
                    values[offset] = value
                }
            }
            out.writeInteger(values[0] << 2 | values[1] >> 4)
            if padding < 2 { out.writeInteger(values[1] << 4 | values[2] >> 2) }
            if padding < 1 { out.writeInteger(values[2] << 6 | values[3]) }
            index += 4
        }
        return out
    }

    /// Whether the text ended on a group boundary (a cut group is a malformed body).
    public var isComplete: Bool { carry.isEmpty }

    private static func value(of char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return char - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return char - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return char - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }
}

/// gRPC's `grpc-timeout` request field (the client's deadline): 1 to 8 digits and a unit, `H`ours, `M`inutes,
/// `S`econds, `m`illiseconds, `u` (microseconds) or `n`anoseconds, e.g. `250m`.
public enum GRPCTimeout {
    /// The deadline in microseconds (nanoseconds round up to a whole one); nil when the value is malformed.
    public static func microseconds(_ value: String) -> Int64? {
        let bytes = Array(value.utf8)
        guard (2...9).contains(bytes.count), let unit = bytes.last else { return nil }
        var amount: Int64 = 0
        for byte in bytes.dropLast() {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            amount = amount * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        switch unit {
        case UInt8(ascii: "H"): return amount * 3_600_000_000
        case UInt8(ascii: "M"): return amount * 60_000_000
        case UInt8(ascii: "S"): return amount * 1_000_000
        case UInt8(ascii: "m"): return amount * 1_000
        case UInt8(ascii: "u"): return amount
        case UInt8(ascii: "n"): return (amount + 999) / 1_000
        default: return nil
        }
    }
}
