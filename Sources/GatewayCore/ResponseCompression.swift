import GatewayConfig
import GatewayHTTP
import GatewayPolicy

/// A route's compression settings (its own `compression`, else the top-level one), decided when routes compile.
public struct CompressionPolicy: Sendable {
    let level: Int
    let brotliLevel: Int
    let zstdLevel: Int
    let minBytes: Int
    let types: [String]
    /// The codings offered, preferred first.
    let encodings: [ContentCoding.Coding]

    /// nil when compression is off for the route.
    init?(_ config: CompressionConfig?) {
        guard let config, config.enabled else { return nil }
        (level, brotliLevel, zstdLevel, minBytes, types, encodings) = (
            config.level, config.brotliLevel, config.zstdLevel, config.minBytes, config.contentTypes, config.encodings
        )
    }

    /// The coding for a client with these `Accept-Encoding` fields (nil: it takes none the route offers).
    func coding(accepting fields: [String]) -> ContentCoding.Coding? { ContentCoding.preferred(fields, offered: encodings) }

    /// Looks at a response about to leave. One worth compressing (its type listed, a body, not encoded or a
    /// range already, not too small, no `no-transform`) gets `Vary: Accept-Encoding`, whoever asked; when this
    /// client also accepts a coding the route offers, the head is rewritten for an encoded body (no
    /// Content-Length, a weak ETag, no byte ranges) and the encoder for that body is returned.
    func begin(_ head: inout ResponseHead, method: HTTPMethod, coding: ContentCoding.Coding?) -> (any ResponseBodyEncoder)? {
        guard
            ContentCoding.mayEncode(
                status: head.status, contentEncoding: head.headers.first(name: "content-encoding"),
                hasContentRange: head.headers.contains(name: "content-range"),
                noTransform: head.headers.containsToken("no-transform", inField: "cache-control")),
            let type = head.headers.first(name: "content-type"), ContentCoding.isCompressible(contentType: type, types: types)
        else { return nil }
        let length = head.headers.first(name: "content-length").flatMap { Int($0) }
        if let length, length < minBytes { return nil }
        HeaderRules.addVary("accept-encoding", to: &head.headers)
        guard let coding, method != .HEAD else { return nil }
        let encoder: (any ResponseBodyEncoder)?
        switch coding {
        case .gzip: encoder = GzipEncoder(level: level, expectedBytes: length)
        case .br: encoder = BrotliEncoder(quality: brotliLevel, expectedBytes: length)
        case .zstd: encoder = ZstdEncoder(level: zstdLevel, expectedBytes: length)
        }
        guard let encoder else { return nil }
        head.headers.remove(name: "content-length")
        head.headers.remove(name: "accept-ranges")
        head.headers.remove(name: "content-encoding")  // an explicit "identity"
        if let etag = head.headers.first(name: "etag") { head.headers.replaceOrAdd(name: "etag", value: ContentCoding.weakened(etag: etag)) }
        head.headers.add(name: "content-encoding", value: coding.rawValue)
        return encoder
    }
}
