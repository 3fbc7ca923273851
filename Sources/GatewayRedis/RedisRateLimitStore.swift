import GatewayCore
import GatewayPolicy
import NIOCore

/// Rate limits kept in Redis, decided by a Lua script so they hold exactly across every gateway instance
/// sharing the Redis.
///
/// The script reads the time from Redis `TIME` (no clock skew between instances), evaluates every limit of
/// a request, and charges them only if every enforced one allows it. Its arithmetic mirrors `TokenBucket`,
/// `SlidingWindowLog` and `FixedWindow` in GatewayPolicy step for step (the conformance suite checks it). A
/// bucket is one string key "tokens:updatedAtMicros"; a sliding window is a sorted set of request times; a
/// fixed window is one string key "windowStartMicros:count".
///
/// Requests decided on one event loop during one loop tick go to Redis together: one script call per route
/// decides them one after another, each as if it ran alone (a script runs atomically, so nothing interleaves).
/// Under load that turns many calls, each paying Redis's per-call and `TIME` cost, into one; when requests
/// trickle in, a call carries one request and nothing waits for company (the call leaves at the end of the
/// tick, when the connection flushes anyway). All keys of a call share the route's `{hash tag}`, so in a
/// Redis Cluster one call touches one slot.
public final class RedisRateLimitStore: RateLimitStore {
    /// Bounds how long one script call keeps Redis busy (a few hundred microseconds at most).
    static let maximumBatch = 64

    private let batchers: LoopLocal<DecisionBatcher>

    /// - Parameter clockOverride: tests pin the script's clock to replay vectors; production leaves it nil
    ///   (Redis TIME).
    public init(client: RedisClient, clockOverride: (@Sendable () -> Int64)? = nil) {
        batchers = LoopLocal(loops: client.eventLoops) { loop in
            DecisionBatcher(client: client, eventLoop: loop, clockOverride: clockOverride)
        }
    }

    public func check(
        _ request: RateLimitRequest, on eventLoop: EventLoop,
        completion: @escaping (Result<RateLimitResult, any Error>) -> Void
    ) {
        batchers.value(on: eventLoop).add(request, completion: completion)
    }

    /// Splits the script's reply, one text of integers separated by spaces, into one result per request.
    static func results(from reply: RedisValue, checks: [Int]) throws -> [RateLimitResult] {
        if case .error(let message) = reply { throw RateLimitStoreError("rate-limit script failed: \(message)") }
        guard case .bulk(let text) = reply else { throw RateLimitStoreError("unexpected rate-limit script reply: \(reply)") }
        var numbers = IntegerScanner(text)
        func integer() throws -> Int64 {
            guard let value = numbers.next() else { throw RateLimitStoreError("unexpected rate-limit script reply: \(reply)") }
            return value
        }
        var results: [RateLimitResult] = []
        results.reserveCapacity(checks.count)
        for count in checks {
            let allowed = try integer() == 1
            var evaluations: [LimitEvaluation] = []
            evaluations.reserveCapacity(count)
            for _ in 0..<count {
                evaluations.append(
                    LimitEvaluation(
                        allowed: try integer() == 1, remaining: Int(try integer()), retryAfterMicros: try integer(),
                        resetAfterMicros: try integer()))
            }
            results.append(RateLimitResult(allowed: allowed, evaluations: evaluations))
        }
        guard numbers.atEnd else { throw RateLimitStoreError("unexpected rate-limit script reply: \(reply)") }
        return results
    }

    /// KEYS: every limit key of every request, in order. ARGV: now override (or ""), the number of requests,
    /// then per request: nonce and its rules (`RateLimitRequest.scriptRules`: per limit algorithm ("tb",
    /// "sw" or "fw"), two parameters (capacity and refill per second, or limit and window in µs), cost, enforce
    /// ("1"/"0"); a route's requests share one text, parsed once per call).
    /// Returns one text of integers separated by spaces, per request: allowed, then per limit: allowed,
    /// remaining, retry µs, reset µs. (One string rather than an array of integers: hiredis would allocate
    /// a reply object for every integer.)
    /// Buckets read or charged earlier in the call are kept in a table and written once at the end (GET
    /// then SET with PX); windows are changed in Redis as each request is charged (a sliding window's sorted
    /// set of request times; a fixed window's "windowStart:count", expiring when its window ends).
    static let script = RedisScript(
        #"""
        local now
        if ARGV[1] ~= "" then
          now = tonumber(ARGV[1])
        else
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        end
        local parsed = {}
        local function rulesOf(text)
          local rules = parsed[text]
          if rules == nil then
            rules = {}
            for kind, p1, p2, cost, enforce in string.gmatch(text, '(%a+) ([^ ;]+) ([^ ;]+) ([^ ;]+) ([^ ;]+)') do
              rules[#rules + 1] = {kind, tonumber(p1), tonumber(p2), tonumber(cost), enforce == '1'}
            end
            parsed[text] = rules
          end
          return rules
        end
        local buckets = {}
        local charged, chargedOrder = {}, {}
        local replies = {}
        local k = 0
        for r = 1, tonumber(ARGV[2]) do
          local nonce, rules = ARGV[1 + r * 2], rulesOf(ARGV[2 + r * 2])
          local n = #rules
          local results, tokensOf, all = {}, {}, 1
          for i = 1, n do
            local kind, p1, p2, cost, enforce = unpack(rules[i])
            local key = KEYS[k + i]
            local allowed, remaining, retry, reset
            if kind == "tb" then
              local capacity, rate = p1, p2
              local tokens = buckets[key]
              if tokens == nil then
                tokens = capacity
                local stored = redis.call('GET', key)
                if stored then
                  local sep = string.find(stored, ':', 1, true)
                  local elapsed = math.max(0, now - tonumber(string.sub(stored, sep + 1))) / 1000000
                  tokens = math.min(capacity, tonumber(string.sub(stored, 1, sep - 1)) + elapsed * rate)
                end
                buckets[key] = tokens
              end
              if tokens >= cost then
                local left = tokens - cost
                allowed, remaining, retry = 1, math.floor(left), 0
                reset = math.ceil((capacity - left) / rate * 1000000)
              else
                allowed, remaining = 0, math.floor(tokens)
                retry = math.ceil((cost - tokens) / rate * 1000000)
                reset = math.ceil((capacity - tokens) / rate * 1000000)
              end
              tokensOf[i] = tokens
            elseif kind == "fw" then
              local limit, window = p1, p2
              local start = now - (now % window)
              local count = 0
              local stored = redis.call('GET', key)
              if stored then
                local sep = string.find(stored, ':', 1, true)
                if tonumber(string.sub(stored, 1, sep - 1)) == start then count = tonumber(string.sub(stored, sep + 1)) end
              end
              reset = start + window - now
              if count + cost <= limit then
                allowed, remaining, retry = 1, limit - count - cost, 0
              else
                allowed, remaining, retry = 0, math.max(0, limit - count), reset
              end
              tokensOf[i] = count
            else
              local limit, window = p1, p2
              redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
              local count = redis.call('ZCARD', key)
              local oldest = now
              if count > 0 then oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) end
              if count + cost <= limit then
                allowed, remaining, retry = 1, limit - count - cost, 0
              else
                allowed, remaining = 0, math.max(0, limit - count)
                local blocking = count + cost - limit - 1
                if blocking < count then
                  retry = tonumber(redis.call('ZRANGE', key, blocking, blocking, 'WITHSCORES')[2]) + window - now
                else
                  retry = window
                end
                retry = math.max(1, retry)
              end
              reset = oldest + window - now
            end
            if enforce and allowed == 0 then all = 0 end
            results[#results + 1] = allowed
            results[#results + 1] = remaining
            results[#results + 1] = retry
            results[#results + 1] = reset
          end
          if all == 1 then
            for i = 1, n do
              if results[(i - 1) * 4 + 1] == 1 then
                local kind, p1, p2, cost = unpack(rules[i])
                local key = KEYS[k + i]
                if kind == "tb" then
                  buckets[key] = tokensOf[i] - cost
                  if charged[key] == nil then
                    charged[key] = {p1, p2}
                    chargedOrder[#chargedOrder + 1] = key
                  end
                elseif kind == "fw" then
                  local start = now - (now % p2)
                  redis.call('SET', key, string.format('%d:%d', start, tokensOf[i] + cost), 'PX', math.ceil((start + p2 - now) / 1000) + 1000)
                else
                  for c = 1, cost do
                    redis.call('ZADD', key, now, string.format('%d', now) .. ':' .. nonce .. ':' .. c)
                  end
                  redis.call('PEXPIRE', key, math.ceil(p2 / 1000))
                end
              end
            end
          end
          replies[#replies + 1] = all
          for i = 1, #results do replies[#replies + 1] = string.format('%d', results[i]) end
          k = k + n
        end
        for _, key in ipairs(chargedOrder) do
          local capacity, rate = charged[key][1], charged[key][2]
          local left = buckets[key]
          redis.call('SET', key, string.format('%.17g:%d', left, now), 'PX', math.ceil(((capacity - left) / rate * 1000000 + 1000000) / 1000))
        end
        return table.concat(replies, ' ')
        """#)
}

/// The requests one event loop collects during a tick, grouped by hash tag, and sent when the tick's tasks run.
final class DecisionBatcher {
    typealias Completion = (Result<RateLimitResult, any Error>) -> Void

    private struct Pending {
        var request: RateLimitRequest
        var completion: Completion
    }

    private let client: RedisClient
    private let eventLoop: EventLoop
    private let clockOverride: (@Sendable () -> Int64)?
    /// Each group shares one hash tag and holds at most `maximumBatch` requests.
    private var groups: [[Pending]] = []
    private var sendScheduled = false

    init(client: RedisClient, eventLoop: EventLoop, clockOverride: (@Sendable () -> Int64)?) {
        self.client = client
        self.eventLoop = eventLoop
        self.clockOverride = clockOverride
    }

    func add(_ request: RateLimitRequest, completion: @escaping Completion) {
        let pending = Pending(request: request, completion: completion)
        if let index = groups.firstIndex(where: {
            $0.count < RedisRateLimitStore.maximumBatch && $0[0].request.hashTag == request.hashTag
        }) {
            groups[index].append(pending)
        } else {
            groups.append([pending])
        }
        if !sendScheduled {
            sendScheduled = true
            eventLoop.assumeIsolated().execute { self.sendAll() }
        }
    }

    private func sendAll() {
        sendScheduled = false
        let ready = groups
        groups.removeAll(keepingCapacity: true)
        for group in ready { send(group) }
    }

    private func send(_ group: [Pending]) {
        var keys: [String] = []
        var arguments: [String] = [clockOverride.map { String($0()) } ?? "", String(group.count)]
        var checks: [Int] = []
        checks.reserveCapacity(group.count)
        for pending in group {
            let request = pending.request
            // The nonce only makes sliding-window log entries unique; token buckets do not need it.
            arguments.append(request.checks.contains { $0.rule.isSlidingWindow } ? request.nonce : "")
            arguments.append(request.scriptRules)
            for check in request.checks { keys.append(check.key) }
            checks.append(request.checks.count)
        }
        client.evaluate(RedisRateLimitStore.script, keys: keys, arguments: arguments, on: eventLoop) { reply in
            let results: Result<[RateLimitResult], any Error>
            switch reply {
            case .success(let value): results = Result { try RedisRateLimitStore.results(from: value, checks: checks) }
            case .failure(let error): results = .failure(RateLimitStoreError("\(error)"))
            }
            switch results {
            case .success(let decided):
                for (pending, result) in zip(group, decided) { pending.completion(.success(result)) }
            case .failure(let error):
                for pending in group { pending.completion(.failure(error)) }
            }
        }
    }
}

/// Reads integers (optionally negative) separated by single spaces.
struct IntegerScanner {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { index >= bytes.count }

    mutating func next() -> Int64? {
        guard index < bytes.count else { return nil }
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var value: Int64 = 0
        var digits = 0
        while index < bytes.count, bytes[index] != UInt8(ascii: " ") {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10, digits < 18 else { return nil }
            value = value * 10 + Int64(digit)
            digits += 1
            index += 1
        }
        guard digits > 0 else { return nil }
        if index < bytes.count { index += 1 }  // the separator
        return negative ? -value : value
    }
}
