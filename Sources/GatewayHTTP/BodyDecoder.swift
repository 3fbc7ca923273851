import NIOCore

/// Cuts a message body out of the byte stream, as zero-copy slices of the received buffers.
///
/// Chunked decoding is strict: hex sizes up to 8 TiB (at most 32 digits with leading zeros), CRLF exactly where the grammar puts it,
/// bounded chunk extensions and trailers. Trailers are read and dropped.
public struct BodyDecoder: Sendable {
    public enum Event: Sendable, Equatable {
        case data(ByteBuffer)
        case end
    }

    private enum State: Sendable {
        case length(remaining: Int)
        case untilClose
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case done
    }

    private var state: State
    /// Limit for one chunk-size line and for the trailer section.
    private let maxLineBytes: Int

    public init(framing: BodyFraming, maxLineBytes: Int = 8192) {
        switch framing {
        case .none: state = .done
        case .length(let length): state = length == 0 ? .done : .length(remaining: length)
        case .chunked: state = .chunkSize
        case .untilClose: state = .untilClose
        }
        self.maxLineBytes = maxLineBytes
    }

    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// The next piece of the body, `.end` once (and forever after), or nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) throws(HTTPParseError) -> Event? {
        while true {
            switch state {
            case .done:
                return .end
            case .length(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let take = min(remaining, buffer.readableBytes)
                let slice = buffer.readSlice(length: take)!
                state = take == remaining ? .done : .length(remaining: remaining - take)
                return .data(slice)
            case .untilClose:
                guard buffer.readableBytes > 0 else { return nil }
                return .data(buffer.readSlice(length: buffer.readableBytes)!)
            case .chunkSize:
                guard let size = try readChunkSize(&buffer) else { return nil }
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let take = min(remaining, buffer.readableBytes)
                let slice = buffer.readSlice(length: take)!
                state = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
                return .data(slice)
            case .chunkDataEnd:
                guard buffer.readableBytes >= 2 else { return nil }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw .malformed("missing CRLF after chunk data") }
                state = .chunkSize
            case .trailers:
                guard try skipTrailers(&buffer) else { return nil }
                state = .done
            }
        }
    }

    /// The peer closed the connection: fine for a close-delimited body, a truncation otherwise.
    public mutating func endOfInput() throws(HTTPParseError) -> Event {
        switch state {
        case .untilClose, .done:
            state = .done
            return .end
        default:
            throw .malformed("connection closed before the end of the body")
        }
    }

    /// `1*HEXDIG [ ; extensions ] CRLF`, or nil if the line is not complete yet.
    private func readChunkSize(_ buffer: inout ByteBuffer) throws(HTTPParseError) -> Int? {
        let result: Result<(size: Int, lineLength: Int)?, HTTPParseError> = buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            var size = 0
            while index < bytes.count, let digit = Self.hexValue(bytes[index]) {
                // Leading zeros are harmless; a value past the limit is refused before it can wrap (a 16-digit
                // size would turn negative).
                guard size <= Int(Int32.max) * 4096 else { return .failure(.malformed("chunk size too large")) }
                guard index < 32 else { return .failure(.malformed("chunk size too large")) }
                size = size << 4 | digit
                index += 1
            }
            if index == bytes.count {
                return bytes.count > maxLineBytes ? .failure(.malformed("chunk size line too long")) : .success(nil)
            }
            guard index > 0 else { return .failure(.malformed("invalid chunk size")) }
            if bytes[index] == UInt8(ascii: ";") || bytes[index] == 0x20 || bytes[index] == 0x09 {
                // Chunk extensions (and the whitespace some senders put before them) are skipped.
                while index < bytes.count, bytes[index] != 0x0D {
                    let byte = bytes[index]
                    guard byte >= 0x20 || byte == 0x09, byte != 0x7F else { return .failure(.malformed("control character in chunk extension")) }
                    index += 1
                }
            }
            guard index < maxLineBytes else { return .failure(.malformed("chunk size line too long")) }
            guard index + 1 < bytes.count else { return .success(nil) }
            guard bytes[index] == 0x0D, bytes[index + 1] == 0x0A else { return .failure(.malformed("invalid chunk size line")) }
            guard size >= 0, size <= Int(Int32.max) * 4096 else { return .failure(.malformed("chunk size too large")) }
            return .success((size, index + 2))
        }
        guard let line = try result.get() else { return nil }
        buffer.moveReaderIndex(forwardBy: line.lineLength)
        return line.size
    }

    /// Skips `*( field-line CRLF ) CRLF`; false when the section is not complete yet.
    private func skipTrailers(_ buffer: inout ByteBuffer) throws(HTTPParseError) -> Bool {
        let result: Result<Int?, HTTPParseError> = buffer.withUnsafeReadableBytes { bytes in
            var lineStart = 0
            var index = 0
            while index < bytes.count {
                if bytes[index] == 0x0A {
                    guard index > 0, bytes[index - 1] == 0x0D else { return .failure(.malformed("bare LF in trailers")) }
                    if index == lineStart + 1 { return .success(index + 1) }  // the empty line
                    lineStart = index + 1
                } else if bytes[index] < 0x20 && bytes[index] != 0x09 && bytes[index] != 0x0D || bytes[index] == 0x7F {
                    return .failure(.malformed("control character in trailers"))
                }
                index += 1
            }
            return bytes.count > maxLineBytes ? .failure(.malformed("trailers too large")) : .success(nil)
        }
        guard let length = try result.get() else { return false }
        buffer.moveReaderIndex(forwardBy: length)
        return true
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}

/// Writes HTTP/1.1 heads and chunk framing.
public enum HTTP1Writer {
    public static func write(_ head: RequestHead, to buffer: inout ByteBuffer) {
        var method = head.method.name
        var target = head.target
        let version: StaticString = head.version.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n"
        buffer.reserveCapacity(minimumWritableBytes: method.utf8.count + target.utf8.count + head.headers.serializedSize + 16)
        // The start line in one write: each small ByteBuffer write pays a uniqueness and capacity check.
        _ = method.withUTF8 { method in
            target.withUTF8 { target in
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: method.count + target.count + version.utf8CodeUnitCount + 1) {
                    var line = LineWriter($0)
                    line.append(method)
                    line.append(" ")
                    line.append(target)
                    line.append(version)
                    return line.offset
                }
            }
        }
        head.headers.write(to: &buffer)
        buffer.writeStaticString("\r\n")
    }

    public static func write(_ head: ResponseHead, to buffer: inout ByteBuffer) {
        var reason = head.reasonPhrase
        let version: StaticString = head.version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 "
        buffer.reserveCapacity(minimumWritableBytes: reason.utf8.count + head.headers.serializedSize + 40)
        reason.withUTF8 { reason in
            let size = version.utf8CodeUnitCount + LineWriter.maxDecimalLength + 1 + reason.count + 2
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) {
                var line = LineWriter($0)
                line.append(version)
                line.appendDecimal(head.status)
                line.append(" ")
                line.append(reason)
                line.append("\r\n")
                return line.offset
            }
        }
        head.headers.write(to: &buffer)
        buffer.writeStaticString("\r\n")
    }

    /// `SIZE-IN-HEX CRLF` before a chunk's data.
    public static func writeChunkHeader(size: Int, to buffer: inout ByteBuffer) {
        buffer.writeString(String(size, radix: 16))
        buffer.writeStaticString("\r\n")
    }

    public static let crlf = ByteBuffer(string: "\r\n")
    /// A shared empty buffer, to drop references to received storage without allocating.
    public static let emptyBuffer = ByteBuffer()
    public static let lastChunk = ByteBuffer(string: "0\r\n\r\n")
}

/// Appends a start line's parts to writable bytes sized for them beforehand.
private struct LineWriter {
    private let out: UnsafeMutableRawBufferPointer
    private(set) var offset = 0

    init(_ out: UnsafeMutableRawBufferPointer) { self.out = out }

    mutating func append(_ text: StaticString) {
        (out.baseAddress! + offset).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        offset += text.utf8CodeUnitCount
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        if let base = bytes.baseAddress, bytes.count > 0 { (out.baseAddress! + offset).copyMemory(from: base, byteCount: bytes.count) }
        offset += bytes.count
    }

    /// The most bytes `appendDecimal` writes (a sign and 19 digits).
    static let maxDecimalLength = 20

    /// `value` in decimal (a status code: three digits in practice, any Int written correctly).
    mutating func appendDecimal(_ value: Int) {
        if value < 0 {
            out[offset] = UInt8(ascii: "-")
            offset += 1
        }
        var magnitude = value.magnitude
        var digits = 1
        while magnitude >= 10 {
            magnitude /= 10
            digits += 1
        }
        magnitude = value.magnitude
        for index in stride(from: offset + digits - 1, through: offset, by: -1) {
            out[index] = UInt8(truncatingIfNeeded: 0x30 + magnitude % 10)
            magnitude /= 10
        }
        offset += digits
    }
}
