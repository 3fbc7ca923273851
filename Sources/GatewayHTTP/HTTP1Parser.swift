import NIOCore

/// Why a message could not be parsed. The connection cannot continue after any of these.
public struct HTTPParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// The head is larger than allowed (431 for requests).
        case headTooLarge
        /// The first line alone is larger than the head may be (414 for requests: RFC 9112 §3's "URI too long").
        case firstLineTooLong
        /// Anything else wrong with the syntax or the framing (400 for requests, 502 for responses).
        case malformed
    }

    public let kind: Kind
    /// For logs, never for clients.
    public let reason: String

    public static func malformed(_ reason: String) -> HTTPParseError { HTTPParseError(kind: .malformed, reason: reason) }
    public static let headTooLarge = HTTPParseError(kind: .headTooLarge, reason: "head too large")
    public static let firstLineTooLong = HTTPParseError(kind: .firstLineTooLong, reason: "first line too long")

    public var description: String { reason }
}

/// How a message body is delimited.
public enum BodyFraming: Sendable, Equatable {
    case none
    case length(Int)
    case chunked
    /// Until the connection closes (responses only).
    case untilClose
}

/// A request head with what the connection needs to know about it.
public struct ParsedRequest: Sendable {
    public var head: RequestHead
    public var framing: BodyFraming
    /// The client allows the connection to stay open afterwards.
    public var keepAlive: Bool
    /// `Expect: 100-continue` was sent.
    public var expectsContinue: Bool
}

public struct ParsedResponse: Sendable {
    public var head: ResponseHead
    public var framing: BodyFraming
    /// The upstream allows reusing the connection afterwards.
    public var keepAlive: Bool

    public init(head: ResponseHead, framing: BodyFraming, keepAlive: Bool) {
        self.head = head
        self.framing = framing
        self.keepAlive = keepAlive
    }
}

/// Incremental, strict HTTP/1.x head parser.
///
/// Strict on purpose (RFC 9112 plus the usual request-smuggling defences): CRLF line endings only, no
/// obs-fold, no whitespace before the colon, no control characters in values, one unambiguous body
/// framing. Call it with the bytes accumulated so far; it returns nil until a whole head is there, and
/// remembers how far it already looked so a slowly arriving head is not rescanned.
public struct HTTP1HeadParser: Sendable {
    public let maxHeadBytes: Int
    public let maxFields: Int
    /// Bytes already searched for the end of the head.
    private var scanned = 0
    /// Whether those bytes hold the end of the first line (a head over the limit without it is a 414, not a 431).
    private var firstLineEnded = false

    public init(maxHeadBytes: Int, maxFields: Int = 100) {
        self.maxHeadBytes = maxHeadBytes
        self.maxFields = maxFields
    }

    /// Parses a request head if a complete one is buffered, consuming its bytes.
    public mutating func parseRequest(_ buffer: inout ByteBuffer) throws(HTTPParseError) -> ParsedRequest? {
        skipLeadingEmptyLines(&buffer)
        guard let length = try headLength(in: buffer) else { return nil }
        let raw = buffer.readSlice(length: length)!
        return try Self.parseRequestHead(raw, maxFields: maxFields)
    }

    /// Parses a response head if a complete one is buffered, consuming its bytes.
    /// `requestMethod` decides whether a body follows (not after HEAD).
    public mutating func parseResponse(_ buffer: inout ByteBuffer, requestMethod: HTTPMethod) throws(HTTPParseError) -> ParsedResponse? {
        guard let length = try headLength(in: buffer) else { return nil }
        let raw = buffer.readSlice(length: length)!
        return try Self.parseResponseHead(raw, requestMethod: requestMethod, maxFields: maxFields)
    }

    /// Where the blank line ending the head is, or nil if more bytes are needed.
    private mutating func headLength(in buffer: ByteBuffer) throws(HTTPParseError) -> Int? {
        var lineEnded = firstLineEnded
        let result: Result<Int?, HTTPParseError> = buffer.withUnsafeReadableBytes { bytes in
            var index = max(0, scanned - 3)
            let limit = min(bytes.count, maxHeadBytes)
            while index < limit {
                if bytes[index] == UInt8(ascii: "\n") {
                    guard index > 0, bytes[index - 1] == UInt8(ascii: "\r") else {
                        return .failure(.malformed("bare LF in head"))
                    }
                    lineEnded = true
                    if index >= 3 && bytes[index - 2] == UInt8(ascii: "\n") && bytes[index - 3] == UInt8(ascii: "\r") {
                        return .success(index + 1)
                    }
                }
                index += 1
            }
            if bytes.count >= maxHeadBytes { return .failure(lineEnded ? .headTooLarge : .firstLineTooLong) }
            return .success(nil)
        }
        firstLineEnded = lineEnded
        switch result {
        case .success(let length?):
            scanned = 0
            firstLineEnded = false
            return length
        case .success(nil):
            scanned = buffer.readableBytes
            return nil
        case .failure(let error):
            throw error
        }
    }

    /// RFC 9112 §2.2: a server should ignore at least one empty line before a request line.
    private func skipLeadingEmptyLines(_ buffer: inout ByteBuffer) {
        while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
        }
    }

    // MARK: Head parsing

    /// Facts gathered while walking the fields, so no second pass is needed.
    private struct FieldFacts {
        var contentLength: Int?
        var contentLengthInvalid = false
        var transferEncodingCount = 0
        var chunkedLast = false
        var otherCoding = false
        var connectionClose = false
        var connectionKeepAlive = false
        var expectContinue = false
        /// The fields' `HeaderList.nameBit`s.
        var names: UInt64 = 0
    }

    static func parseRequestHead(_ raw: ByteBuffer, maxFields: Int) throws(HTTPParseError) -> ParsedRequest {
        let parsed: Result<(RequestHead, FieldFacts), HTTPParseError> = raw.withUnsafeReadableBytes { bytes in
            var cursor = 0
            // method SP request-target SP HTTP-version CRLF
            let methodEnd = scanToken(bytes, from: 0)
            guard methodEnd > 0, methodEnd < bytes.count, bytes[methodEnd] == 0x20 else {
                return .failure(.malformed("invalid method"))
            }
            let method = HTTPMethod(bytes: UnsafeRawBufferPointer(rebasing: bytes[0..<methodEnd]))
            cursor = methodEnd + 1
            let targetStart = cursor
            while cursor < bytes.count, bytes[cursor] > 0x20, bytes[cursor] != 0x7F { cursor += 1 }
            guard cursor > targetStart, cursor < bytes.count, bytes[cursor] == 0x20 else {
                return .failure(.malformed("invalid request target"))
            }
            let target = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[targetStart..<cursor]), as: UTF8.self)
            cursor += 1
            guard let version = parseVersion(bytes, at: cursor), cursor + 10 <= bytes.count,
                bytes[cursor + 8] == 0x0D, bytes[cursor + 9] == 0x0A
            else { return .failure(.malformed("invalid HTTP version")) }
            guard version.major == 1 else { return .failure(.malformed("unsupported HTTP version")) }
            cursor += 10
            switch parseFields(bytes, from: cursor, maxFields: maxFields) {
            case .failure(let error):
                return .failure(error)
            case .success(let (fields, facts)):
                return .success((RequestHead(method: method, target: target, version: version, headers: HeaderList(raw: raw, fields: fields, names: facts.names)), facts))
            }
        }
        let (head, facts) = try parsed.get()
        let framing: BodyFraming
        if facts.transferEncodingCount > 0 {
            // Smuggling defences: TE with CL, TE on HTTP/1.0, or any coding but a single final "chunked".
            guard facts.contentLength == nil, !facts.contentLengthInvalid else {
                throw .malformed("both Content-Length and Transfer-Encoding")
            }
            guard head.version.minor >= 1 else { throw .malformed("Transfer-Encoding in an HTTP/1.0 request") }
            guard facts.chunkedLast, !facts.otherCoding else { throw .malformed("unsupported Transfer-Encoding") }
            framing = .chunked
        } else if facts.contentLengthInvalid {
            throw .malformed("invalid Content-Length")
        } else if let length = facts.contentLength {
            framing = length == 0 ? .none : .length(length)
        } else {
            framing = .none
        }
        let keepAlive = head.version.minor >= 1 ? !facts.connectionClose : (facts.connectionKeepAlive && !facts.connectionClose)
        return ParsedRequest(head: head, framing: framing, keepAlive: keepAlive, expectsContinue: facts.expectContinue)
    }

    static func parseResponseHead(_ raw: ByteBuffer, requestMethod: HTTPMethod, maxFields: Int) throws(HTTPParseError) -> ParsedResponse {
        let parsed: Result<(ResponseHead, FieldFacts), HTTPParseError> = raw.withUnsafeReadableBytes { bytes in
            // HTTP-version SP status-code SP [reason-phrase] CRLF
            guard let version = parseVersion(bytes, at: 0), version.major == 1, bytes.count > 13, bytes[8] == 0x20 else {
                return .failure(.malformed("invalid status line"))
            }
            var status = 0
            for index in 9..<12 {
                let digit = bytes[index] &- UInt8(ascii: "0")
                guard digit <= 9 else { return .failure(.malformed("invalid status code")) }
                status = status * 10 + Int(digit)
            }
            guard status >= 100 else { return .failure(.malformed("invalid status code")) }
            var cursor = 12
            var reason: String?
            if bytes[cursor] == 0x20 {
                cursor += 1
                let start = cursor
                while cursor < bytes.count, bytes[cursor] != 0x0D {
                    let byte = bytes[cursor]
                    guard byte == 0x09 || byte >= 0x20, byte != 0x7F else { return .failure(.malformed("control character in reason phrase")) }
                    cursor += 1
                }
                let text = UnsafeRawBufferPointer(rebasing: bytes[start..<cursor])
                if !text.elementsEqual(HTTPStatusText.reason(for: status).utf8) { reason = String(decoding: text, as: UTF8.self) }
            }
            guard cursor + 1 < bytes.count, bytes[cursor] == 0x0D, bytes[cursor + 1] == 0x0A else {
                return .failure(.malformed("invalid status line"))
            }
            cursor += 2
            switch parseFields(bytes, from: cursor, maxFields: maxFields) {
            case .failure(let error):
                return .failure(error)
            case .success(let (fields, facts)):
                return .success((ResponseHead(status: status, reason: reason, version: version, headers: HeaderList(raw: raw, fields: fields, names: facts.names)), facts))
            }
        }
        let (head, facts) = try parsed.get()
        var keepAlive = head.version.minor >= 1 ? !facts.connectionClose : (facts.connectionKeepAlive && !facts.connectionClose)
        let framing: BodyFraming
        if requestMethod == .HEAD || head.status < 200 || head.status == 204 || head.status == 304 {
            framing = .none
        } else if facts.transferEncodingCount > 0 && head.version.minor >= 1 {
            if facts.contentLength != nil || facts.contentLengthInvalid { keepAlive = false }  // RFC 9112 §6.3 (3)
            if facts.chunkedLast {
                framing = .chunked
            } else {
                framing = .untilClose
                keepAlive = false
            }
        } else if facts.contentLengthInvalid {
            throw .malformed("invalid Content-Length")
        } else if let length = facts.contentLength {
            framing = length == 0 ? .none : .length(length)
        } else {
            framing = .untilClose
            keepAlive = false
        }
        return ParsedResponse(head: head, framing: framing, keepAlive: keepAlive)
    }

    /// `HTTP/d.d` at `index`.
    private static func parseVersion(_ bytes: UnsafeRawBufferPointer, at index: Int) -> HTTPVersion? {
        guard index + 8 <= bytes.count,
            bytes[index] == UInt8(ascii: "H"), bytes[index + 1] == UInt8(ascii: "T"), bytes[index + 2] == UInt8(ascii: "T"),
            bytes[index + 3] == UInt8(ascii: "P"), bytes[index + 4] == UInt8(ascii: "/"), bytes[index + 6] == UInt8(ascii: ".")
        else { return nil }
        let major = bytes[index + 5] &- UInt8(ascii: "0")
        let minor = bytes[index + 7] &- UInt8(ascii: "0")
        guard major <= 9, minor <= 9 else { return nil }
        return HTTPVersion(major: major, minor: minor)
    }

    private static func scanToken(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count, ASCII.isToken(bytes[index]) { index += 1 }
        return index
    }

    /// Parses `name: value CRLF` lines up to and including the final empty line.
    private static func parseFields(
        _ bytes: UnsafeRawBufferPointer, from start: Int, maxFields: Int
    ) -> Result<([HeaderList.RawField], FieldFacts), HTTPParseError> {
        var fields: [HeaderList.RawField] = []
        fields.reserveCapacity(12)
        var facts = FieldFacts()
        var cursor = start
        while true {
            guard cursor + 1 < bytes.count else { return .failure(.malformed("truncated head")) }
            if bytes[cursor] == 0x0D {
                guard bytes[cursor + 1] == 0x0A else { return .failure(.malformed("bare CR")) }
                return .success((fields, facts))
            }
            if bytes[cursor] == 0x20 || bytes[cursor] == 0x09 { return .failure(.malformed("obsolete line folding")) }
            let nameStart = cursor
            cursor = scanToken(bytes, from: cursor)
            guard cursor > nameStart, cursor < bytes.count, bytes[cursor] == UInt8(ascii: ":") else {
                return .failure(.malformed("invalid header name"))
            }
            let nameEnd = cursor
            cursor += 1
            while cursor < bytes.count, bytes[cursor] == 0x20 || bytes[cursor] == 0x09 { cursor += 1 }
            let valueStart = cursor
            var valueEnd = cursor
            while cursor < bytes.count {
                let byte = bytes[cursor]
                if byte == 0x0D { break }
                // Field values: visible characters, obs-text, spaces and tabs; never NUL, CR, LF or other controls.
                guard byte >= 0x20 || byte == 0x09, byte != 0x7F else {
                    return .failure(.malformed("control character in header value"))
                }
                cursor += 1
                if byte != 0x20 && byte != 0x09 { valueEnd = cursor }
            }
            guard cursor + 1 < bytes.count, bytes[cursor + 1] == 0x0A else { return .failure(.malformed("bare CR")) }
            cursor += 2
            guard fields.count < maxFields else { return .failure(.headTooLarge) }
            let field = HeaderList.RawField(
                nameStart: UInt32(nameStart), nameLength: UInt32(nameEnd - nameStart), valueStart: UInt32(valueStart),
                valueLength: UInt32(valueEnd - valueStart), removed: false)
            fields.append(field)
            facts.names |= HeaderList.nameBit(length: nameEnd - nameStart, last: bytes[nameEnd - 1])
            noteFramingField(field, bytes, &facts)
        }
    }

    /// Records the fields that decide framing and connection reuse, by name length first (cheap).
    private static func noteFramingField(_ field: HeaderList.RawField, _ bytes: UnsafeRawBufferPointer, _ facts: inout FieldFacts) {
        let name = UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)])
        let value = HeaderList.value(of: field, in: bytes)
        switch name.count {
        case 14 where ASCII.equalsCaseInsensitively(name, "content-length"):
            HeaderList.forEachToken(value) { element in
                guard let length = ASCII.parseDecimal(element) else {
                    facts.contentLengthInvalid = true
                    return
                }
                if let existing = facts.contentLength, existing != length { facts.contentLengthInvalid = true }
                facts.contentLength = length
            }
            if value.isEmpty { facts.contentLengthInvalid = true }
        case 17 where ASCII.equalsCaseInsensitively(name, "transfer-encoding"):
            facts.transferEncodingCount += 1
            HeaderList.forEachToken(value) { element in
                if facts.chunkedLast { facts.otherCoding = true }  // anything after chunked, even chunked again
                if ASCII.equalsCaseInsensitively(element, "chunked") {
                    facts.chunkedLast = true
                } else {
                    facts.otherCoding = true
                    facts.chunkedLast = false
                }
            }
        case 10 where ASCII.equalsCaseInsensitively(name, "connection"):
            HeaderList.forEachToken(value) { element in
                if ASCII.equalsCaseInsensitively(element, "close") { facts.connectionClose = true }
                if ASCII.equalsCaseInsensitively(element, "keep-alive") { facts.connectionKeepAlive = true }
            }
        case 6 where ASCII.equalsCaseInsensitively(name, "expect"):
            if ASCII.equalsCaseInsensitively(value, "100-continue") { facts.expectContinue = true }
        default:
            break
        }
    }
}
