import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import Logging

/// A route's `csrf`: a state-changing request (any method but GET, HEAD and OPTIONS) that a browser sends on
/// another site's behalf is refused with `403 CROSS_ORIGIN_REQUEST_REFUSED` before authentication, so a page
/// elsewhere cannot use the visitor's cookies (or client certificate, or browser-held Basic password) to act
/// on the route. The rules are `CrossOriginProtection`'s; origins the route's CORS allows are trusted too.
/// With `report_only` nothing is refused: what would be is logged and counted, to roll the protection out.
public struct CSRFFilter: GatewayFilter {
    private let protection: CrossOriginProtection
    private let reportOnly: Bool
    private let routeName: String
    private let metrics: GatewayMetrics
    private let logger: Logger

    public init(_ config: CSRFConfig, cors: CORSConfig?, routeName: String, metrics: GatewayMetrics, logger: Logger) {
        let origins = config.trustedOrigins + (cors?.allowOrigins ?? [])
        self.protection = CrossOriginProtection(trusted: origins.compactMap(CORSPolicy.parseOrigin))
        self.reportOnly = config.reportOnly
        self.routeName = routeName
        self.metrics = metrics
        self.logger = logger
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        switch head.method {
        case .GET, .HEAD, .OPTIONS: return .proceed
        default: break
        }
        let verdict = protection.check(
            secFetchSite: head.headers.first(name: "sec-fetch-site"), origin: head.headers.first(name: "origin"),
            host: context.host ?? head.headers.first(name: "host"))
        guard case .refused(let reason) = verdict else { return .proceed }
        metrics.crossOriginRefusal(route: routeName, reportOnly: reportOnly)
        logger.warning(
            reportOnly ? "cross-origin request would be refused (csrf report_only)" : "cross-origin request refused",
            metadata: ["request_id": "\(context.requestID)", "route": "\(routeName)", "method": "\(head.method)", "reason": "\(reason)"])
        return reportOnly ? .proceed : .respond(.error(.crossOriginRefused, requestID: context.requestID))
    }
}
