import GatewayPolicy
import Testing

@Suite struct ContentCodingTests {
    // RFC 9110 §12.5.3: gzip (or x-gzip) with q > 0, else a wildcard with q > 0; no field means no coding.
    @Test func acceptEncoding() {
        func gzip(_ fields: [String]) -> Bool { ContentCoding.preferred(fields, offered: [.gzip]) == .gzip }
        #expect(gzip(["gzip, deflate, br"]))
        #expect(gzip(["br;q=1.0, GZIP;q=0.5"]))
        #expect(gzip(["x-gzip"]))
        #expect(gzip(["br", "gzip"]))
        #expect(gzip(["*"]))
        #expect(!gzip([]))
        #expect(!gzip([""]))
        #expect(!gzip(["identity"]))
        #expect(!gzip(["br, deflate"]))
        #expect(!gzip(["gzip;q=0"]))
        #expect(!gzip(["gzip; q=0.000, *"]), "an explicit gzip;q=0 beats the wildcard")
        #expect(!gzip(["*;q=0"]))
    }

    // Between br and gzip: the client's q-values first, then the gateway's order.
    @Test func preferredCoding() {
        let both: [ContentCoding.Coding] = [.br, .gzip]
        #expect(ContentCoding.preferred(["gzip, deflate, br"], offered: both) == .br, "a tie goes to the gateway's first")
        #expect(ContentCoding.preferred(["gzip, deflate, br"], offered: [.gzip, .br]) == .gzip)
        #expect(ContentCoding.preferred(["br;q=0.5, gzip"], offered: both) == .gzip)
        #expect(ContentCoding.preferred(["gzip;q=0.2, *;q=0.8"], offered: both) == .br, "the wildcard stands for br here")
        #expect(ContentCoding.preferred(["br"], offered: [.gzip]) == nil)
        #expect(ContentCoding.preferred(["identity"], offered: both) == nil)
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
