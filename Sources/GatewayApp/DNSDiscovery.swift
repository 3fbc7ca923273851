import GatewayConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns a host name into the addresses it has now.
public protocol HostResolver: Sendable {
    /// The name's IPv4 and IPv6 addresses as text (`"10.0.0.5"`, `"fd00::5"`), or an error when it has none.
    func addresses(of host: String) async throws -> [String]
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

/// DNS discovery for upstreams with `dns_refresh_ms`: the addresses last found for each host name, and the
/// running config those addresses make (`expand`). A name that cannot be resolved keeps its last addresses; one
/// never resolved stays a plain host-name target, resolved when a connection opens.
final class DNSDiscovery: Sendable {
    private let resolver: any HostResolver
    private let logger: Logger
    /// Host name -> its addresses, sorted.
    private let known = NIOLockedValueBox<[String: [String]]>([:])
    /// Names whose last lookup failed (their failure is logged once until they resolve again).
    private let failing = NIOLockedValueBox<Set<String>>([])

    init(resolver: any HostResolver, logger: Logger) {
        self.resolver = resolver
        self.logger = logger
    }

    static func hosts(in config: GatewayConfig) -> [String] {
        var seen: Set<String> = []
        return config.upstreams.flatMap(\.discoveredHosts).filter { seen.insert($0).inserted }
    }

    /// The shortest refresh interval among the upstreams that discover, if any does.
    static func interval(of config: GatewayConfig) -> Int? { config.upstreams.compactMap(\.dnsRefreshMs).min() }

    /// Resolves the names of `config` not looked up yet (at start and on reload, before the config is built).
    func prime(_ config: GatewayConfig) async {
        let known = self.known.withLockedValue { $0 }
        for host in Self.hosts(in: config) where known[host] == nil {
            _ = await resolve(host)
        }
    }

    /// Resolves every name of `config` again; true when any now has other addresses.
    func refresh(_ config: GatewayConfig) async -> Bool {
        var changed = false
        for host in Self.hosts(in: config) where await resolve(host) {
            changed = true
        }
        return changed
    }

    /// `config` as it runs: each discovered name replaced by its addresses.
    func expand(_ config: GatewayConfig) -> GatewayConfig {
        let known = self.known.withLockedValue { $0 }
        guard !known.isEmpty else { return config }
        var expanded = config
        expanded.upstreams = config.upstreams.map { $0.expandingTargets(resolved: known) }
        return expanded
    }

    /// Looks `host` up; true when its addresses changed.
    private func resolve(_ host: String) async -> Bool {
        do {
            let addresses = try await resolver.addresses(of: host).sorted()
            if failing.withLockedValue({ $0.remove(host) }) != nil {
                logger.info("DNS resolves again", metadata: ["host": "\(host)"])
            }
            let previous = known.withLockedValue { known in
                defer { known[host] = addresses }
                return known[host]
            }
            guard previous != addresses else { return false }
            logger.info(
                "upstream addresses", metadata: ["host": "\(host)", "addresses": "\(addresses.joined(separator: " "))"])
            return true
        } catch {
            if failing.withLockedValue({ $0.insert(host).inserted }) {
                let kept = known.withLockedValue { $0[host] }
                logger.warning(
                    "DNS resolution failed",
                    metadata: [
                        "host": "\(host)", "error": "\(error)",
                        "using": "\(kept.map { $0.joined(separator: " ") } ?? "the name, resolved at connect")",
                    ])
            }
            return false
        }
    }
}
