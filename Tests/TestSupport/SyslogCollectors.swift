import Foundation

/// A datagram socket that receives what the writer sends: a UDP collector on a free port, or a local daemon's socket.
public struct DatagramCollector {
    public let descriptor: Int32
    public private(set) var port = 0

    public init(udpOn host: String) throws {
        descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &address.sin_addr)
        port = try Self.bind(descriptor, &address)
        Self.setReceiveTimeout(descriptor)
    }

    public init(unixAt path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        _ = try Self.bind(descriptor, &address)
        Self.setReceiveTimeout(descriptor)
    }

    /// One datagram as text, or nil after 5 s without one.
    public func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }

    public func close() { _ = Glibc.close(descriptor) }

    private static func bind<Address>(_ descriptor: Int32, _ address: inout Address) throws -> Int {
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<Address>.size)) }
        }
        guard bound == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return Int(UInt16(bigEndian: local.sin_port))
    }

    static func setReceiveTimeout(_ descriptor: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// A TCP collector on 127.0.0.1: accepts connections and reads octet-counted syslog frames (RFC 6587).
public struct StreamListener {
    public let descriptor: Int32
    public let port: Int

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        (descriptor, port) = (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// The next connection, or nil after 5 s without one.
    public func accept() -> Connection? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 5_000) == 1 else { return nil }
        let connection = Glibc.accept(descriptor, nil, nil)
        guard connection >= 0 else { return nil }
        DatagramCollector.setReceiveTimeout(connection)
        return Connection(descriptor: connection)
    }

    public func close() { _ = Glibc.close(descriptor) }

    public struct Connection {
        public let descriptor: Int32

        /// Up to `count` frames (`LEN SP MSG`), reading for at most 5 s per read.
        public func frames(count: Int) -> [String] {
            var received: [UInt8] = []
            var frames: [String] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while frames.count < count {
                let read = recv(descriptor, &buffer, buffer.count, 0)
                guard read > 0 else { break }
                received.append(contentsOf: buffer[0..<read])
                while let space = received.firstIndex(of: UInt8(ascii: " ")),
                    let length = Int(String(decoding: received[..<space], as: UTF8.self)),
                    received.count >= space + 1 + length
                {
                    frames.append(String(decoding: received[(space + 1)..<(space + 1 + length)], as: UTF8.self))
                    received.removeFirst(space + 1 + length)
                }
            }
            return frames
        }

        public func close() { _ = Glibc.close(descriptor) }
    }
}
