import Foundation
import GatewayConfig
import GatewayTLS
import Logging
import NIOCore
import NIOPosix
import Testing
import TestSupport

@testable import GatewayRedis

/// Runs `body` with a client for `url` on a one-thread event loop group.
/// `tls`: the settings for a rediss:// URL, made into a context as the gateway does.
func withClient<T>(
    _ url: String, poolSize: Int = 2, timeoutMs: Int64 = 500, tls: UpstreamTLSConfig? = nil, _ body: (RedisClient, EventLoop) async throws -> T
) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let parsed = try RedisURL.parse(url).get()
    var redisTLS: RedisTLS?
    if let tls, case .tcp(let host, _) = parsed.endpoint {
        redisTLS = RedisTLS(
            context: try UpstreamTLS.makeContext(tls, applicationProtocols: []), serverName: UpstreamTLS.serverName(host: host, settings: tls))
    }
    let client = try await RedisClient(
        url: parsed, poolSize: poolSize, timeout: .milliseconds(timeoutMs), tls: redisTLS, group: group, logger: Logger(label: "test"))
    do {
        let result = try await body(client, group.next())
        await client.shutdown()
        try await group.shutdownGracefully()
        return result
    } catch {
        await client.shutdown()
        try await group.shutdownGracefully()
        throw error
    }
}

extension RedisClient {
    func run(_ arguments: [String], on loop: EventLoop) async throws -> RedisValue {
        try await loop.flatSubmit { self.send(arguments, on: loop) }.get()
    }

    func waitUntilConnected(_ expected: Int = 1, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while await connectedCount() < expected {
            if ContinuousClock.now > deadline { throw RedisError("no connection after \(timeout)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

@Suite struct RESPTests {
    // Commands are framed by hiredis exactly as RESP says.
    @Test func encodes() {
        let buffer = RESP.encode(["SET", "key", "välue", ""], allocator: ByteBufferAllocator())
        #expect(String(buffer: buffer) == "*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n$6\r\nvälue\r\n$0\r\n\r\n")
    }

    // Replies of every type, split at every byte, come out whole and in order.
    @Test func parsesIncrementally() throws {
        let wire = "+OK\r\n-ERR bad\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*3\r\n:1\r\n$1\r\nx\r\n*0\r\n"
        let expected: [RedisValue] = [.status("OK"), .error("ERR bad"), .integer(42), .bulk(Array("hello".utf8)), .null, .array([.integer(1), .bulk([120]), .array([])])]
        for split in 1..<wire.utf8.count {
            let parser = RedisReplyParser()
            var values: [RedisValue] = []
            let bytes = Array(wire.utf8)
            parser.feed(ByteBuffer(bytes: bytes[..<split]))
            while let value = try parser.next() { values.append(value) }
            parser.feed(ByteBuffer(bytes: bytes[split...]))
            while let value = try parser.next() { values.append(value) }
            #expect(values == expected)
        }
    }

    @Test func rejectsGarbage() {
        let parser = RedisReplyParser()
        parser.feed(ByteBuffer(string: "?what\r\n"))
        do {
            let error = thrownError { _ = try parser.next() }
            #expect(error is RedisError, "\(String(describing: error))")
        }
    }

    // URL forms: host, port, database, credentials, TLS, Unix socket.
    @Test func urls() throws {
        #expect(try RedisURL.parse("redis://cache.local").get() == RedisURL(endpoint: .tcp(host: "cache.local", port: 6379)))
        #expect(try RedisURL.parse("redis://u:p%40ss@127.0.0.1:6380/3").get() == RedisURL(endpoint: .tcp(host: "127.0.0.1", port: 6380), user: "u", password: "p@ss", database: 3))
        #expect(try RedisURL.parse("redis://:secret@h").get().password == "secret")
        #expect(try RedisURL.parse("unix:///run/redis.sock?db=2&password=x").get() == RedisURL(endpoint: .unix(path: "/run/redis.sock"), password: "x", database: 2))
        #expect(try RedisURL.parse("rediss://:pw@cache.local:6380/1").get() == RedisURL(endpoint: .tcp(host: "cache.local", port: 6380), password: "pw", database: 1, tls: true))
        #expect(try RedisURL.parse("redis://cache.local").get().tls == false)
        do {
            let error = thrownError { _ = try RedisURL.parse("redis://h/x").get() }
            #expect(error is RedisError, "\(String(describing: error))")
        }
        do {
            let error = thrownError { _ = try RedisURL.parse("http://h").get() }
            #expect(error is RedisError, "\(String(describing: error))")
        }
    }
}

@Suite(.serialized) struct RedisClientTests {
    // Plain commands, and a thousand pipelined commands on one connection answered in order.
    @Test func commandsAndPipelining() async throws {
        let server = try await RedisServer()
        try await withClient(server.url, poolSize: 1) { client, loop in
            try await client.waitUntilConnected()
            #expect(try await client.run(["SET", "greeting", "hello"], on: loop) == .status("OK"))
            #expect(try await client.run(["GET", "greeting"], on: loop) == .bulk(Array("hello".utf8)))
            #expect(try await client.run(["GET", "missing"], on: loop) == .null)
            if case .error(let message) = try await client.run(["NOSUCHCOMMAND"], on: loop) {
                #expect(message.hasPrefix("ERR"))
            } else {
                Issue.record("expected an error reply")
            }
            let replies = try await loop.flatSubmit {
                EventLoopFuture.whenAllSucceed((0..<1000).map { _ in client.send(["INCR", "counter"], on: loop) }, on: loop)
            }.get()
            let expected = (1...1000).map { RedisValue.integer($0) }
            #expect(replies == expected)
        }
    }

    // The shared key-value store (acme.store: "redis"): values and their absence, SET NX as a lock that only the first
    // taker gets, expiry, deletion only by the holder, and the request path's callback form, on its event loop.
    @Test func keyValueStore() async throws {
        let server = try await RedisServer()
        try await withClient(server.url, poolSize: 1) { client, loop in
            try await client.waitUntilConnected()
            let store = RedisKeyValueStore(client: client, eventLoop: loop)
            #expect(try await store.get("gw:test:absent") == nil)
            #expect(try await store.set("gw:test:lock", to: "first", expiringAfter: 60, onlyIfAbsent: true))
            #expect(try await !store.set("gw:test:lock", to: "second", expiringAfter: 60, onlyIfAbsent: true))
            #expect(try await store.get("gw:test:lock") == "first")
            let ttl = try await client.run(["TTL", "gw:test:lock"], on: loop)
            #expect(ttl == .integer(60) || ttl == .integer(59), "\(ttl)")
            try await store.delete("gw:test:lock", ifItHolds: "second")
            #expect(try await store.get("gw:test:lock") == "first", "only the holder releases a lock")
            try await store.delete("gw:test:lock", ifItHolds: "first")
            #expect(try await store.get("gw:test:lock") == nil)
            let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
            #expect(try await store.set("gw:test:certificate", to: pem, expiringAfter: nil, onlyIfAbsent: false))
            #expect(try await client.run(["TTL", "gw:test:certificate"], on: loop) == .integer(-1))
            let viaCallback = try await loop.flatSubmit { () -> EventLoopFuture<String?> in
                let promise = loop.makePromise(of: String?.self)
                store.get("gw:test:certificate", on: loop) { result in
                    #expect(loop.inEventLoop)
                    promise.completeWith(result)
                }
                return promise.futureResult
            }.get()
            #expect(viaCallback == pem)
            server.kill()
            let outage = await thrownError(async: { _ = try await store.get("gw:test:certificate") })
            #expect(outage is RedisError, "\(String(describing: outage))")
        }
    }

    // AUTH from the URL (password, and user plus password), SELECT from the path, and the Unix socket.
    @Test func authenticationDatabaseAndUnixSocket() async throws {
        let server = try await RedisServer(password: "s3cret")
        _ = try await server.command(["ACL", "SETUSER", "gateway", "on", ">userpass", "~*", "+@all"])
        try await withClient("redis://:s3cret@127.0.0.1:\(server.port)/5") { client, loop in
            try await client.waitUntilConnected()
            #expect(try await client.run(["SET", "where", "db5"], on: loop) == .status("OK"))
        }
        #expect(try await server.command(["-n", "5", "GET", "where"]).contains("db5"))
        try await withClient("redis://gateway:userpass@127.0.0.1:\(server.port)") { client, loop in
            try await client.waitUntilConnected()
            #expect(try await client.run(["ACL", "WHOAMI"], on: loop) == .bulk(Array("gateway".utf8)))
        }
        try await withClient("unix://\(server.socketPath)?password=s3cret&db=5") { client, loop in
            try await client.waitUntilConnected()
            #expect(try await client.run(["GET", "where"], on: loop) == .bulk(Array("db5".utf8)))
        }
        // A wrong password never yields a usable connection; commands fail instead of hanging.
        try await withClient("redis://:wrong@127.0.0.1:\(server.port)") { client, loop in
            try await Task.sleep(for: .milliseconds(200))
            #expect(await client.connectedCount() == 0)
            do {
                let error = await thrownError(async: { _ = try await client.run(["PING"], on: loop) })
                #expect(error is RedisError, "\(String(describing: error))")
            }
        }
    }

    // rediss://: commands over TLS, the server verified against ca_file and by the name its certificate carries
    // (server_name; the URL's host when that is a name), and a client certificate when Redis asks for one. A server
    // that cannot be verified, or that refuses us, is never connected: commands fail at once instead of going out
    // unprotected.
    @Test func tls() async throws {
        let pki = try TestPKI(name: "redis")
        let certificate = try pki.issueServer("redis", names: ["redis.internal"])
        let gateway = try pki.issueClient("gateway", subject: "/CN=gateway")
        let stranger = try TestPKI(name: "stranger")
        let server = try await RedisServer(tls: .init(cert: certificate.cert, key: certificate.key, clientCA: pki.caFile))
        #expect(server.url.hasPrefix("rediss://"))
        var trusted = UpstreamTLSConfig()
        trusted.caFile = pki.caFile
        trusted.serverName = "redis.internal"
        try await withClient(server.url, tls: trusted) { client, loop in
            try await client.waitUntilConnected(2)
            #expect(try await client.run(["SET", "over", "tls"], on: loop) == .status("OK"))
        }
        #expect(try await server.command(["GET", "over"]).contains("tls"))

        var untrusted = trusted
        untrusted.caFile = stranger.caFile
        var wrongName = trusted
        wrongName.serverName = "other.internal"
        var byAddress = trusted  // the certificate names no IP address
        byAddress.serverName = nil
        for settings in [untrusted, wrongName, byAddress] {
            try await withClient(server.url, tls: settings) { client, loop in
                try await Task.sleep(for: .milliseconds(300))
                #expect(await client.connectedCount() == 0, "\(settings)")
                let error = await thrownError(async: { _ = try await client.run(["PING"], on: loop) })
                #expect(error is RedisError, "\(String(describing: error))")
            }
        }

        // Mutual TLS: without a client certificate Redis refuses the handshake; with one it serves.
        let strict = try await RedisServer(
            tls: .init(cert: certificate.cert, key: certificate.key, clientCA: pki.caFile, requireClientCertificate: true))
        try await withClient(strict.url, tls: trusted) { client, _ in
            try await Task.sleep(for: .milliseconds(300))
            #expect(await client.connectedCount() == 0)
        }
        var withCertificate = trusted
        withCertificate.clientCert = gateway.cert
        withCertificate.clientKey = gateway.key
        try await withClient(strict.url, tls: withCertificate) { client, loop in
            try await client.waitUntilConnected()
            #expect(try await client.run(["PING"], on: loop) == .status("PONG"))
        }
    }

    // A frozen Redis costs a command its timeout, not more; a killed one fails commands at once; both recover.
    @Test func timeoutsOutagesAndReconnect() async throws {
        let server = try await RedisServer()
        try await withClient(server.url, poolSize: 1, timeoutMs: 300) { client, loop in
            try await client.waitUntilConnected()
            server.pause(true)
            let started = ContinuousClock.now
            do {
                let error = await thrownError(async: { _ = try await client.run(["PING"], on: loop) })
                #expect(error as? RedisError == RedisError.timeout, "\(String(describing: error))")
            }
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(250) && waited < .seconds(2))
            server.pause(false)
            try await client.waitUntilConnected()
            #expect(try await client.run(["PING"], on: loop) == .status("PONG"))

            server.kill()
            try await Task.sleep(for: .milliseconds(100))
            let failedAt = ContinuousClock.now
            do {
                let error = await thrownError(async: { _ = try await client.run(["PING"], on: loop) })
                #expect(error is RedisError, "\(String(describing: error))")
            }
            #expect(ContinuousClock.now - failedAt < .milliseconds(200))
            try await server.start()
            try await client.waitUntilConnected()
            #expect(try await client.run(["PING"], on: loop) == .status("PONG"))
        }
    }

    // EVALSHA works before the script was ever loaded and again after SCRIPT FLUSH (NOSCRIPT is handled).
    @Test func scriptsSurviveFlush() async throws {
        let server = try await RedisServer()
        let script = RedisScript("return {KEYS[1], ARGV[1]}")
        try await withClient(server.url) { client, loop in
            try await client.waitUntilConnected()
            let run = { try await loop.flatSubmit { client.evaluate(script, keys: ["k"], arguments: ["v"], on: loop) }.get() }
            #expect(try await run() == .array([.bulk([107]), .bulk([118])]))
            #expect(try await run() == .array([.bulk([107]), .bulk([118])]))
            _ = try await server.command(["SCRIPT", "FLUSH"])
            #expect(try await run() == .array([.bulk([107]), .bulk([118])]))
        }
    }
}
