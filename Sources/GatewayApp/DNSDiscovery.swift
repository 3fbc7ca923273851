import CDNSQuery
import GatewayConfig
import GatewayPolicy
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns a host name into the addresses it has now, and a service name into its instances.
public protocol HostResolver: Sendable {
    /// The name's IPv4 and IPv6 addresses as text (`"10.0.0.5"`, `"fd00::5"`), or an error when it has none.
    func addresses(of host: String) async throws -> [String]

    /// The same, asking `server` (`dns_server`) instead of the system's resolver when it is given.
    func addresses(of host: String, server: DNSServerAddress?) async throws -> [String]

    /// Every address of every instance the SRV records of `service` name, or an error when there is none.
    func instances(of service: String, server: DNSServerAddress?) async throws -> [DiscoveredInstance]
}

extension HostResolver {
    public func addresses(of host: String, server: DNSServerAddress?) async throws -> [String] { try await addresses(of: host) }

    public func instances(of service: String, server: DNSServerAddress?) async throws -> [DiscoveredInstance] {
        throw SystemResolver.Failure(description: "this resolver does not look up SRV records")
    }
}

/// The system's resolver (getaddrinfo: /etc/hosts, resolv.conf, nsswitch), on NIO's blocking-I/O thread pool so
/// no event loop waits for DNS.
public struct SystemResolver: HostResolver {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init() {}

    public func addresses(of host: String) async throws -> [String] {
        try await NIOThreadPool.singleton.runIfActive { try Self.lookup(host) }
    }

    public func addresses(of host: String, server: DNSServerAddress?) async throws -> [String] {
        try await NIOThreadPool.singleton.runIfActive { try Self.lookup(host, server: server) }
    }

    public func instances(of service: String, server: DNSServerAddress?) async throws -> [DiscoveredInstance] {
        try await NIOThreadPool.singleton.runIfActive {
            let answer = try Self.query(service, type: DNSAnswer.srv, server: server)
            // A target of "." says the service is not offered there (RFC 2782).
            let records = answer.services.filter { !$0.target.isEmpty }
            guard !records.isEmpty else { throw Failure(description: "no SRV records") }
            var instances: [DiscoveredInstance] = []
            for record in records {
                // Servers usually add the targets' addresses to the answer; otherwise they are looked up where the SRV
                // records were.
                let addresses = answer.addresses[record.target] ?? (try? Self.lookup(record.target, server: server)) ?? []
                instances += addresses.map {
                    DiscoveredInstance(priority: record.priority, weight: record.weight, host: record.target, port: record.port, address: $0)
                }
            }
            guard !instances.isEmpty else { throw Failure(description: "no address for any SRV target") }
            return Array(Set(instances)).sorted()
        }
    }

    /// `host`'s addresses from the system's resolver, or its A and AAAA records at `server`.
    static func lookup(_ host: String, server: DNSServerAddress?) throws -> [String] {
        guard let server else { return try lookup(host) }
        let v4 = Result { try query(host, type: DNSAnswer.a, server: server) }
        let v6 = Result { try query(host, type: DNSAnswer.aaaa, server: server) }
        let addresses = ((try? v4.get().addresses[host]) ?? []) + ((try? v6.get().addresses[host]) ?? [])
        if addresses.isEmpty { _ = try v4.get() }  // the failure says why
        guard !addresses.isEmpty else { throw Failure(description: "no addresses") }
        return addresses
    }

    /// One query through libresolv (retries, TCP after a truncated answer), at `server` when given.
    static func query(_ name: String, type: Int, server: DNSServerAddress?) throws -> DNSAnswer {
        var buffer = [UInt8](repeating: 0, count: 65_535)
        let received = buffer.withUnsafeMutableBufferPointer { bytes in
            gateway_dns_query(name, Int32(type), server?.host, Int32(server?.port ?? 0), bytes.baseAddress, Int32(bytes.count))
        }
        guard received > 0 else {
            let reasons: [Int32: String] = [1: "no such name", 2: "no answer (try again)", 3: "the server failed or refused", 4: "no records of that type"]
            throw Failure(description: reasons[-received] ?? "the resolver could not be used")
        }
        do {
            return try DNSAnswer(parsing: Array(buffer[..<Int(received)]))
        } catch {
            throw Failure(description: "a malformed answer: \(error)")
        }
    }

    static func lookup(_ host: String) throws -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0 else { throw Failure(description: String(cString: gai_strerror(status))) }
        defer { freeaddrinfo(list) }
        var addresses: [String] = []
        var entry = list
        while let info = entry?.pointee {
            entry = info.ai_next
            guard let socketAddress = info.ai_addr else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch info.ai_family {
            case AF_INET:
                var address = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                guard inet_ntop(AF_INET, &address, &text, socklen_t(text.count)) != nil else { continue }
            case AF_INET6:
                var address = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { continue }
            default:
                continue
            }
            let address = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !addresses.contains(address) { addresses.append(address) }
        }
        guard !addresses.isEmpty else { throw Failure(description: "no addresses") }
        return addresses
    }
}

/// DNS discovery for upstreams with `dns_refresh_ms`: the addresses last found for each host name and the instances
/// for each service name (at each upstream's `dns_server`), and the running config they make (`expand`). A name that
/// cannot be resolved keeps its last answer; one never resolved stays as written (a host name is then resolved when a
/// connection opens).
final class DNSDiscovery: Sendable {
    /// A name, where it is looked up, and as what.
    struct Lookup: Hashable {
        var name: String
        var server: DNSServerAddress?
        var service: Bool
    }

    enum Answer: Equatable {
        case addresses([String])
        case instances([DiscoveredInstance])

        var description: String {
            switch self {
            case .addresses(let addresses): addresses.joined(separator: " ")
            case .instances(let instances):
                instances.map { "\($0.host):\($0.port)=\($0.address) priority \($0.priority) weight \($0.weight)" }.joined(separator: ", ")
            }
        }
    }

    private let resolver: any HostResolver
    private let logger: Logger
    /// The last answer for each lookup, sorted.
    private let known = NIOLockedValueBox<[Lookup: Answer]>([:])
    /// Lookups whose last attempt failed (their failure is logged once until they resolve again).
    private let failing = NIOLockedValueBox<Set<Lookup>>([])

    init(resolver: any HostResolver, logger: Logger) {
        self.resolver = resolver
        self.logger = logger
    }

    static func lookups(in config: GatewayConfig) -> [Lookup] {
        var seen: Set<Lookup> = []
        return config.upstreams.flatMap { upstream in
            upstream.discoveredHosts.map { Lookup(name: $0, server: upstream.dnsServer, service: false) }
                + upstream.discoveredServices.map { Lookup(name: $0, server: upstream.dnsServer, service: true) }
        }.filter { seen.insert($0).inserted }
    }

    /// The shortest refresh interval among the upstreams that discover, if any does.
    static func interval(of config: GatewayConfig) -> Int? { config.upstreams.compactMap(\.dnsRefreshMs).min() }

    /// Resolves the names of `config` not looked up yet (at start and on reload, before the config is built).
    func prime(_ config: GatewayConfig) async {
        let known = self.known.withLockedValue { $0 }
        for lookup in Self.lookups(in: config) where known[lookup] == nil {
            _ = await resolve(lookup)
        }
    }

    /// Resolves every name of `config` again; true when any now has another answer.
    func refresh(_ config: GatewayConfig) async -> Bool {
        var changed = false
        for lookup in Self.lookups(in: config) where await resolve(lookup) {
            changed = true
        }
        return changed
    }

    /// `config` as it runs: each discovered name replaced by its addresses or instances.
    func expand(_ config: GatewayConfig) -> GatewayConfig {
        let known = self.known.withLockedValue { $0 }
        guard !known.isEmpty else { return config }
        var expanded = config
        expanded.upstreams = config.upstreams.map { upstream in
            upstream.expandingTargets(
                addresses: { name in
                    guard case .addresses(let addresses)? = known[Lookup(name: name, server: upstream.dnsServer, service: false)] else { return nil }
                    return addresses
                },
                services: { name in
                    guard case .instances(let instances)? = known[Lookup(name: name, server: upstream.dnsServer, service: true)] else { return nil }
                    return instances
                })
        }
        return expanded
    }

    /// Looks `lookup` up; true when its answer changed.
    private func resolve(_ lookup: Lookup) async -> Bool {
        do {
            let answer: Answer =
                lookup.service
                ? .instances(try await resolver.instances(of: lookup.name, server: lookup.server).sorted())
                : .addresses(try await resolver.addresses(of: lookup.name, server: lookup.server).sorted())
            if failing.withLockedValue({ $0.remove(lookup) }) != nil {
                logger.info("DNS resolves again", metadata: ["host": "\(lookup.name)"])
            }
            let previous = known.withLockedValue { known in
                defer { known[lookup] = answer }
                return known[lookup]
            }
            guard previous != answer else { return false }
            logger.info(
                lookup.service ? "upstream instances" : "upstream addresses",
                metadata: [lookup.service ? "service" : "host": "\(lookup.name)", lookup.service ? "instances" : "addresses": "\(answer.description)"])
            return true
        } catch {
            if failing.withLockedValue({ $0.insert(lookup).inserted }) {
                let kept = known.withLockedValue { $0[lookup] }
                logger.warning(
                    "DNS resolution failed",
                    metadata: [
                        "host": "\(lookup.name)", "error": "\(error)",
                        "using": "\(kept.map(\.description) ?? (lookup.service ? "nothing yet" : "the name, resolved at connect"))",
                    ])
            }
            return false
        }
    }
}
