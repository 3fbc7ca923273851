import DemoUpstream
import Foundation
import Testing
import TestSupport

/// Rate limits over real sockets: the memory store in-process, and Redis shared by separate gateway
/// processes, including Redis dying mid-test.
@Suite(.serialized) struct RateLimitTests {
    static func config(upstreamPort: Int, limits: String, redis: String? = nil, onError: String = "allow", listenerPort: Int = 0) -> String {
        let store = redis == nil ? "" : #""redis": { "url": "\#(redis!)", "timeout_ms": \#(TestTime.ms(200)), "pool_size": 2 }, "rate_limiting": { "store": "redis", "on_store_error": "\#(onError)" },"#
        return """
            { "workers": 2, \(store)
              "listeners": [{ "name": "public", "address": "127.0.0.1", "port": \(listenerPort) }],
              "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreamPort)"] } },
              "routes": [{ "name": "limited", "upstream": "demo", "rate_limits": \(limits) }] }
            """
    }

    /// Sends `count` requests at once (one connection each) and returns their statuses and responses.
    static func burst(_ ports: [Int], count: Int, path: String = "/echo", headers: String = "") async throws -> [TestResponse] {
        try await withThrowingTaskGroup(of: TestResponse.self) { group in
            for index in 0..<count {
                let port = ports[index % ports.count]
                group.addTask {
                    let client = try await RawClient.connect(port: port)
                    try await client.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)\r\n")
                    let response = try await client.readResponse(timeout: .seconds(20))
                    await client.close()
                    return response
                }
            }
            var responses: [TestResponse] = []
            for try await response in group { responses.append(response) }
            return responses
        }
    }

    // In memory: headers on every answer, then 429 JSON with Retry-After once the window is used up.
    @Test func memoryStoreLimitsAndHeaders() async throws {
        let limits = #"[{ "name": "per-ip", "algorithm": "sliding_window", "key": "ip", "limit": 3, "window_seconds": 60 }]"#
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, limits: limits), upstreams: upstreams) { gateway in
                let started = ContinuousClock.now
                for remaining in [2, 1, 0] {
                    let response = try await gateway.request("GET", "/echo")
                    #expect(response.status == 200)
                    #expect(response.header("x-ratelimit-limit") == "3")
                    #expect(response.header("x-ratelimit-remaining") == String(remaining))
                    #expect(response.header("ratelimit-policy") == #""per-ip";q=3;w=60"#)
                    #expect(response.header("ratelimit")?.hasPrefix(#""per-ip";r=\#(remaining);t="#) == true)
                }
                let refused = try await gateway.request("GET", "/echo")
                #expect(refused.status == 429)
                #expect(refused.errorCode == "RATE_LIMITED")
                // The window frees up 60 s after the first request: whatever time has passed since (a slow,
                // sanitized run may take seconds) comes off, and no more.
                let elapsed = Int((ContinuousClock.now - started).components.seconds) + 1
                #expect(Int(refused.header("retry-after") ?? "") ?? 0 >= 60 - elapsed)
                #expect(refused.header("x-ratelimit-remaining") == "0")
                #expect(upstreams[0].requestsServed == 3)
            }
        }
    }

    // rate_limit_headers: false keeps the limit state off every answer; a refusal still carries Retry-After.
    @Test func hiddenLimitHeaders() async throws {
        let limits = #"[{ "name": "per-ip", "algorithm": "sliding_window", "key": "ip", "limit": 1, "window_seconds": 60 }]"#
        try await withUpstreams { upstreams in
            let config = Self.config(upstreamPort: upstreams[0].port, limits: limits)
                .replacingOccurrences(of: #""rate_limits": "#, with: #""rate_limit_headers": false, "rate_limits": "#)
            try await withGateway(config, upstreams: upstreams) { gateway in
                let allowed = try await gateway.request("GET", "/echo")
                let refused = try await gateway.request("GET", "/echo")
                #expect(allowed.status == 200 && refused.status == 429)
                let names = (allowed.headers + refused.headers).map { $0.name.lowercased() }
                let stateHeaders = names.filter { $0.hasPrefix("x-ratelimit") || $0.hasPrefix("ratelimit") }
                #expect(stateHeaders.isEmpty)
                #expect(Int(refused.header("retry-after") ?? "") ?? 0 >= 1)
            }
        }
    }

    // Header keys count per header value; shadow limits never refuse.
    @Test func headerKeysAndShadowMode() async throws {
        let limits = """
            [{ "name": "per-tenant", "algorithm": "token_bucket", "key": "header:X-Tenant", "capacity": 2, "refill_per_second": 0.001 },
             { "name": "watch", "algorithm": "sliding_window", "key": "route", "limit": 1, "window_seconds": 60, "enforce": false }]
            """
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, limits: limits), upstreams: upstreams) { gateway in
                func status(_ tenant: String) async throws -> Int {
                    try await gateway.request("GET", "/echo", headers: [("X-Tenant", tenant)]).status
                }
                for tenant in ["a", "a", "b", "b"] {
                    let code = try await status(tenant)
                    #expect(code == 200)
                }
                let exhausted = try await status("a")
                let other = try await status("c")
                #expect(exhausted == 429)
                #expect(other == 200)
                #expect(gateway.logs.entries("rate limit would reject (shadow mode)").count >= 3)
            }
        }
    }

    // Two gateway processes share one Redis: of 200 concurrent requests against 50 per window, exactly 50 pass.
    // (The fixed window is a year long, aligned to the epoch, so the burst cannot straddle two windows.)
    @Test(.timeLimit(.minutes(2)), arguments: [("sliding_window", 60), ("fixed_window", 31_536_000)])
    func exactAcrossInstances(_ algorithm: String, _ windowSeconds: Int) async throws {
        let redis = try await RedisServer()
        let limits = #"[{ "name": "shared", "algorithm": "\#(algorithm)", "key": "route", "limit": 50, "window_seconds": \#(windowSeconds) }]"#
        try await withUpstreams { upstreams in
            let first = try GatewayProcess(config: Self.config(upstreamPort: upstreams[0].port, limits: limits, redis: redis.url))
            let second = try GatewayProcess(config: Self.config(upstreamPort: upstreams[0].port, limits: limits, redis: redis.url))
            try await first.start()
            try await second.start()
            let responses = try await Self.burst([first.port, second.port], count: 200)
            let histogram = Dictionary(grouping: responses, by: { "\($0.status) \($0.errorCode ?? "")" }).mapValues(\.count)
            let allowed = responses.filter { $0.status == 200 }.count
            let refused = responses.filter { $0.status == 429 }
            let refusedWithRetryAfter = refused.allSatisfy { $0.errorCode == "RATE_LIMITED" && Int($0.header("retry-after") ?? "") ?? 0 >= 1 }
            let refusedWithHeaders = refused.allSatisfy { $0.header("x-ratelimit-remaining") == "0" && $0.header("x-ratelimit-limit") == "50" }
            #expect(allowed == 50, "\(histogram)")
            #expect(refused.count == 150)
            #expect(refusedWithRetryAfter)
            #expect(refusedWithHeaders)
            #expect(upstreams[0].requestsServed == 50)
            first.terminate()
            second.terminate()
            _ = await first.waitForExit(timeout: .seconds(10))
            _ = await second.waitForExit(timeout: .seconds(10))
        }
    }

    // A Redis token bucket refills at its configured rate (bounds from measured times, so load cannot flake it).
    @Test func tokenBucketRefillsInRedis() async throws {
        let redis = try await RedisServer()
        let limits = #"[{ "name": "bucket", "algorithm": "token_bucket", "key": "ip", "capacity": 4, "refill_per_second": 4 }]"#
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, limits: limits, redis: redis.url), upstreams: upstreams) { gateway in
                try await gateway.waitForRedis()
                let firstStart = ContinuousClock.now
                let first = try await Self.burst([gateway.port], count: 6)
                let firstEnd = ContinuousClock.now
                let allowedFirst = first.filter { $0.status == 200 }.count
                #expect(allowedFirst >= 4)
                try await Task.sleep(for: .milliseconds(600))
                let secondStart = ContinuousClock.now
                let second = try await Self.burst([gateway.port], count: 6)
                let secondEnd = ContinuousClock.now
                // Tokens refilled between the two bursts: at least rate x (quiet gap), at most rate x (whole span).
                let seconds = { (duration: Duration) in Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18 }
                let atLeast = Int(4 * seconds(secondStart - firstEnd))
                let atMost = min(4, Int(4 * seconds(secondEnd - firstStart)) + 1)
                let allowed = second.filter { $0.status == 200 }.count
                #expect(allowed >= min(atLeast, 4) && allowed <= atMost, "allowed \(allowed), expected \(atLeast)...\(atMost)")
            }
        }
    }

    // rediss://: the limits are kept in a Redis reached over TLS (verified against ca_file and server_name).
    @Test func redisOverTLS() async throws {
        let pki = try TestPKI(name: "redis")
        let certificate = try pki.issueServer("redis", names: ["redis.internal"])
        let redis = try await RedisServer(tls: .init(cert: certificate.cert, key: certificate.key, clientCA: pki.caFile))
        let limits = #"[{ "name": "window", "algorithm": "sliding_window", "key": "route", "limit": 3, "window_seconds": 60 }]"#
        try await withUpstreams { upstreams in
            let config = Self.config(upstreamPort: upstreams[0].port, limits: limits, redis: redis.url).replacingOccurrences(
                of: #""pool_size": 2 }"#, with: #""pool_size": 2, "tls": { "ca_file": "\#(pki.caFile)", "server_name": "redis.internal" } }"#)
            #expect(config.contains("rediss://") && config.contains("redis.internal"))
            try await withGateway(config, upstreams: upstreams) { gateway in
                try await gateway.waitForRedis()
                var statuses: [Int] = []
                for _ in 0..<5 { statuses.append(try await gateway.request("GET", "/echo").status) }
                #expect(statuses == [200, 200, 200, 429, 429])
                #expect(try await redis.command(["DBSIZE"]).trimmingCharacters(in: .whitespacesAndNewlines) != "0")
            }
        }
    }

    // Redis dies mid-test: allow passes, deny answers 503, local falls back to in-process limits; all recover.
    @Test(.timeLimit(.minutes(2)), arguments: ["allow", "deny", "local"])
    func redisOutage(_ mode: String) async throws {
        let redis = try await RedisServer()
        let limits = #"[{ "name": "shared", "algorithm": "sliding_window", "key": "route", "limit": 3, "window_seconds": 60 }]"#
        try await withUpstreams { upstreams in
            try await withGateway(
                Self.config(upstreamPort: upstreams[0].port, limits: limits, redis: redis.url, onError: mode), upstreams: upstreams
            ) { gateway in
                try await gateway.waitForRedis()
                #expect(try await gateway.request("GET", "/echo").status == 200)
                redis.kill()
                let started = ContinuousClock.now
                let during = try await (0..<5).asyncMap { _ in try await gateway.request("GET", "/echo") }
                #expect(ContinuousClock.now - started < .seconds(3))  // never stalls beyond the Redis timeout
                switch mode {
                case "allow":
                    let allPassed = during.allSatisfy { $0.status == 200 }
                    let noLimitHeaders = during.allSatisfy { $0.header("x-ratelimit-limit") == nil }
                    #expect(allPassed)
                    #expect(noLimitHeaders)
                case "deny":
                    let allRefused = during.allSatisfy { $0.status == 503 && $0.errorCode == "RATE_LIMIT_UNAVAILABLE" }
                    #expect(allRefused)
                default:
                    // In-process counters start from zero: 3 pass, then the local limit refuses.
                    #expect(during.map(\.status) == [200, 200, 200, 429, 429])
                }
                let outageLogs = gateway.logs.entries("rate limit store unavailable")
                #expect(outageLogs.count == 1)  // once per outage, not per request

                try await redis.start()
                try await gateway.waitForRedis()
                // Shared counting again: a fresh Redis holds one slot per request from here on.
                let after = try await (0..<4).asyncMap { _ in try await gateway.request("GET", "/echo") }
                #expect(after.map(\.status) == [200, 200, 200, 429])
                #expect(gateway.logs.entries("rate limit store available again").count == 1)
            }
        }
    }

    // redis.sentinels: the gateway finds the master through Redis Sentinel and counts there; when the master dies and
    // the sentinel promotes its replica, the gateway reconnects to the new master on its own (fail-open meanwhile) and
    // counts there, with a log line naming the move. A sentinel that knows no such master leaves Redis unavailable.
    @Test(.timeLimit(.minutes(2))) func followsASentinelFailover() async throws {
        let master = try await RedisServer()
        let replica = try await RedisServer(replicaOf: master.port)
        let replicating = try await OperationsTests.poll(until: true) {
            try await master.command(["INFO", "replication"]).contains("connected_slaves:1")
        }
        #expect(replicating)
        let sentinel = try await RedisSentinel(masterName: "gw-main", masterPort: master.port)
        let limits = #"[{ "name": "per-client", "algorithm": "sliding_window", "key": "header:x-client", "limit": 1000, "window_seconds": 60 }]"#
        func keys(_ server: RedisServer, _ client: String) async throws -> Bool {
            try await server.command(["KEYS", "*per-client*\(client)*"]).contains(client)
        }
        try await withUpstreams { upstreams in
            let config = Self.config(upstreamPort: upstreams[0].port, limits: limits, redis: "redis://gw-main/0").replacingOccurrences(
                of: #""pool_size": 2 }"#, with: #""pool_size": 2, "sentinels": ["\#(sentinel.address)"] }"#)
            try await withGateway(config, upstreams: upstreams) { gateway in
                try await gateway.waitForRedis()
                let before = try await gateway.request("GET", "/echo", headers: [("X-Client", "before-failover")])
                #expect(before.status == 200 && before.header("x-ratelimit-remaining") == "999")
                #expect(try await keys(master, "before-failover"), "counted in the master the sentinel named")

                master.kill()
                let promoted = try await OperationsTests.poll(until: true, timeout: .seconds(30)) { try await sentinel.master() == replica.port }
                #expect(promoted, "the sentinel promoted the replica")
                // Requests keep passing (fail-open) until the gateway has found the new master, then count there.
                let counted = try await OperationsTests.poll(until: true, timeout: .seconds(30)) {
                    let response = try await gateway.request("GET", "/echo", headers: [("X-Client", "after-failover")])
                    return response.status == 200 && response.header("x-ratelimit-limit") == "1000"
                }
                #expect(counted, "\(gateway.logs.entries("redis connect failed"))")
                #expect(try await keys(replica, "after-failover"), "counted in the promoted replica")
                let moved = gateway.logs.entries("redis master changed (sentinels)")
                let namesTheReplica = moved.allSatisfy { "\($0)".contains("127.0.0.1:\(replica.port)") }
                #expect(!moved.isEmpty && namesTheReplica, "\(moved)")
            }
            let unknown = config.replacingOccurrences(of: "redis://gw-main/0", with: "redis://no-such-group/0")
            try await withGateway(unknown, upstreams: upstreams) { gateway in
                try await Task.sleep(for: .milliseconds(300))
                #expect(await gateway.gateway.redis?.connectedCount() == 0)
                let failed = gateway.logs.entries("redis connect failed")
                let explained = failed.contains { "\($0)".contains("it does not know a master named no-such-group") }
                #expect(explained, "\(failed)")
                #expect(try await gateway.request("GET", "/echo").status == 200, "on_store_error allow")
            }
        }
    }
}

extension TestGateway {
    /// Waits until the gateway's Redis client has a connection on every loop.
    func waitForRedis(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while await (gateway.redis?.connectedCount() ?? 0) < 2 {
            if ContinuousClock.now > deadline { throw RawClient.TimeoutError(what: "Redis connections") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

/// `concurrency_limit`: requests of one key in flight at once.
@Suite struct ConcurrencyLimitTests {
    // The third slow request of one client while two run gets 429 at once; slots come back when requests end,
    // including one whose client went away.
    @Test(.timeLimit(.minutes(1))) func slotsAreHeldWhileRequestsRun() async throws {
        let routes = #"[{ "name": "slow", "upstream": "demo", "concurrency_limit": { "key": "ip", "max": 2 } }]"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<3 {
                        group.addTask {
                            // The third starts once the first two are surely running.
                            if index == 2 { try await Task.sleep(for: TestTime.duration(ms: 300)) }
                            return try await gateway.request("GET", "/slow?ms=\(index == 2 ? 0 : TestTime.ms(1200))").status
                        }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }.sorted()
                }
                #expect(statuses == [200, 200, 429])
                let refused = try await gateway.request("GET", "/echo")
                #expect(refused.status == 200, "both slots are free again")

                // A client that leaves gives its slot back.
                let gone = try await gateway.connect()
                try await gone.send("GET /slow?ms=\(TestTime.ms(5000)) HTTP/1.1\r\nHost: t\r\n\r\n")
                try await Task.sleep(for: TestTime.duration(ms: 200))
                await gone.close()
                try await Task.sleep(for: TestTime.duration(ms: 200))
                async let first = gateway.request("GET", "/slow?ms=\(TestTime.ms(300))")
                async let second = gateway.request("GET", "/slow?ms=\(TestTime.ms(300))")
                let pair = [try await first.status, try await second.status]
                #expect(pair == [200, 200])
            }
        }
    }

    @Test func refusalIsAJSONError() async throws {
        let routes = #"[{ "name": "one", "upstream": "demo", "concurrency_limit": { "key": "route", "max": 1 } }]"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes), upstreams: upstreams) { gateway in
                async let slow = gateway.request("GET", "/slow?ms=\(TestTime.ms(1500))")
                try await Task.sleep(for: TestTime.duration(ms: 300))
                let refused = try await gateway.request("GET", "/echo")
                #expect(refused.status == 429)
                #expect(refused.errorCode == "TOO_MANY_CONCURRENT_REQUESTS")
                #expect(refused.header("retry-after") == "1")
                #expect(try await slow.status == 200)
            }
        }
    }
}

