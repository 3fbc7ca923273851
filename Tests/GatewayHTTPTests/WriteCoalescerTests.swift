import GatewayHTTP
import NIOCore
import Testing

/// The write coalescer gathers small writes into one buffer that the connections of a loop share; it must
/// never write into storage a channel still holds (a write the socket could not take yet).
@Suite struct WriteCoalescerTests {
    /// Stands in for the channel: keeps what it is given, as NIO does until the socket has taken it.
    final class Sink {
        var written: [ByteBuffer] = []
        func take(_ buffer: ByteBuffer) { written.append(buffer) }
        var strings: [String] { written.map { String(buffer: $0) } }
    }

    static func address(_ buffer: ByteBuffer) -> UInt? {
        buffer.withUnsafeReadableBytes { $0.baseAddress.map { UInt(bitPattern: $0) } }
    }

    @Test func smallWritesLeaveAsOneBufferAndLargeOnesPassThroughInOrder() {
        let sink = Sink()
        var output = WriteCoalescer()
        output.append(write: sink.take) { $0.writeString("HTTP/1.1 200 OK\r\n\r\n") }
        output.add(ByteBuffer(string: "small body"), write: sink.take)
        #expect(sink.written.isEmpty)
        let large = ByteBuffer(repeating: UInt8(ascii: "x"), count: WriteCoalescer.maxCopyBytes + 1)
        output.add(large, write: sink.take)
        output.add(ByteBuffer(string: "tail"), write: sink.take)
        output.drain(write: sink.take)
        #expect(sink.written.count == 3)
        #expect(sink.strings[0] == "HTTP/1.1 200 OK\r\n\r\nsmall body")
        #expect(sink.written[1] == large)
        #expect(sink.strings[2] == "tail")
        #expect(output.isEmpty)
    }

    @Test func pendingBytesPastTheLimitGoOutBeforeTheFlush() {
        let sink = Sink()
        var output = WriteCoalescer()
        let piece = ByteBuffer(repeating: UInt8(ascii: "a"), count: 4096)
        for _ in 0..<4 { output.add(piece, write: sink.take) }
        #expect(sink.written.map(\.readableBytes) == [WriteCoalescer.maxPendingBytes])
        #expect(output.isEmpty)
    }

    @Test func storageIsReusedOnceTheChannelLetsGo() throws {
        let scratch = WriteScratch()
        var output = WriteCoalescer(scratch: scratch)
        var sink = Sink()
        output.append(write: sink.take) { $0.writeString("first") }
        output.drain(write: sink.take)
        let first = try #require(Self.address(sink.written[0]))
        sink = Sink()  // written out: the channel drops its reference
        // Had the storage been freed, this allocation of the same size would most likely take its address.
        let blocker = ByteBufferAllocator().buffer(capacity: 2048)

        var other = WriteCoalescer(scratch: scratch)  // another connection of the same loop
        other.append(write: sink.take) { $0.writeString("second") }
        other.drain(write: sink.take)
        #expect(Self.address(sink.written[0]) == first)
        #expect(sink.strings == ["second"])
        withExtendedLifetime(blocker) {}
    }

    @Test func aBufferTheChannelStillHoldsIsNeverWrittenAgain() throws {
        let scratch = WriteScratch()
        var output = WriteCoalescer(scratch: scratch)
        let held = Sink()  // the socket did not take this write yet
        output.append(write: held.take) { $0.writeString("still queued") }
        output.drain(write: held.take)

        let sink = Sink()
        var other = WriteCoalescer(scratch: scratch)
        other.append(write: sink.take) { $0.writeString("next response") }
        other.drain(write: sink.take)
        #expect(held.strings == ["still queued"])
        #expect(sink.strings == ["next response"])
        #expect(Self.address(sink.written[0]) != Self.address(held.written[0]))
    }

    @Test func twoConnectionsPendingAtOnceKeepTheirOwnBytes() {
        let scratch = WriteScratch()
        var a = WriteCoalescer(scratch: scratch)
        var b = WriteCoalescer(scratch: scratch)
        let sinkA = Sink()
        let sinkB = Sink()
        a.append(write: sinkA.take) { $0.writeString("a-head ") }
        b.append(write: sinkB.take) { $0.writeString("b-head ") }
        a.add(ByteBuffer(string: "a-body"), write: sinkA.take)
        b.add(ByteBuffer(string: "b-body"), write: sinkB.take)
        b.drain(write: sinkB.take)
        a.drain(write: sinkA.take)
        #expect(sinkA.strings == ["a-head a-body"])
        #expect(sinkB.strings == ["b-head b-body"])
    }

    @Test func aBufferThatGrewLargeIsNotKept() {
        var output = WriteCoalescer(scratch: WriteScratch())
        var sink = Sink()
        for _ in 0..<3 { output.add(ByteBuffer(repeating: 0, count: 4000), write: sink.take) }
        output.drain(write: sink.take)
        #expect(sink.written[0].capacity > WriteCoalescer.maxKeptCapacity)
        sink = Sink()
        output.append(write: sink.take) { $0.writeString("small") }
        output.drain(write: sink.take)
        #expect(sink.written[0].capacity <= WriteCoalescer.maxKeptCapacity)
    }
}
