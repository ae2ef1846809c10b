/* forget: remove snapshot manifests by a retention policy.
 *
 * The policy (fy_forget_apply) is a pure function of the snapshots' volumes
 * and times; fy_forget reads every manifest, applies it, and deletes the
 * manifests it does not keep.  Chunks are left to prune. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry_gc.h"
#include "repo/lock.h"

static const char *const reason_names[FY_KEEP_NPOLICIES] = { "last", "hourly", "daily", "weekly", "monthly",
							     "yearly" };

const char *fy_keep_reason_name(unsigned bit)
{
	for (unsigned j = 0; j < FY_KEEP_NPOLICIES; j++)
		if (bit == 1u << j)
			return reason_names[j];
	return NULL;
}

void fy_keep_reasons(unsigned reasons, char *out, size_t len)
{
	size_t off = 0;

	if (len)
		out[0] = '\0';
	for (unsigned j = 0; j < FY_KEEP_NPOLICIES; j++) {
		if (!(reasons & (1u << j)) || off >= len)
			continue;
		int w = snprintf(out + off, len - off, "%s%s", off ? "," : "", reason_names[j]);

		off += w > 0 ? (size_t)w : 0;
	}
}

static const char *vol(const char *v)
{
	return v ? v : "";
}

/* Volume ascending, then newest first; the id breaks ties so the order is total. */
static int snap_order(const void *a, const void *b)
{
	const struct fy_forget_snap *x = *(const struct fy_forget_snap *const *)a;
	const struct fy_forget_snap *y = *(const struct fy_forget_snap *const *)b;
	int c = strcmp(vol(x->volume), vol(y->volume));

	if (c)
		return c;
	if (x->created_unix_nano != y->created_unix_nano)
		return x->created_unix_nano > y->created_unix_nano ? -1 : 1;
	return -memcmp(x->id, y->id, FY_SNAP_ID_LEN);
}

/* The bucket of a snapshot for policy j (its nr-th in the group for "last"). */
static int64_t bucket(unsigned j, const struct tm *tm, size_t nr)
{
	int64_t y = tm->tm_year + 1900, m = tm->tm_mon + 1, d = tm->tm_mday;

	switch (1u << j) {
	case FY_KEEP_LAST:
		return (int64_t)nr;
	case FY_KEEP_HOURLY:
		return ((y * 100 + m) * 100 + d) * 100 + tm->tm_hour;
	case FY_KEEP_DAILY:
		return (y * 100 + m) * 100 + d;
	case FY_KEEP_WEEKLY: {
		char g[16] = "", v[8] = "";

		/* ISO 8601 week-numbering year and week (Dec 29 may be week 1 of the next year). */
		strftime(g, sizeof(g), "%G", tm);
		strftime(v, sizeof(v), "%V", tm);
		return strtoll(g, NULL, 10) * 100 + strtoll(v, NULL, 10);
	}
	case FY_KEEP_MONTHLY:
		return y * 100 + m;
	default:
		return y;
	}
}

int fy_forget_apply(const struct fy_forget_snap *snaps, size_t n, const struct fy_forget_policy *p,
		    unsigned *reasons)
{
	const unsigned budget0[FY_KEEP_NPOLICIES] = { p->last, p->hourly, p->daily, p->weekly, p->monthly, p->yearly };
	const struct fy_forget_snap **ord;
	bool any = false;

	for (unsigned j = 0; j < FY_KEEP_NPOLICIES; j++)
		any |= budget0[j] > 0;
	if (!any)
		return -EINVAL;
	if (n == 0)
		return 0;
	ord = malloc(n * sizeof(*ord));
	if (!ord)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		ord[i] = &snaps[i];
		reasons[i] = 0;
	}
	qsort(ord, n, sizeof(*ord), snap_order);
	for (size_t a = 0, b; a < n; a = b) {
		unsigned budget[FY_KEEP_NPOLICIES];
		int64_t last[FY_KEEP_NPOLICIES];
		bool have[FY_KEEP_NPOLICIES] = { false };

		for (b = a; b < n && !strcmp(vol(ord[a]->volume), vol(ord[b]->volume)); b++)
			;
		memcpy(budget, budget0, sizeof(budget));
		for (size_t k = a; k < b; k++) {
			int64_t ns = ord[k]->created_unix_nano;
			time_t t = (time_t)(ns / 1000000000 - (ns % 1000000000 < 0));
			struct tm tm;
			size_t i = (size_t)(ord[k] - snaps);

			if (!localtime_r(&t, &tm)) {
				free(ord);
				return -EOVERFLOW;
			}
			for (unsigned j = 0; j < FY_KEEP_NPOLICIES; j++) {
				if (!budget[j])
					continue;
				int64_t v = bucket(j, &tm, k - a);

				if (have[j] && v == last[j])
					continue;
				reasons[i] |= 1u << j;
				last[j] = v;
				have[j] = true;
				budget[j]--;
			}
		}
	}
	free(ord);
	return 0;
}

void fy_forget_result_free(struct fy_forget_result *res)
{
	for (size_t i = 0; res->items && i < res->n; i++)
		free(res->items[i].volume);
	free(res->items);
	memset(res, 0, sizeof(*res));
}

static int item_order(const void *a, const void *b)
{
	const struct fy_forget_item *x = a, *y = b;
	int c = strcmp(x->volume, y->volume);

	if (c)
		return c;
	if (x->created_unix_nano != y->created_unix_nano)
		return x->created_unix_nano > y->created_unix_nano ? -1 : 1;
	return -memcmp(x->id, y->id, FY_SNAP_ID_LEN);
}

/* Read every manifest (those f lets through) into res->items. */
static int read_snapshots(struct fy_repo *r, const struct fy_snap_filter *f, struct fy_forget_result *res,
			  char *err, size_t errlen)
{
	uint8_t *ids = NULL;
	size_t n = 0;
	int rc = fy_snapshot_ids(r, &ids, &n, err, errlen);

	if (rc < 0)
		return rc;
	res->items = calloc(n ? n : 1, sizeof(*res->items));
	if (!res->items) {
		free(ids);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		Ferry__V1__Manifest *m;
		char e2[400];

		rc = fy_manifest_read(r, ids + i * FY_SNAP_ID_LEN, &m, e2, sizeof(e2));
		if (rc == -ENOENT) {
			rc = 0; /* forgotten meanwhile by another forget */
			continue;
		}
		if (rc < 0) {
			/* Without it the policy would judge its volume on part of the history. */
			snprintf(err, errlen, "%s; nothing was removed", e2);
			break;
		}
		if (fy_snap_filter_match(m, f)) {
			struct fy_forget_item *it = &res->items[res->n];

			memcpy(it->id, m->snapshot_id.data, FY_SNAP_ID_LEN);
			it->created_unix_nano = m->created_unix_nano;
			it->size = m->size;
			it->volume = strdup(m->volume);
			if (!it->volume) {
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
			} else {
				res->n++;
			}
		}
		ferry__v1__manifest__free_unpacked(m, NULL);
		if (rc < 0)
			break;
	}
	free(ids);
	return rc < 0 ? rc : 0;
}

int fy_forget(struct fy_repo *r, const char *volume, const struct fy_forget_policy *p, bool dry_run,
	      struct fy_forget_result *res, char *err, size_t errlen)
{
	struct fy_snap_filter f = { .volume = volume };

	return fy_forget_matching(r, volume ? &f : NULL, p, dry_run, res, err, errlen);
}

int fy_forget_matching(struct fy_repo *r, const struct fy_snap_filter *f, const struct fy_forget_policy *p,
		       bool dry_run, struct fy_forget_result *res, char *err, size_t errlen)
{
	struct fy_lock *lk = NULL;
	struct fy_forget_snap *snaps = NULL;
	unsigned *reasons = NULL;
	int rc;

	memset(res, 0, sizeof(*res));
	if (!dry_run) {
		rc = fy_lock_take(r, false, "forget", &lk, err, errlen);
		if (rc < 0)
			return rc;
	}
	rc = read_snapshots(r, f, res, err, errlen);
	if (rc < 0)
		goto out;
	qsort(res->items, res->n, sizeof(*res->items), item_order);
	snaps = calloc(res->n ? res->n : 1, sizeof(*snaps));
	reasons = calloc(res->n ? res->n : 1, sizeof(*reasons));
	if (!snaps || !reasons) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < res->n; i++) {
		memcpy(snaps[i].id, res->items[i].id, FY_SNAP_ID_LEN);
		snaps[i].volume = res->items[i].volume;
		snaps[i].created_unix_nano = res->items[i].created_unix_nano;
	}
	rc = fy_forget_apply(snaps, res->n, p, reasons);
	if (rc < 0) {
		snprintf(err, errlen, rc == -EINVAL ? "no --keep-* policy given: refusing to remove every snapshot"
						    : "applying the policy: %s", strerror(-rc));
		goto out;
	}
	for (size_t i = 0; i < res->n; i++) {
		res->items[i].reasons = reasons[i];
		if (reasons[i]) {
			res->kept++;
			continue;
		}
		/* Object Lock: a manifest under retention is never sent a delete. */
		char key[64];
		int64_t until = 0;

		fy_snap_key(res->items[i].id, key);
		rc = fy_store_retention(r->store, key, &until);
		if (rc < 0) {
			snprintf(err, errlen, "reading the retention of %s in %s: %s", key, r->url, fy_store_strerror(rc));
			goto out;
		}
		if (rc == 1) {
			res->items[i].retained_until = until;
			res->retained++;
		} else {
			res->removed++;
		}
	}
	rc = 0;
	if (dry_run || res->removed == 0)
		goto out;
	for (size_t i = 0; i < res->n; i++) {
		char key[64];

		if (res->items[i].reasons || res->items[i].retained_until)
			continue;
		fy_snap_key(res->items[i].id, key);
		rc = fy_store_del(r->store, key);
		if (rc < 0 && rc != -ENOENT) {
			snprintf(err, errlen, "removing snapshot manifest %s from %s: %s", key, r->url,
				 fy_store_strerror(rc));
			goto out;
		}
	}
	rc = fy_store_sync(r->store);
	if (rc < 0)
		snprintf(err, errlen, "syncing %s after removing snapshots: %s", r->url, strerror(-rc));
out:
	free(snaps);
	free(reasons);
	fy_lock_release(lk);
	return rc;
}
