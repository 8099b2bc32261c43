/* python_check.h - unit-test helper: runs a Python check (Debian's /usr/bin/python3) on text the test produced. */
#ifndef PANDIT_TEST_PYTHON_CHECK_H
#define PANDIT_TEST_PYTHON_CHECK_H

/* Include after <cmocka.h>: the helper asserts with it. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs /usr/bin/python3 -c script FILE with text[0..len) in FILE; returns
 * its exit status, or -1 when python is not there. */
static inline int python_check(const char *script, const char *text, size_t len)
{
	if (access("/usr/bin/python3", X_OK) != 0)
		return -1;
	char path[] = "/tmp/pandit_unit_python_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/usr/bin/python3", "python3", "-c", script, path, (char *)NULL);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	unlink(path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#endif
