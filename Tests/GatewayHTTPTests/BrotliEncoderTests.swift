import GatewayHTTP
import NIOCore
import Testing
import TestSupport

/// The br encoder, decoded by libbrotli's own decoder.
@Suite struct BrotliEncoderTests {
    // Each part is flushed: what has left the encoder decodes to every part given so far, before the end.
    @Test func partsAreFlushedAsTheyCome() throws {
        let encoder = try #require(BrotliEncoder(quality: 4))
        var sent: [UInt8] = []
        sent += Array(buffer: encoder.compress(ByteBuffer(string: "chunk 0\n")))
        let first = try #require(Unbrotli.decode(sent))
        #expect(String(decoding: first.data, as: UTF8.self) == "chunk 0\n")
        #expect(!first.complete)
        sent += Array(buffer: encoder.compress(ByteBuffer(string: "chunk 1\n")))
        sent += Array(buffer: encoder.finish())
        let whole = try #require(Unbrotli.decode(sent))
        #expect(String(decoding: whole.data, as: UTF8.self) == "chunk 0\nchunk 1\n")
        #expect(whole.complete)
    }

    // A whole body at once is smaller than gzip's at the middle levels, and a finished stream.
    @Test func wholeBodies() throws {
        let json = "[" + (0..<2_000).map { #"{"id":\#($0),"name":"item","tags":["a","b"]}"# }.joined(separator: ",") + "]"
        let brotli = try #require(BrotliEncoder(quality: 4, expectedBytes: json.utf8.count))
        let compressed = Array(buffer: brotli.compressAll(ByteBuffer(string: json)))
        let gzip = try #require(GzipEncoder(level: 5, expectedBytes: json.utf8.count))
        let gzipped = Array(buffer: gzip.compressAll(ByteBuffer(string: json)))
        #expect(compressed.count < gzipped.count, "br \(compressed.count) bytes, gzip \(gzipped.count)")
        let decoded = try #require(Unbrotli.decode(compressed))
        #expect(decoded.complete)
        #expect(String(decoding: decoded.data, as: UTF8.self) == json)
    }

    // A body larger than the window announced (a wrong Content-Length) still decodes whole.
    @Test func moreThanAnnounced() throws {
        let encoder = try #require(BrotliEncoder(quality: 5, expectedBytes: 100))
        var sent: [UInt8] = []
        let part = String(repeating: "abcdefghij", count: 1_000)
        for _ in 0..<20 { sent += Array(buffer: encoder.compress(ByteBuffer(string: part))) }
        sent += Array(buffer: encoder.finish())
        let decoded = try #require(Unbrotli.decode(sent))
        #expect(decoded.complete)
        #expect(decoded.data.count == 200_000)
    }
}
