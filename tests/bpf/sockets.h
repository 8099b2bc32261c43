/* sockets.h - the loopback helpers the BPF tests share: a fresh network namespace, exact reads, silence checks (cmocka asserts). */
#ifndef PANDIT_TESTS_BPF_SOCKETS_H
#define PANDIT_TESTS_BPF_SOCKETS_H

/* include after <cmocka.h> */
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* A network namespace of the test's own, with lo up. */
static inline void fresh_netns(void)
{
	struct ifreq ifr;
	assert_int_equal(unshare(CLONE_NEWNET), 0);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
	close(fd);
}

/* Reads exactly n bytes into buf (each wait at most 5 s). */
static inline void read_exactly(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		assert_int_equal(poll(&p, 1, 5000), 1);
		ssize_t r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

/* Nothing readable on fd within ms milliseconds (EAGAIN after the wait). */
static inline void nothing_within(int fd, int ms)
{
	char c;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	poll(&p, 1, ms);
	assert_int_equal(recv(fd, &c, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

/* Sends all n bytes in one call. */
static inline void send_all(int fd, const char *buf, size_t n)
{
	assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

#endif
