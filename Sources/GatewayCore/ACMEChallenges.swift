import GatewayHTTP
import GatewayPolicy
import NIOConcurrencyHelpers
import NIOCore

/// The HTTP-01 challenges an ACME order has open (`acme`): the certificate authority fetches
/// `http://NAME/.well-known/acme-challenge/TOKEN` and must get the key authorization back. Every listener answers such
/// paths from here, before routing, while an order waits for its validation. With a shared store (`acme.store:
/// "redis"`) the challenges are also published there, and a token this instance does not know is looked up there: the
/// CA's requests reach whichever instance the load balancer picks, not necessarily the one that ordered.
public final class ACMEChallenges: Sendable {
    public static let pathPrefix = "/.well-known/acme-challenge/"
    /// How long a published challenge stays in the shared store if its order never removes it (a crash).
    static let sharedSeconds = 3600
    private let pending = NIOLockedValueBox<[String: String]>([:])
    private let shared: (any SharedKeyValueStore)?

    public init(shared: (any SharedKeyValueStore)? = nil) {
        self.shared = shared
    }

    public static func sharedKey(token: String) -> String { "gw:acme:challenge:" + token }

    /// Opens a challenge here and, with a shared store, for every instance; throws when the store cannot take it (the
    /// CA would then ask an instance that cannot answer).
    public func set(token: String, keyAuthorization: String) async throws {
        pending.withLockedValue { $0[token] = keyAuthorization }
        try await shared?.set(Self.sharedKey(token: token), to: keyAuthorization, expiringAfter: Self.sharedSeconds, onlyIfAbsent: false)
    }

    public func remove(token: String) async {
        guard let keyAuthorization = pending.withLockedValue({ $0.removeValue(forKey: token) }) else { return }
        try? await shared?.delete(Self.sharedKey(token: token), ifItHolds: keyAuthorization)
    }

    /// The key authorization for a request path under `pathPrefix`, nil when no open challenge of this instance has that token.
    public func answer(path: Substring) -> String? {
        guard path.hasPrefix(Self.pathPrefix) else { return nil }
        let token = path.dropFirst(Self.pathPrefix.count)
        return pending.withLockedValue { $0[String(token)] }
    }

    /// With a shared store, a lookup of a challenge path's token there: it answers the key authorization when another
    /// instance opened that challenge and lets the request go on (to routing) otherwise, also when the store cannot
    /// tell. Nil without a shared store or for other paths, or a token that cannot be one (RFC 8555 §8.3: base64url).
    func lookUpShared(path: Substring, on eventLoop: EventLoop) -> FilterSuspension? {
        guard let shared, path.hasPrefix(Self.pathPrefix) else { return nil }
        let token = path.dropFirst(Self.pathPrefix.count)
        guard !token.isEmpty, token.utf8.count <= 128, token.utf8.allSatisfy(Base64URL.isAlphabet) else { return nil }
        let suspension = FilterSuspension()
        shared.get(Self.sharedKey(token: String(token)), on: eventLoop) { result in
            if case .success(let keyAuthorization?) = result {
                suspension.resume(FilterResumption(decision: .respond(Self.response(keyAuthorization))))
            } else {
                suspension.resume(FilterResumption(decision: .proceed))
            }
        }
        return suspension
    }

    /// The CA's answer: the key authorization as plain text.
    static func response(_ keyAuthorization: String) -> GatewayResponse {
        var headers = HeaderList()
        headers.add(name: "content-type", value: "text/plain")
        return GatewayResponse(status: 200, headers: headers, body: ByteBuffer(string: keyAuthorization))
    }
}
