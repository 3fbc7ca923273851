import NIOCore

/// Gathers small writes (a head, a short body, chunk framing) into one buffer until the next flush, so a
/// typical small response leaves as one channel write and one iovec instead of three or four. Large
/// buffers are passed through untouched (after whatever was gathered), so nothing big is copied.
public struct WriteCoalescer: Sendable {
    /// Buffers up to this size are copied into the pending one.
    public static let maxCopyBytes = 4096
    /// Pending data beyond this size is written out even before a flush.
    public static let maxPendingBytes = 16_384

    private var pending: ByteBuffer?

    public init() {}

    public var isEmpty: Bool { pending == nil }

    /// Adds `buffer`; calls `write` for anything that must go out now, in order.
    public mutating func add(_ buffer: ByteBuffer, write: (ByteBuffer) -> Void) {
        guard buffer.readableBytes <= Self.maxCopyBytes else {
            drain(write: write)
            write(buffer)
            return
        }
        if pending == nil {
            pending = buffer
        } else {
            pending!.writeImmutableBuffer(buffer)
        }
        if pending!.readableBytes >= Self.maxPendingBytes { drain(write: write) }
    }

    /// Hands over what is pending (call before flushing).
    public mutating func drain(write: (ByteBuffer) -> Void) {
        if let pending {
            self.pending = nil
            write(pending)
        }
    }
}
