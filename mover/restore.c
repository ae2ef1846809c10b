/* Restore: workers fetch, verify and decode chunks and write them in place.
 *
 * A file target is written as a new file beside it (TARGET.ferry-restore,
 * locked while it is written), synced, then renamed over TARGET: a failed
 * restore never leaves a half-written file under the target's name, and
 * holes stay holes.  A block device target must be at least the volume's
 * size; its zero blocks are zeroed with BLKZEROOUT (or written zeros where
 * the device refuses it).  What restore refuses to write: ferry.h.
 * Nothing is written that failed verification (docs/FORMAT.md). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/fs.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "ferry.h"
#include "ferry_fs.h"
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
	uint64_t kill_after;    /* test hook: FERRY_TEST_KILL_AFTER_BYTES */
	_Atomic uint64_t written;
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
		if (r->o->cancel && atomic_load(r->o->cancel)) {
			fail(r, -ECANCELED, "restore of %s cancelled", r->o->target);
			break;
		}
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
			/* Test hook: die like a killed process, mid-restore. */
			if (r->kill_after && atomic_fetch_add(&r->written, len) + len >= r->kill_after)
				raise(SIGKILL);
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

/* ---- the repository is never a target ------------------------------------
 *
 * A file target is written as a temporary file in the target's directory
 * and renamed over the target: what changes is a directory entry, so the
 * directory that receives the rename is what must not be the repository's.
 * Directories are compared by device and inode, never by path: a bind mount
 * of a repository directory has the same ones, and so has a directory seen
 * through a symlink.  A device target is written in place: a loop device
 * bound to a repository file (or to a hard link of one) would write that
 * file.  Only a file:// repository has directories to compare. */

struct devino {
	dev_t dev;
	ino_t ino;
};

struct repo_walk {
	struct devino *dirs;     /* every directory of the repository */
	char **names;            /* and its path inside the repository */
	size_t n, cap;
	bool find;               /* looking for the file file.dev/ino */
	struct devino file;
	char *found;             /* its path inside the repository */
};

static int walk_add_dir(struct repo_walk *w, const struct stat *st, const char *rel)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		struct devino *d = realloc(w->dirs, cap * sizeof(*d));
		char **nm;

		if (!d)
			return -ENOMEM;
		w->dirs = d;
		nm = realloc(w->names, cap * sizeof(*nm));
		if (!nm)
			return -ENOMEM;
		w->names = nm;
		w->cap = cap;
	}
	w->names[w->n] = strdup(rel);
	if (!w->names[w->n])
		return -ENOMEM;
	w->dirs[w->n].dev = st->st_dev;
	w->dirs[w->n].ino = st->st_ino;
	w->n++;
	return 0;
}

/* The directories under dfd (rel: its path in the repository) down to
 * depth more levels, without following symlinks; with w->find, also look
 * for the file w->file among the files there. */
static int walk_repo(struct repo_walk *w, int dfd, const char *rel, int depth)
{
	int fd2 = dup(dfd);
	DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	struct dirent *e;
	int rc = 0;

	if (!d) {
		rc = -errno;
		if (fd2 >= 0)
			close(fd2);
		return rc;
	}
	while (rc == 0 && !w->found && (e = readdir(d))) {
		struct stat st;
		char *sub;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN && !(w->find && e->d_type == DT_REG))
			continue;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone meanwhile */
		if (asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < 0) {
			rc = -ENOMEM;
			break;
		}
		if (S_ISREG(st.st_mode) && w->find && st.st_dev == w->file.dev && st.st_ino == w->file.ino) {
			w->found = sub;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			rc = walk_add_dir(w, &st, sub);
			if (rc == 0 && depth > 0) {
				int sfd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

				if (sfd >= 0) {
					rc = walk_repo(w, sfd, sub, depth - 1);
					close(sfd);
				}
			}
		}
		free(sub);
	}
	closedir(d);
	return rc;
}

static void walk_free(struct repo_walk *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->names[i]);
	free(w->names);
	free(w->dirs);
	free(w->found);
}

/* The directory of a file:// repository (malloc'd): relative to the working
 * directory, as when it was opened. */
static char *repo_root(const struct fy_repo *repo)
{
	const char *url = repo->store->url;

	if (strncasecmp(url, "file://", 7) == 0)
		url += 7;
	return strdup(url);
}

/* Walk the repository: its directories (those of its layout: the top, keys/,
 * snapshots/, chunks/ and the fan-out under it; a directory below those is
 * found by walking up from the target), and with w->find also its files. */
static int repo_scan(const char *root, struct repo_walk *w)
{
	struct stat st;
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = walk_add_dir(w, &st, "");
	if (rc == 0)
		rc = walk_repo(w, fd, "", w->find ? 2 : 1);
	close(fd);
	return rc;
}

/* The whole disk a partition belongs to (sysfs), or dev itself. */
static dev_t whole_disk(dev_t dev)
{
	char path[96], real[PATH_MAX], line[32];
	unsigned maj, min;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/partition", major(dev), minor(dev));
	if (access(path, F_OK))
		return dev;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/..", major(dev), minor(dev));
	if (!realpath(path, real) || strlen(real) + 5 > sizeof(real))
		return dev;
	strcat(real, "/dev");
	f = fopen(real, "re");
	if (!f)
		return dev;
	if (!fgets(line, sizeof(line), f) || sscanf(line, "%u:%u", &maj, &min) != 2) {
		fclose(f);
		return dev;
	}
	fclose(f);
	return makedev(maj, min);
}

static const char *walk_dir_of(const struct repo_walk *w, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->dirs[i].dev == dev && w->dirs[i].ino == ino)
			return w->names[i];
	return NULL;
}

/* Refuse (-EPERM) a target path whose directory, or one above it, is a
 * directory of the repository; a file is (with a hard link or a bind mount
 * of its own) a repository file; or a loop device bound to one.
 * file: the target's stat when it exists (else NULL); fd: an open device target or -1. */
static int check_not_repo(struct restore *r, const char *path, const struct stat *file, int fd)
{
	struct repo_walk w = { 0 };
	char *root, *copy = NULL;
	const char *url = r->repo->url;
	int rc, dfd = -1;

	if (r->repo->store->ops != &fy_store_file_ops)
		return 0; /* an object store: nothing a path could name */
	root = repo_root(r->repo);
	if (!root) {
		fail(r, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	rc = repo_scan(root, &w);
	if (rc < 0) {
		fail(r, rc, "cannot read the directories of repository %s: %s", url, strerror(-rc));
		goto out;
	}
	/* The directory that receives the target, and every one above it. */
	copy = strdup(path);
	if (!copy) {
		fail(r, rc = -ENOMEM, "out of memory");
		goto out;
	}
	dfd = open(dirname(copy), O_PATH | O_DIRECTORY | O_CLOEXEC);
	for (int level = 0; dfd >= 0 && level < 4096; level++) {
		struct stat st, up;
		const char *in;
		int ufd;

		if (fstat(dfd, &st) < 0)
			break;
		in = walk_dir_of(&w, st.st_dev, st.st_ino);
		if (in) {
			fail(r, rc = -EPERM, "target %s is inside the repository %s being restored from (%s%s): "
			     "nothing written", r->o->target, url, *in ? "its directory " : "its top directory",
			     in);
			goto out;
		}
		ufd = openat(dfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (ufd < 0 || fstat(ufd, &up) < 0 || (up.st_dev == st.st_dev && up.st_ino == st.st_ino)) {
			if (ufd >= 0)
				close(ufd);
			break; /* the root */
		}
		close(dfd);
		dfd = ufd;
	}
	/* A device that holds the repository's filesystem (a partition of it
	 * too): only --force gets past O_EXCL there, and it must not. */
	struct stat ds;

	if (fd >= 0 && fstat(fd, &ds) == 0 && S_ISBLK(ds.st_mode))
		for (size_t i = 0; i < w.n; i++)
			if (w.dirs[i].dev == ds.st_rdev || whole_disk(w.dirs[i].dev) == ds.st_rdev) {
				fail(r, rc = -EPERM, "target %s holds the filesystem of the repository %s being "
				     "restored from: nothing written", r->o->target, url);
				goto out;
			}
	/* The file itself: a repository file under another name (a hard link,
	 * a bind mount of the file), or the file behind a loop device. */
	memset(&w.file, 0, sizeof(w.file));
	if (fd >= 0 && fy_loop_backing(fd, &w.file.dev, &w.file.ino) == 0)
		w.find = true;
	else if (file && S_ISREG(file->st_mode) && (file->st_nlink > 1 || fy_mountpoint(path, NULL, 0) == 1)) {
		w.file.dev = file->st_dev;
		w.file.ino = file->st_ino;
		w.find = true;
	}
	if (w.find) {
		bool near = false;

		/* Only a repository on the file's filesystem can hold it. */
		for (size_t i = 0; i < w.n && !near; i++)
			near = w.dirs[i].dev == w.file.dev;
		if (near) {
			for (size_t i = 0; i < w.n; i++)
				free(w.names[i]);
			w.n = 0;
			rc = repo_scan(root, &w);
			if (rc < 0) {
				fail(r, rc, "cannot read the files of repository %s: %s", url, strerror(-rc));
				goto out;
			}
		}
		if (w.found) {
			fail(r, rc = -EPERM, "target %s %s %s of the repository %s being restored from: nothing written",
			     r->o->target, fd >= 0 ? "is a loop device bound to" : "is (a link or bind mount of)", w.found,
			     url);
			goto out;
		}
	}
	rc = 0;
out:
	if (dfd >= 0)
		close(dfd);
	free(copy);
	free(root);
	walk_free(&w);
	return rc;
}

/* ---- the target ---------------------------------------------------------- */

/* Is a filesystem mounted from rdev, or from one of its partitions (sysfs)?
 * Then out says so: "is mounted at /mnt (ext4, read-write)", or "has
 * partition /dev/sdb1 mounted at ..."; false when none is. */
static bool mounted_desc(dev_t rdev, char *out, size_t len)
{
	dev_t devs[64];
	size_t nd = 0;
	char dir[64];
	DIR *d;
	struct dirent *e;
	bool found = false;

	devs[nd++] = rdev;
	snprintf(dir, sizeof(dir), "/sys/dev/block/%u:%u", major(rdev), minor(rdev));
	d = opendir(dir);
	while (d && nd < sizeof(devs) / sizeof(devs[0]) && (e = readdir(d))) {
		char p[400], line[32];
		unsigned maj, min;
		FILE *f;

		snprintf(p, sizeof(p), "%s/%s/partition", dir, e->d_name);
		if (e->d_name[0] == '.' || access(p, F_OK))
			continue;
		snprintf(p, sizeof(p), "%s/%s/dev", dir, e->d_name);
		f = fopen(p, "re");
		if (f && fgets(line, sizeof(line), f) && sscanf(line, "%u:%u", &maj, &min) == 2)
			devs[nd++] = makedev(maj, min);
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	for (size_t k = 0; k < nd && !found; k++) {
		struct fy_mount_info *mi = NULL;
		size_t n = 0;

		if (fy_mounts_of_rdev(devs[k], &mi, &n) < 0)
			continue;
		for (size_t i = 0; i < n && !found; i++) {
			char part[64];

			if (mi[i].node)
				continue;
			found = true;
			if (k == 0) {
				snprintf(out, len, "is mounted at %s (%s, %s)", mi[i].point, mi[i].fstype,
					 mi[i].ro ? "read-only" : "read-write");
			} else {
				fy_blkdev_name(devs[k], part, sizeof(part));
				snprintf(out, len, "has partition %s mounted at %s (%s, %s)", part, mi[i].point,
					 mi[i].fstype, mi[i].ro ? "read-only" : "read-write");
			}
		}
		fy_mount_info_free(mi, n);
	}
	return found;
}

/* A block device, opened in place.  O_EXCL makes the kernel refuse a device
 * that is mounted or claimed by someone else (swap, RAID, LVM, a mount in
 * another namespace), and keeps it from being mounted while we write. */
static int open_device(struct restore *r, const char *path, const struct stat *st)
{
	const char *t = r->o->target;
	char where[320];
	uint64_t size;

	r->device = true;
	r->fd = open(path, O_WRONLY | O_CLOEXEC | (r->o->force ? 0 : O_EXCL));
	if (r->fd < 0 && errno == EBUSY && !r->o->force) {
		if (mounted_desc(st->st_rdev, where, sizeof(where)))
			fail(r, -EBUSY, "target %s %s: nothing written (unmount it first; --force writes over it "
			     "anyway)", t, where);
		else
			fail(r, -EBUSY, "target %s is in use: held open exclusively (a mount in another namespace, "
			     "swap, RAID or LVM): nothing written (--force writes over it anyway)", t);
		return -1;
	}
	if (r->fd < 0) {
		fail(r, -errno, "cannot open target %s: %s", t, strerror(errno));
		return -1;
	}
	if (r->o->force && mounted_desc(st->st_rdev, where, sizeof(where)))
		snprintf(r->res->warning, sizeof(r->res->warning),
			 "%s %s: written over anyway (--force); that filesystem will not see the restored data "
			 "until it is unmounted", t, where);
	if (check_not_repo(r, path, NULL, r->fd) < 0)
		return -1;
	open_direct(r, path);
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

/* The temporary file beside a file target has one name, TARGET.ferry-restore,
 * and is locked (flock) by the restore writing it: the next restore of the
 * same target reuses one left by a killed restore (nobody holds its lock)
 * and refuses while another restore is writing it.  Returns its fd. */
static int open_temp(struct restore *r, const char *tmp)
{
	const char *t = r->o->target;

	for (int tries = 0; tries < 16; tries++) {
		struct stat a, b;
		int fd = open(tmp, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

		if (fd < 0) {
			int e = errno;

			fail(r, -e, "cannot create target %s: %s%s%s", t, strerror(e),
			     e == ELOOP ? ": a symbolic link is in the way at " : "", e == ELOOP ? tmp : "");
			return -1;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e = errno;

			if (e == ENOLCK || e == EOPNOTSUPP || e == EINVAL) {
				/* A filesystem without flock: restore still works, but
				 * two restores of one target are not kept apart. */
				if (r->o->verbose)
					fprintf(stderr, "ferry: %s cannot be locked (%s): writing it unlocked\n", tmp,
						strerror(e));
			} else {
				close(fd);
				if (e == EWOULDBLOCK)
					fail(r, -EBUSY, "another restore to %s is running (it is writing %s): nothing "
					     "written", t, tmp);
				else
					fail(r, -e, "cannot lock %s: %s", tmp, strerror(e));
				return -1;
			}
		}
		/* Locked; but is the name still this file?  A restore that just
		 * finished renamed it over its target. */
		if (fstat(fd, &a) < 0 || lstat(tmp, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
			close(fd);
			continue;
		}
		if (!S_ISREG(a.st_mode) || a.st_nlink != 1 || a.st_uid != geteuid()) {
			fail(r, -EEXIST, "%s is in the way (%s): remove it if it is no restore's", tmp,
			     !S_ISREG(a.st_mode) ? "not a regular file" : a.st_nlink != 1 ? "it has other links" :
			     "it belongs to another user");
			close(fd);
			return -1;
		}
		if (a.st_size > 0 || a.st_blocks > 0) {
			r->res->stale_removed = true;
			if (r->o->verbose)
				fprintf(stderr, "ferry: reusing %s, left by an interrupted restore\n", tmp);
		}
		if (ftruncate(fd, 0) < 0) {
			fail(r, -errno, "cannot truncate %s: %s", tmp, strerror(errno));
			close(fd);
			return -1;
		}
		return fd;
	}
	fail(r, -EAGAIN, "cannot take %s: other restores keep replacing it", tmp);
	return -1;
}

/* Open the target: a block device in place, or a temporary file beside a file target. */
static int open_target(struct restore *r, char **path, char **tmp)
{
	struct stat st, lst;
	const char *t = r->o->target;
	bool exists, entry;

	/* A symlink is followed: the file it names is what is restored. */
	entry = lstat(t, &lst) == 0;
	if (entry && S_ISLNK(lst.st_mode))
		*path = realpath(t, NULL);
	if (!*path)
		*path = strdup(t);
	if (!*path) {
		fail(r, -ENOMEM, "out of memory");
		return -1;
	}
	exists = stat(*path, &st) == 0;
	if (exists && S_ISBLK(st.st_mode))
		return open_device(r, *path, &st);
	if (exists && !S_ISREG(st.st_mode)) {
		fail(r, -EINVAL, "target %s is not a regular file or a block device", t);
		return -1;
	}
	if (check_not_repo(r, *path, exists ? &st : NULL, -1) < 0)
		return -1;
	if (entry && !r->o->overwrite && !r->o->force) {
		fail(r, -EEXIST, "target %s exists: nothing written (--overwrite replaces it)", t);
		return -1;
	}
	if (exists) {
		unsigned num;
		uint32_t flags;

		if (fy_loop_lookup(&st, -1, &num, &flags) == 0 && !r->o->force) {
			fail(r, -EBUSY, "target %s is the backing file of /dev/loop%u: nothing written (detach it "
			     "with losetup -d, or restore to /dev/loop%u; --force replaces the file anyway)", t, num,
			     num);
			return -1;
		}
		if (fy_loop_lookup(&st, -1, &num, &flags) == 0)
			snprintf(r->res->warning, sizeof(r->res->warning),
				 "%s was the backing file of /dev/loop%u: replaced anyway (--force); the loop "
				 "device still reads the old file", t, num);
	}
	if (asprintf(tmp, "%s.ferry-restore", *path) < 0) {
		*tmp = NULL;
		fail(r, -ENOMEM, "out of memory");
		return -1;
	}
	r->fd = open_temp(r, *tmp);
	if (r->fd < 0) {
		free(*tmp);
		*tmp = NULL; /* not ours to remove */
		return -1;
	}
	if (ftruncate(r->fd, (off_t)r->m->size) < 0) {
		fail(r, -errno, "cannot size target %s to %llu bytes: %s", t, (unsigned long long)r->m->size,
		     strerror(errno));
		return -1;
	}
	open_direct(r, *tmp);
	/* Test hook: FERRY_TEST_STOP_AT=restoring stops here, the temporary
	 * file created and locked (tests/integration/t_restore_target.sh). */
	if (getenv("FERRY_TEST_STOP_AT") && !strcmp(getenv("FERRY_TEST_STOP_AT"), "restoring"))
		raise(SIGSTOP);
	return 0;
}

/* Put the finished temporary file in the target's place: over it with
 * overwrite, else only where nothing is (RENAME_NOREPLACE). */
static int put_in_place(struct restore *r, const char *tmp, const char *path)
{
	if (r->o->overwrite || r->o->force) {
		if (rename(tmp, path) == 0)
			return 0;
	} else {
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST) {
			fail(r, -EEXIST, "target %s appeared during the restore: left alone (--overwrite replaces it)",
			     r->o->target);
			return -1;
		}
		if (errno == EINVAL) { /* a filesystem without RENAME_NOREPLACE */
			struct stat st;

			if (lstat(path, &st) == 0) {
				fail(r, -EEXIST, "target %s appeared during the restore: left alone", r->o->target);
				return -1;
			}
			if (rename(tmp, path) == 0)
				return 0;
		}
	}
	fail(r, -errno, "renaming the restored file to %s: %s", r->o->target, strerror(errno));
	return -1;
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
	char *tmp = NULL, *path = NULL;
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
	{
		const char *k = getenv("FERRY_TEST_KILL_AFTER_BYTES");

		r.kill_after = k ? strtoull(k, NULL, 10) : 0;
	}
	if (open_target(&r, &path, &tmp) < 0)
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
	if (!r.failed && tmp && put_in_place(&r, tmp, path) == 0) {
		free(tmp);
		tmp = NULL;
		if ((rc = fsync_parent(path)) < 0)
			fail(&r, rc, "syncing the directory of %s: %s", o->target, strerror(-rc));
	}
out:
	if (r.failed)
		rc = r.failed;
	if (r.dfd >= 0)
		close(r.dfd);
	if (tmp) {
		unlink(tmp); /* never a half-restored file (still locked: ours) */
		free(tmp);
	}
	if (r.fd >= 0)
		close(r.fd); /* drops the lock, after the rename or the unlink */
	free(path);
	free(tids);
	if (m)
		ferry__v1__manifest__free_unpacked(m, NULL);
	pthread_mutex_destroy(&r.lock);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	res->seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	return rc;
}
