import Crypto
import Foundation
import GatewayConfig
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `auth.basic`: the users who may present HTTP Basic credentials (RFC 7617), from the config and an htpasswd
/// file, with their crypt(3) password hashes.
///
/// A password check is deliberately slow (that is what protects a leaked hash), so it never runs on an event
/// loop: it goes to NIO's thread pool, at most `max_pending_checks` at once (beyond that the caller answers
/// 503, so a flood of guesses cannot queue unbounded work). Credentials that verified are remembered by the
/// SHA-256 of user and password, never the password itself, so a client's next requests cost a hash and a
/// lookup. An unknown user name is checked against a real hash too, so the answer's timing does not tell
/// which names exist.
public final class BasicUsers: Sendable {
    struct User: Sendable {
        let hash: String
        let scopes: [String]
    }

    /// A decoded `Authorization: Basic` credential.
    public struct Credentials: Sendable {
        public let username: String
        public let password: String
        public init(username: String, password: String) { (self.username, self.password) = (username, password) }
    }

    public let realm: String
    private let users: [String: User]
    /// What an unknown user's password is checked against (the first user's hash: same method and cost).
    private let decoyHash: String?
    /// Checks that succeeded, by `cacheKey`.
    private let verified: BoundedCache<SHA256Digest, Identity>
    private let maxPending: Int
    private let pending = NIOLockedValueBox(0)
    /// nil: NIO's shared pool, reached only when a check runs (so `gateway check`, which loads users but checks
    /// no password, never starts its threads).
    private let pool: NIOThreadPool?
    /// Failed checks per client address (`max_failures`); nil when not counted.
    public let failures: FailedLoginThrottle?

    init(config: BasicAuthConfig, users: [String: User], decoyHash: String?, pool: NIOThreadPool?) {
        self.failures = config.maxFailures.map { FailedLoginThrottle(limit: $0.limit, windowSeconds: $0.windowSeconds) }
        self.realm = config.realm
        self.users = users
        self.decoyHash = decoyHash
        self.verified = BoundedCache(capacity: config.cacheSize)
        self.maxPending = config.maxPendingChecks
        self.pool = pool
    }

    /// The configured users and the htpasswd file's (read now; a reload reads it again). A user in both is an
    /// error, as is a file's user named like one of `otherConsumers` (API key and certificate ids), a line that
    /// is not `user:hash`, or a hash of a method that is not accepted.
    public static func load(_ config: BasicAuthConfig, otherConsumers: Set<String> = [], pool: NIOThreadPool? = nil) throws -> BasicUsers {
        var users: [String: User] = [:]
        var order: [String] = []
        for (index, user) in config.users.enumerated() {
            if let problem = PasswordHash.problem(with: user.passwordHash) {
                throw KeyLoader.KeyError(path: "auth.basic.users[\(index)].password_hash", message: problem)
            }
            users[user.username] = User(hash: user.passwordHash, scopes: user.scopes)
            order.append(user.username)
        }
        if let file = config.htpasswdFile {
            let path = "auth.basic.htpasswd_file"
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw KeyLoader.KeyError(path: path, message: "\(file) cannot be read")
            }
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let entry = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if entry.isEmpty || entry.hasPrefix("#") { continue }
                guard let colon = entry.firstIndex(of: ":"), colon != entry.startIndex else {
                    throw KeyLoader.KeyError(path: path, message: "\(file) line \(number + 1) is not user:hash")
                }
                let name = String(entry[..<colon])
                // htpasswd lines may carry more fields after the hash (user:hash:comment); crypt hashes have no colon.
                let hash = String(entry[entry.index(after: colon)...].prefix { $0 != ":" })
                if let problem = PasswordHash.problem(with: hash) {
                    throw KeyLoader.KeyError(path: path, message: "\(file) line \(number + 1) (\(name)): \(problem)")
                }
                guard users[name] == nil, !otherConsumers.contains(name) else {
                    throw KeyLoader.KeyError(path: path, message: "\(file) line \(number + 1): duplicate consumer id \"\(name)\"")
                }
                users[name] = User(hash: hash, scopes: [])
                order.append(name)
            }
        }
        return BasicUsers(config: config, users: users, decoyHash: order.first.flatMap { users[$0]?.hash }, pool: pool)
    }

    public var count: Int { users.count }

    /// The credentials of an `Authorization: Basic <base64(user:password)>` value's credentials part, or nil
    /// when they are not base64 of UTF-8 text with a colon, or hold control characters (RFC 7617 allows none;
    /// a NUL would cut the password short for crypt).
    public static func credentials(_ encoded: String) -> Credentials? {
        guard let data = Data(base64Encoded: encoded), let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":"),
            !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        else { return nil }
        return Credentials(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
    }

    /// The identity of credentials that verified before (no password check).
    public func remembered(_ credentials: Credentials) -> Identity? {
        verified.value(for: Self.cacheKey(credentials))
    }

    /// Checks the password on the thread pool: the identity, or nil when the user is unknown or the password
    /// wrong (a failure counted against `client`). nil instead of a future when `max_pending_checks` are
    /// already under way.
    public func check(_ credentials: Credentials, from client: String, on eventLoop: EventLoop) -> EventLoopFuture<Identity?>? {
        let admitted = pending.withLockedValue { count -> Bool in
            guard count < maxPending else { return false }
            count += 1
            return true
        }
        guard admitted else { return nil }
        let user = users[credentials.username]
        let hash = user?.hash ?? decoyHash
        let checked = (pool ?? .singleton).runIfActive(eventLoop: eventLoop) { () -> Bool in
            guard let hash else { return false }
            return PasswordHash.verify(credentials.password, against: hash)
        }
        checked.whenComplete { _ in self.pending.withLockedValue { $0 -= 1 } }
        return checked.map { matches in
            guard matches, let user else {
                self.failures?.recordFailure(client)
                return nil
            }
            let identity = Identity(method: .basic, subject: credentials.username, scopes: user.scopes)
            self.verified.insert(identity, for: Self.cacheKey(credentials))
            return identity
        }
    }

    /// The user name (after its length, so no two pairs share a key) and password hashed together.
    private static func cacheKey(_ credentials: Credentials) -> SHA256Digest {
        var hasher = SHA256()
        let name = Array(credentials.username.utf8)
        withUnsafeBytes(of: UInt64(name.count).littleEndian) { hasher.update(bufferPointer: $0) }
        hasher.update(data: name)
        hasher.update(data: Array(credentials.password.utf8))
        return hasher.finalize()
    }
}
