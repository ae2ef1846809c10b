/* Durations (fy_duration_parse, fy_duration_format): what `ferry status
 * --rpo/--rto`, `ferry drill --check-timeout` and the agent's policies read
 * and print. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ferry_drill.h"

static void test_parse(void **state)
{
	static const struct { const char *s; int64_t v; } good[] = {
		{ "90s", 90 }, { "15m", 900 }, { "1h", 3600 }, { "7d", 604800 }, { "2w", 1209600 },
		{ "1h30m", 5400 }, { "1d12h", 129600 }, { "0s", 0 }, { "1m1s", 61 }, { "36500d", INT64_C(36500) * 86400 },
	};
	static const char *bad[] = {
		"", "1", "h", "1x", "-1h", "+1h", "1h-", "1 h", " 1h", "1h ", "1.5h", "1H", "1hm", "s1",
		"99999999999999999999s", "36700d", "1000000w",
	};
	int64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = -1;
		assert_int_equal(fy_duration_parse(good[i].s, &v), 0);
		assert_int_equal(v, good[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 42;
		if (fy_duration_parse(bad[i], &v) == 0)
			fail_msg("'%s' parsed as %lld", bad[i], (long long)v);
		assert_int_equal(v, 42); /* untouched */
	}
	assert_int_not_equal(fy_duration_parse(NULL, &v), 0);
}

static void test_format(void **state)
{
	static const struct { int64_t v; const char *s; } cases[] = {
		{ 0, "0s" }, { 45, "45s" }, { 60, "1m" }, { 61, "1m1s" }, { 900, "15m" }, { 3600, "1h" },
		{ 3720, "1h2m" }, { 3601, "1h" }, { 86400, "1d" }, { 93600, "1d2h" }, { 604800, "7d" },
		{ -90, "-1m30s" },
	};
	char out[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fy_duration_format(cases[i].v, out, sizeof(out));
		assert_string_equal(out, cases[i].s);
	}
	/* What format prints, parse reads back (to the two largest units). */
	for (int64_t v = 0; v < 200000; v += 37) {
		int64_t back;

		fy_duration_format(v, out, sizeof(out));
		assert_int_equal(fy_duration_parse(out, &back), 0);
		assert_true(back <= v && v - back < (v >= 86400 ? 3600 : v >= 3600 ? 60 : 1));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
