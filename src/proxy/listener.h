/* listener.h - the workers' listening sockets: one SO_REUSEPORT group that sk_lookup steers app ports into. */
#ifndef PANDIT_LISTENER_H
#define PANDIT_LISTENER_H

#include <stdint.h>

/* Creates n non-blocking TCP listeners sharing one SO_REUSEPORT group on an
 * ephemeral port (dual-stack [::] when IPv6 is available, else
 * 127.0.0.1). No app port is ever bound: the sk_lookup
 * program hands those connections to fds[0]'s group and the kernel spreads
 * them over the group. Returns 0 or a negative errno. */
int listener_group_open(uint32_t n, int *fds);
void listener_group_close(uint32_t n, int *fds);

#endif
