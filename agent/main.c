/* ferry agent: entry point (filled in by the CSI agent issue). */
#include <stdio.h>

#include "agent.h"

int fy_agent_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "ferry agent: not built yet\n");
	return 1;
}
