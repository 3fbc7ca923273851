import CMaxMindDB
import GatewayCore
import GatewayPolicy

#if canImport(Glibc)
import Glibc
#endif

/// A MaxMind DB file (`geoip.database`: GeoLite2-Country or -City, GeoIP2, DB-IP's country databases) mapped into
/// memory: the country of an address is a walk down the file's search tree, no allocation, no lock.
public final class GeoIPDatabase: CountryLookup, @unchecked Sendable {
    // @unchecked: after MMDB_open the handle is only read, which libmaxminddb allows from any thread at once.
    private let handle = UnsafeMutablePointer<MMDB_s>.allocate(capacity: 1)
    public let path: String
    /// `country.iso_code`, then `registered_country.iso_code` (the country an address block is registered in, for
    /// networks MaxMind places nowhere, such as anycast ones); then `autonomous_system_number` (GeoLite2-ASN).
    private let paths: [[UnsafeMutablePointer<CChar>?]]

    public struct OpenError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    public init(path: String) throws {
        self.path = path
        handle.initialize(to: MMDB_s())
        let status = MMDB_open(path, UInt32(MMDB_MODE_MMAP), handle)
        guard status == MMDB_SUCCESS else {
            handle.deallocate()
            let reason = status == MMDB_FILE_OPEN_ERROR ? String(cString: strerror(errno)) : String(cString: MMDB_strerror(status))
            throw OpenError(path: path, reason: reason)
        }
        let names: [[String]] = [["country", "iso_code"], ["registered_country", "iso_code"], ["autonomous_system_number"]]
        paths = names.map { path in path.map { strdup($0) } + [nil] }
    }

    deinit {
        MMDB_close(handle)
        handle.deallocate()
        for path in paths { for part in path { free(part) } }
    }

    /// What the file says it is (`GeoLite2-Country`, `DBIP-Country-Lite`...).
    public var databaseType: String { String(cString: handle.pointee.metadata.database_type) }

    /// The ISO 3166 code of the country `address` is in, nil when the database does not place it (a private address,
    /// an IPv6 address in an IPv4-only database, an ASN database).
    public func country(of address: IPAddress) -> String? {
        guard var entry = lookup(address) else { return nil }
        for path in paths.prefix(2) {
            guard let data = value(path, in: &entry), data.type == UInt32(MMDB_DATA_TYPE_UTF8_STRING), let text = data.utf8_string else { continue }
            return String(decoding: UnsafeRawBufferPointer(start: text, count: Int(data.data_size)), as: UTF8.self)
        }
        return nil
    }

    /// The number of the autonomous system (the network operator) `address` belongs to, from an ASN database; nil otherwise.
    public func asn(of address: IPAddress) -> UInt32? {
        guard var entry = lookup(address), let data = value(paths[2], in: &entry), data.type == UInt32(MMDB_DATA_TYPE_UINT32) else { return nil }
        return data.uint32
    }

    private func value(_ path: [UnsafeMutablePointer<CChar>?], in entry: inout MMDB_entry_s) -> MMDB_entry_data_s? {
        var data = MMDB_entry_data_s()
        let status = path.withUnsafeBufferPointer { parts in
            parts.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: parts.count) { MMDB_aget_value(&entry, &data, $0) }
        }
        return status == MMDB_SUCCESS && data.has_data ? data : nil
    }

    private func lookup(_ address: IPAddress) -> MMDB_entry_s? {
        var error: Int32 = 0
        var result: MMDB_lookup_result_s
        switch address {
        case .v4(let value):
            var socket = sockaddr_in()
            socket.sin_family = sa_family_t(AF_INET)
            socket.sin_addr.s_addr = value.bigEndian
            result = withUnsafePointer(to: &socket) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { MMDB_lookup_sockaddr(handle, $0, &error) }
            }
        case .v6(let high, let low):
            var socket = sockaddr_in6()
            socket.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &socket.sin6_addr) { bytes in
                withUnsafeBytes(of: (high.bigEndian, low.bigEndian)) { bytes.copyMemory(from: $0) }
            }
            result = withUnsafePointer(to: &socket) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { MMDB_lookup_sockaddr(handle, $0, &error) }
            }
        }
        guard error == MMDB_SUCCESS, result.found_entry else { return nil }
        return result.entry
    }
}
