import GatewayCore
import GatewayHTTP
import Logging

/// One structured line per request (through swift-log, so the JSON handler renders it). Only the path
/// is logged, not the query string, and of the headers only `User-Agent` (and the Host routing read) and those
/// `logging.access_log_headers` names, never a credential field: credentials cannot leak into the log. The consumer (JWT subject or API-key id) is logged once authentication has
/// established it.
public struct AccessLogFilter: GatewayFilter {
    private let logger: Logger
    /// `logging.access_log_headers`, with the metadata key each is logged under (`header_x_tenant`).
    private let headers: [(name: String, key: String)]

    public init(logger: Logger, headers: [String] = []) {
        self.logger = logger
        self.headers = headers.map { ($0, "header_" + $0.replacingOccurrences(of: "-", with: "_")) }
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        context.userAgent = head.headers.first(name: "user-agent")
        context.version = head.version
        if !headers.isEmpty {
            // Read as the client sent them, before any filter adds or removes fields; repeated fields joined.
            context.loggedHeaders = headers.compactMap { header in
                let values = head.headers.values(name: header.name)
                return values.isEmpty ? nil : (header.key, values.joined(separator: ", "))
            }
        }
        return .proceed
    }

    public func onComplete(context: RequestContext, outcome: RequestOutcome) {
        switch context.route?.accessLog ?? .all {
        case .all: break
        case .errors: guard outcome.status >= 400 || !outcome.completed else { return }
        case .off: return
        case .sampled(let share): guard outcome.status >= 400 || !outcome.completed || Chance.happens(share) else { return }
        }
        let uri = context.uri
        let path = uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(uri[..<$0]) } ?? uri
        var metadata: Logger.Metadata = [
            "request_id": .string(context.requestID),
            "method": .string(context.method.name),
            "path": .string(path),
            "route": .string(context.route?.name ?? "-"),
            "upstream": .string(outcome.upstreamTarget ?? "-"),
            "status": .stringConvertible(outcome.status),
            "duration_ms": .stringConvertible(Double(outcome.durationNanos / 1000) / 1000),
            "bytes_in": .stringConvertible(outcome.bytesIn),
            "bytes_out": .stringConvertible(outcome.bytesOut),
            "client_ip": .string(context.clientIP),
            "listener": .string(context.connection.listener),
        ]
        if let code = outcome.errorCode { metadata["error_code"] = .string(code) }
        if let traceID = context.traceID { metadata["trace_id"] = .string(traceID) }
        if let consumer = context.consumer { metadata["consumer"] = .string(consumer) }  // the key id, never the key
        if let host = context.host { metadata["host"] = .string(host) }
        if let userAgent = context.userAgent { metadata["user_agent"] = .string(userAgent) }
        if let version = context.version { metadata["protocol"] = .string(version.major == 2 ? "HTTP/2" : version.description) }
        if !outcome.completed { metadata["completed"] = .stringConvertible(false) }
        for (key, value) in context.loggedHeaders ?? [] { metadata[key] = .string(value) }
        logger.info("request", metadata: metadata)
    }
}
