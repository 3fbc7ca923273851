import GatewayPolicy

/// Where a client address is (`geoip`): the country as its ISO 3166 code (`DE`, `US`), and the autonomous system (the
/// network operator: a cloud provider, an ISP) by its number; nil when the database does not say.
public protocol CountryLookup: Sendable {
    func country(of address: IPAddress) -> String?
    func asn(of address: IPAddress) -> UInt32?
}
