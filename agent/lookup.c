/* Snapshots this node's catalog does not know: another node's (the metadata
 * sidecar's Service sends a request to any node), one cut before this node
 * was rebuilt, or one of another cluster (a static VolumeSnapshotContent).
 * Every upload records the CSI snapshot id in its manifest as the label
 * ferry.csi.dev/snapshot-id (jobs.c), so the repositories are searched for
 * it: those the request's parameters name, then the config's
 * lookup-repositories, each opened with the request's secrets.
 *
 * Repository format 1 has no index of labels: a search reads the manifests
 * of a repository one at a time (memory: one manifest and the list of
 * snapshot ids).  What it reads is remembered in a bounded cache, per
 * repository: snapshot -> the CSI id of its label ("" for none).  Manifests
 * never change, so a later search (the next page of a stream, the base of a
 * delta, another id) reads only the manifests it has not seen, and a known
 * id is one manifest read.  An entry that proves stale (the snapshot was
 * forgotten) is dropped and the repository searched again; a repository
 * whose id changed (recreated at the same URL) loses its entries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_priv.h"
#include "ferry.h"
#include "log.h"

#define CACHE_MAX 4096   /* manifests remembered, over every repository */
#define URLS_MAX 32      /* repositories remembered */
#define CANDS_MAX (2 * FY_MAX_TARGETS_URL + FY_MAX_LOOKUP)

struct lk_url {
	char *url;                 /* NULL: a free slot */
	uint8_t repo_id[16];
	uint64_t used;
};

struct lk_ent {
	int url;                   /* index in urls; -1: a free entry */
	uint8_t rid[FY_SNAP_ID_LEN];
	char id[FY_ID_MAX + 1];    /* the label's CSI id, "" when it has none (or none we could issue) */
	uint64_t used;
};

struct fy_lookup {
	pthread_mutex_t mu;
	uint64_t clock;
	struct lk_url urls[URLS_MAX];
	struct lk_ent ents[CACHE_MAX];
};

int fy_lookup_init(struct fy_agent *a)
{
	struct fy_lookup *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->mu, NULL);
	for (size_t i = 0; i < CACHE_MAX; i++)
		l->ents[i].url = -1;
	a->lookup = l;
	return 0;
}

void fy_lookup_free(struct fy_agent *a)
{
	struct fy_lookup *l = a->lookup;

	if (!l)
		return;
	for (size_t i = 0; i < URLS_MAX; i++)
		free(l->urls[i].url);
	pthread_mutex_destroy(&l->mu);
	free(l);
	a->lookup = NULL;
}

void fy_found_free(struct fy_found *f)
{
	if (f->m)
		ferry__v1__manifest__free_unpacked(f->m, NULL);
	fy_repo_close(f->repo);
	f->m = NULL;
	f->repo = NULL;
}

grpc_status_code fy_lookup_status(int err)
{
	switch (-err) {
	case ENOENT: return GRPC_STATUS_NOT_FOUND;
	case EACCES: case EPERM: return GRPC_STATUS_PERMISSION_DENIED;
	case EINVAL: return GRPC_STATUS_INVALID_ARGUMENT;
	case ENOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	}
	return GRPC_STATUS_UNAVAILABLE; /* a repository could not be read: try again */
}

/* Drop the query of every URL in a message, in place: it may be long
 * (an S3 endpoint, the secrets' directory) and hide the reason after it. */
static void drop_queries(char *s)
{
	char *w = s;

	for (char *p = s; *p; ) {
		size_t tok = strcspn(p, " "), q = strcspn(p, "?");

		if (q < tok && memmem(p, q, "://", 3)) {
			size_t keep = tok;

			while (keep > q && strchr(":;,)", p[keep - 1]))
				keep--;
			memmove(w, p, q);
			w += q;
			memmove(w, p + keep, tok - keep);
			w += tok - keep;
		} else {
			memmove(w, p, tok);
			w += tok;
		}
		p += tok;
		if (*p)
			*w++ = *p++;
	}
	*w = 0;
}

/* ---- the cache (l->mu held) ---- */

static void forget_url(struct fy_lookup *l, int u)
{
	for (size_t i = 0; i < CACHE_MAX; i++)
		if (l->ents[i].url == u)
			l->ents[i].url = -1;
}

/* The slot of url, made if need be (the least recently used repository
 * gives its slot); with repo, entries of another repository at that URL go. */
static int url_slot(struct fy_lookup *l, const char *url, const struct fy_repo *repo, bool make)
{
	int u = -1, lru = 0;

	for (int i = 0; i < URLS_MAX; i++) {
		if (l->urls[i].url && !strcmp(l->urls[i].url, url)) {
			u = i;
			break;
		}
		if (!l->urls[i].url || (l->urls[lru].url && l->urls[i].used < l->urls[lru].used))
			lru = i;
	}
	if (u < 0) {
		char *copy;

		if (!make || !(copy = strdup(url)))
			return -1;
		u = lru;
		if (l->urls[u].url)
			forget_url(l, u);
		free(l->urls[u].url);
		l->urls[u].url = copy;
		memcpy(l->urls[u].repo_id, repo ? repo->repo_id : (const uint8_t[16]){ 0 }, 16);
	} else if (repo && memcmp(l->urls[u].repo_id, repo->repo_id, 16)) {
		forget_url(l, u);
		memcpy(l->urls[u].repo_id, repo->repo_id, 16);
	}
	l->urls[u].used = ++l->clock;
	return u;
}

static struct lk_ent *by_rid(struct fy_lookup *l, int u, const uint8_t rid[FY_SNAP_ID_LEN])
{
	for (size_t i = 0; i < CACHE_MAX; i++)
		if (l->ents[i].url == u && !memcmp(l->ents[i].rid, rid, FY_SNAP_ID_LEN))
			return &l->ents[i];
	return NULL;
}

static struct lk_ent *by_id(struct fy_lookup *l, int u, const char *id)
{
	for (size_t i = 0; i < CACHE_MAX; i++)
		if (l->ents[i].url == u && !strcmp(l->ents[i].id, id))
			return &l->ents[i];
	return NULL;
}

static void remember(struct fy_lookup *l, int u, const uint8_t rid[FY_SNAP_ID_LEN], const char *id)
{
	struct lk_ent *e = by_rid(l, u, rid);

	if (!e) {
		e = &l->ents[0];
		for (size_t i = 0; i < CACHE_MAX && e->url >= 0; i++)
			if (l->ents[i].url < 0 || l->ents[i].used < e->used)
				e = &l->ents[i];
	}
	e->url = u;
	memcpy(e->rid, rid, FY_SNAP_ID_LEN);
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->used = ++l->clock;
}

/* The CSI id a manifest is labelled with, or "" (none, or not one of ours). */
static const char *label_of(const Ferry__V1__Manifest *m)
{
	for (size_t i = 0; i < m->n_labels; i++)
		if (m->labels[i]->key && !strcmp(m->labels[i]->key, FY_L_SNAPSHOT_ID))
			return m->labels[i]->value && fy_our_id(m->labels[i]->value, "snap") ? m->labels[i]->value
											     : "";
	return "";
}

/* ---- searching one repository ---- */

/* What the cache says: 1 and rid (id is known there), 0 (not known). */
static int cached(struct fy_agent *a, const char *url, const char *id, uint8_t rid[FY_SNAP_ID_LEN])
{
	struct fy_lookup *l = a->lookup;
	struct lk_ent *e = NULL;
	int u;

	if (!l)
		return 0; /* no cache (an agent without fy_lookup_init: the fuzz targets) */
	pthread_mutex_lock(&l->mu);
	u = url_slot(l, url, NULL, false);
	if (u >= 0 && (e = by_id(l, u, id))) {
		memcpy(rid, e->rid, FY_SNAP_ID_LEN);
		e->used = ++l->clock;
	}
	pthread_mutex_unlock(&l->mu);
	return e != NULL;
}

static void drop(struct fy_agent *a, const char *url, const uint8_t rid[FY_SNAP_ID_LEN])
{
	struct fy_lookup *l = a->lookup;
	struct lk_ent *e;
	int u;

	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	u = url_slot(l, url, NULL, false);
	if (u >= 0 && (e = by_rid(l, u, rid)))
		e->url = -1;
	pthread_mutex_unlock(&l->mu);
}

/* Read the manifests of r that the cache has not seen, one at a time,
 * until one is labelled id. */
static int scan(struct fy_agent *a, struct fy_repo *r, const char *url, const char *id, uint8_t rid[FY_SNAP_ID_LEN],
		Ferry__V1__Manifest **m, char *err, size_t errlen)
{
	struct fy_lookup *l = a->lookup;
	uint8_t *ids = NULL;
	size_t n = 0, nread = 0, known = 0;
	char e2[512], shown[512], unread[600] = "";
	int ret, first_err = 0;

	*m = NULL;
	fy_url_shown(url, shown, sizeof(shown));
	ret = fy_snapshot_ids(r, &ids, &n, e2, sizeof(e2));
	if (ret) {
		drop_queries(e2);
		snprintf(err, errlen, "%s: listing its snapshots: %s", shown, e2);
		return ret;
	}
	for (size_t i = 0; i < n && !*m; i++) {
		const uint8_t *sid = ids + i * FY_SNAP_ID_LEN;
		Ferry__V1__Manifest *mm;
		const char *label;
		bool seen;
		int u;

		seen = false;
		if (l) {
			pthread_mutex_lock(&l->mu);
			u = url_slot(l, url, r, true);
			seen = u >= 0 && by_rid(l, u, sid);
			pthread_mutex_unlock(&l->mu);
		}
		if (seen) {
			known++;
			continue;
		}
		ret = fy_manifest_read(r, sid, &mm, e2, sizeof(e2));
		if (ret == -ENOENT)
			continue; /* forgotten since the listing */
		if (ret == -EBADMSG) {
			/* Damaged (ferry check names it): it could serve no answer. */
			drop_queries(e2);
			fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .snapshot = id, .target = shown, .error = e2 },
				"looking for snapshot %s in %s: %s", id, shown, e2);
			continue;
		}
		if (ret) {
			/* It may be the one: the answer cannot be "not there". */
			if (!first_err) {
				first_err = ret;
				drop_queries(e2);
				snprintf(unread, sizeof(unread), "%.560s", e2);
			}
			continue;
		}
		nread++;
		label = label_of(mm);
		if (l) {
			pthread_mutex_lock(&l->mu);
			u = url_slot(l, url, r, true);
			if (u >= 0)
				remember(l, u, sid, label);
			pthread_mutex_unlock(&l->mu);
		}
		if (!strcmp(label, id)) {
			*m = mm;
			memcpy(rid, sid, FY_SNAP_ID_LEN);
		} else {
			ferry__v1__manifest__free_unpacked(mm, NULL);
		}
	}
	free(ids);
	if (*m) {
		char hex[2 * FY_SNAP_ID_LEN + 1];

		fy_hex(rid, FY_SNAP_ID_LEN, hex);
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .snapshot = id, .target = shown },
			"snapshot %s found in %s as %s (%zu manifests read, %zu known)", id, shown, hex, nread, known);
		return 0;
	}
	fy_logf(FY_LOG_DEBUG, &(struct fy_log_fields){ .snapshot = id, .target = shown },
		"snapshot %s is not in %s (%zu manifests read, %zu known)", id, shown, nread, known);
	if (first_err) {
		snprintf(err, errlen, "%s: a manifest could not be read (%s)", shown, unread);
		return first_err;
	}
	snprintf(err, errlen, "%s: not there (%zu snapshot%s)", shown, n, n == 1 ? "" : "s");
	return -ENOENT;
}

int fy_lookup_in(struct fy_agent *a, struct fy_repo *r, const char *url, const char *id,
		 uint8_t rid[FY_SNAP_ID_LEN], Ferry__V1__Manifest **m, char *err, size_t errlen)
{
	char e2[512], shown[512];
	int ret;

	*m = NULL;
	fy_url_shown(url, shown, sizeof(shown));
	if (!fy_our_id(id, "snap")) {
		snprintf(err, errlen, "%s: no snapshot %s (not an id this driver issues)", shown, id);
		return -ENOENT;
	}
	if (cached(a, url, id, rid)) {
		ret = fy_manifest_read(r, rid, m, e2, sizeof(e2));
		if (!ret && !strcmp(label_of(*m), id)) {
			fy_logf(FY_LOG_DEBUG, &(struct fy_log_fields){ .snapshot = id, .target = shown },
				"snapshot %s: in %s (remembered)", id, shown);
			return 0;
		}
		if (!ret) {
			ferry__v1__manifest__free_unpacked(*m, NULL);
			*m = NULL;
		}
		if (ret && ret != -ENOENT) {
			drop_queries(e2);
			snprintf(err, errlen, "%s: %s", shown, e2);
			return ret;
		}
		drop(a, url, rid); /* forgotten (retention), or not what it was: search again */
	}
	return scan(a, r, url, id, rid, m, err, errlen);
}

/* ---- searching the candidates ---- */

struct cand {
	const char *url;
	char prefix[16];           /* of its keys in the secrets: "" or "copy-N." */
	unsigned flags;            /* FY_OPEN_INSECURE */
	struct fy_repo *repo;      /* opened (once per call) */
	int status;                /* 0 untried; 1 searched, not there; -errno */
	char why[600];
};

/* Split a comma-separated list in place, appending candidates. */
static void add_list(struct cand *c, size_t *n, char *list, int *copy_no, unsigned flags)
{
	char *save = NULL;

	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		for (char *e = t + strlen(t); e > t && e[-1] == ' '; )
			*--e = 0;
		if (!*t)
			continue;
		++*copy_no;
		if (*n == CANDS_MAX || *copy_no >= FY_MAX_TARGETS_URL)
			continue;
		c[*n] = (struct cand){ .url = t, .flags = flags };
		snprintf(c[*n].prefix, sizeof(c[*n].prefix), "copy-%d.", *copy_no);
		++*n;
	}
}

static int open_cand(struct fy_agent *a, struct cand *c, struct fy_map_entry *const *secrets, size_t nsecrets)
{
	char dir[700], id[48], e2[768];
	bool s3;
	int ret;

	if (c->repo || c->status < 0)
		return c->status < 0 ? c->status : 0;
	fy_new_id("secrets", id, sizeof(id));
	snprintf(dir, sizeof(dir), "%s/%s", a->tmp_dir, id);
	ret = fy_secrets_write(dir, secrets, nsecrets, c->prefix, &s3, e2, sizeof(e2));
	if (!ret)
		ret = fy_repo_open_dir(c->url, dir, c->flags, NULL, "the request's secrets", &c->repo, e2, sizeof(e2));
	fy_secrets_remove(dir); /* read at open */
	if (ret) {
		c->status = ret;
		drop_queries(e2);
		snprintf(c->why, sizeof(c->why), "%.590s", e2);
	}
	return ret;
}

int fy_lookup_snapshot(struct fy_agent *a, const char *id, struct fy_map_entry *const *params, size_t nparams,
		       struct fy_map_entry *const *secrets, size_t nsecrets, struct fy_found *f, char *err,
		       size_t errlen)
{
	struct cand c[CANDS_MAX];
	char *lists[2] = { NULL, NULL }, shown[512];
	const char *p, *insecure;
	size_t n = 0, k = 0, used = 0;
	int copy_no = 0, ret = -ENOENT, hit = -1, worst = 0;
	unsigned flags;

	memset(f, 0, sizeof(*f));
	if (!fy_our_id(id, "snap")) {
		snprintf(err, errlen, "snapshot %s does not exist: not on this node, and not an id this driver issues "
			 "(snap- and 32 hex digits) that a repository could hold", id);
		return -ENOENT;
	}
	insecure = fy_map_get(params, nparams, FY_P_INSECURE);
	flags = insecure && !strcmp(insecure, "true") ? FY_OPEN_INSECURE : 0;
	if ((p = fy_map_get(params, nparams, FY_P_REPO)) && *p)
		c[n++] = (struct cand){ .url = p, .flags = flags };
	if ((p = fy_map_get(params, nparams, FY_P_COPY)) && (lists[0] = strdup(p)))
		add_list(c, &n, lists[0], &copy_no, flags);
	if ((p = fy_map_get(params, nparams, FY_P_COPY_OPT)) && (lists[1] = strdup(p)))
		add_list(c, &n, lists[1], &copy_no, flags);
	for (size_t i = 0; i < a->conf.nlookup && n < CANDS_MAX; i++)
		c[n++] = (struct cand){ .url = a->conf.lookup[i] };
	/* A URL named twice is searched once, with what named it first. */
	for (size_t i = 0; i < n; i++) {
		bool dup = false;

		for (size_t j = 0; j < k && !dup; j++)
			dup = !strcmp(c[j].url, c[i].url);
		if (!dup)
			c[k++] = c[i];
	}
	n = k;
	if (!n) {
		snprintf(err, errlen, "snapshot %s is not on this node, and no repository is named to look it up in "
			 "(lookup-repositories in the agent's config; for CreateVolume, also %s in the StorageClass)",
			 id, FY_P_REPO);
		goto out;
	}
	/* Where a search remembered it first (one manifest read), then every
	 * candidate in order, reading what was not seen before. */
	for (size_t i = 0; i < n && hit < 0; i++)
		if (cached(a, c[i].url, id, f->rid))
			hit = (int)i;
	if (hit >= 0 && !open_cand(a, &c[hit], secrets, nsecrets)) {
		ret = fy_lookup_in(a, c[hit].repo, c[hit].url, id, f->rid, &f->m, c[hit].why, sizeof(c[hit].why));
		if (!ret)
			goto found;
		c[hit].status = ret == -ENOENT ? 1 : ret;
	}
	for (size_t i = 0; i < n; i++) {
		if (c[i].status || open_cand(a, &c[i], secrets, nsecrets))
			continue;
		ret = scan(a, c[i].repo, c[i].url, id, f->rid, &f->m, c[i].why, sizeof(c[i].why));
		if (!ret) {
			hit = (int)i;
			goto found;
		}
		c[i].status = ret == -ENOENT ? 1 : ret;
	}
	/* Found nowhere.  A repository that could not be read might hold it
	 * (UNAVAILABLE: try again); one these secrets do not open cannot
	 * serve this request anyway; NOT_FOUND when every one was searched,
	 * or when at least one was and the others refused these secrets. */
	for (size_t i = 0; i < n; i++) {
		used += c[i].status == 1;
		if (c[i].status < 0 && fy_lookup_status(c[i].status) == GRPC_STATUS_UNAVAILABLE)
			worst = c[i].status;
		else if (c[i].status < 0 && !worst)
			worst = c[i].status;
	}
	ret = used && (!worst || fy_lookup_status(worst) != GRPC_STATUS_UNAVAILABLE) ? -ENOENT : worst;
	{
		size_t len = (size_t)snprintf(err, errlen, ret == -ENOENT ? "snapshot %s is not on this node nor in "
					      "the repositories searched:" : "snapshot %s is not on this node, and a "
					      "repository to look in could not be searched:", id);

		for (size_t i = 0; i < n && len < errlen; i++) {
			fy_url_shown(c[i].url, shown, sizeof(shown));
			len += (size_t)snprintf(err + len, errlen - len, "%s %.300s", i ? ";" : "",
						c[i].why[0] ? c[i].why : shown);
		}
	}
	goto out;
found:
	f->repo = c[hit].repo;
	c[hit].repo = NULL;
	snprintf(f->url, sizeof(f->url), "%s", c[hit].url);
	fy_url_shown(f->url, f->shown, sizeof(f->shown));
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		fy_repo_close(c[i].repo);
	free(lists[0]);
	free(lists[1]);
	return ret;
}
