import Foundation
import GatewayConfig
import GatewayClient
import NIOCore

/// Sends DNS UPDATE messages to the zone's primary (`acme.dns_update`) over TCP (RFC 7766: length-prefixed; no
/// truncation or lost datagrams to retry) and checks each signed response.
public struct DNSUpdater: Sendable {
    public let config: DNSUpdateConfig
    let eventLoop: EventLoop
    static let timeout = TimeAmount.seconds(10)

    public init(config: DNSUpdateConfig, eventLoop: EventLoop) {
        self.config = config
        self.eventLoop = eventLoop
    }

    public func apply(_ changes: [DNSUpdate.Change]) async throws {
        let id = UInt16.random(in: 0...UInt16.max)
        let (message, mac) = DNSUpdate.message(
            id: id, zone: config.zone, changes: changes, key: config.key, time: UInt64(Date().timeIntervalSince1970))
        let response: [UInt8]
        do {
            response = try await exchange(message).get()
        } catch {
            throw DNSUpdate.Refused(description: "no answer from \(config.host):\(config.port): \(error)")
        }
        try DNSUpdate.check(response: response, id: id, requestMAC: mac, key: config.key)
    }

    private func exchange(_ message: [UInt8]) -> EventLoopFuture<[UInt8]> {
        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
        return OneShotExchange.run(
            host: config.host, port: config.port, on: eventLoop, timeout: Self.timeout, timeoutError: ChannelError.connectTimeout(Self.timeout)
        ) { promise in
            DNSExchangeHandler(message: framed, promise: promise)
        }
    }
}

/// Writes one length-prefixed message and completes with the first length-prefixed response.
private final class DNSExchangeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let message: [UInt8]
    private let promise: EventLoopPromise<[UInt8]>
    private var input = ByteBuffer()

    init(message: [UInt8], promise: EventLoopPromise<[UInt8]>) {
        self.message = message
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: message)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        input.writeBuffer(&bytes)
        guard let length = input.getInteger(at: input.readerIndex, as: UInt16.self), input.readableBytes >= 2 + Int(length) else { return }
        input.moveReaderIndex(forwardBy: 2)
        promise.succeed(input.readBytes(length: Int(length)) ?? [])
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
