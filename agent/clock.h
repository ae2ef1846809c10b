/* The monotonic clock, and timed waits on it, for the agent's threads. */
#ifndef FERRY_AGENT_CLOCK_H
#define FERRY_AGENT_CLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
int64_t fy_mono_ms(void);
/* Wait on cv (mu held; cv made with CLOCK_MONOTONIC) until fy_mono_ms()
 * reads until_ms: false at the deadline. */
bool fy_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t until_ms);

#endif
