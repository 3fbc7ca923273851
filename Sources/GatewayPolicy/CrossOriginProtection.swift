/// A route's `csrf`: refuses state-changing requests that a browser sends on another site's behalf (Cross-Site
/// Request Forgery), judged from the headers browsers attach themselves and pages cannot forge. The rules of
/// Go's `net/http.CrossOriginProtection`:
/// - an `Origin` the operator trusts (`trusted_origins`, the route's CORS `allow_origins`) is allowed;
/// - `Sec-Fetch-Site` (sent by every current browser): `same-origin` and `none` (typed in the address bar, a
///   bookmark) are allowed, `same-site` and `cross-site` refused;
/// - without it (an old browser, or no browser): no `Origin` is allowed (curl, servers, same-origin requests of
///   old browsers: CSRF needs a browser carrying the victim's cookies), an `Origin` naming the request's own
///   host is allowed, any other refused.
/// Safe methods (GET, HEAD, OPTIONS) never come here: they must not change state, and the filter lets them pass.
/// Pure: header values in, a verdict out.
public struct CrossOriginProtection: Sendable {
    public enum Verdict: Sendable, Equatable {
        case allowed
        /// Why, for the log.
        case refused(String)
    }

    private let trusted: [CORSPolicy.OriginRule]

    /// `trusted`: parsed origin entries (`CORSPolicy.parseOrigin`); `*` entries are ignored (they would
    /// switch the protection off).
    public init(trusted: [CORSPolicy.OriginRule]) {
        self.trusted = trusted.filter { $0 != .any }
    }

    public func check(secFetchSite: String?, origin: String?, host: String?) -> Verdict {
        let loweredOrigin = origin?.lowercased()
        if let loweredOrigin, trusted.contains(where: { $0.matches(loweredOrigin) }) { return .allowed }
        if let site = secFetchSite?.lowercased() {
            return site == "same-origin" || site == "none" ? .allowed : .refused("Sec-Fetch-Site: \(site)")
        }
        guard let loweredOrigin else { return .allowed }
        if let host, Self.sameHost(origin: loweredOrigin, host: host.lowercased()) { return .allowed }
        return .refused("Origin \(loweredOrigin) is not the request's host")
    }

    /// Whether `https://example.com[:port]` names the host `example.com[:port]`, a default port written or not.
    static func sameHost(origin: String, host: String) -> Bool {
        let (scheme, defaultPort): (String, String)
        if origin.hasPrefix("https://") {
            (scheme, defaultPort) = ("https://", ":443")
        } else if origin.hasPrefix("http://") {
            (scheme, defaultPort) = ("http://", ":80")
        } else {
            return false  // "null" (a sandboxed frame, a file), or not an origin at all
        }
        func withoutDefaultPort(_ authority: Substring) -> Substring {
            authority.hasSuffix(defaultPort) ? authority.dropLast(defaultPort.count) : authority
        }
        let authority = origin.dropFirst(scheme.count)
        return !authority.isEmpty && withoutDefaultPort(authority) == withoutDefaultPort(Substring(host))
    }
}
