import GatewayHTTP
import NIOCore

/// A question the gateway puts to an upstream for itself (an authorization check, a token introspection): one
/// call through the same pools as requests, its answer collected whole (the body at most `maxBodyBytes`), within
/// `timeout`. Lives on the request's event loop; the call keeps it alive until the answer ends or fails, and
/// `completion` runs exactly once, there.
public final class CollectedCall: UpstreamCallDelegate {
    public struct Answer: Sendable {
        public let status: Int
        public let headers: HeaderList
        public let body: ByteBuffer
    }

    /// No usable answer: why (for the log).
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    private let maxBodyBytes: Int
    private var completion: ((Result<Answer, Failure>) -> Void)?
    private var call: UpstreamCall?
    private var timer: Scheduled<Void>?
    private var head: (status: Int, headers: HeaderList)?
    private var body = ByteBuffer()

    public init(maxBodyBytes: Int, completion: @escaping (Result<Answer, Failure>) -> Void) {
        self.maxBodyBytes = maxBodyBytes
        self.completion = completion
    }

    /// Sends the request (`call` was made with this object as its delegate), with `body` if there is one.
    public func start(_ call: UpstreamCall, body requestBody: ByteBuffer? = nil, on eventLoop: EventLoop, timeout: TimeAmount) {
        self.call = call
        // The call's own deadline only stops retries; this one also ends a try that is still waiting.
        timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            timer = nil
            call.cancel()
            finish(.failure(Failure("no answer within \(timeout.nanoseconds / 1_000_000) ms")))
        }
        call.start()
        if let requestBody { call.sendBody(requestBody) }
        call.sendEnd()
    }

    private func finish(_ result: Result<Answer, Failure>) {
        guard let completion else { return }
        self.completion = nil
        timer?.cancel()
        timer = nil
        call = nil
        completion(result)
    }

    // MARK: UpstreamCallDelegate

    public func upstreamConnected() {}
    public func upstreamWritabilityChanged(isWritable: Bool) {}
    public func upstreamReadComplete() {}

    public func upstreamResponseHead(_ head: consuming ResponseHead) {
        self.head = (head.status, head.headers)
    }

    public func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard completion != nil else { return }
        guard body.readableBytes + buffer.readableBytes <= maxBodyBytes else {
            call?.cancel()
            return finish(.failure(Failure("an answer body over \(maxBodyBytes) bytes")))
        }
        var buffer = buffer
        body.writeBuffer(&buffer)
    }

    public func upstreamResponseEnd() {
        guard let head else { return finish(.failure(Failure("no answer"))) }
        finish(.success(Answer(status: head.status, headers: head.headers, body: body)))
    }

    public func upstreamFailed(_ error: GatewayError) { finish(.failure(Failure(error.code))) }
}
