/* The agent's log: one line per event on stderr, "TIME LEVEL message",
 * UTC with milliseconds.  Never given a secret: callers log names and ids,
 * never the secrets map of a request or a repository password. */
#ifndef FERRY_AGENT_LOG_H
#define FERRY_AGENT_LOG_H

#include <stdbool.h>

void fy_log_set_debug(bool on);
void fy_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fy_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fy_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fy_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
