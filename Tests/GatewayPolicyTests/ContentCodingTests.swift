import GatewayPolicy
import Testing

@Suite struct ContentCodingTests {
    // RFC 9110 §12.5.3: gzip (or x-gzip) with q > 0, else a wildcard with q > 0; no field means no coding.
    @Test func acceptEncoding() {
        #expect(ContentCoding.acceptsGzip(["gzip, deflate, br"]))
        #expect(ContentCoding.acceptsGzip(["br;q=1.0, GZIP;q=0.5"]))
        #expect(ContentCoding.acceptsGzip(["x-gzip"]))
        #expect(ContentCoding.acceptsGzip(["br", "gzip"]))
        #expect(ContentCoding.acceptsGzip(["*"]))
        #expect(!ContentCoding.acceptsGzip([]))
        #expect(!ContentCoding.acceptsGzip([""]))
        #expect(!ContentCoding.acceptsGzip(["identity"]))
        #expect(!ContentCoding.acceptsGzip(["br, deflate"]))
        #expect(!ContentCoding.acceptsGzip(["gzip;q=0"]))
        #expect(!ContentCoding.acceptsGzip(["gzip; q=0.000, *"]), "an explicit gzip;q=0 beats the wildcard")
        #expect(!ContentCoding.acceptsGzip(["*;q=0"]))
    }

    // Exact media types, whole types and structured suffixes; parameters and case do not matter.
    @Test func compressibleTypes() {
        let defaults = ContentCoding.defaultTypes
        #expect(ContentCoding.isCompressible(contentType: "application/json", types: defaults))
        #expect(ContentCoding.isCompressible(contentType: "Text/HTML; charset=utf-8", types: defaults))
        #expect(ContentCoding.isCompressible(contentType: "application/problem+json", types: defaults))
        #expect(ContentCoding.isCompressible(contentType: "application/atom+xml", types: defaults))
        #expect(!ContentCoding.isCompressible(contentType: "image/png", types: defaults))
        #expect(!ContentCoding.isCompressible(contentType: "text/event-stream", types: defaults))
        #expect(!ContentCoding.isCompressible(contentType: "application/octet-stream", types: defaults))
        #expect(!ContentCoding.isCompressible(contentType: "json", types: defaults))
        #expect(ContentCoding.isCompressible(contentType: "text/event-stream", types: ["text/*"]))
        #expect(!ContentCoding.isCompressible(contentType: "texts/plain", types: ["text/*"]))
    }

    // Only a whole, unencoded body that allows transformation.
    @Test func whatMayBeEncoded() {
        let plain = { (status: Int) in ContentCoding.mayEncode(status: status, contentEncoding: nil, hasContentRange: false, noTransform: false) }
        #expect(plain(200))
        #expect(plain(404))
        #expect(!plain(101))
        #expect(!plain(204))
        #expect(!plain(206))
        #expect(!plain(304))
        #expect(ContentCoding.mayEncode(status: 200, contentEncoding: "identity", hasContentRange: false, noTransform: false))
        #expect(!ContentCoding.mayEncode(status: 200, contentEncoding: "br", hasContentRange: false, noTransform: false))
        #expect(!ContentCoding.mayEncode(status: 200, contentEncoding: nil, hasContentRange: true, noTransform: false))
        #expect(!ContentCoding.mayEncode(status: 200, contentEncoding: nil, hasContentRange: false, noTransform: true))
        #expect(ContentCoding.weakened(etag: #""v1""#) == #"W/"v1""#)
        #expect(ContentCoding.weakened(etag: #"W/"v1""#) == #"W/"v1""#)
    }
}
