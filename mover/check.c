/* check: the repository's structure, and with read_data every byte.
 *
 * 1. every manifest is read and verified (AEAD tag, crc, block table);
 * 2. every chunk a manifest names exists in the store;
 * 3. with read_data, every named chunk is fetched and verified exactly as a
 *    restore would (tag, inflate, crc32c, HMAC id), on several threads.
 * Each problem is reported as one line naming the snapshot or chunk. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "idset.h"

struct check {
	struct fy_repo *repo;
	struct fy_idset referenced; /* value: index of a snapshot that names the chunk */
	struct fy_idset present;
	uint8_t *snap_ids;
	void (*report)(const char *line, void *arg);
	void *arg;
	struct fy_progress *progress;
	pthread_mutex_t lock;
	size_t pos;                 /* read_data cursor over referenced */
	long problems;
	struct fy_check_result *res;
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->lock);
	c->problems++;
	c->report(line, c->arg);
	pthread_mutex_unlock(&c->lock);
}

/* A chunk is present only under its own key, where restore looks for it;
 * a chunk name anywhere else under chunks/ is a problem of its own. */
static int collect_present(const char *key, uint64_t size, void *arg)
{
	struct check *c = arg;
	uint8_t id[FY_ID_LEN];
	char want[80], shown[300];

	switch (fy_chunk_key_id(key, id)) {
	case 1:
		/* The value: the object's size, for --read-data's progress. */
		return fy_idset_add(&c->present, id, size > UINT32_MAX ? UINT32_MAX : (uint32_t)size, NULL) < 0 ?
		       -ENOMEM : 0;
	case 0:
		fy_chunk_key(id, want);
		problem(c, "chunk object %s is misplaced: a chunk with this id belongs at %s, where restore looks "
			"for it", fy_escape(key, shown, sizeof(shown)), want);
		return 0;
	}
	return 0;
}

static void *read_worker(void *arg)
{
	struct check *c = arg;
	uint32_t cap = FY_MAX_CHUNK;
	uint8_t *plain = malloc(cap), *scratch = malloc(cap);

	if (!plain || !scratch) {
		problem(c, "out of memory");
		goto out;
	}
	for (;;) {
		uint8_t id[FY_ID_LEN];
		uint32_t snap, stored = 0;
		char err[256];
		bool present;

		pthread_mutex_lock(&c->lock);
		const uint8_t *p = fy_idset_next(&c->referenced, &c->pos, &snap);

		if (p)
			memcpy(id, p, FY_ID_LEN);
		present = p && fy_idset_get(&c->present, id, &stored);
		pthread_mutex_unlock(&c->lock);
		if (!p)
			break;
		if (!present)
			continue; /* already reported as missing */
		ssize_t n = fy_chunk_read(c->repo, id, plain, cap, scratch, FY_VERIFY_ID, NULL, err, sizeof(err));

		if (c->progress)
			atomic_fetch_add(&c->progress->done, stored);
		if (n < 0) {
			char hex[2 * FY_SNAP_ID_LEN + 1];

			fy_hex(c->snap_ids + (size_t)snap * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN, hex);
			problem(c, "%s (named by snapshot %s)", err, hex);
			continue;
		}
		pthread_mutex_lock(&c->lock);
		c->res->chunks_read++;
		c->res->bytes_read += (uint64_t)n;
		pthread_mutex_unlock(&c->lock);
	}
out:
	free(plain);
	free(scratch);
	return NULL;
}

long fy_check(struct fy_repo *r, bool read_data, unsigned threads, struct fy_progress *progress,
	      void (*report)(const char *line, void *arg), void *arg, struct fy_check_result *res, char *err,
	      size_t errlen)
{
	struct check c = { .repo = r, .report = report, .arg = arg, .res = res, .progress = progress };
	size_t nsnaps = 0;
	long rc;

	memset(res, 0, sizeof(*res));
	pthread_mutex_init(&c.lock, NULL);
	if (fy_idset_init(&c.referenced, 4096) < 0 || fy_idset_init(&c.present, 4096) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (progress)
		atomic_store(&progress->phase, "reading the manifests");
	rc = fy_snapshot_ids(r, &c.snap_ids, &nsnaps, err, errlen);
	if (rc < 0)
		goto out;
	res->snapshots = nsnaps;
	for (size_t i = 0; i < nsnaps; i++) {
		Ferry__V1__Manifest *m;
		char e2[320];

		if (fy_manifest_read(r, c.snap_ids + i * FY_SNAP_ID_LEN, &m, e2, sizeof(e2)) < 0) {
			problem(&c, "%s", e2);
			continue;
		}
		size_t n = m->chunk_ids.len / FY_ID_LEN;
		static const uint8_t zero_id[FY_ID_LEN];

		for (size_t b = 0; b < n; b++) {
			const uint8_t *id = m->chunk_ids.data + b * FY_ID_LEN;

			if (memcmp(id, zero_id, FY_ID_LEN) != 0 && fy_idset_add(&c.referenced, id, (uint32_t)i, NULL) < 0) {
				ferry__v1__manifest__free_unpacked(m, NULL);
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
				goto out;
			}
		}
		ferry__v1__manifest__free_unpacked(m, NULL);
	}
	res->chunks_referenced = c.referenced.n;
	if (progress)
		atomic_store(&progress->phase, "listing the chunks");
	rc = fy_repo_list(r, "chunks/", collect_present, &c, err, errlen);
	if (rc < 0)
		goto out;
	res->chunks_present = c.present.n;

	size_t pos = 0, referenced_present = 0;
	uint32_t snap;
	const uint8_t *id;

	while ((id = fy_idset_next(&c.referenced, &pos, &snap)) != NULL) {
		char hex[2 * FY_ID_LEN + 1], shex[2 * FY_SNAP_ID_LEN + 1];

		uint32_t stored;

		if (fy_idset_get(&c.present, id, &stored)) {
			referenced_present++;
			if (progress)
				atomic_fetch_add(&progress->total, stored);
			continue;
		}
		fy_hex(id, FY_ID_LEN, hex);
		fy_hex(c.snap_ids + (size_t)snap * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN, shex);
		problem(&c, "chunk %s is missing (named by snapshot %s)", hex, shex);
	}
	res->chunks_unreferenced = c.present.n - referenced_present;

	if (read_data) {
		unsigned n = threads ? threads : 2 * fy_online_cores();

		if (progress)
			atomic_store(&progress->phase, "reading the chunks");
		pthread_t tids[64];
		unsigned started = 0;

		if (n > 64)
			n = 64;
		for (; started < n; started++)
			if (pthread_create(&tids[started], NULL, read_worker, &c) != 0)
				break;
		if (started == 0) {
			snprintf(err, errlen, "cannot start threads");
			rc = -EAGAIN;
			goto out;
		}
		for (unsigned i = 0; i < started; i++)
			pthread_join(tids[i], NULL);
	}
	rc = c.problems;
out:
	fy_idset_free(&c.referenced);
	fy_idset_free(&c.present);
	free(c.snap_ids);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
