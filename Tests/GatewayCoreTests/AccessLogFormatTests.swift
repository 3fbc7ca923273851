@testable import GatewayFilters
import GatewayCore
import GatewayHTTP
import NIOEmbedded
import Testing

/// `access_log_format: "combined"`: NGINX's line, field by field, with values that cannot break out of their fields.
@Suite struct AccessLogFormatTests {
    static func context(consumer: String? = nil, referer: String? = nil, userAgent: String? = "curl/8.5.0") -> RequestContext {
        var context = RequestContext(
            connection: ConnectionInfo(listener: "l", peer: nil, isTLS: false, peerIsTrustedProxy: false), clientIP: "192.0.2.7",
            method: .GET, uri: "/orders/7?token=secret", startedAt: .now(), eventLoop: EmbeddedEventLoop())
        context.requestID = "4bf92f35"
        context.consumer = consumer
        context.userAgent = userAgent
        context.version = .http1_1
        if let referer { context.loggedHeaders = [("header_referer", referer)] }
        return context
    }

    static let outcome = RequestOutcome(
        status: 200, bytesIn: 0, bytesOut: 467, upstreamTarget: "127.0.0.1:9001", durationNanos: 1_000_000, errorCode: nil, completed: true)

    @Test func combinedLine() {
        let seconds = 1_796_621_253  // 2026-12-07 05:27:33 UTC
        let line = AccessLogFilter.combinedLine(
            context: Self.context(consumer: "alice", referer: "https://app.example/list?session=abc"), outcome: Self.outcome, path: "/orders/7",
            seconds: seconds)
        #expect(line == #"192.0.2.7 - alice [07/Dec/2026:05:27:33 +0000] "GET /orders/7 HTTP/1.1" 200 467 "https://app.example/list" "curl/8.5.0" "4bf92f35""#)
        let anonymous = AccessLogFilter.combinedLine(context: Self.context(userAgent: nil), outcome: Self.outcome, path: "/", seconds: 0)
        #expect(anonymous == #"192.0.2.7 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 200 467 "-" "-" "4bf92f35""#)
    }

    // Quotes, backslashes, control and non-ASCII bytes are escaped as NGINX does (\xHH): a user agent cannot end its
    // field early or start a forged line.
    @Test func valuesStayInTheirFields() {
        let hostile = Self.context(userAgent: "x\" 500 \"\n127.0.0.1 - admin \\ é")
        let line = AccessLogFilter.combinedLine(context: hostile, outcome: Self.outcome, path: "/", seconds: 0)
        #expect(line.hasSuffix(#""x\x22 500 \x22\x0A127.0.0.1 - admin \x5C \xC3\xA9" "4bf92f35""#), "\(line)")
        #expect(!line.contains("\n"))
    }
}
