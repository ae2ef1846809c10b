/* Background uploads: each cut snapshot has a job in the catalog until its
 * primary repository holds it.  A few threads take jobs in queue order, one
 * volume's snapshots strictly in order (each is incremental against the one
 * before, read through the extent diff of the two clones).  A failed upload
 * is retried with backoff; a stopped agent leaves its jobs in the catalog
 * and a rerun skips what is already stored.
 *
 * A job's repositories are opened once (one key derivation each) and kept
 * between its attempts; they are opened again only when a later
 * CreateSnapshot saved other secrets.  They are closed when the job ends,
 * when its snapshot is deleted, and at the stop.
 *
 * Deleting a snapshot drops its job (fy_jobs_drop): the job row goes under
 * the lock pick() reads the jobs with, so no worker takes the job again; a
 * run of it is cancelled (it stops at the next chunk, before any manifest is
 * written) and waited for a bounded time; a run still blocked after that
 * (a store request that does not answer) is left to come back, and its
 * result is then discarded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "agent_priv.h"
#include "clock.h"
#include "ferry.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "store/store.h"

#define MAX_WORKERS 16
#define BACKOFF_MIN_NS (5LL * 1000000000LL)
#define BACKOFF_MAX_NS (600LL * 1000000000LL)

/* A job's repositories, open between its attempts. */
struct job_open {
	struct job_open *next;
	char snap[FY_ID_MAX + 1];
	unsigned char digest[FY_SECRETS_DIGEST_LEN];  /* of the secrets they were opened with */
	struct fy_repo *primary;
	struct fy_repo *copies[FY_MAX_TARGETS - 1];   /* NULL: an optional copy not open (tried again) */
	bool optional[FY_MAX_TARGETS - 1];
	size_t ncopies;                               /* copies named by the class */
};

struct run {
	char snap[FY_ID_MAX + 1];
	char vol[FY_ID_MAX + 1];
	uint64_t repos[FY_MAX_TARGETS]; /* its repositories (repo_hash) */
	size_t nrepos;
	bool active;
	bool dropped;             /* its snapshot was deleted: the result is discarded */
	atomic_bool cancel;
	struct job_open *open;    /* the job's repositories, owned by the run while it runs */
};

/* What an upload attempt did, for the metrics and the log. */
struct attempt {
	struct fy_backup_result res;
	uint64_t retries;                          /* store requests sent again */
	char target[512];                          /* the primary, as shown (no query) */
	char copies[FY_MAX_TARGETS - 1][512];      /* copies that got the snapshot, as shown */
	size_t ncopies;
};

/* A DeleteSnapshot waiting for the run of its snapshot to end. */
struct drop_wait {
	struct drop_wait *next;
	const char *snap;
	bool done;                /* the run came back: */
	int result;               /* what its upload returned */
	char committed[33];       /* with 0: the repository snapshot it had committed */
};

struct fy_jobs {
	struct fy_agent *a;
	pthread_t thr[MAX_WORKERS];
	unsigned nthr;          /* threads started */
	unsigned n;             /* slots taken by them */
	unsigned alive;         /* threads not yet returned */
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* work may be there; a run ended (CLOCK_MONOTONIC) */
	bool quit, kicked;
	struct run runs[MAX_WORKERS];
	struct job_open *opened; /* repositories of jobs between attempts */
	struct drop_wait *drops;
	uint64_t held[16];       /* repositories a prune holds (fy_jobs_hold_repo) */
	size_t nheld;
};

/* A repository as fy_url_shown gives it (no query), hashed (FNV-1a). */
static uint64_t repo_hash(const char *url)
{
	uint64_t h = 14695981039346656037ull;
	size_t n = strcspn(url, "?");

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)url[i]) * 1099511628211ull;
	return h;
}

/* The repositories snapshot id uploads to (its class's parameters). */
static size_t snap_repos(struct fy_agent *a, const char *id, uint64_t *out)
{
	struct fy_kv *kv = NULL;
	size_t n = 0, nkv = 0;

	if (fy_cat_snap_params(a->cat, id, &kv, &nkv))
		return 0;
	for (size_t i = 0; i < nkv; i++) {
		if (!strcmp(kv[i].key, FY_P_REPO) && n < FY_MAX_TARGETS) {
			out[n++] = repo_hash(kv[i].value);
		} else if (!strcmp(kv[i].key, FY_P_COPY) || !strcmp(kv[i].key, FY_P_COPY_OPT)) {
			for (const char *p = kv[i].value; *p && n < FY_MAX_TARGETS; ) {
				size_t l = strcspn(p, ",");
				char u[2048];

				snprintf(u, sizeof(u), "%.*s", (int)l, p + strspn(p, " "));
				if (*u)
					out[n++] = repo_hash(u);
				p += l + (p[l] == ',');
			}
		}
	}
	fy_kv_free(kv, nkv);
	return n;
}

static bool repos_held(struct fy_jobs *j, const uint64_t *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < j->nheld; k++)
			if (r[i] == j->held[k])
				return true;
	return false;
}

static void open_close(struct job_open *o, const char *why)
{
	if (!o)
		return;
	fy_logf(FY_LOG_DEBUG, &(struct fy_log_fields){ .snapshot = o->snap },
		"snapshot %s: its repositories closed (%s)", o->snap, why);
	for (size_t i = 0; i < o->ncopies; i++)
		fy_repo_close(o->copies[i]);
	fy_repo_close(o->primary);
	OPENSSL_cleanse(o->digest, sizeof(o->digest));
	free(o);
}

/* Take the open repositories of a job out of the list (j->mu held). */
static struct job_open *take_open(struct fy_jobs *j, const char *snap)
{
	for (struct job_open **p = &j->opened; *p; p = &(*p)->next)
		if (!strcmp((*p)->snap, snap)) {
			struct job_open *o = *p;

			*p = o->next;
			o->next = NULL;
			return o;
		}
	return NULL;
}

/* The uploads waiting (queued or waiting for a retry, not running) among
 * the catalog's jobs, for the metrics (j->mu held).  jobs NULL: read them. */
static void queue_gauge(struct fy_jobs *j, const struct fy_cat_job *jobs, size_t n, const char *starting)
{
	struct fy_cat_job *mine = NULL;
	unsigned waiting = 0;

	if (!jobs) {
		if (fy_cat_jobs(j->a->cat, &mine, &n))
			return;
		jobs = mine;
	}
	for (size_t i = 0; i < n; i++) {
		bool running = false;

		for (unsigned r = 0; r < j->n && !running; r++)
			running = j->runs[r].active && !strcmp(j->runs[r].snap, jobs[i].snapshot_id);
		waiting += !running && !(starting && !strcmp(starting, jobs[i].snapshot_id));
	}
	free(mine);
	fy_metrics_upload_queue(waiting);
}

void fy_jobs_kick(struct fy_agent *a)
{
	struct fy_jobs *j = a->jobs;

	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	queue_gauge(j, NULL, 0, NULL); /* a new job: seen now, even while every worker is busy */
	j->kicked = true;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

static bool run_active(struct fy_jobs *j, const char *snap)
{
	for (unsigned i = 0; i < j->n; i++)
		if (j->runs[i].active && !strcmp(j->runs[i].snap, snap))
			return true;
	return false;
}

int fy_jobs_drop(struct fy_agent *a, const char *snapshot_id, unsigned wait_ms, char committed[33], char *err,
		 size_t errlen)
{
	struct fy_jobs *j = a->jobs;
	struct job_open *o = NULL;
	struct drop_wait w = { .snap = snapshot_id };
	int64_t until = fy_mono_ms() + wait_ms;
	bool running = false;
	int ret;

	committed[0] = 0;
	if (!j)
		return fy_cat_job_delete(a->cat, snapshot_id, err, errlen);
	pthread_mutex_lock(&j->mu);
	/* The row goes first, under the lock pick() reads the jobs with. */
	ret = fy_cat_job_delete(a->cat, snapshot_id, err, errlen);
	if (ret) {
		pthread_mutex_unlock(&j->mu);
		return ret;
	}
	for (unsigned i = 0; i < j->n; i++)
		if (j->runs[i].active && !strcmp(j->runs[i].snap, snapshot_id)) {
			j->runs[i].dropped = true;
			atomic_store(&j->runs[i].cancel, true);
			running = true;
		}
	if (running) {
		w.next = j->drops;
		j->drops = &w;
		while (!w.done && run_active(j, snapshot_id) && fy_cond_wait_until(&j->cv, &j->mu, until))
			;
		for (struct drop_wait **p = &j->drops; *p; p = &(*p)->next)
			if (*p == &w) {
				*p = w.next;
				break;
			}
	}
	if (!running)
		ret = FY_DROP_IDLE;
	else if (w.done && !w.result)
		ret = FY_DROP_COMMITTED;
	else if (w.done || !run_active(j, snapshot_id))
		ret = FY_DROP_STOPPED;
	else
		ret = FY_DROP_LEFT; /* the run closes its repositories when it comes back */
	if (ret == FY_DROP_COMMITTED)
		memcpy(committed, w.committed, sizeof(w.committed));
	if (ret != FY_DROP_LEFT)
		o = take_open(j, snapshot_id);
	queue_gauge(j, NULL, 0, NULL);
	pthread_mutex_unlock(&j->mu);
	open_close(o, "the snapshot is deleted");
	return ret;
}

/* Split a comma-separated list of URLs (in place). */
static size_t split_urls(char *list, char **out, size_t max)
{
	size_t n = 0;
	char *save = NULL;

	for (char *t = strtok_r(list, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		for (char *e = t + strlen(t); e > t && e[-1] == ' '; )
			*--e = 0;
		if (*t)
			out[n++] = t;
	}
	return n;
}

/* Keep the newest local_snapshots clones of a volume once uploaded. */
static void evict(struct fy_agent *a, const char *vol)
{
	struct fy_cat_snapshot *s = NULL;
	size_t n = 0, kept = 0;
	bool more;
	char path[1024], err[512];

	if (!a->conf.local_snapshots || fy_cat_snaps(a->cat, vol, NULL, "", 0, &s, &n, &more))
		return;
	for (size_t i = n; i-- > 0; ) {
		bool base_of_pending = false;

		if (!s[i].local)
			continue;
		if (s[i].state != FY_SNAP_READY || !s[i].repo_snapshot[0] || kept < a->conf.local_snapshots) {
			kept += s[i].state == FY_SNAP_READY;
			continue;
		}
		for (size_t k = 0; k < n; k++)
			base_of_pending |= s[k].state != FY_SNAP_READY && !strcmp(s[k].parent_id, s[i].id);
		if (base_of_pending)
			continue;
		fy_snap_path(a, s[i].id, path, sizeof(path));
		if (fy_img_remove(path, err, sizeof(err)))
			continue;
		s[i].local = false;
		fy_cat_snap_update(a->cat, &s[i], err, sizeof(err));
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = s[i].volume_id, .snapshot = s[i].id },
			"snapshot %s: local clone evicted (kept in its repository)", s[i].id);
	}
	free(s);
}

/* Did snapshot id go to the repository url? */
static bool same_repository(struct fy_agent *a, const char *id, const char *url)
{
	struct fy_kv *kv = NULL;
	size_t n = 0;
	bool same = false;

	if (fy_cat_snap_params(a->cat, id, &kv, &n))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kv[i].key, FY_P_REPO))
			same = !strcmp(kv[i].value, url);
	fy_kv_free(kv, n);
	return same;
}

static void add_label(struct fy_label *l, size_t *n, size_t max, const char *k, const char *v)
{
	if (*n < max)
		l[(*n)++] = (struct fy_label){ k, v };
}

/* The job's repositories: those its last attempt opened while the secrets
 * are the same, else opened now (and an optional copy that could not be
 * opened is tried again).  A primary that cannot be opened is not kept. */
static int open_repos(const struct fy_cat_snapshot *s, const char *url, char **urls, size_t nreq, size_t nopt,
		      unsigned flags, const char *dir, struct job_open **op, char *err, size_t errlen)
{
	unsigned char dg[FY_SECRETS_DIGEST_LEN];
	struct job_open *o = *op;
	char sub[1100];
	int ret;

	ret = fy_secrets_digest(dir, dg);
	if (ret) {
		snprintf(err, errlen, "its secrets (%.600s): %s", dir, strerror(-ret));
		return ret;
	}
	if (o && memcmp(o->digest, dg, sizeof(dg))) {
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = s->volume_id, .snapshot = s->id },
			"snapshot %s: other secrets since the last attempt: opening its repositories again", s->id);
		open_close(o, "other secrets");
		*op = o = NULL;
	}
	if (!o) {
		o = calloc(1, sizeof(*o));
		if (!o) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		snprintf(o->snap, sizeof(o->snap), "%s", s->id);
		memcpy(o->digest, dg, sizeof(dg));
		ret = fy_repo_open_dir(url, dir, flags, NULL, "the snapshot class's secrets", &o->primary, err, errlen);
		if (ret) {
			open_close(o, "the primary did not open");
			return ret;
		}
		o->ncopies = nreq + nopt;
		for (size_t i = 0; i < o->ncopies; i++)
			o->optional[i] = i >= nreq;
		*op = o;
	}
	OPENSSL_cleanse(dg, sizeof(dg));
	for (size_t i = 0; i < o->ncopies; i++) {
		char e2[768];

		if (o->copies[i])
			continue;
		snprintf(sub, sizeof(sub), "%s/copy-%zu", dir, i + 1);
		ret = fy_repo_open_dir(urls[i], sub, flags, o->primary, "the snapshot class's secrets", &o->copies[i],
				       e2, sizeof(e2));
		if (ret && o->optional[i]) {
			char shown[512];

			fy_url_shown(urls[i], shown, sizeof(shown));
			fy_logf(FY_LOG_WARN,
				&(struct fy_log_fields){ .volume = s->volume_id, .snapshot = s->id, .target = shown,
							 .error = e2 },
				"snapshot %s: optional copy dropped: %s", s->id, e2);
			continue;
		}
		if (ret) {
			snprintf(err, errlen, "copy %zu: %s", i + 1, e2);
			return ret;
		}
	}
	return 0;
}

/* The store requests sent again so far by the repositories of o. */
static uint64_t store_retries(const struct job_open *o)
{
	struct fy_store_stats st;
	uint64_t n = 0;

	if (!o)
		return 0;
	fy_store_stats(o->primary->store, &st);
	n += st.retries;
	for (size_t i = 0; i < o->ncopies; i++)
		if (o->copies[i]) {
			fy_store_stats(o->copies[i]->store, &st);
			n += st.retries;
		}
	return n;
}

/* Upload one snapshot with the run's repositories (opened here if need be).
 * 0, -ECANCELED (left for later), or -errno with err; *at says what the
 * attempt did. */
static int upload(struct fy_agent *a, struct fy_cat_snapshot *s, struct run *run, struct attempt *at, char *err,
		  size_t errlen)
{
	struct fy_repo *copies[FY_MAX_TARGETS - 1] = { 0 };
	const char *copy_urls[FY_MAX_TARGETS - 1] = { 0 };
	bool optional[FY_MAX_TARGETS - 1] = { 0 };
	size_t ncopies = 0, nkv = 0, nl = 0, nreq = 0, nopt = 0;
	struct fy_kv *kv = NULL;
	const char *url = NULL;
	char *copy_list = NULL, *opt_list = NULL, *urls[FY_MAX_TARGETS], dir[1024], sub[1100], src[1024],
	     base[1024], parent_hex[40], shown[512];
	struct fy_label labels[32];
	char vl_buf[8][512];
	size_t nvl = 0;
	FILE *vol_labels;
	struct fy_cat_snapshot parent;
	struct fy_backup_opts o = { 0 };
	struct fy_backup_result *res = &at->res;
	uint64_t retries0;
	int ret;

	ret = fy_cat_snap_params(a->cat, s->id, &kv, &nkv);
	if (ret) {
		snprintf(err, errlen, "its parameters: %s", strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < nkv; i++) {
		if (!strcmp(kv[i].key, FY_P_REPO))
			url = kv[i].value;
		else if (!strcmp(kv[i].key, FY_P_COPY))
			copy_list = strdup(kv[i].value);
		else if (!strcmp(kv[i].key, FY_P_COPY_OPT))
			opt_list = strdup(kv[i].value);
		else if (!strncmp(kv[i].key, FY_P_K8S_PREFIX, strlen(FY_P_K8S_PREFIX)) ||
			 !strcmp(kv[i].key, FY_P_POLICY))
			add_label(labels, &nl, 24, kv[i].key, kv[i].value);
	}
	if (url)
		fy_url_shown(url, at->target, sizeof(at->target));
	fy_job_dir(a, s->id, dir, sizeof(dir));
	if (access(dir, F_OK)) {
		snprintf(err, errlen, "its secrets are gone (%.600s): call CreateSnapshot again to resend them", dir);
		ret = -ENOKEY;
		goto out;
	}
	nreq = copy_list ? split_urls(copy_list, urls, FY_MAX_TARGETS - 1) : 0;
	nopt = opt_list ? split_urls(opt_list, urls + nreq, FY_MAX_TARGETS - 1 - nreq) : 0;
	ret = open_repos(s, url, urls, nreq, nopt, fy_repo_open_flags(kv, nkv), dir, &run->open, err, errlen);
	if (ret)
		goto out;
	for (size_t i = 0; i < run->open->ncopies; i++)
		if (run->open->copies[i]) {
			optional[ncopies] = run->open->optional[i];
			copy_urls[ncopies] = urls[i];
			copies[ncopies++] = run->open->copies[i];
		}
	/* The volume's Kubernetes names (PVC, PV), saved at CreateVolume. */
	fy_vol_labels_path(a, s->volume_id, sub, sizeof(sub));
	vol_labels = fopen(sub, "re");
	while (vol_labels && nl < 24 && nvl < 8 && fgets(vl_buf[nvl], sizeof(vl_buf[nvl]), vol_labels)) {
		char *eq = strchr(vl_buf[nvl], '='), *e = strchr(vl_buf[nvl], '\n');

		if (e)
			*e = 0;
		if (!eq)
			continue;
		*eq = 0;
		add_label(labels, &nl, 24, vl_buf[nvl], eq + 1);
		nvl++;
	}
	if (vol_labels)
		fclose(vol_labels);
	add_label(labels, &nl, 32, FY_L_SNAPSHOT_ID, s->id);
	add_label(labels, &nl, 32, "ferry.csi.dev/snapshot-name", s->name);
	add_label(labels, &nl, 32, "ferry.csi.dev/node", a->conf.node_id);
	fy_snap_path(a, s->id, src, sizeof(src));
	o.source = src;
	o.volume = s->volume_id;
	o.labels = labels;
	o.nlabels = nl;
	o.parent = "auto";
	o.created_unix_nano = s->created_ns; /* the cut's time: the data's point in time */
	/* The previous snapshot is the parent when it went to this repository;
	 * otherwise "auto": the newest of this volume there, if any. */
	if (s->parent_id[0] && !fy_cat_snap_get(a->cat, s->parent_id, &parent) && parent.repo_snapshot[0] &&
	    same_repository(a, parent.id, url)) {
		snprintf(parent_hex, sizeof(parent_hex), "%s", parent.repo_snapshot);
		o.parent = parent_hex;
		fy_snap_path(a, parent.id, base, sizeof(base));
		if (parent.local && parent.reflinked && s->reflinked && !access(base, F_OK))
			o.base_image = base;
	}
	o.copies = copies;
	o.copy_optional = optional;
	o.ncopies = ncopies;
	o.cancel = &run->cancel;
	retries0 = store_retries(run->open);
	ret = fy_backup(run->open->primary, &o, res, err, errlen);
	at->retries = store_retries(run->open) - retries0;
	if (!ret) {
		fy_url_shown(url, shown, sizeof(shown));
		fy_hex(res->snapshot_id, FY_SNAP_ID_LEN, s->repo_snapshot);
		s->bytes_uploaded = res->bytes_stored;
		/* The copies that got it: res->targets[1 + i] is copies[i]; an
		 * optional one that failed was dropped (its status says). */
		for (size_t i = 0; i < ncopies && i + 1 < res->ntargets; i++)
			if (!res->targets[1 + i].status)
				fy_url_shown(copy_urls[i], at->copies[at->ncopies++], sizeof(at->copies[0]));
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = s->volume_id, .snapshot = s->id, .target = shown },
			"snapshot %s uploaded to %s%s as %s: %s, %llu bytes read, %llu stored, %.2f s%s%s", s->id,
			shown, ncopies ? " and copies" : "", s->repo_snapshot, res->change_source,
			(unsigned long long)res->bytes_read, (unsigned long long)res->bytes_stored, res->seconds,
			res->warning[0] ? "; " : "", res->warning);
		fy_sched_uploaded(a, s, kv, nkv, res);
	}
out:
	free(copy_list);
	free(opt_list);
	fy_kv_free(kv, nkv);
	return ret;
}

/* The next job to run, in queue order: due, not running, and no earlier job
 * of the same volume waiting.  *wait_ns: when the next one falls due. */
static bool pick(struct fy_jobs *j, struct run *slot, int64_t *wait_ns)
{
	struct fy_agent *a = j->a;
	struct fy_cat_job *jobs = NULL;
	size_t n = 0;
	int64_t now = fy_now_ns();
	char (*vols)[FY_ID_MAX + 1];
	bool found = false;

	*wait_ns = -1;
	if (fy_cat_jobs(a->cat, &jobs, &n) || !n) {
		if (!n)
			fy_metrics_upload_queue(0);
		free(jobs);
		return false;
	}
	vols = calloc(n, sizeof(*vols));
	for (size_t i = 0; vols && i < n && !found; i++) {
		struct fy_cat_snapshot s;
		bool blocked = false, running = false;

		if (fy_cat_snap_get(a->cat, jobs[i].snapshot_id, &s))
			continue;
		/* One volume's snapshots go in order (each reads only what changed
		 * since the one before) — but one that has failed already waits
		 * for its retry without holding the later ones back. */
		if (!jobs[i].attempts)
			snprintf(vols[i], sizeof(vols[i]), "%s", s.volume_id);
		for (size_t k = 0; k < i; k++)
			blocked |= !strcmp(vols[k], s.volume_id);
		/* (A dropped run left blocked in a store request holds nothing back.) */
		for (unsigned r = 0; r < j->n; r++)
			running |= j->runs[r].active && !j->runs[r].dropped && !strcmp(j->runs[r].vol, s.volume_id);
		if (blocked || running)
			continue;
		/* A prune holds one of its repositories: it waits (the release kicks). */
		slot->nrepos = snap_repos(a, s.id, slot->repos);
		if (repos_held(j, slot->repos, slot->nrepos))
			continue;
		if (jobs[i].next_ns > now) {
			if (*wait_ns < 0 || jobs[i].next_ns - now < *wait_ns)
				*wait_ns = jobs[i].next_ns - now;
			continue;
		}
		snprintf(slot->snap, sizeof(slot->snap), "%s", s.id);
		snprintf(slot->vol, sizeof(slot->vol), "%s", s.volume_id);
		found = true;
	}
	queue_gauge(j, jobs, n, found ? slot->snap : NULL); /* the one picked starts now */
	free(vols);
	free(jobs);
	return found;
}

/* Tell the metrics what an attempt did (every attempt: failed, cancelled,
 * or uploaded) and, when the snapshot is complete on its targets, that
 * their RPO falls. */
static void attempt_metrics(const struct fy_cat_snapshot *s, const struct attempt *at, int ret, bool landed)
{
	struct fy_metrics_upload u = {
		.volume = s->volume_id,
		.status = ret,
		.retries = at->retries,
	};
	double created = (double)s->created_ns / 1e9;

	if (!ret) {
		u.bytes_read = at->res.bytes_read;
		u.bytes_stored = at->res.bytes_stored;
		u.bytes_dedup = at->res.bytes_dedup;
		u.seconds = at->res.seconds;
	}
	fy_metrics_upload(&u);
	if (ret || !landed)
		return;
	fy_metrics_target_snapshot(s->volume_id, at->target, created);
	for (size_t i = 0; i < at->ncopies; i++)
		fy_metrics_target_snapshot(s->volume_id, at->copies[i], created);
}

static void run_job(struct fy_jobs *j, struct run *slot)
{
	struct fy_agent *a = j->a;
	struct fy_cat_snapshot s, now;
	struct fy_cat_job job = { 0 };
	struct attempt *at;
	char target[512] = "";
	struct fy_cat_job *jobs = NULL;
	size_t n = 0;
	char err[1024] = "", e2[512], dir[1024];
	int64_t backoff;
	bool dropped, told = false;
	int ret;

	if (fy_cat_snap_get(a->cat, slot->snap, &s) || s.state == FY_SNAP_READY) {
		fy_cat_job_delete(a->cat, slot->snap, e2, sizeof(e2)); /* deleted, or done already */
		open_close(slot->open, "the job is done");
		slot->open = NULL;
		return;
	}
	if (!fy_cat_jobs(a->cat, &jobs, &n))
		for (size_t i = 0; i < n; i++)
			if (!strcmp(jobs[i].snapshot_id, s.id))
				job = jobs[i];
	free(jobs);
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = s.volume_id, .snapshot = s.id },
		"snapshot %s: upload starts (attempt %u)", s.id, job.attempts + 1);
	at = calloc(1, sizeof(*at));
	if (!at) {
		snprintf(err, sizeof(err), "out of memory");
		ret = -ENOMEM;
	} else {
		ret = upload(a, &s, slot, at, err, sizeof(err));
	}
	pthread_mutex_lock(&j->mu);
	dropped = slot->dropped;
	for (struct drop_wait *w = j->drops; dropped && w; w = w->next)
		if (!strcmp(w->snap, s.id)) {
			w->done = told = true;
			w->result = ret;
			memcpy(w->committed, s.repo_snapshot, sizeof(w->committed));
		}
	pthread_mutex_unlock(&j->mu);
	/* A deleted snapshot's upload counts as an attempt, but moves no RPO:
	 * its snapshot is gone from the catalog (and from the next start's). */
	if (at) {
		attempt_metrics(&s, at, ret, !dropped);
		memcpy(target, at->target, sizeof(target));
		free(at);
	}
	if (dropped) {
		/* The snapshot is deleted: whatever this run did is discarded (the
		 * worker closes its repositories).  DeleteSnapshot says what became
		 * of it, unless it has answered already. */
		if (!told && !ret)
			fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = s.volume_id, .snapshot = s.id },
				"snapshot %s (deleted while its upload was blocked in a store request): the upload "
				"completed after all, and the repository keeps it as snapshot %s until retention "
				"removes it", s.id, s.repo_snapshot);
		else if (!told)
			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = s.volume_id, .snapshot = s.id },
				"snapshot %s (deleted while its upload was blocked in a store request): the upload "
				"came back and stopped; nothing of it was committed, chunks it stored stay "
				"unreferenced until `ferry prune`", s.id);
		return;
	}
	if (ret == -ECANCELED && (atomic_load(&slot->cancel) || atomic_load(&a->stopping))) {
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = s.volume_id, .snapshot = s.id },
			"snapshot %s: upload stopped; what is stored stays, and it resumes at the next start", s.id);
		return;
	}
	if (fy_cat_snap_get(a->cat, s.id, &now)) {
		open_close(slot->open, "the snapshot is deleted");
		slot->open = NULL;
		return;
	}
	if (!ret) {
		now.state = FY_SNAP_READY;
		now.ready_ns = fy_now_ns();
		now.error[0] = 0;
		memcpy(now.repo_snapshot, s.repo_snapshot, sizeof(now.repo_snapshot));
		now.bytes_uploaded = s.bytes_uploaded;
		ret = fy_cat_snap_update(a->cat, &now, e2, sizeof(e2));
		if (ret) {
			fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = s.volume_id, .snapshot = s.id, .error = e2 },
				"snapshot %s: uploaded, but the catalog did not take it: %s", s.id, e2);
			return; /* the job stays: a rerun finds everything stored */
		}
		fy_cat_job_delete(a->cat, s.id, e2, sizeof(e2));
		open_close(slot->open, "the job is done");
		slot->open = NULL;
		fy_job_dir(a, s.id, dir, sizeof(dir));
		fy_secrets_remove(dir);
		evict(a, now.volume_id);
		return;
	}
	now.state = FY_SNAP_FAILED;
	snprintf(now.error, sizeof(now.error), "%.500s", err);
	fy_cat_snap_update(a->cat, &now, e2, sizeof(e2));
	snprintf(job.snapshot_id, sizeof(job.snapshot_id), "%s", s.id);
	job.attempts++;
	backoff = BACKOFF_MIN_NS << (job.attempts < 8 ? job.attempts - 1 : 7);
	if (backoff > BACKOFF_MAX_NS)
		backoff = BACKOFF_MAX_NS;
	job.next_ns = fy_now_ns() + backoff;
	fy_cat_job_update(a->cat, &job, e2, sizeof(e2));
	fy_logf(FY_LOG_ERROR,
		&(struct fy_log_fields){ .volume = s.volume_id, .snapshot = s.id, .target = target[0] ? target : NULL,
					 .error = err },
		"snapshot %s: upload failed (attempt %u, next in %lld s): %s", s.id, job.attempts,
		(long long)(backoff / 1000000000LL), err);
}

static void *worker(void *arg)
{
	struct fy_jobs *j = arg;
	unsigned me;

	pthread_mutex_lock(&j->mu);
	me = j->n++;
	while (!j->quit) {
		struct run *slot = &j->runs[me];
		int64_t wait_ns;

		if (!pick(j, slot, &wait_ns)) {
			if (j->kicked) {
				j->kicked = false;
				continue;
			}
			if (wait_ns < 0)
				pthread_cond_wait(&j->cv, &j->mu);
			else
				fy_cond_wait_until(&j->cv, &j->mu, fy_mono_ms() + wait_ns / 1000000 + 1000);
			continue;
		}
		slot->active = true;
		slot->dropped = false;
		atomic_store(&slot->cancel, atomic_load(&j->a->stopping));
		slot->open = take_open(j, slot->snap);
		pthread_mutex_unlock(&j->mu);
		run_job(j, slot);
		pthread_mutex_lock(&j->mu);
		if (slot->open && slot->dropped) {
			open_close(slot->open, "the snapshot is deleted");
		} else if (slot->open) { /* kept for the next attempt */
			slot->open->next = j->opened;
			j->opened = slot->open;
		}
		slot->open = NULL;
		slot->active = false;
		pthread_cond_broadcast(&j->cv);
	}
	j->alive--;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int fy_jobs_start(struct fy_agent *a, char *err, size_t errlen)
{
	struct fy_jobs *j = calloc(1, sizeof(*j));
	unsigned want = a->conf.upload_workers ? a->conf.upload_workers : 1;
	pthread_condattr_t ca;

	if (!j) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (want > MAX_WORKERS)
		want = MAX_WORKERS;
	j->a = a;
	pthread_mutex_init(&j->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cv, &ca);
	pthread_condattr_destroy(&ca);
	a->jobs = j;
	for (unsigned i = 0; i < want; i++) {
		pthread_mutex_lock(&j->mu);
		j->alive++;
		pthread_mutex_unlock(&j->mu);
		if (pthread_create(&j->thr[i], NULL, worker, j)) {
			pthread_mutex_lock(&j->mu);
			j->alive--;
			pthread_mutex_unlock(&j->mu);
			snprintf(err, errlen, "cannot start upload threads");
			fy_jobs_quit(a);
			fy_jobs_stop(a, -1);
			return -EAGAIN;
		}
		j->nthr++;
	}
	return 0;
}

int fy_jobs_hold_repo(struct fy_agent *a, const char *shown, const atomic_bool *cancel,
		      void (*waiting)(const char *running, void *arg), void *arg)
{
	struct fy_jobs *j = a->jobs;
	uint64_t h = repo_hash(shown);
	bool stop, told = false;

	if (!j)
		return 0;
	pthread_mutex_lock(&j->mu);
	if (j->nheld == sizeof(j->held) / sizeof(j->held[0])) {
		pthread_mutex_unlock(&j->mu);
		return -EBUSY;
	}
	j->held[j->nheld++] = h;
	for (;;) {
		char running[512] = "";
		size_t off = 0;

		for (unsigned i = 0; i < j->n; i++) {
			bool mine = false;

			for (size_t k = 0; j->runs[i].active && !j->runs[i].dropped && k < j->runs[i].nrepos; k++)
				mine |= j->runs[i].repos[k] == h;
			if (mine && off < sizeof(running))
				off += (size_t)snprintf(running + off, sizeof(running) - off, "%s%s", off ? ", " : "",
							j->runs[i].snap);
		}
		stop = (cancel && atomic_load(cancel)) || j->quit;
		if (!off || stop)
			break;
		if (!told && waiting) {
			pthread_mutex_unlock(&j->mu);
			waiting(running, arg);
			told = true;
			pthread_mutex_lock(&j->mu);
			continue;
		}
		fy_cond_wait_until(&j->cv, &j->mu, fy_mono_ms() + 1000);
	}
	pthread_mutex_unlock(&j->mu);
	if (stop) {
		fy_jobs_release_repo(a, shown);
		return -ECANCELED;
	}
	return 0;
}

void fy_jobs_release_repo(struct fy_agent *a, const char *shown)
{
	struct fy_jobs *j = a->jobs;
	uint64_t h = repo_hash(shown);

	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	for (size_t k = 0; k < j->nheld; k++)
		if (j->held[k] == h) {
			j->held[k] = j->held[--j->nheld];
			break;
		}
	j->kicked = true;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

void fy_jobs_quit(struct fy_agent *a)
{
	struct fy_jobs *j = a->jobs;

	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	j->quit = true;
	for (unsigned i = 0; i < MAX_WORKERS; i++)
		atomic_store(&j->runs[i].cancel, true);
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

int fy_jobs_stop(struct fy_agent *a, int64_t until_ms)
{
	struct fy_jobs *j = a->jobs;
	unsigned left;
	char what[512] = "";
	size_t off = 0;

	if (!j)
		return 0;
	fy_jobs_quit(a);
	pthread_mutex_lock(&j->mu);
	while (j->alive && (until_ms < 0 ? pthread_cond_wait(&j->cv, &j->mu) == 0 : fy_cond_wait_until(&j->cv, &j->mu, until_ms)))
		;
	left = j->alive;
	for (unsigned i = 0; left && i < j->n && off < sizeof(what); i++)
		if (j->runs[i].active)
			off += (size_t)snprintf(what + off, sizeof(what) - off, "%s%s", off ? ", " : "",
						j->runs[i].snap);
	pthread_mutex_unlock(&j->mu);
	if (left) {
		/* Blocked in a store request: not waited for.  The process ends
		 * without freeing what they use; their uploads resume at the next
		 * start (the job rows stay). */
		fy_log_error("uploads: %u still blocked at the stop (%s): left behind; they resume at the next start",
			     left, what);
		return (int)left;
	}
	for (unsigned i = 0; i < j->nthr; i++)
		pthread_join(j->thr[i], NULL);
	while (j->opened) {
		struct job_open *o = j->opened;

		j->opened = o->next;
		open_close(o, "the agent stops");
	}
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j);
	a->jobs = NULL;
	return 0;
}
