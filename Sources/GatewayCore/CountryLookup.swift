import GatewayPolicy

/// Where a client address is (`geoip`): the country as its ISO 3166 code (`DE`, `US`), nil when unknown.
public protocol CountryLookup: Sendable {
    func country(of address: IPAddress) -> String?
}
