// hiredis (Debian libhiredis-dev): the gateway uses only its command formatter and its reply parser;
// SwiftNIO does all socket I/O.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
