/* Five-field cron schedules for backup policies: minute, hour, day of month,
 * month, day of week, evaluated in UTC (docs/operations.md, "Policies").
 *
 * Each field is '*' or a comma-separated list of items: a value, a range
 * "a-b", either with a step "/n" ("*" + "/15", "8-18/2"; "a/n" is a-max/n),
 * months and days by their English names ("jan", "mon-fri"), day of week 0
 * or 7 for Sunday.  When both day fields are restricted a day matches when
 * either does (cron's old rule); when one is '*' (or starts with it) only
 * the other counts.  "@hourly", "@daily" ("@midnight"), "@weekly",
 * "@monthly", "@yearly" ("@annually") name the usual lines. */
#ifndef FERRY_AGENT_CRON_H
#define FERRY_AGENT_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fy_cron {
	uint64_t min;    /* bit m: minute m (0-59) */
	uint32_t hour;   /* bit h: hour h (0-23) */
	uint32_t dom;    /* bit d: day d of the month (1-31) */
	uint16_t mon;    /* bit m: month m (1-12) */
	uint8_t dow;     /* bit d: day d of the week (0-6, Sunday 0) */
	bool dom_star, dow_star; /* the field starts with '*' */
};

/* 0, or -EINVAL with one line in err naming the field and what is wrong
 * with it (also a line that never fires, such as February 30th). */
int fy_cron_parse(const char *line, struct fy_cron *c, char *err, size_t errlen);

/* The first whole minute strictly after `after` (Unix seconds) that c
 * matches, in Unix seconds; -1 when none comes within ten years. */
int64_t fy_cron_next(const struct fy_cron *c, int64_t after);

#endif
