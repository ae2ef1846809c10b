/* Unit tests of the store dispatch and the file store, on a temp directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

struct fx {
	char dir[64];   /* mkdtemp'd scratch directory */
	char root[128]; /* the store's root: <dir>/repo */
	struct fy_store *st;
};

/* ---- helpers ---- */

static void fill(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int temps_found;
static int count_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	if (strncmp(path + ftw->base, ".tmp-", 5) == 0)
		temps_found++;
	return 0;
}

/* Number of ".tmp-" entries anywhere under path. */
static int count_temps(const char *path)
{
	temps_found = 0;
	nftw(path, count_one, 16, FTW_PHYS);
	return temps_found;
}

static void put_str(struct fy_store *st, const char *key, const char *s, unsigned flags)
{
	assert_int_equal(fy_store_put(st, key, s, strlen(s), flags), 0);
}

/* get(key, off, len) must return exactly the string want. */
static void expect_get(struct fy_store *st, const char *key, uint64_t off, size_t len, const char *want)
{
	void *buf = NULL;
	size_t got = 12345;
	assert_int_equal(fy_store_get(st, key, off, len, &buf, &got), 0);
	assert_non_null(buf);
	assert_int_equal(got, strlen(want));
	assert_memory_equal(buf, want, got);
	free(buf);
}

struct keys {
	char *v[512];
	uint64_t size[512];
	int n;
	int stop_after; /* 0: never stop */
};

static int collect(const char *key, uint64_t size, void *arg)
{
	struct keys *k = arg;
	assert_true(k->n < 512);
	k->v[k->n] = strdup(key);
	k->size[k->n] = size;
	k->n++;
	return k->stop_after && k->n == k->stop_after ? 7 : 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void keys_free(struct keys *k)
{
	for (int i = 0; i < k->n; i++)
		free(k->v[i]);
	k->n = 0;
}

/* list(prefix) must report exactly the keys in want (NULL-terminated). */
static void expect_list(struct fy_store *st, const char *prefix, const char *const *want)
{
	struct keys k = {0};
	assert_int_equal(fy_store_list(st, prefix, collect, &k), 0);
	qsort(k.v, (size_t)k.n, sizeof(k.v[0]), cmp_str);
	int n = 0;
	while (want[n])
		n++;
	if (k.n != n) {
		for (int i = 0; i < k.n; i++)
			print_message("list('%s') gave %s\n", prefix, k.v[i]);
	}
	assert_int_equal(k.n, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(k.v[i], want[i]);
	keys_free(&k);
}

static bool path_exists(const char *fmt, ...)
{
	char p[PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	struct stat sb;
	return lstat(p, &sb) == 0;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/ferry-test-store-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/repo", f->dir);
	char err[256];
	if (fy_store_open(f->root, &f->st, err, sizeof(err)) != 0) {
		print_error("open %s: %s\n", f->root, err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	fy_store_close(f->st);
	rm_rf(f->dir);
	free(f);
	return 0;
}

/* ---- tests ---- */

static void test_roundtrip(void **state)
{
	struct fx *f = *state;
	struct fy_store *st = f->st;
	uint64_t size = 0;

	put_str(st, "config", "hello", 0);
	expect_get(st, "config", 0, SIZE_MAX, "hello");
	assert_int_equal(fy_store_exists(st, "config", &size), 1);
	assert_int_equal(size, 5);
	assert_int_equal(fy_store_exists(st, "config", NULL), 1);

	/* ranged reads */
	expect_get(st, "config", 1, 3, "ell");
	expect_get(st, "config", 2, SIZE_MAX, "llo");
	expect_get(st, "config", 3, 100, "lo");
	expect_get(st, "config", 5, SIZE_MAX, "");
	expect_get(st, "config", 0, 0, "");
	void *buf = (void *)1;
	size_t got = 1;
	assert_int_equal(fy_store_get(st, "config", 6, 1, &buf, &got), -EINVAL);
	assert_null(buf);
	assert_int_equal(got, 0);

	/* a plain put replaces */
	put_str(st, "config", "world!", 0);
	expect_get(st, "config", 0, SIZE_MAX, "world!");

	/* empty object */
	assert_int_equal(fy_store_put(st, "empty", NULL, 0, 0), 0);
	assert_int_equal(fy_store_exists(st, "empty", &size), 1);
	assert_int_equal(size, 0);
	expect_get(st, "empty", 0, SIZE_MAX, "");

	/* a larger binary object in a nested key, created with its directories */
	size_t n = (1u << 20) + 7;
	unsigned char *data = malloc(n);
	assert_non_null(data);
	fill(data, n, 42);
	assert_int_equal(fy_store_put(st, "chunks/ab/ab12cd", data, n, FY_PUT_NOREPLACE), 0);
	assert_int_equal(fy_store_get(st, "chunks/ab/ab12cd", 0, SIZE_MAX, &buf, &got), 0);
	assert_int_equal(got, n);
	assert_memory_equal(buf, data, n);
	free(buf);
	assert_int_equal(fy_store_get(st, "chunks/ab/ab12cd", 4096, 8192, &buf, &got), 0);
	assert_int_equal(got, 8192);
	assert_memory_equal(buf, data + 4096, 8192);
	free(buf);
	free(data);

	/* del */
	assert_int_equal(fy_store_del(st, "config"), 0);
	assert_int_equal(fy_store_get(st, "config", 0, SIZE_MAX, &buf, &got), -ENOENT);
	assert_int_equal(fy_store_exists(st, "config", &size), 0);
	assert_int_equal(fy_store_del(st, "config"), -ENOENT);
	assert_int_equal(fy_store_del(st, "never/was"), -ENOENT);
	assert_int_equal(fy_store_sync(st), 0);
	assert_int_equal(fy_store_concurrency(st), 8);
	assert_int_equal(count_temps(f->dir), 0);
}

static void test_open_creates_nothing(void **state)
{
	struct fx *f = *state;
	char root[PATH_MAX], err[256];
	struct fy_store *st;
	void *buf;
	size_t got;

	snprintf(root, sizeof(root), "%s/a/b/repo", f->dir);
	assert_int_equal(fy_store_open(root, &st, err, sizeof(err)), 0);
	assert_int_equal(fy_store_get(st, "x", 0, SIZE_MAX, &buf, &got), -ENOENT);
	assert_int_equal(fy_store_exists(st, "x", NULL), 0);
	/* A listing of a folder that is not there says so: never "empty". */
	struct keys k = { 0 };
	assert_int_equal(fy_store_list(st, "", collect, &k), -ENOENT);
	assert_non_null(strstr(fy_store_strerror(-ENOENT), "does not exist"));
	assert_int_equal(k.n, 0);
	assert_int_equal(fy_store_sync(st), 0);
	assert_false(path_exists("%s/a", f->dir));

	/* put creates the root and every missing parent (mkdir -p) */
	put_str(st, "k/v", "data", FY_PUT_DURABLE);
	assert_true(path_exists("%s/k/v", root));
	expect_get(st, "k/v", 0, SIZE_MAX, "data");
	fy_store_close(st);

	/* a root that exists but is not a directory is refused at open */
	snprintf(root, sizeof(root), "%s/a/b/repo/k/v", f->dir);
	assert_int_equal(fy_store_open(root, &st, err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, "not a directory"));
}

static void test_list_prefix(void **state)
{
	struct fx *f = *state;
	struct fy_store *st = f->st;
	put_str(st, "chunks/ab12/x", "1", 0);
	put_str(st, "chunks/ab/y", "22", 0);
	put_str(st, "chunks/abc", "333", 0);
	put_str(st, "chunks/cd/z", "4444", 0);
	put_str(st, "config", "55555", 0);
	put_str(st, "snapshots/1", "666666", 0);

	expect_list(st, "", (const char *const[]){"chunks/ab/y", "chunks/ab12/x", "chunks/abc",
						   "chunks/cd/z", "config", "snapshots/1", NULL});
	expect_list(st, "chunks/ab", (const char *const[]){"chunks/ab/y", "chunks/ab12/x", "chunks/abc", NULL});
	expect_list(st, "chunks/ab/", (const char *const[]){"chunks/ab/y", NULL});
	expect_list(st, "chunks/", (const char *const[]){"chunks/ab/y", "chunks/ab12/x", "chunks/abc",
							  "chunks/cd/z", NULL});
	expect_list(st, "c", (const char *const[]){"chunks/ab/y", "chunks/ab12/x", "chunks/abc",
						    "chunks/cd/z", "config", NULL});
	expect_list(st, "config", (const char *const[]){"config", NULL});
	expect_list(st, "chunks/zz", (const char *const[]){NULL});

	/* The folder of a prefix that is an object, or missing: an error. */
	struct keys k = {0};
	assert_int_equal(fy_store_list(st, "config/", collect, &k), -ENOTDIR);
	assert_int_equal(fy_store_list(st, "nope/", collect, &k), -ENOENT);
	assert_int_equal(k.n, 0);

	/* sizes come with the keys */
	assert_int_equal(fy_store_list(st, "snap", collect, &k), 0);
	assert_int_equal(k.n, 1);
	assert_int_equal(k.size[0], 6);
	keys_free(&k);
}

static void test_list_early_stop(void **state)
{
	struct fx *f = *state;
	char key[32];
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "d%d/k%d", i % 3, i);
		put_str(f->st, key, "x", 0);
	}
	struct keys k = {.stop_after = 4};
	assert_int_equal(fy_store_list(f->st, "", collect, &k), 7);
	assert_int_equal(k.n, 4);
	keys_free(&k);
	k.stop_after = 0;
	assert_int_equal(fy_store_list(f->st, "", collect, &k), 0);
	assert_int_equal(k.n, 10);
	keys_free(&k);
}

static void test_noreplace(void **state)
{
	struct fx *f = *state;
	put_str(f->st, "chunks/aa/x", "first", FY_PUT_NOREPLACE);
	put_str(f->st, "chunks/aa/x", "second, longer", FY_PUT_NOREPLACE);
	expect_get(f->st, "chunks/aa/x", 0, SIZE_MAX, "first");
	put_str(f->st, "chunks/aa/x", "third", FY_PUT_NOREPLACE | FY_PUT_DURABLE);
	expect_get(f->st, "chunks/aa/x", 0, SIZE_MAX, "first");
	/* the losing temps are gone */
	assert_int_equal(count_temps(f->dir), 0);
	/* without the flag the object is replaced */
	put_str(f->st, "chunks/aa/x", "fourth", 0);
	expect_get(f->st, "chunks/aa/x", 0, SIZE_MAX, "fourth");
	/* create only: an existing object is -EEXIST and stays as it was */
	assert_int_equal(fy_store_put(f->st, "chunks/aa/x", "fifth", 5, FY_PUT_EXCL | FY_PUT_DURABLE), -EEXIST);
	assert_non_null(strstr(fy_store_strerror(-EEXIST), "already exists"));
	expect_get(f->st, "chunks/aa/x", 0, SIZE_MAX, "fourth");
	put_str(f->st, "chunks/aa/y", "new", FY_PUT_EXCL);
	expect_get(f->st, "chunks/aa/y", 0, SIZE_MAX, "new");
	assert_int_equal(count_temps(f->dir), 0);
}

static void test_key_validation(void **state)
{
	struct fx *f = *state;
	struct fy_store *st = f->st;
	static const char *const bad[] = {
		"", "/abs", "/", "..", ".", "../escape", "a/../b", "a/..", "./a", "a/./b",
		"a//b", "a/", "//", ".tmp-x", "d/.tmp-y", ".tmp-dir/obj",
	};
	void *buf;
	size_t got;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("key '%s'\n", bad[i]);
		assert_int_equal(fy_store_put(st, bad[i], "x", 1, 0), -EINVAL);
		assert_int_equal(fy_store_put(st, bad[i], "x", 1, FY_PUT_NOREPLACE | FY_PUT_DURABLE), -EINVAL);
		assert_int_equal(fy_store_get(st, bad[i], 0, SIZE_MAX, &buf, &got), -EINVAL);
		assert_int_equal(fy_store_exists(st, bad[i], NULL), -EINVAL);
		assert_int_equal(fy_store_del(st, bad[i]), -EINVAL);
	}
	assert_int_equal(fy_store_put(st, NULL, "x", 1, 0), -EINVAL);
	assert_false(path_exists("%s/escape", f->dir));
	assert_false(path_exists("%s", f->root)); /* nothing was created */

	/* list prefixes: the directory part must be a valid key */
	struct keys k = {0};
	assert_int_equal(fy_store_list(st, "/abs", collect, &k), -EINVAL);
	assert_int_equal(fy_store_list(st, "../", collect, &k), -EINVAL);
	assert_int_equal(fy_store_list(st, "a//b", collect, &k), -EINVAL);
	assert_int_equal(fy_store_list(st, "a/../b", collect, &k), -EINVAL);
	assert_int_equal(k.n, 0);

	/* too long */
	char longkey[1100];
	memset(longkey, 'a', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	for (size_t i = 100; i < sizeof(longkey) - 1; i += 100)
		longkey[i] = '/';
	assert_int_equal(fy_store_put(st, longkey, "x", 1, 0), -ENAMETOOLONG);

	/* names that only look odd are fine */
	put_str(st, "a..b", "1", 0);
	put_str(st, ".hidden", "2", 0);
	put_str(st, "x/..y/.z", "3", 0);
	put_str(st, "tmp-.x", "4", 0);
	expect_list(st, "", (const char *const[]){".hidden", "a..b", "tmp-.x", "x/..y/.z", NULL});
}

static void test_list_skips_temps(void **state)
{
	struct fx *f = *state;
	put_str(f->st, "d/real", "r", 0);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/.tmp-1", f->root);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "junk", 4), 4);
	close(fd);
	snprintf(p, sizeof(p), "%s/d/.tmp-2", f->root);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/.tmp-dir", f->root);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/.tmp-dir/obj", f->root);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);

	expect_list(f->st, "", (const char *const[]){"d/real", NULL});
	expect_list(f->st, "d/", (const char *const[]){"d/real", NULL});
	expect_list(f->st, ".tmp-", (const char *const[]){NULL});
	expect_list(f->st, "d/.tmp", (const char *const[]){NULL});
}

static void test_directory_is_not_an_object(void **state)
{
	struct fx *f = *state;
	void *buf;
	size_t got;
	put_str(f->st, "a/b", "x", 0);
	assert_int_equal(fy_store_exists(f->st, "a", NULL), 0);
	assert_int_equal(fy_store_get(f->st, "a", 0, SIZE_MAX, &buf, &got), -ENOENT);
	assert_int_equal(fy_store_del(f->st, "a"), -ENOENT);
	assert_int_equal(fy_store_get(f->st, "a/b/c", 0, SIZE_MAX, &buf, &got), -ENOENT);
	assert_int_equal(fy_store_exists(f->st, "a/b/c", NULL), 0);
	/* "a/b" is an object, so "a/b/c" cannot be created below it */
	assert_int_equal(fy_store_put(f->st, "a/b/c", "y", 1, 0), -ENOTDIR);
	assert_int_equal(count_temps(f->dir), 0);
	expect_get(f->st, "a/b", 0, SIZE_MAX, "x");
}

#define NTHREADS 8
#define PER_THREAD 25

struct worker {
	struct fy_store *st;
	pthread_barrier_t *go;
	int id;
	int failures;
};

static void thread_key(char *key, size_t n, int t, int i)
{
	snprintf(key, n, "t/%02x/k-%d-%03d", (t * PER_THREAD + i) % 16, t, i);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char data[5000];
	char key[64];
	pthread_barrier_wait(w->go);
	for (int i = 0; i < PER_THREAD; i++) {
		thread_key(key, sizeof(key), w->id, i);
		size_t n = 1 + (size_t)(w->id * PER_THREAD + i) * 23 % sizeof(data);
		fill(data, n, (uint64_t)(w->id * PER_THREAD + i));
		unsigned flags = i % 5 == 0 ? FY_PUT_DURABLE : i % 2 ? FY_PUT_NOREPLACE : 0;
		if (fy_store_put(w->st, key, data, n, flags) != 0)
			w->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct fx *f = *state;
	pthread_t th[NTHREADS];
	struct worker w[NTHREADS];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, NTHREADS);
	for (int t = 0; t < NTHREADS; t++) {
		w[t] = (struct worker){.st = f->st, .go = &go, .id = t};
		assert_int_equal(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
	}
	for (int t = 0; t < NTHREADS; t++) {
		pthread_join(th[t], NULL);
		assert_int_equal(w[t].failures, 0);
	}
	pthread_barrier_destroy(&go);
	assert_int_equal(fy_store_sync(f->st), 0);

	unsigned char want[5000];
	char key[64];
	for (int t = 0; t < NTHREADS; t++) {
		for (int i = 0; i < PER_THREAD; i++) {
			thread_key(key, sizeof(key), t, i);
			size_t n = 1 + (size_t)(t * PER_THREAD + i) * 23 % sizeof(want);
			fill(want, n, (uint64_t)(t * PER_THREAD + i));
			void *buf;
			size_t got;
			assert_int_equal(fy_store_get(f->st, key, 0, SIZE_MAX, &buf, &got), 0);
			assert_int_equal(got, n);
			assert_memory_equal(buf, want, n);
			free(buf);
		}
	}
	struct keys k = {0};
	assert_int_equal(fy_store_list(f->st, "t/", collect, &k), 0);
	assert_int_equal(k.n, NTHREADS * PER_THREAD);
	keys_free(&k);
	assert_int_equal(count_temps(f->dir), 0);
}

static void test_unknown_scheme(void **state)
{
	(void)state;
	char err[256] = "untouched";
	struct fy_store *st = (struct fy_store *)1;
	assert_int_equal(fy_store_open("xyz://bucket/path", &st, err, sizeof(err)), -EPROTONOSUPPORT);
	assert_null(st);
	assert_string_equal(err, "unknown repository URL scheme 'xyz' in 'xyz://bucket/path' (supported: file, s3)");

	/* a truncated error buffer still ends in NUL; a NULL one is allowed */
	char small[12];
	memset(small, 'Z', sizeof(small));
	assert_int_equal(fy_store_open("xyz://b", &st, small, sizeof(small)), -EPROTONOSUPPORT);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(fy_store_open("xyz://b", &st, NULL, 0), -EPROTONOSUPPORT);

	err[0] = '\0';
	assert_int_equal(fy_store_open("1x://a", &st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "1x://a"));
	err[0] = '\0';
	assert_int_equal(fy_store_open("file://relative/path", &st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "absolute"));
	assert_int_equal(fy_store_open("", &st, err, sizeof(err)), -EINVAL);
	assert_int_equal(fy_store_open(NULL, &st, err, sizeof(err)), -EINVAL);
}

static void test_plain_path_and_url(void **state)
{
	struct fx *f = *state;
	char url[PATH_MAX], err[256];
	struct fy_store *st;

	put_str(f->st, "config", "via plain path", FY_PUT_DURABLE);
	assert_string_equal(f->st->url, f->root);
	assert_ptr_equal(f->st->ops, &fy_store_file_ops);

	snprintf(url, sizeof(url), "file://%s/", f->root);
	assert_int_equal(fy_store_open(url, &st, err, sizeof(err)), 0);
	assert_string_equal(st->url, url);
	expect_get(st, "config", 0, SIZE_MAX, "via plain path");
	put_str(st, "from-url", "via url", 0);
	fy_store_close(st);
	expect_get(f->st, "from-url", 0, SIZE_MAX, "via url");

	snprintf(url, sizeof(url), "FILE://%s", f->root);
	assert_int_equal(fy_store_open(url, &st, err, sizeof(err)), 0);
	expect_get(st, "from-url", 0, SIZE_MAX, "via url");
	fy_store_close(st);

	/* a relative path is anchored at open time */
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	int rc = fy_store_open("rel/repo", &st, err, sizeof(err));
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(rc, 0);
	put_str(st, "k", "rel", 0);
	fy_store_close(st);
	assert_true(path_exists("%s/rel/repo/k", f->dir));
}

/* Never a partial object under the final name: (1) a reader polling the
 * final path while big objects are replaced only ever sees one whole
 * object; (2) after put() returns, before any sync(), the object is
 * readable in full; (3) a writer killed at a random moment leaves either
 * no object or the whole object, and list() does not report its temps. */
#define BIG (8u << 20)

struct poller {
	const char *path;
	atomic_int stop;
	int seen, bad;
};

static void *poll_main(void *arg)
{
	struct poller *p = arg;
	unsigned char head[4096], tail[4096];
	while (!p->stop) {
		int fd = open(p->path, O_RDONLY);
		if (fd < 0)
			continue;
		struct stat sb;
		if (fstat(fd, &sb) == 0) {
			p->seen++;
			if (sb.st_size != BIG || pread(fd, head, sizeof(head), 0) != (ssize_t)sizeof(head) ||
			    pread(fd, tail, sizeof(tail), BIG - sizeof(tail)) != (ssize_t)sizeof(tail) ||
			    memcmp(head, tail, sizeof(head)) != 0 || head[0] != head[sizeof(head) - 1])
				p->bad++;
		}
		close(fd);
	}
	return NULL;
}

static void test_never_partial(void **state)
{
	struct fx *f = *state;
	unsigned char *data = malloc(BIG);
	assert_non_null(data);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/snapshots/m", f->root);

	/* (1) uniform objects: a torn or short one fails the poller's check */
	struct poller p = {.path = path};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, poll_main, &p), 0);
	for (int i = 0; i < 6; i++) {
		memset(data, 'a' + i, BIG);
		assert_int_equal(fy_store_put(f->st, "snapshots/m", data, BIG, 0), 0);
	}
	p.stop = 1;
	pthread_join(th, NULL);
	print_message("poller saw the object %d times, %d bad\n", p.seen, p.bad);
	assert_true(p.seen > 0);
	assert_int_equal(p.bad, 0);

	/* (2) readable in full right after put(), without a sync() */
	fill(data, BIG, 7);
	assert_int_equal(fy_store_put(f->st, "snapshots/m", data, BIG, 0), 0);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	unsigned char *back = malloc(BIG);
	assert_non_null(back);
	size_t done = 0;
	ssize_t r;
	while (done < BIG && (r = read(fd, back + done, BIG - done)) > 0)
		done += (size_t)r;
	close(fd);
	assert_int_equal(done, BIG);
	assert_memory_equal(back, data, BIG);
	free(back);

	/* (3) SIGKILL a writer at random moments */
	srand((unsigned)time(NULL));
	int whole = 0, absent = 0;
	for (int i = 0; i < 20; i++) {
		char key[32];
		snprintf(key, sizeof(key), "crash/obj%d", i);
		fill(data, BIG, (uint64_t)i + 100);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(fy_store_put(f->st, key, data, BIG, 0) == 0 ? 0 : 1);
		struct timespec ts = {0, (rand() % 30000) * 1000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);

		void *buf;
		size_t got;
		int rc = fy_store_get(f->st, key, 0, SIZE_MAX, &buf, &got);
		if (rc == -ENOENT) {
			absent++;
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(got, BIG);
		assert_memory_equal(buf, data, BIG);
		free(buf);
		whole++;
	}
	print_message("killed writers: %d whole objects, %d absent, %d temps left\n", whole, absent,
		      count_temps(f->root));
	struct keys k = {0};
	assert_int_equal(fy_store_list(f->st, "crash/", collect, &k), 0);
	assert_int_equal(k.n, whole);
	for (int i = 0; i < k.n; i++)
		assert_int_equal(k.size[i], BIG);
	keys_free(&k);
	free(data);
}

/* The kill -9 test hook (FERRY_TEST_KILL_AFTER_OPS): a child armed with
 * OP:N dies by SIGKILL right after its Nth counted operation returned, with
 * exactly the operations before it done; bad specs are refused. */
static void test_kill_hook(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *spec;
		int dels_first; /* del this many existing objects before the puts */
		int want_objects; /* objects under k/ when the child dies */
	} cases[] = {
		{ "put:1", 0, 4 + 1 },
		{ "put:3", 0, 4 + 3 },
		{ "del:2", 3, 4 - 2 },
		{ "any:4", 3, 4 - 3 + 1 },
	};

	assert_int_equal(fy_store_kill_arm("put:0"), -EINVAL);
	assert_int_equal(fy_store_kill_arm("put:"), -EINVAL);
	assert_int_equal(fy_store_kill_arm("put:-1"), -EINVAL);
	assert_int_equal(fy_store_kill_arm("put:2x"), -EINVAL);
	assert_int_equal(fy_store_kill_arm("get:2"), -EINVAL);
	assert_int_equal(fy_store_kill_arm("put:99999999999999999999999"), -EINVAL);
	assert_int_equal(fy_store_kill_arm(""), 0);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct keys k = { 0 };
		int status;

		for (int i = 0; i < 4; i++) {
			char key[16];

			snprintf(key, sizeof(key), "k/old%d", i);
			put_str(f->st, key, "old", 0);
		}
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			if (fy_store_kill_arm(cases[c].spec) < 0)
				_exit(3);
			for (int i = 0; i < cases[c].dels_first; i++) {
				char key[16];

				snprintf(key, sizeof(key), "k/old%d", i);
				fy_store_del(f->st, key);
			}
			for (int i = 0; i < 10; i++) {
				char key[16];

				snprintf(key, sizeof(key), "k/new%d", i);
				fy_store_put(f->st, key, "new", 3, 0);
			}
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		print_message("%s: child %s %d\n", cases[c].spec, WIFSIGNALED(status) ? "killed by" : "exited",
			      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		assert_int_equal(fy_store_list(f->st, "k/", collect, &k), 0);
		assert_int_equal(k.n, cases[c].want_objects);
		keys_free(&k);
		rm_rf(f->root);
	}
	/* Disarmed in this process: nothing counted, nothing killed. */
	for (int i = 0; i < 3; i++)
		put_str(f->st, "k/x", "x", 0);
}

static void test_sync_tolerates_removed_dir(void **state)
{
	struct fx *f = *state;
	put_str(f->st, "gone/deeper/x", "1", 0);
	put_str(f->st, "kept/y", "2", 0);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/gone", f->root);
	rm_rf(p);
	assert_int_equal(fy_store_sync(f->st), 0);
	assert_int_equal(fy_store_sync(f->st), 0);
	expect_list(f->st, "", (const char *const[]){"kept/y", NULL});
}

/* A listing that cannot be trusted is an error, never an empty or short
 * list: the listed folder a dangling symlink or a regular file, or inside
 * it something that is neither an object nor a folder. */
static void test_list_untrusted(void **state)
{
	struct fx *f = *state;
	char p[PATH_MAX], q[PATH_MAX];
	struct keys k = { 0 };

	put_str(f->st, "snapshots/a", "1", 0);
	put_str(f->st, "chunks/ab/x", "22", 0);
	snprintf(p, sizeof(p), "%s/snapshots", f->root);
	snprintf(q, sizeof(q), "%s/snapshots.moved", f->root);
	assert_int_equal(rename(p, q), 0);

	/* the folder: a dangling symlink (a mount that went away) */
	assert_int_equal(symlink("/nonexistent/ferry-test", p), 0);
	assert_int_equal(fy_store_list(f->st, "snapshots/", collect, &k), -EIO);
	assert_non_null(strstr(fy_store_strerror(-EIO), "symlink to '/nonexistent/ferry-test'"));
	assert_int_equal(fy_store_put(f->st, "snapshots/b", "3", 1, 0) < 0, 1); /* never written through */
	/* a symlink to a folder is followed: it is the folder */
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink(q, p), 0);
	expect_list(f->st, "snapshots/", (const char *const[]){"snapshots/a", NULL});
	/* a regular file */
	assert_int_equal(unlink(p), 0);
	assert_int_equal(close(open(p, O_CREAT | O_WRONLY, 0600)), 0);
	assert_int_equal(fy_store_list(f->st, "snapshots/", collect, &k), -ENOTDIR);
	assert_non_null(strstr(fy_store_strerror(-ENOTDIR), "is not a directory"));
	/* missing */
	assert_int_equal(unlink(p), 0);
	assert_int_equal(fy_store_list(f->st, "snapshots/", collect, &k), -ENOENT);
	assert_int_equal(k.n, 0);
	assert_int_equal(rename(q, p), 0);

	/* inside the folder: a symlink to a regular file is an object (get()
	 * follows it too); a dangling one, one to a folder, a fifo: errors */
	snprintf(p, sizeof(p), "%s/snapshots/link", f->root);
	snprintf(q, sizeof(q), "%s/snapshots/a", f->root);
	assert_int_equal(symlink(q, p), 0);
	expect_list(f->st, "snapshots/", (const char *const[]){"snapshots/a", "snapshots/link", NULL});
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("/nonexistent/ferry-test", p), 0);
	assert_int_equal(fy_store_list(f->st, "snapshots/", collect, &k), -EIO);
	assert_non_null(strstr(fy_store_strerror(-EIO), "snapshots/link is a symlink to nothing"));
	assert_int_equal(unlink(p), 0);
	snprintf(q, sizeof(q), "%s/chunks", f->root);
	assert_int_equal(symlink(q, p), 0);
	assert_int_equal(fy_store_list(f->st, "snapshots/", collect, &k), -EIO);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(fy_store_list(f->st, "snapshots/", collect, &k), -EIO);
	assert_non_null(strstr(fy_store_strerror(-EIO), "neither a regular file nor a directory"));
	/* and a get() of the fifo does not hang: it is no object */
	void *buf = NULL;
	size_t got = 0;
	assert_int_equal(fy_store_get(f->st, "snapshots/link", 0, SIZE_MAX, &buf, &got), -ENOENT);
	assert_int_equal(unlink(p), 0);
	expect_list(f->st, "snapshots/", (const char *const[]){"snapshots/a", NULL});
	keys_free(&k);
}

/* make_folder: the folder exists afterwards, and one that is there stays. */
static void test_make_folder(void **state)
{
	struct fx *f = *state;
	char p[PATH_MAX];
	struct stat sb;

	assert_int_equal(fy_store_make_folder(f->st, "snapshots/"), 0);
	assert_int_equal(fy_store_make_folder(f->st, "snapshots/"), 0);
	snprintf(p, sizeof(p), "%s/snapshots", f->root);
	assert_int_equal(stat(p, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	expect_list(f->st, "snapshots/", (const char *const[]){NULL});
	assert_int_equal(fy_store_make_folder(f->st, "../x/"), -EINVAL);
	put_str(f->st, "config", "c", 0);
	assert_int_equal(fy_store_make_folder(f->st, "config/"), -ENOTDIR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_creates_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_early_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_noreplace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_skips_temps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory_is_not_an_object, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test(test_unknown_scheme),
		cmocka_unit_test_setup_teardown(test_plain_path_and_url, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_tolerates_removed_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_untrusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_make_folder, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
