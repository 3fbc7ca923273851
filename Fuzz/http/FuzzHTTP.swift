import GatewayHTTP
import NIOCore

/// libFuzzer entry point: any bytes as a client's request stream. The parser must accept or reject without
/// crashing; an accepted head's path must normalise idempotently (normalising twice changes nothing), and
/// a body after it must decode or be rejected.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var buffer = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    var parser = HTTP1HeadParser(maxHeadBytes: 16_384, maxFields: 100)
    guard let request = try? parser.parseRequest(&buffer) else { return 0 }
    for policy in PathNormalizer.EncodedSlashes.allCases {
        if case .success(let once) = PathNormalizer.normalize(request.head.target, encodedSlashes: policy) {
            let twice = PathNormalizer.normalize(once, encodedSlashes: policy)
            precondition(twice == .success(once), "normalising must be idempotent: \(request.head.target) -> \(once) -> \(twice)")
        }
    }
    var decoder = BodyDecoder(framing: request.framing)
    var events = 0
    while events < 10_000, let event = try? decoder.next(&buffer) {
        events += 1
        if case .end = event { break }
    }
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`; ours hands control to libFuzzer's driver,
/// so the same binary fuzzes (`fuzz-http corpus/`) or replays crash files (`fuzz-http crash-...`).
@_cdecl("fuzz_http_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzHTTP)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt
