#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import GatewayConfig

/// Syslog messages from log lines (`logging.syslog`): pure, so the framing is tested without a socket.
public enum SyslogFormat {
    private static let key = Array(#""level":""#.utf8)

    /// The severity of a log line: its JSON `level` (`"level":"warning"` -> 4), informational (6) for a line without one
    /// (an access line in the `combined` format).
    public static func severity(of line: UnsafeRawBufferPointer) -> Int {
        // The level is the second field of every JSON line the gateway writes: look no further than its start.
        let window = min(line.count, 96)
        guard window >= key.count else { return 6 }
        var start = 0
        while start + key.count <= window {
            if line[start] == key[0], (0..<key.count).allSatisfy({ line[start + $0] == key[$0] }) {
                let value = start + key.count
                let end = line[value..<min(line.count, value + 9)].firstIndex(of: UInt8(ascii: "\"")) ?? value
                switch String(decoding: UnsafeRawBufferPointer(rebasing: line[value..<end]), as: UTF8.self) {
                case "critical": return 2
                case "error": return 3
                case "warning": return 4
                case "notice": return 5
                case "info": return 6
                default: return 7  // debug, trace
                }
            }
            start += 1
        }
        return 6
    }

    /// The header before the message: RFC 5424's `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - `, or RFC 3164's
    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: ` (without the host name on the local daemon's socket, which adds its own).
    public static func header(
        priority: Int, format: SyslogConfig.Format, time: timespec, hostname: String?, tag: String, pid: Int32
    ) -> String {
        var seconds = time.tv_sec
        var parts = tm()
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        switch format {
        case .rfc5424:
            gmtime_r(&seconds, &parts)
            let timestamp = "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
                + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(time.tv_nsec / 1_000_000), 3))Z"
            return "<\(priority)>1 \(timestamp) \(hostname ?? "-") \(tag) \(pid) - - "
        case .rfc3164:
            // Local time without a year, the day space-padded: "Dec  7 19:28:15".
            localtime_r(&seconds, &parts)
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            let day = parts.tm_mday < 10 ? " \(parts.tm_mday)" : "\(parts.tm_mday)"
            let timestamp = "\(months[Int(parts.tm_mon)]) \(day) \(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            return "<\(priority)>\(timestamp) \(hostname.map { $0 + " " } ?? "")\(tag)[\(pid)]: "
        }
    }

    /// The host name RFC 5424 allows: printable US-ASCII, at most 255 characters (nil: none to send, "-").
    static func hostname() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return !name.isEmpty && name.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) ? name : nil
    }
}

/// Sends log lines to syslog, one message per line, from the log writer's thread (it may block; the writer's buffer
/// absorbs a slow or absent server and drops what does not fit, counted).
///
/// UDP and the local daemon's socket carry one datagram per message; TCP frames them by octet counting (RFC 6587
/// §3.4.1: `LEN SP MSG`), which rsyslog, syslog-ng and most collectors read. A TCP connection that failed or was
/// closed by the server is made again for the next batch, at most once a second; what could not be sent is counted
/// as dropped.
public final class SyslogOutput {
    struct OpenError: Error, CustomStringConvertible {
        let address: SyslogConfig.Address
        let reason: String
        var description: String { "cannot reach syslog at \(address): \(reason)" }
    }

    private let config: SyslogConfig
    private let hostname: String?
    private let pid = getpid()
    /// The resolved destination (network addresses: resolved once, at start).
    private var address: sockaddr_storage
    private let addressLength: socklen_t
    private var descriptor: Int32 = -1
    /// When a failed TCP connect may be tried again.
    private var retryAfter = timespec()

    init(_ config: SyslogConfig) throws {
        self.config = config
        // RFC 3164 on the local socket leaves the host out (the daemon adds its own).
        if case .unix = config.address { hostname = nil } else { hostname = SyslogFormat.hostname() }
        (address, addressLength) = try Self.resolve(config.address)
        // A datagram socket is made now, so a wrong path or an unreachable network fails the start; a TCP server
        // that is down only costs lines until it is up.
        if config.transport == .udp { try connect() }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Why a gateway with this config would not start (`gateway check`), or nil. A TCP collector is only looked up:
    /// one that is down at start costs lines, not the start.
    public static func problem(reaching config: SyslogConfig) -> String? {
        do {
            _ = try SyslogOutput(config)
            return nil
        } catch let error as OpenError {
            return error.reason
        } catch {
            return "\(error)"
        }
    }

    /// Sends each line of `batch` (newline-terminated lines); returns how many could not be sent.
    func send(_ batch: [UInt8]) -> Int {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        if config.transport == .tcp { dropIfClosed() }
        var lost = 0
        var framed: [UInt8] = []
        // The batch shares one time: a header per severity, made once (a busy access log sends thousands of lines).
        var headers: [Int: [UInt8]] = [:]
        batch.withUnsafeBytes { bytes in
            var start = 0
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                let line = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
                start = end + 1
                guard !line.isEmpty else { continue }
                let severity = SyslogFormat.severity(of: line)
                let header =
                    headers[severity]
                    ?? Array(
                        SyslogFormat.header(
                            priority: config.facility * 8 + severity, format: config.format, time: time, hostname: hostname, tag: config.tag,
                            pid: pid
                        ).utf8)
                headers[severity] = header
                switch config.transport {
                case .udp:
                    if !sendDatagram(header + line) { lost += 1 }
                case .tcp:
                    framed.append(contentsOf: String(header.count + line.count).utf8)
                    framed.append(UInt8(ascii: " "))
                    framed.append(contentsOf: header)
                    framed.append(contentsOf: line)
                }
            }
        }
        if config.transport == .tcp, !framed.isEmpty, !sendStream(framed) {
            lost = batch.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        }
        return lost
    }

    /// Connects again (SIGUSR1: the local daemon restarted and made its socket anew).
    func reopen() {
        disconnect()
        retryAfter = timespec()
        if config.transport == .udp { try? connect() }
    }

    private func sendDatagram(_ message: [UInt8]) -> Bool {
        if descriptor < 0 { try? connect() }
        guard descriptor >= 0 else { return false }
        if sendOnce(message) { return true }
        // The daemon made its socket anew (ECONNREFUSED on a unix socket): connect to the new one and send again. On
        // UDP a refusal reports an earlier datagram that found no listener; the socket stays usable.
        guard case .unix = config.address, (try? connect()) != nil else { return false }
        return sendOnce(message)
    }

    private func sendOnce(_ message: [UInt8]) -> Bool {
        message.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == message.count
    }

    private func sendStream(_ bytes: [UInt8]) -> Bool {
        if descriptor < 0 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            guard now.tv_sec >= retryAfter.tv_sec else { return false }
            guard (try? connect()) != nil else {
                retryAfter = timespec(tv_sec: now.tv_sec + 1, tv_nsec: 0)
                return false
            }
        }
        var offset = 0
        let complete = bytes.withUnsafeBytes { buffer in
            while offset < buffer.count {
                let written = Glibc.send(descriptor, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                if written < 0 {
                    if errno == EINTR { continue }
                    return false  // reset, or stalled past the send timeout
                }
                offset += written
            }
            return true
        }
        // A message cut in the middle would garble the rest of the stream: the connection is made anew.
        if !complete { disconnect() }
        return complete
    }

    /// A syslog server never sends anything: a readable TCP socket has been closed or reset by it. Found before
    /// sending, so a batch is not written into a connection that is gone.
    private func dropIfClosed() {
        guard descriptor >= 0 else { return }
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        if poll(&poller, 1, 0) > 0 { disconnect() }
    }

    func disconnect() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    private func connect() throws {
        disconnect()
        let family = Int32(address.ss_family)
        let kind = config.transport == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        let fd = socket(family, kind | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw OpenError(address: config.address, reason: String(cString: strerror(errno))) }
        // A stalled server holds the writer thread at most this long per batch; its lines are then dropped and counted.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, addressLength) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw OpenError(address: config.address, reason: reason)
        }
        descriptor = fd
    }

    private static func resolve(_ address: SyslogConfig.Address) throws -> (sockaddr_storage, socklen_t) {
        var storage = sockaddr_storage()
        switch address {
        case .unix(let path):
            var unix = sockaddr_un()
            unix.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: unix.sun_path) else {
                throw OpenError(address: address, reason: "the path is too long for a socket")
            }
            withUnsafeMutableBytes(of: &unix.sun_path) { raw in
                for (index, byte) in bytes.enumerated() { raw[index] = byte }
            }
            withUnsafeMutableBytes(of: &storage) { target in
                withUnsafeBytes(of: unix) { target.copyMemory(from: $0) }
            }
            return (storage, socklen_t(MemoryLayout<sockaddr_un>.size))
        case .network(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
            var results: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, String(port), &hints, &results)
            guard status == 0, let first = results else {
                throw OpenError(address: address, reason: String(cString: gai_strerror(status)))
            }
            defer { freeaddrinfo(results) }
            let length = first.pointee.ai_addrlen
            withUnsafeMutableBytes(of: &storage) { target in
                target.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(length)))
            }
            return (storage, length)
        }
    }
}
