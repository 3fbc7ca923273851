import Foundation

/// Where and how to reach Redis: `redis://[user[:password]@]host[:port][/db]`, the same with `rediss://` (TLS), or
/// `unix:///path/to/redis.sock[?db=N&password=P&user=U]`.
public struct RedisURL: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var endpoint: Endpoint
    public var user: String?
    public var password: String?
    public var database: Int
    /// `rediss://`: the connection is TLS.
    public var tls: Bool

    public init(endpoint: Endpoint, user: String? = nil, password: String? = nil, database: Int = 0, tls: Bool = false) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Parses a URL; nil (with a reason) when it is not one of the supported forms.
    public static func parse(_ text: String) -> Result<RedisURL, RedisError> {
        guard let components = URLComponents(string: text), let scheme = components.scheme else {
            return .failure(RedisError("not a URL"))
        }
        let user = components.user.flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding }
        let password = components.password.flatMap { $0.removingPercentEncoding }
        switch scheme {
        case "redis", "rediss":
            guard let host = components.host, !host.isEmpty else { return .failure(RedisError("missing host")) }
            let port = components.port ?? 6379
            var database = 0
            let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            if !path.isEmpty {
                guard let number = Int(path), number >= 0 else { return .failure(RedisError("the path must be a database number")) }
                database = number
            }
            return .success(
                RedisURL(endpoint: .tcp(host: host, port: port), user: user, password: password, database: database, tls: scheme == "rediss"))
        case "unix":
            guard !components.path.isEmpty else { return .failure(RedisError("missing socket path")) }
            let items = components.queryItems ?? []
            let database = items.first { $0.name == "db" }?.value.flatMap(Int.init) ?? 0
            return .success(
                RedisURL(
                    endpoint: .unix(path: components.path), user: items.first { $0.name == "user" }?.value ?? user,
                    password: items.first { $0.name == "password" }?.value ?? password, database: database))
        default:
            return .failure(RedisError("unsupported scheme \(scheme)"))
        }
    }
}
