import CBrotli
import NIOCore

/// What encodes a response body on its way to the client (gzip or br): parts in, encoded bytes out, each part
/// flushed so a streamed response arrives as it comes; `finish` ends the stream.
public protocol ResponseBodyEncoder: AnyObject {
    /// Encodes `input` and flushes: the result decodes to everything given so far.
    func compress(_ input: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer
    /// The end of the encoded stream.
    func finish(allocator: ByteBufferAllocator) -> ByteBuffer
    /// A whole body at once (a response the gateway holds entirely: its own, or a cached one).
    func compressAll(_ input: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer
}

extension ResponseBodyEncoder {
    public func compress(_ input: ByteBuffer) -> ByteBuffer { compress(input, allocator: ByteBufferAllocator()) }
    public func finish() -> ByteBuffer { finish(allocator: ByteBufferAllocator()) }
    public func compressAll(_ input: ByteBuffer) -> ByteBuffer { compressAll(input, allocator: ByteBufferAllocator()) }
}

extension GzipEncoder: ResponseBodyEncoder {}

/// How far a streaming encoder takes what it was given: flushed (everything so far decodes), or the end of the stream.
public enum EncoderStep: Sendable { case flush, finish }

/// An encoder over a C library's streaming call (Brotli, Zstandard): the `ResponseBodyEncoder` calls follow from `encode`.
public protocol StreamingBodyEncoder: ResponseBodyEncoder {
    /// Feeds `input` (empty to end) and writes what comes out to `output`, flushed or finished as `step` says.
    func encode(_ input: UnsafeRawBufferPointer, _ step: EncoderStep, into output: inout ByteBuffer)
}

extension StreamingBodyEncoder {
    public func compress(_ input: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var output = allocator.buffer(capacity: input.readableBytes / 2 + 64)
        input.withUnsafeReadableBytes { encode($0, .flush, into: &output) }
        return output
    }

    public func finish(allocator: ByteBufferAllocator) -> ByteBuffer {
        var output = allocator.buffer(capacity: 16)
        encode(UnsafeRawBufferPointer(start: nil, count: 0), .finish, into: &output)
        return output
    }

    public func compressAll(_ input: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var output = allocator.buffer(capacity: input.readableBytes / 2 + 64)
        input.withUnsafeReadableBytes { encode($0, .finish, into: &output) }
        return output
    }
}

/// A streaming Brotli encoder (RFC 7932, content coding `br`), the way `GzipEncoder` is for gzip: each part is
/// flushed (`BROTLI_OPERATION_FLUSH`); its state is freed with it. Brotli makes text 15-25% smaller than gzip
/// at a similar speed at the middle qualities.
public final class BrotliEncoder {
    private let state: OpaquePointer

    /// - Parameters:
    ///   - quality: 0 (fastest) to 11 (smallest); 4-5 suit responses compressed as they are sent.
    ///   - expectedBytes: the body's length when known: the window follows it (smaller state for small bodies).
    public init?(quality: Int, expectedBytes: Int? = nil) {
        guard let state = BrotliEncoderCreateInstance(nil, nil, nil) else { return nil }
        self.state = state
        BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, UInt32(quality))
        BrotliEncoderSetParameter(state, BROTLI_PARAM_LGWIN, UInt32(Self.windowBits(for: expectedBytes)))
        if let expectedBytes { BrotliEncoderSetParameter(state, BROTLI_PARAM_SIZE_HINT, UInt32(clamping: expectedBytes)) }
    }

    deinit { BrotliEncoderDestroyInstance(state) }

    /// 10-22: the smallest window that holds the whole body (Brotli's minimum is 10, its default 22).
    static func windowBits(for bytes: Int?) -> Int {
        guard let bytes else { return 22 }
        var bits = 10
        while bits < 22 && (1 << bits) < bytes { bits += 1 }
        return bits
    }

    private func run(_ input: UnsafeRawBufferPointer, operation: BrotliEncoderOperation, into output: inout ByteBuffer) {
        var availableIn = input.count
        var nextIn = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
        repeat {
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: 1024) { space in
                var availableOut = space.count
                var nextOut: UnsafeMutablePointer<UInt8>? = space.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let ok = BrotliEncoderCompressStream(state, operation, &availableIn, &nextIn, &availableOut, &nextOut, nil)
                // Only a misuse of the state (an operation after FINISH) fails.
                precondition(ok == BROTLI_TRUE, "BrotliEncoderCompressStream failed")
                return space.count - availableOut
            }
        } while availableIn > 0 || BrotliEncoderHasMoreOutput(state) == BROTLI_TRUE
            || (operation == BROTLI_OPERATION_FINISH && BrotliEncoderIsFinished(state) != BROTLI_TRUE)
    }
}

extension BrotliEncoder: StreamingBodyEncoder {
    public func encode(_ input: UnsafeRawBufferPointer, _ step: EncoderStep, into output: inout ByteBuffer) {
        run(input, operation: step == .flush ? BROTLI_OPERATION_FLUSH : BROTLI_OPERATION_FINISH, into: &output)
    }
}
