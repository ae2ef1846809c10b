/* Five-field cron schedules (cron.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cron.h"

struct field {
	const char *name;
	int lo, hi;
	const char *const *names; /* names[i] is value lo + i, or NULL */
};

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may", "jun",
					   "jul", "aug", "sep", "oct", "nov", "dec" };
static const char *const day_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun" };

static const struct field fields[5] = {
	{ "minute", 0, 59, NULL },
	{ "hour", 0, 23, NULL },
	{ "day-of-month", 1, 31, NULL },
	{ "month", 1, 12, month_names },
	{ "day-of-week", 0, 7, day_names },
};

/* A number or a name of field f at *p; advances *p.  0, or -EINVAL. */
static int value(const struct field *f, const char **p, int *out)
{
	const char *s = *p;

	if (isdigit((unsigned char)*s)) {
		long v = 0;

		while (isdigit((unsigned char)*s) && v < 1000)
			v = v * 10 + (*s++ - '0');
		if (isdigit((unsigned char)*s))
			return -EINVAL;
		*out = (int)v;
		*p = s;
		return 0;
	}
	if (f->names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) &&
	    isalpha((unsigned char)s[2]) && !isalpha((unsigned char)s[3])) {
		for (int i = 0; i <= f->hi - f->lo; i++)
			if (f->names[i] && !strncasecmp(s, f->names[i], 3)) {
				*out = f->lo + i;
				*p = s + 3;
				return 0;
			}
	}
	return -EINVAL;
}

/* One field's text (len bytes at s) into the bit set *bits. */
static int parse_field(const struct field *f, const char *s, size_t len, uint64_t *bits, bool *star, char *err,
		       size_t errlen)
{
	char text[128];
	const char *p;

	*bits = 0;
	*star = s[0] == '*';
	if (len >= sizeof(text)) {
		snprintf(err, errlen, "the %s field is too long", f->name);
		return -EINVAL;
	}
	memcpy(text, s, len);
	text[len] = 0;
	p = text;
	for (;;) {
		int a, b, step = 1;
		const char *item = p;
		bool range = false;

		if (*p == '*') {
			a = f->lo;
			b = f->hi == 7 ? 6 : f->hi;
			p++;
			range = true;
		} else {
			if (value(f, &p, &a)) {
				snprintf(err, errlen, "the %s field '%s': '%.*s' is not a %s%s", f->name, text,
					 (int)strcspn(item, ",-/"), item, f->names ? "value or name" : "number",
					 f->names == month_names ? " (jan-dec)" : f->names ? " (sun-sat)" : "");
				return -EINVAL;
			}
			b = a;
			if (*p == '-') {
				p++;
				if (value(f, &p, &b)) {
					snprintf(err, errlen, "the %s field '%s': the range '%.*s' has no valid end",
						 f->name, text, (int)strcspn(item, ",/"), item);
					return -EINVAL;
				}
				range = true;
			}
			if (a < f->lo || a > f->hi || b < f->lo || b > f->hi) {
				snprintf(err, errlen, "the %s field '%s': %d is out of range %d-%d", f->name, text,
					 a < f->lo || a > f->hi ? a : b, f->lo, f->hi);
				return -EINVAL;
			}
			if (b < a) {
				snprintf(err, errlen, "the %s field '%s': the range %d-%d runs backwards", f->name, text,
					 a, b);
				return -EINVAL;
			}
		}
		if (*p == '/') {
			const char *q = ++p;
			long v = 0;

			while (isdigit((unsigned char)*p) && v < 1000)
				v = v * 10 + (*p++ - '0');
			if (p == q || v < 1 || isdigit((unsigned char)*p)) {
				snprintf(err, errlen, "the %s field '%s': the step '/%.*s' is not a number from 1", f->name,
					 text, (int)strcspn(q, ","), q);
				return -EINVAL;
			}
			step = (int)v;
			if (!range) /* "a/n": from a to the end */
				b = f->hi == 7 ? 6 : f->hi;
		}
		if (*p && *p != ',') {
			snprintf(err, errlen, "the %s field '%s': unexpected '%c'", f->name, text, *p);
			return -EINVAL;
		}
		for (int v = a; v <= b; v += step)
			*bits |= 1ull << (f->hi == 7 && v == 7 ? 0 : v); /* day of week 7 is Sunday */
		if (!*p)
			break;
		p++;
		if (!*p) {
			snprintf(err, errlen, "the %s field '%s' ends with a comma", f->name, text);
			return -EINVAL;
		}
	}
	return 0;
}

static const struct {
	const char *name, *line;
} macros[] = {
	{ "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
	{ "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
	{ "@hourly", "0 * * * *" },
};

int fy_cron_parse(const char *line, struct fy_cron *c, char *err, size_t errlen)
{
	const char *p = line, *start[6];
	size_t len[6], n = 0;
	uint64_t bits[5];
	bool star[5];
	char e2[300];

	memset(c, 0, sizeof(*c));
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '@') {
		size_t l = strcspn(p, " \t");

		for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
			if (strlen(macros[i].name) == l && !strncasecmp(p, macros[i].name, l) && !p[l + strspn(p + l, " \t")])
				return fy_cron_parse(macros[i].line, c, err, errlen);
		snprintf(err, errlen, "'%.*s' is not one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, "
			 "@annually", (int)(l > 64 ? 64 : l), p);
		return -EINVAL;
	}
	while (*p && n < 6) {
		start[n] = p;
		len[n] = strcspn(p, " \t");
		p += len[n];
		n++;
		while (*p == ' ' || *p == '\t')
			p++;
	}
	if (n != 5) {
		snprintf(err, errlen, "%s fields where cron wants 5 (minute hour day-of-month month day-of-week)",
			 n > 5 ? "more than 5" : n == 4 ? "4" : n == 3 ? "3" : n == 2 ? "2" : n == 1 ? "1" : "no");
		return -EINVAL;
	}
	for (size_t i = 0; i < 5; i++) {
		int ret = parse_field(&fields[i], start[i], len[i], &bits[i], &star[i], e2, sizeof(e2));

		if (ret) {
			snprintf(err, errlen, "%s", e2);
			return ret;
		}
	}
	c->min = bits[0];
	c->hour = (uint32_t)bits[1];
	c->dom = (uint32_t)bits[2];
	c->mon = (uint16_t)bits[3];
	c->dow = (uint8_t)bits[4];
	c->dom_star = star[2];
	c->dow_star = star[4];
	/* A line that never fires (February 30th) is an error, not a quiet policy. */
	if (fy_cron_next(c, 1704067200 /* 2024-01-01 */) < 0) {
		snprintf(err, errlen, "the day-of-month and month fields name no day that exists (the line never fires)");
		return -EINVAL;
	}
	return 0;
}

static bool day_matches(const struct fy_cron *c, const struct tm *tm)
{
	bool d = c->dom >> tm->tm_mday & 1, w = c->dow >> tm->tm_wday & 1;

	return c->dom_star || c->dow_star ? d && w : d || w;
}

int64_t fy_cron_next(const struct fy_cron *c, int64_t after)
{
	int64_t m = after / 60 - (after % 60 < 0), t = (m + 1) * 60, limit = after + 10LL * 366 * 86400;
	struct tm tm;
	time_t tt;

	while (t <= limit) {
		tt = (time_t)t;
		gmtime_r(&tt, &tm);
		if (!(c->mon >> (tm.tm_mon + 1) & 1)) {
			tm.tm_mon++;
			tm.tm_mday = 1;
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		} else if (!day_matches(c, &tm)) {
			tm.tm_mday++;
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		} else if (!(c->hour >> tm.tm_hour & 1)) {
			tm.tm_hour++;
			tm.tm_min = tm.tm_sec = 0;
		} else if (!(c->min >> tm.tm_min & 1)) {
			tm.tm_min++;
			tm.tm_sec = 0;
		} else {
			return t;
		}
		t = (int64_t)timegm(&tm);
	}
	return -1;
}
