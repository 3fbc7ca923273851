import CoreMetrics
import NIOConcurrencyHelpers
import GatewayConfig
import GatewayHTTP
import GatewayPolicy
import NIOCore
import Synchronization

/// One stored response (one variant of a URI).
public struct CacheEntry: Sendable {
    public var status: Int
    /// As it goes to clients: no hop-by-hop fields, no Set-Cookie, no Age, Content-Length set.
    public var headers: [(name: String, value: String)]
    public var body: ByteBuffer
    /// When the request that fetched it left and when its response arrived (Unix seconds).
    public var requestTime: Int
    public var responseTime: Int
    public var facts: HTTPCaching.Response
    public var lifetime: Int
    /// The request header values it was selected by: the route's `key_headers`, then the response's `Vary`.
    public var selectors: [(name: String, value: String?)]
    public var route: String
    /// May answer requests that carry Authorization (RFC 9111 §3.5: public, s-maxage or must-revalidate).
    public var shareableWithAuthorization: Bool
    /// The upstream's cache tags (`Surrogate-Key`, `Cache-Tag`): `POST /cache/purge?tag=` drops every entry with one.
    public var tags: [String] = []

    public init(
        status: Int, headers: [(name: String, value: String)], body: ByteBuffer, requestTime: Int, responseTime: Int,
        facts: HTTPCaching.Response, lifetime: Int, selectors: [(name: String, value: String?)], route: String
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.requestTime = requestTime
        self.responseTime = responseTime
        self.facts = facts
        self.lifetime = lifetime
        self.selectors = selectors
        self.route = route
        let cc = facts.cacheControl
        self.shareableWithAuthorization = cc.isPublic || cc.sMaxAge != nil || cc.mustRevalidate
    }

    /// The cache-relevant facts of a response head.
    public static func facts(of response: ResponseHead) -> HTTPCaching.Response {
        let headers = response.headers
        let expiresText = headers.first(name: "expires")
        let expires = expiresText.flatMap(HTTPDate.parse)
        let vary = headers.values(name: "vary").flatMap { $0.split(separator: ",") }.map { $0.trimmingASCIISpaces() }
        return HTTPCaching.Response(
            status: response.status, cacheControl: CacheControl(headers.values(name: "cache-control")),
            date: headers.first(name: "date").flatMap(HTTPDate.parse), expires: expires,
            expiresInvalid: expiresText != nil && expires == nil, lastModified: headers.first(name: "last-modified").flatMap(HTTPDate.parse),
            age: headers.first(name: "age").flatMap { Int($0.trimmingASCIISpaces()) },
            hasValidator: headers.contains(name: "etag") || headers.contains(name: "last-modified"),
            setsCookie: headers.contains(name: "set-cookie"), varyAny: vary.contains("*"))
    }

    /// Fields that carry cache tags: the cache's business, never sent to clients.
    public static let tagFields = ["surrogate-key", "cache-tag"]
    /// At most this many tags per entry (a response listing thousands would make every purge scan slow).
    static let maxTags = 128

    /// A response's cache tags: `Surrogate-Key` (Fastly, Varnish: space-separated) and `Cache-Tag` (Cloudflare:
    /// comma-separated), in order, each once.
    public static func tags(of headers: HeaderList) -> [String] {
        var tags: [String] = []
        for (field, separators) in [("surrogate-key", " \t"), ("cache-tag", ", \t")] {
            for value in headers.values(name: field) {
                for tag in value.split(whereSeparator: { separators.contains($0) }) where tags.count < maxTags && !tags.contains(String(tag)) {
                    tags.append(String(tag))
                }
            }
        }
        return tags
    }

    var cost: Int { tags.reduce(0) { $0 + $1.utf8.count + 16 } + body.readableBytes + headers.reduce(256) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 } }

    public func age(now: Int) -> Int { HTTPCaching.currentAge(facts, requestTime: requestTime, responseTime: responseTime, now: now) }

    public func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name }?.value }

    /// The request asks for this variant: every selecting header has the value it was stored for.
    public func selected(by requestHeaders: HeaderList) -> Bool {
        selectors.allSatisfy { ResponseCache.selectorValue($0.name, in: requestHeaders) == $0.value }
    }

    /// Seconds Redis (or any shared tier) should keep it: as long as it may still be served or revalidated.
    public var retention: Int {
        let stale = max(facts.cacheControl.staleWhileRevalidate ?? 0, facts.cacheControl.staleIfError ?? 0)
        let validator = facts.hasValidator ? 3600 : 0  // a stale copy with a validator still saves a body transfer
        return max(1, lifetime + max(stale, validator))
    }
}

/// A tier shared by gateway instances (Redis), behind the in-memory one.
public protocol SharedCacheTier: Sendable {
    func fetch(_ key: String, on eventLoop: EventLoop) -> EventLoopFuture<[CacheEntry]>
    func store(_ key: String, variants: [CacheEntry], on eventLoop: EventLoop)
    func remove(_ key: String, on eventLoop: EventLoop)
    /// Everything of one route (nil: everything); the count when it can tell.
    func purge(route: String?, on eventLoop: EventLoop) -> EventLoopFuture<Int>
    /// Every URI with a variant tagged `tag`; the count when it can tell.
    func purge(tag: String, on eventLoop: EventLoop) -> EventLoopFuture<Int>
}

/// The response cache shared by every route and event loop: an LRU memory tier bounded by
/// `cache.memory_bytes`, an optional shared tier, request collapsing, and background refreshes.
public final class ResponseCache: Sendable {
    public let config: CacheConfig
    public let shared: SharedCacheTier?
    private let memory: NIOLockedValueBox<LRUCache<String, [CacheEntry]>>
    /// Keys being fetched by a leader, with the requests waiting for it.
    private let fills = NIOLockedValueBox<[String: [Waiter]]>([:])
    /// Keys with a background refresh in flight (stale-while-revalidate refreshes once).
    private let refreshing = NIOLockedValueBox<Set<String>>([])
    /// Most variants kept per URI (a Vary on a high-cardinality header must not fill the cache with one URI).
    static let maxVariants = 16

    struct Waiter {
        let id: Int
        let resume: @Sendable () -> Void
    }

    private let waiterIDs = Atomic<Int>(0)

    public init(config: CacheConfig, shared: SharedCacheTier? = nil) {
        self.config = config
        self.shared = shared
        self.memory = NIOLockedValueBox(LRUCache(capacity: config.memoryBytes))
    }

    /// Unix seconds now (wall clock: ages and HTTP dates are wall-clock quantities).
    public static func now() -> Int { Int(WallClock.nanoseconds() / 1_000_000_000) }

    // MARK: Lookup and store

    public func memoryVariants(_ key: String) -> [CacheEntry]? { memory.withLockedValue { $0.get(key) } }

    /// The shared tier's variants (copied into memory when found).
    public func sharedVariants(_ key: String, on eventLoop: EventLoop) -> EventLoopFuture<[CacheEntry]>? {
        guard let shared else { return nil }
        return shared.fetch(key, on: eventLoop).map { variants in
            if !variants.isEmpty { _ = self.memory.withLockedValue { $0.set(key, variants, cost: variants.reduce(0) { $0 + $1.cost }) } }
            return variants
        }
    }

    /// Stores `entry`, replacing the variant with the same selectors.
    public func store(_ key: String, _ entry: CacheEntry, on eventLoop: EventLoop) {
        guard entry.body.readableBytes <= config.maxObjectBytes else { return }
        let variants = memory.withLockedValue { lru -> [CacheEntry] in
            var variants = lru.peek(key) ?? []
            variants.removeAll { existing in
                existing.selectors.count == entry.selectors.count
                    && zip(existing.selectors, entry.selectors).allSatisfy { $0.name == $1.name && $0.value == $1.value }
            }
            variants.insert(entry, at: 0)
            if variants.count > Self.maxVariants { variants.removeLast(variants.count - Self.maxVariants) }
            lru.set(key, variants, cost: variants.reduce(0) { $0 + $1.cost })
            return variants
        }
        shared?.store(key, variants: variants, on: eventLoop)
    }

    /// Drops every variant of a URI (unsafe methods, purge by URL).
    /// Returns whether the memory tier held it.
    @discardableResult
    public func invalidate(_ key: String, on eventLoop: EventLoop) -> Bool {
        let held = memory.withLockedValue { $0.remove(key) } != nil
        shared?.remove(key, on: eventLoop)
        return held
    }

    /// Drops a route's entries (nil: all) from both tiers; the number dropped from memory.
    public func purge(route: String?, on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        let dropped = memory.withLockedValue { lru -> Int in
            let before = lru.count
            if let route {
                lru.removeAll { _, variants in variants.contains { $0.route == route } }
            } else {
                lru.removeAll { _, _ in true }
            }
            return before - lru.count
        }
        guard let shared else { return eventLoop.makeSucceededFuture(dropped) }
        return shared.purge(route: route, on: eventLoop).map { max($0, dropped) }
    }

    /// Drops every URI one of whose variants carries one of `tags`, from both tiers; the number of URIs dropped.
    public func purge(tags: [String], on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        let dropped = memory.withLockedValue { lru -> Int in
            let before = lru.count
            lru.removeAll { _, variants in variants.contains { entry in entry.tags.contains { tags.contains($0) } } }
            return before - lru.count
        }
        guard let shared else { return eventLoop.makeSucceededFuture(dropped) }
        let counts = tags.map { shared.purge(tag: $0, on: eventLoop) }
        return EventLoopFuture.whenAllSucceed(counts, on: eventLoop).map { max($0.reduce(0, +), dropped) }
    }

    /// Hosts with something stored for `target` in memory (purging a bare path finds them this way).
    public func hosts(path target: String) -> [String] {
        memory.withLockedValue { lru in
            lru.keysByRecency.compactMap { key -> String? in
                guard key.hasSuffix(target) else { return nil }
                let host = String(key.dropLast(target.utf8.count))
                return host.contains("/") ? nil : host
            }
        }
    }

    // MARK: Request collapsing

    /// Becomes the one fetching `key` (true), or queues `resume` to run when that fetch ends (false).
    /// Returns the waiter id for `abandon`.
    public func joinFill(_ key: String, resume: @escaping @Sendable () -> Void) -> (leader: Bool, waiter: Int) {
        let id = waiterIDs.wrappingAdd(1, ordering: .relaxed).newValue
        let leader = fills.withLockedValue { fills -> Bool in
            if fills[key] == nil {
                fills[key] = []
                return true
            }
            fills[key]!.append(Waiter(id: id, resume: resume))
            return false
        }
        return (leader, id)
    }

    /// The leader's fetch ended (stored or not): everyone waiting looks again.
    public func endFill(_ key: String) {
        let waiters = fills.withLockedValue { $0.removeValue(forKey: key) } ?? []
        for waiter in waiters { waiter.resume() }
    }

    /// A waiter gave up (its own timeout, or its client left).
    public func abandon(_ key: String, waiter: Int) {
        fills.withLockedValue { fills in fills[key]?.removeAll { $0.id == waiter } }
    }

    /// Claims the one background refresh for `key`.
    public func beginRefresh(_ key: String) -> Bool { refreshing.withLockedValue { $0.insert(key).inserted } }
    public func endRefresh(_ key: String) { _ = refreshing.withLockedValue { $0.remove(key) } }

    // MARK: Keys and selectors

    /// A request header's value as a selector compares it: field lines joined, spaces trimmed, nil when absent.
    static func selectorValue(_ name: String, in headers: HeaderList) -> String? {
        let values = headers.values(name: name).map { $0.trimmingASCIISpaces() }
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }
}

/// A route's cache settings, compiled.
public struct RouteCachePolicy: Sendable {
    public let cache: ResponseCache
    public let route: String
    public let defaultTTL: Int
    public let keyHeaders: [String]
    public let ignoredQueryParameters: Set<String>
    public let allowSetCookie: Bool
    /// `gateway_cache_lookups_total{route,result}` handles, made once (a hit must not build label strings).
    let lookups: [CacheResult: Counter]

    public init(cache: ResponseCache, route: String, config: RouteCacheConfig, metrics: GatewayMetrics = .disabled) {
        self.cache = cache
        self.route = route
        var lookups: [CacheResult: Counter] = [:]
        for result in CacheResult.allCases {
            lookups[result] = metrics.counter("gateway_cache_lookups_total", [("route", route), ("result", result.label)])
        }
        self.lookups = lookups
        self.defaultTTL = config.defaultTTLSeconds
        self.keyHeaders = config.keyHeaders
        self.ignoredQueryParameters = Set(config.ignoreQueryParameters)
        self.allowSetCookie = config.allowSetCookie
    }

    /// The URI part of the key: lowercased host, path, and the query without ignored parameters.
    public func key(host: String, target: String) -> String {
        var key = host.lowercased()
        guard let mark = target.firstIndex(of: "?") else { return key + target }
        key += target[..<mark]
        let query = target[target.index(after: mark)...]
        let kept = query.split(separator: "&", omittingEmptySubsequences: false).filter { pair in
            let name = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            return !ignoredQueryParameters.contains(name)
        }
        if !kept.isEmpty { key += "?" + kept.joined(separator: "&") }
        return key
    }
}
