import GatewayHTTP
import NIOCore

/// A complete response the gateway produces itself (errors, redirects): small, so held whole.
public struct GatewayResponse: Sendable {
    public var head: ResponseHead
    public var body: ByteBuffer?
    /// The error code of a JSON error response (for the access log's `error_code`).
    public var errorCode: String?

    public init(head: ResponseHead, body: ByteBuffer?) {
        self.head = head
        self.body = body
    }

    public init(status: Int, headers: HeaderList = HeaderList(), body: ByteBuffer? = nil) {
        self.head = ResponseHead(status: status, headers: headers)
        self.body = body
    }

    /// The JSON error body every gateway error uses:
    /// `{"error":{"code":"ROUTE_NOT_FOUND","message":"...","request_id":"..."}}`.
    public static func error(_ error: GatewayError, requestID: String) -> GatewayResponse {
        var response = Self.error(status: error.status, code: error.code, message: error.message, requestID: requestID)
        if !error.allowedMethods.isEmpty { response.head.headers.add(name: "allow", value: error.allowedMethods.joined(separator: ", ")) }
        if let retryAfter = error.retryAfterSeconds { response.head.headers.add(name: "retry-after", value: String(retryAfter)) }
        for challenge in error.challenges { response.head.headers.add(name: "www-authenticate", value: challenge) }
        if error.closesConnection { response.head.headers.add(name: "connection", value: "close") }
        return response
    }

    /// The same JSON shape for an error an operator configured (a route's `respond`).
    public static func error(status: Int, code: String, message: String, requestID: String) -> GatewayResponse {
        var json = #"{"error":{"code":"#
        JSONText.appendQuoted(code, to: &json)
        json += #","message":"#
        JSONText.appendQuoted(message, to: &json)
        json += #","request_id":"#
        JSONText.appendQuoted(requestID, to: &json)
        json += "}}\n"
        var headers = HeaderList()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(json.utf8.count))
        var response = GatewayResponse(status: status, headers: headers, body: ByteBuffer(string: json))
        response.errorCode = code
        return response
    }
}

/// Minimal JSON string writing for the hot paths (error bodies, log lines) without Foundation's encoder.
public enum JSONText {
    public static func appendQuoted(_ text: String, to output: inout String) {
        output.append("\"")
        var needsEscaping = false
        for byte in text.utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
            needsEscaping = true
            break
        }
        if !needsEscaping {
            output.append(text)
        } else {
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": output.append("\\\"")
                case "\\": output.append("\\\\")
                case "\n": output.append("\\n")
                case "\r": output.append("\\r")
                case "\t": output.append("\\t")
                case _ where scalar.value < 0x20:
                    let hex = String(scalar.value, radix: 16)
                    output.append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                default:
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output.append("\"")
    }

    public static func quoted(_ text: String) -> String {
        var output = ""
        appendQuoted(text, to: &output)
        return output
    }
}
