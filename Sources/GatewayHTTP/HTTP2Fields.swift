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
