import GatewayCore
import GatewayHTTP

/// W3C Trace Context (https://www.w3.org/TR/trace-context/): a valid `traceparent` from the client is
/// continued, anything else starts a new trace. Either way the upstream gets a `traceparent` with the
/// gateway's own span as parent (the trace id and flags kept), and `tracestate` passes through only with a
/// valid `traceparent` (the spec says to drop it otherwise). The trace id goes into the access log.
///
/// A new trace reuses the request id as its trace id when that is one the gateway generated (same shape),
/// so a request can be found by either.
public struct TraceContextFilter: GatewayFilter {
    public init() {}

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let (incoming, count) = head.headers.firstAndCount(name: "traceparent")
        let parsed = count == 1 ? incoming.flatMap(Self.parse) : nil
        let traceID: String
        let flags: String
        if let parsed {
            traceID = parsed.traceID
            flags = parsed.flags
            context.parentSpanID = parsed.parentID
        } else {
            traceID = Self.isTraceID(context.requestID) ? context.requestID : RequestID.generate()
            flags = "01"
            if head.headers.contains(name: "tracestate") { head.headers.remove(name: "tracestate") }
        }
        if count > 0 { head.headers.remove(name: "traceparent") }
        let spanBits = RequestID.generateSpanBits()
        head.headers.add(name: "traceparent", value: Self.traceparent(traceID: traceID, spanBits: spanBits, flags: flags))
        context.traceID = traceID
        context.spanBits = spanBits
        // The sampled bit is the lowest of the flags byte.
        context.traceSampled = (UInt8(flags, radix: 16) ?? 0) & 1 == 1
        return .proceed
    }

    /// `00-<trace id>-<span id>-<flags>`, written into one allocation (interpolation builds it in pieces).
    static func traceparent(traceID: String, spanBits: UInt64, flags: String) -> String {
        let count = 3 + traceID.utf8.count + 1 + 16 + 1 + flags.utf8.count
        return String(unsafeUninitializedCapacity: count) { buffer in
            var offset = 0
            func append(_ text: String) {
                text.withUTF8Bytes { bytes in
                    UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[offset...])).copyMemory(from: bytes)
                    offset += bytes.count
                }
            }
            append("00-")
            append(traceID)
            append("-")
            RequestID.writeHex(spanBits, to: buffer, at: offset)
            offset += 16
            append("-")
            append(flags)
            return offset
        }
    }

    /// (trace id, parent id, flags) of a valid `traceparent`: version 00 exactly `00-<32 hex>-<16 hex>-<2 hex>`; a later
    /// version may append fields (we read the first four); `ff`, all-zero ids and uppercase hex are invalid.
    static func parse(_ value: String) -> (traceID: String, parentID: String, flags: String)? {
        let bytes = Array(value.utf8)
        guard bytes.count >= 55, isHex(bytes[0..<2]), !(bytes[0] == UInt8(ascii: "f") && bytes[1] == UInt8(ascii: "f")) else { return nil }
        let isVersionZero = bytes[0] == UInt8(ascii: "0") && bytes[1] == UInt8(ascii: "0")
        guard isVersionZero ? bytes.count == 55 : (bytes.count == 55 || bytes[55] == UInt8(ascii: "-")) else { return nil }
        guard bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-") else { return nil }
        let trace = bytes[3..<35]
        let parent = bytes[36..<52]
        let flags = bytes[53..<55]
        guard isHex(trace), isHex(parent), isHex(flags), !allZero(trace), !allZero(parent) else { return nil }
        return (String(decoding: trace, as: UTF8.self), String(decoding: parent, as: UTF8.self), String(decoding: flags, as: UTF8.self))
    }

    static func isTraceID(_ text: String) -> Bool {
        text.withUTF8Bytes { $0.count == 32 && isHex($0) && !allZero($0) }
    }

    private static func isHex(_ bytes: some Sequence<UInt8>) -> Bool {
        for byte in bytes {
            guard (byte &- UInt8(ascii: "0")) < 10 || (byte &- UInt8(ascii: "a")) < 6 else { return false }
        }
        return true
    }

    private static func allZero(_ bytes: some Sequence<UInt8>) -> Bool { bytes.allSatisfy { $0 == UInt8(ascii: "0") } }
}
