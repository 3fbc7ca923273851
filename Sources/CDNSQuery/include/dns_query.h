#ifndef GATEWAY_DNS_QUERY_H
#define GATEWAY_DNS_QUERY_H

/// One DNS query of `type` (33 SRV, 1 A, 28 AAAA) for `name` through the system's resolver (resolv.conf), or through
/// `server` (an IPv4 address) on `port` when it is not NULL: the answer message's length, written to `answer`, or the
/// negated resolver error (1 no such name, 2 try again, 3 refused or failed, 4 no records of that type; 1000 and up:
/// the resolver could not start, or `server` is not an IPv4 address).
int gateway_dns_query(const char *name, int type, const char *server, int port, unsigned char *answer, int length);

#endif
