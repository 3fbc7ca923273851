/// When a token the gateway holds for an upstream (`upstreams.<name>.oauth2`) is renewed, and how long a failed request
/// for one waits before the next: pure rules, tested without an authorization server.
public enum TokenRenewal {
    /// A token that lasts `lifetime` seconds is renewed once 80% of it has passed (a request in flight never carries
    /// one about to end), at least a second from now; a token without a stated lifetime every ten minutes.
    public static func renewAfter(lifetime: Double?) -> Double {
        guard let lifetime, lifetime > 0 else { return 600 }
        return max(1, lifetime * 0.8)
    }

    /// After `failures` failed requests in a row: one second, doubling up to a minute.
    public static func retryAfter(failures: Int) -> Double {
        var delay = 1.0
        for _ in 1..<max(1, failures) where delay < 60 { delay *= 2 }
        return min(60, delay)
    }
}
