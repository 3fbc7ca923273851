import GatewayConfig
import GatewayCore
import GatewayHTTP

/// Gives every request an id in `request_id.header` (`X-Request-ID` unless configured): the client's when it
/// is well-formed (1-128 of `[A-Za-z0-9._-]`) and `preserve_incoming` lets it be kept, a fresh random one
/// otherwise. It goes upstream and back to the client.
public struct RequestIDFilter: GatewayFilter {
    public static let defaultHeader = "x-request-id"

    /// Lowercase.
    let header: String
    let preserve: RequestIDConfig.Preserve

    public init(_ config: RequestIDConfig = RequestIDConfig()) {
        header = config.header
        preserve = config.preserveIncoming
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        let (incoming, count) = head.headers.firstAndCount(name: header)
        let keeps: Bool
        switch preserve {
        case .always: keeps = true
        case .trustedProxies: keeps = context.connection.peerIsTrustedProxy
        case .never: keeps = false
        }
        if keeps, count == 1, let incoming, RequestID.isValid(incoming) {
            context.requestID = incoming
            return .proceed
        }
        context.requestID = RequestID.generate()
        if count > 0 { head.headers.remove(name: header) }
        head.headers.add(name: header, value: context.requestID)
        return .proceed
    }

    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {
        head.headers.replaceOrAdd(name: header, value: context.requestID)
    }
}
