/// Carrying HTTP/1.1-shaped heads as HTTP/2 fields, both ways (edge streams and upstream streams).
public enum HTTP2Fields {
    /// Fields HTTP/2 forbids (RFC 9113 §8.2.2); `lowercasedName` is lower case.
    public static func isConnectionSpecific(_ lowercasedName: String) -> Bool {
        connectionSpecific.contains(lowercasedName)
    }

    private static let connectionSpecific = FieldNameSet(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"])
}

/// A fixed set of lowercase field names, checked for every field of a message. Matched by length first, then
/// byte by byte: a `switch` over strings compares each case in turn through the runtime's string comparison,
/// a function call per case for names that match none.
public struct FieldNameSet: Sendable {
    private let names: [[UInt8]]

    public init(_ names: [String]) { self.names = names.map { Array($0.utf8) } }

    public func contains(_ lowercasedName: String) -> Bool {
        var name = lowercasedName
        return name.withUTF8 { bytes in names.contains { $0.count == bytes.count && $0.elementsEqual(bytes) } }
    }
}

/// How much of a receive window to give back, and when: once half of it has been taken, all that was taken
/// (as NIO's own window manager does), so a client streaming a body gets a WINDOW_UPDATE every half window.
public struct ReceiveWindowCredit: Sendable {
    public let window: Int
    public private(set) var taken = 0

    public init(window: Int) { self.window = window }

    /// `length` more bytes were taken; returns the increment to send now, if any.
    public mutating func received(_ length: Int) -> Int? {
        taken += length
        guard taken >= window / 2 else { return nil }
        defer { taken = 0 }
        return taken
    }
}
