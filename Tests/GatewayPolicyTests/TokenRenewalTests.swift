import GatewayPolicy
import Testing

@Suite struct TokenRenewalTests {
    // Renewed at 80% of the stated lifetime, never sooner than a second; every ten minutes without one.
    @Test func renewal() {
        #expect(TokenRenewal.renewAfter(lifetime: 3600) == 2880)
        #expect(TokenRenewal.renewAfter(lifetime: 1) == 1)
        #expect(TokenRenewal.renewAfter(lifetime: nil) == 600)
        #expect(TokenRenewal.renewAfter(lifetime: 0) == 600)
    }

    // Failed requests back off from a second, doubling, to a minute.
    @Test func backoff() {
        #expect((1...8).map(TokenRenewal.retryAfter(failures:)) == [1, 2, 4, 8, 16, 32, 60, 60])
        #expect(TokenRenewal.retryAfter(failures: 0) == 1)
    }
}
