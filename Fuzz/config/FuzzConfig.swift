import GatewayConfig

/// libFuzzer entry point: any bytes as gateway.json. The loader must report problems, never crash, and a
/// document it accepts must render and load again to the same verdict; its routes' schemas must check any
/// document (bodies) or parameters (query, path, headers) without crashing.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let result = ConfigLoader.load(text: text, environment: ["SECRET": "fuzz"])
    if let config = result.config, let source = config.source {
        let again = ConfigLoader.load(text: source.rendered, environment: ["SECRET": "fuzz"])
        precondition(again.config != nil, "a valid config rendered back must stay valid")
        // Route body schemas meet a document they were not written for: the config itself, and each part of it.
        for schema in config.routes.compactMap(\.requestValidation?.bodySchema) {
            _ = schema.violation(of: source)
            if case .object(let members) = source { for member in members { _ = schema.violation(of: member.value) } }
        }
        // Query, path and header schemas meet the config's top-level keys as parameters, their rendered values as text.
        guard case .object(let members) = source else { return 0 }
        let parameters = members.map { (name: $0.key, value: $0.value.rendered) }
        for validation in config.routes.compactMap(\.requestValidation) {
            for schema in [validation.querySchema, validation.pathSchema, validation.headerSchema].compactMap({ $0 }) {
                _ = schema.violation(of: schema.queryDocument(parameters))
                _ = schema.violation(of: schema.pathDocument(parameters))
                _ = schema.violation(of: schema.headerDocument(names: schema.headerNames) { _ in parameters.map(\.value) })
            }
        }
    }
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`; ours hands control to libFuzzer's driver,
/// so the same binary fuzzes (`fuzz-config corpus/`) or replays crash files (`fuzz-config crash-...`).
@_cdecl("fuzz_config_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzConfig)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt
