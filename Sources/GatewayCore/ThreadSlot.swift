#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore
import Synchronization

/// A thread-local slot holding one object per thread, made on the thread's first use and released when the
/// thread ends: per-thread state (a random generator, a formatted date) that needs no lock.
final class ThreadSlot: Sendable {
    private let key: pthread_key_t

    init() {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<AnyObject>.fromOpaque(pointer).release()
        }
        precondition(status == 0, "pthread_key_create failed")
        self.key = key
    }

    /// This thread's object, made by `make` on the first call, lent to `body` without a retain and release: the
    /// slot keeps it alive until the thread ends, and `body` runs on this thread.
    @inline(__always)
    func withObject<Object: AnyObject, Result>(_ make: () -> Object, _ body: (Object) -> Result) -> Result {
        if let pointer = pthread_getspecific(key) { return Unmanaged<Object>.fromOpaque(pointer)._withUnsafeGuaranteedRef(body) }
        let object = make()
        pthread_setspecific(key, Unmanaged<AnyObject>.passRetained(object).toOpaque())
        return body(object)
    }
}

/// A small number for each thread, for per-thread shards of hot counters: the first `capacity` threads to ask
/// get 0, 1, 2, ... for their lifetime; any later thread gets nil and takes its shard-less path. Numbers are
/// not reused when a thread ends. The threads that record on every request are the event loops (one per core
/// by default), which live as long as the process.
enum ThreadIndex {
    /// Twice the cores, for the event loops and the few other threads that record: every counter and
    /// histogram keeps this many shard slots (8 bytes each, plus a cache line per thread that records).
    static let capacity = min(256, max(8, 2 * System.coreCount))
    private static let next = Atomic<Int>(0)
    /// Holds index + 1, or capacity + 1 for a thread without one; 0 (no value yet) means not asked before.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    /// This thread's index, or nil when every index was taken before this thread asked.
    @inline(__always)
    static var current: Int? {
        let stored = Int(bitPattern: pthread_getspecific(key))
        if stored != 0 { return stored <= capacity ? stored - 1 : nil }
        let taken = min(next.wrappingAdd(1, ordering: .relaxed).oldValue, capacity)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: taken + 1))
        return taken < capacity ? taken : nil
    }
}
