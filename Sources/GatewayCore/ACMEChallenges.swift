import NIOConcurrencyHelpers

/// The HTTP-01 challenges an ACME order has open (`acme`): the certificate authority fetches
/// `http://NAME/.well-known/acme-challenge/TOKEN` and must get the key authorization back. Every listener answers such
/// paths from here, before routing, while an order waits for its validation.
public final class ACMEChallenges: Sendable {
    public static let pathPrefix = "/.well-known/acme-challenge/"
    private let pending = NIOLockedValueBox<[String: String]>([:])

    public init() {}

    public func set(token: String, keyAuthorization: String) { pending.withLockedValue { $0[token] = keyAuthorization } }

    public func remove(token: String) { pending.withLockedValue { $0[token] = nil } }

    /// The key authorization for a request path under `pathPrefix`, nil when no open challenge has that token.
    public func answer(path: Substring) -> String? {
        guard path.hasPrefix(Self.pathPrefix) else { return nil }
        let token = path.dropFirst(Self.pathPrefix.count)
        return pending.withLockedValue { $0[String(token)] }
    }
}
