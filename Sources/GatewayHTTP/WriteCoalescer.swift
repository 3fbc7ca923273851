import NIOCore

/// Gathers small writes (a head, a short body, chunk framing) into one buffer until the next flush, so a
/// typical small response leaves as one channel write and one iovec instead of three or four. Large
/// buffers are passed through untouched (after whatever was gathered), so nothing big is copied.
///
/// The gathering buffer comes from the event loop's `WriteScratch` and goes back there once handed to the
/// channel, which usually writes it out at once and lets go: the next connection on that loop to write
/// reuses its storage. Heads are serialised straight into it (`append`), so a keep-alive exchange allocates
/// no buffer for its heads, and an idle connection holds none.
public struct WriteCoalescer {
    /// Buffers up to this size are copied into the pending one.
    public static let maxCopyBytes = 4096
    /// Pending data beyond this size is written out even before a flush.
    public static let maxPendingBytes = 16_384
    /// A drained buffer up to this capacity goes back to the scratch for reuse.
    public static let maxKeptCapacity = 8192

    /// Room for a typical head and a small body.
    static let initialCapacity = 2048
    private static let allocator = ByteBufferAllocator()

    private let scratch: WriteScratch
    /// The gathering buffer while `hasPending`.
    private var buffer = HTTP1Writer.emptyBuffer
    private var hasPending = false

    public init(scratch: WriteScratch = WriteScratch()) { self.scratch = scratch }

    public var isEmpty: Bool { !hasPending }

    /// Adds `bytes`; calls `write` for anything that must go out now, in order.
    public mutating func add(_ bytes: ByteBuffer, write: (ByteBuffer) -> Void) {
        guard bytes.readableBytes <= Self.maxCopyBytes else {
            drain(write: write)
            write(bytes)
            return
        }
        append(write: write) { $0.writeImmutableBuffer(bytes) }
    }

    /// Lets `serialise` write into the pending buffer directly (a head, a chunk header): no buffer of its own.
    public mutating func append(write: (ByteBuffer) -> Void, _ serialise: (inout ByteBuffer) -> Void) {
        if !hasPending {
            // Borrowed from the loop. The channel has written it out and let go by now, unless a write it
            // could not finish still holds it (or another connection has it pending): then `clear` leaves
            // that storage alone and allocates anew.
            swap(&buffer, &scratch.buffer)
            if buffer.capacity == 0 {
                buffer = Self.allocator.buffer(capacity: Self.initialCapacity)
            } else {
                buffer.clear()
            }
            hasPending = true
        }
        serialise(&buffer)
        if buffer.readableBytes >= Self.maxPendingBytes { drain(write: write) }
    }

    /// Hands over what is pending (call before flushing).
    public mutating func drain(write: (ByteBuffer) -> Void) {
        guard hasPending else { return }
        hasPending = false
        write(buffer)
        if buffer.capacity <= Self.maxKeptCapacity { scratch.buffer = buffer }
        buffer = HTTP1Writer.emptyBuffer
    }
}

/// The gathering buffer the connections of one event loop share (see `WriteCoalescer`). Loop-bound.
public final class WriteScratch {
    fileprivate var buffer = HTTP1Writer.emptyBuffer

    public init() {}
}

/// A connection handler's outgoing bytes: small writes gathered by a `WriteCoalescer` and sent with the next
/// flush, which is skipped when nothing was written since the last one (a flush still walks the channel
/// pipeline, and exchanges ask for one at the end of a response and again when a read completes).
///
/// Writes reach the channel while this value is being modified: a write can only make the channel unwritable,
/// which pauses the other side and writes nothing here. A flush can make it writable again, which resumes the
/// other side and may write here at once, so the flush itself is taken out first (`takeFlush`) and sent
/// after: `output.takeFlush().send(on: context)`.
public struct ChannelOutput {
    private var coalescer: WriteCoalescer
    private var unflushed = false

    public init(scratch: WriteScratch) { coalescer = WriteCoalescer(scratch: scratch) }

    /// Queues `buffer`; small ones are gathered until the next flush.
    public mutating func write(_ buffer: ByteBuffer, to context: ChannelHandlerContext) {
        coalescer.add(buffer) { context.write(NIOAny($0), promise: nil) }
        unflushed = true
    }

    /// Queues what `serialise` writes straight into the gathering buffer (heads, chunk framing).
    public mutating func write(to context: ChannelHandlerContext, _ serialise: (inout ByteBuffer) -> Void) {
        coalescer.append(write: { context.write(NIOAny($0), promise: nil) }, serialise)
        unflushed = true
    }

    /// What the next flush sends (nothing when nothing was written since the last one).
    public mutating func takeFlush() -> PendingFlush {
        guard unflushed else { return PendingFlush(needed: false, gathered: nil) }
        unflushed = false
        var gathered: ByteBuffer?
        coalescer.drain { gathered = $0 }
        return PendingFlush(needed: true, gathered: gathered)
    }
}

/// A flush taken out of a `ChannelOutput`.
public struct PendingFlush {
    fileprivate let needed: Bool
    fileprivate let gathered: ByteBuffer?

    public func send(on context: ChannelHandlerContext) {
        guard needed else { return }
        // The gathered bytes go down the pipeline together with the flush (one pass instead of two).
        if let gathered {
            context.writeAndFlush(NIOAny(gathered), promise: nil)
        } else {
            context.flush()
        }
    }
}
