import GatewayCore
import NIOCore

/// One pipelined connection to Redis: commands are written as they come, replies are matched to them in
/// order. Writes made during one event-loop tick leave in one flush.
///
/// A command that does not get its reply within the timeout fails, and so does everything queued behind
/// it: the connection is closed, because a late reply would be matched to the wrong command.
final class RedisConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Called with the reply (an error reply is a value, not a failure) or with why there is none.
    typealias Completion = (Result<RedisValue, RedisError>) -> Void

    private struct Pending {
        var completion: Completion
        var deadline: NIODeadline
    }

    private let parser = RedisReplyParser()
    private let timeout: TimeAmount
    private var context: ChannelHandlerContext?
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var flushScheduled = false
    private var timer: Scheduled<Void>?
    private(set) var isClosed = false
    /// Called once when the connection is gone, after every pending command has failed.
    var onClose: (() -> Void)?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    /// Sends an encoded command; `completion` gets its reply.
    func send(_ command: ByteBuffer, completion: @escaping Completion) {
        guard let context, !isClosed else {
            completion(.failure(.connectionClosed))
            return
        }
        let deadline = NIODeadline.now() + timeout
        pending.append(Pending(completion: completion, deadline: deadline))
        context.write(wrapOutboundOut(command), promise: nil)
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute { [self] in
                self.flushScheduled = false
                self.context?.flush()
            }
        }
        if timer == nil { scheduleTimer(at: deadline) }
    }

    func close() {
        context?.close(promise: nil)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        failAll(.connectionClosed)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.feed(unwrapInboundIn(data))
        // One clock reading for the requests these replies resume (a batch of rate-limit decisions goes on
        // to forward up to 64 of them).
        EventClock.event {
            do throws(RedisError) {
                while let reply = try parser.next() {
                    guard let next = pending.popFirst() else {
                        // A reply nobody asked for: the stream cannot be trusted any more.
                        context.close(promise: nil)
                        return
                    }
                    next.completion(.success(reply))
                    // A master that became a replica (a failover) refuses writes: connecting again reaches the new one.
                    if case .error(let message) = reply, message.hasPrefix("READONLY") {
                        context.close(promise: nil)
                        return
                    }
                }
            } catch {
                failAll(error)
                context.close(promise: nil)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RedisError("Redis connection error: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        let wasClosed = isClosed
        isClosed = true
        timer?.cancel()
        timer = nil
        while let next = pending.popFirst() { next.completion(.failure(error)) }
        if !wasClosed {
            let onClose = self.onClose
            self.onClose = nil
            onClose?()
        }
    }

    // MARK: Timeout

    private func scheduleTimer(at deadline: NIODeadline) {
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.timer = nil
            guard let oldest = self.pending.first else { return }
            if oldest.deadline <= .now() {
                self.failAll(.timeout)
                self.context?.close(promise: nil)
            } else {
                self.scheduleTimer(at: oldest.deadline)
            }
        }
    }
}
