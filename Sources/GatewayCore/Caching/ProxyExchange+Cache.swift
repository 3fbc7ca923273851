import GatewayHTTP
import GatewayPolicy
import NIOCore

/// The cache's view of one exchange on a route with `cache.enabled`.
struct CacheState {
    let policy: RouteCachePolicy
    let key: String
    let requestCC: CacheControl
    /// `X-Cache` for the client and the `gateway_cache_lookups_total` result.
    var result = CacheResult.miss
    /// A stored response that could not be used as it is: revalidated with the upstream, or served if the
    /// upstream fails (stale-if-error).
    var stale: CacheEntry?
    var revalidating = false
    /// This request fetches the key for others waiting on it (request collapsing).
    var leader = false
    var waiter: Int?
    var waitTimer: Scheduled<Void>?
    var fill: CacheFill?
    /// A 304 merged into the stale copy, to serve once the upstream exchange ends.
    var refreshed: CacheEntry?
    var requestTime = ResponseCache.now()

    /// If-None-Match / If-Modified-Since from a stored response's validators.
    static func addValidators(of entry: CacheEntry, to headers: inout HeaderList) {
        for name in ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"] { headers.remove(name: name) }
        if let etag = entry.header("etag") { headers.add(name: "if-none-match", value: etag) }
        if let lastModified = entry.header("last-modified") { headers.add(name: "if-modified-since", value: lastModified) }
    }
}

/// What the cache did for an exchange: the `X-Cache` value, and the metric label in lower case.
enum CacheResult: String, CaseIterable, Sendable {
    case hit = "HIT", miss = "MISS", stale = "STALE", revalidated = "REVALIDATED", bypass = "BYPASS"

    var label: String { rawValue.lowercased() }

    /// This cache's member of RFC 9211's `Cache-Status` list (an upstream cache's members come before it).
    var cacheStatus: String {
        switch self {
        case .hit: return "gateway; hit"
        case .stale: return "gateway; hit; detail=stale"
        case .revalidated: return "gateway; fwd=stale; fwd-status=304"
        case .miss: return "gateway; fwd=miss"
        case .bypass: return "gateway; fwd=bypass"
        }
    }

    /// `X-Cache` (replacing one from upstream) and this cache's `Cache-Status` member (after any from upstream).
    func mark(_ headers: inout HeaderList) {
        headers.replaceOrAdd(name: "x-cache", value: rawValue)
        headers.add(name: "cache-status", value: cacheStatus)
    }
}

/// A response being copied into the cache as it streams to the client.
struct CacheFill {
    var entry: CacheEntry
    let limit: Int
}

/// Fields a 304 carries from the stored response (RFC 9110 §15.4.5).
private let notModifiedFields: Set<String> = ["cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"]

extension ProxyExchange {
    // MARK: Request side

    /// After the route's filters (auth and rate limits first: a cached answer is still only for callers
    /// allowed to ask): answer from the cache, wait for a fetch already under way, or forward.
    func lookupCache() {
        guard let route = context.route, let policy = route.cache else { return forward() }
        let method = head.method
        let host = HeaderRules.hostName(head.headers.first(name: "host") ?? "").description
        let key = policy.key(host: host, target: head.target) + route.destinations[destinationIndex].cacheKeySuffix
        var cacheState = CacheState(policy: policy, key: key, requestCC: CacheControl(head.headers.values(name: "cache-control")))
        guard method == .GET || method == .HEAD, upgrade == nil else {
            cacheState.result = .bypass
            caching = cacheState
            return forward()
        }
        if cacheState.requestCC.noStore {
            cacheState.result = .bypass
            caching = cacheState
            return forward()
        }
        caching = cacheState
        if let variants = policy.cache.memoryVariants(key) {
            return decide(variants, mayWait: true)
        }
        guard let fetched = policy.cache.sharedVariants(key, on: connection.eventLoop) else {
            return decide([], mayWait: true)
        }
        fetched.hop(to: connection.eventLoop).assumeIsolated().whenComplete { result in
            guard case .filtering = self.state else { return }  // the client left meanwhile
            self.decide((try? result.get()) ?? [], mayWait: true)
        }
    }

    /// Picks the variant this request selects and decides: hit, stale-while-revalidate, revalidate or miss.
    private func decide(_ variants: [CacheEntry], mayWait: Bool) {
        guard var cacheState = caching else { return forward() }
        let hasAuthorization = head.headers.contains(name: "authorization")
        let now = ResponseCache.now()
        let entry = variants.first { $0.selected(by: head.headers) && (!hasAuthorization || $0.shareableWithAuthorization) }
        guard let entry else { return miss(mayWait: mayWait) }
        let age = entry.age(now: now)
        let pragmaNoCache = head.headers.containsToken("no-cache", inField: "pragma")
        switch HTTPCaching.use(entry.facts, request: cacheState.requestCC, requestPragmaNoCache: pragmaNoCache, age: age, lifetime: entry.lifetime) {
        case .fresh:
            serveFromCache(entry, as: .hit, now: now)
        case .staleWhileRevalidate:
            refreshInBackground(entry)
            serveFromCache(entry, as: .stale, now: now)
        case .revalidate:
            cacheState.stale = entry
            if entry.facts.hasValidator && !cacheState.requestCC.onlyIfCached {
                cacheState.revalidating = true
                cacheState.result = .revalidated
                caching = cacheState
                forward()
            } else {
                caching = cacheState
                miss(mayWait: mayWait)
            }
        }
    }

    /// Nothing usable stored: forward, after any fetch of the same key already in flight (collapsing).
    private func miss(mayWait: Bool) {
        guard var cacheState = caching else { return forward() }
        cacheState.result = .miss
        if cacheState.requestCC.onlyIfCached {
            caching = cacheState
            return respond(error: .notCached)
        }
        // Only full GETs fill the cache; conditional requests pass through as they are.
        guard head.method == .GET, mayWait, !Self.isConditional(head.headers) else {
            caching = cacheState
            return forward()
        }
        let loop = connection.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let (leader, waiter) = cacheState.policy.cache.joinFill(cacheState.key) {
            loop.execute { bound.value.fillEnded() }
        }
        if leader {
            cacheState.leader = true
            caching = cacheState
            return forward()
        }
        cacheState.waiter = waiter
        cacheState.waitTimer = loop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(cacheState.policy.cache.config.lockTimeoutMs))) {
            self.waitTimedOut()
        }
        caching = cacheState
    }

    /// The request this one waited for has its answer: look again (and go upstream alone if it was not stored).
    private func fillEnded() {
        guard case .filtering = state, var cacheState = caching, cacheState.waiter != nil else { return }
        cacheState.waitTimer?.cancel()
        cacheState.waitTimer = nil
        cacheState.waiter = nil
        caching = cacheState
        decide(cacheState.policy.cache.memoryVariants(cacheState.key) ?? [], mayWait: false)
    }

    private func waitTimedOut() {
        guard case .filtering = state, var cacheState = caching, let waiter = cacheState.waiter else { return }
        cacheState.policy.cache.abandon(cacheState.key, waiter: waiter)
        cacheState.waiter = nil
        cacheState.waitTimer = nil
        caching = cacheState
        forward()
    }

    static func isConditional(_ headers: HeaderList) -> Bool {
        headers.contains(name: "if-none-match") || headers.contains(name: "if-modified-since") || headers.contains(name: "if-match")
            || headers.contains(name: "if-unmodified-since") || headers.contains(name: "if-range")
    }

    // MARK: Answers from the cache

    /// Answers with a stored response (or 304 when the client's own validators match it).
    func serveFromCache(_ entry: CacheEntry, as result: CacheResult, now: Int) {
        caching?.result = result
        var headers = HeaderList()
        if entry.status == 200 && clientValidatorsMatch(entry) {
            for (name, value) in entry.headers where notModifiedFields.contains(name.lowercased()) { headers.add(name: name, value: value) }
            headers.add(name: "age", value: String(entry.age(now: now)))
            result.mark(&headers)
            return respond(GatewayResponse(status: 304, headers: headers))
        }
        for (name, value) in entry.headers { headers.add(name: name, value: value) }
        headers.add(name: "age", value: String(entry.age(now: now)))
        result.mark(&headers)
        respond(GatewayResponse(status: entry.status, headers: headers, body: entry.body))
    }

    /// RFC 9110 §13.1: If-None-Match (weak comparison) takes precedence over If-Modified-Since.
    private func clientValidatorsMatch(_ entry: CacheEntry) -> Bool {
        let ifNoneMatch = head.headers.values(name: "if-none-match").joined(separator: ",")
        if !ifNoneMatch.isEmpty {
            guard let etag = entry.header("etag") else { return false }
            let tags = ifNoneMatch.split(separator: ",").map { $0.trimmingASCIISpaces() }
            return tags.contains("*") || tags.contains { Self.weakTag($0) == Self.weakTag(etag) }
        }
        if let since = head.headers.first(name: "if-modified-since").flatMap(HTTPDate.parse),
            let modified = (entry.header("last-modified") ?? entry.header("date")).flatMap(HTTPDate.parse)
        {
            return modified <= since
        }
        return false
    }

    static func weakTag(_ tag: String) -> String { tag.hasPrefix("W/") ? String(tag.dropFirst(2)) : tag }

    /// stale-if-error: the upstream failed; a stale copy that allows it answers instead. False when none does.
    func serveStaleOnError() -> Bool {
        guard let cacheState = caching, let stale = cacheState.stale else { return false }
        let now = ResponseCache.now()
        guard HTTPCaching.mayServeOnError(stale.facts, request: cacheState.requestCC, age: stale.age(now: now), lifetime: stale.lifetime)
        else { return false }
        caching?.revalidating = false
        serveFromCache(stale, as: .stale, now: now)
        return true
    }

    // MARK: Response side

    enum HeadDisposition {
        /// The response goes to the client (perhaps copied into the cache on the way).
        case forward
        /// A 304 to our revalidation: nothing goes to the client until it ends, then the refreshed copy does.
        case absorb
        /// The cache already answered the client (stale-if-error).
        case answered
    }

    /// Looks at the upstream's response head: keeps a copy to store, merges a 304 into the stale copy,
    /// invalidates after unsafe methods, serves stale on a 5xx.
    func cacheResponseHead(_ response: inout ResponseHead) -> HeadDisposition {
        guard var cacheState = caching else { return .forward }
        let status = response.status
        if !head.method.isSafe {
            if (200..<400).contains(status) { invalidate(after: response, policy: cacheState.policy) }
            cacheState.result.mark(&response.headers)
            for field in CacheEntry.tagFields { response.headers.remove(name: field) }
            return .forward
        }
        if cacheState.revalidating, status == 304, let stale = cacheState.stale {
            cacheState.refreshed = Self.refresh(stale, with: response, requestTime: cacheState.requestTime)
            caching = cacheState
            return .absorb
        }
        if status >= 500, !responseStarted, serveStaleOnError() { return .answered }
        if cacheState.revalidating { cacheState.result = .miss }  // a full answer replaces the stored copy
        if head.method == .GET, status != 304, cacheState.result != .bypass {
            cacheState.fill = makeFill(response, cacheState: cacheState)
        }
        if cacheState.fill == nil { releaseLeadership(&cacheState) }
        cacheState.result.mark(&response.headers)
        for field in CacheEntry.tagFields { response.headers.remove(name: field) }  // read above; not for clients
        caching = cacheState
        return .forward
    }

    func cacheResponseBody(_ buffer: ByteBuffer) {
        guard var cacheState = caching, var fill = cacheState.fill else { return }
        if fill.entry.body.readableBytes + buffer.readableBytes > fill.limit {
            // Too large to keep: it streams through uncached, and whoever waits for it goes upstream.
            cacheState.fill = nil
            releaseLeadership(&cacheState)
        } else {
            fill.entry.body.writeImmutableBuffer(buffer)
            cacheState.fill = fill
        }
        caching = cacheState
    }

    /// The upstream response ended. Stores what was copied; for an absorbed 304 serves the refreshed copy
    /// and returns false.
    func cacheResponseEnd() -> Bool {
        guard var cacheState = caching else { return true }
        if let refreshed = cacheState.refreshed {
            cacheState.refreshed = nil
            caching = cacheState
            cacheState.policy.cache.store(cacheState.key, refreshed, on: connection.eventLoop)
            serveFromCache(refreshed, as: .revalidated, now: ResponseCache.now())
            return false
        }
        if var fill = cacheState.fill {
            fill.entry.headers.removeAll { $0.name.lowercased() == "content-length" }
            fill.entry.headers.append((name: "content-length", value: String(fill.entry.body.readableBytes)))
            cacheState.policy.cache.store(cacheState.key, fill.entry, on: connection.eventLoop)
            cacheState.fill = nil
        }
        releaseLeadership(&cacheState)
        caching = cacheState
        return true
    }

    /// Whatever happened, nobody keeps waiting on this exchange, and the lookup is counted once.
    func cacheExchangeFinished() {
        guard var cacheState = caching else { return }
        cacheState.waitTimer?.cancel()
        if let waiter = cacheState.waiter { cacheState.policy.cache.abandon(cacheState.key, waiter: waiter) }
        releaseLeadership(&cacheState)
        cacheState.fill = nil
        caching = nil
        cacheState.policy.lookups[cacheState.result]?.increment()
    }

    private func releaseLeadership(_ cacheState: inout CacheState) {
        guard cacheState.leader else { return }
        cacheState.leader = false
        cacheState.policy.cache.endFill(cacheState.key)
    }

    /// A copy of a storable response, or nil (not storable, or announced larger than max_object_bytes).
    private func makeFill(_ response: ResponseHead, cacheState: CacheState) -> CacheFill? {
        CacheEntry.beginning(
            response, requestHeaders: head.headers, requestCC: cacheState.requestCC, policy: cacheState.policy,
            requestTime: cacheState.requestTime
        ).map { CacheFill(entry: $0, limit: cacheState.policy.cache.config.maxObjectBytes) }
    }

    /// RFC 9111 §4.3.4: a 304 updates the stored headers it carries and restarts the entry's age.
    static func refresh(_ stale: CacheEntry, with response: ResponseHead, requestTime: Int) -> CacheEntry {
        var entry = stale
        var updated: [String: [String]] = [:]
        for (name, value) in response.headers {
            let lower = name.lowercased()
            guard !["content-length", "transfer-encoding", "set-cookie", "age", "x-cache", "cache-status", "content-encoding"].contains(lower),
                !CacheEntry.tagFields.contains(lower)
            else { continue }
            updated[lower, default: []].append(value)
        }
        let responseTime = ResponseCache.now()
        // The validation happened now: without a Date of its own, the 304 dates the refreshed copy.
        if updated["date"] == nil { updated["date"] = [HTTPDate.format(responseTime)] }
        entry.headers.removeAll { updated[$0.name.lowercased()] != nil }
        for (name, values) in updated.sorted(by: { $0.key < $1.key }) {
            for value in values { entry.headers.append((name: name, value: value)) }
        }
        var facts = CacheEntry.facts(of: ResponseHead(status: stale.status, headers: HeaderList(entry.headers.map { ($0.name, $0.value) })))
        if facts.date == nil { facts.date = responseTime }
        entry.facts = facts
        let tags = CacheEntry.tags(of: response.headers)
        if !tags.isEmpty { entry.tags = tags }  // a 304 that names tags names them all
        entry.requestTime = requestTime
        entry.responseTime = responseTime
        entry.lifetime = HTTPCaching.freshnessLifetime(facts, responseTime: responseTime, defaultTTL: stale.lifetime)
        return entry
    }

    /// RFC 9111 §4.4: after a successful unsafe request, the target URI and same-host Location and
    /// Content-Location are invalid.
    private func invalidate(after response: ResponseHead, policy: RouteCachePolicy) {
        let host = HeaderRules.hostName(head.headers.first(name: "host") ?? "").description
        var targets = [head.target]
        for name in ["location", "content-location"] {
            guard let value = response.headers.first(name: name) else { continue }
            if value.hasPrefix("/") {
                targets.append(value)
            } else if let scheme = value.range(of: "://") {
                let rest = value[scheme.upperBound...]
                let slash = rest.firstIndex(of: "/") ?? rest.endIndex
                let authority = HeaderRules.hostName(String(rest[..<slash]))
                if authority.lowercased() == host.lowercased() { targets.append(slash == rest.endIndex ? "/" : String(rest[slash...])) }
            }
        }
        // On a split route every member's copy goes: the versions share the state the request changed.
        let suffixes = context.route?.destinations.map(\.cacheKeySuffix) ?? [""]
        for target in targets {
            for suffix in suffixes { policy.cache.invalidate(policy.key(host: host, target: target) + suffix, on: connection.eventLoop) }
        }
    }

    // MARK: stale-while-revalidate

    /// Serves stale now and refreshes the copy once in the background (one refresh per key at a time).
    private func refreshInBackground(_ entry: CacheEntry) {
        guard let cacheState = caching, let route = context.route, cacheState.policy.cache.beginRefresh(cacheState.key) else { return }
        var upstreamHead = makeUpstreamHead(route)
        CacheState.addValidators(of: entry, to: &upstreamHead.headers)
        let refresh = BackgroundRefresh(
            cache: cacheState.policy.cache, key: cacheState.key, policy: cacheState.policy, stale: entry, requestHeaders: head.headers,
            eventLoop: connection.eventLoop)
        let call = forwarder.makeCall(
            upstream: route.destinations[destinationIndex].upstreamIndex, head: upstreamHead, framing: .none, preserveHost: route.preserveHost,
            requestID: context.requestID, clientIP: context.clientIP, settings: route.destinations[destinationIndex].settings, delegate: refresh)
        refresh.call = call
        call.start()
        call.sendEnd()
    }
}

/// A stale-while-revalidate refresh: an upstream call with no client, whose answer (a 304 or a new
/// storable response) updates the cache.
final class BackgroundRefresh: UpstreamCallDelegate {
    let cache: ResponseCache
    let key: String
    let policy: RouteCachePolicy
    let stale: CacheEntry
    let requestHeaders: HeaderList
    let eventLoop: EventLoop
    var call: UpstreamCall?
    private var fill: CacheEntry?
    private var refreshed: CacheEntry?
    private let requestTime = ResponseCache.now()

    init(cache: ResponseCache, key: String, policy: RouteCachePolicy, stale: CacheEntry, requestHeaders: HeaderList, eventLoop: EventLoop) {
        self.eventLoop = eventLoop
        self.cache = cache
        self.key = key
        self.policy = policy
        self.stale = stale
        self.requestHeaders = requestHeaders
    }

    func upstreamConnected() {}

    func upstreamResponseHead(_ head: consuming ResponseHead) {
        var response = consume head
        HeaderRules.prepareDownstreamResponse(&response.headers)
        if response.status == 304 {
            refreshed = ProxyExchange.refresh(stale, with: response, requestTime: requestTime)
            return
        }
        fill = CacheEntry.beginning(response, requestHeaders: requestHeaders, requestCC: CacheControl(), policy: policy, requestTime: requestTime)
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard var entry = fill else { return }
        if entry.body.readableBytes + buffer.readableBytes > cache.config.maxObjectBytes {
            fill = nil
            return
        }
        entry.body.writeImmutableBuffer(buffer)
        fill = entry
    }

    func upstreamResponseEnd() {
        if let refreshed {
            cache.store(key, refreshed, on: eventLoop)
        } else if var entry = fill {
            entry.headers.append((name: "content-length", value: String(entry.body.readableBytes)))
            cache.store(key, entry, on: eventLoop)
        }
        done()
    }

    func upstreamReadComplete() {}
    func upstreamWritabilityChanged(isWritable: Bool) {}
    func upstreamFailed(_ error: GatewayError) { done() }

    private func done() {
        cache.endRefresh(key)
        call = nil
        fill = nil
    }
}

extension CacheEntry {
    /// The entry a storable response will become, its body still empty (it fills as the response streams);
    /// nil when RFC 9111 does not allow storing it, or its Content-Length already exceeds max_object_bytes.
    /// The stored headers leave out Set-Cookie, Age, X-Cache and the framing fields, and gain a Date when
    /// the upstream sent none.
    static func beginning(
        _ response: ResponseHead, requestHeaders: HeaderList, requestCC: CacheControl, policy: RouteCachePolicy, requestTime: Int
    ) -> CacheEntry? {
        let facts = CacheEntry.facts(of: response)
        guard
            HTTPCaching.storability(
                method: "GET", request: requestCC, hasAuthorization: requestHeaders.contains(name: "authorization"), response: facts,
                allowSetCookie: policy.allowSetCookie, defaultTTL: policy.defaultTTL) == nil
        else { return nil }
        if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > policy.cache.config.maxObjectBytes {
            return nil
        }
        let responseTime = ResponseCache.now()
        var headers: [(name: String, value: String)] = []
        for (name, value) in response.headers {
            let lower = name.lowercased()
            switch lower {
            case "set-cookie", "age", "x-cache", "cache-status", "content-length", "transfer-encoding": continue
            default: if !CacheEntry.tagFields.contains(lower) { headers.append((name, value)) }  // kept as `tags` instead
            }
        }
        var stored = facts
        if facts.date == nil {
            headers.append((name: "date", value: HTTPDate.format(responseTime)))
            stored.date = responseTime
        }
        let varyNames = response.headers.values(name: "vary").flatMap { $0.split(separator: ",") }.map { $0.trimmingASCIISpaces().lowercased() }
        let selectorNames = policy.keyHeaders + varyNames.filter { !policy.keyHeaders.contains($0) && !$0.isEmpty }
        var entry = CacheEntry(
            status: response.status, headers: headers, body: ByteBuffer(), requestTime: requestTime, responseTime: responseTime,
            facts: stored, lifetime: HTTPCaching.freshnessLifetime(stored, responseTime: responseTime, defaultTTL: policy.defaultTTL),
            selectors: selectorNames.map { (name: $0, value: ResponseCache.selectorValue($0, in: requestHeaders)) }, route: policy.route)
        entry.tags = tags(of: response.headers)
        return entry
    }
}
