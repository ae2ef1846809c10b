/* Restore: workers fetch, verify and decode chunks and write them in place.
 *
 * A file target is written as a new file beside it (TARGET.ferry-restore-*),
 * synced, then renamed over TARGET: a failed restore never leaves a
 * half-written file under the target's name, and holes stay holes.  A block
 * device target must be at least the volume's size; its zero blocks are
 * zeroed with BLKZEROOUT (or written zeros where the device refuses it).
 * Nothing is written that failed verification (docs/FORMAT.md). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "ferry.h"
#include "io/io.h"

struct restore {
	struct fy_repo *repo;
	const Ferry__V1__Manifest *m;
	const struct fy_restore_opts *o;
	int fd;                /* buffered: sizing, sync, and unaligned tails */
	int dfd;               /* O_DIRECT on the same target, or -1 */
	bool device;
	uint64_t nblocks;
	_Atomic uint64_t next;
	pthread_mutex_t lock;
	struct fy_restore_result *res;
	_Atomic int failed;
	char *err;
	size_t errlen;
};

static void fail(struct restore *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct restore *r, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (!r->failed) {
		r->failed = rc;
		va_start(ap, fmt);
		vsnprintf(r->err, r->errlen, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Write len bytes of block data at off: through the O_DIRECT descriptor for
 * the whole 4 KiB units, the buffered one for an unaligned tail. */
static int write_data(struct restore *r, const uint8_t *buf, size_t len, uint64_t off)
{
	size_t aligned = r->dfd >= 0 ? len & ~(size_t)(FY_IO_ALIGN - 1) : 0;
	int rc = 0;

	if (aligned)
		rc = pwrite_full(r->dfd, buf, aligned, off);
	if (rc == 0 && len > aligned)
		rc = pwrite_full(r->fd, buf + aligned, len - aligned, off + aligned);
	return rc;
}

/* File targets: write only the 4 KiB units that are not all zero (the file
 * was created sparse, so the rest already reads as zeros and stays a hole). */
static int write_sparse(struct restore *r, const uint8_t *buf, size_t len, uint64_t off)
{
	size_t at = 0;

	while (at < len) {
		size_t unit = len - at < FY_IO_ALIGN ? len - at : FY_IO_ALIGN;

		if (fy_is_zero(buf + at, unit)) {
			at += unit;
			continue;
		}
		size_t end = at + unit;

		while (end < len) {
			size_t u = len - end < FY_IO_ALIGN ? len - end : FY_IO_ALIGN;

			if (fy_is_zero(buf + end, u))
				break;
			end += u;
		}
		int rc = write_data(r, buf + at, end - at, off + at);

		if (rc < 0)
			return rc;
		at = end;
	}
	return 0;
}

static int zero_range(struct restore *r, uint64_t off, size_t len, uint8_t *zeros)
{
	uint64_t range[2] = { off, len };

	if (ioctl(r->fd, BLKZEROOUT, range) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOTTY && errno != EINVAL)
		return -errno;
	memset(zeros, 0, len);
	return pwrite_full(r->fd, zeros, len, off);
}

static void *restore_worker(void *arg)
{
	struct restore *r = arg;
	uint32_t cs = r->m->chunk_size;
	uint8_t *plain = fy_buf_alloc(cs), *scratch = fy_buf_alloc(cs);
	static const uint8_t zero_id[FY_ID_LEN];

	if (!plain || !scratch)
		fail(r, -ENOMEM, "out of memory");
	while (!r->failed) {
		uint64_t i = atomic_fetch_add(&r->next, 1);

		if (i >= r->nblocks)
			break;
		uint64_t off = i * cs;
		size_t len = (size_t)(r->m->size - off < cs ? r->m->size - off : cs);
		const uint8_t *id = r->m->chunk_ids.data + i * FY_ID_LEN;
		char err[256];
		int rc;

		if (memcmp(id, zero_id, FY_ID_LEN) == 0) {
			if (r->device) {
				rc = zero_range(r, off, len, plain);
				if (rc < 0) {
					fail(r, rc, "zeroing %s at offset %llu: %s", r->o->target, (unsigned long long)off,
					     strerror(-rc));
					break;
				}
			}
			pthread_mutex_lock(&r->lock);
			r->res->bytes_zero += len;
			pthread_mutex_unlock(&r->lock);
		} else {
			uint32_t crc = 0;
			ssize_t n = fy_chunk_read(r->repo, id, plain, cs, scratch, r->repo->encrypted ? 0 : FY_VERIFY_ID,
						  &crc, err, sizeof(err));

			if (n < 0) {
				fail(r, (int)n, "%s (block %llu, offset %llu)", err, (unsigned long long)i, (unsigned long long)off);
				break;
			}
			if ((size_t)n != len || crc != r->m->block_crc32c[i]) {
				char hex[2 * FY_ID_LEN + 1];

				fy_hex(id, FY_ID_LEN, hex);
				fail(r, -EBADMSG, "chunk %s does not match block %llu of the manifest (length or crc32c)",
				     hex, (unsigned long long)i);
				break;
			}
			rc = r->device ? write_data(r, plain, len, off) : write_sparse(r, plain, len, off);
			if (rc < 0) {
				fail(r, rc, "writing %s at offset %llu: %s", r->o->target, (unsigned long long)off,
				     strerror(-rc));
				break;
			}
			pthread_mutex_lock(&r->lock);
			r->res->bytes_written += len;
			pthread_mutex_unlock(&r->lock);
		}
		if (r->o->progress)
			atomic_fetch_add(&r->o->progress->done, len);
	}
	fy_buf_free(plain);
	fy_buf_free(scratch);
	return NULL;
}

static int fsync_parent(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* A second descriptor with O_DIRECT, when the target allows it: restored
 * data goes straight to the device instead of through the page cache. */
static void open_direct(struct restore *r, const char *path)
{
	bool direct = false;
	int fd = fy_io_open_path(path, true, &direct);

	if (fd >= 0 && !direct) {
		close(fd);
		fd = -1;
	}
	r->dfd = fd;
	if (r->o->verbose)
		fprintf(stderr, "ferry: restore writes %s\n", fd >= 0 ? "with O_DIRECT" : "buffered (O_DIRECT refused)");
}

/* Open the target: a block device in place, or a new temporary file beside a file target. */
static int open_target(struct restore *r, char **tmp)
{
	struct stat st;
	const char *t = r->o->target;

	bool exists = stat(t, &st) == 0;

	if (exists && S_ISBLK(st.st_mode)) {
		uint64_t size;

		r->device = true;
		r->fd = open(t, O_WRONLY | O_CLOEXEC);
		if (r->fd < 0) {
			fail(r, -errno, "cannot open target %s: %s", t, strerror(errno));
			return -1;
		}
		open_direct(r, t);
		int rc = fy_io_size(r->fd, &size);

		if (rc < 0) {
			fail(r, rc, "cannot size target %s: %s", t, strerror(-rc));
			return -1;
		}
		if (size < r->m->size) {
			fail(r, -ENOSPC, "target %s is smaller than the volume (%llu < %llu bytes): nothing written", t,
			     (unsigned long long)size, (unsigned long long)r->m->size);
			return -1;
		}
		return 0;
	}
	if (exists && !S_ISREG(st.st_mode)) {
		fail(r, -EINVAL, "target %s is not a regular file or a block device", t);
		return -1;
	}
	if (asprintf(tmp, "%s.ferry-restore-XXXXXX", t) < 0) {
		*tmp = NULL;
		fail(r, -ENOMEM, "out of memory");
		return -1;
	}
	r->fd = mkostemp(*tmp, O_CLOEXEC);
	if (r->fd < 0) {
		fail(r, -errno, "cannot create target %s: %s", t, strerror(errno));
		free(*tmp);
		*tmp = NULL;
		return -1;
	}
	fchmod(r->fd, 0600);
	if (ftruncate(r->fd, (off_t)r->m->size) < 0) {
		fail(r, -errno, "cannot size target %s to %llu bytes: %s", t, (unsigned long long)r->m->size,
		     strerror(errno));
		return -1;
	}
	open_direct(r, *tmp);
	return 0;
}

int fy_restore(struct fy_repo *repo, const uint8_t id[FY_SNAP_ID_LEN], const struct fy_restore_opts *o,
	       struct fy_restore_result *res, char *err, size_t errlen)
{
	struct restore r = { .repo = repo, .o = o, .res = res, .err = err, .errlen = errlen, .fd = -1,
			   .dfd = -1 };
	Ferry__V1__Manifest *m = NULL;
	unsigned threads = o->threads ? o->threads : 4 * fy_online_cores();
	pthread_t *tids = NULL;
	unsigned started = 0;
	char *tmp = NULL;
	struct timespec t0, t1;
	int rc;

	memset(res, 0, sizeof(*res));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_mutex_init(&r.lock, NULL);
	rc = fy_manifest_read(repo, id, &m, err, errlen);
	if (rc < 0)
		goto out;
	r.m = m;
	r.nblocks = (m->size + m->chunk_size - 1) / m->chunk_size;
	res->size = m->size;
	if (o->progress)
		o->progress->total = m->size;
	if (open_target(&r, &tmp) < 0)
		goto out;
	res->device = r.device;
	tids = calloc(threads, sizeof(*tids));
	if (!tids) {
		fail(&r, -ENOMEM, "out of memory");
		goto out;
	}
	for (; started < threads; started++)
		if (pthread_create(&tids[started], NULL, restore_worker, &r) != 0)
			break;
	if (started == 0)
		fail(&r, -EAGAIN, "cannot start threads");
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	if (!r.failed && r.dfd >= 0 && fdatasync(r.dfd) < 0)
		fail(&r, -errno, "syncing %s: %s", o->target, strerror(errno));
	if (!r.failed && fdatasync(r.fd) < 0)
		fail(&r, -errno, "syncing %s: %s", o->target, strerror(errno));
	if (!r.failed && tmp) {
		if (rename(tmp, o->target) < 0)
			fail(&r, -errno, "renaming the restored file to %s: %s", o->target, strerror(errno));
		else if ((rc = fsync_parent(o->target)) < 0)
			fail(&r, rc, "syncing the directory of %s: %s", o->target, strerror(-rc));
		else {
			free(tmp);
			tmp = NULL;
		}
	}
out:
	if (r.failed)
		rc = r.failed;
	if (r.dfd >= 0)
		close(r.dfd);
	if (r.fd >= 0)
		close(r.fd);
	if (tmp) {
		unlink(tmp); /* never a half-restored file */
		free(tmp);
	}
	free(tids);
	if (m)
		ferry__v1__manifest__free_unpacked(m, NULL);
	pthread_mutex_destroy(&r.lock);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	res->seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	return rc;
}
