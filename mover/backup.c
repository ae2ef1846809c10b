/* The backup pipeline:
 *
 *   reader (this thread, the I/O engine, queue_depth reads in flight)
 *     -> workers (crc32c, keyed id, dedupe, deflate, seal)
 *       -> uploaders (store puts in flight)
 *         -> sync, then the manifest: the commit point.
 *
 * Memory is fixed by the flags: (queue_depth + threads) read buffers and
 * (uploaders + threads) object buffers of one chunk each, plus the block
 * table (36 bytes per block).  Holes (SEEK_DATA) are never read; all-zero
 * blocks are never stored.
 *
 * With a parent snapshot, a change source (mover/cbt/) may say which blocks
 * can have changed: the others are never read and keep the parent's ids and
 * checksums.  Without one (or when it fails) every block is read and a block
 * whose keyed id equals the parent's is not compressed, sealed or stored:
 * the manifest scan. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cbt/cbt.h"
#include "ferry.h"
#include "idset.h"
#include "io/io.h"
#include "queue.h"
#include "repo/lock.h"

struct rslot {
	uint8_t *buf;
	int index;
	uint64_t block;
	size_t len;
	struct fy_io_req req;
};

struct uslot {
	uint8_t *buf;
	size_t len;
	uint8_t id[FY_ID_LEN];
	struct fy_digest dg;   /* computed once for every target */
	_Atomic unsigned refs; /* targets still to put it */
};

struct backup;

/* One repository written by this backup: the primary or a copy. */
struct target {
	struct backup *b;
	struct fy_repo *repo;
	bool optional;
	struct fy_idset known; /* chunks it holds (listed, or put by this backup) */
	struct fy_queue upload;
	unsigned nup;          /* uploader threads */
	struct fy_lock *lk;
	_Atomic int failed;    /* an optional target dropped: -errno */
	struct fy_target_result *tr;
};

struct backup {
	struct fy_repo *repo;
	const struct fy_backup_opts *o;
	uint64_t size;
	uint32_t cs;
	uint64_t nblocks;
	uint8_t *ids;          /* nblocks * 32 */
	uint32_t *crcs;        /* nblocks */
	char *source_path;     /* the source's absolute path, recorded in the manifest */
	struct stat source_st; /* at open */

	Ferry__V1__Manifest *parent;
	uint64_t p_same;       /* blocks [0, p_same) cover the same bytes in the parent */
	struct fy_bitmap want; /* with a parent: blocks that may have changed (the change source's answer) */
	bool have_want;
	struct fy_bitmap data; /* blocks that hold data (the allocation map); the rest are holes */

	struct rslot *rslots;
	unsigned nr;
	struct uslot *uslots;
	unsigned nu;
	struct fy_queue rfree, work, ufree;
	struct target t[FY_MAX_TARGETS];
	size_t nt;
	unsigned digests;      /* FY_DG_* any target's store wants */

	pthread_mutex_t lock;  /* the targets' known sets, stats, err */
	struct fy_backup_result *res;
	_Atomic int failed;
	char *err;
	size_t errlen;
};

static void fail(struct backup *b, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct backup *b, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&b->lock);
	if (!b->failed) {
		b->failed = rc;
		va_start(ap, fmt);
		vsnprintf(b->err, b->errlen, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&b->lock);
}

unsigned fy_online_cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t block_len(const struct backup *b, uint64_t i)
{
	uint64_t off = i * b->cs;

	return (size_t)(b->size - off < b->cs ? b->size - off : b->cs);
}

/* A chunk counts as present only under its own key: one in another
 * fan-out folder is invisible to restore, so the block is stored again. */
static int collect_chunk(const char *key, uint64_t size, void *arg)
{
	struct target *t = arg;
	uint8_t id[FY_ID_LEN];

	(void)size;
	if (fy_chunk_key_id(key, id) == 1)
		return fy_idset_add(&t->known, id, 0, NULL) < 0 ? -ENOMEM : 0;
	return 0;
}

static int first_key(const char *key, uint64_t size, void *arg)
{
	(void)key;
	(void)size;
	(void)arg;
	return 1; /* one is enough: the folder can be listed */
}

/* An optional target failed: drop it, keep its reason; a required one fails the backup. */
static void target_failed(struct target *t, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void target_failed(struct target *t, int rc, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!t->optional) {
		fail(t->b, rc, "%s", msg);
		return;
	}
	pthread_mutex_lock(&t->b->lock);
	if (!t->failed) {
		t->failed = rc;
		t->tr->status = rc;
		snprintf(t->tr->error, sizeof(t->tr->error), "%s", msg);
	}
	pthread_mutex_unlock(&t->b->lock);
}

/* Is the chunk held by every target still in the backup? */
static bool held_by_all(struct backup *b, const uint8_t id[FY_ID_LEN])
{
	for (size_t i = 0; i < b->nt; i++)
		if (!b->t[i].failed && !fy_idset_has(&b->t[i].known, id))
			return false;
	return true;
}

static void *worker(void *arg)
{
	struct backup *b = arg;
	struct rslot *s;

	while ((s = fy_queue_pop(&b->work)) != NULL) {
		uint8_t *id = b->ids + s->block * FY_ID_LEN;
		uint32_t crc;

		if (b->failed)
			goto next;
		crc = fy_crc32c(0, s->buf, s->len);
		b->crcs[s->block] = crc;
		if (fy_is_zero(s->buf, s->len)) {
			memset(id, 0, FY_ID_LEN);
			pthread_mutex_lock(&b->lock);
			b->res->bytes_zero += s->len;
			pthread_mutex_unlock(&b->lock);
			goto next;
		}
		if (fy_chunk_id(b->repo->id_key, s->buf, s->len, id) < 0) {
			fail(b, -EIO, "computing a chunk id failed");
			goto next;
		}
		/* The targets that lack this chunk get it; when none does, it is
		 * the parent's block again or a duplicate. */
		unsigned need = 0;
		int added = 0;

		pthread_mutex_lock(&b->lock);
		for (size_t t = 0; t < b->nt && added >= 0; t++) {
			if (b->t[t].failed)
				continue;
			int a = fy_idset_add(&b->t[t].known, id, 0, NULL);

			if (a < 0)
				added = a;
			else if (a > 0)
				need |= 1u << t;
		}
		if (added == 0 && need)
			added = 1;
		if (added == 0) {
			if (b->parent && s->block < b->p_same &&
			    memcmp(id, b->parent->chunk_ids.data + s->block * FY_ID_LEN, FY_ID_LEN) == 0) {
				b->res->bytes_same += s->len;
			} else {
				b->res->bytes_dedup += s->len;
				b->res->chunks_dedup++;
			}
		}
		pthread_mutex_unlock(&b->lock);
		if (added < 0) {
			fail(b, -ENOMEM, "out of memory");
			goto next;
		}
		if (added == 0)
			goto next;

		struct uslot *u = fy_queue_pop(&b->ufree);
		ssize_t n = fy_obj_seal(b->repo, "FYC1", id, FY_ID_LEN, s->buf, s->len, crc, b->repo->level,
					u->buf);
		if (n < 0) {
			fy_queue_push(&b->ufree, u);
			fail(b, (int)n, "sealing block %llu: %s", (unsigned long long)s->block, strerror((int)-n));
			goto next;
		}
		u->len = (size_t)n;
		memcpy(u->id, id, FY_ID_LEN);
		u->dg.have = 0;
		fy_digest_compute(&u->dg, b->digests, u->buf, u->len);
		pthread_mutex_lock(&b->lock);
		b->res->bytes_new += s->len;
		b->res->bytes_stored += (uint64_t)n;
		b->res->chunks_new++;
		pthread_mutex_unlock(&b->lock);
		atomic_store(&u->refs, (unsigned)__builtin_popcount(need));
		for (size_t t = 0; t < b->nt; t++)
			if (need & (1u << t))
				fy_queue_push(&b->t[t].upload, u);
next:
		if (b->o->progress)
			atomic_fetch_add(&b->o->progress->done, s->len);
		fy_queue_push(&b->rfree, s);
	}
	return NULL;
}

static void *uploader(void *arg)
{
	struct target *t = arg;
	struct backup *b = t->b;
	struct uslot *u;

	while ((u = fy_queue_pop(&t->upload)) != NULL) {
		if (!b->failed && !t->failed) {
			char key[80], hex[2 * FY_ID_LEN + 1];
			int rc;

			fy_chunk_key(u->id, key);
			rc = fy_store_put_dg(t->repo->store, key, u->buf, u->len, FY_PUT_NOREPLACE, &u->dg);
			if (rc < 0) {
				fy_hex(u->id, FY_ID_LEN, hex);
				if (rc == -ENOSPC)
					target_failed(t, rc, "repository %s is full: writing chunk %s: %s", t->repo->url,
						      hex, fy_store_strerror(rc));
				else
					target_failed(t, rc, "writing chunk %s to %s: %s", hex, t->repo->url,
						      fy_store_strerror(rc));
			} else {
				pthread_mutex_lock(&b->lock);
				t->tr->chunks_new++;
				t->tr->bytes_stored += u->len;
				pthread_mutex_unlock(&b->lock);
			}
		}
		if (atomic_fetch_sub(&u->refs, 1) == 1)
			fy_queue_push(&b->ufree, u);
	}
	return NULL;
}

/* Object buffers: enough for the busiest target's puts in flight, the
 * workers, and one more per target; a slow target holds buffers until its
 * puts finish, so the others wait for it rather than memory growing. */
static int alloc_buffers(struct backup *b, unsigned depth, unsigned threads)
{
	unsigned most = 0;

	for (size_t t = 0; t < b->nt; t++)
		most = b->t[t].nup > most ? b->t[t].nup : most;
	b->nr = depth + threads;
	b->nu = most + threads + (unsigned)b->nt;
	b->rslots = calloc(b->nr, sizeof(*b->rslots));
	b->uslots = calloc(b->nu, sizeof(*b->uslots));
	if (!b->rslots || !b->uslots)
		return -ENOMEM;
	if (fy_queue_init(&b->rfree, b->nr) < 0 || fy_queue_init(&b->work, b->nr + threads) < 0 ||
	    fy_queue_init(&b->ufree, b->nu) < 0)
		return -ENOMEM;
	for (size_t t = 0; t < b->nt; t++)
		if (fy_queue_init(&b->t[t].upload, b->nu + b->t[t].nup) < 0)
			return -ENOMEM;
	for (unsigned i = 0; i < b->nr; i++) {
		b->rslots[i].buf = fy_buf_alloc(b->cs);
		b->rslots[i].index = (int)i;
		if (!b->rslots[i].buf)
			return -ENOMEM;
		fy_queue_push(&b->rfree, &b->rslots[i]);
	}
	for (unsigned i = 0; i < b->nu; i++) {
		b->uslots[i].buf = fy_buf_alloc(FY_OBJ_MAX(b->cs));
		if (!b->uslots[i].buf)
			return -ENOMEM;
		fy_queue_push(&b->ufree, &b->uslots[i]);
	}
	return 0;
}

static void free_buffers(struct backup *b)
{
	for (unsigned i = 0; b->rslots && i < b->nr; i++)
		fy_buf_free(b->rslots[i].buf);
	for (unsigned i = 0; b->uslots && i < b->nu; i++)
		fy_buf_free(b->uslots[i].buf);
	free(b->rslots);
	free(b->uslots);
	fy_queue_destroy(&b->rfree);
	fy_queue_destroy(&b->work);
	fy_queue_destroy(&b->ufree);
	for (size_t t = 0; t < b->nt; t++)
		fy_queue_destroy(&b->t[t].upload);
}

/* Handle one completed read: hand it to the workers, or fail naming the offset. */
static void read_done(struct backup *b, struct rslot *s)
{
	if (s->req.res < 0 || (size_t)s->req.res < s->len) {
		if (s->req.res < 0)
			fail(b, (int)s->req.res, "reading %s at offset %llu: %s", b->o->source,
			     (unsigned long long)s->req.off, strerror((int)-s->req.res));
		else
			fail(b, -EIO, "reading %s at offset %llu: short read (%zd of %zu bytes): the source shrank?",
			     b->o->source, (unsigned long long)s->req.off, s->req.res, s->len);
		fy_queue_push(&b->rfree, s);
		return;
	}
	pthread_mutex_lock(&b->lock);
	b->res->bytes_read += s->len;
	pthread_mutex_unlock(&b->lock);
	fy_queue_push(&b->work, s);
}

/* The reader: keep depth reads in flight over the blocks that hold data. */
static void read_volume(struct backup *b, struct fy_io *io, unsigned depth)
{
	struct fy_io_req *done[64];
	unsigned inflight = 0;
	uint64_t next = 0;
	uint32_t zero_crc_full = 0;
	bool have_zero_crc = false;

	while ((next < b->nblocks && !b->failed) || inflight > 0) {
		if (b->o->cancel && atomic_load(b->o->cancel) && !b->failed)
			fail(b, -ECANCELED, "backup of %s cancelled (what is stored stays stored; a rerun resumes)",
			     b->o->source);
		while (next < b->nblocks && inflight < depth && !b->failed) {
			size_t len = block_len(b, next);
			uint64_t off = next * b->cs;

			if (b->have_want && !fy_bitmap_test(&b->want, next)) {
				/* Unchanged since the parent: its id and checksum stand. */
				const uint8_t *pid = b->parent->chunk_ids.data + next * FY_ID_LEN;
				static const uint8_t zero[FY_ID_LEN];

				memcpy(b->ids + next * FY_ID_LEN, pid, FY_ID_LEN);
				b->crcs[next] = b->parent->block_crc32c[next];
				pthread_mutex_lock(&b->lock);
				if (memcmp(pid, zero, FY_ID_LEN) == 0)
					b->res->bytes_zero += len;
				else
					b->res->bytes_reused += len;
				pthread_mutex_unlock(&b->lock);
				if (b->o->progress)
					atomic_fetch_add(&b->o->progress->done, len);
				next++;
				continue;
			}
			if (!fy_bitmap_test(&b->data, next)) {
				/* Never read, never stored: a zero block in the manifest. */
				if (len == b->cs && have_zero_crc) {
					b->crcs[next] = zero_crc_full;
				} else {
					struct rslot *z = fy_queue_pop(&b->rfree);

					memset(z->buf, 0, len);
					b->crcs[next] = fy_crc32c(0, z->buf, len);
					fy_queue_push(&b->rfree, z);
					if (len == b->cs) {
						zero_crc_full = b->crcs[next];
						have_zero_crc = true;
					}
				}
				memset(b->ids + next * FY_ID_LEN, 0, FY_ID_LEN);
				pthread_mutex_lock(&b->lock);
				b->res->bytes_zero += len;
				pthread_mutex_unlock(&b->lock);
				if (b->o->progress)
					atomic_fetch_add(&b->o->progress->done, len);
				next++;
				continue;
			}
			struct rslot *s = inflight ? fy_queue_trypop(&b->rfree) : fy_queue_pop(&b->rfree);

			if (!s)
				break;
			s->block = next;
			s->len = len;
			s->req = (struct fy_io_req){
				.op = FY_IO_READ,
				.buf = s->buf,
				/* O_DIRECT wants whole sectors: the buffer holds a whole chunk. */
				.len = (len + FY_IO_ALIGN - 1) & ~(size_t)(FY_IO_ALIGN - 1),
				.off = off,
				.buf_index = s->index,
				.udata = s,
			};
			int rc = fy_io_submit(io, &s->req);

			if (rc < 0) {
				fy_queue_push(&b->rfree, s);
				fail(b, rc, "reading %s at offset %llu: %s", b->o->source, (unsigned long long)off,
				     strerror(-rc));
				break;
			}
			inflight++;
			next++;
		}
		if (inflight == 0)
			continue;
		int n = fy_io_reap(io, done, 1, 64);

		if (n < 0) {
			fail(b, n, "reading %s: %s", b->o->source, strerror(-n));
			break; /* the engine is broken: requests in flight are abandoned with it */
		}
		for (int i = 0; i < n; i++)
			read_done(b, done[i]->udata);
		inflight -= (unsigned)n;
	}
}

static int open_source(const char *path, bool *direct, uint64_t *size, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "cannot open source %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "source %s is not a regular file or a block device", path);
		return -EINVAL;
	}
	fd = fy_io_open_path(path, false, direct);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open source %s: %s", path, strerror(-fd));
		return fd;
	}
	rc = fy_io_size(fd, size);
	if (rc < 0) {
		snprintf(err, errlen, "cannot size source %s: %s", path, strerror(-rc));
		close(fd);
		return rc;
	}
	return fd;
}

/* Ask one change source which blocks may have changed; a failure leaves
 * its reason in why. */
static int ask_source(struct backup *b, const struct fy_cbt_ops *src, const char *arg, char *why, size_t whylen)
{
	struct fy_cbt_req req = {
		.source = b->source_path,
		.size = b->size,
		.chunk_size = b->cs,
		.parent_size = b->parent->size,
		.arg = arg,
	};

	memset(b->want.w, 0, (b->want.nbits + 63) / 64 * sizeof(uint64_t));
	int rc = src->changed(&req, &b->want, why, whylen);

	if (rc == 0)
		snprintf(b->res->change_source, sizeof(b->res->change_source), "%s", src->name);
	return rc;
}

/* A change source failed: the backup goes on as a manifest scan.  Only a
 * source the user asked for earns a warning. */
static int fall_back(struct backup *b, const char *source, const char *why, bool asked)
{
	char why2[256];

	if (asked)
		snprintf(b->res->warning, sizeof(b->res->warning),
			 "change source %s failed (%s): falling back to a manifest scan", source, why);
	else if (b->o->verbose)
		fprintf(stderr, "ferry: extent diff against the parent's source not possible (%s)\n", why);
	return ask_source(b, &fy_cbt_manifest_scan, NULL, why2, sizeof(why2));
}

/* Is base the very file the parent was read from, unmodified since?  Its
 * path, inode and ctime must match what the parent recorded: otherwise an
 * extent it shares with the source may hold bytes the parent never saw. */
static int check_base(const struct backup *b, const char *base, char *why, size_t whylen)
{
	const Ferry__V1__Manifest *p = b->parent;
	char *real = realpath(base, NULL);
	struct stat st;
	int rc = 0;

	if (!real || stat(real, &st) < 0) {
		rc = -errno;
		snprintf(why, whylen, "base image %.200s: %s", base, strerror(-rc));
		free(real);
		return rc;
	}
	if (strcmp(real, p->source) != 0) {
		snprintf(why, whylen, "base image %.150s is not %.150s, the path the parent was read from", real,
			 p->source);
		rc = -EINVAL;
	} else if (!p->source_inode) {
		snprintf(why, whylen, "the parent has no record of its source file's identity");
		rc = -EINVAL;
	} else if ((uint64_t)st.st_ino != p->source_inode ||
		   (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec != p->source_ctime_unix_nano) {
		snprintf(why, whylen, "base image %.200s was replaced or modified after the parent read it", real);
		rc = -ESTALE;
	} else if (st.st_dev != b->source_st.st_dev) {
		snprintf(why, whylen, "base image %.150s and source %.150s are on different filesystems", real,
			 b->source_path);
		rc = -EXDEV;
	}
	free(real);
	return rc;
}

/* Find and load the parent, then ask the change source which blocks to read.
 * Runs after the chunk listing: a parent's chunk that is not in the
 * repository any more is never reused blindly. */
static int setup_parent(struct backup *b, char *err, size_t errlen)
{
	const struct fy_backup_opts *o = b->o;
	const char *arg = o->parent ? o->parent : "auto";
	bool automatic = strcmp(arg, "auto") == 0;
	uint8_t pid[FY_SNAP_ID_LEN];
	int rc;

	snprintf(b->res->change_source, sizeof(b->res->change_source), "full");
	if ((o->changed_ranges || o->base_image) && o->manifest_scan) {
		snprintf(err, errlen, "a manifest scan ignores change sources: drop --changed-ranges/--base-image");
		return -EINVAL;
	}
	if ((o->changed_ranges || o->base_image) && strcmp(arg, "none") == 0) {
		snprintf(err, errlen, "a change source needs a parent: --parent none contradicts it");
		return -EINVAL;
	}
	if (o->changed_ranges && automatic) {
		/* The ranges describe the change since one particular snapshot:
		 * guessing which one could make a wrong backup. */
		snprintf(err, errlen, "--changed-ranges needs --parent SNAPSHOT (the snapshot the ranges are relative to)");
		return -EINVAL;
	}
	if (strcmp(arg, "none") == 0)
		return 0;
	if (automatic) {
		char e2[256];

		rc = fy_snapshot_newest(b->repo, o->volume, pid, &b->parent, e2, sizeof(e2));
		if (rc == -ENOENT)
			return 0; /* the volume's first snapshot */
		if (rc < 0) {
			snprintf(err, errlen, "finding the parent: %s", e2);
			return rc;
		}
	} else {
		/* "latest" is the newest snapshot of this volume, as for "auto";
		 * an id may name another volume's snapshot (a clone's parent). */
		struct fy_snap_filter same = { .volume = o->volume };

		rc = fy_snapshot_select(b->repo, arg, strcmp(arg, "latest") ? NULL : &same, pid, &b->parent, err,
					errlen);
		if (rc < 0)
			return rc;
	}
	if (b->parent->chunk_size != b->cs) {
		char hex[2 * FY_SNAP_ID_LEN + 1];

		fy_hex(pid, FY_SNAP_ID_LEN, hex);
		snprintf(err, errlen, "parent %.8s has %u-byte blocks, the repository %u: use --parent none", hex,
			 b->parent->chunk_size, b->cs);
		return -EINVAL;
	}
	memcpy(b->res->parent_id, pid, FY_SNAP_ID_LEN);
	b->res->has_parent = true;

	uint64_t p_size = b->parent->size, common = b->size < p_size ? b->size : p_size;

	b->p_same = b->size == p_size ? b->nblocks : common / b->cs;
	/* The best source available: one the user named, else an extent diff
	 * against the file the parent was read from when it is a different
	 * file beside this one (a reflink clone kept for the purpose), else the
	 * manifest scan. */
	const char *base = o->base_image;
	bool asked = o->changed_ranges || o->base_image;

	if (!asked && !o->manifest_scan && S_ISREG(b->source_st.st_mode) && b->parent->source_inode &&
	    strcmp(b->parent->source, b->source_path) != 0) {
		struct stat st;

		if (stat(b->parent->source, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == b->source_st.st_dev)
			base = b->parent->source;
	}
	const struct fy_cbt_ops *src = o->changed_ranges ? &fy_cbt_range_list
				       : base		 ? &fy_cbt_extent_diff
							 : &fy_cbt_manifest_scan;
	char why[384];

	if (fy_bitmap_init(&b->want, b->nblocks) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->have_want = true;
	if (base && check_base(b, base, why, sizeof(why)) < 0)
		rc = fall_back(b, src->name, why, asked);
	else if ((rc = ask_source(b, src, o->changed_ranges ? o->changed_ranges : base, why, sizeof(why))) < 0 &&
		 rc != -ENOMEM)
		rc = fall_back(b, src->name, why, asked);
	if (rc < 0) {
		snprintf(err, errlen, rc == -ENOMEM ? "out of memory" : "the manifest scan cannot start: %s", why);
		return rc;
	}
	if (b->p_same < b->nblocks)
		fy_bitmap_set_range(&b->want, b->p_same, b->nblocks - 1);
	/* A chunk of the parent that is gone (damage, a prune outside the
	 * rules) is read and stored again rather than referenced. */
	for (uint64_t i = 0; i < b->p_same; i++) {
		const uint8_t *id = b->parent->chunk_ids.data + i * FY_ID_LEN;
		static const uint8_t zero[FY_ID_LEN];

		if (!fy_bitmap_test(&b->want, i) && memcmp(id, zero, FY_ID_LEN) != 0 && !held_by_all(b, id))
			fy_bitmap_set(&b->want, i);
	}
	return 0;
}

static int write_manifest(struct backup *b, int64_t started_ns, char *err, size_t errlen)
{
	Ferry__V1__Manifest m = FERRY__V1__MANIFEST__INIT;
	Ferry__V1__BackupStats st = FERRY__V1__BACKUP_STATS__INIT;
	Ferry__V1__Manifest__LabelsEntry *entries = NULL, **ep = NULL;
	char host[256] = "";
	int rc;

	if (fy_random(b->res->snapshot_id, FY_SNAP_ID_LEN) < 0) {
		snprintf(err, errlen, "no random bytes for the snapshot id");
		return -EIO;
	}
	gethostname(host, sizeof(host) - 1);
	m.format_version = FY_FORMAT_VERSION;
	m.snapshot_id.data = b->res->snapshot_id;
	m.snapshot_id.len = FY_SNAP_ID_LEN;
	m.volume = (char *)b->o->volume;
	m.size = b->size;
	m.chunk_size = b->cs;
	m.created_unix_nano = started_ns;
	m.hostname = host;
	m.source = b->source_path;
	if (S_ISREG(b->source_st.st_mode)) {
		m.source_inode = (uint64_t)b->source_st.st_ino;
		m.source_ctime_unix_nano =
			(int64_t)b->source_st.st_ctim.tv_sec * 1000000000 + b->source_st.st_ctim.tv_nsec;
	}
	if (b->res->has_parent) {
		m.parent_id.data = b->res->parent_id;
		m.parent_id.len = FY_SNAP_ID_LEN;
	}
	m.chunk_ids.data = b->ids;
	m.chunk_ids.len = b->nblocks * FY_ID_LEN;
	m.block_crc32c = b->crcs;
	m.n_block_crc32c = b->nblocks;
	if (b->o->nlabels) {
		entries = calloc(b->o->nlabels, sizeof(*entries));
		ep = calloc(b->o->nlabels, sizeof(*ep));
		if (!entries || !ep) {
			free(entries);
			free(ep);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		for (size_t i = 0; i < b->o->nlabels; i++) {
			ferry__v1__manifest__labels_entry__init(&entries[i]);
			entries[i].key = (char *)b->o->labels[i].key;
			entries[i].value = (char *)b->o->labels[i].value;
			ep[i] = &entries[i];
		}
		m.labels = ep;
		m.n_labels = b->o->nlabels;
	}
	st.bytes_read = b->res->bytes_read;
	st.bytes_new = b->res->bytes_new;
	st.bytes_stored = b->res->bytes_stored;
	st.bytes_zero = b->res->bytes_zero;
	st.bytes_dedup = b->res->bytes_dedup;
	st.chunks_new = b->res->chunks_new;
	st.chunks_dedup = b->res->chunks_dedup;
	st.bytes_reused = b->res->bytes_reused;
	st.bytes_same = b->res->bytes_same;
	st.change_source = b->res->change_source;
	st.duration_nano = (uint64_t)(b->res->seconds * 1e9);
	m.stats = &st;
	/* The same snapshot to every target still in the backup, primary first:
	 * each target's chunks are durable (synced) before its manifest. */
	rc = 0;
	for (size_t t = 0; t < b->nt; t++) {
		struct target *tg = &b->t[t];
		char e2[512];
		int r2;

		if (tg->failed)
			continue;
		r2 = fy_manifest_write(tg->repo, &m, e2, sizeof(e2));
		if (r2 < 0) {
			if (tg->optional) {
				tg->failed = r2;
				tg->tr->status = r2;
				snprintf(tg->tr->error, sizeof(tg->tr->error), "%s", e2);
			} else if (rc == 0) {
				rc = r2;
				if (t == 0)
					snprintf(err, errlen, "%s", e2);
				else
					snprintf(err, errlen, "copy %s: %s", tg->repo->url, e2);
				if (t == 0)
					break; /* no snapshot on the primary: none on the copies either */
			}
		}
	}
	free(entries);
	free(ep);
	return rc;
}

/* Names and tags are printed by every reader of the repository: printable
 * text only (no control character could forge a row of a listing). */
static int check_text(const char *what, const char *s, char *err, size_t errlen)
{
	char shown[200];
	size_t at = 0;

	if (!s || fy_printable(s, &at) == 0)
		return 0;
	snprintf(err, errlen, "%s '%s' holds a control character or bytes that are not UTF-8 (byte %zu): names and "
		 "tags must be printable text", what, fy_escape(s, shown, sizeof(shown)), at);
	return -EINVAL;
}

static int check_names(const struct fy_backup_opts *o, char *err, size_t errlen)
{
	int rc = check_text("the volume name", o->volume, err, errlen);

	for (size_t i = 0; rc == 0 && i < o->nlabels; i++) {
		char what[300], shown[200];

		rc = check_text("the tag key", o->labels[i].key, err, errlen);
		snprintf(what, sizeof(what), "the value of tag %s", fy_escape(o->labels[i].key, shown, sizeof(shown)));
		if (rc == 0)
			rc = check_text(what, o->labels[i].value, err, errlen);
	}
	return rc;
}

int fy_backup(struct fy_repo *r, const struct fy_backup_opts *o, struct fy_backup_result *res,
	      char *err, size_t errlen)
{
	struct backup b = { .repo = r, .o = o, .res = res, .err = err, .errlen = errlen, .cs = r->chunk_size };
	const struct fy_io_ops *ops;
	struct fy_io *io = NULL;
	char why[256];
	bool direct = false;
	unsigned depth = o->queue_depth ? o->queue_depth : 8;
	unsigned threads = o->threads ? o->threads : fy_online_cores();
	unsigned uploaders = 0;
	pthread_t *tids = NULL;
	void **bufs = NULL;
	unsigned nworkers = 0, nstarted = 0;
	double t0 = now_s();
	struct timespec wall;
	int fd = -1, rc;

	memset(res, 0, sizeof(*res));
	if (check_names(o, err, errlen) < 0)
		return -EINVAL;
	pthread_mutex_init(&b.lock, NULL);
	if (o->ncopies >= FY_MAX_TARGETS) {
		snprintf(err, errlen, "at most %d copies in one backup", FY_MAX_TARGETS - 1);
		return -EINVAL;
	}
	b.nt = 1 + o->ncopies;
	res->ntargets = b.nt;
	for (size_t t = 0; t < b.nt; t++) {
		struct target *tg = &b.t[t];

		tg->b = &b;
		tg->repo = t ? o->copies[t - 1] : r;
		tg->optional = t && o->copy_optional && o->copy_optional[t - 1];
		tg->tr = &res->targets[t];
		tg->tr->optional = tg->optional;
		snprintf(tg->tr->url, sizeof(tg->tr->url), "%s", tg->repo->url);
		tg->nup = o->uploaders ? o->uploaders : fy_store_concurrency(tg->repo->store);
		uploaders += tg->nup;
		b.digests |= fy_store_digests(tg->repo->store);
		if (t && !fy_repo_same(r, tg->repo)) {
			snprintf(err, errlen, "%s is not a copy of %s (other keys): make it with 'ferry init --repo %s "
				 "--copy-of %s'", tg->repo->url, r->url, tg->repo->url, r->url);
			rc = -EINVAL;
			goto out;
		}
		if (fy_idset_init(&tg->known, 1024) < 0) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
	}
	clock_gettime(CLOCK_REALTIME, &wall);
	if (!o->volume || !*o->volume) {
		snprintf(err, errlen, "no volume name: give --volume NAME");
		rc = -EINVAL;
		goto out;
	}
	rc = fy_io_select(o->io_engine ? o->io_engine : "auto", &ops, why, sizeof(why));
	if (rc < 0) {
		if (rc == -EINVAL)
			snprintf(err, errlen, "unknown I/O engine '%s' (auto, io_uring, libaio, psync)", o->io_engine);
		else
			snprintf(err, errlen, "I/O engine %s cannot run here: %s", o->io_engine, why);
		goto out;
	}
	fd = open_source(o->source, &direct, &b.size, err, errlen);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	if (fstat(fd, &b.source_st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot stat source %s: %s", o->source, strerror(-rc));
		goto out;
	}
	b.source_path = realpath(o->source, NULL);
	if (!b.source_path) {
		rc = -errno;
		snprintf(err, errlen, "cannot resolve source %s: %s", o->source, strerror(-rc));
		goto out;
	}
	snprintf(res->engine, sizeof(res->engine), "%s", ops->name);
	res->direct = direct;
	res->size = b.size;
	if (o->progress)
		o->progress->total = b.size;
	if (o->verbose)
		fprintf(stderr, "ferry: I/O engine %s (%s), %s, queue depth %u, %u workers, %u uploaders to %zu target%s\n",
			ops->name, why, direct ? "O_DIRECT" : "buffered (O_DIRECT refused)", depth, threads,
			uploaders, b.nt, b.nt > 1 ? "s" : "");

	b.nblocks = (b.size + b.cs - 1) / b.cs;
	b.ids = calloc(b.nblocks ? b.nblocks : 1, FY_ID_LEN);
	b.crcs = calloc(b.nblocks ? b.nblocks : 1, sizeof(uint32_t));
	if (!b.ids || !b.crcs || alloc_buffers(&b, depth, threads) < 0) {
		snprintf(err, errlen, "out of memory for %u buffers of %u bytes", b.nr + b.nu, b.cs);
		rc = -ENOMEM;
		goto out;
	}
	/* Shared lock from before the chunk listing until the manifest is durable:
	 * prune (exclusive) cannot delete a chunk this backup dedupes against. */
	for (size_t t = 0; t < b.nt; t++) {
		struct target *tg = &b.t[t];
		char e2[512];

		rc = fy_lock_take(tg->repo, false, "backup", &tg->lk, e2, sizeof(e2));
		if (rc == 0)
			rc = fy_repo_list(tg->repo, "chunks/", collect_chunk, tg, e2, sizeof(e2));
		/* The folder the manifest goes to must be sound too (without a
		 * parent to look for, nothing else lists it): a put would make a
		 * missing one again, and hide that it was lost. */
		if (rc == 0)
			rc = fy_repo_list(tg->repo, "snapshots/", first_key, NULL, e2, sizeof(e2));
		if (rc > 0)
			rc = 0;
		if (rc < 0 && tg->optional) {
			target_failed(tg, rc, "%s", e2);
		} else if (rc < 0) {
			if (t)
				snprintf(err, errlen, "copy %s: %s", tg->repo->url, e2);
			else
				snprintf(err, errlen, "%s", e2);
			goto out;
		}
	}
	rc = 0;
	/* Test hook: FERRY_TEST_STOP_AT=listed stops the process here (SIGSTOP), lock
	 * held and chunks listed, so tests/integration/t_prune.sh can race prune against it. */
	if (getenv("FERRY_TEST_STOP_AT") && !strcmp(getenv("FERRY_TEST_STOP_AT"), "listed"))
		raise(SIGSTOP);
	rc = setup_parent(&b, err, errlen);
	if (rc < 0)
		goto out;
	{
		/* Holes are never read.  Without a map (an error walking it),
		 * every block is read: slower, never wrong. */
		struct fy_cbt_req areq = { .source = b.source_path, .size = b.size, .chunk_size = b.cs };

		if (fy_bitmap_init(&b.data, b.nblocks) < 0) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		if (fy_cbt_alloc_map.changed(&areq, &b.data, why, sizeof(why)) < 0) {
			if (o->verbose)
				fprintf(stderr, "ferry: %s: reading every block\n", why);
			if (b.nblocks)
				fy_bitmap_set_range(&b.data, 0, b.nblocks - 1);
		}
	}
	if (o->verbose) {
		char hex[2 * FY_SNAP_ID_LEN + 1];

		fy_hex(res->parent_id, FY_SNAP_ID_LEN, hex);
		if (res->has_parent)
			fprintf(stderr, "ferry: parent %.8s, change source %s (%llu of %llu blocks to read)\n", hex,
				res->change_source, (unsigned long long)fy_bitmap_count(&b.want),
				(unsigned long long)b.nblocks);
		else
			fprintf(stderr, "ferry: no parent: a full backup\n");
	}
	bufs = calloc(b.nr, sizeof(*bufs));
	if (!bufs) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < b.nr; i++)
		bufs[i] = b.rslots[i].buf;
	struct fy_io_params params = { .depth = depth, .bufs = bufs, .nbufs = b.nr, .buf_size = b.cs };

	rc = ops->init(&io, fd, &params);
	if (rc < 0) {
		snprintf(err, errlen, "starting I/O engine %s on %s: %s", ops->name, o->source, strerror(-rc));
		goto out;
	}

	tids = calloc(threads + uploaders, sizeof(*tids));
	if (!tids) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (; nworkers < threads; nworkers++)
		if (pthread_create(&tids[nworkers], NULL, worker, &b) != 0)
			break;
	unsigned started[FY_MAX_TARGETS] = { 0 };
	bool all_started = nworkers == threads;

	for (size_t t = 0; t < b.nt && all_started; t++)
		for (; started[t] < b.t[t].nup; started[t]++, nstarted++)
			if (pthread_create(&tids[threads + nstarted], NULL, uploader, &b.t[t]) != 0) {
				all_started = false;
				break;
			}
	if (!all_started)
		fail(&b, -EAGAIN, "cannot start threads");
	else
		read_volume(&b, io, depth);

	for (unsigned i = 0; i < nworkers; i++)
		fy_queue_push(&b.work, NULL);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(tids[i], NULL);
	for (size_t t = 0; t < b.nt; t++)
		for (unsigned i = 0; i < started[t]; i++)
			fy_queue_push(&b.t[t].upload, NULL);
	for (unsigned i = 0; i < nstarted; i++)
		pthread_join(tids[threads + i], NULL);
	if (b.failed) {
		rc = b.failed;
		goto out;
	}
	for (size_t t = 0; t < b.nt; t++) {
		struct target *tg = &b.t[t];
		char e2[512];

		if (tg->failed)
			continue;
		/* Every chunk durable before the manifest that names them. */
		rc = fy_store_sync(tg->repo->store);
		if (rc < 0)
			snprintf(e2, sizeof(e2), "%s %s: %s", rc == -ENOSPC ? "repository is full:" : "syncing",
				 tg->repo->url, fy_store_strerror(rc));
		/* A lock removed as stale (a backup paused for half an hour, skewed
		 * clocks) no longer protects the chunks this manifest names. */
		if (rc == 0)
			rc = fy_lock_check(tg->lk, e2, sizeof(e2));
		if (rc < 0 && tg->optional) {
			target_failed(tg, rc, "%s", e2);
		} else if (rc < 0) {
			snprintf(err, errlen, "%s", e2);
			goto out;
		}
	}
	res->seconds = now_s() - t0;
	rc = write_manifest(&b, o->created_unix_nano ? o->created_unix_nano
						     : (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec, err, errlen);
	res->seconds = now_s() - t0;
out:
	free(tids);
	fy_io_exit(io);
	free(bufs);
	if (fd >= 0)
		close(fd);
	free_buffers(&b);
	for (size_t t = 0; t < b.nt; t++) {
		fy_idset_free(&b.t[t].known);
		fy_lock_release(b.t[t].lk);
		fy_store_stats(b.t[t].repo->store, &res->targets[t].stats);
	}
	free(b.ids);
	free(b.crcs);
	free(b.source_path);
	fy_bitmap_free(&b.want);
	fy_bitmap_free(&b.data);
	if (b.parent)
		ferry__v1__manifest__free_unpacked(b.parent, NULL);
	pthread_mutex_destroy(&b.lock);
	return rc;
}
