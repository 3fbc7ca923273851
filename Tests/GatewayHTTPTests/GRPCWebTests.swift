import GatewayHTTP
import NIOCore
import Testing
import TestSupport

/// gRPC-Web's pieces without sockets: content types, the trailer frame, and base64 over a body in parts.
@Suite struct GRPCWebTests {
    // grpc-timeout: 1-8 digits and a unit; anything else is ignored (nil).
    @Test func grpcTimeouts() {
        let parsed = ["1H", "2M", "3S", "250m", "700u", "1500n", "1n", "99999999S"].map(GRPCTimeout.microseconds)
        #expect(parsed == [3_600_000_000, 120_000_000, 3_000_000, 250_000, 700, 2, 1, 99_999_999_000_000])
        let refused = ["", "S", "5", "5s", "-5S", "123456789S", "1.5S", " 5S"].compactMap(GRPCTimeout.microseconds)
        #expect(refused.isEmpty)
    }

    @Test func contentTypes() {
        #expect(GRPCWeb.encoding(contentType: "application/grpc-web")?.encoding == .binary)
        #expect(GRPCWeb.encoding(contentType: "application/grpc-web+proto")?.suffix == "+proto")
        #expect(GRPCWeb.encoding(contentType: "Application/gRPC-Web-Text+proto; charset=utf-8")?.encoding == .text)
        #expect(GRPCWeb.encoding(contentType: "application/grpc-web-text")?.suffix == "")
        #expect(GRPCWeb.encoding(contentType: "application/grpc") == nil)
        #expect(GRPCWeb.encoding(contentType: "application/grpc-webby") == nil)
        #expect(GRPCWeb.encoding(contentType: "application/json") == nil)
        #expect(GRPCWeb.upstreamContentType(suffix: "+proto") == "application/grpc+proto")
        #expect(GRPCWeb.responseContentType(.text, suffix: "") == "application/grpc-web-text")
    }

    // 0x80, the block's length in 4 bytes (big-endian), then `name:value\r\n` lines with lower-case names.
    @Test func trailerFrame() {
        let frame = GRPCWeb.trailerFrame(HeaderList([("Grpc-Status", "0"), ("grpc-message", "OK")]))
        let block = Array("grpc-status:0\r\ngrpc-message:OK\r\n".utf8)
        #expect(Array(frame.readableBytesView) == [0x80, 0, 0, 0, UInt8(block.count)] + block)
    }

    // Split anywhere, the parts encode to exactly the one-piece base64 (RFC 4648 test vectors), and decode back.
    @Test func base64InParts() throws {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            for cut in 0...plain.utf8.count {
                var encoder = Base64StreamEncoder()
                let bytes = Array(plain.utf8)
                var out = encoder.encode(ByteBuffer(bytes: bytes[..<cut]))
                var rest = encoder.encode(ByteBuffer(bytes: bytes[cut...]))
                var last = encoder.finish()
                out.writeBuffer(&rest)
                out.writeBuffer(&last)
                #expect(String(buffer: out) == encoded, "\(plain) cut at \(cut)")
            }
            for cut in 0...encoded.utf8.count {
                var decoder = Base64StreamDecoder()
                let text = Array(encoded.utf8)
                var out = try decoder.decode(ByteBuffer(bytes: text[..<cut]))
                var rest = try decoder.decode(ByteBuffer(bytes: text[cut...]))
                out.writeBuffer(&rest)
                #expect(String(buffer: out) == plain, "\(encoded) cut at \(cut)")
                #expect(decoder.isComplete)
            }
        }
        // Messages padded one by one (as some clients send them) decode as one body.
        var decoder = Base64StreamDecoder()
        #expect(String(buffer: try decoder.decode(ByteBuffer(string: "Zg==Zm8="))) == "ffo")
    }

    @Test func malformedBase64() throws {
        var decoder = Base64StreamDecoder()
        let outside = thrownError { _ = try decoder.decode(ByteBuffer(string: "Zm9v!!!!")) }
        #expect(outside is Base64StreamDecoder.Malformed)
        var padded = Base64StreamDecoder()
        let overPadded = thrownError { _ = try padded.decode(ByteBuffer(string: "Z===")) }
        #expect(overPadded is Base64StreamDecoder.Malformed)
        var cut = Base64StreamDecoder()
        _ = try cut.decode(ByteBuffer(string: "Zm9vY"))
        #expect(!cut.isComplete)
    }
}
