import CoreMetrics
import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy

/// A route's `deprecation`: every answer of the route, the gateway's own included, says the API is deprecated
/// (`Deprecation: @<seconds>`, RFC 9745), when it stops working (`Sunset`, RFC 8594) and where to read about it
/// (`Link: <...>; rel="deprecation"`), so client developers and their tooling see it long before it matters. Requests
/// are counted per route; from the sunset on, with `refuse_after_sunset`, the route answers `410 API_SUNSET` itself.
public struct DeprecationFilter: GatewayFilter {
    private let fields: [(name: String, value: String)]
    private let refusesFrom: Int?
    private let sunsetText: String
    private let requests: Counter

    public init(_ config: DeprecationConfig, routeName: String, metrics: GatewayMetrics) {
        var fields = [(name: "deprecation", value: "@\(config.date)")]
        let sunsetText = config.sunset.map(HTTPDate.format) ?? ""
        if config.sunset != nil { fields.append((name: "sunset", value: sunsetText)) }
        if let link = config.link { fields.append((name: "link", value: "<\(link)>; rel=\"deprecation\"; type=\"text/html\"")) }
        self.fields = fields
        self.sunsetText = sunsetText
        self.refusesFrom = config.refuseAfterSunset ? config.sunset : nil
        self.requests = metrics.deprecatedRequests(route: routeName)
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        requests.increment()
        if let refusesFrom, WallClock.coarseSeconds() >= refusesFrom {
            return .respond(.error(.apiSunset(sunsetText), requestID: context.requestID))
        }
        return .proceed
    }

    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {
        // The route's dates replace an upstream's own; links add to its.
        for (name, value) in fields {
            if name == "link" { head.headers.add(name: name, value: value) } else { head.headers.replaceOrAdd(name: name, value: value) }
        }
    }
}
