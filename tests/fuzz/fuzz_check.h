/* fuzz_check.h - check(cond) for the libFuzzer harnesses: abort() with the failed condition, which libFuzzer then reports. */
#ifndef PANDIT_FUZZ_CHECK_H
#define PANDIT_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define check(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond); \
		abort(); \
	} \
} while (0)

#endif
