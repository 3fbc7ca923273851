import GatewayCore
import NIOCore

/// Deliveries remembered in Redis, so every gateway instance sharing it refuses a replay whichever one the first
/// delivery reached: one `SET key 1 NX EX seconds` per delivery (set: first; not set: seen), atomic in Redis.
public struct RedisReplayGuard: ReplayGuard {
    private let client: RedisClient

    public init(client: RedisClient) {
        self.client = client
    }

    public func firstUse(
        of key: String, forSeconds seconds: Int, on eventLoop: EventLoop, completion: @escaping (Result<Bool, any Error>) -> Void
    ) {
        client.send(["SET", "gw:replay:" + key, "1", "NX", "EX", String(max(1, seconds))], on: eventLoop) { result in
            switch result {
            case .success(.status("OK")): completion(.success(true))
            case .success(.null): completion(.success(false))
            case .success(let other): completion(.failure(RedisError("SET NX answered \(other)")))
            case .failure(let error): completion(.failure(error))
            }
        }
    }
}
