import GatewayPolicy
import Testing

@Suite struct RoundRobinTests {
    // Picks cycle through every target from the start offset.
    @Test func cycles() {
        var balancer = RoundRobin(count: 3, start: 4)
        let picks = (0..<7).map { _ in balancer.pick() }
        #expect(picks == [1, 2, 0, 1, 2, 0, 1])
    }
}
