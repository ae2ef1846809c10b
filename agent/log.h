/* The agent's log: one line per event on stderr, "TIME LEVEL message",
 * UTC with milliseconds; with --log-format json, one JSON object per line
 * ({"time":"2026-12-03T13:08:38.123Z","level":"info","msg":"...", and
 * "volume", "snapshot", "target", "policy", "error" where they apply}).
 * Never given a secret: callers log names and ids, never the secrets map
 * of a request or a repository password. */
#ifndef FERRY_AGENT_LOG_H
#define FERRY_AGENT_LOG_H

#include <stdbool.h>

void fy_log_set_debug(bool on);
/* "text" (the default) or "json": 0, or -EINVAL for anything else. */
int fy_log_set_format(const char *name);
bool fy_log_json(void);
void fy_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fy_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fy_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fy_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An event about something named: the fields that apply (NULL: not this
 * one) go into the line, and, with --log-format json, into fields of their
 * own.  error is a reason, never a secret. */
enum fy_log_level { FY_LOG_ERROR, FY_LOG_WARN, FY_LOG_INFO, FY_LOG_DEBUG };
struct fy_log_fields {
	const char *volume, *snapshot, *target, *policy, *error;
};
void fy_logf(enum fy_log_level level, const struct fy_log_fields *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
