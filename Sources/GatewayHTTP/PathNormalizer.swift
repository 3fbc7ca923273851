/// The one place a request path is normalised, before routing, authentication, rate limits, the cache key
/// and the upstream request all see it, so none of them can disagree about which resource is meant:
///
/// - percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is `A`; RFC 3986 §6.2.2.2) and
///   other percent-encodings get upper-case hex;
/// - `.` and `..` segments are removed (RFC 3986 §5.2.4; `..` never climbs above the root), and empty segments
///   (`//`) are merged;
/// - an encoded slash or backslash (`%2F`, `%5C`) is rejected or kept encoded, by policy (`reject` default:
///   backends disagree about whether it separates segments);
/// - invalid percent-encodings, an encoded NUL and a raw backslash are rejected, and so is a fragment (`#`): a
///   client never sends one (RFC 9112 §3.2), and a backend that drops it would see another path than was routed.
///
/// The query is left as it is.
public enum PathNormalizer {
    public enum EncodedSlashes: String, Sendable, CaseIterable {
        case reject, keep
    }

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case invalidPercentEncoding, encodedNul, encodedSlash, backslash, fragment, notOriginForm

        public var description: String {
            switch self {
            case .invalidPercentEncoding: return "The request path has an invalid percent-encoding."
            case .encodedNul: return "The request path contains an encoded NUL."
            case .encodedSlash: return "The request path contains an encoded slash, which this gateway does not accept."
            case .backslash: return "The request path contains a backslash."
            case .fragment: return "The request target contains a fragment ('#'), which requests do not carry."
            case .notOriginForm: return "The request target is not a path."
            }
        }
    }

    public static func normalize(_ target: String, encodedSlashes: EncodedSlashes = .reject) -> Result<String, Failure> {
        if target == "*" { return .success(target) }  // OPTIONS *
        guard target.utf8.first == UInt8(ascii: "/") else { return .failure(.notOriginForm) }
        // The common case is checked on the string's own bytes: no copy, no allocation.
        let pathBytes = target.utf8.prefix { $0 != UInt8(ascii: "?") }
        if target.utf8.dropFirst(pathBytes.count).contains(UInt8(ascii: "#")) { return .failure(.fragment) }
        if isAlreadyNormal(pathBytes) { return .success(target) }
        let bytes = Array(target.utf8)
        let pathEnd = pathBytes.count

        // Decode what may be decoded, segment by segment.
        var segments: [[UInt8]] = []
        var current: [UInt8] = []
        var endsWithSlash = false
        func closeSegment() {
            let segment = current
            current = []
            switch segment {
            case []: endsWithSlash = true  // "//" merges; a final empty segment is a trailing slash
            case [UInt8(ascii: ".")]: endsWithSlash = true
            case [UInt8(ascii: "."), UInt8(ascii: ".")]:
                if !segments.isEmpty { segments.removeLast() }
                endsWithSlash = true
            default:
                segments.append(segment)
                endsWithSlash = false
            }
        }
        var index = 1
        while index < pathEnd {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "/"):
                closeSegment()
            case UInt8(ascii: "\\"):
                return .failure(.backslash)
            case UInt8(ascii: "#"):
                return .failure(.fragment)
            case UInt8(ascii: "%"):
                guard index + 2 < pathEnd, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
                else { return .failure(.invalidPercentEncoding) }
                let value = high << 4 | low
                switch value {
                case 0: return .failure(.encodedNul)
                case UInt8(ascii: "/"), UInt8(ascii: "\\"):
                    guard encodedSlashes == .keep else { return .failure(.encodedSlash) }
                    current += [UInt8(ascii: "%"), hexDigit(high), hexDigit(low)]
                default:
                    if isUnreserved(value) {
                        current.append(value)
                    } else {
                        current += [UInt8(ascii: "%"), hexDigit(high), hexDigit(low)]
                    }
                }
                index += 2
            default:
                current.append(byte)
            }
            index += 1
        }
        // The last segment ("." or ".." at the end leave a trailing slash, as in RFC 3986's examples).
        closeSegment()
        var path: [UInt8] = [UInt8(ascii: "/")]
        for (position, segment) in segments.enumerated() {
            if position > 0 { path.append(UInt8(ascii: "/")) }
            path += segment
        }
        if endsWithSlash && !segments.isEmpty { path.append(UInt8(ascii: "/")) }
        path += bytes[pathEnd...]
        return .success(String(decoding: path, as: UTF8.self))
    }

    /// No `%`, no backslash, no `#`, no empty, `.` or `..` segment: nothing to do (the common case, no allocation).
    static func isAlreadyNormal(_ path: some Sequence<UInt8>) -> Bool {
        var previous: UInt8 = 0
        var segmentLength = 0
        var dots = 0
        for byte in path {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "\\"), UInt8(ascii: "#"): return false
            case UInt8(ascii: "/"):
                if previous == UInt8(ascii: "/") { return false }
                if segmentLength > 0 && segmentLength == dots && dots <= 2 { return false }
                segmentLength = 0
                dots = 0
            case UInt8(ascii: "."):
                segmentLength += 1
                dots += 1
            default:
                segmentLength += 1
            }
            previous = byte
        }
        return !(segmentLength > 0 && segmentLength == dots && dots <= 2)
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// The value of one hex digit (either case).
    public static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    static func hexDigit(_ value: UInt8) -> UInt8 { value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "A") + value - 10 }
}
