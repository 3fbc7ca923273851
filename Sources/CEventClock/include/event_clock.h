#ifndef GATEWAY_EVENT_CLOCK_H
#define GATEWAY_EVENT_CLOCK_H

#include <stdint.h>

/// Monotonic nanoseconds (CLOCK_MONOTONIC, the clock of NIODeadline.now()). Inside an event scope the
/// clock is read once, at the first call, and that reading is returned until the scope ends; outside
/// one every call reads the clock. Per thread: each event loop has its own.
uint64_t gateway_event_clock_now(void);

/// Opens an event scope (scopes nest; the outermost one decides).
void gateway_event_clock_enter(void);

/// Closes the scope opened last; closing the outermost one forgets the reading.
void gateway_event_clock_leave(void);

#endif
