#include "dns_query.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <resolv.h>
#include <string.h>

int gateway_dns_query(const char *name, int type, const char *server, int port, unsigned char *answer, int length) {
    struct __res_state state;
    memset(&state, 0, sizeof state);
    if (res_ninit(&state) != 0) return -1000;
    if (server != NULL) {
        struct sockaddr_in address;
        memset(&address, 0, sizeof address);
        address.sin_family = AF_INET;
        address.sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, server, &address.sin_addr) != 1) {
            res_nclose(&state);
            return -1001;
        }
        state.nsaddr_list[0] = address;
        state.nscount = 1;
    }
    // A dead server holds a lookup (on a thread of its own) for 2 x 2 seconds, not resolv.conf's default 2 x 5.
    state.retrans = 2;
    state.retry = 2;
    int received = res_nquery(&state, name, ns_c_in, type, answer, length);
    int error = state.res_h_errno;
    res_nclose(&state);
    return received >= 0 ? received : -(error > 0 ? error : 999);
}
