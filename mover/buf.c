#include <stdlib.h>
#include <sys/mman.h>

#include "buf.h"

#define HUGE_ALIGN (2u << 20)

void *fy_buf_alloc(size_t size)
{
	size_t rounded = (size + HUGE_ALIGN - 1) & ~(size_t)(HUGE_ALIGN - 1);
	void *p = aligned_alloc(HUGE_ALIGN, rounded);

	if (p)
		madvise(p, rounded, MADV_HUGEPAGE); /* advice only: failure changes nothing */
	return p;
}

void fy_buf_free(void *p)
{
	free(p);
}
