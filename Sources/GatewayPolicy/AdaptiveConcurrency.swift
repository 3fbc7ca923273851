/// An adaptive concurrency limit as a pure, clock-injected state machine (time in nanoseconds): Envoy's gradient
/// controller. Instead of a number an operator guesses, the limit follows the upstream's latency: while requests
/// answer about as fast as they do when the upstream is idle, the limit grows; when they queue up inside the
/// upstream (latency rises), it shrinks, and what does not fit is refused at once instead of waiting.
///
/// - The idle latency (`minRTT`) is measured with the limit pinned to `minLimit`: the `percentile` of the first
///   `minRTTRequests` samples. It is measured again every `minRTTIntervalNanos` (plus or minus `jitterPercent`, so
///   gateway instances do not all pin at once), since an upstream's idle latency changes with deploys and data.
/// - Between measurements, every `updateIntervalNanos` the window's samples give `sampleRTT` (their
///   `percentile`), and `gradient = clamp(minRTT * (1 + bufferPercent/100) / sampleRTT, 0.5, 2)`;
///   `limit = limit * gradient + sqrt(limit * gradient)` (the square root is headroom that lets it probe upward),
///   within `minLimit...maxLimit`.
///
/// Worked example (buffer 25%): minRTT 10 ms, limit 40. A window with p50 10 ms: gradient 1.25 -> 50 + 7 = 57. The
/// upstream saturates and p50 climbs to 40 ms: gradient 0.5 (clamped) -> 28 + 5 = 33, then 16 + 4 = 20 and lower
/// while it stays slow, until the latency the admitted requests see is back near 12.5 ms.
public struct AdaptiveConcurrency: Sendable {
    public struct Settings: Sendable, Equatable {
        public var minLimit: Int
        public var maxLimit: Int
        public var updateIntervalNanos: Int64
        public var minRTTIntervalNanos: Int64
        public var minRTTRequests: Int
        public var bufferPercent: Double
        /// 0 < percentile <= 100.
        public var percentile: Double
        public var jitterPercent: Double

        public init(
            minLimit: Int = 3, maxLimit: Int = 1000, updateIntervalNanos: Int64 = 100_000_000, minRTTIntervalNanos: Int64 = 60_000_000_000,
            minRTTRequests: Int = 50, bufferPercent: Double = 25, percentile: Double = 50, jitterPercent: Double = 10
        ) {
            self.minLimit = max(1, minLimit)
            self.maxLimit = max(self.minLimit, maxLimit)
            self.updateIntervalNanos = max(1, updateIntervalNanos)
            self.minRTTIntervalNanos = max(1, minRTTIntervalNanos)
            self.minRTTRequests = max(1, minRTTRequests)
            self.bufferPercent = max(0, bufferPercent)
            self.percentile = min(100, max(1, percentile))
            self.jitterPercent = min(100, max(0, jitterPercent))
        }
    }

    /// At most this many samples are kept per window (a busy route's window keeps its latest ones).
    static let maxSamples = 1024

    public let settings: Settings
    public private(set) var limit: Int
    public private(set) var inFlight = 0
    /// nil until the first measurement ends.
    public private(set) var minRTTNanos: Int64?
    /// Whether the limit is pinned to `minLimit` while the idle latency is measured.
    public private(set) var measuringMinRTT = true
    private var samples: [Int64] = []
    private var sampleCursor = 0
    private var windowEnds: Int64
    private var nextMeasurement: Int64 = .max
    /// The limit to go back to when a measurement ends.
    private var limitBeforeMeasurement: Int
    private var measurementStarted: Int64 = .min
    /// -1...1, drawn anew for each measurement's schedule (injected: tests need none).
    private let jitter: @Sendable () -> Double

    public init(settings: Settings, now: Int64, jitter: @escaping @Sendable () -> Double = { Double.random(in: -1...1) }) {
        self.settings = settings
        self.limit = settings.minLimit
        self.limitBeforeMeasurement = settings.minLimit
        self.windowEnds = now + settings.updateIntervalNanos
        self.jitter = jitter
    }

    /// Takes a slot when one is free under the current limit.
    public mutating func tryAcquire() -> Bool {
        guard inFlight < limit else { return false }
        inFlight += 1
        return true
    }

    /// Gives a slot back. `startedAt` is when the request took it, `answeredAt` when its upstream's answer came, if
    /// one did (a failure without an answer says nothing about queueing in the upstream). A measurement of the idle
    /// latency takes only requests that started after it did: those admitted before, under the higher limit, may
    /// have queued.
    public mutating func release(startedAt: Int64, answeredAt: Int64?, now: Int64) {
        inFlight = max(0, inFlight - 1)
        // A window ends before the sample that comes after it joins the next one.
        if !measuringMinRTT { advance(now: now) }
        if let answeredAt, answeredAt >= startedAt, !measuringMinRTT || startedAt >= measurementStarted {
            record(answeredAt - startedAt)
        }
        if measuringMinRTT { advance(now: now) }
    }

    /// Moves the controller on to `now`: ends a measurement that has its samples, adjusts the limit at the end of
    /// each window, starts the next measurement when it is due. (Releases call it; so may a timer on an idle route.)
    public mutating func advance(now: Int64) {
        if measuringMinRTT {
            guard samples.count >= settings.minRTTRequests else { return }
            minRTTNanos = max(1, Self.percentile(settings.percentile, of: samples))
            measuringMinRTT = false
            limit = limitBeforeMeasurement
            samples.removeAll(keepingCapacity: true)
            sampleCursor = 0
            windowEnds = now + settings.updateIntervalNanos
            let spread = Double(settings.minRTTIntervalNanos) * settings.jitterPercent / 100 * jitter()
            nextMeasurement = now + max(1, settings.minRTTIntervalNanos + Int64(spread))
            return
        }
        if now >= nextMeasurement {
            limitBeforeMeasurement = limit
            limit = settings.minLimit
            measuringMinRTT = true
            measurementStarted = now
            samples.removeAll(keepingCapacity: true)
            sampleCursor = 0
            return
        }
        guard now >= windowEnds else { return }
        windowEnds = now + settings.updateIntervalNanos
        guard !samples.isEmpty, let minRTT = minRTTNanos else { return }
        let sampleRTT = max(1, Self.percentile(settings.percentile, of: samples))
        samples.removeAll(keepingCapacity: true)
        sampleCursor = 0
        let gradient = min(2, max(0.5, Double(minRTT) * (1 + settings.bufferPercent / 100) / Double(sampleRTT)))
        let scaled = Double(limit) * gradient
        limit = min(settings.maxLimit, max(settings.minLimit, Int((scaled + scaled.squareRoot()).rounded(.down))))
    }

    private mutating func record(_ latency: Int64) {
        if samples.count < Self.maxSamples {
            samples.append(latency)
        } else {
            samples[sampleCursor] = latency
            sampleCursor = (sampleCursor + 1) % Self.maxSamples
        }
    }

    /// The nearest-rank percentile (`p` of 100) of `values`.
    static func percentile(_ p: Double, of values: [Int64]) -> Int64 {
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }
}
