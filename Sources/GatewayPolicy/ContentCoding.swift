/// The rules for compressing a response (zstd, br and gzip, RFC 9110 §8.4 and §12.5.3), on header values only.
public enum ContentCoding {
    /// The content codings the gateway can apply to responses.
    public enum Coding: String, Sendable, CaseIterable {
        case zstd, br, gzip
    }

    /// The coding to use for a client with these `Accept-Encoding` fields, among `offered` (the gateway's order
    /// of preference): the one with the highest q-value, ties going to the earlier in `offered`; nil when the
    /// client accepts none of them (RFC 9110 §12.5.3: `*` stands for codings not named, q=0 refuses; no field, or
    /// an empty one, means the client wants no coding from us).
    public static func preferred(_ fields: [String], offered: [Coding]) -> Coding? {
        var named: [String: Double] = [:]
        var wildcard: Double?
        for field in fields {
            for item in field.split(separator: ",") {
                let parts = item.split(separator: ";")
                guard let name = parts.first?.trimmingASCIISpaces().lowercased(), !name.isEmpty else { continue }
                var quality = 1.0
                for parameter in parts.dropFirst() {
                    let pair = parameter.split(separator: "=", maxSplits: 1)
                    if pair.count == 2, pair[0].trimmingASCIISpaces().lowercased() == "q" {
                        quality = Double(pair[1].trimmingASCIISpaces()) ?? 0
                    }
                }
                let key = name == "x-gzip" ? "gzip" : name
                if key == "*" { wildcard = quality } else { named[key] = max(named[key] ?? 0, quality) }
            }
        }
        var best: (coding: Coding, quality: Double)?
        for coding in offered {
            let quality = named[coding.rawValue] ?? wildcard ?? 0
            if quality > 0, quality > (best?.quality ?? 0) { best = (coding, quality) }
        }
        return best?.coding
    }

    /// Media types worth compressing when the configuration names none: text formats and the structured
    /// `+json`/`+xml` types. Not `text/event-stream` (clients and proxies may hold back events), and nothing
    /// already compressed (images, video, archives).
    public static let defaultTypes = [
        "text/html", "text/plain", "text/css", "text/csv", "text/xml", "text/javascript", "text/markdown",
        "application/json", "application/javascript", "application/xml", "application/x-ndjson", "image/svg+xml",
        "+json", "+xml",
    ]

    /// Whether `contentType` (parameters such as `charset` ignored) is one of `types`: exact media types,
    /// `type/*` for a whole type, or `+suffix` for structured syntax suffixes (`+json` takes `application/problem+json`).
    public static func isCompressible(contentType: String, types: [String]) -> Bool { MediaType.matches(contentType, types) }

    /// Whether a response may be compressed at all, whatever its type: it has a body, is not a range, is not
    /// encoded already, and does not forbid transformation (`Cache-Control: no-transform`).
    public static func mayEncode(status: Int, contentEncoding: String?, hasContentRange: Bool, noTransform: Bool) -> Bool {
        if status < 200 || status == 204 || status == 206 || status == 304 { return false }
        if let contentEncoding, contentEncoding.trimmingASCIISpaces().lowercased() != "identity" { return false }
        return !hasContentRange && !noTransform
    }

    /// A strong validator stays strong only for the exact bytes: the compressed body gets the weak form.
    public static func weakened(etag: String) -> String {
        etag.hasPrefix("W/") ? etag : "W/" + etag
    }
}
