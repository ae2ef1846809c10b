/* copy: bring a copy of a repository up to date (ferry copy --from --to).
 *
 * Both repositories have the same keys (fy_repo_init_copy), so objects move
 * as they are, never re-sealed.  Each chunk is verified on the way (AEAD tag,
 * inflation, crc32c) so a damaged chunk is never spread.  Per snapshot: the
 * chunks the target lacks, then a sync, then the manifest — the same commit
 * point as a backup; a rerun after a crash sends only what is still missing. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "ferry.h"
#include "idset.h"
#include "repo/lock.h"

struct copy {
	struct fy_repo *from, *to;
	const uint8_t *ids;    /* chunk ids to send, n * FY_ID_LEN */
	size_t n;
	_Atomic size_t next;
	_Atomic int failed;
	pthread_mutex_t lock;
	struct fy_copy_result *res;
	struct fy_progress *progress;
	char *err;
	size_t errlen;
};

static void copy_fail(struct copy *c, int rc, const char *msg)
{
	pthread_mutex_lock(&c->lock);
	if (!c->failed) {
		c->failed = rc;
		snprintf(c->err, c->errlen, "%s", msg);
	}
	pthread_mutex_unlock(&c->lock);
}

static void *copy_worker(void *arg)
{
	struct copy *c = arg;
	size_t cap = c->from->chunk_size;
	uint8_t *plain = fy_buf_alloc(cap), *scratch = fy_buf_alloc(FY_OBJ_MAX(cap));
	size_t i;

	if (!plain || !scratch) {
		copy_fail(c, -ENOMEM, "out of memory");
		goto out;
	}
	while (!c->failed && (i = atomic_fetch_add(&c->next, 1)) < c->n) {
		const uint8_t *id = c->ids + i * FY_ID_LEN;
		char key[80], hex[2 * FY_ID_LEN + 1], why[200], msg[700];
		void *obj = NULL;
		size_t len = 0;
		int rc;

		fy_chunk_key(id, key);
		fy_hex(id, FY_ID_LEN, hex);
		rc = fy_store_get(c->from->store, key, 0, SIZE_MAX, &obj, &len);
		if (rc < 0) {
			snprintf(msg, sizeof(msg), rc == -ENOENT ? "chunk %s is missing from %s (run ferry check there)"
								 : "reading chunk %s from %s: %s",
				 hex, c->from->url, fy_store_strerror(rc));
			copy_fail(c, rc, msg);
			break;
		}
		ssize_t n = fy_obj_open(c->from, "FYC1", id, FY_ID_LEN, obj, len, plain, cap, scratch, why, sizeof(why));

		if (n < 0) {
			snprintf(msg, sizeof(msg), "chunk %s in %s is corrupt: %s (not copied)", hex, c->from->url, why);
			free(obj);
			copy_fail(c, (int)n, msg);
			break;
		}
		rc = fy_store_put(c->to->store, key, obj, len, FY_PUT_NOREPLACE);
		free(obj);
		if (rc < 0) {
			snprintf(msg, sizeof(msg), "writing chunk %s to %s: %s", hex, c->to->url, fy_store_strerror(rc));
			copy_fail(c, rc, msg);
			break;
		}
		pthread_mutex_lock(&c->lock);
		c->res->chunks_copied++;
		c->res->bytes_copied += len;
		pthread_mutex_unlock(&c->lock);
		if (c->progress)
			atomic_fetch_add(&c->progress->done, (uint64_t)n);
	}
out:
	fy_buf_free(plain);
	fy_buf_free(scratch);
	return NULL;
}

/* A chunk the copy holds where a reader looks for it: a misplaced one
 * (another fan-out folder) does not count, so it is sent again. */
static int add_chunk(const char *key, uint64_t size, void *arg)
{
	uint8_t id[FY_ID_LEN];

	(void)size;
	if (fy_chunk_key_id(key, id) == 1)
		return fy_idset_add(arg, id, 0, NULL) < 0 ? -ENOMEM : 0;
	return 0;
}

/* Send the chunks of snapshot sid that the target lacks, then its manifest.
 * present: the target has the manifest already (a snapshot named on the
 * command line): only missing chunks are sent, which repairs a copy whose
 * chunk objects were lost or removed. */
static int copy_snapshot(struct copy *c, const uint8_t sid[FY_SNAP_ID_LEN], struct fy_idset *have,
			 unsigned threads, struct fy_lock *to_lock, bool present)
{
	Ferry__V1__Manifest *m = NULL;
	uint8_t *need = NULL;
	size_t nneed = 0;
	char key[64], hex[2 * FY_SNAP_ID_LEN + 1], e2[512];
	int rc;

	fy_hex(sid, FY_SNAP_ID_LEN, hex);
	rc = fy_manifest_read(c->from, sid, &m, e2, sizeof(e2));
	if (rc < 0) {
		snprintf(c->err, c->errlen, "snapshot %.8s in %s: %s", hex, c->from->url, e2);
		return rc;
	}
	size_t nblocks = m->chunk_ids.len / FY_ID_LEN;

	need = malloc((nblocks ? nblocks : 1) * FY_ID_LEN);
	if (!need) {
		ferry__v1__manifest__free_unpacked(m, NULL);
		snprintf(c->err, c->errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < nblocks; i++) {
		static const uint8_t zero[FY_ID_LEN];
		const uint8_t *id = m->chunk_ids.data + i * FY_ID_LEN;

		if (memcmp(id, zero, FY_ID_LEN) == 0)
			continue;
		int a = fy_idset_add(have, id, 0, NULL);

		if (a < 0) {
			rc = -ENOMEM;
			break;
		}
		if (a > 0)
			memcpy(need + nneed++ * FY_ID_LEN, id, FY_ID_LEN);
	}
	ferry__v1__manifest__free_unpacked(m, NULL);
	if (rc < 0) {
		free(need);
		snprintf(c->err, c->errlen, "out of memory");
		return rc;
	}
	c->ids = need;
	c->n = nneed;
	/* Known one snapshot at a time: the total grows (plain bytes, at most a block per chunk). */
	if (c->progress)
		atomic_fetch_add(&c->progress->total, (uint64_t)nneed * c->from->chunk_size);
	atomic_store(&c->next, 0);
	pthread_t tids[64];
	unsigned started = 0;

	for (; started < threads && started < 64; started++)
		if (pthread_create(&tids[started], NULL, copy_worker, c) != 0)
			break;
	if (started == 0)
		copy_fail(c, -EAGAIN, "cannot start threads");
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(need);
	c->ids = NULL;
	if (c->failed)
		return c->failed;
	/* Chunks durable on the target before the manifest that names them. */
	rc = fy_store_sync(c->to->store);
	if (rc < 0) {
		snprintf(c->err, c->errlen, "syncing %s: %s", c->to->url, fy_store_strerror(rc));
		return rc;
	}
	rc = fy_lock_check(to_lock, c->err, c->errlen);
	if (rc < 0)
		return rc;
	if (present) {
		c->res->snapshots_present++;
		return 0;
	}
	void *obj = NULL;
	size_t len = 0;

	fy_snap_key(sid, key);
	rc = fy_store_get(c->from->store, key, 0, SIZE_MAX, &obj, &len);
	if (rc == 0)
		rc = fy_store_put(c->to->store, key, obj, len, FY_PUT_DURABLE | FY_PUT_NOREPLACE);
	free(obj);
	if (rc < 0) {
		snprintf(c->err, c->errlen, "copying the manifest of snapshot %.8s to %s: %s", hex, c->to->url,
			 fy_store_strerror(rc));
		return rc;
	}
	c->res->snapshots_copied++;
	return 0;
}

int fy_copy(struct fy_repo *from, struct fy_repo *to, const uint8_t *ids, size_t nids, const struct fy_copy_opts *o,
	    struct fy_copy_result *res, char *err, size_t errlen)
{
	struct copy c = { .from = from, .to = to, .res = res, .err = err, .errlen = errlen,
			  .progress = o ? o->progress : NULL };
	struct fy_lock *lf = NULL, *lt = NULL;
	struct fy_idset have = { 0 };
	uint8_t *all = NULL, *present = NULL;
	size_t nall = 0, npresent = 0;
	unsigned threads = o && o->threads ? o->threads : fy_store_concurrency(to->store);
	struct timespec t0, t1;
	int rc;

	memset(res, 0, sizeof(*res));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!fy_repo_same(from, to)) {
		snprintf(err, errlen, "%s is not a copy of %s (other keys): make it with 'ferry init --repo %s --copy-of %s'",
			 to->url, from->url, to->url, from->url);
		return -EINVAL;
	}
	pthread_mutex_init(&c.lock, NULL);
	/* Shared locks: prune (exclusive) deletes nothing on either side meanwhile. */
	rc = fy_lock_take(from, false, "copy", &lf, err, errlen);
	/* A read-only source (an S3 view as of a time) cannot hold a lock: the
	 * copy goes on without one (docs/store.md, "As of a time"). */
	if (rc == -EROFS) {
		rc = 0;
		err[0] = '\0';
	}
	if (rc == 0)
		rc = fy_lock_take(to, false, "copy", &lt, err, errlen);
	if (rc < 0)
		goto out;
	if (fy_idset_init(&have, 1024) < 0) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = fy_repo_list(to, "chunks/", add_chunk, &have, err, errlen);
	if (rc == 0)
		rc = fy_snapshot_ids(to, &present, &npresent, err, errlen);
	if (rc < 0)
		goto out;
	res->chunks_present = have.n;
	bool named = ids != NULL;

	if (!ids) {
		rc = fy_snapshot_ids(from, &all, &nall, err, errlen);
		if (rc < 0)
			goto out;
		ids = all;
		nids = nall;
	}
	for (size_t i = 0; i < nids && rc == 0; i++) {
		const uint8_t *sid = ids + i * FY_SNAP_ID_LEN;
		bool there = false;

		for (size_t j = 0; j < npresent && !there; j++)
			there = memcmp(present + j * FY_SNAP_ID_LEN, sid, FY_SNAP_ID_LEN) == 0;
		if (there && !named) {
			res->snapshots_present++;
			continue;
		}
		rc = copy_snapshot(&c, sid, &have, threads, lt, there);
	}
out:
	clock_gettime(CLOCK_MONOTONIC, &t1);
	res->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	fy_store_stats(from->store, &res->from_stats);
	fy_store_stats(to->store, &res->to_stats);
	free(all);
	free(present);
	fy_idset_free(&have);
	fy_lock_release(lt);
	fy_lock_release(lf);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
