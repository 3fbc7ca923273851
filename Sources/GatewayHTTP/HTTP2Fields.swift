/// Carrying HTTP/1.1-shaped heads as HTTP/2 fields, both ways (edge streams and upstream streams).
public enum HTTP2Fields {
    /// Fields HTTP/2 forbids (RFC 9113 §8.2.2); `lowercasedName` is lower case.
    public static func isConnectionSpecific(_ lowercasedName: String) -> Bool {
        switch lowercasedName {
        case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade": return true
        default: return false
        }
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
