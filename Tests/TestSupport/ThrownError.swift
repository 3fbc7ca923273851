/// The error `body` throws, or nil. Tests use it instead of `#expect(throws:) { ... }`: a closure inside a
/// test macro trips a Swift 6.3 miscompile (see scripts/check-test-macros.py), a closure here does not.
public func thrownError(_ body: () throws -> Void) -> (any Error)? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

public func thrownError(async body: () async throws -> Void) async -> (any Error)? {
    do {
        try await body()
        return nil
    } catch {
        return error
    }
}
