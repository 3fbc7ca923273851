// zlib (Debian zlib1g-dev): gzip content coding of responses (GatewayHTTP.GzipEncoder).
#include <zlib.h>
