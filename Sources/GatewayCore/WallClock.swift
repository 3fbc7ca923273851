#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
