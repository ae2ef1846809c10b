/* The retention policy (fy_forget_apply): hand-computed keep sets, in UTC
 * unless a case says otherwise.  Snapshots are given out of order on purpose:
 * the policy must sort them itself. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ferry_gc.h"

#define L FY_KEEP_LAST
#define H FY_KEEP_HOURLY
#define D FY_KEEP_DAILY
#define W FY_KEEP_WEEKLY
#define M FY_KEEP_MONTHLY
#define Y FY_KEEP_YEARLY

static void set_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

static int utc(void **state)
{
	(void)state;
	set_tz("UTC");
	return 0;
}

/* "YYYY-MM-DD HH:MM:SS" in UTC -> unix nanoseconds. */
static int64_t at(const char *s)
{
	struct tm tm = { 0 };

	assert_int_equal(sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
				&tm.tm_min, &tm.tm_sec), 6);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000000000 + 123; /* sub-second part must not matter */
}

struct snap_def {
	const char *volume;
	const char *time;
	unsigned expect;
};

/* Run the policy over defs and compare every snapshot's reasons. */
static void check(const struct snap_def *defs, size_t n, struct fy_forget_policy p)
{
	struct fy_forget_snap *s = calloc(n, sizeof(*s));
	unsigned *got = calloc(n, sizeof(*got));

	assert_non_null(s);
	assert_non_null(got);
	for (size_t i = 0; i < n; i++) {
		memset(s[i].id, 0, FY_SNAP_ID_LEN);
		s[i].id[0] = (uint8_t)(i + 1);
		/* A copy per snapshot: grouping is by name, not by pointer. */
		s[i].volume = strdup(defs[i].volume);
		s[i].created_unix_nano = at(defs[i].time);
		got[i] = 0xdead;
	}
	assert_int_equal(fy_forget_apply(s, n, &p, got), 0);
	for (size_t i = 0; i < n; i++) {
		if (got[i] != defs[i].expect) {
			char want[64], have[64];

			fy_keep_reasons(defs[i].expect, want, sizeof(want));
			fy_keep_reasons(got[i], have, sizeof(have));
			fail_msg("snapshot %zu (%s %s): expected [%s], got [%s]", i, defs[i].volume, defs[i].time, want,
				 have);
		}
	}
	for (size_t i = 0; i < n; i++)
		free((char *)s[i].volume);
	free(s);
	free(got);
}

#define CHECK(defs, ...) check(defs, sizeof(defs) / sizeof(defs[0]), (struct fy_forget_policy){ __VA_ARGS__ })

static void test_keep_last(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-03-02 10:00:00", L },
		{ "a", "2026-03-01 10:00:00", 0 },
		{ "a", "2026-03-04 10:00:00", L },
		{ "a", "2026-02-27 10:00:00", 0 },
		{ "a", "2026-03-03 10:00:00", L },
	};

	(void)state;
	CHECK(d, .last = 3);
}

static void test_keep_last_more_than_there_are(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-03-01 10:00:00", L },
		{ "a", "2026-03-01 10:00:00", L }, /* same second: "last" still counts each */
		{ "a", "2026-01-01 00:00:00", L },
	};

	(void)state;
	CHECK(d, .last = 10);
}

/* Several snapshots a day: the newest of each of the 3 newest days. */
static void test_keep_daily(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-03-01 08:00:00", 0 },
		{ "a", "2026-03-01 20:00:00", D }, /* newest of Mar 1 */
		{ "a", "2026-03-02 09:00:00", 0 },
		{ "a", "2026-03-02 23:59:59", D }, /* newest of Mar 2, one second before Mar 3 */
		{ "a", "2026-03-04 00:00:00", D }, /* only one of Mar 4 (nothing on Mar 3) */
		{ "a", "2026-02-28 12:00:00", 0 }, /* budget spent */
		{ "a", "2026-03-01 19:00:00", 0 },
	};

	(void)state;
	CHECK(d, .daily = 3);
}

/* The same snapshots in Japan (UTC+9, as a POSIX TZ string: no tzdata
 * needed): the day boundaries move, and so does the keep set. */
static void test_keep_daily_honours_tz(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-03-01 08:00:00", 0 }, /* Mar 1 17:00 JST */
		{ "a", "2026-03-01 20:00:00", 0 }, /* Mar 2 05:00 JST */
		{ "a", "2026-03-02 09:00:00", D }, /* Mar 2 18:00 JST: newest of Mar 2 */
		{ "a", "2026-03-02 23:59:59", D }, /* Mar 3 08:59 JST */
		{ "a", "2026-03-04 00:00:00", D }, /* Mar 4 09:00 JST */
		{ "a", "2026-02-28 12:00:00", 0 },
		{ "a", "2026-03-01 19:00:00", 0 },
	};

	(void)state;
	set_tz("JST-9");
	CHECK(d, .daily = 3);
	set_tz("UTC");
}

static void test_keep_hourly(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-03-01 10:05:00", 0 },
		{ "a", "2026-03-01 10:55:00", 0 }, /* budget spent by 12h and 11h */
		{ "a", "2026-03-01 11:00:00", H },
		{ "a", "2026-03-01 12:30:00", H },
		{ "a", "2026-03-01 12:10:00", 0 },
	};

	(void)state;
	CHECK(d, .hourly = 2);
}

/* ISO weeks: Mon 2026-12-28 .. Sun 2027-01-03 is 2026-W53 (one bucket across
 * the calendar year); Mon 2027-01-04 starts 2027-W01. */
static void test_keep_weekly_iso_year_boundary(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-12-28 10:00:00", 0 }, /* 2026-W53 */
		{ "a", "2027-01-01 10:00:00", 0 }, /* 2026-W53 */
		{ "a", "2027-01-03 23:00:00", W }, /* 2026-W53, newest */
		{ "a", "2027-01-04 01:00:00", W }, /* 2027-W01 */
		{ "a", "2026-12-27 10:00:00", W }, /* 2026-W52 */
		{ "a", "2026-12-20 10:00:00", 0 }, /* 2026-W51: budget spent */
	};

	(void)state;
	CHECK(d, .weekly = 3);
}

/* Mon 2025-12-29 already belongs to 2026-W01, with Fri 2026-01-02; Mon 22 and
 * Sun 28 December 2025 are both 2025-W52.  A calendar-year week number would
 * split the first pair. */
static void test_keep_weekly_december_in_next_iso_year(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2025-12-29 10:00:00", 0 }, /* 2026-W01 */
		{ "a", "2026-01-02 10:00:00", W }, /* 2026-W01, newest */
		{ "a", "2025-12-28 10:00:00", W }, /* 2025-W52, newest */
		{ "a", "2025-12-22 10:00:00", 0 }, /* 2025-W52 */
	};

	(void)state;
	CHECK(d, .weekly = 5);
}

static void test_keep_monthly(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-01-31 23:00:00", 0 }, /* budget spent */
		{ "a", "2026-02-01 00:30:00", 0 },
		{ "a", "2026-02-28 12:00:00", M },
		{ "a", "2026-03-15 12:00:00", M },
		{ "a", "2026-03-01 00:00:00", 0 },
	};

	(void)state;
	CHECK(d, .monthly = 2);
}

/* Budget left, but the same year as a snapshot already kept: not kept. */
static void test_keep_yearly(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2024-12-31 23:59:59", Y },
		{ "a", "2025-06-01 00:00:00", Y },
		{ "a", "2025-01-01 00:00:00", 0 },
	};

	(void)state;
	CHECK(d, .yearly = 5);
}

/* A snapshot is kept when any policy keeps it; the reasons are the union. */
static void test_combined_reasons(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-03-05 12:00:00", L | D | W | M },
		{ "a", "2026-03-05 08:00:00", L },
		{ "a", "2026-03-04 20:00:00", D },
		{ "a", "2026-03-04 10:00:00", 0 },
		{ "a", "2026-03-03 09:00:00", D },
		{ "a", "2026-03-02 09:00:00", 0 }, /* daily budget spent; Mon Mar 2 is the same ISO week */
		{ "a", "2026-02-27 09:00:00", W | M }, /* previous week and month */
	};
	unsigned first = L | D | W | M;
	char names[64];

	(void)state;
	CHECK(d, .last = 2, .daily = 3, .weekly = 2, .monthly = 2);
	fy_keep_reasons(first, names, sizeof(names));
	assert_string_equal(names, "last,daily,weekly,monthly");
	fy_keep_reasons(0, names, sizeof(names));
	assert_string_equal(names, "");
	assert_string_equal(fy_keep_reason_name(FY_KEEP_HOURLY), "hourly");
	assert_null(fy_keep_reason_name(3));
}

/* Each budget runs out on its own. */
static void test_budget_exhaustion(void **state)
{
	const struct snap_def d[] = {
		{ "a", "2026-03-05 12:00:00", L | D },
		{ "a", "2026-03-04 12:00:00", D },
		{ "a", "2026-03-03 12:00:00", 0 },
		{ "a", "2026-03-02 12:00:00", 0 },
		{ "a", "2026-03-01 12:00:00", 0 },
	};

	(void)state;
	CHECK(d, .last = 1, .daily = 2);
}

/* Volumes are judged apart: the newest of one does not use the budget of another. */
static void test_volumes_independent(void **state)
{
	const struct snap_def d[] = {
		{ "db", "2026-03-01 10:00:00", 0 },
		{ "web", "2026-03-01 11:00:00", L | D },
		{ "db", "2026-03-02 10:00:00", L | D },
		{ "db", "2026-03-02 09:00:00", 0 },
		{ "logs", "2026-01-01 00:00:00", L | D },
		{ "web", "2026-02-28 11:00:00", D },
		{ "web", "2026-02-27 11:00:00", 0 },
		{ "db", "2026-03-01 12:00:00", D },
	};

	(void)state;
	CHECK(d, .last = 1, .daily = 2);
}

/* Two snapshots in the same nanosecond: keep-last 1 keeps exactly one. */
static void test_equal_times(void **state)
{
	struct fy_forget_snap s[2] = { { .volume = "a" }, { .volume = "a" } };
	struct fy_forget_policy p = { .last = 1 };
	unsigned got[2];

	(void)state;
	s[0].id[0] = 1;
	s[1].id[0] = 2;
	s[0].created_unix_nano = s[1].created_unix_nano = at("2026-03-01 00:00:00");
	assert_int_equal(fy_forget_apply(s, 2, &p, got), 0);
	assert_int_equal(got[0] + got[1], L);
}

static void test_refuses_empty_policy(void **state)
{
	struct fy_forget_snap s = { .volume = "a", .created_unix_nano = 1 };
	struct fy_forget_policy none = { 0 }, one = { .daily = 1 };
	unsigned got = 0xdead;

	(void)state;
	assert_int_equal(fy_forget_apply(&s, 1, &none, &got), -EINVAL);
	assert_int_equal(got, 0xdead);
	assert_int_equal(fy_forget_apply(NULL, 0, &one, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_keep_last, utc),
		cmocka_unit_test_setup(test_keep_last_more_than_there_are, utc),
		cmocka_unit_test_setup(test_keep_daily, utc),
		cmocka_unit_test_setup(test_keep_daily_honours_tz, utc),
		cmocka_unit_test_setup(test_keep_hourly, utc),
		cmocka_unit_test_setup(test_keep_weekly_iso_year_boundary, utc),
		cmocka_unit_test_setup(test_keep_weekly_december_in_next_iso_year, utc),
		cmocka_unit_test_setup(test_keep_monthly, utc),
		cmocka_unit_test_setup(test_keep_yearly, utc),
		cmocka_unit_test_setup(test_combined_reasons, utc),
		cmocka_unit_test_setup(test_budget_exhaustion, utc),
		cmocka_unit_test_setup(test_volumes_independent, utc),
		cmocka_unit_test_setup(test_equal_times, utc),
		cmocka_unit_test_setup(test_refuses_empty_policy, utc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
