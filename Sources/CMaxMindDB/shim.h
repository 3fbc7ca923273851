// libmaxminddb (Debian libmaxminddb-dev): reads MaxMind DB files (GeoLite2, GeoIP2, DB-IP's free databases) by
// mapping them into memory; lookups are reads of that mapping, safe from any thread.
#include <maxminddb.h>
