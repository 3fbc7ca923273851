import GatewayCore
import GatewayPolicy
import NIOCore

/// Rate limits kept in Redis, decided by one Lua script per request so they hold exactly across every
/// gateway instance sharing the Redis.
///
/// The script reads the time from Redis `TIME` (no clock skew between instances), evaluates every limit of
/// the request, and charges them only if every enforced one allows it. Its arithmetic mirrors
/// `TokenBucket` and `SlidingWindowLog` in GatewayPolicy step for step (the conformance suite checks it).
/// A bucket is one string key "tokens:updatedAtMicros" (GET, then SET with PX: two calls); a window is a
/// sorted set of request times.
/// All keys of a request share the `{route}` hash tag, so in a Redis Cluster they live in one slot.
public final class RedisRateLimitStore: RateLimitStore {
    private let client: RedisClient
    /// Tests pin the script's clock to replay vectors; production leaves it nil (Redis TIME).
    private let clockOverride: (@Sendable () -> Int64)?

    public init(client: RedisClient, clockOverride: (@Sendable () -> Int64)? = nil) {
        self.client = client
        self.clockOverride = clockOverride
    }

    public func check(
        _ request: RateLimitRequest, on eventLoop: EventLoop,
        completion: @escaping (Result<RateLimitResult, any Error>) -> Void
    ) {
        var keys: [String] = []
        var arguments: [String] = []
        keys.reserveCapacity(request.checks.count)
        arguments.reserveCapacity(2 + request.checks.count * 5)
        arguments.append(clockOverride.map { String($0()) } ?? "")
        // The nonce only makes sliding-window log entries unique; token buckets do not need it.
        arguments.append(request.checks.contains { $0.rule.isSlidingWindow } ? request.nonce : "")
        for check in request.checks {
            keys.append(check.key)
            arguments += check.rule.scriptArguments
        }
        let count = request.checks.count
        client.evaluate(Self.script, keys: keys, arguments: arguments, on: eventLoop) { reply in
            switch reply {
            case .success(let value):
                do {
                    completion(.success(try Self.result(from: value, checks: count)))
                } catch {
                    completion(.failure(error))
                }
            case .failure(let error):
                completion(.failure(RateLimitStoreError("\(error)")))
            }
        }
    }

    static func result(from reply: RedisValue, checks: Int) throws -> RateLimitResult {
        if case .error(let message) = reply { throw RateLimitStoreError("rate-limit script failed: \(message)") }
        guard case .array(let values) = reply, values.count == 1 + checks * 4 else {
            throw RateLimitStoreError("unexpected rate-limit script reply: \(reply)")
        }
        func integer(_ index: Int) throws -> Int64 {
            guard case .integer(let value) = values[index] else { throw RateLimitStoreError("unexpected rate-limit script reply: \(reply)") }
            return Int64(value)
        }
        var evaluations: [LimitEvaluation] = []
        evaluations.reserveCapacity(checks)
        for index in 0..<checks {
            let base = 1 + index * 4
            evaluations.append(
                LimitEvaluation(
                    allowed: try integer(base) == 1, remaining: Int(try integer(base + 1)),
                    retryAfterMicros: try integer(base + 2), resetAfterMicros: try integer(base + 3)))
        }
        return RateLimitResult(allowed: try integer(0) == 1, evaluations: evaluations)
    }

    /// KEYS: one per limit. ARGV: now override (or ""), nonce, then per limit: algorithm ("tb" or "sw"),
    /// two parameters (capacity and refill per second, or limit and window in µs), cost, enforce ("1"/"0").
    /// Returns {allowed, then per limit: allowed, remaining, retry µs, reset µs}.
    static let script = RedisScript(
        #"""
        local now
        if ARGV[1] ~= "" then
          now = tonumber(ARGV[1])
        else
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        end
        local nonce = ARGV[2]
        local n = #KEYS
        local results = {}
        local states = {}
        local all = 1
        for i = 1, n do
          local a = 2 + (i - 1) * 5
          local kind, p1, p2 = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
          local cost, enforce = tonumber(ARGV[a + 4]), ARGV[a + 5] == "1"
          local key = KEYS[i]
          local allowed, remaining, retry, reset
          if kind == "tb" then
            local capacity, rate = p1, p2
            local stored = redis.call('GET', key)
            local tokens = capacity
            if stored then
              local sep = string.find(stored, ':', 1, true)
              local elapsed = math.max(0, now - tonumber(string.sub(stored, sep + 1))) / 1000000
              tokens = math.min(capacity, tonumber(string.sub(stored, 1, sep - 1)) + elapsed * rate)
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
            states[i] = tokens
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
              local a = 2 + (i - 1) * 5
              local kind, p1, p2, cost = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
              local key = KEYS[i]
              if kind == "tb" then
                local left = states[i] - cost
                redis.call('SET', key, string.format('%.17g:%d', left, now), 'PX', math.ceil(((p1 - left) / p2 * 1000000 + 1000000) / 1000))
              else
                for c = 1, cost do
                  redis.call('ZADD', key, now, string.format('%d', now) .. ':' .. nonce .. ':' .. c)
                end
                redis.call('PEXPIRE', key, math.ceil(p2 / 1000))
              end
            end
          end
        end
        table.insert(results, 1, all)
        return results
        """#)
}
