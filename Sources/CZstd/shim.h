// Zstandard (Debian libzstd-dev): the zstd content coding of responses (GatewayHTTP.ZstdEncoder, RFC 8878); the
// decoder is for the tests.
#include <zstd.h>
