import NIOCore

/// One object per event loop, created on that loop and only ever used there.
public struct LoopLocal<Value>: Sendable {
    private let values: [ObjectIdentifier: NIOLoopBoundBox<Value>]

    /// Runs `make` on every loop of `group` (on that loop) and keeps the results.
    public static func make(
        on group: EventLoopGroup, _ make: @escaping @Sendable (EventLoop, Int) -> Value
    ) async throws -> LoopLocal<Value> {
        var values: [ObjectIdentifier: NIOLoopBoundBox<Value>] = [:]
        for (index, loop) in group.makeIterator().enumerated() {
            let bound = try await loop.submit { NIOLoopBoundBox(make(loop, index), eventLoop: loop) }.get()
            values[ObjectIdentifier(loop)] = bound
        }
        return LoopLocal(values: values)
    }

    /// Makes every loop's value here, off the loops: each is handed to its loop and never used elsewhere.
    public init(loops: [EventLoop], _ make: (EventLoop) -> sending Value) {
        var values: [ObjectIdentifier: NIOLoopBoundBox<Value>] = [:]
        for loop in loops { values[ObjectIdentifier(loop)] = .makeBoxSendingValue(make(loop), eventLoop: loop) }
        self.values = values
    }

    private init(values: [ObjectIdentifier: NIOLoopBoundBox<Value>]) { self.values = values }

    /// The value of the current loop. Must be called on `eventLoop`.
    public func value(on eventLoop: EventLoop) -> Value {
        guard let bound = values[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("event loop \(eventLoop) is not part of this group")
        }
        return bound.value
    }

    /// Runs `body` on every loop with that loop's value.
    public func forEach(_ body: @escaping @Sendable (Value) -> Void) async {
        for bound in values.values {
            try? await bound.eventLoop.submit { body(bound.value) }.get()
        }
    }
}
