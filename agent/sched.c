/* Backup policies at work (agent_priv.h; docs/operations.md, "Policies").
 *
 * The scheduler thread owns the policy files: it reads --policy-dir at
 * start and again when inotify says the directory changed (a ConfigMap
 * update swaps its "..data" symlink: a rename in the directory) or every
 * RESCAN_MS in any case.  A file that does not parse, or breaks the schema,
 * is rejected whole and the version of it in force (if any) stays.
 *
 * Every pass it lists this node's volumes, gives each to the first policy
 * (by name) that selects it — a second one that also selects it is an
 * overlap, logged once and counted, and skips it —, and for each (policy,
 * volume) fires what is due: the backup (a cut, on this thread: an
 * ordinary snapshot with an upload job, jobs.c), the drill (to the drill
 * thread) and, per policy, the prune (to the maintenance thread, which
 * also applies retention after each upload and reads the targets' status
 * when a policy comes into force).  When each last ran is kept in
 * STATE/policies.state, so that a run missed while the agent was down
 * happens once, at start.
 *
 * Time is the policy clock: the real clock, or, for tests only, the Unix
 * seconds written in the file FERRY_TEST_CLOCK names (inotify on it wakes
 * the scheduler at once). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent_priv.h"
#include "clock.h"
#include "ferry.h"
#include "ferry_drill.h"
#include "ferry_gc.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"

#define RESCAN_MS 10000
#define MAX_FILES 256
#define STATE_FILE "policies.state"
#define NAME_PREFIX "policy."

/* ---- state ---- */

enum task_kind { T_REFRESH, T_RETAIN, T_PRUNE, T_DRILL };

struct task {
	struct task *next;
	enum task_kind kind;
	struct fy_policy *p;          /* a reference */
	char volume[FY_ID_MAX + 1];
	int64_t slot;
};

struct pfile {
	char name[256];
	unsigned char digest[32];     /* of the bytes last read (in force or rejected) */
	bool have_digest, retry;      /* retry: rejected for another file's sake */
	struct fy_policy *p;          /* the version in force, or NULL */
	char error[1024];             /* the last rejection, logged once */
};

/* When each (policy, volume, kind) last ran: persisted. */
struct slot {
	char policy[FY_POLICY_NAME_MAX + 1];
	char volume[FY_ID_MAX + 1];   /* "" for a prune */
	char kind[8];                 /* "backup", "drill", "prune" */
	uint64_t sched;               /* the schedule it counts for (hash of its text) */
	int64_t last;                 /* the last slot that ran, or when counting began */
	int64_t since;                /* when the policy began covering the volume */
	bool queued, used;            /* in memory only */
};

/* The newest snapshot of a volume complete on a target (RPO). */
struct seen {
	char volume[FY_ID_MAX + 1];
	char target[512];
	int64_t newest_ns;
	uint64_t bytes;               /* its data */
	bool rpo_breached;
};

/* The last drill of a policy's volume, and the last that passed (RTO). */
struct drill_res {
	char policy[FY_POLICY_NAME_MAX + 1];
	char volume[FY_ID_MAX + 1];
	char target[512];
	bool have, ok;
	int64_t when;
	char reason[800];
	bool have_ok;
	int64_t ok_when;
	double ok_restore_s, ok_bps;
	uint64_t ok_size, ok_bytes;
	bool rto_breached;
};

struct rc_ent {
	char url[1100];
	unsigned char dg[FY_SECRETS_DIGEST_LEN];
	struct fy_repo *r;
};

struct worker {
	struct fy_sched *s;
	const char *name;
	pthread_t thr;
	bool started, busy;
	struct task *head;
	struct rc_ent cache[16];      /* repositories open between tasks */
	size_t ncache;
};

struct fy_sched {
	struct fy_agent *a;
	pthread_mutex_t mu;
	pthread_cond_t cv;            /* CLOCK_MONOTONIC */
	pthread_t thr;
	bool thr_started;
	struct worker maint, drill;
	unsigned alive;
	bool quit;
	int efd, ifd, wd_dir, wd_clock;
	char dir[512];
	char clock_path[1024], clock_name[256];
	char state_path[1100];
	bool dir_error_logged, scanned_once;
	/* the scheduler thread's own */
	struct pfile files[MAX_FILES];
	size_t nfiles;
	char (*overlaps)[160];
	size_t noverlaps;
	/* under mu */
	struct fy_policy *pol[MAX_FILES]; /* in force, by name */
	size_t npol;
	struct slot *slots;
	size_t nslots;
	struct seen *seen;
	size_t nseen;
	struct drill_res *drills;
	size_t ndrills;
	uint64_t refreshed[64];       /* targets whose status was read (hash) */
	size_t nrefreshed;
	uint64_t drilling;            /* the target a drill reads now (hash), or 0 */
	bool dirty;
};

static uint64_t fnv(const char *s, uint64_t h)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static uint64_t hash_str(const char *s)
{
	return fnv(s, 14695981039346656037ull);
}

static void wake(struct fy_sched *s)
{
	uint64_t one = 1;

	if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fy_log_debug("policies: waking the scheduler: %s", strerror(errno));
}

/* The policy clock, in nanoseconds (docs: FERRY_TEST_CLOCK is for tests). */
static int64_t pnow_ns(struct fy_sched *s)
{
	char buf[64];
	int fd;
	ssize_t n;

	if (s->clock_path[0] && (fd = open(s->clock_path, O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			char *end;
			long long v;

			buf[n] = 0;
			v = strtoll(buf, &end, 10);
			if (end != buf && v > 0)
				return (int64_t)v * 1000000000LL;
		}
	}
	return fy_now_ns();
}

static int64_t pnow(struct fy_sched *s)
{
	return pnow_ns(s) / 1000000000LL;
}

static void utc(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M UTC", &tm);
}

static void utc_s(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void shown_target(const struct fy_policy *p, size_t ti, char *out, size_t len)
{
	fy_url_shown(p->targets[ti].url, out, len);
}

/* ---- persisted state ---- */

static struct slot *slot_find(struct fy_sched *s, const char *policy, const char *volume, const char *kind)
{
	for (size_t i = 0; i < s->nslots; i++)
		if (!strcmp(s->slots[i].policy, policy) && !strcmp(s->slots[i].volume, volume) &&
		    !strcmp(s->slots[i].kind, kind))
			return &s->slots[i];
	return NULL;
}

static struct slot *slot_add(struct fy_sched *s, const char *policy, const char *volume, const char *kind)
{
	struct slot *n = realloc(s->slots, (s->nslots + 1) * sizeof(*n));

	if (!n)
		return NULL;
	s->slots = n;
	n = &s->slots[s->nslots++];
	memset(n, 0, sizeof(*n));
	snprintf(n->policy, sizeof(n->policy), "%s", policy);
	snprintf(n->volume, sizeof(n->volume), "%s", volume);
	snprintf(n->kind, sizeof(n->kind), "%s", kind);
	return n;
}

static struct drill_res *drill_find(struct fy_sched *s, const char *policy, const char *volume, bool add)
{
	struct drill_res *n;

	for (size_t i = 0; i < s->ndrills; i++)
		if (!strcmp(s->drills[i].policy, policy) && !strcmp(s->drills[i].volume, volume))
			return &s->drills[i];
	if (!add || !(n = realloc(s->drills, (s->ndrills + 1) * sizeof(*n))))
		return NULL;
	s->drills = n;
	n = &s->drills[s->ndrills++];
	memset(n, 0, sizeof(*n));
	snprintf(n->policy, sizeof(n->policy), "%s", policy);
	snprintf(n->volume, sizeof(n->volume), "%s", volume);
	return n;
}

static struct seen *seen_find(struct fy_sched *s, const char *volume, const char *target, bool add)
{
	struct seen *n;

	for (size_t i = 0; i < s->nseen; i++)
		if (!strcmp(s->seen[i].volume, volume) && !strcmp(s->seen[i].target, target))
			return &s->seen[i];
	if (!add || !(n = realloc(s->seen, (s->nseen + 1) * sizeof(*n))))
		return NULL;
	s->seen = n;
	n = &s->seen[s->nseen++];
	memset(n, 0, sizeof(*n));
	snprintf(n->volume, sizeof(n->volume), "%s", volume);
	snprintf(n->target, sizeof(n->target), "%s", target);
	return n;
}

static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\t' || *s == '\n' || *s == '\r')
			*s = ' ';
}

/* Write the state (mu held): a temporary file, fsync, rename. */
static void state_save(struct fy_sched *s)
{
	char tmp[1200];
	FILE *f;
	int ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", s->state_path);
	f = fopen(tmp, "we");
	if (!f) {
		fy_log_error("policies: %s: %s (when each policy last ran is not saved)", tmp, strerror(errno));
		return;
	}
	fprintf(f, "# ferry agent: when each backup policy last ran (docs/operations.md). Do not edit.\n");
	for (size_t i = 0; i < s->nslots; i++) {
		const struct slot *t = &s->slots[i];

		fprintf(f, "slot\t%s\t%s\t%s\t%016llx\t%lld\t%lld\n", t->kind, t->policy, t->volume[0] ? t->volume : "-",
			(unsigned long long)t->sched, (long long)t->last, (long long)t->since);
	}
	for (size_t i = 0; i < s->ndrills; i++) {
		const struct drill_res *d = &s->drills[i];

		if (!d->have && !d->have_ok)
			continue;
		fprintf(f, "drill\t%s\t%s\t%s\t%d\t%lld\t%d\t%lld\t%.6f\t%.3f\t%llu\t%llu\t%s\n", d->policy, d->volume,
			d->target[0] ? d->target : "-", d->ok, (long long)d->when, d->have_ok, (long long)d->ok_when,
			d->ok_restore_s, d->ok_bps, (unsigned long long)d->ok_size, (unsigned long long)d->ok_bytes,
			d->reason[0] ? d->reason : "-");
	}
	ok = !ferror(f) && !fflush(f) && !fsync(fileno(f));
	if (fclose(f) || !ok || rename(tmp, s->state_path)) {
		fy_log_error("policies: saving %s: %s", s->state_path, strerror(errno));
		unlink(tmp);
		return;
	}
	s->dirty = false;
}

static void state_load(struct fy_sched *s)
{
	FILE *f = fopen(s->state_path, "re");
	char line[2048];
	size_t n = 0;

	if (!f) {
		if (errno != ENOENT)
			fy_log_error("policies: %s: %s (runs missed while the agent was down are not known)",
				     s->state_path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char *fld[16], *save = NULL;
		size_t nf = 0;

		line[strcspn(line, "\n")] = 0;
		for (char *t = strtok_r(line, "\t", &save); t && nf < 16; t = strtok_r(NULL, "\t", &save))
			fld[nf++] = t;
		if (nf == 7 && !strcmp(fld[0], "slot")) {
			struct slot *t = slot_add(s, fld[2], strcmp(fld[3], "-") ? fld[3] : "", fld[1]);

			if (t) {
				t->sched = strtoull(fld[4], NULL, 16);
				t->last = strtoll(fld[5], NULL, 10);
				t->since = strtoll(fld[6], NULL, 10);
				n++;
			}
		} else if (nf == 13 && !strcmp(fld[0], "drill")) {
			struct drill_res *d = drill_find(s, fld[1], fld[2], true);

			if (d) {
				snprintf(d->target, sizeof(d->target), "%s", strcmp(fld[3], "-") ? fld[3] : "");
				d->ok = atoi(fld[4]);
				d->when = strtoll(fld[5], NULL, 10);
				d->have = d->when > 0;
				d->have_ok = atoi(fld[6]);
				d->ok_when = strtoll(fld[7], NULL, 10);
				d->ok_restore_s = strtod(fld[8], NULL);
				d->ok_bps = strtod(fld[9], NULL);
				d->ok_size = strtoull(fld[10], NULL, 10);
				d->ok_bytes = strtoull(fld[11], NULL, 10);
				snprintf(d->reason, sizeof(d->reason), "%s", strcmp(fld[12], "-") ? fld[12] : "");
			}
		}
	}
	fclose(f);
	fy_log_info("policies: %zu schedules read from %s", n, s->state_path);
}

/* ---- repositories and secrets ---- */

struct job_secrets {
	struct fy_pol_secrets sec[FY_MAX_TARGETS]; /* in the job's order: primary, copies */
	size_t n;
};

static int write_one(const char *dir, const struct fy_pol_secrets *sec, char *err, size_t errlen)
{
	struct fy_map_entry ents[FY_POL_SECRET_KEYS], *ep[FY_POL_SECRET_KEYS];
	size_t n = 0;
	bool s3;

	for (size_t k = 0; k < FY_POL_SECRET_KEYS; k++)
		if (sec->val[k]) {
			memset(&ents[n], 0, sizeof(ents[n]));
			ents[n].key = (char *)fy_pol_secret_keys[k];
			ents[n].value = sec->val[k];
			ep[n] = &ents[n];
			n++;
		}
	return fy_secrets_write(dir, ep, n, "", &s3, err, errlen);
}

/* fy_take's write_secrets: the primary's into dir, copy N's into dir/copy-N. */
static int write_job_secrets(const char *dir, void *arg, char *err, size_t errlen)
{
	struct job_secrets *js = arg;
	char sub[1200];
	int ret = 0;

	for (size_t i = 0; !ret && i < js->n; i++) {
		if (i)
			snprintf(sub, sizeof(sub), "%s/copy-%zu", dir, i);
		ret = write_one(i ? sub : dir, &js->sec[i], err, errlen);
	}
	return ret;
}

static void rc_close_all(struct worker *w)
{
	for (size_t i = 0; i < w->ncache; i++)
		fy_repo_close(w->cache[i].r);
	w->ncache = 0;
}

/* Target ti of policy p, open with its secrets as they are now (kept open
 * between tasks while they stay the same: one key derivation). */
static int rc_open(struct worker *w, const struct fy_policy *p, size_t ti, struct fy_repo **r, const char **kind,
		   char *err, size_t errlen)
{
	struct fy_agent *a = w->s->a;
	const struct fy_pol_target *t = &p->targets[ti];
	struct fy_pol_secrets sec;
	unsigned char dg[FY_SECRETS_DIGEST_LEN];
	char dir[800], id[48], whose[128];
	struct rc_ent *e = NULL;
	int ret;

	*kind = "secret";
	ret = fy_pol_secrets_read(t, &sec, err, errlen);
	if (ret)
		return ret;
	fy_new_id("policy-secrets", id, sizeof(id));
	snprintf(dir, sizeof(dir), "%s/%s", a->tmp_dir, id);
	ret = write_one(dir, &sec, err, errlen);
	fy_pol_secrets_free(&sec);
	if (!ret)
		ret = fy_secrets_digest(dir, dg);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "its secrets: %s", strerror(-ret));
		fy_secrets_remove(dir);
		return ret;
	}
	*kind = NULL;
	for (size_t i = 0; i < w->ncache; i++)
		if (!strcmp(w->cache[i].url, t->url))
			e = &w->cache[i];
	if (e && !memcmp(e->dg, dg, sizeof(dg))) {
		fy_secrets_remove(dir);
		*r = e->r;
		return 0;
	}
	if (e) {
		fy_repo_close(e->r);
		*e = w->cache[--w->ncache];
	}
	snprintf(whose, sizeof(whose), "policy %s's secrets", p->name);
	ret = fy_repo_open_dir(t->url, dir, 0, NULL, whose, r, err, errlen);
	fy_secrets_remove(dir);
	if (ret)
		return ret;
	if (w->ncache == sizeof(w->cache) / sizeof(w->cache[0])) {
		fy_repo_close(w->cache[0].r);
		w->cache[0] = w->cache[--w->ncache];
	}
	e = &w->cache[w->ncache++];
	snprintf(e->url, sizeof(e->url), "%s", t->url);
	memcpy(e->dg, dg, sizeof(dg));
	e->r = *r;
	return 0;
}

/* A repository that failed under us is opened again next time. */
static void rc_drop(struct worker *w, struct fy_repo *r)
{
	for (size_t i = 0; i < w->ncache; i++)
		if (w->cache[i].r == r) {
			fy_repo_close(r);
			w->cache[i] = w->cache[--w->ncache];
			return;
		}
}

/* ---- tasks ---- */

static void task_push(struct fy_sched *s, struct worker *w, enum task_kind kind, struct fy_policy *p,
		      const char *volume, int64_t slot)
{
	struct task *t = calloc(1, sizeof(*t)), **pp;

	if (!t) {
		fy_log_error("policies: out of memory");
		return;
	}
	t->kind = kind;
	t->p = fy_policy_ref(p);
	snprintf(t->volume, sizeof(t->volume), "%s", volume ? volume : "");
	t->slot = slot;
	for (pp = &w->head; *pp; pp = &(*pp)->next)
		;
	*pp = t;
	pthread_cond_broadcast(&s->cv);
}

static void slot_done(struct fy_sched *s, const struct fy_policy *p, const char *volume, const char *kind,
		      int64_t slot, bool ran)
{
	struct slot *t;

	pthread_mutex_lock(&s->mu);
	t = slot_find(s, p->name, volume, kind);
	if (t) {
		t->queued = false;
		if (ran && slot > t->last)
			t->last = slot;
		s->dirty = true;
	}
	pthread_mutex_unlock(&s->mu);
	wake(s);
}

static bool target_refreshed(struct fy_sched *s, const char *shown)
{
	uint64_t h = hash_str(shown);

	for (size_t i = 0; i < s->nrefreshed; i++)
		if (s->refreshed[i] == h)
			return true;
	return false;
}

/* Read each target's status: the newest snapshot of each of this node's
 * volumes there (RPO) and, on the drill's target, the drill records. */
static void do_refresh(struct worker *w, struct task *t)
{
	struct fy_sched *s = w->s;
	struct fy_policy *p = t->p;
	struct fy_cat_volume *vols = NULL;
	size_t nv = 0;

	fy_cat_volumes(s->a->cat, &vols, &nv);
	for (size_t ti = 0; ti < p->ntargets && !atomic_load(&s->a->stopping); ti++) {
		struct fy_status st = { 0 };
		struct fy_repo *r;
		char shown[512], err[1024] = "";
		const char *kind;
		int ret;

		shown_target(p, ti, shown, sizeof(shown));
		ret = rc_open(w, p, ti, &r, &kind, err, sizeof(err));
		if (!ret) {
			ret = fy_status_read(r, NULL, &st, err, sizeof(err));
			if (ret)
				rc_drop(w, r);
		}
		if (ret) {
			fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .policy = p->name, .target = shown, .error = err },
				"policy %s: target %s: %s", p->name, shown, err);
			if (kind)
				fy_metrics_policy_error(p->name, kind);
		}
		pthread_mutex_lock(&s->mu);
		for (size_t i = 0; i < st.n; i++) {
			const struct fy_volume_status *v = &st.v[i];
			bool ours = false;

			for (size_t k = 0; k < nv && !ours; k++)
				ours = !strcmp(vols[k].id, v->volume);
			if (!ours)
				continue;
			if (v->snapshots) {
				struct seen *sn = seen_find(s, v->volume, shown, true);

				if (sn && v->snapshot_unix_nano > sn->newest_ns) {
					sn->newest_ns = v->snapshot_unix_nano;
					sn->bytes = v->bytes;
				}
				fy_metrics_target_snapshot(v->volume, shown, (double)v->snapshot_unix_nano / 1e9);
			}
			if (ti == p->drill_target && v->have_drill) {
				struct drill_res *d = drill_find(s, p->name, v->volume, true);
				int64_t when = v->drill.started_unix_nano / 1000000000LL;

				if (d && when > d->when) {
					d->have = true;
					d->ok = v->drill.ok;
					d->when = when;
					snprintf(d->target, sizeof(d->target), "%s", shown);
					snprintf(d->reason, sizeof(d->reason), "%s", v->drill.reason);
					one_line(d->reason);
					s->dirty = true;
				}
				when = v->ok_drill.started_unix_nano / 1000000000LL;
				if (d && v->have_ok_drill && when > d->ok_when) {
					d->have_ok = true;
					d->ok_when = when;
					d->ok_restore_s = v->ok_drill.restore_seconds;
					d->ok_bps = v->ok_drill.restore_seconds > 0
							    ? (double)v->ok_drill.bytes / v->ok_drill.restore_seconds : 0;
					d->ok_size = v->ok_drill.size;
					d->ok_bytes = v->ok_drill.bytes;
				}
				if (d && d->have_ok)
					fy_metrics_drill(v->volume, shown, d->ok, (double)d->when, d->ok_restore_s, d->ok_bps,
							 d->ok_size);
			}
		}
		if (!target_refreshed(s, shown) && s->nrefreshed < sizeof(s->refreshed) / sizeof(s->refreshed[0]))
			s->refreshed[s->nrefreshed++] = hash_str(shown);
		pthread_mutex_unlock(&s->mu);
		if (!ret)
			fy_log_debug("policies: policy %s: the status of %s read (%zu volumes there)", p->name, shown, st.n);
		fy_status_free(&st);
	}
	free(vols);
	wake(s);
}

/* A snapshot of the policy that retention removed from the primary: its
 * catalog entry and local clone go too (ListSnapshots would list a
 * snapshot whose data is gone). */
static void forget_local(struct fy_sched *s, const struct fy_policy *p, const char *volume,
			 const struct fy_forget_result *res)
{
	struct fy_agent *a = s->a;
	struct fy_cat_snapshot *cs = NULL;
	size_t n = 0;
	bool more;
	char prefix[128];

	snprintf(prefix, sizeof(prefix), NAME_PREFIX "%s.", p->name);
	if (fy_cat_snaps(a->cat, volume, NULL, "", 0, &cs, &n, &more))
		return;
	for (size_t i = 0; i < n; i++) {
		bool gone = false;

		if (strncmp(cs[i].name, prefix, strlen(prefix)) || !cs[i].repo_snapshot[0])
			continue;
		for (size_t k = 0; k < res->n && !gone; k++) {
			char hex[2 * FY_SNAP_ID_LEN + 1];

			fy_hex(res->items[k].id, FY_SNAP_ID_LEN, hex);
			gone = !res->items[k].reasons && !res->items[k].retained_until && !strcmp(hex, cs[i].repo_snapshot);
		}
		if (!gone)
			continue;
		char path[1024], why[512] = "", committed[33];
		pthread_mutex_t *nl = fy_stripe(a->name_lock, cs[i].name), *vl = fy_stripe(a->vol_lock, volume);
		int ret = fy_jobs_drop(a, cs[i].id, 0, committed, why, sizeof(why));

		pthread_mutex_lock(nl);
		pthread_mutex_lock(vl);
		fy_snap_path(a, cs[i].id, path, sizeof(path));
		if (ret >= 0)
			ret = fy_img_remove(path, why, sizeof(why));
		if (!ret) {
			fy_job_dir(a, cs[i].id, path, sizeof(path));
			fy_secrets_remove(path);
			ret = fy_cat_snap_delete(a->cat, cs[i].id, why, sizeof(why));
		}
		pthread_mutex_unlock(vl);
		pthread_mutex_unlock(nl);
		if (ret)
			fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = volume, .snapshot = cs[i].id,
								       .policy = p->name, .error = why },
				"policy %s: snapshot %s: forgotten on the primary by retention, but not removed here: %s",
				p->name, cs[i].id, why);
		else
			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = volume, .snapshot = cs[i].id,
								      .policy = p->name },
				"policy %s: snapshot %s ('%s') removed: retention forgot it on the primary", p->name,
				cs[i].id, cs[i].name);
	}
	free(cs);
}

static void do_retain(struct worker *w, struct task *t)
{
	struct fy_policy *p = t->p;
	struct fy_label lab = { FY_P_POLICY, p->name };
	struct fy_snap_filter f = { .volume = t->volume, .labels = &lab, .nlabels = 1 };

	for (size_t ti = 0; ti < p->ntargets && !atomic_load(&w->s->a->stopping); ti++) {
		struct fy_forget_result res = { 0 };
		struct fy_repo *r;
		char shown[512], err[1024] = "", ids[600] = "";
		const char *kind;
		size_t off = 0;
		int ret;

		if (!p->targets[ti].retention)
			continue;
		shown_target(p, ti, shown, sizeof(shown));
		ret = rc_open(w, p, ti, &r, &kind, err, sizeof(err));
		if (!ret) {
			ret = fy_forget_matching(r, &f, &p->targets[ti].keep, false, &res, err, sizeof(err));
			if (ret)
				rc_drop(w, r);
		}
		fy_metrics_forget(shown, ret, ret ? 0 : (unsigned)res.removed);
		if (ret) {
			fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = t->volume, .policy = p->name,
								       .target = shown, .error = err },
				"policy %s: volume %s: retention on %s failed: %s", p->name, t->volume, shown, err);
			fy_metrics_policy_error(p->name, kind ? kind : "retention");
			fy_forget_result_free(&res);
			continue;
		}
		for (size_t i = 0; i < res.n && off < sizeof(ids); i++)
			if (!res.items[i].reasons && !res.items[i].retained_until) {
				char hex[2 * FY_SNAP_ID_LEN + 1];

				fy_hex(res.items[i].id, FY_SNAP_ID_LEN, hex);
				off += (size_t)snprintf(ids + off, sizeof(ids) - off, "%s%.8s", off ? " " : "", hex);
			}
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = t->volume, .policy = p->name, .target = shown },
			"policy %s: volume %s: retention on %s: %zu kept, %zu removed%s%s%s%s", p->name, t->volume, shown,
			res.kept, res.removed, res.removed ? " (" : "", ids, res.removed ? ")" : "",
			res.retained ? ", some kept by Object Lock until their retention passes" : "");
		if (ti == 0 && res.removed)
			forget_local(w->s, p, t->volume, &res);
		fy_forget_result_free(&res);
	}
}

struct prune_wait {
	const struct fy_policy *p;
	const char *shown;
};

static void prune_waits(const char *running, void *arg)
{
	struct prune_wait *pw = arg;

	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .policy = pw->p->name, .target = pw->shown },
		"policy %s: the prune of %s waits for the upload of %s to end (uploads to it wait meanwhile)",
		pw->p->name, pw->shown, running);
}

static void do_prune(struct worker *w, struct task *t)
{
	struct fy_sched *s = w->s;
	struct fy_agent *a = s->a;
	struct fy_policy *p = t->p;

	for (size_t ti = 0; ti < p->ntargets && !atomic_load(&a->stopping); ti++) {
		struct fy_prune_opts o = { 0 };
		struct fy_prune_result res = { 0 };
		struct fy_repo *r;
		char shown[512], err[1024] = "";
		const char *kind;
		struct prune_wait pw = { p, shown };
		uint64_t h;
		int ret;

		shown_target(p, ti, shown, sizeof(shown));
		h = hash_str(shown);
		ret = rc_open(w, p, ti, &r, &kind, err, sizeof(err));
		if (ret) {
			fy_metrics_prune(shown, ret, 0, 0);
			if (kind)
				fy_metrics_policy_error(p->name, kind);
			fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .policy = p->name, .target = shown, .error = err },
				"policy %s: prune of %s: %s", p->name, shown, err);
			continue;
		}
		/* Never beside an upload to it (its chunks are not referenced
		 * yet) nor a drill reading it: uploads wait, and so do we. */
		ret = fy_jobs_hold_repo(a, shown, &a->stopping, prune_waits, &pw);
		if (ret)
			break;
		pthread_mutex_lock(&s->mu);
		while (s->drilling == h && !s->quit)
			fy_cond_wait_until(&s->cv, &s->mu, fy_mono_ms() + 1000);
		pthread_mutex_unlock(&s->mu);
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .policy = p->name, .target = shown },
			"policy %s: prune of %s starts (uploads to it wait)", p->name, shown);
		ret = fy_prune(r, &o, &res, err, sizeof(err));
		fy_jobs_release_repo(a, shown);
		fy_metrics_prune(shown, ret, ret ? 0 : res.chunks_removed, ret ? 0 : res.bytes_removed);
		if (ret) {
			rc_drop(w, r);
			fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .policy = p->name, .target = shown, .error = err },
				"policy %s: prune of %s failed: %s", p->name, shown, err);
			continue;
		}
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .policy = p->name, .target = shown },
			"policy %s: prune of %s done: %zu chunks removed (%llu bytes), %zu kept%s", p->name, shown,
			res.chunks_removed, (unsigned long long)res.bytes_removed, res.chunks_kept,
			res.chunks_retained ? ", some kept by Object Lock" : "");
	}
	slot_done(s, p, "", "prune", t->slot, !atomic_load(&a->stopping));
}

static void do_drill(struct worker *w, struct task *t)
{
	struct fy_sched *s = w->s;
	struct fy_agent *a = s->a;
	struct fy_policy *p = t->p;
	size_t ti = p->drill_target;
	struct fy_snap_filter f = { .volume = t->volume };
	struct fy_drill_opts o = { .scratch_dir = p->drill_scratch, .check = p->drill_check,
				   .check_timeout = p->drill_check_timeout, .cancel = &a->stopping };
	struct fy_drill_result res = { 0 };
	uint8_t id[FY_SNAP_ID_LEN];
	struct fy_repo *r;
	struct drill_res *d;
	char shown[512], err[1024] = "", warn[512] = "", hex[2 * FY_SNAP_ID_LEN + 1], rs[32];
	const char *kind;
	bool recorded = false, opened;
	int ret;

	shown_target(p, ti, shown, sizeof(shown));
	ret = rc_open(w, p, ti, &r, &kind, err, sizeof(err));
	opened = !ret;
	if (opened)
		ret = fy_snapshot_select(r, "latest", &f, id, NULL, err, sizeof(err));
	if (opened && ret == -ENOENT) {
		fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = t->volume, .policy = p->name, .target = shown },
			"policy %s: volume %s: no snapshot of it on %s to drill yet", p->name, t->volume, shown);
		slot_done(s, p, t->volume, "drill", t->slot, true);
		return;
	}
	if (ret) {
		fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = t->volume, .policy = p->name, .target = shown,
							       .error = err },
			"policy %s: volume %s: drill from %s: %s", p->name, t->volume, shown, err);
		fy_metrics_policy_error(p->name, kind ? kind : "drill");
		if (opened)
			rc_drop(w, r);
		slot_done(s, p, t->volume, "drill", t->slot, true);
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->drilling = hash_str(shown);
	pthread_mutex_unlock(&s->mu);
	fy_hex(id, FY_SNAP_ID_LEN, hex);
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = t->volume, .policy = p->name, .target = shown },
		"policy %s: volume %s: drill of snapshot %.8s from %s starts", p->name, t->volume, hex, shown);
	ret = fy_drill(r, id, &o, &res, err, sizeof(err));
	pthread_mutex_lock(&s->mu);
	s->drilling = 0;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (ret == -ECANCELED && atomic_load(&a->stopping)) {
		/* Not a result: it runs again at the next start. */
		fy_log_info("policy %s: volume %s: drill interrupted by the stop (it runs at the next start)", p->name,
			    t->volume);
		fy_drill_result_free(&res);
		slot_done(s, p, t->volume, "drill", t->slot, false);
		return;
	}
	if (p->drill_record) {
		char e2[512];

		if (fy_drill_record_write(r, &res, 0, warn, sizeof(warn), e2, sizeof(e2)) < 0) {
			if (res.ok) {
				res.ok = false;
				res.stage = "record";
				snprintf(res.reason, sizeof(res.reason), "the drill passed, but its record was not written: %s",
					 e2);
			} else {
				snprintf(warn, sizeof(warn), "the drill's record was not written: %.440s", e2);
			}
		} else {
			recorded = true;
		}
	}
	pthread_mutex_lock(&s->mu);
	d = drill_find(s, p->name, t->volume, true);
	if (d) {
		d->have = true;
		d->ok = res.ok;
		d->when = res.started_unix_nano / 1000000000LL;
		snprintf(d->target, sizeof(d->target), "%s", shown);
		snprintf(d->reason, sizeof(d->reason), "%s", res.ok ? "" : res.reason);
		one_line(d->reason);
		if (res.ok) {
			d->have_ok = true;
			d->ok_when = d->when;
			d->ok_restore_s = res.restore_seconds;
			d->ok_bps = res.restore_seconds > 0 ? (double)res.bytes / res.restore_seconds : 0;
			d->ok_size = res.size;
			d->ok_bytes = res.bytes;
		}
		s->dirty = true;
	}
	pthread_mutex_unlock(&s->mu);
	fy_metrics_drill(t->volume, shown, res.ok, (double)res.started_unix_nano / 1e9, res.restore_seconds,
			 res.restore_seconds > 0 ? (double)res.bytes / res.restore_seconds : 0, res.size);
	fy_duration_format((int64_t)res.restore_seconds, rs, sizeof(rs));
	if (res.ok)
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = t->volume, .snapshot = hex, .policy = p->name,
							      .target = shown },
			"policy %s: volume %s: drill of snapshot %.8s from %s passed: restored in %.2f s (%.0f MB/s), "
			"%llu blocks verified%s%s%s%s", p->name, t->volume, hex, shown, res.restore_seconds,
			res.restore_seconds > 0 ? (double)res.bytes / res.restore_seconds / 1e6 : 0,
			(unsigned long long)res.blocks_verified, res.check_ran ? ", check exited 0" : "",
			recorded ? "; recorded" : "", warn[0] ? "; " : "", warn);
	else
		fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = t->volume, .snapshot = hex, .policy = p->name,
							       .target = shown, .error = res.reason },
			"policy %s: volume %s: drill of snapshot %.8s from %s failed (%s): %s%s%s", p->name, t->volume,
			hex, shown, res.stage ? res.stage : "?", res.reason, recorded ? "; recorded" : "",
			warn[0] ? "" : "");
	if (!res.ok)
		fy_metrics_policy_error(p->name, "drill");
	fy_drill_result_free(&res);
	slot_done(s, p, t->volume, "drill", t->slot, true);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fy_sched *s = w->s;

	pthread_mutex_lock(&s->mu);
	while (!s->quit) {
		struct task *t = w->head;

		if (!t) {
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		w->head = t->next;
		w->busy = true;
		pthread_mutex_unlock(&s->mu);
		switch (t->kind) {
		case T_REFRESH: do_refresh(w, t); break;
		case T_RETAIN: do_retain(w, t); break;
		case T_PRUNE: do_prune(w, t); break;
		case T_DRILL: do_drill(w, t); break;
		}
		fy_policy_unref(t->p);
		free(t);
		pthread_mutex_lock(&s->mu);
		w->busy = false;
	}
	while (w->head) {
		struct task *t = w->head;

		w->head = t->next;
		fy_policy_unref(t->p);
		free(t);
	}
	s->alive--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	rc_close_all(w);
	return NULL;
}

/* ---- the policy files ---- */

static int yaml_name(const struct dirent *de)
{
	size_t n = strlen(de->d_name);

	return de->d_name[0] != '.' && n > 5 && !strcmp(de->d_name + n - 5, ".yaml");
}

static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;
	struct stat st;
	size_t cap = FY_POLICY_FILE_MAX + 1, got = 0;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		snprintf(err, errlen, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		close(fd);
		return -EINVAL;
	}
	*buf = malloc(cap + 1);
	if (!*buf) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (got < cap && (n = read(fd, *buf + got, cap - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s", strerror(errno));
			close(fd);
			free(*buf);
			return ret;
		}
		got += (size_t)n;
	}
	close(fd);
	(*buf)[got] = 0;
	*len = got;
	return 0;
}

static void sha256(const char *buf, size_t len, unsigned char out[32])
{
	unsigned int n = 0;

	EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

static const char *policy_summary(const struct fy_policy *p, char *out, size_t len)
{
	size_t o = 0;
	char d[32];

#define PUT(...) (o += o < len ? (size_t)snprintf(out + o, len - o, __VA_ARGS__) : 0)
	PUT("schedule '%s' (UTC)", p->schedule_text);
	if (p->jitter) {
		fy_duration_format(p->jitter, d, sizeof(d));
		PUT(" jitter %s", d);
	}
	for (size_t i = 0; i < p->ntargets; i++) {
		char shown[512];

		shown_target(p, i, shown, sizeof(shown));
		PUT("; %s %s%s", i ? p->targets[i].optional ? "optional copy" : "copy" : "primary", shown,
		    p->targets[i].retention ? " with retention" : "");
	}
	if (p->prune)
		PUT("; prune '%s'", p->prune_text);
	if (p->drill) {
		char shown[512];

		shown_target(p, p->drill_target, shown, sizeof(shown));
		PUT("; drill '%s' from %s", p->drill_text, shown);
	}
	if (p->rpo) {
		fy_duration_format(p->rpo, d, sizeof(d));
		PUT("; rpo %s", d);
	}
	if (p->rto) {
		fy_duration_format(p->rto, d, sizeof(d));
		PUT("; rto %s", d);
	}
#undef PUT
	return out;
}

static void rebuild_in_force(struct fy_sched *s)
{
	struct fy_policy *old[MAX_FILES];
	size_t nold, n = 0;

	pthread_mutex_lock(&s->mu);
	nold = s->npol;
	memcpy(old, s->pol, nold * sizeof(old[0]));
	for (size_t i = 0; i < s->nfiles; i++)
		if (s->files[i].p)
			s->pol[n++] = fy_policy_ref(s->files[i].p);
	/* by name: the first of overlapping policies keeps the volume */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(s->pol[k - 1]->name, s->pol[k]->name) > 0; k--) {
			struct fy_policy *x = s->pol[k];

			s->pol[k] = s->pol[k - 1];
			s->pol[k - 1] = x;
		}
	s->npol = n;
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < nold; i++)
		fy_policy_unref(old[i]);
	fy_metrics_policies((unsigned)n);
}

/* A policy no longer in force: its schedules go (a policy of that name
 * added again starts counting afresh). */
static void forget_policy_state(struct fy_sched *s, const char *name)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots; )
		if (!strcmp(s->slots[i].policy, name) && !s->slots[i].queued) {
			s->slots[i] = s->slots[--s->nslots];
			s->dirty = true;
		} else {
			i++;
		}
	pthread_mutex_unlock(&s->mu);
}

static void reject(struct fy_sched *s, struct pfile *pf, const char *kind, const char *err)
{
	char name[256], when[64] = "";

	if (!strcmp(pf->error, err))
		return; /* said already */
	snprintf(pf->error, sizeof(pf->error), "%s", err);
	snprintf(name, sizeof(name), "%.*s", (int)(strlen(pf->name) - 5), pf->name);
	if (pf->p)
		snprintf(when, sizeof(when), "policy %s as it was before stays in force", pf->p->name);
	fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .policy = pf->p ? pf->p->name : name, .error = err },
		"policy file %s/%s rejected: %s; %s", s->dir, pf->name, err,
		pf->p ? when : "no version of it is in force");
	fy_metrics_policy_error(pf->p ? pf->p->name : name, kind);
}

static void rescan(struct fy_sched *s)
{
	struct dirent **de = NULL;
	bool changed = false;
	int n;

	n = scandir(s->dir, &de, yaml_name, alphasort);
	if (n < 0) {
		if (!s->dir_error_logged)
			fy_log_error("policies: %s: %s (the policies in force stay)", s->dir, strerror(errno));
		s->dir_error_logged = true;
		return;
	}
	s->dir_error_logged = false;
	if (s->wd_dir < 0 && s->ifd >= 0)
		s->wd_dir = inotify_add_watch(s->ifd, s->dir, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM |
							     IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
	/* Files gone first: a file rejected for holding their name may pass now. */
	for (size_t i = 0; i < s->nfiles; ) {
		struct pfile *pf = &s->files[i];
		bool present = false;

		for (int k = 0; k < n && !present; k++)
			present = !strcmp(de[k]->d_name, pf->name);
		if (present) {
			i++;
			continue;
		}
		if (pf->p) {
			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .policy = pf->p->name },
				"policy %s: %s/%s is gone: the policy is no longer in force", pf->p->name, s->dir, pf->name);
			forget_policy_state(s, pf->p->name);
			fy_policy_unref(pf->p);
			changed = true;
		}
		*pf = s->files[--s->nfiles];
	}
	for (int i = 0; i < n; i++) {
		struct pfile *pf = NULL;
		char path[1024], err[1024] = "", *buf = NULL, dup[512];
		unsigned char dg[32];
		struct fy_policy *p = NULL;
		const char *kind = "parse";
		size_t len = 0;

		for (size_t k = 0; k < s->nfiles && !pf; k++)
			if (!strcmp(s->files[k].name, de[i]->d_name))
				pf = &s->files[k];
		if (!pf && s->nfiles < MAX_FILES && strlen(de[i]->d_name) < sizeof(pf->name)) {
			pf = &s->files[s->nfiles++];
			memset(pf, 0, sizeof(*pf));
			snprintf(pf->name, sizeof(pf->name), "%s", de[i]->d_name);
		}
		if (!pf)
			continue;
		snprintf(path, sizeof(path), "%s/%s", s->dir, pf->name);
		if (read_file(path, &buf, &len, err, sizeof(err))) {
			char e2[1100];

			snprintf(e2, sizeof(e2), "%.255s: cannot be read: %.800s", pf->name, err);
			pf->have_digest = false;
			reject(s, pf, "parse", e2);
			continue;
		}
		sha256(buf, len, dg);
		if (pf->have_digest && !pf->retry && !memcmp(dg, pf->digest, sizeof(dg))) {
			free(buf);
			continue;
		}
		memcpy(pf->digest, dg, sizeof(dg));
		pf->have_digest = true;
		pf->retry = false;
		if (fy_policy_parse(pf->name, buf, len, &p, &kind, err, sizeof(err))) {
			free(buf);
			reject(s, pf, kind, err);
			continue;
		}
		free(buf);
		/* What the schema cannot know: this node's hooks, the other files. */
		dup[0] = 0;
		if (p->hook) {
			bool found = false;

			for (size_t k = 0; k < s->a->conf.nhooks; k++)
				found |= !strcmp(s->a->conf.hooks[k].name, p->hook);
			if (!found)
				snprintf(dup, sizeof(dup), "spec.hook: '%s' is not configured on this node "
					 "(hook.%s.pre/post in the agent's config)", p->hook, p->hook);
		}
		for (size_t k = 0; k < s->nfiles && !dup[0]; k++)
			if (&s->files[k] != pf && s->files[k].p && !strcmp(s->files[k].p->name, p->name)) {
				snprintf(dup, sizeof(dup), "metadata.name: '%s' is the name of the policy in %s",
					 p->name, s->files[k].name);
				pf->retry = true;
			}
		if (dup[0]) {
			char e2[1100];

			snprintf(e2, sizeof(e2), "%s: %s", pf->name, dup);
			fy_policy_unref(p);
			reject(s, pf, "schema", e2);
			continue;
		}
		p->file = strdup(pf->name);
		{
			char sum[2048];

			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .policy = p->name },
				"policy %s (%s/%s) %s: %s", p->name, s->dir, pf->name,
				pf->p ? "changed, the new version is in force" : "in force", policy_summary(p, sum, sizeof(sum)));
		}
		if (pf->p && strcmp(pf->p->name, p->name))
			forget_policy_state(s, pf->p->name);
		fy_policy_unref(pf->p);
		pf->p = p;
		pf->error[0] = 0;
		changed = true;
		pthread_mutex_lock(&s->mu);
		task_push(s, &s->maint, T_REFRESH, p, NULL, 0);
		pthread_mutex_unlock(&s->mu);
	}
	for (int i = 0; i < n; i++)
		free(de[i]);
	free(de);
	if (changed || !s->scanned_once)
		rebuild_in_force(s);
	s->scanned_once = true;
}

/* ---- the schedule ---- */

struct vol {
	char id[FY_ID_MAX + 1];
	char pvc_ns[256], pvc_name[256];
	struct fy_policy *owner;
};

static void copy_name(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n < size)
		memcpy(dst, src, n + 1);
	else
		dst[0] = '\0';
}

static void read_vol_labels(struct fy_agent *a, struct vol *v)
{
	char path[1024], line[600];
	FILE *f;

	fy_vol_labels_path(a, v->id, path, sizeof(path));
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		/* (Kubernetes names are at most 253 bytes: a longer value is
		 * not one, and is not cut to match a policy by its prefix.) */
		if (!strncmp(line, "csi.storage.k8s.io/pvc/name=", 28))
			copy_name(v->pvc_name, sizeof(v->pvc_name), line + 28);
		else if (!strncmp(line, "csi.storage.k8s.io/pvc/namespace=", 33))
			copy_name(v->pvc_ns, sizeof(v->pvc_ns), line + 33);
	}
	if (f)
		fclose(f);
}

static bool selects(const struct fy_policy *p, const struct vol *v)
{
	for (size_t i = 0; i < p->nvolume_ids; i++)
		if (!strcmp(p->volume_ids[i], v->id))
			return true;
	for (size_t i = 0; i < p->npvcs && v->pvc_ns[0]; i++)
		if (!strcmp(p->pvcs[i].ns, v->pvc_ns) &&
		    (!p->pvcs[i].name || !fnmatch(p->pvcs[i].name, v->pvc_name, 0)))
			return true;
	return false;
}

static int64_t jitter(struct fy_sched *s, const struct fy_policy *p, const char *vol, const char *kind, int64_t slot)
{
	char t[32];
	uint64_t h;

	if (p->jitter <= 0)
		return 0;
	snprintf(t, sizeof(t), "%lld", (long long)slot);
	h = fnv(t, fnv(kind, fnv(vol, fnv(p->name, hash_str(s->a->conf.node_id)))));
	return (int64_t)(h % (uint64_t)p->jitter);
}

/* The slot of (p, vol, kind): created counting from now when it is new or
 * its schedule changed (mu held). */
static struct slot *slot_for(struct fy_sched *s, const struct fy_policy *p, const char *vol, const char *kind,
			     const char *sched, int64_t now)
{
	struct slot *t = slot_find(s, p->name, vol, kind);
	uint64_t h = hash_str(sched);

	if (!t) {
		t = slot_add(s, p->name, vol, kind);
		if (!t)
			return NULL;
		t->last = t->since = now;
		t->sched = h;
		s->dirty = true;
	} else if (t->sched != h) {
		t->last = now; /* a new schedule counts from its change */
		t->sched = h;
		s->dirty = true;
	}
	if (!t->since)
		t->since = now;
	t->used = true;
	return t;
}

/* Is a run due?  *slot: the newest slot of the schedule not after now,
 * *late: the first one missed was due more than a minute ago. */
static bool due(struct fy_sched *s, const struct fy_policy *p, const struct fy_cron *c, const char *vol,
		const char *kind, const struct slot *t, int64_t now, int64_t *slot, int64_t *next_event, int64_t *missed)
{
	int64_t next = fy_cron_next(c, t->last), at;

	if (next < 0)
		return false;
	at = next + jitter(s, p, vol, kind, next);
	if (now < at) {
		if (at < *next_event)
			*next_event = at;
		return false;
	}
	*slot = next;
	*missed = 0;
	for (int i = 0;; i++) {
		int64_t n = fy_cron_next(c, *slot);

		if (n < 0 || n > now)
			break;
		if (i == 1000000) { /* years of a busy schedule: now will do */
			*slot = now - now % 60;
			break;
		}
		*slot = n;
		++*missed;
	}
	if (now - at <= 60 && !*missed)
		*missed = -1; /* on time */
	return true;
}

struct fire {
	struct fy_policy *p;
	char volume[FY_ID_MAX + 1];
	int64_t slot;
	int64_t missed;
};

/* A job waiting for its retry after a failure: at once. */
static void retry_now(struct fy_agent *a, const char *snap)
{
	struct fy_cat_job *jobs = NULL;
	size_t n = 0;
	char e2[256];

	if (!fy_cat_jobs(a->cat, &jobs, &n))
		for (size_t i = 0; i < n; i++)
			if (!strcmp(jobs[i].snapshot_id, snap) && jobs[i].next_ns) {
				jobs[i].next_ns = 0;
				fy_cat_job_update(a->cat, &jobs[i], e2, sizeof(e2));
			}
	free(jobs);
	fy_jobs_kick(a);
}

/* Does snapshot id upload to these targets (its parameters)? */
static bool same_targets(struct fy_agent *a, const char *id, const char *repo, const char *copies, const char *optional)
{
	struct fy_kv *kv = NULL;
	size_t n = 0;
	const char *r = "", *c = "", *o = "";
	bool same;

	if (fy_cat_snap_params(a->cat, id, &kv, &n))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(kv[i].key, FY_P_REPO))
			r = kv[i].value;
		else if (!strcmp(kv[i].key, FY_P_COPY))
			c = kv[i].value;
		else if (!strcmp(kv[i].key, FY_P_COPY_OPT))
			o = kv[i].value;
	}
	same = !strcmp(r, repo) && !strcmp(c, copies) && !strcmp(o, optional);
	fy_kv_free(kv, n);
	return same;
}

/* A scheduled backup: an ordinary snapshot, cut now, uploaded by a job. */
static void fire_backup(struct fy_sched *s, struct fire *f)
{
	struct fy_agent *a = s->a;
	struct fy_policy *p = f->p;
	struct job_secrets js = { 0 };
	char copies[FY_MAX_TARGETS * 1100] = "", optional[FY_MAX_TARGETS * 1100] = "", when[64], name[FY_NAME_MAX + 1];
	struct fy_kv kv[6];
	size_t nkv = 0;
	struct fy_cat_snapshot *cs = NULL, snap;
	size_t n = 0;
	bool more;
	char prefix[128], err[1024] = "";
	struct tm tm;
	time_t tt = (time_t)f->slot;
	int ret;

	utc(f->slot, when, sizeof(when));
	if (f->missed > 0 || f->missed == 0)
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = f->volume, .policy = p->name },
			"policy %s: volume %s: the run due %s%s was missed (the agent was down or busy): it runs once now",
			p->name, f->volume, when, f->missed > 0 ? " and later ones" : "");
	/* The secrets first: a run whose primary cannot be opened is not cut. */
	for (size_t pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < p->ntargets; i++) {
			const struct fy_pol_target *t = &p->targets[i];
			char shown[512], e2[600];

			if ((pass == 0) != (i == 0 || !t->optional))
				continue;
			shown_target(p, i, shown, sizeof(shown));
			if (fy_pol_secrets_read(t, &js.sec[js.n], e2, sizeof(e2))) {
				fy_metrics_policy_error(p->name, "secret");
				if (t->optional) {
					fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = f->volume, .policy = p->name,
										      .target = shown, .error = e2 },
						"policy %s: volume %s: optional copy %s dropped from this run: %s", p->name,
						f->volume, shown, e2);
					continue;
				}
				fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = f->volume, .policy = p->name,
									       .target = shown, .error = e2 },
					"policy %s: volume %s: the run due %s is skipped: target %s: %s", p->name, f->volume,
					when, shown, e2);
				goto out;
			}
			js.n++;
			if (i) {
				char *list = t->optional ? optional : copies;

				snprintf(list + strlen(list), sizeof(copies) - strlen(list), "%s%s", *list ? "," : "", t->url);
			}
		}
	/* One upload at a time per policy and volume: a run while the last is
	 * still waiting to upload gives that one the current secrets instead
	 * (when it goes to the same targets: one of an older version of the
	 * policy keeps its own, and holds nothing back). */
	snprintf(prefix, sizeof(prefix), NAME_PREFIX "%s.", p->name);
	if (!fy_cat_snaps(a->cat, f->volume, NULL, "", 0, &cs, &n, &more))
		for (size_t i = 0; i < n; i++) {
			char dir[1024];

			if (strncmp(cs[i].name, prefix, strlen(prefix)) || cs[i].state == FY_SNAP_READY || !cs[i].local ||
			    !same_targets(a, cs[i].id, p->targets[0].url, copies, optional))
				continue;
			fy_job_dir(a, cs[i].id, dir, sizeof(dir));
			if (write_job_secrets(dir, &js, err, sizeof(err)))
				fy_log_warn("policy %s: snapshot %s: %s", p->name, cs[i].id, err);
			retry_now(a, cs[i].id);
			fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = f->volume, .snapshot = cs[i].id,
								      .policy = p->name, .error = cs[i].error[0] ? cs[i].error : NULL },
				"policy %s: volume %s: the run due %s is skipped: the last one, snapshot %s, is not "
				"uploaded yet%s%s (it retries with the policy's current secrets)", p->name, f->volume, when,
				cs[i].id, cs[i].error[0] ? ": " : "", cs[i].error);
			free(cs);
			goto out;
		}
	free(cs);
	kv[nkv++] = (struct fy_kv){ FY_P_REPO, p->targets[0].url };
	if (copies[0])
		kv[nkv++] = (struct fy_kv){ FY_P_COPY, copies };
	if (optional[0])
		kv[nkv++] = (struct fy_kv){ FY_P_COPY_OPT, optional };
	kv[nkv++] = (struct fy_kv){ FY_P_POLICY, p->name };
	kv[nkv++] = (struct fy_kv){ FY_P_FREEZE, p->freeze ? "true" : "false" };
	if (p->hook)
		kv[nkv++] = (struct fy_kv){ FY_P_HOOK, p->hook };
	gmtime_r(&tt, &tm);
	snprintf(name, sizeof(name), NAME_PREFIX "%s.%s.%04d%02d%02dt%02d%02dz", p->name, f->volume,
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
	struct fy_take take = { .volume_id = f->volume, .name = name, .policy = p->name, .created_ns = pnow_ns(s),
				.hook = p->hook, .freeze = p->freeze, .kv = kv, .nkv = nkv,
				.write_secrets = write_job_secrets, .arg = &js };

	ret = fy_snapshot_take(a, &take, &snap, err, sizeof(err));
	if (ret == -EEXIST) {
		fy_log_info("policy %s: volume %s: the run due %s was cut before (snapshot %s)", p->name, f->volume, when,
			    snap.id);
	} else if (ret) {
		fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = f->volume, .policy = p->name, .error = err },
			"policy %s: volume %s: the run due %s failed: %s", p->name, f->volume, when, err);
		fy_metrics_policy_error(p->name, "backup");
	}
out:
	for (size_t i = 0; i < js.n; i++)
		fy_pol_secrets_free(&js.sec[i]);
}

/* RPO and RTO against the objectives (mu held): breaches are logged when
 * they begin and when they end. */
static void objectives(struct fy_sched *s, const struct fy_policy *p, const char *vol, const struct slot *bk,
		       int64_t now, int64_t *next_event)
{
	for (size_t ti = 0; ti < p->ntargets; ti++) {
		char shown[512], d1[32], d2[32];
		struct seen *sn;
		int64_t base, rpo;
		bool breach;

		shown_target(p, ti, shown, sizeof(shown));
		fy_metrics_objectives(vol, shown, (double)p->rpo, ti == p->drill_target && p->drill ? (double)p->rto : 0);
		if (!p->rpo || !target_refreshed(s, shown) || !(sn = seen_find(s, vol, shown, true)))
			continue;
		/* Before its first snapshot there, from when the policy began covering it. */
		base = sn->newest_ns ? sn->newest_ns / 1000000000LL : bk->since;
		rpo = now - base;
		breach = rpo > p->rpo;
		fy_duration_format(rpo, d1, sizeof(d1));
		fy_duration_format(p->rpo, d2, sizeof(d2));
		if (breach && !sn->rpo_breached)
			fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = vol, .policy = p->name, .target = shown },
				"policy %s: volume %s: RPO on %s is %s, above the objective %s%s", p->name, vol, shown, d1, d2,
				sn->newest_ns ? "" : " (no snapshot of it there yet)");
		else if (!breach && sn->rpo_breached)
			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = vol, .policy = p->name, .target = shown },
				"policy %s: volume %s: RPO on %s is %s, within the objective %s again", p->name, vol, shown,
				d1, d2);
		sn->rpo_breached = breach;
		if (!breach && base + p->rpo + 1 < *next_event)
			*next_event = base + p->rpo + 1;
	}
	if (p->rto && p->drill) {
		char shown[512], d1[32], d2[32];
		struct drill_res *d;
		struct seen *sn;
		double est = -1;
		bool breach;

		shown_target(p, p->drill_target, shown, sizeof(shown));
		if (!target_refreshed(s, shown) || !(d = drill_find(s, p->name, vol, true)))
			return;
		sn = seen_find(s, vol, shown, false);
		if (d->have_ok) {
			est = d->ok_restore_s;
			if (sn && sn->bytes && d->ok_bps > 0)
				est = (double)sn->bytes / d->ok_bps; /* the newest snapshot at the drill's speed */
		}
		breach = est < 0 || est > (double)p->rto;
		fy_duration_format((int64_t)(est + 0.5), d1, sizeof(d1));
		fy_duration_format(p->rto, d2, sizeof(d2));
		if (breach && !d->rto_breached && est < 0)
			fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = vol, .policy = p->name, .target = shown },
				"policy %s: volume %s: RTO from %s is not measured (no drill of it passed there): the "
				"objective %s is not met", p->name, vol, shown, d2);
		else if (breach && !d->rto_breached)
			fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = vol, .policy = p->name, .target = shown },
				"policy %s: volume %s: RTO from %s is %s, above the objective %s", p->name, vol, shown, d1, d2);
		else if (!breach && d->rto_breached)
			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = vol, .policy = p->name, .target = shown },
				"policy %s: volume %s: RTO from %s is %s, within the objective %s", p->name, vol, shown, d1, d2);
		d->rto_breached = breach;
	}
}

/* One pass: who owns which volume, what is due.  Returns when the next
 * thing falls due (policy clock), or INT64_MAX. */
static int64_t evaluate(struct fy_sched *s, int64_t *pass, bool *fired)
{
	struct fy_agent *a = s->a;
	struct fy_cat_volume *cv = NULL;
	struct vol *vols = NULL;
	struct fire *fires = NULL;
	size_t nv = 0, nfires = 0;
	int64_t now = pnow(s), next_event = INT64_MAX;
	char (*over)[160] = NULL;
	size_t nover = 0;

	*pass = now;
	*fired = false;
	if (fy_cat_volumes(a->cat, &cv, &nv))
		return now + 60;
	vols = calloc(nv ? nv : 1, sizeof(*vols));
	fires = calloc(nv ? nv : 1, sizeof(*fires));
	over = calloc(nv ? nv * 4 : 1, sizeof(*over));
	if (!vols || !fires || !over) {
		free(cv), free(vols), free(fires), free(over);
		return now + 60;
	}
	for (size_t i = 0; i < nv; i++) {
		snprintf(vols[i].id, sizeof(vols[i].id), "%s", cv[i].id);
		read_vol_labels(a, &vols[i]);
	}
	free(cv);
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots; i++)
		s->slots[i].used = false;
	for (size_t i = 0; i < nv; i++)
		for (size_t k = 0; k < s->npol; k++) {
			struct fy_policy *p = s->pol[k];

			if (!selects(p, &vols[i]))
				continue;
			if (!vols[i].owner) {
				vols[i].owner = p;
				continue;
			}
			if (nover < nv * 4)
				snprintf(over[nover++], sizeof(over[0]), "%s\t%s\t%s", p->name, vols[i].id, vols[i].owner->name);
		}
	/* Overlaps: said once each, while they last. */
	for (size_t i = 0; i < nover; i++) {
		bool known = false;

		for (size_t k = 0; k < s->noverlaps && !known; k++)
			known = !strcmp(s->overlaps[k], over[i]);
		if (!known) {
			char pol[80], vol[80], owner[80];

			sscanf(over[i], "%79[^\t]\t%79[^\t]\t%79s", pol, vol, owner);
			fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = vol, .policy = pol },
				"policy %s: volume %s is also selected by policy %s, which backs it up (of overlapping "
				"policies the first by name does): %s skips it", pol, vol, owner, pol);
			fy_metrics_policy_error(pol, "overlap");
		}
	}
	free(s->overlaps);
	s->overlaps = over;
	s->noverlaps = nover;
	over = NULL;
	for (size_t i = 0; i < nv; i++) {
		struct fy_policy *p = vols[i].owner;
		struct slot *bk, *dr;
		int64_t slot, missed;

		if (!p)
			continue;
		bk = slot_for(s, p, vols[i].id, "backup", p->schedule_text, now);
		if (bk && due(s, p, &p->schedule, vols[i].id, "backup", bk, now, &slot, &next_event, &missed)) {
			fires[nfires].p = fy_policy_ref(p);
			snprintf(fires[nfires].volume, sizeof(fires[nfires].volume), "%s", vols[i].id);
			fires[nfires].slot = slot;
			fires[nfires].missed = missed;
			nfires++;
			bk->last = slot;
			s->dirty = true;
			if ((slot = fy_cron_next(&p->schedule, slot)) >= 0 &&
			    slot + jitter(s, p, vols[i].id, "backup", slot) < next_event)
				next_event = slot + jitter(s, p, vols[i].id, "backup", slot);
		}
		if (p->drill && (dr = slot_for(s, p, vols[i].id, "drill", p->drill_text, now)) && !dr->queued &&
		    due(s, p, &p->drill_schedule, vols[i].id, "drill", dr, now, &slot, &next_event, &missed)) {
			dr->queued = true;
			task_push(s, &s->drill, T_DRILL, p, vols[i].id, slot);
		}
		if (bk)
			objectives(s, p, vols[i].id, bk, now, &next_event);
	}
	for (size_t k = 0; k < s->npol; k++) {
		struct fy_policy *p = s->pol[k];
		struct slot *pr;
		int64_t slot, missed;

		if (p->prune && (pr = slot_for(s, p, "", "prune", p->prune_text, now)) && !pr->queued &&
		    due(s, p, &p->prune_schedule, "", "prune", pr, now, &slot, &next_event, &missed)) {
			pr->queued = true;
			task_push(s, &s->maint, T_PRUNE, p, "", slot);
		}
	}
	/* Schedules of volumes a policy in force no longer covers go; those of
	 * policies not in force stay (a file rejected at start keeps them). */
	for (size_t i = 0; i < s->nslots; ) {
		bool in_force = false;

		for (size_t k = 0; k < s->npol && !in_force; k++)
			in_force = !strcmp(s->pol[k]->name, s->slots[i].policy);
		if (in_force && !s->slots[i].used && !s->slots[i].queued) {
			s->slots[i] = s->slots[--s->nslots];
			s->dirty = true;
		} else {
			i++;
		}
	}
	if (s->dirty)
		state_save(s);
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < nfires && !atomic_load(&a->stopping); i++)
		fire_backup(s, &fires[i]);
	for (size_t i = 0; i < nfires; i++)
		fy_policy_unref(fires[i].p);
	free(fires);
	free(vols);
	*fired = nfires > 0;
	return next_event;
}

static void *sched_main(void *arg)
{
	struct fy_sched *s = arg;
	int64_t rescan_at = fy_mono_ms() + RESCAN_MS, last_pass = -1;

	for (;;) {
		struct pollfd pf[2] = { { .fd = s->efd, .events = POLLIN }, { .fd = s->ifd, .events = POLLIN } };
		int64_t next, now, wait_ms, pass;
		bool dir_changed = false, fired;
		char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

		pthread_mutex_lock(&s->mu);
		if (s->quit) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		pthread_mutex_unlock(&s->mu);
		next = evaluate(s, &pass, &fired);
		if (pass != last_pass) {
			char a1[64], a2[64] = "nothing scheduled";

			utc_s(pass, a1, sizeof(a1));
			if (next != INT64_MAX)
				utc_s(next, a2, sizeof(a2));
			fy_log_debug("policies: pass at %s; next at %s", a1, a2);
			last_pass = pass;
		}
		now = pnow(s);
		if (fired)
			wait_ms = 0; /* what the runs changed, at once */
		else if (s->clock_path[0])
			wait_ms = 1000; /* the test clock: its file's changes wake us anyway */
		else
			wait_ms = next == INT64_MAX || next - now > 60 ? 60000 : next <= now ? 0 : (next - now) * 1000;
		if (rescan_at - fy_mono_ms() < wait_ms)
			wait_ms = rescan_at - fy_mono_ms() < 0 ? 0 : rescan_at - fy_mono_ms();
		if (poll(pf, s->ifd >= 0 ? 2 : 1, (int)wait_ms) < 0 && errno != EINTR)
			fy_log_error("policies: poll: %s", strerror(errno));
		if (pf[0].revents & POLLIN) {
			uint64_t v;

			if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				fy_log_debug("policies: eventfd: %s", strerror(errno));
		}
		if (s->ifd >= 0 && (pf[1].revents & POLLIN)) {
			ssize_t n;

			while ((n = read(s->ifd, buf, sizeof(buf))) > 0)
				for (char *p = buf; p < buf + n;) {
					struct inotify_event *ev = (struct inotify_event *)p;

					if (ev->wd == s->wd_dir) {
						dir_changed = true;
						if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
							inotify_rm_watch(s->ifd, s->wd_dir);
							s->wd_dir = -1;
						}
					}
					p += sizeof(*ev) + ev->len;
				}
		}
		if (dir_changed || fy_mono_ms() >= rescan_at) {
			rescan(s);
			rescan_at = fy_mono_ms() + RESCAN_MS;
		}
	}
	pthread_mutex_lock(&s->mu);
	if (s->dirty)
		state_save(s);
	s->alive--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- the interface ---- */

void fy_sched_uploaded(struct fy_agent *a, const struct fy_cat_snapshot *snap, const struct fy_kv *kv, size_t nkv,
		       const struct fy_backup_result *res)
{
	struct fy_sched *s = a->sched;
	const char *policy = NULL;
	char shown[FY_MAX_TARGETS][512];
	bool took[FY_MAX_TARGETS] = { 0 };

	for (size_t i = 0; i < res->ntargets && i < FY_MAX_TARGETS; i++) {
		fy_url_shown(res->targets[i].url, shown[i], sizeof(shown[i]));
		took[i] = !res->targets[i].status; /* (jobs.c tells the metrics) */
	}
	if (!s)
		return;
	for (size_t i = 0; i < nkv; i++)
		if (!strcmp(kv[i].key, FY_P_POLICY))
			policy = kv[i].value;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < res->ntargets && i < FY_MAX_TARGETS; i++) {
		struct seen *sn = took[i] ? seen_find(s, snap->volume_id, shown[i], true) : NULL;

		if (sn && snap->created_ns > sn->newest_ns) {
			sn->newest_ns = snap->created_ns;
			sn->bytes = res->size > res->bytes_zero ? res->size - res->bytes_zero : 0;
		}
	}
	for (size_t k = 0; policy && k < s->npol; k++)
		if (!strcmp(s->pol[k]->name, policy)) {
			bool any = false;

			for (size_t t = 0; t < s->pol[k]->ntargets; t++)
				any |= s->pol[k]->targets[t].retention;
			if (any)
				task_push(s, &s->maint, T_RETAIN, s->pol[k], snap->volume_id, 0);
		}
	pthread_mutex_unlock(&s->mu);
	wake(s);
}

int fy_sched_start(struct fy_agent *a, char *err, size_t errlen)
{
	struct fy_sched *s;
	pthread_condattr_t ca;
	const char *clock = getenv("FERRY_TEST_CLOCK");
	struct stat st;

	if (!a->conf.policy_dir[0])
		return 0;
	if (stat(a->conf.policy_dir, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "--policy-dir %s: %s", a->conf.policy_dir,
			 S_ISDIR(st.st_mode) || errno != 0 ? strerror(errno) : "not a directory");
		return -ENOTDIR;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->a = a;
	s->ifd = s->wd_dir = s->wd_clock = -1;
	snprintf(s->dir, sizeof(s->dir), "%s", a->conf.policy_dir);
	snprintf(s->state_path, sizeof(s->state_path), "%s/" STATE_FILE, a->conf.state_dir);
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (s->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		free(s);
		return -EMFILE;
	}
	if (s->ifd < 0)
		fy_log_warn("policies: inotify: %s (changes are seen within %d s)", strerror(errno), RESCAN_MS / 1000);
	if (clock && *clock) {
		/* Tests only (docs/operations.md): the policy clock reads this file. */
		char d[1024];
		const char *slash = strrchr(clock, '/');

		snprintf(s->clock_path, sizeof(s->clock_path), "%s", clock);
		snprintf(d, sizeof(d), "%.*s", slash ? (int)(slash - clock) : 1, slash ? clock : ".");
		if (s->ifd >= 0)
			s->wd_clock = inotify_add_watch(s->ifd, d[0] ? d : "/", IN_CLOSE_WRITE | IN_MOVED_TO);
		fy_log_warn("policies: FERRY_TEST_CLOCK=%s: the scheduler's clock is that file's (for tests only)", clock);
	}
	a->sched = s;
	state_load(s);
	rescan(s);
	s->maint.s = s->drill.s = s;
	s->maint.name = "maintenance";
	s->drill.name = "drill";
	struct { pthread_t *t; void *(*fn)(void *); void *arg; bool *started; } th[] = {
		{ &s->maint.thr, worker_main, &s->maint, &s->maint.started },
		{ &s->drill.thr, worker_main, &s->drill, &s->drill.started },
		{ &s->thr, sched_main, s, &s->thr_started },
	};
	for (size_t i = 0; i < 3; i++) {
		pthread_mutex_lock(&s->mu);
		s->alive++;
		pthread_mutex_unlock(&s->mu);
		if (pthread_create(th[i].t, NULL, th[i].fn, th[i].arg)) {
			pthread_mutex_lock(&s->mu);
			s->alive--;
			pthread_mutex_unlock(&s->mu);
			snprintf(err, errlen, "cannot start the policy threads");
			fy_sched_quit(a);
			fy_sched_stop(a, -1);
			fy_sched_free(a);
			return -EAGAIN;
		}
		*th[i].started = true;
	}
	{
		size_t n;

		pthread_mutex_lock(&s->mu);
		n = s->npol;
		pthread_mutex_unlock(&s->mu);
		fy_log_info("policies: %zu in force from %s", n, s->dir);
	}
	return 0;
}

void fy_sched_quit(struct fy_agent *a)
{
	struct fy_sched *s = a->sched;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->quit = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	wake(s);
}

int fy_sched_stop(struct fy_agent *a, int64_t until_ms)
{
	struct fy_sched *s = a->sched;
	unsigned left;

	if (!s)
		return 0;
	fy_sched_quit(a);
	pthread_mutex_lock(&s->mu);
	while (s->alive && (until_ms < 0 ? pthread_cond_wait(&s->cv, &s->mu) == 0
					 : fy_cond_wait_until(&s->cv, &s->mu, until_ms)))
		;
	left = s->alive;
	pthread_mutex_unlock(&s->mu);
	if (left) {
		fy_log_error("policies: %u thread%s still busy at the stop (%s%s%s): left behind", left, left == 1 ? "" : "s",
			     s->drill.busy ? "a drill" : "", s->drill.busy && s->maint.busy ? ", " : "",
			     s->maint.busy ? "retention, prune or a status read" : "");
		return (int)left;
	}
	if (s->thr_started)
		pthread_join(s->thr, NULL);
	if (s->maint.started)
		pthread_join(s->maint.thr, NULL);
	if (s->drill.started)
		pthread_join(s->drill.thr, NULL);
	s->thr_started = s->maint.started = s->drill.started = false;
	return 0;
}

void fy_sched_free(struct fy_agent *a)
{
	struct fy_sched *s = a->sched;

	if (!s)
		return;
	for (struct worker *w = &s->maint; w; w = w == &s->maint ? &s->drill : NULL)
		while (w->head) { /* pushed by uploads that ended after the stop */
			struct task *t = w->head;

			w->head = t->next;
			fy_policy_unref(t->p);
			free(t);
		}
	for (size_t i = 0; i < s->nfiles; i++)
		fy_policy_unref(s->files[i].p);
	for (size_t i = 0; i < s->npol; i++)
		fy_policy_unref(s->pol[i]);
	free(s->slots);
	free(s->seen);
	free(s->drills);
	free(s->overlaps);
	close(s->efd);
	if (s->ifd >= 0)
		close(s->ifd);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
	a->sched = NULL;
}
