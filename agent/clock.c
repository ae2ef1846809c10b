/* The agent's monotonic clock: see clock.h. */
#include <errno.h>
#include <time.h>

#include "clock.h"

int64_t fy_mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool fy_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t until_ms)
{
	struct timespec t = { .tv_sec = until_ms / 1000, .tv_nsec = (long)(until_ms % 1000) * 1000000L };

	return pthread_cond_timedwait(cv, mu, &t) != ETIMEDOUT;
}
