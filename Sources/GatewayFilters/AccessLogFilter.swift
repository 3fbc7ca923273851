#if canImport(Glibc)
import Glibc
#endif
import GatewayConfig
import GatewayCore
import GatewayHTTP
import Logging
import NIOCore

/// One structured line per request (through swift-log, so the JSON handler renders it). Only the path
/// is logged, not the query string, and of the headers only `User-Agent` (and the Host routing read) and those
/// `logging.access_log_headers` names, never a credential field: credentials cannot leak into the log. The consumer (JWT subject or API-key id) is logged once authentication has
/// established it.
public struct AccessLogFilter: GatewayFilter {
    private let logger: Logger
    /// `logging.access_log_headers`, with the metadata key each is logged under (`header_x_tenant`).
    private let headers: [(name: String, key: String)]
    private let format: LoggingConfig.AccessLogFormat

    public init(logger: Logger, headers: [String] = [], format: LoggingConfig.AccessLogFormat = .json) {
        self.logger = logger
        self.format = format
        // The combined line has its own fields: the Referer is one of them.
        let logged = format == .combined && !headers.contains("referer") ? headers + ["referer"] : headers
        self.headers = logged.map { ($0, "header_" + $0.replacingOccurrences(of: "-", with: "_")) }
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
        if format == .combined {
            return logger.info("\(Self.combinedLine(context: context, outcome: outcome, path: path, seconds: WallClock.coarseSeconds()))")
        }
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
        if let country = context.country { metadata["country"] = .string(country) }
        if let asn = context.asn { metadata["asn"] = .stringConvertible(asn) }
        if let userAgent = context.userAgent { metadata["user_agent"] = .string(userAgent) }
        if let version = context.version { metadata["protocol"] = .string(version.major == 2 ? "HTTP/2" : version.description) }
        if !outcome.completed { metadata["completed"] = .stringConvertible(false) }
        // How long the upstream took to answer (connects, retries and backoff included): duration_ms minus this is
        // the gateway's own share, plus the time the body took to pass.
        if let sent = context.forwardedAt, let answered = context.upstreamAnsweredAt {
            metadata["upstream_ms"] = .stringConvertible(Double((answered - sent).nanoseconds / 1000) / 1000)
        }
        for (key, value) in context.loggedHeaders ?? [] { metadata[key] = .string(value) }
        logger.info("request", metadata: metadata)
    }
}

extension AccessLogFilter {
    /// NGINX's `combined` line, which log tools (GoAccess, fail2ban, AWStats) read, with the request id after it
    /// as NGINX users add `"$request_id"`:
    /// `192.0.2.7 - alice [07/Dec/2026:05:27:33 +0000] "GET /orders/7 HTTP/1.1" 200 467 "https://app.example/" "curl/8.5.0" "4bf9..."`.
    /// As in the JSON lines, the request's query is left out (it may carry a token), and so is the Referer's; the
    /// user is the consumer authentication established, else `-`.
    static func combinedLine(context: RequestContext, outcome: RequestOutcome, path: String, seconds: Int) -> String {
        let version = context.version.map { $0.major == 2 ? "HTTP/2.0" : $0.description } ?? "HTTP/1.1"
        let referer = (context.loggedHeaders?.first { $0.name == "header_referer" }?.value).map { value in
            value.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(value[..<$0]) } ?? value
        }
        var line = context.clientIP + " - " + (context.consumer.map(escaped) ?? "-") + " [" + localTime(seconds) + "] \""
        line += context.method.name + " " + escaped(path) + " " + version + "\" " + String(outcome.status) + " " + String(outcome.bytesOut)
        line += " \"" + (referer.map(escaped) ?? "-") + "\" \"" + (context.userAgent.map(escaped) ?? "-") + "\" \"" + context.requestID + "\""
        return line
    }

    /// `$time_local` in UTC: `07/Dec/2026:05:27:33 +0000`.
    static func localTime(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(two(parts.tm_mday))/\(months[Int(parts.tm_mon)])/\(parts.tm_year + 1900):\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) +0000"
    }

    /// As NGINX escapes variables in its log lines: `"`, `\\`, control and non-ASCII bytes as `\xHH`, so a value cannot
    /// end its field or forge a line.
    static func escaped(_ text: String) -> String {
        let needsEscape = { (byte: UInt8) in byte < 0x20 || byte >= 0x7F || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") }
        guard text.utf8.contains(where: needsEscape) else { return text }
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        for byte in text.utf8 {
            if needsEscape(byte) {
                bytes += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
