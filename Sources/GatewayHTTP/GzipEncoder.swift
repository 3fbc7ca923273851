import CZlib
import NIOCore

/// A streaming gzip encoder (zlib's deflate with a gzip wrapper): body parts in, gzip bytes out. Each part
/// is flushed (`Z_SYNC_FLUSH`), so a streamed response reaches the client as it arrives rather than when
/// zlib's window fills. One per compressed response; its zlib state is freed with it.
public final class GzipEncoder {
    /// Heap-allocated: zlib keeps a pointer back to its `z_stream` and checks it on every call.
    private let stream: UnsafeMutablePointer<z_stream>

    /// - Parameters:
    ///   - level: 1 (fastest) to 9 (smallest).
    ///   - expectedBytes: the body's length when known. A small body gets a small window: zlib's state takes
    ///     `2^(windowBits+2) + 2^(memLevel+9)` bytes: 256 KiB at the largest, 8 KiB for a 1 KiB body.
    public init?(level: Int, expectedBytes: Int? = nil) {
        let windowBits = Self.windowBits(for: expectedBytes)
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // windowBits + 16: a gzip header and trailer instead of zlib's.
        let status = deflateInit2_(
            stream, Int32(level), Z_DEFLATED, windowBits + 16, max(1, windowBits - 7), Z_DEFAULT_STRATEGY, zlibVersion(),
            Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deallocate()
            return nil
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    /// 9-15: the smallest window that holds the whole body, so memory follows the response's size.
    static func windowBits(for bytes: Int?) -> Int32 {
        guard let bytes else { return 15 }
        var bits: Int32 = 9
        while bits < 15 && (1 << bits) < bytes { bits += 1 }
        return bits
    }

    /// Compresses `input` and flushes it: the result decodes to everything given so far.
    public func compress(_ input: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var output = allocator.buffer(capacity: input.readableBytes / 2 + 64)
        input.withUnsafeReadableBytes { run($0, flush: Z_SYNC_FLUSH, into: &output) }
        return output
    }

    /// The end of the gzip stream (the last block and the CRC/length trailer).
    public func finish(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var output = allocator.buffer(capacity: 32)
        run(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH, into: &output)
        return output
    }

    /// A whole body at once (a response the gateway holds entirely: its own, or a cached one).
    public func compressAll(_ input: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var output = allocator.buffer(capacity: input.readableBytes / 2 + 64)
        input.withUnsafeReadableBytes { run($0, flush: Z_FINISH, into: &output) }
        return output
    }

    private func run(_ input: UnsafeRawBufferPointer, flush: Int32, into output: inout ByteBuffer) {
        stream.pointee.next_in = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
        stream.pointee.avail_in = UInt32(input.count)
        // Until zlib leaves output space unused: then it has written all it had for this flush.
        var outputFull = true
        while outputFull {
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: 1024) { space in
                stream.pointee.next_out = space.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = UInt32(space.count)
                let status = deflate(stream, flush)
                // Only a broken z_stream makes deflate fail; Z_BUF_ERROR just means nothing was left to do.
                precondition(status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR, "deflate failed: \(status)")
                outputFull = stream.pointee.avail_out == 0
                return space.count - Int(stream.pointee.avail_out)
            }
        }
        stream.pointee.next_in = nil
    }
}
