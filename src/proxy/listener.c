/* listener.c - the workers' listening sockets: one SO_REUSEPORT group that sk_lookup steers app ports into. */
#include "proxy/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

static int listener_open_one(int family, const struct sockaddr *addr, socklen_t len)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, zero = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	/* an IPv4 lookup may be assigned to a dual-stack IPv6 socket */
	if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		goto fail;
	if (bind(fd, addr, len) < 0 || listen(fd, SOMAXCONN) < 0)
		goto fail;
	return fd;
fail:;
	int err = -errno;
	close(fd);
	return err;
}

static int listener_group_open_family(uint32_t n, int *fds, int family)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		/* [::] with IPV6_V6ONLY off: the one kind of socket sk_lookup may
		 * assign both IPv4 and IPv6 connections to (a socket bound to
		 * [::1] counts as IPv6-only). Connections made to its own
		 * ephemeral port match no app and are closed. */
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_any;
		len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*in);
	}
	for (uint32_t i = 0; i < n; i++) {
		int fd = listener_open_one(family, (struct sockaddr *)&ss, len);
		if (fd < 0) {
			listener_group_close(i, fds);
			return fd;
		}
		fds[i] = fd;
		if (i == 0) {
			/* the others join the group on the same ephemeral port */
			socklen_t l = len;
			if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0) {
				int err = -errno;
				listener_group_close(1, fds);
				return err;
			}
		}
	}
	return 0;
}

int listener_group_open(uint32_t n, int *fds)
{
	int err = listener_group_open_family(n, fds, AF_INET6);
	if (err == 0)
		return 0;
	log_info("no dual-stack IPv6 listener (%s), using 127.0.0.1: IPv6 clients will not be steered",
		 strerror(-err));
	err = listener_group_open_family(n, fds, AF_INET);
	if (err < 0)
		log_err("cannot create the listeners: socket/bind/listen on 127.0.0.1 failed: %s",
			strerror(-err));
	return err;
}

void listener_group_close(uint32_t n, int *fds)
{
	for (uint32_t i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}
