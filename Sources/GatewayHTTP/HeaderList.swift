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
    /// Which names may be among the received fields and among the added ones: one bit per name, picked by its
    /// length and last byte (`nameBit`). A lookup skips the fields whose summary lacks its bit, and most lookups
    /// ask for a field the message lacks (Upgrade, Transfer-Encoding, the X-Forwarded family, Traceparent...).
    /// Removing a field leaves its bit set: a set bit means "maybe".
    @usableFromInline var receivedNames: UInt64
    @usableFromInline var addedNames: UInt64

    /// Whether any field was added (beside the received ones).
    public var hasAddedFields: Bool { !added.isEmpty }

    public init() {
        raw = ByteBuffer()
        rawFields = []
        added = []
        receivedNames = 0
        addedNames = 0
    }

    public init(_ fields: [(String, String)]) {
        self.init()
        added = fields.map { (name: $0.0, value: $0.1) }
        addedNames = added.reduce(0) { $0 | Self.nameBit($1.name) }
    }

    /// `names`: the `nameBit`s of the fields' names, gathered by the parser while it had each name's bytes at hand.
    init(raw: ByteBuffer, fields: [RawField], names: UInt64) {
        self.raw = raw
        self.rawFields = fields
        self.added = []
        self.receivedNames = names
        self.addedNames = 0
    }

    /// The summary bit of a field name: its length and its last byte (case folded), mixed into one of 64 bits.
    @inlinable
    static func nameBit(length: Int, last: UInt8) -> UInt64 {
        let key = UInt32(truncatingIfNeeded: length) << 8 | UInt32(ASCII.lower(last))
        return 1 << UInt64((key &* 0x9E37_79B1) >> 26)
    }

    @inlinable
    static func nameBit(_ name: String) -> UInt64 {
        let utf8 = name.utf8
        return nameBit(length: utf8.count, last: utf8.last ?? 0)
    }

    /// Where a field named `name` may be (false: certainly not there).
    @inlinable
    func mayHold(_ name: String) -> (received: Bool, added: Bool) {
        let bit = Self.nameBit(name)
        return (receivedNames & bit != 0, addedNames & bit != 0)
    }

    // MARK: Reading

    /// Number of fields present.
    public var count: Int { rawFields.reduce(0) { $0 + ($1.removed ? 0 : 1) } + added.count }

    public var isEmpty: Bool { count == 0 }

    /// The first value of `name`, if any.
    public func first(name: String) -> String? {
        if let index = firstRawIndex(name: name) { return rawValue(at: index) }
        guard mayHold(name).added else { return nil }
        return added.first { $0.name.equalsCaseInsensitively(name) }?.value
    }

    /// Every value of `name`, in order.
    public subscript(name: String) -> [String] {
        values(name: name)
    }

    public func contains(name: String) -> Bool {
        firstRawIndex(name: name) != nil || (mayHold(name).added && added.contains { $0.name.equalsCaseInsensitively(name) })
    }

    /// The first value of `name` and how many fields carry that name, in one pass.
    public func firstAndCount(name: String) -> (first: String?, count: Int) {
        var first: String?
        var total = 0
        forEachReceivedValue(name: name) { value in
            if total == 0 { first = String(decoding: value, as: UTF8.self) }
            total += 1
        }
        guard mayHold(name).added else { return (first, total) }
        for field in added where field.name.equalsCaseInsensitively(name) {
            if total == 0 { first = field.value }
            total += 1
        }
        return (first, total)
    }

    /// How many fields are named `name`.
    public func count(name: String) -> Int {
        var total = 0
        forEachReceivedValue(name: name) { _ in total += 1 }
        guard mayHold(name).added else { return total }
        return total + added.reduce(0) { $0 + ($1.name.equalsCaseInsensitively(name) ? 1 : 0) }
    }

    /// Whether any comma-separated element of any `name` field equals `token` (case-insensitively),
    /// e.g. `containsToken("close", inField: "connection")`. No allocation for received fields.
    public func containsToken(_ token: String, inField name: String) -> Bool {
        let (received, added) = mayHold(name)
        var found = false
        if received {
            raw.withUnsafeReadableBytes { bytes in
                for field in rawFields where !field.removed && Self.nameEquals(field, name, in: bytes) {
                    Self.forEachToken(Self.value(of: field, in: bytes)) { element in
                        if ASCII.equalsCaseInsensitively(element, token) { found = true }
                    }
                    if found { return }
                }
            }
        }
        guard !found, added else { return found }
        for field in self.added where field.name.equalsCaseInsensitively(name) {
            field.value.withUTF8Bytes { bytes in
                Self.forEachToken(bytes) { element in
                    if ASCII.equalsCaseInsensitively(element, token) { found = true }
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
        all.reserveCapacity(rawFields.count + added.count)
        forEachField(lowercasingNames: false) { all.append(($0, $1)) }
        return all.makeIterator()
    }

    /// Calls `body` with every field present, in order, without collecting them into an array first (as
    /// iterating does). With `lowercasingNames` (HTTP/2 wants lowercase names), received names are lowercased as
    /// their strings are made (names of up to 15 bytes then need no allocation at all), and added names (the
    /// gateway's own rules and filters: nearly always lowercase already) are lowercased when they are not.
    public func forEachField(lowercasingNames: Bool, _ body: (_ name: String, _ value: String) -> Void) {
        raw.withUnsafeReadableBytes { bytes in
            for field in rawFields where !field.removed {
                let name = UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)])
                let nameString: String
                if lowercasingNames {
                    nameString = String(unsafeUninitializedCapacity: name.count) { buffer in
                        for (index, byte) in name.enumerated() {
                            buffer[index] = ASCII.lower(byte)
                        }
                        return name.count
                    }
                } else {
                    nameString = String(decoding: name, as: UTF8.self)
                }
                body(nameString, String(decoding: Self.value(of: field, in: bytes), as: UTF8.self))
            }
        }
        for (name, value) in added {
            if lowercasingNames, Self.hasUppercase(name) { body(name.lowercased(), value) } else { body(name, value) }
        }
    }

    private static func hasUppercase(_ name: String) -> Bool {
        name.withUTF8Bytes { bytes in bytes.contains { ASCII.lower($0) != $0 } }
    }

    // MARK: Changing

    public mutating func add(name: String, value: String) {
        // A proxy adds a handful of fields per message (a response on a rate-limited route: security headers,
        // the request id and five rate-limit fields); reserving once avoids growing the array.
        if added.capacity == 0 { added.reserveCapacity(16) }
        added.append((name, value))
        addedNames |= Self.nameBit(name)
    }

    /// Removes every field named `name`.
    public mutating func remove(name: String) {
        let (received, added) = mayHold(name)
        if received { markReceivedRemoved { bytes, field in Self.nameEquals(field, name, in: bytes) } }
        if added { removeAdded { ASCII.equalsCaseInsensitively($0, name) } }
    }

    /// Sets `name` to exactly one field with `value`.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    /// Removes received fields for which `shouldRemove(name)` is true, in one pass over the raw bytes.
    /// `shouldRemove` sees the name's bytes, so nothing is allocated for the fields that stay.
    public mutating func removeReceived(where shouldRemove: (UnsafeRawBufferPointer) -> Bool) {
        markReceivedRemoved { bytes, field in
            shouldRemove(UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)]))
        }
    }

    /// Removes added fields for which `shouldRemove(name)` is true; like `removeReceived`, it sees the name's bytes
    /// (read in place: no copy of a name, no reference count touched per field).
    public mutating func removeAdded(where shouldRemove: (UnsafeRawBufferPointer) -> Bool) {
        // Looked for first: `removeAll` copies the (usually shared) array even when it removes nothing.
        let any = added.withUnsafeBufferPointer { fields in fields.indices.contains { fields[$0].name.withUTF8Bytes(shouldRemove) } }
        guard any else { return }
        added.removeAll { $0.name.withUTF8Bytes(shouldRemove) }
    }

    /// Marks the received fields `matches` picks as removed. The fields array is usually shared with the
    /// parsed message it came from, so it is only written (and so copied) once a field actually goes: a
    /// write inside the search loop would make the optimiser copy it up front, for nothing, on every call.
    private mutating func markReceivedRemoved(_ matches: (UnsafeRawBufferPointer, RawField) -> Bool) {
        guard !rawFields.isEmpty else { return }
        let raw = self.raw
        raw.withUnsafeReadableBytes { bytes in
            guard let first = rawFields.firstIndex(where: { !$0.removed && matches(bytes, $0) }) else { return }
            rawFields[first].removed = true
            for index in (first + 1)..<rawFields.count where !rawFields[index].removed && matches(bytes, rawFields[index]) {
                rawFields[index].removed = true
            }
        }
    }

    /// Values of `name` among the added fields only.
    public func addedValues(name: String) -> [String] {
        guard mayHold(name).added else { return [] }
        return added.filter { $0.name.equalsCaseInsensitively(name) }.map(\.value)
    }

    /// Every value of `name`, one per field line (received values are read in place; no other field is copied).
    public func values(name: String) -> [String] {
        var values: [String] = []
        forEachReceivedValue(name: name) { values.append(String(decoding: $0, as: UTF8.self)) }
        if !added.isEmpty { values += addedValues(name: name) }
        return values
    }

    /// Calls `body` with the value bytes of every received `name` field (no allocation).
    public func forEachReceivedValue(name: String, _ body: (UnsafeRawBufferPointer) -> Void) {
        guard mayHold(name).received else { return }
        raw.withUnsafeReadableBytes { bytes in
            for field in rawFields where !field.removed && Self.nameEquals(field, name, in: bytes) {
                body(Self.value(of: field, in: bytes))
            }
        }
    }

    // MARK: Writing

    /// Writes every field as `name: value\r\n` (canonical form, whatever spacing arrived).
    ///
    /// One bounds check and one pointer walk for the whole block: small ByteBuffer writes each pay for a
    /// uniqueness check, which dominated head serialisation in profiles.
    public func write(to buffer: inout ByteBuffer) {
        let size = serializedSize
        buffer.reserveCapacity(minimumWritableBytes: size)
        let written = buffer.withUnsafeMutableWritableBytes { out -> Int in
            var offset = 0
            @inline(__always) func append(_ bytes: UnsafeRawBufferPointer) {
                if bytes.count > 0 { (out.baseAddress! + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
                offset += bytes.count
            }
            @inline(__always) func appendSeparator() {
                out[offset] = UInt8(ascii: ":")
                out[offset + 1] = UInt8(ascii: " ")
                offset += 2
            }
            @inline(__always) func appendCRLF() {
                out[offset] = 0x0D
                out[offset + 1] = 0x0A
                offset += 2
            }
            if !rawFields.isEmpty {
                raw.withUnsafeReadableBytes { bytes in
                    // Fields that arrived in canonical form one after another (as most do) are copied as one
                    // block: a run of received lines, flushed when a field was removed or needs rewriting.
                    var run = 0..<0
                    for field in rawFields where !field.removed {
                        if let line = Self.canonicalLine(of: field, in: bytes) {
                            if run.isEmpty {
                                run = line
                            } else if line.lowerBound == run.upperBound {
                                run = run.lowerBound..<line.upperBound
                            } else {
                                append(UnsafeRawBufferPointer(rebasing: bytes[run]))
                                run = line
                            }
                            continue
                        }
                        if !run.isEmpty {
                            append(UnsafeRawBufferPointer(rebasing: bytes[run]))
                            run = 0..<0
                        }
                        append(UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)]))
                        appendSeparator()
                        append(Self.value(of: field, in: bytes))
                        appendCRLF()
                    }
                    if !run.isEmpty { append(UnsafeRawBufferPointer(rebasing: bytes[run])) }
                }
            }
            added.withUnsafeBufferPointer { fields in
                for index in fields.indices {
                    fields[index].name.withUTF8Bytes { append($0) }
                    appendSeparator()
                    fields[index].value.withUTF8Bytes { append($0) }
                    appendCRLF()
                }
            }
            return offset
        }
        precondition(written == size)
        buffer.moveWriterIndex(forwardBy: written)
    }

    /// The field's whole received line when it is already `name: value\r\n` (one space, CRLF), so that
    /// writing it is copying it.
    @inline(__always)
    static func canonicalLine(of field: RawField, in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        let nameEnd = Int(field.nameStart + field.nameLength)
        let valueEnd = Int(field.valueStart + field.valueLength)
        guard Int(field.valueStart) == nameEnd + 2, valueEnd + 2 <= bytes.count, bytes[nameEnd] == UInt8(ascii: ":"),
            bytes[nameEnd + 1] == UInt8(ascii: " "), bytes[valueEnd] == 0x0D, bytes[valueEnd + 1] == 0x0A
        else { return nil }
        return Int(field.nameStart)..<(valueEnd + 2)
    }

    /// Exact number of bytes `write(to:)` produces.
    public var serializedSize: Int {
        var size = 0
        for field in rawFields where !field.removed { size += Int(field.nameLength + field.valueLength) + 4 }
        added.withUnsafeBufferPointer { fields in
            for index in fields.indices { size += fields[index].name.utf8.count + fields[index].value.utf8.count + 4 }
        }
        return size
    }

    /// Bytes `write(to:)` will produce (for sizing buffers).
    public var serializedSizeEstimate: Int { serializedSize }

    // MARK: Helpers

    @usableFromInline
    func firstRawIndex(name: String) -> Int? {
        guard mayHold(name).received else { return nil }
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
        return ASCII.equalsCaseInsensitively(
            UnsafeRawBufferPointer(rebasing: bytes[Int(field.nameStart)..<Int(field.nameStart + field.nameLength)]), name)
    }

    @inlinable
    static func value(of field: RawField, in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[Int(field.valueStart)..<Int(field.valueStart + field.valueLength)])
    }

    /// Splits a list value on commas, trimming spaces and tabs; empty elements are skipped.
    public static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
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

extension String {
    /// On the two strings' contiguous bytes: iterating `UTF8View`s steps through the string's representation
    /// byte by byte, which HTTP/2 requests (every field name a `String`) paid on each name lookup.
    @inlinable
    public func equalsCaseInsensitively(_ other: String) -> Bool {
        utf8.count == other.utf8.count && withUTF8Bytes { ASCII.equalsCaseInsensitively($0, other) }
    }

    /// The string's UTF-8 bytes, read in place. `withUTF8` needs a `var` copy of the string, and the copy retains
    /// and releases a heap string around every call (in 2026-12-08's counts, 20 of the 113 bridge-object retains of
    /// a 1 KB GET came from writing the added fields that way); a native string's bytes can be lent as they are.
    /// Chosen per call site by counting (`COUNT=1 bench/profile.sh`): in `HTTP1Writer`'s start lines and the HTTP/2
    /// field checks it counted more atomic retains than the copy, so those keep `withUTF8`.
    @inlinable
    public func withUTF8Bytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        if let result = try utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) { return result }
        var copy = self
        return try copy.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }
}

public enum ASCII {
    @inlinable
    public static func lower(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }

    /// RFC 9110 token characters, as a 128-bit set in two words (no lazily initialised global table,
    /// which costs a `swift_once` check per lookup): `!#$%&'*+-.^_`|~`, digits and letters.
    @inlinable
    public static func isToken(_ byte: UInt8) -> Bool {
        let low: UInt64 = 0x03FF_6CFA_0000_0000  // 0x00-0x3F: ! # $ % & ' * + - . 0-9
        let high: UInt64 = 0x57FF_FFFF_C7FF_FFFE  // 0x40-0x7F: A-Z ^ _ ` a-z | ~
        if byte < 64 { return low >> UInt64(byte) & 1 == 1 }
        if byte < 128 { return high >> UInt64(byte - 64) & 1 == 1 }
        return false
    }

    /// 1*DIGIT, at most 18 digits (no overflow, no signs, no spaces).
    @inlinable
    public static func parseDecimal(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var value = 0
        for byte in bytes {
            let digit = byte &- UInt8(ascii: "0")
            guard digit <= 9 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }

    /// Compares bytes with a (usually lowercase literal) name, ignoring ASCII case.
    @inlinable
    public static func equalsCaseInsensitively(_ bytes: UnsafeRawBufferPointer, _ name: String) -> Bool {
        name.withUTF8Bytes { other in
            guard other.count == bytes.count else { return false }
            for index in 0..<other.count {
                let a = bytes[index]
                let b = other[index]
                if a != b && lower(a) != lower(b) { return false }
            }
            return true
        }
    }
}
