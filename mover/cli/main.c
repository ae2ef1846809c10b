#include <stdio.h>
int main(void)
{
	fprintf(stderr, "ferry: not built yet\n");
	return 1;
}
