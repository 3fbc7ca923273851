import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy

/// `geoip`: places every request's client (the address `trusted_proxies` resolve) in its country, for the access log,
/// `set_from` and the routes' country rules, and applies the top-level `deny_countries` / `allow_countries` before
/// routing.
public struct GeoIPFilter: GatewayFilter {
    private let lookup: any CountryLookup
    private let rule: CountryRule

    public init(lookup: any CountryLookup, rule: CountryRule) {
        self.lookup = lookup
        self.rule = rule
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        context.country = IPAddress(context.clientIP).flatMap(lookup.country(of:))
        return rule.permits(context.country) ? .proceed : .respond(.error(.countryNotAllowed, requestID: context.requestID))
    }
}

/// A route's `deny_countries` / `allow_countries`: refuses clients from other countries with 403, beside its address rules
/// and before anything else runs on the route.
public struct CountryFilter: GatewayFilter {
    private let rule: CountryRule

    public init(_ rule: CountryRule) {
        self.rule = rule
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        rule.permits(context.country) ? .proceed : .respond(.error(.countryNotAllowed, requestID: context.requestID))
    }
}
