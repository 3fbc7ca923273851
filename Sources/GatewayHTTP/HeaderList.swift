import NIOCore

/// Header fields of one message, kept as the bytes they arrived in.
///
/// A proxy reads most headers only to pass them on, so a parsed head keeps the received bytes and the
/// offsets of each name and value; a `String` is made only for a field someone asks for. Removing a field
/// marks it; added fields live beside the received ones. Serialising writes the kept fields out again in
/// canonical `name: value` form. This is where the forwarding path saves most of what a String-per-header
/// codec spends.
///
/// Names compare ASCII case-insensitively. Order: received fields in arrival order, then added ones.
public struct HeaderList: Sendable, Sequence {
    @usableFromInline
    struct RawField: Sendable {
        @usableFromInline var nameStart: UInt32
        @usableFromInline var nameLength: UInt32
        @usableFromInline var valueStart: UInt32
        @usableFromInline var valueLength: UInt32
        @usableFromInline var removed: Bool
    }

    /// The received head; offsets are relative to its reader index. Never written to.
    @usableFromInline var raw: ByteBuffer
    @usableFromInline var rawFields: [RawField]
    @usableFromInline var added: [(name: String, value: String)]

    public init() {
        raw = ByteBuffer()
        rawFields = []
        added = []
    }

    public init(_ fields: [(String, String)]) {
        self.init()
        added = fields.map { (name: $0.0, value: $0.1) }
    }

    init(raw: ByteBuffer, fields: [RawField]) {
        self.raw = raw
        self.rawFields = fields
        self.added = []
    }

    // MARK: Reading

    /// Number of fields present.
    public var count: Int { rawFields.reduce(0) { $0 + ($1.removed ? 0 : 1) } + added.count }

    public var isEmpty: Bool { count == 0 }

    /// The first value of `name`, if any.
    public func first(name: String) -> String? {
        if let index = firstRawIndex(name: name) { return rawValue(at: index) }
        return added.first { $0.name.equalsCaseInsensitively(name) }?.value
    }

    /// Every value of `name`, in order.
    public subscript(name: String) -> [String] {
        var values: [String] = []
        raw.withUnsafeReadableBytes { bytes in
            for field in rawFields where !field.removed && Self.nameEquals(field, name, in: bytes) {
                values.append(String(decoding: Self.value(of: field, in: bytes), as: UTF8.self))
            }
        }
        for field in added where field.name.equalsCaseInsensitively(name) { values.append(field.value) }
        return values
    }

    public func contains(name: String) -> Bool {
        firstRawIndex(name: name) != nil || added.contains { $0.name.equalsCaseInsensitively(name) }
    }

    /// How many fields are named `name`.
    public func count(name: String) -> Int {
        var total = 0
        raw.withUnsafeReadableBytes { bytes in
            for field in rawFields where !field.removed && Self.nameEquals(field, name, in: bytes) { total += 1 }
        }
        return total + added.reduce(0) { $0 + ($1.name.equalsCaseInsensitively(name) ? 1 : 0) }
    }

    /// Whether any comma-separated element of any `name` field equals `token` (case-insensitively),
    /// e.g. `containsToken("close", inField: "connection")`. No allocation for received fields.
    public func containsToken(_ token: String, inField name: String) -> Bool {
        var found = false
        raw.withUnsafeReadableBytes { bytes in
            for field in rawFields where !field.removed && Self.nameEquals(field, name, in: bytes) {
                Self.forEachToken(Self.value(of: field, in: bytes)) { element in
                    if element.equalsCaseInsensitively(token.utf8) { found = true }
                }
                if found { return }
            }
        }
        if found { return true }
        for field in added where field.name.equalsCaseInsensitively(name) {
            var bytes = Array(field.value.utf8)
            bytes.withUnsafeMutableBytes { buffer in
                Self.forEachToken(UnsafeRawBufferPointer(buffer)) { element in
                    if element.equalsCaseInsensitively(token.utf8) { found = true }
                }
            }
        }
        return found
    }

    /// The `close` / `keep-alive` options of the Connection header.
    public var connectionTokens: (close: Bool, keepAlive: Bool) {
        (containsToken("close", inField: "connection"), containsToken("keep-alive", inField: "connection"))
    }

    public func makeIterator() -> Array<(name: String, value: String)>.Iterator {
        var all: [(name: String, value: String)] = []
        raw.withUnsafeReadableBytes { bytes in
            for field in rawFields where !field.removed {
                all.append((
                    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)]), as: UTF8.self),
                    String(decoding: Self.value(of: field, in: bytes), as: UTF8.self)
                ))
            }
        }
        return (all + added).makeIterator()
    }

    // MARK: Changing

    public mutating func add(name: String, value: String) {
        added.append((name, value))
    }

    /// Removes every field named `name`.
    public mutating func remove(name: String) {
        if !rawFields.isEmpty {
            let raw = self.raw
            raw.withUnsafeReadableBytes { bytes in
                for index in rawFields.indices where !rawFields[index].removed && Self.nameEquals(rawFields[index], name, in: bytes) {
                    rawFields[index].removed = true
                }
            }
        }
        if !added.isEmpty { added.removeAll { $0.name.equalsCaseInsensitively(name) } }
    }

    /// Sets `name` to exactly one field with `value`.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    /// Removes received fields for which `shouldRemove(name)` is true, in one pass over the raw bytes.
    /// `shouldRemove` sees the name's bytes, so nothing is allocated for the fields that stay.
    public mutating func removeReceived(where shouldRemove: (UnsafeRawBufferPointer) -> Bool) {
        guard !rawFields.isEmpty else { return }
        let raw = self.raw
        raw.withUnsafeReadableBytes { bytes in
            for index in rawFields.indices where !rawFields[index].removed {
                let field = rawFields[index]
                let name = UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)])
                if shouldRemove(name) { rawFields[index].removed = true }
            }
        }
    }

    /// Removes added fields whose name satisfies the predicate.
    public mutating func removeAdded(where shouldRemove: (String) -> Bool) {
        added.removeAll { shouldRemove($0.name) }
    }

    /// Calls `body` with the value bytes of every received `name` field (no allocation).
    public func forEachReceivedValue(name: String, _ body: (UnsafeRawBufferPointer) -> Void) {
        raw.withUnsafeReadableBytes { bytes in
            for field in rawFields where !field.removed && Self.nameEquals(field, name, in: bytes) {
                body(Self.value(of: field, in: bytes))
            }
        }
    }

    // MARK: Writing

    /// Writes every field as `name: value\r\n` (canonical form, whatever spacing arrived).
    public func write(to buffer: inout ByteBuffer) {
        if !rawFields.isEmpty {
            raw.withUnsafeReadableBytes { bytes in
                for field in rawFields where !field.removed {
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)]))
                    buffer.writeStaticString(": ")
                    buffer.writeBytes(Self.value(of: field, in: bytes))
                    buffer.writeStaticString("\r\n")
                }
            }
        }
        for field in added {
            buffer.writeString(field.name)
            buffer.writeStaticString(": ")
            buffer.writeString(field.value)
            buffer.writeStaticString("\r\n")
        }
    }

    /// Bytes `write(to:)` will produce (for sizing buffers).
    public var serializedSizeEstimate: Int {
        raw.readableBytes + added.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }

    // MARK: Helpers

    @usableFromInline
    func firstRawIndex(name: String) -> Int? {
        guard !rawFields.isEmpty else { return nil }
        return raw.withUnsafeReadableBytes { bytes in
            rawFields.firstIndex { !$0.removed && Self.nameEquals($0, name, in: bytes) }
        }
    }

    func rawValue(at index: Int) -> String {
        raw.withUnsafeReadableBytes { String(decoding: Self.value(of: rawFields[index], in: $0), as: UTF8.self) }
    }

    @inlinable
    static func nameEquals(_ field: RawField, _ name: String, in bytes: UnsafeRawBufferPointer) -> Bool {
        guard Int(field.nameLength) == name.utf8.count else { return false }
        return UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)])
            .equalsCaseInsensitively(name.utf8)
    }

    @inlinable
    static func value(of field: RawField, in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[Int(field.valueStart)..<Int(field.valueStart + field.valueLength)])
    }

    /// Splits a list value on commas, trimming spaces and tabs; empty elements are skipped.
    static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        while start < value.count {
            var end = start
            while end < value.count && value[end] != UInt8(ascii: ",") { end += 1 }
            var tokenStart = start
            var tokenEnd = end
            while tokenStart < tokenEnd && (value[tokenStart] == 0x20 || value[tokenStart] == 0x09) { tokenStart += 1 }
            while tokenEnd > tokenStart && (value[tokenEnd - 1] == 0x20 || value[tokenEnd - 1] == 0x09) { tokenEnd -= 1 }
            if tokenEnd > tokenStart { body(UnsafeRawBufferPointer(rebasing: value[tokenStart..<tokenEnd])) }
            start = end + 1
        }
    }
}

extension Sequence<UInt8> {
    /// ASCII case-insensitive comparison with another byte sequence.
    @inlinable
    public func equalsCaseInsensitively(_ other: some Sequence<UInt8>) -> Bool {
        var mine = makeIterator()
        var theirs = other.makeIterator()
        while true {
            switch (mine.next(), theirs.next()) {
            case (nil, nil): return true
            case (let a?, let b?):
                if a != b && ASCII.lower(a) != ASCII.lower(b) { return false }
            default: return false
            }
        }
    }
}

extension String {
    @inlinable
    public func equalsCaseInsensitively(_ other: String) -> Bool {
        utf8.count == other.utf8.count && utf8.equalsCaseInsensitively(other.utf8)
    }
}

public enum ASCII {
    @inlinable
    public static func lower(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }

    /// RFC 9110 token characters.
    public static let tokenTable: [Bool] = (0..<256).map { value in
        let byte = UInt8(value)
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    @inlinable
    public static func isToken(_ byte: UInt8) -> Bool { tokenTable[Int(byte)] }
}
