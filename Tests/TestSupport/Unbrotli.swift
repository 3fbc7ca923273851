import CBrotli

/// Decodes Brotli bodies in tests with libbrotli's decoder, independently of the gateway's encoder.
public enum Unbrotli {
    /// What `bytes` decode to, and whether they held a whole stream; nil when they are not Brotli.
    public static func decode(_ bytes: [UInt8]) -> (data: [UInt8], complete: Bool)? {
        guard let state = BrotliDecoderCreateInstance(nil, nil, nil) else { return nil }
        defer { BrotliDecoderDestroyInstance(state) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        return bytes.withUnsafeBufferPointer { input -> (data: [UInt8], complete: Bool)? in
            var availableIn = input.count
            var nextIn = input.baseAddress
            while true {
                let (result, produced) = chunk.withUnsafeMutableBufferPointer { space -> (BrotliDecoderResult, Int) in
                    var availableOut = space.count
                    var nextOut = space.baseAddress
                    let result = BrotliDecoderDecompressStream(state, &availableIn, &nextIn, &availableOut, &nextOut, nil)
                    return (result, space.count - availableOut)
                }
                output += chunk[..<produced]
                switch result {
                case BROTLI_DECODER_RESULT_SUCCESS: return availableIn == 0 ? (output, true) : nil
                case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT: continue
                case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT: return (output, false)
                default: return nil
                }
            }
        }
    }
}
