// RFC 9111 (HTTP Caching) for a shared cache, as pure functions of request, response and `now`.
// Times are whole seconds since the Unix epoch; the caller supplies them (no clock in here).

/// The directives of every `Cache-Control` field line of a message (RFC 9111 §5.2).
public struct CacheControl: Sendable, Equatable {
    public var noStore = false
    public var noCache = false
    public var isPrivate = false
    public var isPublic = false
    public var mustRevalidate = false
    public var proxyRevalidate = false
    public var onlyIfCached = false
    public var maxAge: Int?
    public var sMaxAge: Int?
    public var minFresh: Int?
    public var staleWhileRevalidate: Int?
    public var staleIfError: Int?

    public init() {}

    /// Parses the field values (each may hold several comma-separated directives). Names are
    /// case-insensitive; arguments may be tokens or quoted strings. A duplicated or malformed delta-seconds
    /// makes the value 0 (RFC 9111 §4.2.1 allows treating such a response as stale). A qualified `no-cache` or
    /// `private` (with a field list) is treated as the unqualified directive, which is the conservative reading.
    public init(_ values: [String]) {
        var seen: Set<String> = []
        for value in values {
            for directive in Self.split(value) {
                let (name, argument) = directive
                let duplicate = !seen.insert(name).inserted
                func seconds() -> Int { duplicate ? 0 : (argument.flatMap(Self.deltaSeconds) ?? 0) }
                switch name {
                case "no-store": noStore = true
                case "no-cache": noCache = true
                case "private": isPrivate = true
                case "public": isPublic = true
                case "must-revalidate": mustRevalidate = true
                case "proxy-revalidate": proxyRevalidate = true
                case "only-if-cached": onlyIfCached = true
                case "max-age": maxAge = seconds()
                case "s-maxage": sMaxAge = seconds()
                case "min-fresh": minFresh = seconds()
                case "stale-while-revalidate": staleWhileRevalidate = seconds()
                case "stale-if-error": staleIfError = seconds()
                default: break  // extensions we do not understand are ignored (§5.2.3)
                }
            }
        }
    }

    /// delta-seconds: digits only; values beyond 2^31 are capped there (§1.2.2).
    static func deltaSeconds(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(text.prefix(10)).map { min($0, 2_147_483_648) } ?? 2_147_483_648
    }

    /// (lowercased name, argument without quotes) per comma-separated directive.
    static func split(_ value: String) -> [(String, Substring?)] {
        var result: [(String, Substring?)] = []
        var rest = Substring(value)
        while !rest.isEmpty {
            var part: Substring
            // A quoted argument may contain commas.
            if let equals = rest.firstIndex(of: "="), rest[rest.index(after: equals)...].first == "\"",
                rest[..<equals].firstIndex(of: ",") == nil
            {
                let afterQuote = rest.index(equals, offsetBy: 2)
                let close = rest[afterQuote...].firstIndex(of: "\"") ?? rest.endIndex
                let end = rest[close...].firstIndex(of: ",") ?? rest.endIndex
                part = rest[..<end]
                rest = end == rest.endIndex ? "" : rest[rest.index(after: end)...]
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                part = rest[..<end]
                rest = end == rest.endIndex ? "" : rest[rest.index(after: end)...]
            }
            part = part.trimmingSpaces()
            guard !part.isEmpty else { continue }
            if let equals = part.firstIndex(of: "=") {
                var argument = part[part.index(after: equals)...].trimmingSpaces()
                if argument.hasPrefix("\"") { argument = argument.dropFirst() }
                if argument.hasSuffix("\"") { argument = argument.dropLast() }
                result.append((part[..<equals].trimmingSpaces().lowercased(), argument))
            } else {
                result.append((part.lowercased(), nil))
            }
        }
        return result
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }
}

/// What a shared cache may do with one response, and how long it stays fresh.
public enum HTTPCaching {
    /// Statuses a cache may give heuristic freshness (RFC 9110 §15.1 "heuristically cacheable").
    public static let heuristicallyCacheable: Set<Int> = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]
    /// Statuses this cache stores at all (with explicit freshness for the ones not heuristically cacheable).
    /// 206 is left out: partial content would need range assembly.
    public static let understood: Set<Int> = heuristicallyCacheable.union([302, 307, 451])
    /// The most heuristic freshness we ever grant (a common cap; RFC 9111 §4.2.2 leaves it to the cache).
    public static let maxHeuristicSeconds = 86_400

    /// The facts about a response that cacheability and freshness depend on.
    public struct Response: Sendable, Equatable {
        public var status: Int
        public var cacheControl: CacheControl
        /// Parsed `Date`, `Expires` (nil when absent; an invalid Expires is "already expired", see below),
        /// `Last-Modified`, and `Age` in seconds.
        public var date: Int?
        public var expires: Int?
        public var expiresInvalid = false
        public var lastModified: Int?
        public var age: Int?
        public var hasValidator: Bool
        public var setsCookie: Bool
        /// `Vary` lists `*`.
        public var varyAny: Bool

        public init(
            status: Int, cacheControl: CacheControl, date: Int? = nil, expires: Int? = nil, expiresInvalid: Bool = false,
            lastModified: Int? = nil, age: Int? = nil, hasValidator: Bool = false, setsCookie: Bool = false, varyAny: Bool = false
        ) {
            self.status = status
            self.cacheControl = cacheControl
            self.date = date
            self.expires = expires
            self.expiresInvalid = expiresInvalid
            self.lastModified = lastModified
            self.age = age
            self.hasValidator = hasValidator
            self.setsCookie = setsCookie
            self.varyAny = varyAny
        }

        var hasExplicitFreshness: Bool {
            cacheControl.sMaxAge != nil || cacheControl.maxAge != nil || expires != nil || expiresInvalid
        }
    }

    public enum NotStored: String, Sendable, Equatable {
        case method, status, requestNoStore = "request no-store", noStore = "no-store", isPrivate = "private"
        case authorization, setCookie = "set-cookie", varyAny = "vary *", noFreshness = "no freshness information"
    }

    /// RFC 9111 §3 for a shared cache: may this response to a GET be stored?
    /// - Parameters:
    ///   - hasAuthorization: the request carried `Authorization` (§3.5: only with public, s-maxage or must-revalidate).
    ///   - allowSetCookie: the operator allows storing responses that set cookies (the cookie is not stored).
    ///   - defaultTTL: freshness for responses without any (0: such responses are not stored).
    public static func storability(
        method: String, request: CacheControl, hasAuthorization: Bool, response: Response, allowSetCookie: Bool, defaultTTL: Int
    ) -> NotStored? {
        guard method == "GET" else { return .method }
        guard understood.contains(response.status) else { return .status }
        if request.noStore { return .requestNoStore }
        let cc = response.cacheControl
        if cc.noStore { return .noStore }
        if cc.isPrivate { return .isPrivate }
        if hasAuthorization && !(cc.isPublic || cc.sMaxAge != nil || cc.mustRevalidate) { return .authorization }
        if response.setsCookie && !allowSetCookie { return .setCookie }
        if response.varyAny { return .varyAny }
        // Storable only with explicit freshness, `public`, no-cache (stored, always revalidated), a heuristic
        // basis, or the operator's default.
        if response.hasExplicitFreshness || cc.isPublic || cc.noCache { return nil }
        if heuristicallyCacheable.contains(response.status) && (response.lastModified != nil || defaultTTL > 0) { return nil }
        return .noFreshness
    }

    /// §4.2.1: s-maxage, then max-age, then Expires - Date, then heuristics (§4.2.2: 10% of the time since
    /// Last-Modified, capped), then the operator's default. `no-cache` makes it 0: always revalidate.
    public static func freshnessLifetime(_ response: Response, responseTime: Int, defaultTTL: Int) -> Int {
        let cc = response.cacheControl
        if cc.noCache { return 0 }
        if let sMaxAge = cc.sMaxAge { return sMaxAge }
        if let maxAge = cc.maxAge { return maxAge }
        if response.expiresInvalid { return 0 }
        if let expires = response.expires { return max(0, expires - (response.date ?? responseTime)) }
        if heuristicallyCacheable.contains(response.status) || cc.isPublic {
            if let lastModified = response.lastModified {
                let since = (response.date ?? responseTime) - lastModified
                if since > 0 { return min(since / 10, maxHeuristicSeconds) }
            }
        }
        return defaultTTL
    }

    /// §4.2.3: the age of a stored response at `now`.
    /// - Parameters:
    ///   - requestTime: when the request that fetched it was sent; `responseTime`: when the response arrived.
    public static func currentAge(_ response: Response, requestTime: Int, responseTime: Int, now: Int) -> Int {
        let apparentAge = max(0, responseTime - (response.date ?? responseTime))
        let responseDelay = max(0, responseTime - requestTime)
        let correctedAgeValue = (response.age ?? 0) + responseDelay
        let correctedInitialAge = max(apparentAge, correctedAgeValue)
        return correctedInitialAge + max(0, now - responseTime)
    }

    /// What to do with a stored response for a new request.
    public enum Use: Sendable, Equatable {
        /// Fresh: serve it.
        case fresh
        /// Stale, but inside stale-while-revalidate: serve it and refresh in the background.
        case staleWhileRevalidate
        /// Must be validated with the origin first (conditional request when it has validators).
        case revalidate
    }

    /// §4 and §5.2.1 for one stored response: fresh enough for this request, usable stale, or to revalidate.
    public static func use(
        _ response: Response, request: CacheControl, requestPragmaNoCache: Bool, age: Int, lifetime: Int
    ) -> Use {
        if request.noCache || (requestPragmaNoCache && request == CacheControl()) { return .revalidate }
        var freshEnough = age < lifetime
        if let maxAge = request.maxAge, age > maxAge { freshEnough = false }
        if let minFresh = request.minFresh, lifetime - age < minFresh { freshEnough = false }
        if freshEnough { return .fresh }
        if mayServeStale(response), let window = response.cacheControl.staleWhileRevalidate, age - lifetime <= window,
            request.maxAge == nil, request.minFresh == nil
        {
            return .staleWhileRevalidate
        }
        return .revalidate
    }

    /// Whether a stale copy may answer when the origin fails (stale-if-error, RFC 5861 §4), from the
    /// response's directive or the request's.
    public static func mayServeOnError(_ response: Response, request: CacheControl, age: Int, lifetime: Int) -> Bool {
        guard mayServeStale(response) else { return false }
        let window = max(response.cacheControl.staleIfError ?? -1, request.staleIfError ?? -1)
        return window >= 0 && age - lifetime <= window
    }

    /// must-revalidate, proxy-revalidate and s-maxage forbid serving a stale copy without validation (§5.2.2).
    static func mayServeStale(_ response: Response) -> Bool {
        let cc = response.cacheControl
        return !(cc.mustRevalidate || cc.proxyRevalidate || cc.sMaxAge != nil || cc.noCache)
    }
}

/// RFC 3339 timestamps in config (`2027-01-31T00:00:00Z`, `2027-01-31T09:30:00+01:00`), or a bare date
/// (`2027-01-31`, midnight UTC), as Unix seconds. Fractions of a second are ignored.
public enum RFC3339 {
    public static func seconds(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count, range.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[$0]) }) else { return nil }
            return range.reduce(0) { $0 * 10 + Int(bytes[$1] - UInt8(ascii: "0")) }
        }
        guard bytes.count >= 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), (1...12).contains(month),
            (1...daysIn(month: month, year: year)).contains(day)
        else { return nil }
        let midnight = HTTPDate.daysFromCivil(year: year, month: month, day: day) * 86_400
        if bytes.count == 10 { return midnight }
        guard bytes.count >= 20, bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"), bytes[13] == UInt8(ascii: ":"),
            bytes[16] == UInt8(ascii: ":"), let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            let digits = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            guard index > digits else { return nil }
        }
        let local = midnight + hour * 3600 + minute * 60 + second
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            return index + 1 == bytes.count ? local : nil
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == bytes.count, bytes[index + 3] == UInt8(ascii: ":"), let hours = number(index + 1..<index + 3),
                let minutes = number(index + 4..<index + 6), hours < 24, minutes < 60
            else { return nil }
            let offset = hours * 3600 + minutes * 60
            return bytes[index] == UInt8(ascii: "+") ? local - offset : local + offset
        default:
            return nil
        }
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

/// IMF-fixdate, and the two obsolete formats a recipient must accept (RFC 9110 §5.6.7), as Unix seconds.
public enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let days = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    public static func parse(_ text: String) -> Int? {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" }).map(String.init)
        var day: Int?
        var month: Int?
        var year: Int?
        var time: (Int, Int, Int)?
        for part in parts {
            if let index = months.firstIndex(of: String(part.prefix(3)).lowercased()), part.count == 3 {
                month = index + 1
            } else if part.contains(":") {
                let pieces = part.split(separator: ":").compactMap { Int($0) }
                guard pieces.count == 3 else { return nil }
                time = (pieces[0], pieces[1], pieces[2])
            } else if let number = Int(part) {
                if day == nil && number >= 1 && number <= 31 && part.count <= 2 {
                    day = number
                } else {
                    year = part.count == 2 ? (number < 70 ? 2000 + number : 1900 + number) : number
                }
            }
        }
        guard let day, let month, let year, let (hour, minute, second) = time, hour < 24, minute < 60, second < 61 else { return nil }
        return daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
    }

    public static func format(_ seconds: Int) -> String {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let rest = seconds - days * 86_400
        let (year, month, day) = civilFromDays(days)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let weekday = Self.days[((days % 7) + 7) % 7]
        return "\(weekday), \(two(day)) \(monthNames[month - 1]) \(year) \(two(rest / 3600)):\(two(rest % 3600 / 60)):\(two(rest % 60)) GMT"
    }

    // Howard Hinnant's civil-date algorithms.
    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z: Int) -> (Int, Int, Int) {
        let z = z + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp + (mp < 10 ? 3 : -9)
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

/// A least-recently-used map bounded by a total cost (bytes), for the in-memory cache tier.
/// O(1) get, insert and eviction (a dictionary over a doubly linked list kept in arrays).
public struct LRUCache<Key: Hashable, Value> {
    fileprivate struct Node {
        var key: Key
        var value: Value
        var cost: Int
        var previous: Int
        var next: Int
    }

    private var nodes: [Node?] = []
    private var free: [Int] = []
    private var index: [Key: Int] = [:]
    private var head = -1  // most recently used
    private var tail = -1  // least recently used
    public private(set) var totalCost = 0
    public let capacity: Int

    public init(capacity: Int) { self.capacity = capacity }

    public var count: Int { index.count }

    /// The value, marked as most recently used.
    public mutating func get(_ key: Key) -> Value? {
        guard let slot = index[key] else { return nil }
        moveToFront(slot)
        return nodes[slot]?.value
    }

    /// The value without changing its recency.
    public func peek(_ key: Key) -> Value? { index[key].flatMap { nodes[$0]?.value } }

    /// Inserts or replaces; evicts least recently used entries until the total fits. A value costlier
    /// than the whole capacity is not stored. Returns the evicted keys.
    @discardableResult
    public mutating func set(_ key: Key, _ value: Value, cost: Int) -> [Key] {
        remove(key)
        guard cost <= capacity else { return [] }
        var evicted: [Key] = []
        while totalCost + cost > capacity, tail >= 0, let node = nodes[tail] {
            evicted.append(node.key)
            remove(node.key)
        }
        let node = Node(key: key, value: value, cost: cost, previous: -1, next: head)
        let slot: Int
        if let reused = free.popLast() {
            slot = reused
            nodes[slot] = node
        } else {
            slot = nodes.count
            nodes.append(node)
        }
        if head >= 0 { nodes[head]?.previous = slot }
        head = slot
        if tail < 0 { tail = slot }
        index[key] = slot
        totalCost += cost
        return evicted
    }

    @discardableResult
    public mutating func remove(_ key: Key) -> Value? {
        guard let slot = index.removeValue(forKey: key), let node = nodes[slot] else { return nil }
        unlink(slot)
        nodes[slot] = nil
        free.append(slot)
        totalCost -= node.cost
        return node.value
    }

    public mutating func removeAll(where shouldRemove: (Key, Value) -> Bool) {
        let doomed = index.compactMap { key, slot -> Key? in
            guard let node = nodes[slot] else { return nil }
            return shouldRemove(key, node.value) ? key : nil
        }
        for key in doomed { remove(key) }
    }

    /// Keys from most to least recently used.
    public var keysByRecency: [Key] {
        var keys: [Key] = []
        var slot = head
        while slot >= 0, let node = nodes[slot] {
            keys.append(node.key)
            slot = node.next
        }
        return keys
    }

    private mutating func unlink(_ slot: Int) {
        guard let node = nodes[slot] else { return }
        if node.previous >= 0 { nodes[node.previous]?.next = node.next } else { head = node.next }
        if node.next >= 0 { nodes[node.next]?.previous = node.previous } else { tail = node.previous }
    }

    private mutating func moveToFront(_ slot: Int) {
        guard slot != head else { return }
        unlink(slot)
        nodes[slot]?.previous = -1
        nodes[slot]?.next = head
        if head >= 0 { nodes[head]?.previous = slot }
        head = slot
        if tail < 0 { tail = slot }
    }
}

extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
extension LRUCache.Node: Sendable where Key: Sendable, Value: Sendable {}
