import GatewayConfig
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1

/// One request forwarded over HTTP/1.1: lease (or open) a connection, send the head and stream the
/// body up, relay the response down, then park the connection for reuse or close it.
///
/// A reused keep-alive connection may have been closed by the upstream just before we used it. When
/// that happens before any response byte and the request has no body, the request is sent again on a
/// fresh connection (as NGINX does); bodies are not replayed because they are streamed, not kept.
final class HTTP1UpstreamCall: UpstreamCall {
    private enum State {
        case notStarted
        /// Waiting for a new connection; body parts are held (the exchange sees `isWritable == false`).
        case connecting
        case active(UpstreamConnection)
        case done
    }

    private let upstream: UpstreamRuntime
    private var head: HTTPRequestHead
    private let framing: RequestBodyFraming
    private let requestID: String
    private var delegate: UpstreamCallDelegate?
    private var state: State = .notStarted
    private var pool: TargetPool?

    private var heldBody: [ByteBuffer] = []
    private var endRequested = false
    private var requestEndSent = false
    private var bodyBytesSent = 0
    private var responseHead: HTTPResponseHead?
    private var responsePaused = false
    private var freshConnectionRetryUsed = false

    init(
        upstream: UpstreamRuntime, head: HTTPRequestHead, framing: RequestBodyFraming, preserveHost: Bool,
        requestID: String, delegate: UpstreamCallDelegate
    ) {
        var head = head
        switch framing {
        case .none: break
        case .contentLength(let length): head.headers.replaceOrAdd(name: "content-length", value: String(length))
        case .streamed: head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
        }
        self.upstream = upstream
        self.head = head
        self.framing = framing
        self.requestID = requestID
        self.delegate = delegate
        self.preserveHost = preserveHost
    }

    private let preserveHost: Bool

    var target: String? { pool?.target.authority }

    var isWritable: Bool {
        guard case .active(let connection) = state else { return false }
        return connection.isWritable
    }

    func start() {
        guard case .notStarted = state else { return }
        let pool = upstream.pickTarget()
        self.pool = pool
        if !preserveHost || !head.headers.contains(name: "host") {
            head.headers.replaceOrAdd(name: "host", value: pool.target.authority)
        }
        if let connection = pool.takeIdle() {
            attach(connection)
        } else {
            connect(pool)
        }
    }

    private func connect(_ pool: TargetPool) {
        state = .connecting
        pool.connect().assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                guard case .connecting = self.state else {
                    connection.close()  // cancelled meanwhile
                    return
                }
                self.attach(connection)
            case .failure(let error):
                guard case .connecting = self.state else { return }
                self.upstream.logger.warning(
                    "upstream connect failed",
                    metadata: [
                        "request_id": "\(self.requestID)", "upstream": "\(self.upstream.config.name)",
                        "target": "\(pool.target.authority)", "error": "\(error)",
                    ])
                self.fail(.upstreamUnavailable)
            }
        }
    }

    private func attach(_ connection: UpstreamConnection) {
        state = .active(connection)
        connection.call = self
        connection.write(.head(head))
        for part in heldBody {
            bodyBytesSent += part.readableBytes
            connection.write(.body(.byteBuffer(part)))
        }
        heldBody.removeAll()
        if endRequested { writeEnd(on: connection) }
        connection.flush()
        if responsePaused { connection.setReadPaused(true) }
        delegate?.upstreamConnected()
        if case .active(let current) = state, current === connection, connection.isWritable {
            delegate?.upstreamWritabilityChanged(isWritable: true)
        }
    }

    private func writeEnd(on connection: UpstreamConnection) {
        connection.write(.end(nil))
        requestEndSent = true
        connection.startReadTimeout(upstream.readTimeout)
    }

    func sendBody(_ buffer: ByteBuffer) {
        switch state {
        case .notStarted, .connecting:
            heldBody.append(buffer)
        case .active(let connection):
            bodyBytesSent += buffer.readableBytes
            connection.write(.body(.byteBuffer(buffer)))
            connection.flush()
        case .done:
            break
        }
    }

    func sendEnd() {
        endRequested = true
        if case .active(let connection) = state {
            writeEnd(on: connection)
            connection.flush()
        }
    }

    func setResponsePaused(_ paused: Bool) {
        responsePaused = paused
        if case .active(let connection) = state { connection.setReadPaused(paused) }
    }

    func cancel() {
        delegate = nil
        switch state {
        case .active(let connection):
            state = .done
            connection.call = nil
            connection.close()
        case .notStarted, .connecting:
            state = .done
        case .done:
            break
        }
        heldBody.removeAll()
    }

    // MARK: Events from the connection

    func received(_ part: HTTPClientResponsePart, from connection: UpstreamConnection) {
        guard case .active(let current) = state, current === connection else { return }
        switch part {
        case .head(let head):
            responseHead = head
            delegate?.upstreamResponseHead(head)
        case .body(let buffer):
            delegate?.upstreamResponseBody(buffer)
        case .end(let trailers):
            finishResponse(on: connection, trailers: trailers)
        }
    }

    private func finishResponse(on connection: UpstreamConnection, trailers: HTTPHeaders?) {
        state = .done
        connection.call = nil
        connection.stopReadTimeout()
        connection.hasServedRequests = true
        // Reuse only a connection whose request and response both completed and that both sides keep alive.
        let reusable = requestEndSent && (responseHead?.isKeepAlive ?? false) && !connection.isClosed
        if reusable {
            connection.setReadPaused(false)
            pool?.park(connection)
        } else {
            connection.close()
        }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamResponseEnd(trailers: trailers)
    }

    func readComplete() {
        delegate?.upstreamReadComplete()
    }

    func writabilityChanged(isWritable: Bool) {
        guard case .active = state else { return }
        delegate?.upstreamWritabilityChanged(isWritable: isWritable)
    }

    func connectionTimedOut() {
        guard case .active(let connection) = state else { return }
        upstream.logger.warning(
            "upstream read timeout",
            metadata: [
                "request_id": "\(requestID)", "upstream": "\(upstream.config.name)",
                "target": "\(connection.pool.target.authority)",
            ])
        connection.call = nil
        connection.close()
        fail(.upstreamTimeout)
    }

    func connectionClosed(_ connection: UpstreamConnection) {
        connectionFailed(connection, error: nil)
    }

    func connectionFailed(_ connection: UpstreamConnection, error: (any Error)?) {
        guard case .active(let current) = state, current === connection else { return }
        connection.call = nil
        connection.close()
        // A stale keep-alive connection: nothing was answered and nothing unrepeatable was sent.
        if responseHead == nil, connection.hasServedRequests, !framing.hasBody, !freshConnectionRetryUsed, let pool {
            freshConnectionRetryUsed = true
            connect(pool)
            return
        }
        upstream.logger.warning(
            responseHead == nil ? "upstream closed before responding" : "upstream closed mid-response",
            metadata: [
                "request_id": "\(requestID)", "upstream": "\(upstream.config.name)",
                "target": "\(connection.pool.target.authority)", "error": "\(error.map { "\($0)" } ?? "connection closed")",
            ])
        fail(.upstreamBrokenResponse)
    }

    private func fail(_ error: GatewayError) {
        state = .done
        heldBody.removeAll()
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(error)
    }
}
