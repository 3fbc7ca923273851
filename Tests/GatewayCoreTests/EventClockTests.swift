import GatewayCore
import NIOCore
import Testing

/// The clock read once per event: constant inside a scope (nested ones included), the current time outside.
@Suite struct EventClockTests {
    /// Returns once the real clock has moved past `instant`.
    static func waitForClockToPass(_ instant: NIODeadline) {
        while NIODeadline.now() <= instant {}
    }

    @Test func insideAnEventEveryReadingIsTheFirst() {
        EventClock.event {
            let first = EventClock.now()
            Self.waitForClockToPass(first)
            #expect(EventClock.now() == first)
            EventClock.event {
                #expect(EventClock.now() == first)
            }
            // The nested scope ending does not end the outer one.
            #expect(EventClock.now() == first)
        }
    }

    @Test func outsideAnEventTheClockMoves() {
        let before = EventClock.now()
        Self.waitForClockToPass(before)
        #expect(EventClock.now() > before)
    }

    @Test func theNextEventReadsTheClockAgain() {
        let first = EventClock.event { EventClock.now() }
        Self.waitForClockToPass(first)
        let second = EventClock.event { EventClock.now() }
        #expect(second > first)
    }

    @Test func itIsTheClockOfNIODeadline() {
        let before = NIODeadline.now()
        let reading = EventClock.now()
        let after = NIODeadline.now()
        #expect(before <= reading)
        #expect(reading <= after)
    }
}
