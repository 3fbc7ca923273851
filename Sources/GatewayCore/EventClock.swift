import CEventClock
import NIOCore

/// The time as of the event being handled, read once per event instead of at each step.
///
/// A proxied request reads the time about a dozen times (its start and end, the upstream try, the pool's idle
/// bookkeeping, read deadlines, breaker and metrics) in two bursts a few microseconds long: when its head
/// arrives and when its response does. The connection handlers open a scope around each read event, and every
/// reading inside it is the first one; NGINX likewise reads the clock once per event-loop iteration. Outside a
/// scope (timers, other handlers) `now()` is simply the current time. Same clock as `NIODeadline.now()`.
public enum EventClock {
    @inline(__always)
    public static func now() -> NIODeadline { .uptimeNanoseconds(gateway_event_clock_now()) }

    /// Runs `body` as one event: the clock is read at most once while it runs.
    @inline(__always)
    public static func event<Result>(_ body: () throws -> Result) rethrows -> Result {
        gateway_event_clock_enter()
        defer { gateway_event_clock_leave() }
        return try body()
    }
}
