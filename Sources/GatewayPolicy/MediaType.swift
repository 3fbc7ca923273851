/// Media types of `Content-Type` values (RFC 9110 §8.3.1), their parameters (`charset`) ignored.
public enum MediaType {
    /// Whether `contentType` is one of `types`: exact media types, `type/*` for a whole type, or `+suffix` for
    /// structured syntax suffixes (`+json` takes `application/problem+json`).
    public static func matches(_ contentType: String, _ types: [String]) -> Bool {
        let mediaType = (contentType.split(separator: ";", maxSplits: 1).first ?? "").trimmingASCIISpaces().lowercased()
        guard let slash = mediaType.firstIndex(of: "/") else { return false }
        for type in types {
            if type.hasPrefix("+") {
                if mediaType.hasSuffix(type) { return true }
            } else if type.hasSuffix("/*") {
                if mediaType[..<slash] == type.dropLast(2) { return true }
            } else if mediaType == type {
                return true
            }
        }
        return false
    }

    /// JSON: `application/json`, or any `+json` type (`application/problem+json`).
    public static func isJSON(_ contentType: String?) -> Bool { contentType.map { matches($0, ["application/json", "+json"]) } ?? false }
}
