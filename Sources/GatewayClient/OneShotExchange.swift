import NIOCore
import NIOPosix
import NIOSSL

/// One fresh connection for one exchange with a server the gateway calls for itself (an HTTP fetch, a DNS update):
/// `handler`, made with the exchange's promise, talks and completes it; the connection closes once it is complete,
/// and the promise fails with `timeoutError` after `timeout`, connecting included.
public enum OneShotExchange {
    public static func run<Result: Sendable>(
        host: String, port: Int, on eventLoop: EventLoop, timeout: TimeAmount, timeoutError: any Error,
        tls: (context: NIOSSLContext, serverName: String?)? = nil,
        handler: @escaping @Sendable (EventLoopPromise<Result>) -> any ChannelHandler
    ) -> EventLoopFuture<Result> {
        let promise = eventLoop.makePromise(of: Result.self)
        let timer = eventLoop.scheduleTask(in: timeout) { promise.fail(timeoutError) }
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName)) }
                    try channel.pipeline.syncOperations.addHandler(handler(promise))
                }
            }
            .connect(host: host, port: port)
            .whenComplete { result in
                switch result {
                case .success(let channel): promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                case .failure(let error): promise.fail(error)
                }
            }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }
}
