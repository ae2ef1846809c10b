/* Repository locks (mover/repo/lock.c): conflicts, staleness, fail-safe on an
 * unreadable lock, refresh and prompt release, and two racing exclusive
 * takers never both winning.  Foreign locks are written by hand here, the
 * way another host's ferry would write them. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry.h"
#include "repo/lock.h"

static char dir[256];
static struct fy_repo *repo;
static const struct fy_secret pw = { .password = "unit test password" };

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int setup(void **state)
{
	struct fy_init_opts o = { .chunk_size = 1u << 20,
				  .compression = FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE,
				  .level = 1,
				  .scrypt_log2n = 10 };
	char url[300], err[512];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ferry-test-lock.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(url, sizeof(url), "%s/repo", dir);
	assert_int_equal(fy_repo_init(url, &o, &pw, err, sizeof(err)), 0);
	assert_int_equal(fy_repo_open(url, &pw, &repo, err, sizeof(err)), 0);
	fy_lock_set_refresh_period(0);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	fy_repo_close(repo);
	repo = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static int count_key(const char *key, uint64_t size, void *arg)
{
	(void)key;
	(void)size;
	(*(int *)arg)++;
	return 0;
}

static int nlocks(void)
{
	int n = 0;

	assert_int_equal(fy_store_list(repo->store, "locks/", count_key, &n), 0);
	return n;
}

static void my_host(char *host, size_t len, char *ns, size_t nslen)
{
	memset(host, 0, len);
	assert_int_equal(gethostname(host, len - 1), 0);
	ssize_t n = readlink("/proc/self/ns/pid", ns, nslen - 1);

	ns[n > 0 ? n : 0] = '\0';
}

/* Write a lock as another process would; returns its key in key. */
static void foreign_lock(bool exclusive, const char *command, const char *host, const char *ns, int64_t pid,
			 int64_t refreshed, char key[48])
{
	Ferry__V1__Lock m = FERRY__V1__LOCK__INIT;
	uint8_t id[FY_LOCK_ID_LEN], plain[1024], obj[FY_OBJ_MAX(1024)];
	char hex[2 * FY_LOCK_ID_LEN + 1];

	m.exclusive = exclusive;
	m.command = (char *)command;
	m.hostname = (char *)host;
	m.pid_namespace = (char *)ns;
	m.pid = pid;
	m.created_unix_nano = refreshed - 1000000000;
	m.refreshed_unix_nano = refreshed;
	size_t len = ferry__v1__lock__get_packed_size(&m);

	assert_true(len <= sizeof(plain));
	ferry__v1__lock__pack(&m, plain);
	assert_int_equal(fy_random(id, sizeof(id)), 0);
	ssize_t n = fy_obj_seal(repo, "FYL1", id, sizeof(id), plain, len, fy_crc32c(0, plain, len), 1, obj);

	assert_true(n > 0);
	fy_hex(id, sizeof(id), hex);
	snprintf(key, 48, "locks/%s", hex);
	assert_int_equal(fy_store_put(repo->store, key, obj, (size_t)n, FY_PUT_DURABLE), 0);
}

/* A pid that no process has: a child that has exited and been reaped. */
static pid_t dead_pid(void)
{
	pid_t p = fork();

	assert_true(p >= 0);
	if (p == 0)
		_exit(0);
	assert_int_equal(waitpid(p, NULL, 0), p);
	return p;
}

struct notes {
	int n;
	char last[800];
};

static void note(const char *line, void *arg)
{
	struct notes *ns = arg;

	ns->n++;
	snprintf(ns->last, sizeof(ns->last), "%s", line);
}

static void test_shared_and_exclusive(void **state)
{
	struct fy_lock *a = NULL, *b = NULL, *x = NULL;
	char err[512];

	(void)state;
	assert_int_equal(fy_lock_take(repo, false, "backup", &a, err, sizeof(err)), 0);
	assert_int_equal(fy_lock_take(repo, false, "forget", &b, err, sizeof(err)), 0);
	assert_int_equal(nlocks(), 2);
	assert_int_equal(fy_lock_take(repo, true, "prune", &x, err, sizeof(err)), -EBUSY);
	assert_null(x);
	assert_non_null(strstr(err, "repository is locked by "));
	assert_non_null(strstr(err, "(shared) on host "));
	assert_non_null(strstr(err, "run 'ferry unlock'"));
	assert_int_equal(nlocks(), 2); /* the loser removed its own lock */
	fy_lock_release(a);
	fy_lock_release(b);
	assert_int_equal(nlocks(), 0);

	assert_int_equal(fy_lock_take(repo, true, "prune", &x, err, sizeof(err)), 0);
	assert_int_equal(fy_lock_check(x, err, sizeof(err)), 0);
	assert_int_equal(fy_lock_take(repo, false, "backup", &a, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "locked by prune (exclusive) on host "));
	assert_int_equal(fy_lock_take(repo, true, "prune", &b, err, sizeof(err)), -EBUSY);
	assert_int_equal(nlocks(), 1);
	fy_lock_release(x);
	fy_lock_release(NULL);
	assert_int_equal(nlocks(), 0);
}

static void test_stale_by_time(void **state)
{
	struct fy_lock *lk = NULL;
	struct notes ns = { 0 };
	char key[48], err[512];

	(void)state;
	foreign_lock(true, "prune", "elsewhere", "pid:[1]", 4242, now_ns() - FY_LOCK_STALE_NS - 60000000000LL, key);
	/* A shared taker ignores it and leaves it. */
	assert_int_equal(fy_lock_take(repo, false, "backup", &lk, err, sizeof(err)), 0);
	fy_lock_release(lk);
	assert_int_equal(nlocks(), 1);
	/* An exclusive taker removes it and says so. */
	assert_int_equal(fy_lock_take_note(repo, true, "prune", note, &ns, &lk, err, sizeof(err)), 0);
	assert_int_equal(ns.n, 1);
	assert_non_null(strstr(ns.last, "removed stale lock "));
	assert_non_null(strstr(ns.last, key));
	assert_non_null(strstr(ns.last, "more than 30 minutes ago"));
	assert_int_equal(nlocks(), 1);
	fy_lock_release(lk);
	assert_int_equal(nlocks(), 0);

	/* Just inside the limit: live. */
	foreign_lock(false, "backup", "elsewhere", "pid:[1]", 4242, now_ns() - FY_LOCK_STALE_NS + 60000000000LL, key);
	assert_int_equal(fy_lock_take(repo, true, "prune", &lk, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "backup (shared) on host elsewhere pid 4242"));
	assert_non_null(strstr(err, key + strlen("locks/")));
}

static void test_stale_by_dead_pid(void **state)
{
	char host[256], pidns[64], key[48], key2[48], key3[48], err[512];
	struct fy_lock *lk = NULL;
	struct notes ns = { 0 };
	pid_t gone = dead_pid();

	(void)state;
	my_host(host, sizeof(host), pidns, sizeof(pidns));
	/* Another host, or this host in another pid namespace: the pid means nothing here. */
	foreign_lock(false, "backup", "elsewhere", pidns, gone, now_ns(), key);
	assert_int_equal(fy_lock_take(repo, true, "prune", &lk, err, sizeof(err)), -EBUSY);
	assert_int_equal(fy_store_del(repo->store, key), 0);
	foreign_lock(false, "backup", host, "pid:[999]", gone, now_ns(), key);
	assert_int_equal(fy_lock_take(repo, true, "prune", &lk, err, sizeof(err)), -EBUSY);
	assert_int_equal(fy_store_del(repo->store, key), 0);
	/* This host, a live process (ours): live. */
	foreign_lock(false, "backup", host, pidns, getpid(), now_ns(), key2);
	assert_int_equal(fy_lock_take(repo, true, "prune", &lk, err, sizeof(err)), -EBUSY);
	assert_int_equal(fy_store_del(repo->store, key2), 0);
	/* pid 0 would name a process group: never treated as a process. */
	foreign_lock(false, "backup", host, pidns, 0, now_ns(), key3);
	assert_int_equal(fy_lock_take(repo, true, "prune", &lk, err, sizeof(err)), -EBUSY);
	assert_int_equal(fy_store_del(repo->store, key3), 0);

	/* This host, this namespace, the process is gone: stale. */
	foreign_lock(false, "backup", host, pidns, gone, now_ns(), key);
	assert_int_equal(fy_lock_take_note(repo, true, "prune", note, &ns, &lk, err, sizeof(err)), 0);
	assert_int_equal(ns.n, 1);
	assert_non_null(strstr(ns.last, key));
	assert_non_null(strstr(ns.last, "is gone from this host"));
	fy_lock_release(lk);
	assert_int_equal(nlocks(), 0);
}

static void test_unreadable_lock_is_live(void **state)
{
	struct fy_lock *lk = NULL;
	char key[48], err[512];
	const char junk[] = "this is not a lock object, only some text";
	struct fy_lock_info *li = NULL;
	size_t n = 0;

	(void)state;
	foreign_lock(false, "backup", "elsewhere", "", 1, now_ns(), key);
	/* Damage one byte of the sealed object. */
	void *obj = NULL;
	size_t len = 0;

	assert_int_equal(fy_store_get(repo->store, key, 0, SIZE_MAX, &obj, &len), 0);
	((uint8_t *)obj)[len - 3] ^= 0x40;
	assert_int_equal(fy_store_put(repo->store, key, obj, len, FY_PUT_DURABLE), 0);
	free(obj);
	for (int ex = 0; ex < 2; ex++) {
		assert_int_equal(fy_lock_take(repo, ex, ex ? "prune" : "backup", &lk, err, sizeof(err)), -EBUSY);
		assert_non_null(strstr(err, key));
		assert_non_null(strstr(err, "is unreadable"));
	}
	assert_int_equal(fy_store_del(repo->store, key), 0);
	assert_int_equal(fy_store_put(repo->store, "locks/0123456789abcdef0123456789abcdef", junk, sizeof(junk), 0), 0);
	assert_int_equal(fy_lock_take(repo, false, "backup", &lk, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "locks/0123456789abcdef0123456789abcdef is unreadable (bad magic"));
	assert_int_equal(fy_lock_list(repo, &li, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_true(li[0].corrupt);
	assert_false(li[0].stale);
	assert_int_equal(fy_lock_remove(repo, &li[0], err, sizeof(err)), 0);
	assert_int_equal(fy_lock_remove(repo, &li[0], err, sizeof(err)), 0); /* already gone: fine */
	free(li);
	assert_int_equal(nlocks(), 0);
}

static void test_list_and_describe(void **state)
{
	char key[48], err[512], line[400];
	struct fy_lock *lk = NULL;
	struct fy_lock_info *li = NULL;
	size_t n = 0;

	(void)state;
	foreign_lock(true, "prune", "elsewhere", "", 77, now_ns() - FY_LOCK_STALE_NS - 1000000000LL, key);
	assert_int_equal(fy_lock_take(repo, false, "backup", &lk, err, sizeof(err)), 0);
	assert_int_equal(fy_lock_list(repo, &li, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		fy_lock_describe(&li[i], line, sizeof(line));
		if (!strcmp(li[i].key, key)) {
			assert_true(li[i].stale);
			assert_true(li[i].exclusive);
			assert_int_equal(li[i].pid, 77);
			assert_non_null(strstr(line, "prune (exclusive) on host elsewhere pid 77 since 20"));
		} else {
			assert_false(li[i].stale);
			assert_false(li[i].exclusive);
			assert_int_equal(li[i].pid, getpid());
			assert_non_null(strstr(line, "backup (shared) on host "));
		}
	}
	free(li);
	fy_lock_release(lk);
	assert_int_equal(fy_store_del(repo->store, key), 0);
}

/* The refresher rewrites the lock; release wakes it at once, however long its period. */
static void test_refresh_and_prompt_release(void **state)
{
	struct fy_lock *lk = NULL;
	struct fy_lock_info *li = NULL;
	size_t n = 0;
	char err[512];
	bool refreshed = false;

	(void)state;
	fy_lock_set_refresh_period(20 * 1000000LL);
	assert_int_equal(fy_lock_take(repo, false, "backup", &lk, err, sizeof(err)), 0);
	/* Wait for the condition (refreshed moved past created), bounded at 20 s. */
	for (double t0 = mono(); !refreshed && mono() - t0 < 20;) {
		assert_int_equal(fy_lock_list(repo, &li, &n, err, sizeof(err)), 0);
		assert_int_equal(n, 1);
		refreshed = li[0].refreshed_unix_nano > li[0].created_unix_nano;
		free(li);
	}
	assert_true(refreshed);
	assert_int_equal(fy_lock_check(lk, err, sizeof(err)), 0);
	fy_lock_release(lk);
	assert_int_equal(nlocks(), 0);

	fy_lock_set_refresh_period(3600 * 1000000000LL);
	assert_int_equal(fy_lock_take(repo, true, "prune", &lk, err, sizeof(err)), 0);
	double t0 = mono();

	fy_lock_release(lk);
	assert_true(mono() - t0 < 2.0);
	fy_lock_set_refresh_period(0);
}

/* A lock removed behind its holder's back (ferry unlock --remove-all): the
 * holder notices before it deletes anything. */
static void test_removed_lock_is_noticed(void **state)
{
	struct fy_lock *lk = NULL;
	struct fy_lock_info *li = NULL;
	size_t n = 0;
	char err[512];

	(void)state;
	assert_int_equal(fy_lock_take(repo, true, "prune", &lk, err, sizeof(err)), 0);
	assert_int_equal(fy_lock_list(repo, &li, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fy_lock_remove(repo, &li[0], err, sizeof(err)), 0);
	free(li);
	assert_int_equal(fy_lock_check(lk, err, sizeof(err)), -ENOLCK);
	assert_non_null(strstr(err, "was removed"));
	fy_lock_release(lk);
	assert_int_equal(nlocks(), 0);
}

struct racer {
	pthread_barrier_t *go;
	struct fy_lock *lk;
	int rc;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	char err[512];

	pthread_barrier_wait(r->go);
	r->rc = fy_lock_take(repo, true, "prune", &r->lk, err, sizeof(err));
	return NULL;
}

/* Write-then-check: two exclusive takers at once never both win. */
static void test_racing_exclusive_takers(void **state)
{
	int both = 0, one = 0, none = 0;

	(void)state;
	for (int round = 0; round < 50; round++) {
		pthread_barrier_t go;
		struct racer r[2] = { { .go = &go }, { .go = &go } };
		pthread_t t[2];

		pthread_barrier_init(&go, NULL, 2);
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&go);
		int won = (r[0].rc == 0) + (r[1].rc == 0);

		for (int i = 0; i < 2; i++)
			assert_true(r[i].rc == 0 || r[i].rc == -EBUSY);
		both += won == 2;
		one += won == 1;
		none += won == 0;
		fy_lock_release(r[0].lk);
		fy_lock_release(r[1].lk);
		assert_int_equal(nlocks(), 0);
	}
	print_message("50 races: %d one winner, %d both backed off\n", one, none);
	assert_int_equal(both, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shared_and_exclusive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_by_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_by_dead_pid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_lock_is_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_and_describe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_and_prompt_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_lock_is_noticed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_racing_exclusive_takers, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
