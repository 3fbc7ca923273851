import CZstd

/// Decodes Zstandard bodies in tests with libzstd's decoder, independently of the gateway's encoder.
public enum Unzstd {
    /// What `bytes` decode to, and whether they held a whole frame; nil when they are not Zstandard.
    public static func decode(_ bytes: [UInt8]) -> (data: [UInt8], complete: Bool)? {
        guard let stream = ZSTD_createDStream() else { return nil }
        defer { ZSTD_freeDStream(stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        return bytes.withUnsafeBufferPointer { input -> (data: [UInt8], complete: Bool)? in
            var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            while true {
                let (hint, produced) = chunk.withUnsafeMutableBufferPointer { space -> (Int, Int) in
                    var destination = ZSTD_outBuffer(dst: space.baseAddress, size: space.count, pos: 0)
                    let hint = ZSTD_decompressStream(stream, &destination, &source)
                    return (hint, destination.pos)
                }
                guard ZSTD_isError(hint) == 0 else { return nil }
                output += chunk[..<produced]
                if hint == 0 { return source.pos == source.size ? (output, true) : nil }  // a frame ended
                if source.pos == source.size && produced < chunk.count { return (output, false) }
            }
        }
    }
}
