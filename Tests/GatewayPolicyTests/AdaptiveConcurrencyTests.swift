@testable import GatewayPolicy
import Testing

/// The gradient controller with an injected clock and no jitter: the idle-latency measurement, the limit's growth
/// while latency stays near it, its fall when the upstream queues, and the periodic measurement again.
@Suite struct AdaptiveConcurrencyTests {
    static let ms: Int64 = 1_000_000
    static let settings = AdaptiveConcurrency.Settings(
        minLimit: 3, maxLimit: 40, updateIntervalNanos: 100 * ms, minRTTIntervalNanos: 60_000 * ms, minRTTRequests: 5, bufferPercent: 25,
        percentile: 50, jitterPercent: 10)

    /// `count` requests through a controller at `now`, each answered after `latency` (they start and end at once).
    static func serve(_ controller: inout AdaptiveConcurrency, count: Int, latency: Int64, at now: Int64) {
        for _ in 0..<count {
            let admitted = controller.tryAcquire()
            #expect(admitted)
            controller.release(startedAt: now - latency, answeredAt: now, now: now)
        }
    }

    /// A controller whose idle latency has been measured at 10 ms (at t = 1 s).
    static func measured() -> AdaptiveConcurrency {
        var controller = AdaptiveConcurrency(settings: settings, now: 0, jitter: { 0 })
        serve(&controller, count: 5, latency: 10 * ms, at: 1_000 * ms)
        return controller
    }

    /// Windows of 100 ms, each with three requests of `latency`, from `now` on: the limit after each.
    static func windows(_ count: Int, latency: Int64, _ controller: inout AdaptiveConcurrency, now: inout Int64) -> [Int] {
        (0..<count).map { _ in
            now += 100 * ms
            serve(&controller, count: 3, latency: latency, at: now)
            return controller.limit
        }
    }

    /// A measured controller after `count` windows at the idle latency, and the time then.
    static func warmed(_ count: Int) -> (AdaptiveConcurrency, Int64) {
        var controller = measured()
        var now = 1_000 * ms
        _ = windows(count, latency: 10 * ms, &controller, now: &now)
        return (controller, now)
    }

    // Until the idle latency is known the limit is pinned to min_limit; min_rtt_requests samples give it (their
    // percentile) and the limit is free to move.
    @Test func startsPinnedUntilTheIdleLatencyIsMeasured() {
        var controller = AdaptiveConcurrency(settings: Self.settings, now: 0, jitter: { 0 })
        #expect(controller.measuringMinRTT && controller.limit == 3 && controller.minRTTNanos == nil)
        let admitted = (0..<4).map { _ in controller.tryAcquire() }
        #expect(admitted == [true, true, true, false], "the fourth request in flight is refused")
        for latency: Int64 in [9, 12, 10] { controller.release(startedAt: 0, answeredAt: latency * Self.ms, now: latency * Self.ms) }
        #expect(controller.inFlight == 0 && controller.measuringMinRTT)
        controller.release(startedAt: 0, answeredAt: nil, now: 20 * Self.ms)  // a failure without an answer: no sample
        #expect(controller.measuringMinRTT)
        Self.serve(&controller, count: 2, latency: 50 * Self.ms, at: 30 * Self.ms)
        #expect(!controller.measuringMinRTT && controller.minRTTNanos == 12 * Self.ms, "p50 of 9, 10, 12, 50, 50")
    }

    // Latency at the idle level grows the limit (gradient 1.25 plus the square-root headroom) up to max_limit;
    // windows without samples change nothing.
    @Test func limitGrowsWhileLatencyStaysLow() {
        var controller = Self.measured()
        var now = 1_000 * Self.ms
        let limits = Self.windows(8, latency: 10 * Self.ms, &controller, now: &now)
        // Each window's samples move the limit when the next window's first request completes:
        // 3 -> 3*1.25 + sqrt(3.75) = 5.69 -> 5 -> 8 -> 13 -> 20 -> 30 -> 40 (max_limit)
        #expect(limits == [3, 5, 8, 13, 20, 30, 40, 40])
        now += 500 * Self.ms
        controller.advance(now: now)
        #expect(controller.limit == 40, "an idle window keeps the limit")
    }

    // When the upstream queues (latency four times the idle one), the gradient is 0.5 and the limit falls back
    // toward min_limit; once latency recovers it grows again.
    @Test func limitFallsWhenLatencyRises() {
        var (controller, now) = Self.warmed(7)
        #expect(controller.limit == 40)
        let limits = Self.windows(6, latency: 40 * Self.ms, &controller, now: &now)
        // (the first of these closes the last fast window) 40*0.5 + sqrt(20) = 24.5 -> 24 -> 15 -> 10 -> 7 -> 5
        #expect(limits == [40, 24, 15, 10, 7, 5])
        // Latency back under the buffered idle latency (12.5 ms): up again.
        now += 100 * Self.ms
        Self.serve(&controller, count: 3, latency: 11 * Self.ms, at: now)
        #expect(controller.limit == 4, "the last slow window")
        controller.advance(now: now + 100 * Self.ms)
        #expect(controller.limit == 6, "4 * 12.5/11 + headroom")
    }

    // Every min_rtt_interval the idle latency is measured again: the limit is pinned to min_limit meanwhile,
    // requests admitted before the measurement do not count (they may have queued), and the limit comes back.
    @Test func idleLatencyIsMeasuredAgain() {
        var (controller, now) = Self.warmed(4)
        #expect(controller.limit == 13)
        let admitted = controller.tryAcquire()  // in flight across the measurement's start
        #expect(admitted)
        let started = now
        now = 1_000 * Self.ms + 60_000 * Self.ms  // the next measurement is due (no jitter)
        controller.advance(now: now)
        #expect(controller.measuringMinRTT && controller.limit == 3)
        controller.release(startedAt: started, answeredAt: now, now: now)  // 59 s: not an idle latency
        Self.serve(&controller, count: 4, latency: 20 * Self.ms, at: now + 20 * Self.ms)
        #expect(controller.measuringMinRTT, "the old request did not count")
        Self.serve(&controller, count: 1, latency: 20 * Self.ms, at: now + 40 * Self.ms)
        #expect(!controller.measuringMinRTT && controller.minRTTNanos == 20 * Self.ms && controller.limit == 13)
    }

    // The jitter spreads the next measurement over interval ± jitter_percent.
    @Test func measurementsAreJittered() {
        var early = AdaptiveConcurrency(settings: Self.settings, now: 0, jitter: { -1 })
        Self.serve(&early, count: 5, latency: 10 * Self.ms, at: 0)
        early.advance(now: 54_000 * Self.ms - 1)
        #expect(!early.measuringMinRTT)
        early.advance(now: 54_000 * Self.ms)
        #expect(early.measuringMinRTT, "60 s - 10%")
    }

    @Test func nearestRankPercentile() {
        #expect(AdaptiveConcurrency.percentile(50, of: [5, 1, 3]) == 3)
        #expect(AdaptiveConcurrency.percentile(50, of: [4, 1, 3, 2]) == 2)
        #expect(AdaptiveConcurrency.percentile(90, of: Array(1...10)) == 9)
        #expect(AdaptiveConcurrency.percentile(100, of: Array(1...10)) == 10)
        #expect(AdaptiveConcurrency.percentile(1, of: [7]) == 7)
    }
}
