#ifndef GATEWAY_EVENT_CLOCK_H
#define GATEWAY_EVENT_CLOCK_H

#include <stdint.h>
#include <time.h>

// The state lives in event_clock.c; the accessors are inline so Swift callers pay no call per reading.
// initial-exec: a direct thread-pointer offset instead of a __tls_get_addr call per access.
extern __thread uint64_t gateway_event_clock_reading __attribute__((tls_model("initial-exec")));
extern __thread uint32_t gateway_event_clock_depth __attribute__((tls_model("initial-exec")));

static inline uint64_t gateway_event_clock_read(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC, the clock of NIODeadline.now()). Inside an event scope the
/// clock is read once, at the first call, and that reading is returned until the scope ends; outside
/// one every call reads the clock. Per thread: each event loop has its own.
static inline uint64_t gateway_event_clock_now(void) {
    if (gateway_event_clock_depth == 0) return gateway_event_clock_read();
    if (gateway_event_clock_reading == 0) gateway_event_clock_reading = gateway_event_clock_read();
    return gateway_event_clock_reading;
}

/// Opens an event scope (scopes nest; the outermost one decides).
static inline void gateway_event_clock_enter(void) { gateway_event_clock_depth += 1; }

/// Closes the scope opened last; closing the outermost one forgets the reading.
static inline void gateway_event_clock_leave(void) {
    if (gateway_event_clock_depth > 0 && --gateway_event_clock_depth == 0) gateway_event_clock_reading = 0;
}

#endif
