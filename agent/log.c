/* The agent's log: see log.h. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

static atomic_bool debug_on;

void fy_log_set_debug(bool on)
{
	atomic_store(&debug_on, on);
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
	struct timespec ts;
	struct tm tm;
	char when[32], line[2048];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	vsnprintf(line, sizeof(line), fmt, ap);
	/* One write per line: lines of different threads never interleave. */
	fprintf(stderr, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000, level, line);
}

#define FY_LOG_FN(name, level, cond)                   \
	void name(const char *fmt, ...)                \
	{                                              \
		va_list ap;                            \
		if (!(cond))                           \
			return;                        \
		va_start(ap, fmt);                     \
		vlog(level, fmt, ap);                  \
		va_end(ap);                            \
	}

FY_LOG_FN(fy_log_error, "error", 1)
FY_LOG_FN(fy_log_warn, "warn", 1)
FY_LOG_FN(fy_log_info, "info", 1)
FY_LOG_FN(fy_log_debug, "debug", atomic_load(&debug_on))
