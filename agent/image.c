/* The image volume backend (image.h): sparse image files, reflink clones or
 * sparse copies, loop devices, mkfs, mounts, freeze, and the byte ranges a
 * volume holds or changed.  Every call returns 0 or a negative errno and
 * writes one line into err on failure; nothing here keeps global state, so
 * the agent's threads may call it concurrently (on different volumes: two
 * attaches of one image at once can bind two loop devices, so the caller
 * serialises the calls of each volume).  docs/image.md describes it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/major.h>

#include "image.h"
#include "cbt/cbt.h"

#define IM_COPY_BUF (1u << 20)	/* pread/pwrite fallback of the sparse copy */
#define IM_CFR_MAX (1u << 30)	/* bytes per copy_file_range call */
#define IM_MKFS_ERR 16384	/* the tail of mkfs's stderr we keep */

static void im_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void im_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool im_empty(const char *s)
{
	return !s || !*s;
}

/* The directory part of path ("." when it has none). */
static int im_dirname(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (!slash) {
		snprintf(dir, len, ".");
		return 0;
	}
	n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= len)
		return -ENAMETOOLONG;
	memcpy(dir, path, n);
	dir[n] = '\0';
	return 0;
}

/* fsync the directory holding path, so that a name made or removed there
 * survives a crash. */
static int im_fsync_dir(const char *what, const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int fd, ret = im_dirname(path, dir, sizeof(dir));

	if (ret) {
		im_err(err, errlen, "%s %s: directory name too long", what, path);
		return ret;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd)) {
		ret = -errno;
		im_err(err, errlen, "%s %s: fsync directory %s: %s", what, path, dir, strerror(-ret));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

static const char *im_kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISBLK(m) ? "a block device" : S_ISCHR(m) ? "a character device" :
	       S_ISFIFO(m) ? "a fifo" : S_ISSOCK(m) ? "a socket" : S_ISLNK(m) ? "a symlink" : "a regular file";
}

/* ---- image files -------------------------------------------------------- */

int fy_img_create(const char *path, uint64_t size, char *err, size_t errlen)
{
	const char *call = "open";
	int fd, ret = 0;

	if (im_empty(path)) {
		im_err(err, errlen, "create: no image path");
		return -EINVAL;
	}
	if (size > INT64_MAX) {
		im_err(err, errlen, "create %s: %llu bytes is too large for a file", path, (unsigned long long)size);
		return -EFBIG;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		im_err(err, errlen, "create %s: open: %s", path, strerror(-ret));
		return ret;
	}
	if (ftruncate(fd, (off_t)size)) {
		ret = -errno;
		call = "ftruncate";
	} else if (fsync(fd)) {
		ret = -errno;
		call = "fsync";
	}
	close(fd);
	if (ret) {
		im_err(err, errlen, "create %s: %s to %llu bytes: %s", path, call, (unsigned long long)size,
		       strerror(-ret));
		unlink(path);
		return ret;
	}
	ret = im_fsync_dir("create", path, err, errlen);
	if (ret)
		unlink(path);
	return ret;
}


int fy_img_grow(const char *path, uint64_t size, char *err, size_t errlen)
{
	struct stat st;
	unsigned num;
	uint32_t flags;
	int fd, lfd, ret = 0;
	char dev[32];

	if (im_empty(path)) {
		im_err(err, errlen, "grow: no image path");
		return -EINVAL;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		im_err(err, errlen, "grow %s: open: %s", path, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		im_err(err, errlen, "grow %s: %s, not an image file", path, im_kind(st.st_mode));
		ret = -EINVAL;
		goto out;
	}
	if (size < (uint64_t)st.st_size) {
		im_err(err, errlen, "grow %s: %llu bytes is less than its %lld: images never shrink", path,
		       (unsigned long long)size, (long long)st.st_size);
		ret = -EINVAL;
		goto out;
	}
	if (size > INT64_MAX) {
		im_err(err, errlen, "grow %s: %llu bytes is too large for a file", path, (unsigned long long)size);
		ret = -EFBIG;
		goto out;
	}
	if (size > (uint64_t)st.st_size && (ftruncate(fd, (off_t)size) || fsync(fd))) {
		ret = -errno;
		im_err(err, errlen, "grow %s to %llu bytes: %s", path, (unsigned long long)size, strerror(-ret));
		goto out;
	}
	/* An attached image: its loop device takes the new size too (also
	 * when the file had grown already, so that a retry finishes the job). */
	if (fy_loop_lookup(&st, -1, &num, &flags))
		goto out;
	snprintf(dev, sizeof(dev), "/dev/loop%u", num);
	lfd = open(dev, O_RDONLY | O_CLOEXEC);
	if (lfd < 0 || ioctl(lfd, LOOP_SET_CAPACITY, 0)) {
		ret = -errno;
		im_err(err, errlen, "grow %s: LOOP_SET_CAPACITY %s: %s", path, dev, strerror(-ret));
	}
	if (lfd >= 0)
		close(lfd);
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static int im_pwrite_full(int fd, const char *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = pwrite(fd, buf + done, len - done, (off_t)(off + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		done += (size_t)w;
	}
	return 0;
}

/* Copy [off, off + len) from s to d at the same offset: copy_file_range
 * while the kernel takes it, pread/pwrite once it does not (another
 * filesystem).  *call names what failed. */
static int im_copy_range(int s, int d, uint64_t off, uint64_t len, bool *use_cfr, char **buf, const char **call)
{
	while (len) {
		ssize_t k;
		int ret;

		if (*use_cfr) {
			loff_t so = (loff_t)off, dof = (loff_t)off;

			k = copy_file_range(s, &so, d, &dof, len < IM_CFR_MAX ? (size_t)len : IM_CFR_MAX, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
				*use_cfr = false;
				continue;
			}
			if (k < 0) {
				*call = "copy_file_range";
				return -errno;
			}
		} else {
			if (!*buf && posix_memalign((void **)buf, 4096, IM_COPY_BUF)) {
				*buf = NULL;
				*call = "allocating a buffer";
				return -ENOMEM;
			}
			k = pread(s, *buf, len < IM_COPY_BUF ? (size_t)len : IM_COPY_BUF, (off_t)off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				*call = "pread";
				return -errno;
			}
			ret = im_pwrite_full(d, *buf, (size_t)k, off);
			if (ret) {
				*call = "pwrite";
				return ret;
			}
		}
		if (k == 0) {
			*call = "read (the source ended before its size)";
			return -EIO;
		}
		off += (uint64_t)k;
		len -= (uint64_t)k;
	}
	return 0;
}

/* A sparse copy of s (size bytes) into d: only what SEEK_DATA finds is
 * copied; everything else stays a hole of d. */
static int im_copy_sparse(int s, int d, uint64_t size, const char *src, char *err, size_t errlen)
{
	const char *call = "ftruncate";
	bool use_cfr = true;
	char *buf = NULL;
	uint64_t off = 0;
	int ret = 0;

	if (ftruncate(d, (off_t)size)) {
		ret = -errno;
		goto out;
	}
	while (off < size) {
		off_t a = lseek(s, (off_t)off, SEEK_DATA), b;

		if (a < 0) {
			if (errno == ENXIO)
				break;	/* a hole from off to the end */
			ret = -errno;
			call = "lseek SEEK_DATA";
			goto out;
		}
		if ((uint64_t)a >= size)
			break;
		b = lseek(s, a, SEEK_HOLE);
		if (b < 0) {
			ret = -errno;
			call = "lseek SEEK_HOLE";
			off = (uint64_t)a;
			goto out;
		}
		off = (uint64_t)b < size ? (uint64_t)b : size;
		ret = im_copy_range(s, d, (uint64_t)a, off - (uint64_t)a, &use_cfr, &buf, &call);
		if (ret) {
			off = (uint64_t)a;
			goto out;
		}
	}
out:
	if (ret)
		im_err(err, errlen, "clone %s: sparse copy at offset %llu: %s: %s", src, (unsigned long long)off,
		       call, strerror(-ret));
	free(buf);
	return ret;
}

/* FICLONE's answers that mean "this filesystem (or this pair) cannot share
 * extents", as opposed to a real failure. */
static bool im_no_reflink(int e)
{
	return e == EOPNOTSUPP || e == EXDEV || e == EINVAL || e == ENOTTY;
}

int fy_img_clone(const char *src, const char *dst, bool *reflinked, char *err, size_t errlen)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	struct stat st, dst_st;
	const char *base;
	int s = -1, d = -1, ret;

	if (reflinked)
		*reflinked = false;
	if (im_empty(src) || im_empty(dst) || !reflinked) {
		im_err(err, errlen, "clone: no %s given", im_empty(src) ? "source" : im_empty(dst) ? "destination" :
		       "reflinked flag");
		return -EINVAL;
	}
	s = open(src, O_RDONLY | O_CLOEXEC);
	if (s < 0 || fstat(s, &st)) {
		ret = -errno;
		im_err(err, errlen, "clone %s: open: %s", src, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		im_err(err, errlen, "clone %s: %s, not an image file", src, im_kind(st.st_mode));
		ret = -EINVAL;
		goto out;
	}
	/* Published data is never replaced: refuse before copying anything
	 * (the rename below refuses too, should dst appear meanwhile). */
	ret = !lstat(dst, &dst_st) ? -EEXIST : errno != ENOENT ? -errno : 0;
	if (ret) {
		im_err(err, errlen, "clone %s to %s: %s", src, dst, ret == -EEXIST ? "destination exists" :
		       strerror(-ret));
		goto out;
	}
	ret = im_dirname(dst, dir, sizeof(dir));
	base = strrchr(dst, '/') ? strrchr(dst, '/') + 1 : dst;
	if (ret || snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, base) >= (int)sizeof(tmp)) {
		im_err(err, errlen, "clone %s to %s: path too long", src, dst);
		ret = -ENAMETOOLONG;
		goto out;
	}
	d = mkostemp(tmp, O_CLOEXEC);
	if (d < 0) {
		ret = -errno;
		im_err(err, errlen, "clone %s: create temporary %s: %s", src, tmp, strerror(-ret));
		goto out;
	}
	if (!ioctl(d, FICLONE, s)) {
		*reflinked = true;
	} else if (im_no_reflink(errno)) {
		ret = im_copy_sparse(s, d, (uint64_t)st.st_size, src, err, errlen);
		if (ret)
			goto out_tmp;
	} else {
		ret = -errno;
		im_err(err, errlen, "clone %s to %s: FICLONE: %s", src, tmp, strerror(-ret));
		goto out_tmp;
	}
	if (fchmod(d, st.st_mode & 07777) || fsync(d)) {
		ret = -errno;
		im_err(err, errlen, "clone %s: chmod or fsync %s: %s", src, tmp, strerror(-ret));
		goto out_tmp;
	}
	ret = close(d) ? -errno : 0;
	d = -1;
	if (ret) {
		im_err(err, errlen, "clone %s: close %s: %s", src, tmp, strerror(-ret));
		goto out_tmp;
	}
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE)) {
		ret = -errno;
		/* A filesystem without RENAME_NOREPLACE: link refuses an
		 * existing name just the same. */
		if (ret == -EINVAL && !link(tmp, dst)) {
			unlink(tmp);
			ret = 0;
		} else if (ret == -EINVAL) {
			ret = -errno;
		}
		if (ret) {
			im_err(err, errlen, "clone %s: rename %s to %s: %s", src, tmp, dst, strerror(-ret));
			goto out_tmp;
		}
	}
	ret = im_fsync_dir("clone", dst, err, errlen);
	goto out;
out_tmp:
	unlink(tmp);
out:
	if (ret)
		*reflinked = false;
	if (d >= 0)
		close(d);
	if (s >= 0)
		close(s);
	return ret;
}

/* An unnamed file in dir (O_TMPFILE, else a name removed at once). */
static int im_anon_file(const char *dir)
{
	char tmp[PATH_MAX];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd < 0 ? -errno : fd;
	if (snprintf(tmp, sizeof(tmp), "%s/.reflink-probe.XXXXXX", dir) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(tmp);
	return fd;
}

int fy_img_reflink_capable(const char *dir)
{
	static const char block[4096] = { 1 };
	int a, b, ret;

	if (im_empty(dir))
		return -EINVAL;
	a = im_anon_file(dir);
	if (a < 0)
		return a;
	b = im_anon_file(dir);
	if (b < 0) {
		close(a);
		return b;
	}
	if (pwrite(a, block, sizeof(block), 0) != (ssize_t)sizeof(block))
		ret = -EIO;
	else if (!ioctl(b, FICLONE, a))
		ret = 1;
	else
		ret = im_no_reflink(errno) ? 0 : -errno;
	close(a);
	close(b);
	return ret;
}

int fy_img_remove(const char *path, char *err, size_t errlen)
{
	int ret;

	if (im_empty(path)) {
		im_err(err, errlen, "remove: no image path");
		return -EINVAL;
	}
	if (unlink(path)) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		im_err(err, errlen, "remove %s: unlink: %s", path, strerror(-ret));
		return ret;
	}
	return im_fsync_dir("remove", path, err, errlen);
}

/* ---- loop devices ------------------------------------------------------- */

int fy_loop_find(const char *img, char *dev, size_t devlen)
{
	struct stat st;
	unsigned num;
	uint32_t flags;
	int ret;

	if (im_empty(img) || !dev || !devlen)
		return -EINVAL;
	if (stat(img, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -ENOENT;
	ret = fy_loop_lookup(&st, -1, &num, &flags);
	if (ret)
		return ret;
	if (snprintf(dev, devlen, "/dev/loop%u", num) >= (int)devlen)
		return -ERANGE;
	return 0;
}

/* The image's loop device: the one already bound to it the same way, or a
 * free one bound now by fy_loop_bind (mover/fs.c).  Buffered, 512-byte
 * sectors, never direct I/O: on a reflinked XFS file, direct I/O makes the
 * kernel give the device 4096-byte sectors, and a filesystem made on it
 * before its first snapshot (ext4 with 1 KiB blocks, XFS with 512-byte
 * sectors) no longer mounts — on the volume or on any clone of it. */
int fy_loop_attach(const char *img, bool readonly, char *dev, size_t devlen, char *err, size_t errlen)
{
	int fd = -1, ret;
	struct stat st;
	unsigned num;
	uint32_t flags;

	if (im_empty(img) || !dev || !devlen) {
		im_err(err, errlen, "loop: no image or no room for the device name");
		return -EINVAL;
	}
	fd = open(img, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		im_err(err, errlen, "loop: open %s: %s", img, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		im_err(err, errlen, "loop: %s is %s, not an image file", img, im_kind(st.st_mode));
		goto out;
	}
	if (!fy_loop_lookup(&st, readonly, &num, &flags)) {
		/* Already bound the same way: the same device again.  Readers
		 * and writers get devices of their own: the kernel lets writes
		 * through a read-write device node whatever its mount's flags. */
		ret = snprintf(dev, devlen, "/dev/loop%u", num) >= (int)devlen ? -ERANGE : 0;
		if (ret)
			im_err(err, errlen, "loop: /dev/loop%u does not fit in %zu bytes", num, devlen);
		goto out;
	}
	/* A device that stays bound when closed (no autoclear): the volume's
	 * mounts and publishes hold it, and fy_loop_detach ends it. */
	ret = fy_loop_bind(fd, img, readonly, false, dev, devlen, err, errlen);
	if (ret >= 0) {
		close(ret);
		ret = 0;
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

int fy_loop_detach(const char *dev, char *err, size_t errlen)
{
	struct stat st;
	int fd, ret = 0;

	if (im_empty(dev)) {
		im_err(err, errlen, "loop: detach: no device");
		return -EINVAL;
	}
	if (stat(dev, &st)) {
		ret = -errno;
		im_err(err, errlen, "loop: detach %s: %s", dev, strerror(-ret));
		return ret;
	}
	if (!S_ISBLK(st.st_mode) || major(st.st_rdev) != LOOP_MAJOR) {
		im_err(err, errlen, "loop: detach %s: not a loop device", dev);
		return -EINVAL;
	}
	/* O_EXCL fails while a filesystem is mounted from the device: then
	 * LOOP_CLR_FD would only mark it to unbind when unmounted. */
	fd = open(dev, O_RDWR | O_EXCL | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		im_err(err, errlen, "loop: detach %s: open: %s%s", dev, strerror(-ret),
		       ret == -EBUSY ? " (mounted, or claimed by another holder)" : "");
		return ret;
	}
	if (ioctl(fd, LOOP_CLR_FD, 0) && errno != ENXIO) {
		ret = -errno;
		im_err(err, errlen, "loop: LOOP_CLR_FD %s: %s", dev, strerror(-ret));
	}
	close(fd);
	return ret;
}

/* ---- filesystems -------------------------------------------------------- */

/* Read up to len bytes at off; fewer only at the end. */
static ssize_t im_pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t k = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		done += (size_t)k;
	}
	return (ssize_t)done;
}

int fy_fs_probe(const char *dev, char *type, size_t typelen, char *err, size_t errlen)
{
	unsigned char sb[4096], bt[8];
	const char *found = "";
	ssize_t n, m = 0;
	int fd;

	if (im_empty(dev) || !type || !typelen) {
		im_err(err, errlen, "probe: no device or no room for the type");
		return -EINVAL;
	}
	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		n = -errno;
		im_err(err, errlen, "probe %s: open: %s", dev, strerror((int)-n));
		return (int)n;
	}
	n = im_pread_full(fd, sb, sizeof(sb), 0);
	if (n >= 0)
		m = im_pread_full(fd, bt, sizeof(bt), 65536 + 64);
	close(fd);
	if (n < 0 || m < 0) {
		n = n < 0 ? n : m;
		im_err(err, errlen, "probe %s: read superblock: %s", dev, strerror((int)-n));
		return (int)n;
	}
	/* XFS first: its AG headers fill the bytes where ext's magic would be. */
	if (n >= 4 && !memcmp(sb, "XFSB", 4))
		found = "xfs";
	else if (n >= 1082 && sb[1080] == 0x53 && sb[1081] == 0xef)
		found = "ext4";	/* ext2, ext3 and ext4 alike: the ext4 driver mounts all three */
	else if (m == 8 && !memcmp(bt, "_BHRfS_M", 8))
		found = "btrfs";
	if (snprintf(type, typelen, "%s", found) >= (int)typelen) {
		im_err(err, errlen, "probe %s: \"%s\" does not fit in %zu bytes", dev, found, typelen);
		return -ERANGE;
	}
	return 0;
}

/* The executable name along PATH (and the sbin directories, which a
 * container's PATH often lacks), resolved here so that the child only execs. */
static int im_which(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH"), *extra = "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin";

	for (int pass = 0; pass < 2; pass++) {
		const char *p = pass ? extra : path;

		while (p && *p) {
			const char *c = strchr(p, ':');
			size_t n = c ? (size_t)(c - p) : strlen(p);
			struct stat st;

			if (n && snprintf(out, len, "%.*s/%s", (int)n, p, name) < (int)len && !stat(out, &st) &&
			    S_ISREG(st.st_mode) && !access(out, X_OK))
				return 0;
			p = c ? c + 1 : NULL;
		}
	}
	return -ENOENT;
}

/* The line of a tool's stderr that says what went wrong: the last non-empty
 * one, or, when the tool printed its usage after the error (mkfs.xfs does),
 * the last one before "Usage:". */
static void im_last_line(char *text, char *out, size_t len)
{
	char *usage = strstr(text, "\nUsage:"), *end, *start;

	if (!strncmp(text, "Usage:", 6))
		usage = text;
	end = usage ? usage : text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == text && usage) {
		/* nothing before the usage: its own last line */
		im_last_line(usage + (*usage == '\n'), out, len);
		return;
	}
	start = end;
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(out, len, "%.*s", (int)(end - start), start);
}

/* Run path with argv, no shell: stdin and stdout /dev/null, stderr kept
 * (its last IM_MKFS_ERR bytes, NUL-terminated, in errbuf).  *status is
 * waitpid's. */
static int im_run(const char *path, char *const argv[], int *status, char *errbuf, size_t errcap)
{
	struct sigaction dfl;
	sigset_t none;
	size_t have = 0;
	int p[2], null, ret = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0) {
		ret = -errno;
		close(p[0]);
		close(p[1]);
		return ret;
	}
	/* Prepared before fork: the child only makes async-signal-safe calls. */
	sigemptyset(&none);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	pid = fork();
	if (pid == 0) {
		/* The agent's mask and ignored signals are not mkfs's. */
		sigprocmask(SIG_SETMASK, &none, NULL);
		sigaction(SIGPIPE, &dfl, NULL);
		if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(p[1], 2) < 0)
			_exit(126);
		if (close_range(3, ~0u, 0)) {
			for (int fd = 3; fd < 65536; fd++)
				close(fd);
		}
		execv(path, argv);
		static const char msg[] = "exec failed\n";
		ssize_t w = write(2, msg, sizeof(msg) - 1);
		(void)w;
		_exit(127);
	}
	if (pid < 0)
		ret = -errno;
	close(p[1]);
	close(null);
	while (!ret) {
		char chunk[1024];
		ssize_t k = read(p[0], chunk, sizeof(chunk));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if ((size_t)k > errcap - 1 - have) {
			/* keep the tail: drop the oldest bytes */
			size_t drop = (size_t)k - (errcap - 1 - have);

			if (drop > have)
				drop = have;
			memmove(errbuf, errbuf + drop, have - drop);
			have -= drop;
			if ((size_t)k > errcap - 1 - have)
				k = (ssize_t)(errcap - 1 - have);
		}
		memcpy(errbuf + have, chunk, (size_t)k);
		have += (size_t)k;
	}
	errbuf[have] = '\0';
	close(p[0]);
	while (pid > 0 && waitpid(pid, status, 0) < 0) {
		if (errno != EINTR) {
			ret = -errno;
			break;
		}
	}
	return ret;
}

int fy_mkfs(const char *dev, const char *fstype, char *err, size_t errlen)
{
	char prog[PATH_MAX], line[512], *out = NULL;
	const char *name;
	struct stat st;
	int status = 0, ret;

	if (im_empty(dev)) {
		im_err(err, errlen, "mkfs: no device");
		return -EINVAL;
	}
	if (fstype && !strcmp(fstype, "ext4"))
		name = "mkfs.ext4";
	else if (fstype && !strcmp(fstype, "xfs"))
		name = "mkfs.xfs";
	else {
		im_err(err, errlen, "mkfs %s: filesystem type \"%s\" is not supported (ext4 or xfs)", dev,
		       fstype ? fstype : "");
		return -EINVAL;
	}
	if (stat(dev, &st)) {
		ret = -errno;
		im_err(err, errlen, "mkfs %s: %s", dev, strerror(-ret));
		return ret;
	}
	if (im_which(name, prog, sizeof(prog))) {
		im_err(err, errlen, "mkfs %s: %s is not installed (not found in PATH or the sbin directories)", dev,
		       name);
		return -ENOENT;
	}
	/* -F / -f: the device may hold an old signature; the caller decided. */
	char *const argv[] = { (char *)name, "-q", strcmp(fstype, "xfs") ? "-F" : "-f", (char *)dev, NULL };

	out = malloc(IM_MKFS_ERR);
	if (!out) {
		im_err(err, errlen, "mkfs %s: out of memory", dev);
		return -ENOMEM;
	}
	ret = im_run(prog, argv, &status, out, IM_MKFS_ERR);
	if (ret) {
		im_err(err, errlen, "mkfs %s: running %s: %s", dev, prog, strerror(-ret));
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		ret = 0;
	} else {
		im_last_line(out, line, sizeof(line));
		if (WIFEXITED(status))
			im_err(err, errlen, "mkfs %s: %s exit status %d: %s", dev, name, WEXITSTATUS(status),
			       *line ? line : "(no message)");
		else
			im_err(err, errlen, "mkfs %s: %s killed by signal %d: %s", dev, name, WTERMSIG(status),
			       *line ? line : "(no message)");
		ret = -EIO;
	}
	free(out);
	return ret;
}

/* ---- mounts ------------------------------------------------------------- */

struct im_flag {
	const char *name;
	unsigned long ms;
};

/* The CSI mount flags that are mount(2) flags; "rw" and "defaults" are
 * what mount(2) does anyway.  Everything else is filesystem data. */
static const struct im_flag im_flags[] = {
	{ "ro", MS_RDONLY }, { "rw", 0 }, { "defaults", 0 }, { "noatime", MS_NOATIME },
	{ "relatime", MS_RELATIME }, { "nodiratime", MS_NODIRATIME }, { "nodev", MS_NODEV },
	{ "nosuid", MS_NOSUID }, { "noexec", MS_NOEXEC }, { "sync", MS_SYNCHRONOUS },
	{ "dirsync", MS_DIRSYNC }, { "lazytime", MS_LAZYTIME },
};

/* Make target as a directory (mkdir) or a file (bind_block): 0, 1 if made
 * here (so that a failed mount removes it again), or -errno. */
static int im_make_target(const char *what, const char *target, bool dir, char *err, size_t errlen)
{
	struct stat st;
	int fd, ret;

	if (!stat(target, &st)) {
		if (dir ? S_ISDIR(st.st_mode) : !S_ISDIR(st.st_mode))
			return 0;
		im_err(err, errlen, "%s: target %s is %s, not %s", what, target, im_kind(st.st_mode),
		       dir ? "a directory" : "a file");
		return dir ? -ENOTDIR : -EISDIR;
	}
	if (errno != ENOENT) {
		ret = -errno;
		im_err(err, errlen, "%s: target %s: %s", what, target, strerror(-ret));
		return ret;
	}
	if (dir) {
		if (!mkdir(target, 0750))
			return 1;
	} else {
		fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (fd >= 0) {
			close(fd);
			return 1;
		}
	}
	ret = -errno;
	im_err(err, errlen, "%s: create target %s: %s", what, target, strerror(-ret));
	return ret;
}

int fy_mount(const char *dev, const char *target, const char *fstype, const char *const *flags, size_t nflags,
	     bool readonly, char *err, size_t errlen)
{
	char data[4096], shown[4096], real[PATH_MAX];
	unsigned long ms = readonly ? MS_RDONLY : 0;
	size_t dl = 0, sl = 0;
	struct stat st;
	struct fy_mnt_at a;
	int made, ret;

	if (im_empty(dev) || im_empty(target) || im_empty(fstype) || (nflags && !flags)) {
		im_err(err, errlen, "mount: no %s given", im_empty(dev) ? "device" : im_empty(target) ? "target" :
		       im_empty(fstype) ? "filesystem type" : "flags");
		return -EINVAL;
	}
	data[0] = shown[0] = '\0';
	for (size_t i = 0; i < nflags; i++) {
		const char *f = flags[i];
		size_t k, n;

		if (!f || !*f)
			continue;
		if (strpbrk(f, ",\n")) {
			im_err(err, errlen, "mount %s on %s: mount flag \"%.*s\" holds a comma or a newline", dev,
			       target, (int)strcspn(f, "\n"), f);
			return -EINVAL;
		}
		n = strlen(f);
		if (sl + n + 2 > sizeof(shown)) {
			im_err(err, errlen, "mount %s on %s: mount flags longer than %zu bytes", dev, target,
			       sizeof(shown) - 1);
			return -EINVAL;
		}
		sl += (size_t)sprintf(shown + sl, "%s%s", sl ? "," : "", f);
		for (k = 0; k < sizeof(im_flags) / sizeof(im_flags[0]); k++)
			if (!strcmp(f, im_flags[k].name))
				break;
		if (k < sizeof(im_flags) / sizeof(im_flags[0])) {
			ms |= im_flags[k].ms;
			continue;
		}
		dl += (size_t)sprintf(data + dl, "%s%s", dl ? "," : "", f);
	}
	readonly = ms & MS_RDONLY;
	if (stat(dev, &st)) {
		ret = -errno;
		im_err(err, errlen, "mount %s on %s: %s", dev, target, strerror(-ret));
		return ret;
	}
	if (!S_ISBLK(st.st_mode)) {
		im_err(err, errlen, "mount %s on %s: %s is %s, not a block device", dev, target, dev,
		       im_kind(st.st_mode));
		return -ENOTBLK;
	}
	made = im_make_target("mount", target, true, err, errlen);
	if (made < 0)
		return made;
	if (!realpath(target, real)) {
		ret = -errno;
		im_err(err, errlen, "mount %s on %s: realpath: %s", dev, target, strerror(-ret));
		goto fail;
	}
	ret = fy_mnt_at(real, &a);
	if (ret) {
		ret = ret < 0 ? ret : -EIO;
		im_err(err, errlen, "mount %s on %s: read /proc/self/mountinfo: %s", dev, target, strerror(-ret));
		goto fail;
	}
	if (a.mounted) {
		if (!fy_mnt_same_dev(a.maj, a.min, a.source, st.st_rdev) || !a.whole) {
			im_err(err, errlen, "mount %s on %s: already a mount point of %s (%s%s)", dev, target, a.source,
			       a.fstype, a.whole ? "" : ", a part of it");
			return -EBUSY;
		}
		if (a.ro != readonly) {
			im_err(err, errlen, "mount %s on %s: already mounted %s, asked %s", dev, target,
			       a.ro ? "read-only" : "read-write", readonly ? "read-only" : "read-write");
			return -EBUSY;
		}
		return 0;
	}
	if (mount(dev, real, fstype, ms, dl ? data : NULL)) {
		ret = -errno;
		im_err(err, errlen, "mount %s on %s (%s%s%s%s): %s", dev, target, fstype, readonly ? ", read-only" : "",
		       sl ? ", flags " : "", shown, strerror(-ret));
		goto fail;
	}
	return 0;
fail:
	if (made > 0)
		rmdir(target);
	return ret;
}

int fy_bind_block(const char *dev, const char *target, bool readonly, char *err, size_t errlen)
{
	unsigned long keep = 0;
	char real[PATH_MAX];
	struct statvfs vfs;
	struct stat st, ts;
	struct fy_mnt_at a;
	int made, ret;

	if (im_empty(dev) || im_empty(target)) {
		im_err(err, errlen, "bind: no %s given", im_empty(dev) ? "device" : "target");
		return -EINVAL;
	}
	if (stat(dev, &st)) {
		ret = -errno;
		im_err(err, errlen, "bind %s on %s: %s", dev, target, strerror(-ret));
		return ret;
	}
	if (!S_ISBLK(st.st_mode)) {
		im_err(err, errlen, "bind %s on %s: %s is %s, not a block device", dev, target, dev,
		       im_kind(st.st_mode));
		return -ENOTBLK;
	}
	made = im_make_target("bind", target, false, err, errlen);
	if (made < 0)
		return made;
	if (!realpath(target, real)) {
		ret = -errno;
		im_err(err, errlen, "bind %s on %s: realpath: %s", dev, target, strerror(-ret));
		goto fail;
	}
	ret = fy_mnt_at(real, &a);
	if (ret) {
		ret = ret < 0 ? ret : -EIO;
		im_err(err, errlen, "bind %s on %s: read /proc/self/mountinfo: %s", dev, target, strerror(-ret));
		goto fail;
	}
	if (a.mounted) {
		/* Mounted: the target now is whatever was bound there. */
		if (stat(real, &ts) || !S_ISBLK(ts.st_mode) || ts.st_rdev != st.st_rdev) {
			im_err(err, errlen, "bind %s on %s: already a mount point of %s (%s)", dev, target, a.source,
			       a.fstype);
			return -EBUSY;
		}
		if (a.ro != readonly) {
			im_err(err, errlen, "bind %s on %s: already bound %s, asked %s", dev, target,
			       a.ro ? "read-only" : "read-write", readonly ? "read-only" : "read-write");
			return -EBUSY;
		}
		return 0;
	}
	if (mount(dev, real, NULL, MS_BIND, NULL)) {
		ret = -errno;
		im_err(err, errlen, "bind %s on %s: mount MS_BIND: %s", dev, target, strerror(-ret));
		goto fail;
	}
	if (!readonly)
		return 0;
	/* A bind mount takes MS_RDONLY only on a remount, which also resets
	 * the other per-mount flags: keep the ones the bind inherited. */
	if (!statvfs(real, &vfs)) {
		keep |= vfs.f_flag & ST_NOSUID ? MS_NOSUID : 0;
		keep |= vfs.f_flag & ST_NODEV ? MS_NODEV : 0;
		keep |= vfs.f_flag & ST_NOEXEC ? MS_NOEXEC : 0;
		keep |= vfs.f_flag & ST_NOATIME ? MS_NOATIME : 0;
		keep |= vfs.f_flag & ST_NODIRATIME ? MS_NODIRATIME : 0;
		keep |= vfs.f_flag & ST_RELATIME ? MS_RELATIME : 0;
	}
	if (mount(NULL, real, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL)) {
		ret = -errno;
		im_err(err, errlen, "bind %s on %s: remount MS_BIND|MS_REMOUNT|MS_RDONLY: %s", dev, target,
		       strerror(-ret));
		umount2(real, UMOUNT_NOFOLLOW);
		goto fail;
	}
	return 0;
fail:
	if (made > 0)
		unlink(target);
	return ret;
}

int fy_unmount(const char *target, char *err, size_t errlen)
{
	struct stat st;
	int ret, i;

	if (im_empty(target)) {
		im_err(err, errlen, "unmount: no target");
		return -EINVAL;
	}
	/* Stacked mounts (a publish repeated by hand) come off one by one. */
	for (i = 0; i < 16; i++) {
		if (!umount2(target, UMOUNT_NOFOLLOW))
			continue;
		if (errno == EINVAL || errno == ENOENT)
			break;	/* not (or no longer) a mount point; absent */
		ret = -errno;
		im_err(err, errlen, "unmount %s: umount2: %s", target, strerror(-ret));
		return ret;
	}
	if (i == 16) {
		im_err(err, errlen, "unmount %s: still a mount point after 16 unmounts", target);
		return -EBUSY;
	}
	if (lstat(target, &st)) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		im_err(err, errlen, "unmount %s: stat: %s", target, strerror(-ret));
		return ret;
	}
	if (S_ISDIR(st.st_mode) ? rmdir(target) : unlink(target)) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		im_err(err, errlen, "unmount %s: remove %s: %s", target, S_ISDIR(st.st_mode) ? "directory" : "file",
		       strerror(-ret));
		return ret;
	}
	return 0;
}

/* ---- byte ranges -------------------------------------------------------- */

int fy_img_allocated(const char *img, uint64_t from, struct fy_range **r, size_t *n, char *err, size_t errlen)
{
	struct fy_range *v = NULL;
	size_t cnt = 0, cap = 0;
	uint64_t off = from, size;
	const char *call = "lseek";
	struct stat st;
	int fd, ret = 0;

	if (im_empty(img) || !r || !n) {
		im_err(err, errlen, "allocated: no image given");
		return -EINVAL;
	}
	*r = NULL;
	*n = 0;
	fd = open(img, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		im_err(err, errlen, "allocated %s: open: %s", img, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		im_err(err, errlen, "allocated %s: %s, not an image file", img, im_kind(st.st_mode));
		ret = -EINVAL;
		goto out;
	}
	size = (uint64_t)st.st_size;
	while (off < size) {
		off_t a = lseek(fd, (off_t)off, SEEK_DATA), b;

		call = "lseek SEEK_DATA";
		if (a < 0) {
			if (errno != ENXIO)
				ret = -errno;
			break;	/* ENXIO: a hole from off to the end */
		}
		if ((uint64_t)a >= size)
			break;
		call = "lseek SEEK_HOLE";
		off = (uint64_t)a;
		b = lseek(fd, a, SEEK_HOLE);
		if (b < 0) {
			ret = -errno;
			break;
		}
		uint64_t end = (uint64_t)b < size ? (uint64_t)b : size;

		if (cnt && v[cnt - 1].off + v[cnt - 1].len == off) {
			v[cnt - 1].len += end - off;
		} else {
			if (cnt == cap) {
				size_t nc = cap ? 2 * cap : 64;
				struct fy_range *nv = realloc(v, nc * sizeof(*nv));

				if (!nv) {
					ret = -ENOMEM;
					call = "allocating the list";
					break;
				}
				v = nv;
				cap = nc;
			}
			v[cnt++] = (struct fy_range){ off, end - off };
		}
		off = end;
	}
	if (ret)
		im_err(err, errlen, "allocated %s at offset %llu: %s: %s", img, (unsigned long long)off, call,
		       strerror(-ret));
out:
	if (ret) {
		free(v);
		v = NULL;
		cnt = 0;
	}
	if (fd >= 0)
		close(fd);
	*r = v;
	*n = cnt;
	return ret;
}

int fy_img_delta(const char *base, const char *target, uint64_t from, struct fy_range **r, size_t *n, char *err,
		 size_t errlen)
{
	int ret = fy_extent_delta(base, target, from, r, n, err, errlen);

	/* On different filesystems they cannot be clones: the extents cannot say. */
	return ret == -EXDEV ? -EOPNOTSUPP : ret;
}
