#include "event_clock.h"

#include <time.h>

// initial-exec: a direct thread-pointer offset instead of a __tls_get_addr call per access.
static __thread uint64_t reading __attribute__((tls_model("initial-exec")));
static __thread uint32_t depth __attribute__((tls_model("initial-exec")));

static uint64_t read_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gateway_event_clock_now(void) {
    if (depth == 0) return read_clock();
    if (reading == 0) reading = read_clock();
    return reading;
}

void gateway_event_clock_enter(void) { depth += 1; }

void gateway_event_clock_leave(void) {
    if (depth > 0 && --depth == 0) reading = 0;
}
