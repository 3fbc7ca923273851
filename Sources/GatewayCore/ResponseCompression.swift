import GatewayConfig
import GatewayHTTP
import GatewayPolicy

/// A route's gzip settings (its own `compression`, else the top-level one), decided when routes compile.
public struct CompressionPolicy: Sendable {
    let level: Int
    let minBytes: Int
    let types: [String]

    /// nil when compression is off for the route.
    init?(_ config: CompressionConfig?) {
        guard let config, config.enabled else { return nil }
        (level, minBytes, types) = (config.level, config.minBytes, config.contentTypes)
    }

    /// Looks at a response about to leave. One worth compressing (its type listed, a body, not encoded or a
    /// range already, not too small, no `no-transform`) gets `Vary: Accept-Encoding`, whoever asked; when this
    /// client also accepts gzip, the head is rewritten for a gzip body (no Content-Length, a weak ETag, no
    /// byte ranges) and the encoder for that body is returned.
    func begin(_ head: inout ResponseHead, method: HTTPMethod, acceptsGzip: Bool) -> GzipEncoder? {
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
        guard acceptsGzip, method != .HEAD, let encoder = GzipEncoder(level: level, expectedBytes: length) else { return nil }
        head.headers.remove(name: "content-length")
        head.headers.remove(name: "accept-ranges")
        head.headers.remove(name: "content-encoding")  // an explicit "identity"
        if let etag = head.headers.first(name: "etag") { head.headers.replaceOrAdd(name: "etag", value: ContentCoding.weakened(etag: etag)) }
        head.headers.add(name: "content-encoding", value: "gzip")
        return encoder
    }
}
