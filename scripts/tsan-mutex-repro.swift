// Why ThreadSanitizer reports "Swift access race" inside Mutex.withLock on Linux: it cannot see the futex
// that Synchronization.Mutex locks with. Four threads update a dictionary only under the Mutex, and TSan
// still reports races; the same program with NSLock (pthread, which TSan intercepts) reports none.
//   swiftc -sanitize=thread -O scripts/tsan-mutex-repro.swift -o /tmp/repro && /tmp/repro
// (Swift 6.3.1, Linux x86_64.) This is why the gateway locks with NIOLockedValueBox (pthread) instead.
import Synchronization
import Foundation

final class Box: Sendable {
    let state = Mutex<[Int: Int]>([:])
}
let box = Box()
let threads = (0..<4).map { t in
    Thread {
        for i in 0..<20_000 { box.state.withLock { $0[i % 64, default: 0] += t } }
    }
}
threads.forEach { $0.start() }
Thread.sleep(forTimeInterval: 2)
print(box.state.withLock { $0.count })
