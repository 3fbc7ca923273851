import GatewayCore
import NIOCore

/// `SharedKeyValueStore` on Redis: GET, SET [NX] [EX], and a compare-and-delete script.
public struct RedisKeyValueStore: SharedKeyValueStore {
    private let client: RedisClient
    /// The loop the calls made from outside any event loop (the ACME manager's task) use.
    private let eventLoop: EventLoop
    private static let deleteIfHolds = RedisScript(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")

    public init(client: RedisClient, eventLoop: EventLoop) {
        self.client = client
        self.eventLoop = eventLoop
    }

    public func get(_ key: String, on eventLoop: EventLoop, completion: @escaping (Result<String?, any Error>) -> Void) {
        client.send(["GET", key], on: eventLoop) { result in
            switch result {
            case .success(.bulk(let bytes)): completion(.success(String(decoding: bytes, as: UTF8.self)))
            case .success(.null): completion(.success(nil))
            case .success(let other): completion(.failure(RedisError("GET answered \(other)")))
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    public func get(_ key: String) async throws -> String? {
        let reply = try await eventLoop.flatSubmit { [client, eventLoop] in client.send(["GET", key], on: eventLoop) }.get()
        switch reply {
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .null: return nil
        default: throw RedisError("GET answered \(reply)")
        }
    }

    @discardableResult
    public func set(_ key: String, to value: String, expiringAfter seconds: Int?, onlyIfAbsent: Bool) async throws -> Bool {
        var command = ["SET", key, value]
        if onlyIfAbsent { command.append("NX") }
        if let seconds { command += ["EX", String(max(1, seconds))] }
        let reply = try await eventLoop.flatSubmit { [client, eventLoop, command] in client.send(command, on: eventLoop) }.get()
        switch reply {
        case .status("OK"): return true
        case .null where onlyIfAbsent: return false
        default: throw RedisError("SET answered \(reply)")
        }
    }

    public func delete(_ key: String, ifItHolds value: String) async throws {
        let reply = try await eventLoop.flatSubmit { [client, eventLoop] in
            client.evaluate(Self.deleteIfHolds, keys: [key], arguments: [value], on: eventLoop)
        }.get()
        if case .error(let message) = reply { throw RedisError("compare-and-delete failed: \(message)") }
    }
}
