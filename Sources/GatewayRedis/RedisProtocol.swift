import CHiredis
import NIOCore

/// A Redis reply, copied out of hiredis' reply object so nothing C-owned outlives the parse.
public enum RedisValue: Sendable, Equatable, CustomStringConvertible {
    case status(String)
    case error(String)
    case integer(Int)
    case bulk([UInt8])
    case array([RedisValue])
    case null

    public var string: String? {
        switch self {
        case .status(let text): return text
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .integer(let value): return String(value)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .status(let text): return "+\(text)"
        case .error(let text): return "-\(text)"
        case .integer(let value): return ":\(value)"
        case .bulk(let bytes): return "$\(String(decoding: bytes, as: UTF8.self))"
        case .array(let values): return "*\(values)"
        case .null: return "(nil)"
        }
    }
}

public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    public static let unavailable = RedisError("no Redis connection is available")
    public static let timeout = RedisError("Redis did not answer in time")
    public static let connectionClosed = RedisError("the Redis connection closed")
}

/// RESP encoding and decoding through hiredis (`redisFormatCommandArgv`, `redisReader*`).
enum RESP {
    /// Encodes one command. hiredis allocates the result; it is copied into a ByteBuffer and freed.
    static func encode(_ arguments: [String], allocator: ByteBufferAllocator) -> ByteBuffer {
        encode(bytes: arguments.map(\.utf8), allocator: allocator)
    }

    /// Binary-safe: arguments are byte sequences (cached response bodies, say).
    static func encode<Bytes: Collection<UInt8>>(bytes arguments: [Bytes], allocator: ByteBufferAllocator) -> ByteBuffer {
        var storage: [UInt8] = []
        var offsets: [Int] = []
        var lengths: [Int] = []
        storage.reserveCapacity(arguments.reduce(0) { $0 + $1.count })
        for argument in arguments {
            offsets.append(storage.count)
            lengths.append(argument.count)
            storage.append(contentsOf: argument)
        }
        if storage.isEmpty { storage.append(0) }  // a valid base address even for empty arguments
        var target: UnsafeMutablePointer<CChar>?
        let length: Int32 = storage.withUnsafeBufferPointer { bytes in
            bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) { base in
                var argv: [UnsafePointer<CChar>?] = offsets.map { UnsafePointer(base + $0) }
                return argv.withUnsafeMutableBufferPointer { argvBuffer in
                    lengths.withUnsafeBufferPointer { lengthBuffer in
                        redisFormatCommandArgv(&target, Int32(arguments.count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
                    }
                }
            }
        }
        defer { if let target { redisFreeCommand(target) } }
        var buffer = allocator.buffer(capacity: Int(max(length, 0)))
        if let target, length > 0 {
            buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
        }
        return buffer
    }

    /// Copies a hiredis reply tree into a `RedisValue`.
    static func value(of reply: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STATUS:
            return .status(string(r.str, r.len))
        case REDIS_REPLY_ERROR:
            return .error(string(r.str, r.len))
        case REDIS_REPLY_INTEGER:
            return .integer(Int(r.integer))
        case REDIS_REPLY_STRING:
            guard let pointer = r.str else { return .bulk([]) }
            return .bulk(Array(UnsafeRawBufferPointer(start: pointer, count: r.len)))
        case REDIS_REPLY_ARRAY:
            var values: [RedisValue] = []
            values.reserveCapacity(r.elements)
            for index in 0..<r.elements {
                if let element = r.element[index] { values.append(value(of: element)) } else { values.append(.null) }
            }
            return .array(values)
        default:
            return .null
        }
    }

    private static func string(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> String {
        guard let pointer else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }
}

/// An incremental reply parser around a hiredis `redisReader` (which copies what it is fed).
final class RedisReplyParser {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        reader = redisReaderCreate()
    }

    deinit {
        redisReaderFree(reader)
    }

    func feed(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            _ = redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
        }
    }

    /// The next complete reply, nil if more bytes are needed; throws on a protocol error.
    func next() throws(RedisError) -> RedisValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            let message = withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw RedisError("invalid reply from Redis: \(message)")
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RESP.value(of: raw.assumingMemoryBound(to: redisReply.self))
    }
}
