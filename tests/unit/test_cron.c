/* Backup policies' cron lines (agent/cron.c): what parses, what is refused
 * and why, and fy_cron_next against a minute-by-minute search with matchers
 * written out here by hand (not derived from the parser). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cron.h"

#define T2024 1704067200 /* 2024-01-01 00:00 UTC, a Monday */

static struct tm at(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	return tm;
}

static bool m_every15_workhours(const struct tm *t)
{
	return t->tm_min % 15 == 0 && t->tm_hour >= 9 && t->tm_hour <= 17 && t->tm_wday >= 1 && t->tm_wday <= 5;
}
static bool m_daily_0330(const struct tm *t) { return t->tm_min == 30 && t->tm_hour == 3; }
static bool m_hourly(const struct tm *t) { return t->tm_min == 0; }
static bool m_weekly(const struct tm *t) { return !t->tm_min && !t->tm_hour && t->tm_wday == 0; }
/* both day fields restricted: either matches */
static bool m_dom_or_dow(const struct tm *t)
{
	return !t->tm_min && t->tm_hour == 12 && (t->tm_mday == 13 || t->tm_wday == 5);
}
/* day-of-week '*'-led: only the day of month counts */
static bool m_dom_only(const struct tm *t) { return t->tm_min == 5 && t->tm_hour == 0 && t->tm_mday == 1; }
static bool m_list_steps(const struct tm *t)
{
	return (t->tm_min == 0 || t->tm_min == 20 || t->tm_min == 40 || t->tm_min == 7) &&
	       (t->tm_hour == 1 || t->tm_hour == 3 || t->tm_hour == 5 || t->tm_hour == 22) &&
	       (t->tm_mon == 0 || t->tm_mon == 6 || t->tm_mon == 11);
}
static bool m_feb29(const struct tm *t)
{
	return !t->tm_min && !t->tm_hour && t->tm_mon == 1 && t->tm_mday == 29;
}
static bool m_sunday7(const struct tm *t) { return t->tm_min == 1 && t->tm_hour == 2 && t->tm_wday == 0; }
static bool m_a_slash_n(const struct tm *t) { return t->tm_min >= 50 && (t->tm_min - 50) % 3 == 0; }

static const struct {
	const char *line;
	bool (*match)(const struct tm *);
	int64_t span; /* how far the search may go */
} cases[] = {
	{ "*/15 9-17 * * mon-fri", m_every15_workhours, 4 * 86400 },
	{ "30 3 * * *", m_daily_0330, 2 * 86400 },
	{ "@hourly", m_hourly, 3600 },
	{ "0 * * * *", m_hourly, 3600 },
	{ "@weekly", m_weekly, 8 * 86400 },
	{ "0 12 13 * FRI", m_dom_or_dow, 40 * 86400 },
	{ "5 0 1 * *", m_dom_only, 32 * 86400 },
	{ "5 0 1 * */1", m_dom_only, 32 * 86400 },
	{ "0-59/20,7 1-5/2,22 * jan,jul,Dec *", m_list_steps, 200 * 86400 },
	{ "0 0 29 2 *", m_feb29, 5 * 366 * 86400 },
	{ "1 2 * * 7", m_sunday7, 8 * 86400 },
	{ "50/3 * * * *", m_a_slash_n, 3600 },
};

static int64_t brute_next(bool (*match)(const struct tm *), int64_t after, int64_t span)
{
	for (int64_t t = (after / 60 + 1) * 60; t <= after + span; t += 60) {
		struct tm tm = at(t);

		if (match(&tm))
			return t;
	}
	return -1;
}

static void test_next(void **state)
{
	unsigned seed = (unsigned)time(NULL);

	(void)state;
	print_message("seed %u\n", seed);
	srand(seed);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fy_cron c;
		char err[256];

		if (fy_cron_parse(cases[i].line, &c, err, sizeof(err)))
			fail_msg("'%s': %s", cases[i].line, err);
		for (int k = 0; k < 12; k++) {
			/* starting points: on a match, just before one, and random */
			int64_t from = T2024 + (int64_t)(rand() % (3 * 366)) * 86400 + rand() % 86400;
			int64_t want, got;

			if (k == 0)
				from = T2024;
			want = brute_next(cases[i].match, from, cases[i].span);
			got = fy_cron_next(&c, from);
			if (want != got)
				fail_msg("'%s' after %lld: got %lld, want %lld", cases[i].line, (long long)from,
					 (long long)got, (long long)want);
			/* strictly after: from a match, the next one */
			if (got > 0) {
				int64_t again = fy_cron_next(&c, got);

				assert_true(again > got);
				assert_int_equal(again, brute_next(cases[i].match, got, cases[i].span));
			}
		}
	}
}

static void test_bad(void **state)
{
	static const struct { const char *line, *want; } bad[] = {
		{ "", "no fields" },
		{ "* * * *", "4 fields" },
		{ "* * * * * *", "more than 5" },
		{ "60 * * * *", "minute field '60': 60 is out of range 0-59" },
		{ "* 24 * * *", "hour field '24': 24 is out of range 0-23" },
		{ "* * 0 * *", "day-of-month field '0': 0 is out of range 1-31" },
		{ "* * * 13 *", "month field '13': 13 is out of range 1-12" },
		{ "* * * * 8", "day-of-week field '8': 8 is out of range 0-7" },
		{ "5-1 * * * *", "the range 5-1 runs backwards" },
		{ "*/0 * * * *", "the step '/0' is not a number from 1" },
		{ "*/ * * * *", "the step '/' is not a number from 1" },
		{ "1,,2 * * * *", "'' is not a number" },
		{ "1, * * * *", "ends with a comma" },
		{ "x * * * *", "minute field 'x': 'x' is not a number" },
		{ "* * * janu *", "month field 'janu': 'janu' is not a value or name (jan-dec)" },
		{ "* * * * funday", "is not a value or name (sun-sat)" },
		{ "* * * * mon-", "the range 'mon-' has no valid end" },
		{ "1x * * * *", "unexpected 'x'" },
		{ "0 0 30 2 *", "never fires" },
		{ "0 0 31 4,6 *", "never fires" },
		{ "@reboot", "'@reboot' is not one of @hourly" },
		{ "@daily x", "is not one of" },
	};
	struct fy_cron c;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (!fy_cron_parse(bad[i].line, &c, err, sizeof(err)))
			fail_msg("'%s' parsed", bad[i].line);
		if (!strstr(err, bad[i].want))
			fail_msg("'%s': '%s' does not say '%s'", bad[i].line, err, bad[i].want);
	}
}

static void test_macros(void **state)
{
	static const struct { const char *a, *b; } same[] = {
		{ "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
		{ "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" }, { "@midnight", "0 0 * * *" },
		{ "@hourly", "0 * * * *" }, { "  @DAILY  ", "0 0 * * *" }, { "0 0 * * 7", "0 0 * * sun" },
		{ "\t0\t0 * *   *", "0 0 * * *" },
	};
	struct fy_cron a, b;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		assert_int_equal(fy_cron_parse(same[i].a, &a, err, sizeof(err)), 0);
		assert_int_equal(fy_cron_parse(same[i].b, &b, err, sizeof(err)), 0);
		assert_memory_equal(&a, &b, sizeof(a));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_macros),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
