import Foundation
import NIOConcurrencyHelpers
import Logging

/// A swift-log handler writing one JSON object per line:
/// `{"time":"2026-11-30T12:00:00.123Z","level":"info","msg":"request","request_id":"...",...}`.
/// Numbers and booleans logged as `.stringConvertible` stay JSON numbers/booleans.
public struct JSONLogHandler: LogHandler {
    /// Where lines go; one lock keeps concurrent lines whole.
    public final class Sink: Sendable {
        private let write: @Sendable (String) -> Void
        private let lock: NIOLock?

        /// Lines handed to `write` one at a time (tests collect them).
        public init(write: @escaping @Sendable (String) -> Void) {
            self.write = write
            self.lock = NIOLock()
        }

        /// Lines queued on a writer thread (the gateway's outputs): logging never blocks an event loop.
        public init(writer: LogWriter) {
            self.write = writer.append
            self.lock = nil
        }

        func emit(_ line: String) {
            if let lock { lock.withLock { write(line) } } else { write(line) }
        }
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let sink: Sink

    public init(label: String, level: Logger.Level = .info, sink: Sink) {
        self.label = label
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = #"{"time":""#
        line += JSONLogHandler.timestamp()
        line += #"","level":""#
        line += event.level.rawValue
        line += #"","msg":"#
        JSONText.appendQuoted(event.message.description, to: &line)
        if label != "gateway" {
            line += #","logger":"#
            JSONText.appendQuoted(label, to: &line)
        }
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for key in merged.keys.sorted(by: JSONLogHandler.fieldOrder) {
            line += ","
            JSONText.appendQuoted(key, to: &line)
            line += ":"
            JSONLogHandler.appendValue(merged[key]!, to: &line)
        }
        line += "}\n"
        sink.emit(line)
    }

    /// request_id first (it is what people grep for), then alphabetical.
    private static func fieldOrder(_ a: String, _ b: String) -> Bool {
        if a == "request_id" { return b != "request_id" }
        if b == "request_id" { return false }
        return a < b
    }

    private static func appendValue(_ value: Logger.Metadata.Value, to line: inout String) {
        switch value {
        case .string(let text):
            JSONText.appendQuoted(text, to: &line)
        case .stringConvertible(let convertible):
            switch convertible {
            case let number as Int: line += String(number)
            case let number as Int64: line += String(number)
            case let number as UInt64: line += String(number)
            case let number as Double where number.isFinite: line += String(number)
            case let flag as Bool: line += flag ? "true" : "false"
            default: JSONText.appendQuoted(convertible.description, to: &line)
            }
        case .array(let values):
            line += "["
            for (index, element) in values.enumerated() {
                if index > 0 { line += "," }
                appendValue(element, to: &line)
            }
            line += "]"
        case .dictionary(let dictionary):
            line += "{"
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { line += "," }
                JSONText.appendQuoted(key, to: &line)
                line += ":"
                appendValue(dictionary[key]!, to: &line)
            }
            line += "}"
        }
    }

    /// RFC 3339 UTC with milliseconds, formatted by hand (no DateFormatter on the hot path).
    static func timestamp() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(spec.tv_nsec / 1_000_000), 3))Z"
    }
}

/// Writes each message as it is, one line each (no time, level or metadata): the access log in NGINX's
/// `combined` format, whose lines the access-log filter composes itself.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let sink: JSONLogHandler.Sink

    public init(level: Logger.Level = .info, sink: JSONLogHandler.Sink) {
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) { sink.emit(event.message.description + "\n") }
}
