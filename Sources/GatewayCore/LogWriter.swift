#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import GatewayConfig
import NIOConcurrencyHelpers
import Synchronization

/// Where log lines go (standard output, a file or syslog), written by a thread of its own so that an event loop
/// never waits on a write: a log reader that stalls (a full pipe, a slow disk) must not stall traffic.
///
/// Lines are appended to a buffer under a lock. The writer thread sleeps until a line arrives, then lets
/// lines gather for `flushInterval` (or until `batchBytes` are waiting) and writes them all at once: waking
/// a thread per line would cost more than the write it saves (two context switches when the gateway shares
/// a core with it), while one wake and one `write` per interval cost next to nothing. When the buffer
/// already holds `capacity` bytes the output is not keeping up: further lines are dropped whole (never
/// cut) and counted, and once the output takes lines again a warning says how many were lost. Files are
/// opened for appending (so `logrotate`'s `copytruncate` also works) and reopened on request (SIGUSR1
/// after a rename, as NGINX does).
public final class LogWriter: Sendable {
    public enum Destination: Sendable, Equatable {
        case standardOutput
        case file(String)
        /// `logging.syslog`: one message per line.
        case syslog(SyslogConfig)
    }

    public struct OpenError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "cannot open log file \(path): \(reason)" }
    }

    private struct State {
        var pending: [UInt8] = []
        var droppedSinceReport = 0
        var reopenRequested = false
        /// The writer thread waits for a first line (nothing to gather yet).
        var idle = false
        var writing = false
        /// `flush` or `stop` wants the lines out now, without waiting for the interval.
        var urgent = false
        var stopping = false
    }

    public let destination: Destination
    private let capacity: Int
    private let flushInterval: TimeInterval
    /// Waiting bytes that wake the writer before the interval is over: a quarter MiB, or half the buffer.
    private let batchBytes: Int
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private nonisolated(unsafe) var state = State()
    /// Used by the writer thread only (and by `init`/`reopen` before it starts).
    private nonisolated(unsafe) var descriptor: Int32
    /// A syslog destination's sender, used by the writer thread only.
    private nonisolated(unsafe) let syslog: SyslogOutput?
    private let droppedTotal = Atomic<Int>(0)
    /// Counts dropped lines in metrics, once the gateway has them.
    private let dropCounter = NIOLockedValueBox<(@Sendable (Int) -> Void)?>(nil)

    /// Opens the destination (a file is created with mode 0640 when missing) and starts the writer thread.
    public init(_ destination: Destination, capacity: Int = 8 << 20, flushInterval: Duration = .milliseconds(100)) throws {
        self.destination = destination
        self.capacity = capacity
        self.batchBytes = min(256 << 10, capacity / 2)
        self.flushInterval = Double(flushInterval.components.seconds) + Double(flushInterval.components.attoseconds) / 1e18
        switch destination {
        case .standardOutput: (descriptor, syslog) = (1, nil)
        case .file(let path): (descriptor, syslog) = (try Self.open(path), nil)
        case .syslog(let config): (descriptor, syslog) = (-1, try SyslogOutput(config))
        }
        let thread = Thread { [self] in run() }
        thread.name = "gateway-log"
        thread.start()
    }

    /// Lines dropped since start because the output could not keep up.
    public var droppedLines: Int { droppedTotal.load(ordering: .relaxed) }

    /// Reports future drops (a metric's increment).
    public func onDrop(_ count: @escaping @Sendable (Int) -> Void) { dropCounter.withLockedValue { $0 = count } }

    /// Queues one line (it should end with a newline). Never blocks on the output.
    public func append(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            condition.lock()
            defer { condition.unlock() }
            guard !state.stopping, state.pending.count + bytes.count <= capacity else {
                state.droppedSinceReport += 1
                droppedTotal.add(1, ordering: .relaxed)
                return
            }
            let before = state.pending.count
            state.pending.append(contentsOf: bytes)
            // Wake the writer for a first line, or when a batch is full; not for every line.
            if (state.idle && before == 0) || (before < batchBytes && state.pending.count >= batchBytes) { condition.broadcast() }
        }
    }

    /// Reopens a file destination by its path on the writer thread (after logrotate renamed it).
    public func reopen() {
        condition.lock()
        state.reopenRequested = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every queued line is written, at most `timeout` (an output that stalls must not hold
    /// up exit forever).
    public func flush(timeout: Duration = .seconds(5)) {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        state.urgent = true
        condition.broadcast()
        while !state.pending.isEmpty || state.writing {
            if !condition.wait(until: deadline) { break }
        }
        state.urgent = false
    }

    /// Writes what is queued, closes a file destination and ends the writer thread; later lines are dropped.
    public func stop(timeout: Duration = .seconds(5)) {
        flush(timeout: timeout)
        condition.lock()
        state.stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        var batch: [UInt8] = []
        while true {
            condition.lock()
            while state.pending.isEmpty && !state.reopenRequested && state.droppedSinceReport == 0 && !state.stopping {
                state.idle = true
                condition.wait()
                state.idle = false
            }
            // Let lines gather (a full batch, `flush` or `stop` cut it short).
            let gathered = Date(timeIntervalSinceNow: flushInterval)
            while state.pending.count < batchBytes && !state.urgent && !state.stopping {
                if !condition.wait(until: gathered) { break }
            }
            swap(&batch, &state.pending)
            let reopen = state.reopenRequested
            let dropped = state.droppedSinceReport
            state.reopenRequested = false
            state.droppedSinceReport = 0
            state.writing = true
            condition.unlock()

            if reopen { reopenFile() }
            write(batch)
            if dropped > 0 {
                write(Array(Self.warning("log lines dropped: the log output did not keep up", ["dropped": dropped]).utf8))
                let counter = dropCounter.withLockedValue { $0 }
                counter?(dropped)
            }
            batch.removeAll(keepingCapacity: batch.capacity <= 1 << 20)

            condition.lock()
            state.writing = false
            // Wakes `flush` once everything queued so far is out.
            if state.pending.isEmpty { condition.broadcast() }
            let done = state.stopping && state.pending.isEmpty
            condition.unlock()
            if done {
                if case .file = destination { close(descriptor) }
                syslog?.disconnect()
                return
            }
        }
    }

    private func write(_ bytes: [UInt8]) {
        if let syslog {
            let lost = syslog.send(bytes)
            if lost > 0 { countLost(lost) }
            return
        }
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    // A closed output (the reader of a pipe gone: EPIPE, the process ignores SIGPIPE) or a full
                    // disk: the rest of the batch is lost, and counted.
                    countLost(buffer[offset...].reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) })
                    return
                }
                offset += written
            }
        }
    }

    /// Lines the output refused after they were queued: counted like those the buffer had no room for.
    private func countLost(_ lost: Int) {
        droppedTotal.add(lost, ordering: .relaxed)
        let counter = dropCounter.withLockedValue { $0 }
        counter?(lost)
    }

    private func reopenFile() {
        syslog?.reopen()
        guard case .file(let path) = destination else { return }
        do {
            let reopened = try Self.open(path)
            close(descriptor)
            descriptor = reopened
        } catch {
            // Keep writing to the old file rather than nowhere, and say why.
            write(Array(Self.warning("log file not reopened; still writing to the previous one", ["error": "\(error)"]).utf8))
        }
    }

    private static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw OpenError(path: path, reason: String(cString: strerror(errno))) }
        return fd
    }

    /// A warning line in the JSON log format, for what the writer itself has to say.
    private static func warning(_ message: String, _ fields: [String: any Sendable]) -> String {
        var line = #"{"time":""# + JSONLogHandler.timestamp() + #"","level":"warning","msg":"#
        JSONText.appendQuoted(message, to: &line)
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            line += ","
            JSONText.appendQuoted(key, to: &line)
            line += ":"
            if let number = value as? Int { line += String(number) } else { JSONText.appendQuoted("\(value)", to: &line) }
        }
        return line + "}\n"
    }
}
