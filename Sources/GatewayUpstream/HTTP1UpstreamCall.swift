import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore

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
    private var head: RequestHead
    private let framing: BodyFraming
    private let preserveHost: Bool
    private let requestID: String
    private var delegate: UpstreamCallDelegate?
    private var state: State = .notStarted
    private var pool: TargetPool?

    private var heldBody: [ByteBuffer] = []
    private var endRequested = false
    private var requestEndSent = false
    private var responseStarted = false
    private var responseKeepAlive = false
    private var responsePaused = false
    private var freshConnectionRetryUsed = false

    init(
        upstream: UpstreamRuntime, head: RequestHead, framing: BodyFraming, preserveHost: Bool, requestID: String,
        delegate: UpstreamCallDelegate
    ) {
        var head = head
        switch framing {
        case .none, .untilClose: break
        case .length(let length): head.headers.add(name: "content-length", value: String(length))
        case .chunked: head.headers.add(name: "transfer-encoding", value: "chunked")
        }
        self.upstream = upstream
        self.head = head
        self.framing = framing
        self.preserveHost = preserveHost
        self.requestID = requestID
        self.delegate = delegate
    }

    var target: String? { pool?.authority }

    var isWritable: Bool {
        guard case .active(let connection) = state else { return false }
        return connection.isWritable
    }

    func start() {
        guard case .notStarted = state else { return }
        let pool = upstream.pickTarget()
        self.pool = pool
        if !preserveHost || !head.headers.contains(name: "host") {
            head.headers.replaceOrAdd(name: "host", value: pool.authority)
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
                        "target": "\(pool.authority)", "error": "\(error)",
                    ])
                self.fail(.upstreamUnavailable)
            }
        }
    }

    private func attach(_ connection: UpstreamConnection) {
        state = .active(connection)
        connection.call = self
        connection.writeHead(head)
        for part in heldBody { writeBody(part, on: connection) }
        heldBody.removeAll()
        if endRequested { writeEnd(on: connection) }
        connection.flush()
        if responsePaused { connection.setReadPaused(true) }
        delegate?.upstreamConnected()
        if case .active(let current) = state, current === connection, connection.isWritable {
            delegate?.upstreamWritabilityChanged(isWritable: true)
        }
    }

    private func writeBody(_ buffer: ByteBuffer, on connection: UpstreamConnection) {
        guard buffer.readableBytes > 0 else { return }
        if framing == .chunked {
            connection.write(HTTP1Writer.chunkHeader(size: buffer.readableBytes, allocator: connection.allocator))
            connection.write(buffer)
            connection.write(HTTP1Writer.crlf)
        } else {
            connection.write(buffer)
        }
    }

    private func writeEnd(on connection: UpstreamConnection) {
        if framing == .chunked { connection.write(HTTP1Writer.lastChunk) }
        requestEndSent = true
        connection.startReadTimeout(upstream.readTimeout)
    }

    func sendBody(_ buffer: ByteBuffer) {
        switch state {
        case .notStarted, .connecting:
            heldBody.append(buffer)
        case .active(let connection):
            writeBody(buffer, on: connection)
            connection.flush()
        case .done:
            break
        }
    }

    func sendEnd() {
        guard !endRequested else { return }
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
        if case .active(let connection) = state {
            connection.call = nil
            connection.close()
        }
        state = .done
        heldBody.removeAll()
    }

    // MARK: Events from the connection

    func received(_ response: ParsedResponse, from connection: UpstreamConnection) {
        guard case .active(let current) = state, current === connection else { return }
        responseStarted = true
        responseKeepAlive = response.keepAlive
        var head = response.head
        // The body is re-framed downstream; a Content-Length that does not describe it must not pass.
        if case .length = response.framing {} else if response.framing != .none { head.headers.remove(name: "content-length") }
        delegate?.upstreamResponseHead(head)
    }

    func receivedBody(_ buffer: ByteBuffer, from connection: UpstreamConnection) {
        guard case .active(let current) = state, current === connection else { return }
        delegate?.upstreamResponseBody(buffer)
    }

    func receivedEnd(from connection: UpstreamConnection) {
        guard case .active(let current) = state, current === connection else { return }
        state = .done
        connection.call = nil
        connection.stopReadTimeout()
        connection.hasServedRequests = true
        // Reuse only a connection whose request and response both completed and that both sides keep alive.
        if requestEndSent && responseKeepAlive && !connection.isClosed {
            connection.setReadPaused(false)
            pool?.park(connection)
        } else {
            connection.close()
        }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamResponseEnd()
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
            metadata: ["request_id": "\(requestID)", "upstream": "\(upstream.config.name)", "target": "\(connection.pool.authority)"])
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
        if !responseStarted, connection.hasServedRequests, framing == .none, !freshConnectionRetryUsed, let pool {
            freshConnectionRetryUsed = true
            requestEndSent = false
            connect(pool)
            return
        }
        upstream.logger.warning(
            responseStarted ? "upstream closed mid-response" : "upstream closed before responding",
            metadata: [
                "request_id": "\(requestID)", "upstream": "\(upstream.config.name)", "target": "\(connection.pool.authority)",
                "error": "\(error.map { "\($0)" } ?? "connection closed")",
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
