/* check --read-data-subset: the SPEC parser (fy_check_subset_parse) and the
 * selection (fy_check_subset_pick) over many ids.  Ids are random bytes, as
 * HMAC outputs look; the generator's seed is printed so a failure replays. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <cmocka.h>

#include "ferry.h"

#define NIDS 20000

static uint8_t (*ids)[FY_ID_LEN];

static uint64_t xs;
static uint64_t next64(void)
{
	xs ^= xs << 13;
	xs ^= xs >> 7;
	xs ^= xs << 17;
	return xs;
}

static int make_ids(void **state)
{
	(void)state;
	if (getrandom(&xs, sizeof(xs), 0) != (ssize_t)sizeof(xs) || !xs)
		xs = 0x9e3779b97f4a7c15ULL;
	printf("# ids from xorshift seed %llu\n", (unsigned long long)xs);
	ids = malloc(sizeof(*ids) * NIDS);
	if (!ids)
		return -1;
	for (size_t i = 0; i < NIDS; i++)
		for (size_t b = 0; b < FY_ID_LEN; b += 8) {
			uint64_t v = next64();

			memcpy(ids[i] + b, &v, 8);
		}
	return 0;
}

static int free_ids(void **state)
{
	(void)state;
	free(ids);
	return 0;
}

static void test_parse_accepts(void **state)
{
	struct fy_check_subset s;
	char err[256], buf[48];

	(void)state;
	assert_int_equal(fy_check_subset_parse("3/7", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, FY_SUBSET_SLICE);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.m, 7);
	assert_string_equal(fy_check_subset_str(&s, buf, sizeof(buf)), "3/7");
	assert_int_equal(fy_check_subset_parse("1/1", &s, err, sizeof(err)), 0);
	assert_int_equal(fy_check_subset_parse("007/07", &s, err, sizeof(err)), 0);
	assert_string_equal(fy_check_subset_str(&s, buf, sizeof(buf)), "7/7");
	assert_int_equal(fy_check_subset_parse("18446744073709551615/18446744073709551615", &s, err, sizeof(err)), 0);
	assert_true(s.n == UINT64_MAX && s.m == UINT64_MAX);
	assert_int_equal(fy_check_subset_parse("2.5%", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, FY_SUBSET_PERCENT);
	assert_true(s.percent == 2.5);
	assert_string_equal(fy_check_subset_str(&s, buf, sizeof(buf)), "2.5%");
	assert_int_equal(fy_check_subset_parse("100%", &s, err, sizeof(err)), 0);
	assert_int_equal(fy_check_subset_parse("100.000%", &s, err, sizeof(err)), 0);
	assert_int_equal(fy_check_subset_parse(".5%", &s, err, sizeof(err)), 0);
	assert_int_equal(fy_check_subset_parse("5.%", &s, err, sizeof(err)), 0);
	assert_int_equal(fy_check_subset_parse("0.000001%", &s, err, sizeof(err)), 0);
}

static void test_parse_refuses(void **state)
{
	static const char *bad[] = {
		"0/5", "6/5", "1/0", "0/0", "0%", "0.000%", "101%", "100.0000001%", "abc", "1/2/3", "", "-1/5",
		"1/-5", "-5%", "+5%", "+1/5", "/5", "1/", "/", "%", "5", ".", ".%", "1..5%", "1e2%", "nan%",
		"inf%", " 1/5", "1/5 ", "5 %", "0x10%", "18446744073709551616/18446744073709551617",
		"1/99999999999999999999999", "99999999999999999999999999999999999999999%", "1/5%", "5%%",
	};
	struct fy_check_subset s;
	char err[256], want[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		s.kind = FY_SUBSET_SLICE;
		if (fy_check_subset_parse(bad[i], &s, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		snprintf(want, sizeof(want), "'%s' is ", bad[i]);
		if (!strstr(err, want) || strchr(err, '\n'))
			fail_msg("'%s': the error does not echo it on one line: %s", bad[i], err);
		assert_int_equal(s.kind, FY_SUBSET_ALL);
	}
}

/* Every id in exactly one slice of M; each slice a fair share. */
static void test_slices_partition(void **state)
{
	(void)state;
	for (uint64_t m = 1; m <= 17; m++) {
		size_t count[18] = { 0 };

		for (size_t i = 0; i < NIDS; i++) {
			int in = 0;

			for (uint64_t n = 1; n <= m; n++) {
				struct fy_check_subset s = { .kind = FY_SUBSET_SLICE, .n = n, .m = m };

				if (fy_check_subset_pick(&s, ids[i])) {
					in++;
					count[n]++;
				}
			}
			if (in != 1)
				fail_msg("id %zu is in %d slices of %llu", i, in, (unsigned long long)m);
		}
		for (uint64_t n = 1; n <= m; n++)
			if (count[n] * m < NIDS / 2 || count[n] * m > 2 * NIDS)
				fail_msg("slice %llu/%llu holds %zu of %d ids", (unsigned long long)n,
					 (unsigned long long)m, count[n], NIDS);
	}
}

/* A slice is a function of the id alone: other bytes of the id and the seed do not matter. */
static void test_slice_of_id_alone(void **state)
{
	(void)state;
	for (size_t i = 0; i < 1000; i++) {
		uint8_t id[FY_ID_LEN];
		struct fy_check_subset a = { .kind = FY_SUBSET_SLICE, .n = 1 + i % 7, .m = 7, .seed = 1 };
		struct fy_check_subset b = a;

		b.seed = 2;
		memcpy(id, ids[i], FY_ID_LEN);
		bool before = fy_check_subset_pick(&a, id);

		memset(id + 8, 0xa5, FY_ID_LEN - 8);
		assert_int_equal(before, fy_check_subset_pick(&b, id));
	}
}

static size_t sample(double percent, uint64_t seed, uint8_t *chosen)
{
	struct fy_check_subset s = { .kind = FY_SUBSET_PERCENT, .percent = percent, .seed = seed, .have_seed = true };
	size_t k = 0;

	for (size_t i = 0; i < NIDS; i++) {
		bool p = fy_check_subset_pick(&s, ids[i]);

		if (chosen)
			chosen[i] = p;
		k += p;
	}
	return k;
}

static void test_percent(void **state)
{
	static uint8_t a[NIDS], b[NIDS];

	(void)state;
	assert_int_equal(sample(100, 42, NULL), NIDS);
	assert_int_equal(sample(99.999999999999999, 42, NULL), NIDS); /* rounds to 100: no overflow */
	/* binomial(20000, p): bounds far outside 6 sigma */
	size_t k = sample(20, 1, a);

	assert_true(k > 3400 && k < 4600);
	k = sample(2.5, 1, NULL);
	assert_true(k > 380 && k < 620);
	assert_true(sample(0.0001, 1, NULL) < 10);
	/* the same seed: the same sample; another seed: another sample */
	sample(20, 1, b);
	assert_memory_equal(a, b, NIDS);
	sample(20, 2, b);
	size_t both = 0;

	for (size_t i = 0; i < NIDS; i++)
		both += a[i] && b[i];
	assert_true(both > 600 && both < 1000); /* independent: about 4% of the ids */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_accepts),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_slices_partition),
		cmocka_unit_test(test_slice_of_id_alone),
		cmocka_unit_test(test_percent),
	};
	return cmocka_run_group_tests(tests, make_ids, free_ids);
}
