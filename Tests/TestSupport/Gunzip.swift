import CZlib

/// Decodes gzip bodies in tests, independently of the gateway's encoder (zlib's inflate).
public enum Gunzip {
    /// What `bytes` decode to, and whether they held a whole gzip stream (header, data, CRC and length
    /// trailer). A flushed but unfinished stream decodes to the data flushed so far. nil when the bytes are
    /// not gzip, a checksum is wrong, or bytes follow the end of the stream.
    public static func decode(_ bytes: [UInt8]) -> (data: [UInt8], complete: Bool)? {
        // Heap-allocated: zlib checks that its z_stream stays where it was initialised.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        // 15 + 16: gzip only, with the largest window.
        guard inflateInit2_(stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(stream) }
        var input = bytes
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        return input.withUnsafeMutableBufferPointer { inputBuffer -> (data: [UInt8], complete: Bool)? in
            stream.pointee.next_in = inputBuffer.baseAddress
            stream.pointee.avail_in = UInt32(inputBuffer.count)
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { space -> (Int32, Int) in
                    stream.pointee.next_out = space.baseAddress
                    stream.pointee.avail_out = UInt32(space.count)
                    let status = inflate(stream, Z_SYNC_FLUSH)
                    return (status, space.count - Int(stream.pointee.avail_out))
                }
                output += chunk[..<produced]
                switch status {
                case Z_STREAM_END: return stream.pointee.avail_in == 0 ? (output, true) : nil
                case Z_OK: continue
                case Z_BUF_ERROR: return (output, false)  // all input used before the end: an unfinished stream
                default: return nil
                }
            }
        }
    }
}
