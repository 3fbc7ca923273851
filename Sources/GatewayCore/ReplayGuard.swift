import GatewayPolicy
import NIOConcurrencyHelpers
import NIOCore

/// Remembers what was delivered, to refuse a second delivery of it (`webhook_signature.replay_protection`): in this
/// process (`MemoryReplayGuard`), or in Redis, shared by every instance.
public protocol ReplayGuard: Sendable {
    /// Remembers `key` for `seconds`. `completion` runs once, on `eventLoop`, with true when the key was not remembered
    /// already (a first delivery), false for a replay, or the error that kept the store from telling.
    func firstUse(of key: String, forSeconds seconds: Int, on eventLoop: EventLoop, completion: @escaping (Result<Bool, any Error>) -> Void)
}

/// Deliveries remembered in this process: exact for one instance; behind a load balancer each instance knows only what
/// it received, so a replay sent to another one passes (a shared Redis closes that).
public final class MemoryReplayGuard: ReplayGuard {
    private let keys: NIOLockedValueBox<ExpiringKeySet>
    /// Nanoseconds on a monotonic clock; injected for tests.
    private let now: @Sendable () -> Int64

    public init(capacity: Int = 100_000, now: @escaping @Sendable () -> Int64 = { Int64(NIODeadline.now().uptimeNanoseconds) }) {
        self.keys = NIOLockedValueBox(ExpiringKeySet(capacity: capacity))
        self.now = now
    }

    public func firstUse(
        of key: String, forSeconds seconds: Int, on eventLoop: EventLoop, completion: @escaping (Result<Bool, any Error>) -> Void
    ) {
        let now = now()
        completion(.success(keys.withLockedValue { $0.insert(key, until: now + Int64(seconds) * 1_000_000_000, now: now) }))
    }
}
