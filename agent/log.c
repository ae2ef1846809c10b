/* The agent's log: see log.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "utf8.h"

#define LINE_MAX_MSG 2048     /* a message, at most (longer ones are cut) */
#define FIELD_MAX 1024        /* a field's value, at most (in bytes, before escaping) */

static atomic_bool debug_on, json_on;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const char *const field_keys[] = { "volume", "snapshot", "target", "policy", "error" };

void fy_log_set_debug(bool on)
{
	atomic_store(&debug_on, on);
}

int fy_log_set_format(const char *name)
{
	if (!strcmp(name, "text"))
		atomic_store(&json_on, false);
	else if (!strcmp(name, "json"))
		atomic_store(&json_on, true);
	else
		return -EINVAL;
	return 0;
}

bool fy_log_json(void)
{
	return atomic_load(&json_on);
}

/* One write(2) per line: lines of different threads never interleave. */
static void emit(const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(STDERR_FILENO, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

/* RFC 3339, UTC, milliseconds: 2026-12-03T13:08:38.123Z */
static void now_rfc3339(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03ldZ", sec, ts.tv_nsec / 1000000);
}

/* s (at most max bytes of it) as the inside of a JSON string into out (NULL:
 * only count); returns the length.  Quotes, backslashes and control
 * characters are escaped, bytes that are not well-formed UTF-8 become
 * U+FFFD, so that every line is valid JSON whatever a name held. */
static size_t json_escape(char *out, const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strnlen(s, max), o = 0;

	for (size_t i = 0; i < n;) {
		char tmp[8];
		const char *piece = tmp;
		size_t plen, seq;

		if (p[i] == '"' || p[i] == '\\') {
			tmp[0] = '\\', tmp[1] = (char)p[i], plen = 2;
			i++;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			static const char short_esc[] = { ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',
							  ['\t'] = 't' };

			if (p[i] < sizeof(short_esc) && short_esc[p[i]]) {
				tmp[0] = '\\', tmp[1] = short_esc[p[i]], plen = 2;
			} else {
				snprintf(tmp, sizeof(tmp), "\\u%04x", p[i]);
				plen = 6;
			}
			i++;
		} else if (p[i] < 0x80) {
			piece = (const char *)p + i, plen = 1;
			i++;
		} else if ((seq = fy_utf8_seq(p + i, n - i))) {
			piece = (const char *)p + i, plen = seq;
			i += seq;
		} else {
			piece = "\xef\xbf\xbd", plen = 3; /* U+FFFD REPLACEMENT CHARACTER */
			i++;
		}
		if (out)
			memcpy(out + o, piece, plen);
		o += plen;
	}
	return o;
}

/* {"time":"...","level":"...","msg":"...","volume":"...",...}\n into out
 * (NULL: only count); returns the length. */
static size_t json_line(char *out, const char *when, const char *level, const char *msg, const char *const vals[5])
{
	size_t o = 0;

#define PUT(str)                                           \
	do {                                               \
		size_t l_ = strlen(str);                   \
		if (out)                                   \
			memcpy(out + o, (str), l_);        \
		o += l_;                                   \
	} while (0)
#define ESC(str, max) (o += json_escape(out ? out + o : NULL, (str), (max)))

	PUT("{\"time\":\"");
	PUT(when);
	PUT("\",\"level\":\"");
	PUT(level);
	PUT("\",\"msg\":\"");
	ESC(msg, LINE_MAX_MSG);
	PUT("\"");
	for (size_t i = 0; i < 5; i++) {
		if (!vals[i])
			continue;
		PUT(",\"");
		PUT(field_keys[i]);
		PUT("\":\"");
		ESC(vals[i], FIELD_MAX);
		PUT("\"");
	}
	PUT("}\n");
#undef PUT
#undef ESC
	return o;
}

static void logline(enum fy_log_level level, const char *msg, const char *const vals[5])
{
	char when[48];

	now_rfc3339(when, sizeof(when));
	if (atomic_load(&json_on)) {
		size_t len = json_line(NULL, when, level_names[level], msg, vals);
		char *buf = malloc(len + 1);

		if (buf) {
			json_line(buf, when, level_names[level], msg, vals);
			emit(buf, len);
			free(buf);
		} else {
			/* No memory for the line: its level and time, still one valid object. */
			char small[160];
			int n = snprintf(small, sizeof(small),
					 "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"(out of memory for a log line)\"}\n",
					 when, level_names[level]);

			emit(small, (size_t)n);
		}
		return;
	}
	{
		char line[LINE_MAX_MSG + 5 * (FIELD_MAX + 16) + 96];
		int n = snprintf(line, sizeof(line), "%s %s %s", when, level_names[level], msg);
		size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

		/* Text lines: the message, then each field it does not already say. */
		for (size_t i = 0; vals && i < 5 && len < sizeof(line) - 1; i++) {
			if (!vals[i] || strstr(msg, vals[i]))
				continue;
			n = snprintf(line + len, sizeof(line) - len, " %s=%.*s", field_keys[i], FIELD_MAX, vals[i]);
			len += n < 0 ? 0 : (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
		}
		line[len++] = '\n';
		emit(line, len);
	}
}

static void vlog(enum fy_log_level level, const struct fy_log_fields *f, const char *fmt, va_list ap)
{
	const char *vals[5] = { f ? f->volume : NULL, f ? f->snapshot : NULL, f ? f->target : NULL,
				f ? f->policy : NULL, f ? f->error : NULL };
	char msg[LINE_MAX_MSG];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	logline(level, msg, vals);
}

void fy_logf(enum fy_log_level level, const struct fy_log_fields *f, const char *fmt, ...)
{
	va_list ap;

	if ((unsigned)level > FY_LOG_DEBUG)
		level = FY_LOG_ERROR;
	if (level == FY_LOG_DEBUG && !atomic_load(&debug_on))
		return;
	va_start(ap, fmt);
	vlog(level, f, fmt, ap);
	va_end(ap);
}

#define FY_LOG_FN(name, level, cond)                   \
	void name(const char *fmt, ...)                \
	{                                              \
		va_list ap;                            \
		if (!(cond))                           \
			return;                        \
		va_start(ap, fmt);                     \
		vlog(level, NULL, fmt, ap);            \
		va_end(ap);                            \
	}

FY_LOG_FN(fy_log_error, FY_LOG_ERROR, 1)
FY_LOG_FN(fy_log_warn, FY_LOG_WARN, 1)
FY_LOG_FN(fy_log_info, FY_LOG_INFO, 1)
FY_LOG_FN(fy_log_debug, FY_LOG_DEBUG, atomic_load(&debug_on))
