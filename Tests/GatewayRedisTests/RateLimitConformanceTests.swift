import Foundation
import NIOConcurrencyHelpers
import GatewayCore
import GatewayFilters
import GatewayPolicy
import GatewayRedis
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TestSupport

/// One scenario: limits, then requests at given times with what must happen.
struct RateLimitVector: CustomStringConvertible {
    struct Step {
        var at: Double  // seconds
        var allowed: Bool
        var remaining: [Int]? = nil
        var retryAfter: Double? = nil  // seconds, of the first limit that refuses
    }

    var name: String
    var rules: [RateLimitRule]
    var steps: [Step]
    var description: String { name }
}

let second: Int64 = 1_000_000
let vectors: [RateLimitVector] = [
    RateLimitVector(
        name: "token bucket drains and refills",
        rules: [RateLimitRule(name: "b", algorithm: .tokenBucket(TokenBucket(capacity: 3, refillPerSecond: 1)))],
        steps: [
            .init(at: 0, allowed: true, remaining: [2]), .init(at: 0, allowed: true, remaining: [1]),
            .init(at: 0, allowed: true, remaining: [0]), .init(at: 0, allowed: false, remaining: [0], retryAfter: 1),
            .init(at: 0.5, allowed: false, retryAfter: 0.5), .init(at: 1, allowed: true, remaining: [0]),
            .init(at: 10, allowed: true, remaining: [2]),
        ]),
    RateLimitVector(
        name: "token bucket with cost and fractional refill",
        rules: [RateLimitRule(name: "b", algorithm: .tokenBucket(TokenBucket(capacity: 5, refillPerSecond: 0.5)), cost: 2)],
        steps: [
            .init(at: 0, allowed: true, remaining: [3]), .init(at: 0.1, allowed: true, remaining: [1]),
            .init(at: 0.2, allowed: false, remaining: [1], retryAfter: 1.8), .init(at: 2.2, allowed: true, remaining: [0]),
        ]),
    RateLimitVector(
        name: "sliding window is exact at the edge",
        rules: [RateLimitRule(name: "w", algorithm: .slidingWindow(SlidingWindowLog(limit: 3, windowMicros: 10 * second)))],
        steps: [
            .init(at: 1, allowed: true, remaining: [2]), .init(at: 2, allowed: true, remaining: [1]),
            .init(at: 9, allowed: true, remaining: [0]), .init(at: 10.5, allowed: false, remaining: [0], retryAfter: 0.5),
            .init(at: 11, allowed: true, remaining: [0]), .init(at: 11.5, allowed: false, retryAfter: 0.5),
            .init(at: 30, allowed: true, remaining: [2]),
        ]),
    RateLimitVector(
        name: "fixed window counts per aligned window and starts afresh",
        rules: [RateLimitRule(name: "f", algorithm: .fixedWindow(FixedWindow(limit: 3, windowMicros: 10 * second)), cost: 1)],
        steps: [
            .init(at: 7, allowed: true, remaining: [2]), .init(at: 8, allowed: true, remaining: [1]),
            .init(at: 9, allowed: true, remaining: [0]), .init(at: 9.5, allowed: false, remaining: [0], retryAfter: 0.5),
            .init(at: 10, allowed: true, remaining: [2]), .init(at: 10, allowed: true, remaining: [1]),
            .init(at: 10, allowed: true, remaining: [0]), .init(at: 19.25, allowed: false, remaining: [0], retryAfter: 0.75),
            .init(at: 45, allowed: true, remaining: [2]),
        ]),
    RateLimitVector(
        name: "fixed window with cost beside a bucket",
        rules: [
            RateLimitRule(name: "quota", algorithm: .fixedWindow(FixedWindow(limit: 5, windowMicros: 60 * second)), cost: 2),
            RateLimitRule(name: "burst", algorithm: .tokenBucket(TokenBucket(capacity: 10, refillPerSecond: 1))),
        ],
        steps: [
            .init(at: 1, allowed: true, remaining: [3, 9]), .init(at: 2, allowed: true, remaining: [1, 9]),
            .init(at: 3, allowed: false, remaining: [1, 9], retryAfter: 57),  // 1 left, the request costs 2; nothing charged
            .init(at: 60, allowed: true, remaining: [3, 9]),
        ]),
    RateLimitVector(
        name: "a request refused by one limit is charged by none",
        rules: [
            RateLimitRule(name: "burst", algorithm: .tokenBucket(TokenBucket(capacity: 2, refillPerSecond: 1))),
            RateLimitRule(name: "window", algorithm: .slidingWindow(SlidingWindowLog(limit: 3, windowMicros: 10 * second))),
        ],
        steps: [
            .init(at: 0, allowed: true, remaining: [1, 2]), .init(at: 0, allowed: true, remaining: [0, 1]),
            .init(at: 0, allowed: false, remaining: [0, 0], retryAfter: 1),  // burst refuses; window not charged
            .init(at: 2, allowed: true, remaining: [1, 0]),  // the window still had its last slot
            .init(at: 2, allowed: false, remaining: [0, 0], retryAfter: 8),  // window refuses; burst not charged
            .init(at: 2, allowed: false, remaining: [0, 0], retryAfter: 8),
        ]),
    RateLimitVector(
        name: "shadow limits never refuse and are not charged when they would",
        rules: [
            RateLimitRule(name: "enforced", algorithm: .slidingWindow(SlidingWindowLog(limit: 5, windowMicros: 10 * second))),
            RateLimitRule(name: "shadow", algorithm: .tokenBucket(TokenBucket(capacity: 1, refillPerSecond: 1)), enforce: false),
        ],
        steps: [
            .init(at: 0, allowed: true, remaining: [4, 0]), .init(at: 0.1, allowed: true, remaining: [3, 0]),
            .init(at: 1.1, allowed: true, remaining: [2, 0]),
        ]),
]

extension RateLimitStore {
    /// The store's answer as an async value (the store is called on `loop`, as the gateway does).
    func check(_ request: RateLimitRequest, on loop: EventLoop) async throws -> RateLimitResult {
        try await loop.flatSubmit {
            let promise = loop.makePromise(of: RateLimitResult.self)
            self.check(request, on: loop) { promise.completeWith($0) }
            return promise.futureResult
        }.get()
    }
}

/// Replays a vector against a store and returns every result.
func replay(_ vector: RateLimitVector, prefix: String, check: (RateLimitRequest, Int64) async throws -> RateLimitResult) async throws -> [RateLimitResult] {
    var results: [RateLimitResult] = []
    let checks = vector.rules.map { RateLimitCheck(rule: $0, key: "gw:rl:{\(prefix)}:\($0.name)") }
    for (index, step) in vector.steps.enumerated() {
        let request = RateLimitRequest(hashTag: prefix, checks: checks, nonce: "n\(index)")
        results.append(try await check(request, Int64(step.at * 1_000_000)))
    }
    return results
}

func verify(_ vector: RateLimitVector, _ results: [RateLimitResult], store: String) {
    for (step, result) in zip(vector.steps, results) {
        #expect(result.allowed == step.allowed, "\(store) \(vector.name) at \(step.at)s")
        if let remaining = step.remaining {
            #expect(result.evaluations.map(\.remaining) == remaining, "\(store) \(vector.name) at \(step.at)s")
        }
        if let retry = step.retryAfter, let refusing = result.evaluations.first(where: { !$0.allowed }) {
            // Within a microsecond: both stores round the same float arithmetic up to whole microseconds.
            #expect(abs(refusing.retryAfterMicros - Int64(retry * 1_000_000)) <= 1, "\(store) \(vector.name) at \(step.at)s")
        }
    }
}

@Suite(.serialized) struct RateLimitConformanceTests {
    /// A throwaway redis-server and a connected one-connection client on its own event loop.
    static func connectedClient() async throws -> (RedisServer, MultiThreadedEventLoopGroup, RedisClient) {
        let server = try await RedisServer()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = try await RedisClient(
            url: try RedisURL.parse(server.url).get(), poolSize: 1, timeout: .seconds(2), group: group,
            logger: Logger(label: "test"))
        try await client.waitUntilConnected()
        return (server, group, client)
    }

    // The same vectors give the same decisions, remaining counts and retry times in memory and in Redis.
    @Test func memoryAndRedisAgree() async throws {
        let (server, group, client) = try await Self.connectedClient()
        defer { Task { await client.shutdown(); try? await group.shutdownGracefully() } }
        defer { withExtendedLifetime(server) {} }
        let now = NIOLockedValueBox<Int64>(0)
        let redisStore = RedisRateLimitStore(client: client, clockOverride: { now.withLockedValue { $0 } })
        let loop = group.next()
        for vector in vectors {
            let memory = MemoryRateLimitStore()
            let memoryResults = try await replay(vector, prefix: "mem") { request, at in memory.check(request, now: at) }
            verify(vector, memoryResults, store: "memory")
            let prefix = "r\(UUID().uuidString.prefix(8))"
            let redisResults = try await replay(vector, prefix: prefix) { request, at in
                now.withLockedValue { $0 = at }
                return try await redisStore.check(request, on: loop)
            }
            verify(vector, redisResults, store: "redis")
            #expect(memoryResults == redisResults, "\(vector.name)")
        }
    }

    // Requests arriving in one event-loop tick are decided by one script call per route (at most
    // maximumBatch requests each), one after another, with the same results as deciding them one at a time.
    @Test func requestsOfOneTickShareAScriptCall() async throws {
        let (server, group, client) = try await Self.connectedClient()
        defer { Task { await client.shutdown(); try? await group.shutdownGracefully() } }
        defer { withExtendedLifetime(server) {} }
        let now = NIOLockedValueBox<Int64>(5 * second)
        let store = RedisRateLimitStore(client: client, clockOverride: { now.withLockedValue { $0 } })
        let loop = group.next()
        let bucket = RateLimitRule(name: "b", algorithm: .tokenBucket(TokenBucket(capacity: 10, refillPerSecond: 1)))
        let window = RateLimitRule(name: "w", algorithm: .slidingWindow(SlidingWindowLog(limit: 15, windowMicros: 10 * second)))
        let small = RateLimitRule(name: "s", algorithm: .slidingWindow(SlidingWindowLog(limit: 5, windowMicros: 10 * second)))
        let shadow = RateLimitRule(
            name: "x", algorithm: .tokenBucket(TokenBucket(capacity: 3, refillPerSecond: 1)), enforce: false)
        // 70 requests to route "a" (a bucket of 10, a window of 15, and a shadow bucket of 3) interleaved
        // with 20 to route "b" (a window of 5).
        let requests = (0..<90).map { index in
            index % 9 < 7
                ? RateLimitRequest(
                    hashTag: "a", checks: [bucket, window, shadow].map { RateLimitCheck(rule: $0, key: "gw:rl:{a}:\($0.name)") },
                    nonce: "n\(index)")
                : RateLimitRequest(hashTag: "b", checks: [RateLimitCheck(rule: small, key: "gw:rl:{b}:s")], nonce: "n\(index)")
        }
        // Load the script first, so the statistics count only the batch.
        _ = try await store.check(RateLimitRequest(hashTag: "warm", checks: [], nonce: "w"), on: loop)
        _ = try await server.command(["CONFIG", "RESETSTAT"])

        let batched = try await loop.flatSubmit { () -> EventLoopFuture<[RateLimitResult]> in
            let futures = requests.map { request in
                let promise = loop.makePromise(of: RateLimitResult.self)
                store.check(request, on: loop) { promise.completeWith($0) }
                return promise.futureResult
            }
            return EventLoopFuture.whenAllSucceed(futures, on: loop)
        }.get()

        let memory = MemoryRateLimitStore()
        let expected = requests.map { memory.check($0, now: 5 * second) }
        #expect(batched == expected)
        #expect(batched.filter(\.allowed).count == 15)  // a: 10 (the bucket), b: 5
        #expect(batched.first?.evaluations.map(\.remaining) == [9, 14, 2])
        let stats = try await server.command(["INFO", "commandstats"])
        let evalsha = stats.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_evalsha:") }
        #expect(evalsha?.hasPrefix("cmdstat_evalsha:calls=3,") == true, "\(stats)")  // a: 64 + 6, b: 20

        // What the batch wrote is what one-at-a-time decisions would have left: the next request agrees.
        let next = try await store.check(requests[0], on: loop)
        #expect(next == memory.check(requests[0], now: 5 * second))
    }

    // Keys carry a TTL (no idle key lives forever) and are namespaced under one hash tag per route.
    @Test func keysExpireAndShareAHashTag() async throws {
        let (server, group, client) = try await Self.connectedClient()
        defer { Task { await client.shutdown(); try? await group.shutdownGracefully() } }
        defer { withExtendedLifetime(server) {} }
        let store = RedisRateLimitStore(client: client)
        let rules = [
            RateLimitRule(name: "b", algorithm: .tokenBucket(TokenBucket(capacity: 10, refillPerSecond: 5))),
            RateLimitRule(name: "w", algorithm: .slidingWindow(SlidingWindowLog(limit: 10, windowMicros: 3 * second))),
            RateLimitRule(name: "f", algorithm: .fixedWindow(FixedWindow(limit: 10, windowMicros: 4 * second))),
        ]
        let request = RateLimitRequest(
            hashTag: "orders", checks: rules.map { RateLimitCheck(rule: $0, key: "gw:rl:{orders}:\($0.name):ip:127.0.0.1") },
            nonce: "x")
        let loop = group.next()
        #expect(try await store.check(request, on: loop).allowed)
        let bucketTTL = Int(try await server.command(["PTTL", "gw:rl:{orders}:b:ip:127.0.0.1"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        let windowTTL = Int(try await server.command(["PTTL", "gw:rl:{orders}:w:ip:127.0.0.1"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(bucketTTL > 0 && bucketTTL <= 1200)  // (10 - 9) / 5 s to refill, plus a second
        #expect(windowTTL > 0 && windowTTL <= 3000)
        // A fixed window's counter lives until its window (aligned to the epoch, so at most 4 s) ends, plus a second.
        let fixedTTL = Int(try await server.command(["PTTL", "gw:rl:{orders}:f:ip:127.0.0.1"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(fixedTTL > 1000 && fixedTTL <= 5000)
        let fixed = try await server.command(["GET", "gw:rl:{orders}:f:ip:127.0.0.1"]).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(fixed.hasSuffix(":1") && (Int64(fixed.dropLast(2)) ?? 1) % (4 * second) == 0, "windowStart:count, got \(fixed)")
        let slotA = try await server.command(["CLUSTER", "KEYSLOT", "gw:rl:{orders}:b:ip:127.0.0.1"])
        let slotB = try await server.command(["CLUSTER", "KEYSLOT", "gw:rl:{orders}:w:header:abc"])
        #expect(slotA == slotB)
    }
}
