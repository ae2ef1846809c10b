/* Repository locks (lock.h, docs/FORMAT.md "Locks and prune"). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "repo/lock.h"

#define LOCK_PLAIN_MAX 4096       /* a Lock message is a few hundred bytes */
#define LOCK_OBJ_MAX (64u << 10)  /* anything larger is not a lock */

static _Atomic int64_t refresh_period_ns;

struct ident {
	char host[256];
	char pidns[64];
};

struct fy_lock {
	struct fy_repo *repo;
	uint8_t id[FY_LOCK_ID_LEN];
	char key[48];
	bool exclusive;
	char command[32];
	struct ident me;
	int64_t created_ns;

	pthread_t tid;
	bool started;
	pthread_mutex_t mu;      /* the fields below */
	pthread_cond_t cond;
	bool stop;
	bool gone;               /* a refresh found the object removed */
	int64_t refreshed_ns;    /* last successful write */
	int refresh_err;         /* last failed refresh, 0 after a success */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void iso_time(int64_t ns, char *out, size_t len)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, len, "%lld ns", (long long)ns);
}

static void get_ident(struct ident *me)
{
	ssize_t n;

	memset(me, 0, sizeof(*me));
	if (gethostname(me->host, sizeof(me->host) - 1) < 0)
		me->host[0] = '\0';
	n = readlink("/proc/self/ns/pid", me->pidns, sizeof(me->pidns) - 1);
	me->pidns[n > 0 ? n : 0] = '\0';
}

void fy_lock_set_refresh_period(int64_t ns)
{
	atomic_store(&refresh_period_ns, ns);
}

/* Seal and put this lock with the given refreshed time. */
static int write_lock(struct fy_lock *lk, int64_t refreshed, unsigned flags)
{
	Ferry__V1__Lock m = FERRY__V1__LOCK__INIT;
	uint8_t plain[LOCK_PLAIN_MAX], obj[FY_OBJ_MAX(LOCK_PLAIN_MAX)];

	m.exclusive = lk->exclusive;
	m.command = lk->command;
	m.hostname = lk->me.host;
	m.pid = getpid();
	m.created_unix_nano = lk->created_ns;
	m.refreshed_unix_nano = refreshed;
	m.pid_namespace = lk->me.pidns;
	size_t len = ferry__v1__lock__get_packed_size(&m);

	if (len > sizeof(plain))
		return -E2BIG;
	ferry__v1__lock__pack(&m, plain);
	ssize_t n = fy_obj_seal(lk->repo, "FYL1", lk->id, FY_LOCK_ID_LEN, plain, len, fy_crc32c(0, plain, len),
				lk->repo->level, obj);
	if (n < 0)
		return (int)n;
	return fy_store_put(lk->repo->store, lk->key, obj, (size_t)n, flags);
}

/* Fill li from the object at key and judge it against us (me) at time now.
 * Returns 0 (li->corrupt set for an object that does not decode), -ENOENT
 * when it is gone, or another -errno when it cannot be read. */
static int read_lock(struct fy_repo *r, const char *key, const struct ident *me, int64_t now,
		     struct fy_lock_info *li)
{
	const char *name = key + strlen("locks/");
	uint8_t id[FY_LOCK_ID_LEN], plain[LOCK_PLAIN_MAX], scratch[LOCK_PLAIN_MAX];
	void *obj = NULL;
	size_t objlen = 0;
	int rc;

	memset(li, 0, sizeof(*li));
	snprintf(li->key, sizeof(li->key), "%s", key);
	if (strlen(key) >= sizeof(li->key) || fy_unhex(name, id, FY_LOCK_ID_LEN) < 0) {
		li->corrupt = true;
		snprintf(li->why, sizeof(li->why), "not a lock name (locks/ followed by 32 hex digits)");
		return 0;
	}
	rc = fy_store_get(r->store, key, 0, LOCK_OBJ_MAX + 1, &obj, &objlen);
	if (rc < 0)
		return rc;
	if (objlen > LOCK_OBJ_MAX) {
		free(obj);
		li->corrupt = true;
		snprintf(li->why, sizeof(li->why), "more than %u bytes, too large for a lock", LOCK_OBJ_MAX);
		return 0;
	}
	ssize_t n = fy_obj_open(r, "FYL1", id, FY_LOCK_ID_LEN, obj, objlen, plain, sizeof(plain), scratch,
				li->why, sizeof(li->why));
	free(obj);
	if (n < 0) {
		li->corrupt = true;
		return 0;
	}
	Ferry__V1__Lock *m = ferry__v1__lock__unpack(NULL, (size_t)n, plain);

	if (!m) {
		li->corrupt = true;
		snprintf(li->why, sizeof(li->why), "it does not decode");
		return 0;
	}
	li->exclusive = m->exclusive;
	/* Shown to users: escaped (a repository can hold anything). */
	fy_escape(m->command, li->command, sizeof(li->command));
	fy_escape(m->hostname, li->hostname, sizeof(li->hostname));
	li->pid = m->pid;
	li->created_unix_nano = m->created_unix_nano;
	li->refreshed_unix_nano = m->refreshed_unix_nano;

	char t[40];

	iso_time(m->refreshed_unix_nano, t, sizeof(t));
	if (m->refreshed_unix_nano < now - FY_LOCK_STALE_NS) { /* (no overflow on a wild value) */
		li->stale = true;
		snprintf(li->why, sizeof(li->why), "not refreshed since %s, more than 30 minutes ago", t);
	} else if (me && !strcmp(m->hostname, me->host) && !strcmp(m->pid_namespace, me->pidns) && m->pid > 0 &&
		   m->pid <= INT_MAX && kill((pid_t)m->pid, 0) < 0 && errno == ESRCH) {
		/* kill() only for pid > 0: 0 and negatives name process groups. */
		li->stale = true;
		snprintf(li->why, sizeof(li->why), "process %lld is gone from this host", (long long)m->pid);
	}
	ferry__v1__lock__free_unpacked(m, NULL);
	return 0;
}

void fy_lock_describe(const struct fy_lock_info *li, char *out, size_t len)
{
	char t[40];

	if (li->corrupt) {
		snprintf(out, len, "unreadable lock (%s)", li->why);
		return;
	}
	iso_time(li->created_unix_nano, t, sizeof(t));
	snprintf(out, len, "%s (%s) on host %s pid %lld since %s", li->command[0] ? li->command : "?",
		 li->exclusive ? "exclusive" : "shared", li->hostname, (long long)li->pid, t);
}

int fy_lock_remove(struct fy_repo *r, const struct fy_lock_info *li, char *err, size_t errlen)
{
	char shown[200];
	int rc = fy_store_del(r->store, li->key);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		snprintf(err, errlen, "removing lock %s from %s: %s", fy_escape(li->key, shown, sizeof(shown)), r->url,
			 strerror(-rc));
	return rc;
}

/* The check half of write-then-check: every other lock, against ours. */
static int check_others(struct fy_lock *lk, fy_lock_note_fn note, void *arg, char *err, size_t errlen)
{
	char shown[200];
	struct fy_store_keys l;
	int rc = fy_repo_keys(lk->repo, "locks/", &l, err, errlen);

	if (rc < 0)
		goto out;
	int64_t now = now_ns();

	for (size_t i = 0; i < l.n; i++) {
		struct fy_lock_info li;
		char what[400];

		if (!strcmp(l.keys[i], lk->key))
			continue;
		rc = read_lock(lk->repo, l.keys[i], &lk->me, now, &li);
		if (rc == -ENOENT) {
			rc = 0; /* released while we looked */
			continue;
		}
		if (rc < 0) {
			snprintf(err, errlen, "reading lock %s of %s: %s", fy_escape(l.keys[i], shown, sizeof(shown)),
				 lk->repo->url, strerror(-rc));
			goto out;
		}
		if (li.corrupt) {
			/* Fail safe: it may be anybody's, so it conflicts with everything. */
			snprintf(err, errlen, "lock %s is unreadable (%s): treating the repository as locked; "
				 "if no ferry process is using it, run 'ferry unlock --remove-all'", li.key, li.why);
			rc = -EBUSY;
			goto out;
		}
		fy_lock_describe(&li, what, sizeof(what));
		if (li.stale) {
			if (!lk->exclusive)
				continue;
			rc = fy_lock_remove(lk->repo, &li, err, errlen);
			if (rc < 0)
				goto out;
			if (note) {
				char line[700];

				snprintf(line, sizeof(line), "removed stale lock %s: %s (%s)",
					 fy_escape(li.key, shown, sizeof(shown)), what, li.why);
				note(line, arg);
			}
			continue;
		}
		if (lk->exclusive || li.exclusive) {
			snprintf(err, errlen, "repository is locked by %s (lock %s); if that process is gone, run "
				 "'ferry unlock'", what, fy_escape(li.key + strlen("locks/"), shown, sizeof(shown)));
			rc = -EBUSY;
			goto out;
		}
	}
	rc = 0;
out:
	fy_store_keys_free(&l);
	return rc;
}

static void deadline(struct timespec *ts, int64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ns / 1000000000;
	ts->tv_nsec += ns % 1000000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

/* Rewrite the lock with a new refreshed time, unless somebody removed it:
 * a removed lock is never brought back (its holder may have been judged stale). */
static int refresh(struct fy_lock *lk, int64_t *when)
{
	int rc = fy_store_exists(lk->repo->store, lk->key, NULL);

	if (rc == 0)
		return -ENOENT;
	if (rc < 0)
		return rc;
	*when = now_ns();
	return write_lock(lk, *when, FY_PUT_DURABLE);
}

static void *refresher(void *arg)
{
	struct fy_lock *lk = arg;
	int64_t period = atomic_load(&refresh_period_ns);
	struct timespec next;

	if (period <= 0)
		period = FY_LOCK_REFRESH_NS;
	pthread_mutex_lock(&lk->mu);
	while (!lk->stop && !lk->gone) {
		deadline(&next, period);
		/* Sleeps until the deadline; release signals the condvar and ends the wait at once. */
		while (!lk->stop && pthread_cond_timedwait(&lk->cond, &lk->mu, &next) != ETIMEDOUT)
			;
		if (lk->stop)
			break;
		pthread_mutex_unlock(&lk->mu);
		int64_t when = 0;
		int rc = refresh(lk, &when);

		pthread_mutex_lock(&lk->mu);
		if (rc == -ENOENT)
			lk->gone = true;
		else if (rc < 0)
			lk->refresh_err = rc;
		else {
			lk->refresh_err = 0;
			lk->refreshed_ns = when;
		}
	}
	pthread_mutex_unlock(&lk->mu);
	return NULL;
}

int fy_lock_take_note(struct fy_repo *r, bool exclusive, const char *command, fy_lock_note_fn note,
		      void *arg, struct fy_lock **out, char *err, size_t errlen)
{
	struct fy_lock *lk = calloc(1, sizeof(*lk));
	char hex[2 * FY_LOCK_ID_LEN + 1];
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!lk) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	lk->repo = r;
	lk->exclusive = exclusive;
	snprintf(lk->command, sizeof(lk->command), "%s", command ? command : "");
	get_ident(&lk->me);
	rc = fy_random(lk->id, sizeof(lk->id));
	if (rc < 0) {
		snprintf(err, errlen, "no random bytes for a lock id: %s", strerror(-rc));
		free(lk);
		return rc;
	}
	fy_hex(lk->id, sizeof(lk->id), hex);
	snprintf(lk->key, sizeof(lk->key), "locks/%s", hex);
	pthread_mutex_init(&lk->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lk->cond, &ca);
	pthread_condattr_destroy(&ca);

	lk->created_ns = lk->refreshed_ns = now_ns();
	rc = write_lock(lk, lk->refreshed_ns, FY_PUT_DURABLE | FY_PUT_NOREPLACE);
	if (rc < 0) {
		snprintf(err, errlen, "writing lock %s to %s: %s", lk->key, r->url, fy_store_strerror(rc));
		goto fail;
	}
	rc = check_others(lk, note, arg, err, errlen);
	if (rc < 0) {
		fy_store_del(r->store, lk->key);
		goto fail;
	}
	if (pthread_create(&lk->tid, NULL, refresher, lk) != 0) {
		snprintf(err, errlen, "cannot start the thread that refreshes lock %s", lk->key);
		fy_store_del(r->store, lk->key);
		rc = -EAGAIN;
		goto fail;
	}
	lk->started = true;
	*out = lk;
	return 0;
fail:
	pthread_mutex_destroy(&lk->mu);
	pthread_cond_destroy(&lk->cond);
	free(lk);
	return rc;
}

int fy_lock_take(struct fy_repo *r, bool exclusive, const char *command, struct fy_lock **lk, char *err,
		 size_t errlen)
{
	return fy_lock_take_note(r, exclusive, command, NULL, NULL, lk, err, errlen);
}

int fy_lock_check(struct fy_lock *lk, char *err, size_t errlen)
{
	char t[40];
	bool gone;
	int64_t refreshed;
	int rerr;

	pthread_mutex_lock(&lk->mu);
	gone = lk->gone;
	refreshed = lk->refreshed_ns;
	rerr = lk->refresh_err;
	pthread_mutex_unlock(&lk->mu);
	if (!gone) {
		int rc = fy_store_exists(lk->repo->store, lk->key, NULL);

		if (rc < 0) {
			snprintf(err, errlen, "checking lock %s of %s: %s", lk->key, lk->repo->url, strerror(-rc));
			return -ENOLCK;
		}
		gone = rc == 0;
	}
	if (gone) {
		snprintf(err, errlen, "lock %s was removed by another process (ferry unlock?): no longer holding "
			 "the repository", lk->key);
		return -ENOLCK;
	}
	/* Others judge staleness by the refreshed time: stop well before they may. */
	if (now_ns() - refreshed > FY_LOCK_STALE_NS - FY_LOCK_REFRESH_NS) {
		iso_time(refreshed, t, sizeof(t));
		snprintf(err, errlen, "lock %s was last refreshed at %s (%s): others may soon take it as stale",
			 lk->key, t, rerr ? strerror(-rerr) : "refresh late");
		return -ENOLCK;
	}
	return 0;
}

void fy_lock_release(struct fy_lock *lk)
{
	if (!lk)
		return;
	if (lk->started) {
		pthread_mutex_lock(&lk->mu);
		lk->stop = true;
		pthread_cond_signal(&lk->cond);
		pthread_mutex_unlock(&lk->mu);
		pthread_join(lk->tid, NULL);
	}
	fy_store_del(lk->repo->store, lk->key); /* if this fails, the lock goes stale with this process */
	pthread_mutex_destroy(&lk->mu);
	pthread_cond_destroy(&lk->cond);
	free(lk);
}

int fy_lock_list(struct fy_repo *r, struct fy_lock_info **locks, size_t *n, char *err, size_t errlen)
{
	char shown[200];
	struct fy_store_keys l;
	struct fy_lock_info *v = NULL;
	struct ident me;
	size_t k = 0;
	int rc = fy_repo_keys(r, "locks/", &l, err, errlen);

	*locks = NULL;
	*n = 0;
	if (rc < 0)
		goto out;
	v = calloc(l.n ? l.n : 1, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	get_ident(&me);
	int64_t now = now_ns();

	for (size_t i = 0; i < l.n; i++) {
		rc = read_lock(r, l.keys[i], &me, now, &v[k]);
		if (rc == -ENOENT)
			continue;
		if (rc < 0) {
			snprintf(err, errlen, "reading lock %s of %s: %s", fy_escape(l.keys[i], shown, sizeof(shown)), r->url,
				 strerror(-rc));
			free(v);
			goto out;
		}
		k++;
	}
	rc = 0;
	*locks = v;
	*n = k;
out:
	fy_store_keys_free(&l);
	return rc;
}
