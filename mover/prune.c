/* prune: delete the chunks no manifest names.
 *
 * Under the exclusive lock (so no backup is between listing chunks and
 * committing its manifest, see docs/FORMAT.md "Locks and prune"):
 *   1. read every manifest and collect the ids they name; one that cannot be
 *      read, or a snapshots/ folder that cannot be listed, aborts prune
 *      before anything is deleted;
 *   2. list chunks/ with sizes; chunks and no snapshot stop prune too,
 *      unless the caller allows an empty repository;
 *   3. delete each listed chunk that is not named, several deletes in flight;
 *   4. sync, so the deletions are durable. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_gc.h"
#include "idset.h"
#include "repo/lock.h"

struct doomed {
	uint8_t id[FY_ID_LEN];
	uint64_t size;
};

struct prune {
	struct fy_repo *repo;
	struct fy_idset referenced;
	struct fy_prune_result *res;
	struct fy_progress *progress;
	struct doomed *doomed;
	size_t ndoomed, cap;
	int list_err;

	pthread_mutex_t mu;      /* the fields below, during the deletes */
	size_t next;
	int del_err;
	char *err;
	size_t errlen;
};

static int collect_chunk(const char *key, uint64_t size, void *arg)
{
	struct prune *p = arg;
	uint8_t id[FY_ID_LEN];

	if (fy_chunk_key_id(key, id) != 1)
		return 0; /* not a chunk where a chunk lives: not ours to delete */
	p->res->chunks_present++;
	if (fy_idset_has(&p->referenced, id)) {
		p->res->chunks_kept++;
		p->res->bytes_kept += size;
		return 0;
	}
	if (p->ndoomed == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 1024;
		struct doomed *d = realloc(p->doomed, cap * sizeof(*d));

		if (!d)
			return -ENOMEM;
		p->doomed = d;
		p->cap = cap;
	}
	memcpy(p->doomed[p->ndoomed].id, id, FY_ID_LEN);
	p->doomed[p->ndoomed].size = size;
	p->ndoomed++;
	return 0;
}

static void *deleter(void *arg)
{
	struct prune *p = arg;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		size_t i = p->next++;
		bool stop = p->del_err != 0 || i >= p->ndoomed;

		pthread_mutex_unlock(&p->mu);
		if (stop)
			break;
		char key[80];
		int rc;

		int64_t until = 0;

		fy_chunk_key(p->doomed[i].id, key);
		/* Object Lock: an object under retention is never sent a delete. */
		rc = fy_store_retention(p->repo->store, key, &until);
		if (rc == 1) {
			pthread_mutex_lock(&p->mu);
			p->res->chunks_retained++;
			p->res->bytes_retained += p->doomed[i].size;
			if (until > p->res->retained_until)
				p->res->retained_until = until;
			pthread_mutex_unlock(&p->mu);
			if (p->progress)
				atomic_fetch_add(&p->progress->done, p->doomed[i].size);
			continue;
		}
		if (rc == 0)
			rc = fy_store_del(p->repo->store, key);
		if (p->progress)
			atomic_fetch_add(&p->progress->done, p->doomed[i].size);
		pthread_mutex_lock(&p->mu);
		if (rc == 0 || rc == -ENOENT) {
			p->res->chunks_removed++;
			p->res->bytes_removed += p->doomed[i].size;
		} else if (!p->del_err) {
			p->del_err = rc;
			snprintf(p->err, p->errlen, "deleting chunk %s from %s: %s", key, p->repo->url,
				 fy_store_strerror(rc));
		}
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

static int read_manifests(struct prune *p, char *err, size_t errlen)
{
	static const uint8_t zero_id[FY_ID_LEN];
	uint8_t *ids = NULL;
	size_t n = 0;
	int rc = fy_snapshot_ids(p->repo, &ids, &n, err, errlen);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		Ferry__V1__Manifest *m;
		char e2[400];

		rc = fy_manifest_read(p->repo, ids + i * FY_SNAP_ID_LEN, &m, e2, sizeof(e2));
		if (rc < 0) {
			/* Its chunks would look unreferenced: never delete on incomplete knowledge. */
			snprintf(err, errlen, "%s; prune stopped before deleting anything", e2);
			break;
		}
		p->res->snapshots++;
		for (size_t b = 0; b < m->chunk_ids.len / FY_ID_LEN && rc == 0; b++) {
			const uint8_t *id = m->chunk_ids.data + b * FY_ID_LEN;

			if (memcmp(id, zero_id, FY_ID_LEN) != 0 && fy_idset_add(&p->referenced, id, 0, NULL) < 0) {
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
			}
		}
		ferry__v1__manifest__free_unpacked(m, NULL);
	}
	free(ids);
	return rc;
}

static int delete_doomed(struct prune *p, const struct fy_prune_opts *o)
{
	unsigned n = o->threads ? o->threads : fy_store_concurrency(p->repo->store);
	pthread_t tids[64];
	unsigned started = 0;

	if (n > 64)
		n = 64;
	if (n == 0)
		n = 1;
	for (; started < n && started < p->ndoomed; started++)
		if (pthread_create(&tids[started], NULL, deleter, p) != 0)
			break;
	if (started == 0 && p->ndoomed)
		deleter(p);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	return p->del_err;
}

int fy_prune(struct fy_repo *r, const struct fy_prune_opts *o, struct fy_prune_result *res, char *err,
	     size_t errlen)
{
	struct prune p = { .repo = r, .res = res, .err = err, .errlen = errlen, .progress = o->progress };
	struct fy_lock *lk = NULL;
	int rc;

	memset(res, 0, sizeof(*res));
	pthread_mutex_init(&p.mu, NULL);
	if (!o->dry_run) {
		rc = fy_lock_take_note(r, true, "prune", o->note, o->arg, &lk, err, errlen);
		if (rc < 0)
			goto out;
		/* Test hook: FERRY_TEST_STOP_AT=locked stops the process here, holding the
		 * exclusive lock, so a test can show that a backup cannot start meanwhile. */
		const char *stop = getenv("FERRY_TEST_STOP_AT");

		if (stop && !strcmp(stop, "locked"))
			raise(SIGSTOP);
	}
	if (fy_idset_init(&p.referenced, 4096) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (p.progress)
		atomic_store(&p.progress->phase, "reading the manifests");
	rc = read_manifests(&p, err, errlen);
	if (rc < 0)
		goto out;
	res->chunks_referenced = p.referenced.n;
	if (p.progress)
		atomic_store(&p.progress->phase, "listing the chunks");
	rc = fy_repo_list(r, "chunks/", collect_chunk, &p, err, errlen);
	if (rc < 0)
		goto out;
	res->chunks_missing = res->chunks_referenced - res->chunks_kept;
	/* Chunks and not one snapshot: every snapshot forgotten on purpose, or a
	 * snapshots/ folder that lost them.  Deleting everything is only done
	 * when asked for by name. */
	if (res->snapshots == 0 && p.ndoomed > 0 && !o->allow_empty) {
		snprintf(err, errlen, "%s holds %zu chunks and no snapshot: prune would delete every chunk; "
			 "if every snapshot was forgotten on purpose, run prune with --allow-empty", r->url, p.ndoomed);
		rc = -EPERM;
		goto out;
	}
	for (size_t i = 0; o->chunk && i < p.ndoomed; i++)
		o->chunk(p.doomed[i].id, p.doomed[i].size, o->arg);
	if (o->dry_run) {
		res->chunks_removed = p.ndoomed;
		for (size_t i = 0; i < p.ndoomed; i++)
			res->bytes_removed += p.doomed[i].size;
		goto out;
	}
	/* Still ours?  If the lock was removed or went stale, a backup may be running. */
	rc = fy_lock_check(lk, err, errlen);
	if (rc < 0)
		goto out;
	/* Under the exclusive lock no writer is alive: what interrupted writers
	 * left (incomplete multipart uploads, temp files) goes now. */
	res->uploads_aborted = fy_store_cleanup(r->store, 0);
	if (res->uploads_aborted < 0) {
		rc = (int)res->uploads_aborted;
		snprintf(err, errlen, "removing incomplete uploads from %s: %s", r->url, fy_store_strerror(rc));
		goto out;
	}
	if (p.ndoomed == 0)
		goto out;
	if (p.progress) {
		uint64_t total = 0;

		for (size_t i = 0; i < p.ndoomed; i++)
			total += p.doomed[i].size;
		atomic_store(&p.progress->phase, "deleting");
		atomic_store(&p.progress->total, total);
	}
	rc = delete_doomed(&p, o);
	if (rc < 0)
		goto out;
	rc = fy_store_sync(r->store);
	if (rc < 0)
		snprintf(err, errlen, "syncing %s after deleting chunks: %s", r->url, strerror(-rc));
out:
	fy_lock_release(lk);
	fy_idset_free(&p.referenced);
	free(p.doomed);
	pthread_mutex_destroy(&p.mu);
	return rc;
}
