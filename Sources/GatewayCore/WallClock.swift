#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import GatewayPolicy

/// Wall-clock time (CLOCK_REALTIME), for what is a calendar quantity: HTTP dates, cache ages, span times.
/// Durations use the monotonic NIODeadline instead.
public enum WallClock {
    /// Nanoseconds since the Unix epoch.
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

extension WallClock {
    /// The current time as an HTTP `Date` value (IMF-fixdate, RFC 9110 §5.6.7), e.g.
    /// `Sun, 06 Dec 2026 09:46:17 GMT`. Formatted at most once per second per thread, as NGINX caches its
    /// time string: every response the gateway sends without an upstream `Date` carries one.
    public static func httpDate() -> String {
        let second = coarseSeconds()
        return DateText.withCurrent { $0.text(forSecond: second) }
    }

    /// Whole seconds since the Unix epoch from the coarse real-time clock: no system call, and precise
    /// enough for a value with a resolution of one second.
    public static func coarseSeconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &now)
        return now.tv_sec
    }
}

/// One thread's last formatted `Date` value and the second it is for.
private final class DateText {
    private var second = Int.min
    private var text = ""

    func text(forSecond now: Int) -> String {
        if now != second {
            second = now
            text = HTTPDate.format(now)
        }
        return text
    }

    private static let slot = ThreadSlot()

    /// This thread's text, lent without a retain.
    static func withCurrent<Result>(_ body: (DateText) -> Result) -> Result { slot.withObject(DateText.init, body) }
}
