import GatewayHTTP
import NIOCore

/// One gRPC-Web exchange on a `grpc_web` route, translated to gRPC for the upstream and back for the browser
/// (see `GRPCWeb`): the content types, the trailers as the body's last frame, and base64 both ways for
/// `-text`. Loop-bound, owned by the exchange.
final class GRPCWebTranslation {
    let encoding: GRPCWeb.Encoding
    private let suffix: Substring
    private var requestDecoder = Base64StreamDecoder()
    private var responseEncoder = Base64StreamEncoder()
    /// Whether the upstream answered in gRPC (its errors, a 404 page say, pass as they are).
    private(set) var translatesResponse = false
    private var trailers: HeaderList?

    /// nil when the request is not gRPC-Web.
    init?(contentType: String?) {
        guard let contentType, let (encoding, suffix) = GRPCWeb.encoding(contentType: contentType) else { return nil }
        (self.encoding, self.suffix) = (encoding, suffix)
    }

    /// The request head as a gRPC server expects it (TE: trailers is added with the other forwarding fields).
    func translateRequest(_ headers: inout HeaderList) {
        headers.replaceOrAdd(name: "content-type", value: GRPCWeb.upstreamContentType(suffix: suffix))
    }

    /// How the upstream gets the body: a `-text` body shrinks when decoded, so its length is unknown.
    func upstreamFraming(_ framing: BodyFraming) -> BodyFraming {
        encoding == .text && framing != .none ? .chunked : framing
    }

    /// A part of the request body as the upstream gets it; throws on text that is not base64.
    func requestBody(_ buffer: ByteBuffer) throws(Base64StreamDecoder.Malformed) -> ByteBuffer {
        encoding == .text ? try requestDecoder.decode(buffer) : buffer
    }

    /// A `-text` body cut inside a base64 group.
    var requestIsIncomplete: Bool { encoding == .text && !requestDecoder.isComplete }

    /// The response head for the browser: its gRPC-Web content type, and no length (a trailer frame follows).
    func translateResponse(_ head: inout ResponseHead) {
        guard let type = head.headers.first(name: "content-type"), type.lowercased().hasPrefix("application/grpc") else { return }
        translatesResponse = true
        head.headers.replaceOrAdd(name: "content-type", value: GRPCWeb.responseContentType(encoding, suffix: suffix))
        head.headers.remove(name: "content-length")
    }

    func responseBody(_ buffer: ByteBuffer) -> ByteBuffer {
        translatesResponse && encoding == .text ? responseEncoder.encode(buffer) : buffer
    }

    /// Keeps the trailers for the body's last frame; false when the response is not translated (then they go
    /// to the client as trailers).
    func keepTrailers(_ fields: HeaderList) -> Bool {
        guard translatesResponse else { return false }
        trailers = fields
        return true
    }

    /// What ends the body: the trailer frame, and the last base64 group.
    func finishResponse() -> ByteBuffer? {
        guard translatesResponse else { return nil }
        var tail = ByteBuffer()
        if let trailers {
            let frame = GRPCWeb.trailerFrame(trailers)
            var encoded = encoding == .text ? responseEncoder.encode(frame) : frame
            tail.writeBuffer(&encoded)
        }
        if encoding == .text {
            var last = responseEncoder.finish()
            tail.writeBuffer(&last)
        }
        return tail.readableBytes > 0 ? tail : nil
    }
}
