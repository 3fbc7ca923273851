#include "event_clock.h"

__thread uint64_t gateway_event_clock_reading __attribute__((tls_model("initial-exec"))) = 0;
__thread uint32_t gateway_event_clock_depth __attribute__((tls_model("initial-exec"))) = 0;
