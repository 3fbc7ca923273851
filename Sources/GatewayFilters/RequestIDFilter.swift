import GatewayCore
import GatewayHTTP

/// Gives every request an `X-Request-ID`: the client's when it is well-formed (1-128 of
/// `[A-Za-z0-9._-]`), a fresh random one otherwise. It goes upstream and back to the client.
public struct RequestIDFilter: GatewayFilter {
    public static let header = "x-request-id"

    public init() {}

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let (incoming, count) = head.headers.firstAndCount(name: RequestIDFilter.header)
        if count == 1, let incoming, RequestID.isValid(incoming) {
            context.requestID = incoming
            return .proceed
        }
        context.requestID = RequestID.generate()
        if count > 0 { head.headers.remove(name: RequestIDFilter.header) }
        head.headers.add(name: RequestIDFilter.header, value: context.requestID)
        return .proceed
    }

    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {
        head.headers.replaceOrAdd(name: RequestIDFilter.header, value: context.requestID)
    }
}
