import GatewayConfig
import NIOConcurrencyHelpers
import GatewayHTTP
import GatewayPolicy
import GatewayTLS
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL

/// Active health checks of one upstream: every `interval_ms`, a `GET path` to each target on a fresh
/// connection. A 2xx or 3xx answer within `timeout_ms` is a pass; anything else (refused, reset, timeout,
/// other status) a failure. `HealthCheckState` turns the streaks into healthy/unhealthy; unhealthy targets
/// get no traffic until they pass again. Transitions are logged.
final class HealthChecker: Sendable {
    let upstream: UpstreamShared
    private let settings: HealthCheckConfig
    private let logger: Logger
    private let running = NIOLockedValueBox<(task: RepeatedTask, prober: NIOLoopBound<Prober>)?>(nil)

    init(upstream: UpstreamShared, settings: HealthCheckConfig, logger: Logger) {
        self.upstream = upstream
        self.settings = settings
        self.logger = logger
    }

    func start(on eventLoop: EventLoop) async throws {
        guard running.withLockedValue({ $0 == nil }) else { return }
        let upstream = self.upstream
        let settings = self.settings
        let logger = self.logger
        // Created on its loop: the prober's state is only touched there.
        let prober = try await eventLoop.submit {
            NIOLoopBound(Prober(upstream: upstream, settings: settings, logger: logger, eventLoop: eventLoop), eventLoop: eventLoop)
        }.get()
        let task = eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(Int64(settings.intervalMs))) { _ in
            prober.value.probeAll()
        }
        running.withLockedValue { $0 = (task, prober) }
    }

    func stop() async {
        guard let (task, prober) = running.withLockedValue({ running in defer { running = nil }; return running }) else { return }
        let stopped = prober.eventLoop.makePromise(of: Void.self)
        task.cancel(promise: stopped)
        try? await stopped.futureResult.get()
        try? await prober.eventLoop.submit { prober.value.closeAll() }.get()
    }

    /// The loop-bound part: per-target streaks and the probes in flight.
    final class Prober {
        private let upstream: UpstreamShared
        private let settings: HealthCheckConfig
        private let logger: Logger
        private let eventLoop: EventLoop
        private var states: [HealthCheckState]
        /// Whether a check of each target is under way (a slow target is not checked twice at once).
        private var busy: [Bool]
        private var channels: [Channel?]

        init(upstream: UpstreamShared, settings: HealthCheckConfig, logger: Logger, eventLoop: EventLoop) {
            self.upstream = upstream
            self.settings = settings
            self.logger = logger
            self.eventLoop = eventLoop
            states = upstream.targets.map { _ in
                HealthCheckState(healthyThreshold: settings.healthyThreshold, unhealthyThreshold: settings.unhealthyThreshold)
            }
            busy = Array(repeating: false, count: upstream.targets.count)
            channels = Array(repeating: nil, count: upstream.targets.count)
        }

        func probeAll() {
            for index in upstream.targets.indices where !busy[index] { probe(index) }
        }

        func closeAll() {
            for channel in channels { channel?.close(promise: nil) }
        }

        private func probe(_ index: Int) {
            busy[index] = true
            let target = upstream.targets[index]
            let timeout = TimeAmount.milliseconds(Int64(settings.timeoutMs))
            let result = eventLoop.makePromise(of: Int.self)
            let host = settings.host ?? target.authority
            let extra = settings.headers.map { "\($0.name): \($0.value)\r\n" }.joined()
            let request = "GET \(settings.path) HTTP/1.1\r\nHost: \(host)\r\nUser-Agent: gateway-health-check\r\n\(extra)Connection: close\r\n\r\n"
            let http2 = target.target.httpProtocol == .h2
            let tls = upstream.tlsContext(for: target.target)
            let serverName = UpstreamTLS.serverName(for: target.target, settings: upstream.config.tls)
            let path = settings.path
            let grpcService = settings.grpcService
            let extraHeaders = settings.headers
            let bootstrap = ClientBootstrap(group: eventLoop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if http2 {
                            // The same check as one stream of a short-lived HTTP/2 connection.
                            let ready = channel.eventLoop.makePromise(of: NIOLoopBound<HTTP2Connection>.self)
                            try HTTP2Session.configureClient(channel, tls: tls.map { ($0, serverName) }, session: nil, ready: ready)
                            ready.futureResult.flatMap { connection in
                                connection.value.multiplexer.createStreamChannel { stream in
                                    stream.eventLoop.makeCompletedFuture {
                                        if let service = grpcService {
                                            try stream.pipeline.syncOperations.addHandler(
                                                GRPCHealthProbeHandler(
                                                    service: service, target: target.target, host: host, headers: extraHeaders, result: result))
                                        } else {
                                            try stream.pipeline.syncOperations.addHandler(
                                                HTTP2HealthProbeHandler(
                                                    path: path, target: target.target, host: host, headers: extraHeaders, result: result))
                                        }
                                    }
                                }
                            }.whenFailure { result.fail($0) }
                            return
                        }
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHandler(HealthProbeHandler(request: request, result: result))
                    }
                }
            let connected = target.target.socketAddress.map { bootstrap.connect(to: $0) } ?? bootstrap.connect(host: target.target.connectHost, port: target.target.port)
            let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                result.fail(HealthProbeError.timedOut)
            }
            connected.assumeIsolated().whenComplete { outcome in
                switch outcome {
                case .success(let channel):
                    if self.busy[index] { self.channels[index] = channel }  // closed below when the check ends
                    result.futureResult.whenComplete { _ in channel.close(promise: nil) }
                case .failure(let error):
                    result.fail(error)
                }
            }
            result.futureResult.assumeIsolated().whenComplete { outcome in
                timer.cancel()
                self.busy[index] = false
                self.channels[index] = nil
                let passed: Bool
                let detail: String
                switch outcome {
                case .success(let status):
                    passed = self.settings.passes(status)
                    detail = "status \(status)"
                case .failure(let error):
                    passed = false
                    detail = "\(error)"
                }
                self.record(index, passed: passed, detail: detail)
            }
        }

        private func record(_ index: Int, passed: Bool, detail: String) {
            guard let healthy = states[index].record(success: passed) else { return }
            let target = upstream.targets[index]
            target.healthy.store(healthy, ordering: .relaxed)
            if healthy { upstream.joined(target) }
            target.metrics.health(healthy)
            let metadata: Logger.Metadata = [
                "upstream": "\(upstream.config.name)", "target": "\(target.label)", "health": "\(healthy ? "healthy" : "unhealthy")",
                "last_check": "\(detail)",
            ]
            if healthy {
                logger.info("upstream target healthy", metadata: metadata)
            } else {
                logger.warning("upstream target unhealthy", metadata: metadata)
            }
        }
    }
}

enum HealthProbeError: Error, CustomStringConvertible {
    case timedOut
    case closedWithoutAnswer
    /// A gRPC health answer other than SERVING (or a gRPC error instead of an answer).
    case grpc(String)

    var description: String {
        switch self {
        case .timedOut: return "timed out"
        case .closedWithoutAnswer: return "closed without an answer"
        case .grpc(let what): return "gRPC health: \(what)"
        }
    }
}

/// A check's handler: it completes `result` with the answer's status, and fails it when the connection (or stream)
/// ends unanswered or breaks.
protocol HealthProbe: ChannelInboundHandler {
    var result: EventLoopPromise<Int> { get }
}

extension HealthProbe {
    func channelInactive(context: ChannelHandlerContext) {
        result.fail(HealthProbeError.closedWithoutAnswer)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        result.fail(error)
        context.close(promise: nil)
    }
}

/// Sends the check request and completes with the status of the answer.
final class HealthProbeHandler: HealthProbe {
    typealias InboundIn = ByteBuffer

    private let request: String
    let result: EventLoopPromise<Int>
    private var parser = HTTP1HeadParser(maxHeadBytes: 65_536, maxFields: 256)
    private var input = ByteBuffer()

    init(request: String, result: EventLoopPromise<Int>) {
        self.request = request
        self.result = result
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        input.writeBuffer(&bytes)
        do {
            while let response = try parser.parseResponse(&input, requestMethod: .GET) {
                if response.head.status >= 200 {
                    result.succeed(response.head.status)
                    context.close(promise: nil)
                    return
                }
            }
        } catch {
            result.fail(error)
            context.close(promise: nil)
        }
    }
}

/// What the HTTP/2 checks share: the request's fields, sent once the stream is up, and a failure when the stream
/// ends without an answer. Subclasses send the request and read the answer.
class HTTP2ProbeHandler: HealthProbe {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    let fields: HPACKHeaders
    let result: EventLoopPromise<Int>

    init(
        _ method: HTTPMethod, path: String, target: UpstreamTarget, host: String, fields own: [(name: String, value: String)],
        headers extra: [(name: String, value: String)], result: EventLoopPromise<Int>
    ) {
        var headers = HeaderList()
        headers.add(name: "host", value: host)
        headers.add(name: "user-agent", value: "gateway-health-check")
        for field in own + extra { headers.add(name: field.name, value: field.value) }
        fields = HTTP2UpstreamStream.fields(
            of: RequestHead(method: method, target: path, headers: headers), scheme: target.scheme.rawValue, defaultAuthority: target.authority)
        self.result = result
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { send(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context)
        context.fireChannelActive()
    }

    /// Writes the request on the stream.
    func send(_ context: ChannelHandlerContext) {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// The HTTP/2 form of the check: one GET stream; completes with the status of the final answer.
final class HTTP2HealthProbeHandler: HTTP2ProbeHandler {
    init(path: String, target: UpstreamTarget, host: String, headers extra: [(name: String, value: String)], result: EventLoopPromise<Int>) {
        super.init(.GET, path: path, target: target, host: host, fields: [], headers: extra, result: result)
    }

    override func send(_ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: fields, endStream: true))), promise: nil)
    }

    override func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .headers(let headers) = unwrapInboundIn(data), let status = headers.headers.first(name: ":status").flatMap({ Int($0) }),
            status >= 200
        else { return }
        result.succeed(status)
        context.close(promise: nil)
    }
}

/// The gRPC health protocol's check (grpc.health.v1.Health/Check) as one HTTP/2 stream: completes with 200 when
/// the server says SERVING, fails with what it said otherwise (NOT_SERVING, UNKNOWN, a grpc-status such as
/// UNIMPLEMENTED when it has no health service).
final class GRPCHealthProbeHandler: HTTP2ProbeHandler {
    private let message: [UInt8]
    private var received: [UInt8] = []
    private var status = 0

    init(service: String, target: UpstreamTarget, host: String, headers extra: [(name: String, value: String)], result: EventLoopPromise<Int>) {
        message = Self.frame(Self.request(service: service))
        super.init(
            .POST, path: "/grpc.health.v1.Health/Check", target: target, host: host,
            fields: [("content-type", "application/grpc"), ("te", "trailers")], headers: extra, result: result)
    }

    /// HealthCheckRequest { string service = 1; } in protobuf: the field left out when empty.
    static func request(service: String) -> [UInt8] {
        let name = Array(service.utf8)
        guard !name.isEmpty else { return [] }
        var bytes: [UInt8] = [0x0A]
        var length = name.count
        while length >= 0x80 {
            bytes.append(UInt8(length & 0x7F) | 0x80)
            length >>= 7
        }
        bytes.append(UInt8(length))
        return bytes + name
    }

    /// A gRPC message on the wire: uncompressed flag, 4-byte big-endian length, the message.
    static func frame(_ message: [UInt8]) -> [UInt8] {
        let length = UInt32(message.count)
        return [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + message
    }

    /// The ServingStatus of a framed HealthCheckResponse { ServingStatus status = 1; } (0 when absent: UNKNOWN).
    static func servingStatus(_ framed: [UInt8]) -> Int? {
        guard framed.count >= 5, framed[0] == 0 else { return nil }
        var index = 5
        while index < framed.count {
            let key = framed[index]
            index += 1
            guard key & 0x07 == 0, index < framed.count else { return nil }  // varint fields only in this message
            var value = 0
            var shift = 0
            while index < framed.count {
                let byte = framed[index]
                index += 1
                value |= Int(byte & 0x7F) << shift
                shift += 7
                if byte & 0x80 == 0 { break }
            }
            if key >> 3 == 1 { return value }
        }
        return 0
    }

    override func send(_ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.headers(.init(headers: fields))), promise: nil)
        let body = context.channel.allocator.buffer(bytes: message)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(body), endStream: true))), promise: nil)
    }

    override func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if let code = headers.headers.first(name: ":status").flatMap({ Int($0) }) { status = code }
            if let grpcStatus = headers.headers.first(name: "grpc-status") {
                finish(context, grpcStatus: grpcStatus, message: headers.headers.first(name: "grpc-message"))
            }
        case .data(let payload):
            if case .byteBuffer(var buffer) = payload.data, let bytes = buffer.readBytes(length: buffer.readableBytes) { received += bytes }
        default:
            break
        }
    }

    private func finish(_ context: ChannelHandlerContext, grpcStatus: String, message: String?) {
        defer { context.close(promise: nil) }
        guard status == 200 else { return result.succeed(status) }  // not a gRPC answer: judged by its HTTP status
        guard grpcStatus == "0" else { return result.fail(HealthProbeError.grpc("grpc-status \(grpcStatus)\(message.map { " (\($0))" } ?? "")")) }
        switch Self.servingStatus(received) {
        case 1?: result.succeed(200)
        case 2?: result.fail(HealthProbeError.grpc("NOT_SERVING"))
        case 3?: result.fail(HealthProbeError.grpc("SERVICE_UNKNOWN"))
        case let other?: result.fail(HealthProbeError.grpc(other == 0 ? "UNKNOWN" : "status \(other)"))
        case nil: result.fail(HealthProbeError.grpc("unreadable answer"))
        }
    }
}
