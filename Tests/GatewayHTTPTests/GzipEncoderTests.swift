import GatewayHTTP
import NIOCore
import Testing
import TestSupport

@Suite struct GzipEncoderTests {
    // Each part is flushed: what has left the encoder decodes to every part given so far, before the end.
    @Test func partsAreFlushedAsTheyCome() throws {
        let encoder = try #require(GzipEncoder(level: 5))
        var sent: [UInt8] = []
        sent += Array(buffer: encoder.compress(ByteBuffer(string: "chunk 0\n")))
        let first = try #require(Gunzip.decode(sent))
        #expect(String(decoding: first.data, as: UTF8.self) == "chunk 0\n")
        #expect(!first.complete)
        sent += Array(buffer: encoder.compress(ByteBuffer(string: "chunk 1\n")))
        sent += Array(buffer: encoder.finish())
        let whole = try #require(Gunzip.decode(sent))
        #expect(String(decoding: whole.data, as: UTF8.self) == "chunk 0\nchunk 1\n")
        #expect(whole.complete)
    }

    // A whole body at once; repetitive JSON shrinks a lot, and the result is a finished gzip stream.
    @Test func wholeBodies() throws {
        let json = "[" + (0..<2_000).map { #"{"id":\#($0),"name":"item","tags":["a","b"]}"# }.joined(separator: ",") + "]"
        let encoder = try #require(GzipEncoder(level: 5, expectedBytes: json.utf8.count))
        let compressed = Array(buffer: encoder.compressAll(ByteBuffer(string: json)))
        #expect(compressed.count < json.utf8.count / 10, "\(json.utf8.count) bytes became \(compressed.count)")
        let decoded = try #require(Gunzip.decode(compressed))
        #expect(decoded.complete)
        #expect(String(decoding: decoded.data, as: UTF8.self) == json)
    }

    // The window is sized for the announced length; a body longer than announced still encodes correctly,
    // and so does an empty one.
    @Test func lengthsOtherThanAnnounced() throws {
        let small = try #require(GzipEncoder(level: 9, expectedBytes: 100))
        let body = (0..<50_000).map { String($0 % 97) }.joined(separator: ",")
        var sent = Array(buffer: small.compress(ByteBuffer(string: body)))
        sent += Array(buffer: small.finish())
        let decoded = try #require(Gunzip.decode(sent))
        #expect(String(decoding: decoded.data, as: UTF8.self) == body)
        let empty = try #require(GzipEncoder(level: 1))
        let nothing = try #require(Gunzip.decode(Array(buffer: empty.finish())))
        #expect(nothing.data.isEmpty)
        #expect(nothing.complete)
    }
}
