// Brotli (Debian libbrotli-dev): br content coding of responses (GatewayHTTP.BrotliEncoder); the decoder is
// for the tests.
#include <brotli/encode.h>
#include <brotli/decode.h>
