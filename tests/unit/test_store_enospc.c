/* The file store on a full filesystem: a small tmpfs (root only; exits 77,
 * skipped, when it cannot be mounted).  A put that does not fit must fail
 * with -ENOSPC, leave no object under its key, leave no temp file behind
 * and leave an existing object untouched. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

static char mnt[64] = "/tmp/ferry-test-enospc-XXXXXX";

static int temps_found;
static int count_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	if (strncmp(path + ftw->base, ".tmp-", 5) == 0)
		temps_found++;
	return 0;
}

static int count_temps(const char *path)
{
	temps_found = 0;
	nftw(path, count_one, 16, FTW_PHYS);
	return temps_found;
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	return ftw->level ? remove(path) : 0; /* keep the mount point */
}

static int setup(void **state)
{
	char err[256];
	struct fy_store *st;
	if (fy_store_open(mnt, &st, err, sizeof(err)) != 0) {
		print_error("open %s: %s\n", mnt, err);
		return -1;
	}
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	fy_store_close(*state);
	nftw(mnt, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void test_big_put_is_enospc(void **state)
{
	struct fy_store *st = *state;
	size_t big = 4u << 20;
	unsigned char *data = malloc(big);
	assert_non_null(data);
	memset(data, 0x5a, big);

	static const unsigned flags[] = {0, FY_PUT_NOREPLACE, FY_PUT_DURABLE, FY_PUT_NOREPLACE | FY_PUT_DURABLE};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		assert_int_equal(fy_store_put(st, "chunks/aa/big", data, big, flags[i]), -ENOSPC);
		assert_int_equal(fy_store_exists(st, "chunks/aa/big", NULL), 0);
		assert_int_equal(count_temps(mnt), 0);
	}

	/* the failed temps really are gone: their space is usable again */
	size_t most = 768u << 10;
	assert_int_equal(fy_store_put(st, "chunks/aa/fits", data, most, 0), 0);
	assert_int_equal(fy_store_sync(st), 0);

	/* a replacement that does not fit leaves the published object as it was */
	memset(data, 0x77, big);
	assert_int_equal(fy_store_put(st, "chunks/aa/fits", data, 512u << 10, 0), -ENOSPC);
	assert_int_equal(count_temps(mnt), 0);
	void *buf;
	size_t got;
	assert_int_equal(fy_store_get(st, "chunks/aa/fits", 0, SIZE_MAX, &buf, &got), 0);
	assert_int_equal(got, most);
	for (size_t i = 0; i < got; i++)
		if (((unsigned char *)buf)[i] != 0x5a)
			fail_msg("byte %zu of the published object changed", i);
	free(buf);
	free(data);
}

/* Out of inodes: creating the temp file or a directory fails. */
static void test_out_of_inodes_is_enospc(void **state)
{
	struct fy_store *st = *state;
	char key[64];
	int rc = 0, stored = 0;
	for (int i = 0; i < 200 && rc == 0; i++) {
		snprintf(key, sizeof(key), "i/%03d/x", i);
		rc = fy_store_put(st, key, "x", 1, 0);
		if (rc == 0)
			stored++;
	}
	print_message("%d objects stored before the inodes ran out\n", stored);
	assert_int_equal(rc, -ENOSPC);
	assert_true(stored > 0);
	assert_int_equal(count_temps(mnt), 0);
	for (int i = 0; i < stored; i++) {
		snprintf(key, sizeof(key), "i/%03d/x", i);
		assert_int_equal(fy_store_exists(st, key, NULL), 1);
	}
}

int main(void)
{
	if (geteuid() != 0) {
		printf("SKIP: mounting a tmpfs needs root\n");
		return 77;
	}
	if (!mkdtemp(mnt)) {
		printf("SKIP: mkdtemp: %s\n", strerror(errno));
		return 77;
	}
	/* In a private mount namespace the tmpfs vanishes with this process,
	 * however it ends; the explicit umount below covers the fallback. */
	if (unshare(CLONE_NEWNS) == 0)
		mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=64,mode=0700") != 0) {
		printf("SKIP: mount -t tmpfs -o size=1m on %s: %s\n", mnt, strerror(errno));
		rmdir(mnt);
		return 77;
	}

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_big_put_is_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_inodes_is_enospc, setup, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	if (umount2(mnt, 0) != 0 && umount2(mnt, MNT_DETACH) != 0)
		fprintf(stderr, "umount %s: %s\n", mnt, strerror(errno));
	rmdir(mnt);
	return rc;
}
