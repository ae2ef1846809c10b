/* The agent's log: see log.h. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static atomic_bool debug_on;

void fy_log_set_debug(bool on)
{
	atomic_store(&debug_on, on);
}

static void logline(const char *level, const char *line)
{
	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One write per line: lines of different threads never interleave. */
	fprintf(stderr, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000, level, line);
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
	char line[2048];

	vsnprintf(line, sizeof(line), fmt, ap);
	logline(level, line);
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

void fy_logf(enum fy_log_level level, const struct fy_log_fields *f, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	static const char *const keys[] = { "volume", "snapshot", "target", "policy", "error" };
	const char *vals[] = { f ? f->volume : NULL, f ? f->snapshot : NULL, f ? f->target : NULL,
			       f ? f->policy : NULL, f ? f->error : NULL };
	char line[2048];
	size_t n;
	va_list ap;

	if (level == FY_LOG_DEBUG && !atomic_load(&debug_on))
		return;
	va_start(ap, fmt);
	n = (size_t)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Text lines: the message, then each field it does not already say. */
	for (size_t i = 0; i < 5 && n < sizeof(line); i++)
		if (vals[i] && !strstr(line, vals[i]))
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%s", keys[i], vals[i]);
	logline(names[level], line);
}

FY_LOG_FN(fy_log_error, "error", 1)
FY_LOG_FN(fy_log_warn, "warn", 1)
FY_LOG_FN(fy_log_info, "info", 1)
FY_LOG_FN(fy_log_debug, "debug", atomic_load(&debug_on))
