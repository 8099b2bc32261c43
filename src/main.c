/* main.c - pandit's entry point: command line, start-up, privilege drop and the control loop. */
#include <stdio.h>

int main(void)
{
	fprintf(stderr, "pandit: not yet\n");
	return 1;
}
