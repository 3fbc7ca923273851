@testable import GatewayHTTP
import NIOCore
import Testing
import TestSupport

/// The zstd encoder, decoded by libzstd's own decoder.
@Suite struct ZstdEncoderTests {
    // Each part is flushed: what has left the encoder decodes to every part given so far, before the end.
    @Test func partsAreFlushedAsTheyCome() throws {
        let encoder = try #require(ZstdEncoder(level: 3))
        var sent: [UInt8] = []
        sent += Array(buffer: encoder.compress(ByteBuffer(string: "chunk 0\n")))
        let first = try #require(Unzstd.decode(sent))
        #expect(String(decoding: first.data, as: UTF8.self) == "chunk 0\n")
        #expect(!first.complete)
        sent += Array(buffer: encoder.compress(ByteBuffer(string: "chunk 1\n")))
        sent += Array(buffer: encoder.finish())
        let whole = try #require(Unzstd.decode(sent))
        #expect(String(decoding: whole.data, as: UTF8.self) == "chunk 0\nchunk 1\n")
        #expect(whole.complete)
    }

    // A whole body at once is smaller than gzip's at the default levels, and a finished frame.
    @Test func wholeBodies() throws {
        let json = "[" + (0..<2_000).map { #"{"id":\#($0),"name":"item","tags":["a","b"]}"# }.joined(separator: ",") + "]"
        let zstd = try #require(ZstdEncoder(level: 3, expectedBytes: json.utf8.count))
        let compressed = Array(buffer: zstd.compressAll(ByteBuffer(string: json)))
        let gzip = try #require(GzipEncoder(level: 5, expectedBytes: json.utf8.count))
        let gzipped = Array(buffer: gzip.compressAll(ByteBuffer(string: json)))
        #expect(compressed.count < gzipped.count, "zstd \(compressed.count) bytes, gzip \(gzipped.count)")
        let decoded = try #require(Unzstd.decode(compressed))
        #expect(decoded.complete && String(decoding: decoded.data, as: UTF8.self) == json)
    }

    // A body larger than announced (a wrong Content-Length) still decodes whole; one shorter ends cleanly too.
    @Test func otherThanAnnounced() throws {
        let encoder = try #require(ZstdEncoder(level: 3, expectedBytes: 100))
        var sent: [UInt8] = []
        let part = String(repeating: "abcdefghij", count: 1_000)
        for _ in 0..<20 { sent += Array(buffer: encoder.compress(ByteBuffer(string: part))) }
        sent += Array(buffer: encoder.finish())
        let decoded = try #require(Unzstd.decode(sent))
        #expect(decoded.complete && decoded.data.count == 200_000)

        let short = try #require(ZstdEncoder(level: 3, expectedBytes: 1_000_000))
        let ended = Array(buffer: short.compress(ByteBuffer(string: "only this"))) + Array(buffer: short.finish())
        let shortDecoded = try #require(Unzstd.decode(ended))
        #expect(shortDecoded.complete && String(decoding: shortDecoded.data, as: UTF8.self) == "only this")
    }

    // The window stays within what every HTTP decoder takes (8 MiB, RFC 9659) and shrinks for small bodies.
    @Test func window() {
        #expect(ZstdEncoder.windowLog(for: nil) == 23 && ZstdEncoder.windowLog(for: 1 << 30) == 23)
        #expect(ZstdEncoder.windowLog(for: 100) == 10 && ZstdEncoder.windowLog(for: 5000) == 13)
    }
}
