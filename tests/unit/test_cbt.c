/* Change sources against real files.
 *
 * The bitmap and the range-list source run anywhere: valid files are checked
 * against bitmaps worked out independently, every malformed line must fail
 * and name its line.  The extent-diff source needs reflink clones: with
 * FY_CBT_XFS_DIR naming a directory on XFS mounted with reflink (the
 * cbt_extents_xfs test, tests/integration/t_cbt_extents.sh, makes one) those
 * tests run there and any setup failure is a test failure; without it they
 * are skipped, saying why.  Random data and offsets come from one seed,
 * printed at the start; FY_TEST_SEED replays a run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>

#include "cbt/cbt.h"
#include "cbt/cbt_priv.h"	/* fy_cbt_mark */

#define KiB 1024ull
#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

static uint64_t seed = 20261121;
static char dir[64];		/* scratch directory for range files and non-reflink cases */
static const char *xfs_dir;	/* FY_CBT_XFS_DIR, or NULL */
static char why[512];

/* splitmix64: the random stream for data and offsets. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	uint64_t x = (rng_state += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
	return rnd() % n;
}

static void rnd_fill(void *buf, size_t len)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd();

		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

static uint64_t nblocks(uint64_t size, uint32_t cs)
{
	return size / cs + (size % cs != 0);
}

/* ---- bitmap ------------------------------------------------------------ */

static void t_bitmap_edges(void **state)
{
	struct fy_bitmap b;

	(void)state;
	assert_int_equal(fy_bitmap_init(&b, 130), 0);
	fy_bitmap_set_range(&b, 63, 64);		/* straddles words 0 and 1 */
	assert_int_equal(b.w[0], 1ull << 63);
	assert_int_equal(b.w[1], 1ull);
	assert_int_equal(fy_bitmap_count(&b), 2);
	fy_bitmap_set_range(&b, 5, 4);			/* empty: first > last */
	fy_bitmap_set_range(&b, 130, 500);		/* wholly past the end */
	fy_bitmap_set_range(&b, UINT64_MAX, UINT64_MAX);
	assert_int_equal(fy_bitmap_count(&b), 2);
	fy_bitmap_set_range(&b, 129, 500);		/* last bit only, clamped */
	assert_int_equal(b.w[2], 1ull << 1);
	assert_int_equal(fy_bitmap_count(&b), 3);
	fy_bitmap_set_range(&b, 0, UINT64_MAX);		/* everything, nothing past nbits */
	assert_int_equal(b.w[0], ~0ull);
	assert_int_equal(b.w[1], ~0ull);
	assert_int_equal(b.w[2], 3ull);
	assert_int_equal(fy_bitmap_count(&b), 130);
	fy_bitmap_free(&b);
	assert_null(b.w);

	assert_int_equal(fy_bitmap_init(&b, 192), 0);
	fy_bitmap_set_range(&b, 64, 127);		/* exactly one whole word */
	assert_int_equal(b.w[0], 0);
	assert_int_equal(b.w[1], ~0ull);
	assert_int_equal(b.w[2], 0);
	fy_bitmap_set_range(&b, 0, 0);
	fy_bitmap_set_range(&b, 191, 191);
	assert_true(fy_bitmap_test(&b, 0) && fy_bitmap_test(&b, 191) && !fy_bitmap_test(&b, 190));
	assert_int_equal(fy_bitmap_count(&b), 66);
	fy_bitmap_free(&b);

	assert_int_equal(fy_bitmap_init(&b, 0), 0);	/* an empty volume */
	fy_bitmap_set_range(&b, 0, 10);
	assert_int_equal(fy_bitmap_count(&b), 0);
	fy_bitmap_free(&b);
}

/* set_range against a bit-by-bit reference on random ranges, for sizes
 * around word boundaries. */
static void t_bitmap_random(void **state)
{
	static const uint64_t sizes[] = { 1, 63, 64, 65, 127, 128, 129, 1000 };
	struct fy_bitmap b;
	bool ref[1000];

	(void)state;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint64_t n = sizes[s];

		assert_int_equal(fy_bitmap_init(&b, n), 0);
		memset(ref, 0, sizeof(ref));
		for (int k = 0; k < 200; k++) {
			uint64_t first = rnd_below(n + 2), last = first + rnd_below(k % 2 ? 3 : 140);
			uint64_t count = 0;

			fy_bitmap_set_range(&b, first, last);
			for (uint64_t i = first; i <= last && i < n; i++)
				ref[i] = true;
			for (uint64_t i = 0; i < n; i++) {
				if (fy_bitmap_test(&b, i) != ref[i])
					fail_msg("nbits %" PRIu64 ": bit %" PRIu64 " after set_range(%" PRIu64 ", %" PRIu64 ")",
						 n, i, first, last);
				count += ref[i];
			}
			assert_int_equal(fy_bitmap_count(&b), count);
		}
		fy_bitmap_free(&b);
	}
}

/* Byte ranges to blocks: the first and last byte of a block, and a range
 * of one byte either side of a boundary. */
static void t_mark(void **state)
{
	struct fy_bitmap b;

	(void)state;
	assert_int_equal(fy_bitmap_init(&b, 10), 0);
	fy_cbt_mark(&b, 1000, 999, 1);			/* last byte of block 0 */
	assert_int_equal(b.w[0], 1ull << 0);
	fy_cbt_mark(&b, 1000, 2000, 1);			/* first byte of block 2 */
	assert_int_equal(b.w[0], 1ull << 0 | 1ull << 2);
	fy_cbt_mark(&b, 1000, 4999, 2);			/* blocks 4 and 5 */
	assert_int_equal(b.w[0], 1ull << 0 | 1ull << 2 | 1ull << 4 | 1ull << 5);
	fy_cbt_mark(&b, 1000, 7000, 0);			/* nothing */
	fy_cbt_mark(&b, 1000, 8000, 1000);		/* exactly block 8 */
	assert_int_equal(b.w[0], 1ull << 0 | 1ull << 2 | 1ull << 4 | 1ull << 5 | 1ull << 8);
	fy_bitmap_free(&b);
}

/* ---- range list -------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static int run_source(const struct fy_cbt_ops *ops, const char *source, const char *arg, uint64_t size,
		      uint64_t parent_size, uint32_t cs, struct fy_bitmap *b)
{
	struct fy_cbt_req req = {
		.source = source, .size = size, .chunk_size = cs, .parent_size = parent_size, .arg = arg,
	};

	assert_int_equal(fy_bitmap_init(b, nblocks(size, cs)), 0);
	why[0] = '\0';
	return ops->changed(&req, b, why, sizeof(why));
}

static int run_ranges(const char *text, size_t len, uint64_t size, uint32_t cs, struct fy_bitmap *b)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/ranges", dir);
	write_file(path, text, len);
	return run_source(&fy_cbt_range_list, "/dev/null", path, size, size, cs, b);
}

/* b must have exactly the blocks in want (ended by UINT64_MAX) set. */
static void expect_blocks(const struct fy_bitmap *b, const uint64_t *want)
{
	uint64_t n = 0;

	for (; want[n] != UINT64_MAX; n++)
		if (!fy_bitmap_test(b, want[n]))
			fail_msg("block %" PRIu64 " not set", want[n]);
	if (fy_bitmap_count(b) != n) {
		for (uint64_t i = 0; i < b->nbits; i++)
			if (fy_bitmap_test(b, i))
				print_message("set: %" PRIu64 "\n", i);
		fail_msg("%" PRIu64 " blocks set, want %" PRIu64, fy_bitmap_count(b), n);
	}
}

static void t_ranges_valid(void **state)
{
	const uint32_t cs = 64 * KiB;
	const uint64_t size = 10 * 64 * KiB + 100;	/* 11 blocks, the last one 100 bytes */
	static const char text[] =
		"# changed ranges\n"
		"\n"
		"   \t \n"
		"0 1\n"				/* block 0 */
		"0x20000 0X10000\n"		/* exactly block 2 */
		"  131071\t2  \n"		/* the last byte of 1 and first of 2 */
		"  # indented comment\n"
		"5 0\n"				/* no-op */
		"655460 0\n"			/* no-op at the very end */
		"0x30000\t\t0x1\r\n"		/* block 3, CRLF line end */
		"0x50000 0x20001\n"		/* blocks 5, 6 and the first byte of 7 */
		"0x50001 0x10\n"		/* overlaps the last one */
		"0000655359 0x0001\n"		/* last byte of block 9; leading zeros are decimal */
		"655360 100";			/* ends exactly at size, no final newline */
	static const uint64_t want[] = { 0, 1, 2, 3, 5, 6, 7, 9, 10, UINT64_MAX };
	struct fy_bitmap b;

	(void)state;
	assert_int_equal(run_ranges(text, strlen(text), size, cs, &b), 0);
	expect_blocks(&b, want);
	fy_bitmap_free(&b);

	/* The same ranges in another order, and the whole volume. */
	static const char text2[] = "655360 100\n0x50001 0x10\n0 0xa0064\n";
	static const uint64_t all[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, UINT64_MAX };

	assert_int_equal(run_ranges(text2, strlen(text2), size, cs, &b), 0);
	expect_blocks(&b, all);
	fy_bitmap_free(&b);

	/* Empty, and comments only: nothing changed. */
	static const uint64_t none[] = { UINT64_MAX };

	assert_int_equal(run_ranges("", 0, size, cs, &b), 0);
	expect_blocks(&b, none);
	fy_bitmap_free(&b);
	assert_int_equal(run_ranges("#\n\n# 0 1\n", 9, size, cs, &b), 0);
	expect_blocks(&b, none);
	fy_bitmap_free(&b);

	/* A chunk size that is not a power of two: bytes 999999 and 1000000
	 * are in blocks 0 and 1. */
	assert_int_equal(run_ranges("999999 2\n2999999 1\n", 19, 3000000, 1000000, &b), 0);
	static const uint64_t odd[] = { 0, 1, 2, UINT64_MAX };

	expect_blocks(&b, odd);
	fy_bitmap_free(&b);
}

/* A million ranges (more than one sort batch), many overlapping, some
 * spanning most of the volume, in decimal and hex, against a reference
 * computed with a difference array. */
static void t_ranges_many(void **state)
{
	const uint32_t cs = 4 * MiB;
	const uint64_t size = 1024 * GiB + 12345;
	const uint64_t nb = nblocks(size, cs);
	const unsigned lines = 1000000;
	int32_t *diff = calloc(nb + 1, sizeof(*diff));
	char path[128];
	struct fy_bitmap b;
	struct timespec t0, t1;
	int32_t run = 0;
	FILE *f;

	(void)state;
	assert_non_null(diff);
	snprintf(path, sizeof(path), "%s/many", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	for (unsigned i = 0; i < lines; i++) {
		uint64_t off = rnd_below(size), len;

		switch (rnd_below(4)) {
		case 0: len = rnd_below(size - off + 1); break;		/* anything up to the end */
		case 1: len = 0; break;
		default: len = rnd_below(64 * KiB) + 1; if (len > size - off) len = size - off; break;
		}
		if (i % 1000 == 0)
			fprintf(f, "# line %u\n\n", i);
		fprintf(f, i % 2 ? "%" PRIu64 " %" PRIu64 "\n" : "0x%" PRIx64 "\t0x%" PRIx64 "\n", off, len);
		if (len) {
			diff[off / cs]++;
			diff[(off + len - 1) / cs + 1]--;
		}
	}
	assert_int_equal(fclose(f), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(run_source(&fy_cbt_range_list, "/dev/null", path, size, size, cs, &b), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("%u ranges over %" PRIu64 " blocks: %.2f s, %" PRIu64 " set\n", lines, nb,
		      (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, fy_bitmap_count(&b));
	for (uint64_t i = 0; i < nb; i++) {
		run += diff[i];
		if ((run > 0) != fy_bitmap_test(&b, i))
			fail_msg("block %" PRIu64 ": bitmap %d, reference %d", i, fy_bitmap_test(&b, i), run > 0);
	}
	fy_bitmap_free(&b);
	free(diff);
	unlink(path);
}

struct bad {
	const char *text;
	size_t len;		/* 0: strlen(text) */
	unsigned line;
	const char *says;
};

static void t_ranges_bad(void **state)
{
	static const struct bad bad[] = {
		{ "abc 10\n", 0, 1, "offset is not a decimal or 0x-hex number: \"abc\"" },
		{ "# c\n\n10\n", 0, 3, "length is missing" },
		{ "0 1\n10 20 30\n", 0, 2, "unexpected text after the length: \"30\"" },
		{ "10 20x\n", 0, 1, "length is not a decimal or 0x-hex number: \"20x\"" },
		{ "0x 5\n", 0, 1, "offset is not" },
		{ "0xg 5\n", 0, 1, "offset is not" },
		{ "1.5 5\n", 0, 1, "offset is not" },
		{ "+5 10\n", 0, 1, "offset is not" },
		{ "1,2\n", 0, 1, "length is missing" },
		{ "-5 10\n", 0, 1, "offset is negative: \"-5\"" },
		{ "5 -10\n", 0, 1, "length is negative" },
		{ "18446744073709551616 1\n", 0, 1, "offset does not fit in 64 bits" },
		{ "0 0x10000000000000000\n", 0, 1, "length does not fit in 64 bits" },
		{ "0xffffffffffffffff 1\n", 0, 1, "overflows 64 bits" },
		{ "1 18446744073709551615\n", 0, 1, "overflows 64 bits" },
		{ "0 1048577\n", 0, 1, "past the end of the 1048576-byte volume" },
		{ "1048576 1\n", 0, 1, "past the end" },
		{ "1048577 0\n", 0, 1, "past the end" },
		{ "1 2 # a comment\n", 0, 1, "unexpected text" },
		{ "1\0 2\n", 5, 1, "offset is not a decimal or 0x-hex number: \"1?\"" },
		{ "0 1\r\r\n", 0, 1, "length is not" },
	};
	struct fy_bitmap b;
	char want[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct bad *t = &bad[i];
		int ret = run_ranges(t->text, t->len ? t->len : strlen(t->text), MiB, 64 * KiB, &b);

		snprintf(want, sizeof(want), " line %u: ", t->line);
		if (ret != -EINVAL || !strstr(why, want) || !strstr(why, t->says) || !strstr(why, dir))
			fail_msg("case %zu: ret %d, why \"%s\"; want -EINVAL, \"%s\" and \"%s\"", i, ret, why,
				 want, t->says);
		print_message("case %zu: %s\n", i, why);
		fy_bitmap_free(&b);
	}
}

/* Errors far into a file name the right line; lines longer than the limit
 * are refused, even the last one without a newline. */
static void t_ranges_bad_late(void **state)
{
	const size_t n = 200000;
	size_t len = 0, cap = n * 12 + 5000;
	char *text = malloc(cap);
	struct fy_bitmap b;

	(void)state;
	assert_non_null(text);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, i % 3 ? "%zu 1\n" : "# %zu\n", i);
	len += (size_t)snprintf(text + len, cap - len, "7 x\n8 1\n");
	assert_int_equal(run_ranges(text, len, MiB, 64 * KiB, &b), -EINVAL);
	assert_non_null(strstr(why, " line 200001: length is not"));
	fy_bitmap_free(&b);

	/* 4096 characters is the limit; 4097 fails, wherever it is. */
	memset(text, ' ', 4096 - 9);
	memcpy(text + 4096 - 9, "0x10000 1\n", 10);	/* 4096 characters and a newline */
	memcpy(text + 4097, "0 1\n", 4);
	assert_int_equal(run_ranges(text, 4097 + 4, MiB, 64 * KiB, &b), 0);
	expect_blocks(&b, (const uint64_t[]){ 0, 1, UINT64_MAX });
	fy_bitmap_free(&b);
	memset(text, ' ', 4097);
	memcpy(text + 4097, "\n", 1);
	assert_int_equal(run_ranges(text, 4098, MiB, 64 * KiB, &b), -EINVAL);
	assert_non_null(strstr(why, " line 1: longer than 4096 bytes"));
	fy_bitmap_free(&b);
	memcpy(text, "0 1\n", 4);
	memset(text + 4, '1', 5000);
	assert_int_equal(run_ranges(text, 5004, MiB, 64 * KiB, &b), -EINVAL);
	assert_non_null(strstr(why, " line 2: longer than 4096 bytes"));
	fy_bitmap_free(&b);
	free(text);
}

static void t_ranges_files(void **state)
{
	struct fy_cbt_req req = { .source = "/dev/null", .size = MiB, .chunk_size = 64 * KiB, .parent_size = MiB };
	char path[128];
	struct fy_bitmap b;

	(void)state;
	snprintf(path, sizeof(path), "%s/absent", dir);
	assert_int_equal(run_source(&fy_cbt_range_list, "/dev/null", path, MiB, MiB, 64 * KiB, &b), -ENOENT);
	assert_non_null(strstr(why, path));
	assert_non_null(strstr(why, strerror(ENOENT)));
	fy_bitmap_free(&b);

	assert_int_equal(run_source(&fy_cbt_range_list, "/dev/null", dir, MiB, MiB, 64 * KiB, &b), -EISDIR);
	assert_non_null(strstr(why, "is a directory"));
	fy_bitmap_free(&b);

	/* The request itself: no file, chunk size 0, a bitmap of the wrong size. */
	assert_int_equal(fy_bitmap_init(&b, 16), 0);
	req.arg = NULL;
	assert_int_equal(fy_cbt_range_list.changed(&req, &b, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "no ranges file"));
	req.arg = path;
	req.chunk_size = 0;
	assert_int_equal(fy_cbt_range_list.changed(&req, &b, why, sizeof(why)), -EINVAL);
	req.chunk_size = 32 * KiB;
	assert_int_equal(fy_cbt_range_list.changed(&req, &b, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "bitmap has 16 bits"));
	req.chunk_size = 64 * KiB;
	assert_int_equal(fy_cbt_range_list.changed(&req, &b, NULL, 0), -ENOENT);	/* why is optional */
	fy_bitmap_free(&b);
}

/* ---- extent diff ------------------------------------------------------- */

/* Create path with size bytes of random data (as extents, fsynced). */
static void make_random_file(const char *path, uint64_t size)
{
	const size_t bs = MiB;
	char *buf = malloc(bs);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || !buf)
		fail_msg("create %s: %s", path, strerror(errno));
	for (uint64_t off = 0; off < size; off += bs) {
		size_t n = size - off < bs ? (size_t)(size - off) : bs;

		rnd_fill(buf, n);
		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	assert_int_equal(fsync(fd), 0);
	close(fd);
	free(buf);
}

/* base becomes a reflink clone of src (FICLONE), as cp --reflink=always. */
static void clone_file(const char *src, const char *base)
{
	int s = open(src, O_RDONLY | O_CLOEXEC), d = open(base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (s < 0 || d < 0)
		fail_msg("clone %s -> %s: open: %s", src, base, strerror(errno));
	if (ioctl(d, FICLONE, s))
		fail_msg("FICLONE %s -> %s: %s (FY_CBT_XFS_DIR must be on XFS or btrfs with reflink)", src, base,
			 strerror(errno));
	assert_int_equal(fsync(d), 0);
	close(s);
	close(d);
}

static void write_at(int fd, uint64_t off, size_t len, bool sync)
{
	char *buf = malloc(len ? len : 1);

	assert_non_null(buf);
	rnd_fill(buf, len);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	if (sync)
		assert_int_equal(fsync(fd), 0);
	free(buf);
}

/* The promise a clear bit makes: the block reads the same in both files. */
static void check_clear_blocks_equal(const char *a, const char *b, const struct fy_bitmap *bm, uint64_t limit,
				     uint32_t cs)
{
	int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
	char *x = malloc(cs), *y = malloc(cs);

	assert_true(fa >= 0 && fb >= 0 && x && y);
	for (uint64_t i = 0; i < bm->nbits && i * cs < limit; i++) {
		size_t n = limit - i * cs < cs ? (size_t)(limit - i * cs) : cs;

		if (fy_bitmap_test(bm, i))
			continue;
		assert_int_equal(pread(fa, x, n, (off_t)(i * cs)), (ssize_t)n);
		assert_int_equal(pread(fb, y, n, (off_t)(i * cs)), (ssize_t)n);
		if (memcmp(x, y, n))
			fail_msg("block %" PRIu64 " (chunk %u) differs but its bit is clear", i, cs);
	}
	free(x);
	free(y);
	close(fa);
	close(fb);
}

static bool need_xfs(void)
{
	if (xfs_dir)
		return true;
	print_message("skip: FY_CBT_XFS_DIR is not set (the cbt_extents_xfs test sets it to a reflink XFS mount)\n");
	return false;
}

static void xfs_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", xfs_dir, name);
}

/* The brief's main case: 64 MiB of random data cloned, then 51 small random
 * writes to the source.  Every written block must be set, almost every other
 * block clear, and every clear block byte-identical in both files. */
static void t_extents_random_writes(void **state)
{
	static const uint32_t chunks[] = { 64 * KiB, MiB, 4 * MiB, 1000000 };
	const uint64_t size = 64 * MiB;
	char src[256], base[256];
	struct { uint64_t off, len; } w[51];
	int fd;

	(void)state;
	if (!need_xfs())
		skip();
	xfs_path(src, sizeof(src), "rw-src.img");
	xfs_path(base, sizeof(base), "rw-base.img");
	make_random_file(src, size);
	clone_file(src, base);
	fd = open(src, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	/* 50 writes in the first 48 MiB (so the last blocks stay shared even
	 * at 4 MiB chunks), and one that ends exactly at the end of the file
	 * without extending it. */
	for (int i = 0; i < 50; i++) {
		w[i].len = 1 + rnd_below(20000);
		w[i].off = rnd_below(48 * MiB - w[i].len);
		write_at(fd, w[i].off, w[i].len, true);
	}
	w[50].len = 777;
	w[50].off = size - w[50].len;
	write_at(fd, w[50].off, w[50].len, true);
	close(fd);

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		const uint32_t cs = chunks[c];
		struct fy_bitmap b, written;
		uint64_t untouched = 0, clear = 0;

		assert_int_equal(fy_bitmap_init(&written, nblocks(size, cs)), 0);
		for (int i = 0; i < 51; i++)
			fy_bitmap_set_range(&written, w[i].off / cs, (w[i].off + w[i].len - 1) / cs);
		if (run_source(&fy_cbt_extent_diff, src, base, size, size, cs, &b))
			fail_msg("extent-diff: %s", why);
		for (uint64_t i = 0; i < b.nbits; i++) {
			if (fy_bitmap_test(&written, i) && !fy_bitmap_test(&b, i))
				fail_msg("chunk %u: block %" PRIu64 " was written but is not marked changed", cs, i);
			if (!fy_bitmap_test(&written, i)) {
				untouched++;
				clear += !fy_bitmap_test(&b, i);
			}
		}
		print_message("chunk %u: %" PRIu64 " blocks, %" PRIu64 " written, %" PRIu64 " set, %" PRIu64
			      " of %" PRIu64 " unwritten clear\n", cs, b.nbits, fy_bitmap_count(&written),
			      fy_bitmap_count(&b), clear, untouched);
		/* The sharing is really used, and the check below is not empty. */
		assert_true(untouched >= 3);
		assert_true(clear * 10 >= untouched * 9);
		check_clear_blocks_equal(src, base, &b, size, cs);
		fy_bitmap_free(&b);
		fy_bitmap_free(&written);
	}
	unlink(src);
	unlink(base);
}

/* Identical clones: nothing changed, whatever the size or sparseness. */
static void t_extents_identical(void **state)
{
	char src[256], base[256];
	struct fy_bitmap b;
	int fd;

	(void)state;
	if (!need_xfs())
		skip();
	xfs_path(src, sizeof(src), "id-src.img");
	xfs_path(base, sizeof(base), "id-base.img");
	make_random_file(src, 64 * MiB);
	clone_file(src, base);
	if (run_source(&fy_cbt_extent_diff, src, base, 64 * MiB, 64 * MiB, MiB, &b))
		fail_msg("extent-diff: %s", why);
	assert_int_equal(fy_bitmap_count(&b), 0);
	fy_bitmap_free(&b);

	/* Sparse, an odd size, data not aligned to blocks or chunks. */
	fd = open(src, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(300 * MiB + 4321)), 0);
	write_at(fd, 5 * MiB + 3, 10000, false);
	write_at(fd, 100 * MiB - 1, 2, false);
	write_at(fd, 300 * MiB, 4321, true);
	close(fd);
	clone_file(src, base);
	if (run_source(&fy_cbt_extent_diff, src, base, 300 * MiB + 4321, 300 * MiB + 4321, 3 * MiB + 512, &b))
		fail_msg("extent-diff: %s", why);
	assert_int_equal(fy_bitmap_count(&b), 0);
	fy_bitmap_free(&b);
	unlink(src);
	unlink(base);
}

/* Holes: punched in the source, punched in the base, punched in both, and a
 * range zeroed with FALLOC_FL_ZERO_RANGE (unwritten extents). */
static void t_extents_holes(void **state)
{
	const uint32_t cs = MiB;
	const uint64_t size = 32 * MiB;
	char src[256], base[256];
	struct fy_bitmap b;
	int fs, fb;

	(void)state;
	if (!need_xfs())
		skip();
	xfs_path(src, sizeof(src), "h-src.img");
	xfs_path(base, sizeof(base), "h-base.img");
	make_random_file(src, size);
	clone_file(src, base);
	fs = open(src, O_WRONLY | O_CLOEXEC);
	fb = open(base, O_WRONLY | O_CLOEXEC);
	assert_true(fs >= 0 && fb >= 0);
	/* block 2 and the first 64 KiB of 3: a hole in the source only */
	assert_int_equal(fallocate(fs, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * MiB, MiB + 64 * KiB), 0);
	/* 4 KiB in the middle of block 9: a hole in the base only */
	assert_int_equal(fallocate(fb, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 9 * MiB + 512 * KiB, 4 * KiB), 0);
	/* all of blocks 12..13: holes in both, so unchanged */
	assert_int_equal(fallocate(fs, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 12 * MiB, 2 * MiB), 0);
	assert_int_equal(fallocate(fb, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 12 * MiB, 2 * MiB), 0);
	/* block 20: zeroed in place in the source */
	assert_int_equal(fallocate(fs, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 20 * MiB + 4 * KiB, 8 * KiB), 0);
	assert_int_equal(fsync(fs), 0);
	assert_int_equal(fsync(fb), 0);
	close(fs);
	close(fb);
	if (run_source(&fy_cbt_extent_diff, src, base, size, size, cs, &b))
		fail_msg("extent-diff: %s", why);
	static const uint64_t want[] = { 2, 3, 9, 20, UINT64_MAX };

	expect_blocks(&b, want);
	check_clear_blocks_equal(src, base, &b, size, cs);
	fy_bitmap_free(&b);
	unlink(src);
	unlink(base);
}

/* Writes still in the page cache (never fsynced) are found: FIEMAP is asked
 * to write them back first.  Without that, XFS reports the data fork, where
 * the rewritten block is still the shared one. */
static void t_extents_unsynced(void **state)
{
	const uint64_t size = 16 * MiB;
	char src[256], base[256];
	struct fy_bitmap b;
	int fd;

	(void)state;
	if (!need_xfs())
		skip();
	xfs_path(src, sizeof(src), "u-src.img");
	xfs_path(base, sizeof(base), "u-base.img");
	make_random_file(src, size);
	clone_file(src, base);
	fd = open(src, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	write_at(fd, 5 * MiB + 100, 1, false);
	write_at(fd, 11 * MiB - 1, 2, false);
	if (run_source(&fy_cbt_extent_diff, src, base, size, size, MiB, &b))
		fail_msg("extent-diff: %s", why);
	close(fd);
	static const uint64_t want[] = { 5, 10, 11, UINT64_MAX };

	expect_blocks(&b, want);
	fy_bitmap_free(&b);
	unlink(src);
	unlink(base);
}

/* The source grew since the parent: only [0, parent size) is answered; the
 * caller marks the rest. */
static void t_extents_grown(void **state)
{
	const uint64_t psize = 8 * MiB + 100, size = 20 * MiB;
	char src[256], base[256];
	struct fy_bitmap b;
	int fd;

	(void)state;
	if (!need_xfs())
		skip();
	xfs_path(src, sizeof(src), "g-src.img");
	xfs_path(base, sizeof(base), "g-base.img");
	make_random_file(src, psize);
	clone_file(src, base);
	fd = open(src, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	write_at(fd, 3 * MiB, 10, true);
	write_at(fd, 12 * MiB, 4096, true);	/* past the parent: not ours to mark */
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(fsync(fd), 0);
	close(fd);
	if (run_source(&fy_cbt_extent_diff, src, base, size, psize, MiB, &b))
		fail_msg("extent-diff: %s", why);
	for (uint64_t i = 0; i < 8; i++)
		assert_int_equal(fy_bitmap_test(&b, i), i == 3);
	for (uint64_t i = 9; i < b.nbits; i++)
		assert_false(fy_bitmap_test(&b, i));
	fy_bitmap_free(&b);
	unlink(src);
	unlink(base);
}

/* A 100 GiB sparse image with a few extents is answered at once. */
static void t_extents_sparse_large(void **state)
{
	const uint64_t size = 100 * GiB;
	const uint32_t cs = 4 * MiB;
	char src[256], base[256];
	struct timespec t0, t1;
	struct fy_bitmap b;
	double secs;
	int fd;

	(void)state;
	if (!need_xfs())
		skip();
	xfs_path(src, sizeof(src), "s-src.img");
	xfs_path(base, sizeof(base), "s-base.img");
	fd = open(src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	for (int i = 0; i < 20; i++)
		write_at(fd, rnd_below(size - MiB), 256 * KiB, false);
	assert_int_equal(fsync(fd), 0);
	clone_file(src, base);
	write_at(fd, 7 * GiB + 5, 1, true);		/* into a hole of the base */
	write_at(fd, size - 10, 10, true);		/* the end */
	close(fd);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (run_source(&fy_cbt_extent_diff, src, base, size, size, cs, &b))
		fail_msg("extent-diff: %s", why);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("100 GiB sparse image, %" PRIu64 " blocks: %.3f s\n", b.nbits, secs);
	static const uint64_t want[] = { 7 * GiB / (4 * MiB), 100 * GiB / (4 * MiB) - 1, UINT64_MAX };

	expect_blocks(&b, want);
	assert_true(secs < 1.0);
	fy_bitmap_free(&b);
	unlink(src);
	unlink(base);
}

/* Refusals that need no reflink: a device, a directory, a missing base,
 * different filesystems, the same file twice, a base of the wrong size. */
static void t_extents_refuse(void **state)
{
	char a[128], c[128], shm[128], want[256];
	struct fy_bitmap b;
	int fd;

	(void)state;
	snprintf(a, sizeof(a), "%s/ref-a.img", dir);
	snprintf(c, sizeof(c), "%s/ref-c.img", dir);
	make_random_file(a, MiB);
	make_random_file(c, MiB);

	assert_int_equal(run_source(&fy_cbt_extent_diff, "/dev/null", a, 0, MiB, MiB, &b), -EINVAL);
	assert_non_null(strstr(why, "source /dev/null is not a regular file"));
	fy_bitmap_free(&b);
	assert_int_equal(run_source(&fy_cbt_extent_diff, a, dir, MiB, MiB, MiB, &b), -EINVAL);
	assert_non_null(strstr(why, "is not a regular file (a directory)"));
	fy_bitmap_free(&b);
	assert_int_equal(run_source(&fy_cbt_extent_diff, a, "/nonexistent/base.img", MiB, MiB, MiB, &b), -ENOENT);
	assert_non_null(strstr(why, "base image /nonexistent/base.img: No such file or directory"));
	fy_bitmap_free(&b);
	assert_int_equal(run_source(&fy_cbt_extent_diff, a, a, MiB, MiB, MiB, &b), -EINVAL);
	assert_non_null(strstr(why, "is the source itself"));
	fy_bitmap_free(&b);
	assert_int_equal(run_source(&fy_cbt_extent_diff, a, c, MiB, 2 * MiB, MiB, &b), -EINVAL);
	snprintf(want, sizeof(want), "base image %s is 1048576 bytes but the parent snapshot is 2097152 bytes", c);
	assert_string_equal(why, want);
	fy_bitmap_free(&b);
	assert_int_equal(run_source(&fy_cbt_extent_diff, a, c, 2 * MiB, MiB, MiB, &b), -EINVAL);
	assert_non_null(strstr(why, "is 1048576 bytes, not the 2097152 being backed up"));
	fy_bitmap_free(&b);
	assert_int_equal(run_source(&fy_cbt_extent_diff, a, NULL, MiB, MiB, MiB, &b), -EINVAL);
	assert_non_null(strstr(why, "no base image"));
	fy_bitmap_free(&b);

	snprintf(shm, sizeof(shm), "/dev/shm/ferry-cbt-%d", (int)getpid());
	fd = open(shm, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		close(fd);
		assert_int_equal(truncate(shm, MiB), 0);
		assert_int_equal(run_source(&fy_cbt_extent_diff, a, shm, MiB, MiB, MiB, &b), -EXDEV);
		assert_non_null(strstr(why, "different filesystems"));
		fy_bitmap_free(&b);
		unlink(shm);
	}
	unlink(a);
	unlink(c);
}

/* tmpfs has no FIEMAP: -EOPNOTSUPP, naming the filesystem. */
static void t_extents_tmpfs(void **state)
{
	char a[128], c[128];
	struct statfs sf;
	struct fy_bitmap b;

	(void)state;
	if (statfs("/dev/shm", &sf) || sf.f_type != TMPFS_MAGIC) {
		print_message("skip: /dev/shm is not a tmpfs here\n");
		skip();
	}
	snprintf(a, sizeof(a), "/dev/shm/ferry-cbt-%d-a", (int)getpid());
	snprintf(c, sizeof(c), "/dev/shm/ferry-cbt-%d-c", (int)getpid());
	make_random_file(a, MiB);
	make_random_file(c, MiB);
	assert_int_equal(run_source(&fy_cbt_extent_diff, a, c, MiB, MiB, 64 * KiB, &b), -EOPNOTSUPP);
	print_message("tmpfs: %s\n", why);
	assert_non_null(strstr(why, "(tmpfs) cannot map file extents (FIEMAP)"));
	fy_bitmap_free(&b);
	unlink(a);
	unlink(c);
}

/* Two separate copies on a filesystem with FIEMAP share nothing: every data
 * block is changed, even though the bytes are equal; blocks that are holes
 * in both are not. */
static void t_extents_no_sharing(void **state)
{
	const uint64_t size = 16 * MiB;
	char a[128], c[128];
	struct fy_bitmap b;
	int ret;

	(void)state;
	snprintf(a, sizeof(a), "%s/ns-a.img", dir);
	snprintf(c, sizeof(c), "%s/ns-c.img", dir);
	for (int k = 0; k < 2; k++) {
		uint64_t keep = rng_state;
		int fd = open(k ? c : a, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)size), 0);
		write_at(fd, 1 * MiB, 100, false);
		write_at(fd, 6 * MiB - 1, 2, false);
		write_at(fd, 15 * MiB, MiB, true);
		close(fd);
		if (!k)
			rng_state = keep;	/* the same bytes in both */
	}
	ret = run_source(&fy_cbt_extent_diff, a, c, size, size, MiB, &b);
	if (ret == -EOPNOTSUPP) {
		print_message("skip: %s\n", why);
		fy_bitmap_free(&b);
		skip();
	}
	if (ret)
		fail_msg("extent-diff: %s", why);
	static const uint64_t want[] = { 1, 5, 6, 15, UINT64_MAX };

	expect_blocks(&b, want);
	fy_bitmap_free(&b);
	unlink(a);
	unlink(c);
}

static int group_setup(void **state)
{
	const char *s = getenv("FY_TEST_SEED");

	(void)state;
	if (s)
		seed = strtoull(s, NULL, 0);
	rng_state = seed;
	printf("seed %" PRIu64 " (FY_TEST_SEED replays it)\n", seed);
	snprintf(dir, sizeof(dir), "/var/tmp/ferry-cbt-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	xfs_dir = getenv("FY_CBT_XFS_DIR");
	if (xfs_dir && !*xfs_dir)
		xfs_dir = NULL;
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) ? -1 : 0;
}

/* The allocation map: blocks with data set, whole holes clear; a device (or
 * anything not a regular file) is all data.  The manifest scan: every block. */
static void t_alloc_and_scan(void **state)
{
	const uint32_t cs = 1u << 20;
	char path[128];
	struct fy_bitmap b;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/sparse.img", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 16 * (off_t)cs), 0);
	assert_int_equal(pwrite(fd, "x", 1, 5 * (off_t)cs + 3), 1);
	char page[4096];

	memset(page, 0xab, sizeof(page));
	/* 4 KiB straddling blocks 11 and 12 */
	assert_int_equal(pwrite(fd, page, sizeof(page), 12 * (off_t)cs - 2048), (ssize_t)sizeof(page));
	assert_int_equal(fsync(fd), 0);
	close(fd);
	assert_int_equal(run_source(&fy_cbt_alloc_map, path, NULL, 16ull * cs, 0, cs, &b), 0);
	static const uint64_t want[] = { 5, 11, 12, UINT64_MAX };

	expect_blocks(&b, want);
	fy_bitmap_free(&b);

	/* the same file seen as 13 blocks and a bit: the map stops at req->size */
	assert_int_equal(run_source(&fy_cbt_alloc_map, path, NULL, 12ull * cs + 100, 0, cs, &b), 0);
	expect_blocks(&b, want);
	fy_bitmap_free(&b);

	assert_int_equal(run_source(&fy_cbt_alloc_map, "/dev/null", NULL, 3ull * cs, 0, cs, &b), 0);
	assert_int_equal(fy_bitmap_count(&b), 3);
	fy_bitmap_free(&b);

	assert_int_equal(run_source(&fy_cbt_manifest_scan, path, NULL, 16ull * cs + 1, 16ull * cs, cs, &b), 0);
	assert_int_equal(fy_bitmap_count(&b), 17);
	fy_bitmap_free(&b);

	unlink(path);
	assert_int_equal(run_source(&fy_cbt_alloc_map, path, NULL, 16ull * cs, 0, cs, &b), -ENOENT);
	assert_non_null(strstr(why, "sparse.img: No such file or directory"));
	fy_bitmap_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_bitmap_edges),
		cmocka_unit_test(t_bitmap_random),
		cmocka_unit_test(t_mark),
		cmocka_unit_test(t_ranges_valid),
		cmocka_unit_test(t_ranges_many),
		cmocka_unit_test(t_ranges_bad),
		cmocka_unit_test(t_ranges_bad_late),
		cmocka_unit_test(t_ranges_files),
		cmocka_unit_test(t_alloc_and_scan),
		cmocka_unit_test(t_extents_refuse),
		cmocka_unit_test(t_extents_tmpfs),
		cmocka_unit_test(t_extents_no_sharing),
		cmocka_unit_test(t_extents_random_writes),
		cmocka_unit_test(t_extents_identical),
		cmocka_unit_test(t_extents_holes),
		cmocka_unit_test(t_extents_unsynced),
		cmocka_unit_test(t_extents_grown),
		cmocka_unit_test(t_extents_sparse_large),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
