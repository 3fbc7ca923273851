@testable import GatewayCore
import Testing

/// The suspension a filter hands the exchange: one decision, delivered once, whether it is known before or
/// after the exchange starts waiting.
@Suite struct FilterSuspensionTests {
    final class Waiter: FilterSuspensionWaiter {
        var received: [String] = []
        func filterResumed(_ result: Result<FilterResumption, any Error>) {
            switch result {
            case .success(let resumption): received.append(FilterSuspensionTests.decision(resumption))
            case .failure(let error): received.append("failed \(error)")
            }
        }
    }

    static func decision(_ resumption: FilterResumption) -> String {
        switch resumption.decision {
        case .proceed: return "proceed"
        case .respond(let response): return "respond \(response.head.status)"
        }
    }

    @Test func resumedAfterTheWaitStarts() {
        let suspension = FilterSuspension()
        let waiter = Waiter()
        suspension.wait(waiter)
        #expect(waiter.received.isEmpty)
        suspension.resume(FilterResumption(decision: .proceed))
        suspension.resume(FilterResumption(decision: .respond(GatewayResponse(status: 429))))
        #expect(waiter.received == ["proceed"], "the first decision only")
    }

    @Test func resumedBeforeTheWaitStarts() {
        let suspension = FilterSuspension()
        suspension.resume(FilterResumption(decision: .respond(GatewayResponse(status: 503))))
        suspension.resume(FilterResumption(decision: .proceed))
        let waiter = Waiter()
        suspension.wait(waiter)
        #expect(waiter.received == ["respond 503"], "delivered at once, the first decision only")
    }

    struct Broken: Error {}

    // A failed future (a JWKS refetch that failed, say) reaches the waiter as that failure.
    @Test func failureReachesTheWaiter() {
        let suspension = FilterSuspension()
        let waiter = Waiter()
        suspension.wait(waiter)
        suspension.resume(.failure(Broken()))
        #expect(waiter.received == ["failed Broken()"])
    }
}
