/// Plain round-robin over `count` targets. One instance per event loop, so no atomics are needed;
/// across loops the rotation interleaves, which spreads load just as evenly.
public struct RoundRobin: Sendable {
    private var next = 0
    public let count: Int

    public init(count: Int, start: Int = 0) {
        precondition(count > 0)
        self.count = count
        self.next = start % count
    }

    public mutating func pick() -> Int {
        let index = next
        next = next + 1 == count ? 0 : next + 1
        return index
    }
}
