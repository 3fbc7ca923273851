import GatewayCore
import GatewayHTTP

/// Gives every request an `X-Request-ID`: the client's when it is well-formed (1-128 of
/// `[A-Za-z0-9._-]`), a fresh random one otherwise. It goes upstream and back to the client.
public struct RequestIDFilter: GatewayFilter {
    public static let header = "x-request-id"

    public init() {}

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let incoming = head.headers[RequestIDFilter.header]
        if incoming.count == 1, RequestID.isValid(incoming[0]) {
            context.requestID = incoming[0]
        } else {
            context.requestID = RequestID.generate()
            if incoming.isEmpty {
                head.headers.add(name: RequestIDFilter.header, value: context.requestID)
            } else {
                head.headers.replaceOrAdd(name: RequestIDFilter.header, value: context.requestID)
            }
        }
        return .proceed
    }

    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {
        head.headers.replaceOrAdd(name: RequestIDFilter.header, value: context.requestID)
    }
}
