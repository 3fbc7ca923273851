#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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

    /// This thread's object, made by `make` on the first call.
    @inline(__always)
    func object<Object: AnyObject>(_ make: () -> Object) -> Object {
        if let pointer = pthread_getspecific(key) { return Unmanaged<Object>.fromOpaque(pointer).takeUnretainedValue() }
        let object = make()
        pthread_setspecific(key, Unmanaged<AnyObject>.passRetained(object).toOpaque())
        return object
    }
}
