import GatewayConfig
import GatewayCore
import GatewayHTTP
import GatewayPolicy

/// `geoip`: places every request's client (the address `trusted_proxies` resolve) in its country and autonomous system,
/// for the access log, `set_from` and the routes' rules, and applies the top-level `deny_countries` / `allow_countries`
/// and `deny_asns` / `allow_asns` before routing.
public struct GeoIPFilter: GatewayFilter {
    private let databases: [any CountryLookup]
    private let rules: GeoRuleFilter

    public init(databases: [any CountryLookup], countries: CountryRule, asns: ASNRule) {
        self.databases = databases
        self.rules = GeoRuleFilter(countries: countries, asns: asns)
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        if let address = IPAddress(context.clientIP) {
            for database in databases {
                if context.country == nil { context.country = database.country(of: address) }
                if context.asn == nil { context.asn = database.asn(of: address) }
            }
        }
        return rules.onRequest(&head, context: &context)
    }
}

/// A route's (or the gateway's) country and network rules: clients from other countries or networks get 403, beside
/// the address rules and before anything else runs on the route.
public struct GeoRuleFilter: GatewayFilter {
    private let countries: CountryRule
    private let asns: ASNRule

    public init(countries: CountryRule, asns: ASNRule) {
        self.countries = countries
        self.asns = asns
    }

    public func onRequest(_ head: inout RequestHead, context: inout RequestContext) -> FilterStep {
        if !countries.permits(context.country) { return .respond(.error(.countryNotAllowed, requestID: context.requestID)) }
        if !asns.permits(context.asn) { return .respond(.error(.networkNotAllowed, requestID: context.requestID)) }
        return .proceed
    }
}
