/* The image backend (agent/image.c) on real filesystems and devices.
 *
 * Needs root, xfsprogs and e2fsprogs: otherwise it exits 77 saying why.  It
 * makes a scratch directory in $TMPDIR (or /tmp) holding a 2 GiB sparse
 * XFS image with reflink (mount -o loop), a 256 MiB ext4 image mounted the
 * same way and a small tmpfs; the tests make their images, loop devices and
 * mounts inside.  The tests run in a child process: whatever happens to it
 * (a failed assertion, a sanitizer abort), the parent then thaws, unmounts
 * and detaches everything under the scratch directory and removes it.  Only
 * loop devices backed by files in there are ever detached. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "image.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static char T[PATH_MAX];		/* the scratch directory (canonical) */
static char xfs[PATH_MAX + 8];		/* fixture mounts inside it */
static char ext4[PATH_MAX + 8];
static char tmpfs[PATH_MAX + 8];
static char err[1024];

/* ---- helpers ------------------------------------------------------------ */

/* Run argv (no shell); its output goes to /dev/null when quiet.  The exit
 * status, or -1. */
static int run(const char *const argv[], bool quiet)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		if (quiet) {
			int null = open("/dev/null", O_WRONLY);

			dup2(null, 1);
			dup2(null, 2);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void path_in(char *out, size_t len, const char *dir, const char *name)
{
	if (snprintf(out, len, "%s/%s", dir, name) >= (int)len)
		fail_msg("path %s/%s too long", dir, name);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		fail_msg("stat %s: %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

static bool exists(const char *path)
{
	struct stat st;

	return !lstat(path, &st);
}

/* Deterministic bytes: pattern(seed) at offset off. */
static void fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t off)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = (off + i) * 0x9e3779b97f4a7c15ull ^ seed;

		buf[i] = (unsigned char)(x >> 29 ^ x >> 7 ^ 0x5a);
	}
}

/* Write len bytes of pattern seed at off (fsync'd), with O_DIRECT when the
 * path is a device; a missing file is made. */
static void write_pat(const char *path, uint64_t off, size_t len, uint64_t seed)
{
	struct stat st;
	unsigned char *buf;
	int fd;

	if (stat(path, &st))
		st.st_mode = S_IFREG;	/* a new file */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (S_ISBLK(st.st_mode) ? O_DIRECT : 0), 0600);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	assert_int_equal(posix_memalign((void **)&buf, 4096, len ? len : 1), 0);
	fill(buf, len, seed, off);
	if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
		fail_msg("pwrite %s at %" PRIu64 ": %s", path, off, strerror(errno));
	assert_int_equal(fsync(fd), 0);
	close(fd);
	free(buf);
}

/* The bytes at off are pattern seed. */
static void check_pat(const char *path, uint64_t off, size_t len, uint64_t seed)
{
	unsigned char *want = malloc(len), *got = malloc(len);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0 && want && got);
	fill(want, len, seed, off);
	assert_int_equal(pread(fd, got, len, (off_t)off), (ssize_t)len);
	if (memcmp(want, got, len))
		fail_msg("%s at %" PRIu64 ": not the bytes written", path, off);
	close(fd);
	free(want);
	free(got);
}

/* a and b hold the same bytes (and have the same size). */
static void assert_same_file(const char *a, const char *b)
{
	const size_t bs = 4 * MiB;
	char *x = malloc(bs), *y = malloc(bs);
	int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
	uint64_t size = file_size(a);

	assert_true(x && y && fa >= 0 && fb >= 0);
	assert_int_equal(file_size(b), size);
	for (uint64_t off = 0; off < size; off += bs) {
		size_t n = size - off < bs ? (size_t)(size - off) : bs;

		assert_int_equal(pread(fa, x, n, (off_t)off), (ssize_t)n);
		assert_int_equal(pread(fb, y, n, (off_t)off), (ssize_t)n);
		if (memcmp(x, y, n))
			fail_msg("%s and %s differ in [%" PRIu64 ", +%zu)", a, b, off, n);
	}
	free(x);
	free(y);
	close(fa);
	close(fb);
}

/* The physical address FIEMAP gives for the extent at logical off. */
static uint64_t physical_at(const char *path, uint64_t off, uint32_t *flags)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent e[1];
	} m;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	memset(&m, 0, sizeof(m));
	m.fm.fm_start = off;
	m.fm.fm_length = 1;
	m.fm.fm_flags = FIEMAP_FLAG_SYNC;
	m.fm.fm_extent_count = 1;
	assert_int_equal(ioctl(fd, FS_IOC_FIEMAP, &m), 0);
	close(fd);
	assert_int_equal(m.fm.fm_mapped_extents, 1);
	*flags = m.e[0].fe_flags;
	return m.e[0].fe_physical + (off - m.e[0].fe_logical);
}

/* The per-mount options and the superblock options of the top mount at
 * path (no escapes in our paths but the one test that checks them). */
static bool mount_opts(const char *path, char *opts, size_t olen, char *super, size_t slen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], pt[PATH_MAX], o[1024], sp[2048];
	bool found = false;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s %1023s", pt, o) != 2)
			continue;
		if (strcmp(pt, path))
			continue;
		if (sscanf(dash + 3, "%*s %*s %2047s", sp) != 1)
			sp[0] = '\0';
		snprintf(opts, olen, "%s", o);
		snprintf(super, slen, "%s", sp);
		found = true;
	}
	fclose(f);
	return found;
}

static bool has_opt(const char *opts, const char *opt)
{
	size_t n = strlen(opt);

	for (const char *p = opts; p; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (!strncmp(p, opt, n) && (p[n] == ',' || !p[n]))
			return true;
	}
	return false;
}

static uint64_t dev_size(const char *dev)
{
	uint64_t size = 0;
	int fd = open(dev, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, BLKGETSIZE64, &size), 0);
	close(fd);
	return size;
}

static uint32_t loop_flags(const char *dev)
{
	struct loop_info64 info;
	int fd = open(dev, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	memset(&info, 0, sizeof(info));
	assert_int_equal(ioctl(fd, LOOP_GET_STATUS64, &info), 0);
	close(fd);
	return info.lo_flags;
}

/* A new image of size bytes at dir/name attached to a loop device. */
static void image_on_loop(const char *dir, const char *name, uint64_t size, char *img, size_t ilen, char *dev,
			  size_t dlen)
{
	path_in(img, ilen, dir, name);
	if (fy_img_create(img, size, err, sizeof(err)))
		fail_msg("%s", err);
	if (fy_loop_attach(img, false, dev, dlen, err, sizeof(err)))
		fail_msg("%s", err);
}

static void detach(const char *dev)
{
	if (fy_loop_detach(dev, err, sizeof(err)))
		fail_msg("%s", err);
}

static void mkfs(const char *dev, const char *type)
{
	if (fy_mkfs(dev, type, err, sizeof(err)))
		fail_msg("%s", err);
}

/* err must hold every one of the strings (NULL-terminated list). */
static void err_has(const char *first, ...)
{
	va_list ap;

	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *))
		if (!strstr(err, s))
			fail_msg("error \"%s\" does not mention \"%s\"", err, s);
	va_end(ap);
	if (strchr(err, '\n'))
		fail_msg("error \"%s\" is more than one line", err);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Ranges are in order, non-empty, neither overlapping nor adjacent, and
 * end by size. */
static void assert_ranges_sane(const struct fy_range *r, size_t n, uint64_t size)
{
	for (size_t i = 0; i < n; i++) {
		if (!r[i].len || r[i].off + r[i].len > size)
			fail_msg("range %zu [%" PRIu64 ", +%" PRIu64 ") empty or past %" PRIu64, i, r[i].off, r[i].len,
				 size);
		if (i && r[i - 1].off + r[i - 1].len >= r[i].off)
			fail_msg("ranges %zu and %zu overlap, touch or are out of order", i - 1, i);
	}
}

static void assert_ranges(const struct fy_range *r, size_t n, const struct fy_range *want, size_t nwant)
{
	for (size_t i = 0; i < n || i < nwant; i++) {
		if (i < n && i < nwant && r[i].off == want[i].off && r[i].len == want[i].len)
			continue;
		for (size_t k = 0; k < n; k++)
			print_message("got  [%" PRIu64 ", +%" PRIu64 ")\n", r[k].off, r[k].len);
		for (size_t k = 0; k < nwant; k++)
			print_message("want [%" PRIu64 ", +%" PRIu64 ")\n", want[k].off, want[k].len);
		fail_msg("range %zu differs (%zu ranges, %zu wanted)", i, n, nwant);
	}
}

/* ---- image files -------------------------------------------------------- */

static void t_create_grow_remove(void **state)
{
	char p[PATH_MAX], bad[PATH_MAX];
	struct stat st;

	(void)state;
	path_in(p, sizeof(p), xfs, "cgr.img");
	assert_int_equal(fy_img_create(p, GiB, err, sizeof(err)), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, GiB);
	assert_true(st.st_blocks == 0);		/* sparse */
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(fy_img_create(p, GiB, err, sizeof(err)), -EEXIST);
	err_has(p, "File exists", NULL);

	assert_int_equal(fy_img_grow(p, 2 * GiB, err, sizeof(err)), 0);
	assert_int_equal(file_size(p), 2 * GiB);
	assert_int_equal(fy_img_grow(p, 2 * GiB, err, sizeof(err)), 0);
	assert_int_equal(fy_img_grow(p, GiB, err, sizeof(err)), -EINVAL);
	err_has(p, "never shrink", NULL);
	assert_int_equal(file_size(p), 2 * GiB);

	assert_int_equal(fy_img_remove(p, err, sizeof(err)), 0);
	assert_false(exists(p));
	assert_int_equal(fy_img_remove(p, err, sizeof(err)), 0);

	/* bad paths */
	path_in(bad, sizeof(bad), T, "no-such-dir/x.img");
	assert_int_equal(fy_img_create(bad, MiB, err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);
	assert_int_equal(fy_img_grow(bad, MiB, err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);
	assert_int_equal(fy_img_grow(T, MiB, err, sizeof(err)), -EISDIR);
	err_has(T, NULL);
	assert_int_equal(fy_img_remove(T, err, sizeof(err)), -EISDIR);
	err_has(T, NULL);
	assert_int_equal(fy_img_create("", MiB, err, sizeof(err)), -EINVAL);
}

static void t_reflink_capable(void **state)
{
	char bad[PATH_MAX];

	(void)state;
	assert_int_equal(fy_img_reflink_capable(xfs), 1);
	assert_int_equal(fy_img_reflink_capable(ext4), 0);
	assert_int_equal(fy_img_reflink_capable(tmpfs), 0);
	path_in(bad, sizeof(bad), T, "no-such-dir");
	assert_int_equal(fy_img_reflink_capable(bad), -ENOENT);
}

/* No temporary file of a clone left in dir. */
static void assert_no_temp(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			fail_msg("temporary file %s/%s left behind", dir, e->d_name);
	closedir(d);
}

static void t_clone_reflink(void **state)
{
	const uint64_t size = 256 * MiB;
	char src[PATH_MAX], dst[PATH_MAX], bad[PATH_MAX];
	uint32_t fs, fd;
	bool reflinked = false;

	(void)state;
	path_in(src, sizeof(src), xfs, "cl-src.img");
	path_in(dst, sizeof(dst), xfs, "cl-dst.img");
	assert_int_equal(fy_img_create(src, size, err, sizeof(err)), 0);
	write_pat(src, 0, MiB, 1);
	write_pat(src, 100 * MiB + 4096, 64 * KiB, 2);
	write_pat(src, size - 4096, 4096, 3);
	if (fy_img_clone(src, dst, &reflinked, err, sizeof(err)))
		fail_msg("%s", err);
	assert_true(reflinked);
	assert_same_file(src, dst);
	/* The same blocks on disk, marked shared. */
	assert_true(physical_at(src, 0, &fs) == physical_at(dst, 0, &fd));
	assert_true(physical_at(src, 100 * MiB + 8192, &fs) == physical_at(dst, 100 * MiB + 8192, &fd));
	assert_true((fs & FIEMAP_EXTENT_SHARED) && (fd & FIEMAP_EXTENT_SHARED));
	assert_no_temp(xfs);

	/* Published data is never replaced. */
	reflinked = true;
	assert_int_equal(fy_img_clone(src, dst, &reflinked, err, sizeof(err)), -EEXIST);
	assert_false(reflinked);
	err_has(dst, "exists", NULL);

	/* A write to the clone leaves the source alone. */
	write_pat(dst, 0, 4096, 9);
	check_pat(src, 0, 4096, 1);
	assert_true(physical_at(src, 0, &fs) != physical_at(dst, 0, &fd));

	/* bad inputs: nothing is left at dst */
	path_in(bad, sizeof(bad), xfs, "no-such.img");
	unlink(dst);
	assert_int_equal(fy_img_clone(bad, dst, &reflinked, err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);
	assert_false(exists(dst));
	assert_int_equal(fy_img_clone(xfs, dst, &reflinked, err, sizeof(err)), -EINVAL);
	err_has(xfs, "directory", NULL);
	assert_false(exists(dst));
	path_in(bad, sizeof(bad), T, "no-such-dir/x.img");
	assert_int_equal(fy_img_clone(src, bad, &reflinked, err, sizeof(err)), -ENOENT);
	err_has(src, NULL);
	assert_no_temp(xfs);
	unlink(src);
}

/* Where extents cannot be shared: a sparse copy, holes kept. */
static void sparse_copy_in(const char *sdir, const char *ddir, const char *tag)
{
	const uint64_t size = 256 * MiB + 512;
	char src[PATH_MAX], dst[PATH_MAX], name[64];
	struct fy_range *a, *b;
	size_t na, nb;
	struct stat ss, ds;
	bool reflinked = true;

	snprintf(name, sizeof(name), "sp-%s-src.img", tag);
	path_in(src, sizeof(src), sdir, name);
	snprintf(name, sizeof(name), "sp-%s-dst.img", tag);
	path_in(dst, sizeof(dst), ddir, name);
	assert_int_equal(fy_img_create(src, size, err, sizeof(err)), 0);
	write_pat(src, 0, 64 * KiB, 4);
	write_pat(src, 100 * MiB, MiB, 5);
	write_pat(src, 256 * MiB - 4096, 4096 + 512, 6);
	if (fy_img_clone(src, dst, &reflinked, err, sizeof(err)))
		fail_msg("%s: %s", tag, err);
	assert_false(reflinked);
	assert_same_file(src, dst);
	assert_int_equal(stat(src, &ss), 0);
	assert_int_equal(stat(dst, &ds), 0);
	print_message("%s: source %lld blocks, copy %lld blocks of 512 bytes\n", tag, (long long)ss.st_blocks,
		      (long long)ds.st_blocks);
	assert_true((uint64_t)ds.st_blocks * 512 < 2 * MiB);	/* 1.07 MiB of data, no more */
	assert_int_equal(ds.st_mode & 0777, ss.st_mode & 0777);
	/* The holes are the same holes. */
	assert_int_equal(fy_img_allocated(src, 0, &a, &na, err, sizeof(err)), 0);
	assert_int_equal(fy_img_allocated(dst, 0, &b, &nb, err, sizeof(err)), 0);
	assert_int_equal(na, 3);
	assert_ranges(b, nb, a, na);
	free(a);
	free(b);
	assert_no_temp(ddir);
	unlink(src);
	unlink(dst);
}

static void t_clone_sparse(void **state)
{
	(void)state;
	sparse_copy_in(tmpfs, tmpfs, "tmpfs");
	sparse_copy_in(ext4, ext4, "ext4");
	sparse_copy_in(xfs, ext4, "xfs-to-ext4");	/* EXDEV: another filesystem */
}

/* ---- loop devices ------------------------------------------------------- */

static int sector_size(const char *dev)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC), ss = -1;

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, BLKSSZGET, &ss), 0);
	close(fd);
	return ss;
}

static void t_loop(void **state)
{
	char img[PATH_MAX], dev[64], dev2[64], dev3[64], bad[PATH_MAX];
	int fd;

	(void)state;
	image_on_loop(xfs, "loop.img", 64 * MiB, img, sizeof(img), dev, sizeof(dev));
	assert_int_equal(strncmp(dev, "/dev/loop", 9), 0);
	assert_int_equal(fy_loop_find(img, dev2, sizeof(dev2)), 0);
	assert_string_equal(dev, dev2);
	/* Attached again: the same device. */
	assert_int_equal(fy_loop_attach(img, false, dev2, sizeof(dev2), err, sizeof(err)), 0);
	assert_string_equal(dev, dev2);
	/* Buffered, 512-byte sectors (direct I/O would give a reflinked file
	 * 4096-byte ones, and its filesystem would no longer mount). */
	assert_false(loop_flags(dev) & LO_FLAGS_DIRECT_IO);
	assert_int_equal(sector_size(dev), 512);
	assert_false(loop_flags(dev) & LO_FLAGS_READ_ONLY);
	assert_int_equal(dev_size(dev), 64 * MiB);

	/* Writes through the device land in the file. */
	write_pat(dev, MiB, 64 * KiB, 7);
	check_pat(img, MiB, 64 * KiB, 7);

	/* The device follows the image when it grows. */
	assert_int_equal(fy_img_grow(img, 96 * MiB, err, sizeof(err)), 0);
	assert_int_equal(dev_size(dev), 96 * MiB);

	assert_int_equal(fy_loop_detach(dev, err, sizeof(err)), 0);
	assert_int_equal(fy_loop_find(img, dev2, sizeof(dev2)), -ENOENT);
	assert_int_equal(fy_loop_detach(dev, err, sizeof(err)), 0);	/* already free */

	/* Read-only. */
	assert_int_equal(fy_loop_attach(img, true, dev2, sizeof(dev2), err, sizeof(err)), 0);
	assert_true(loop_flags(dev2) & LO_FLAGS_READ_ONLY);
	fd = open(dev2, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		char b[512] = { 0 };

		assert_true(pwrite(fd, b, sizeof(b), 0) < 0);
		close(fd);
	}
	/* A writer gets a read-write device of its own; readers share theirs. */
	assert_int_equal(fy_loop_attach(img, false, dev3, sizeof(dev3), err, sizeof(err)), 0);
	assert_string_not_equal(dev2, dev3);
	assert_false(loop_flags(dev3) & LO_FLAGS_READ_ONLY);
	detach(dev3);
	assert_int_equal(fy_loop_attach(img, true, dev3, sizeof(dev3), err, sizeof(err)), 0);
	assert_string_equal(dev2, dev3);
	detach(dev2);

	/* A reflink clone attached keeps 512-byte sectors too. */
	{
		char clone[PATH_MAX];
		bool reflinked = false;

		path_in(clone, sizeof(clone), xfs, "loop-clone.img");
		assert_int_equal(fy_img_clone(img, clone, &reflinked, err, sizeof(err)), 0);
		assert_true(reflinked);
		assert_int_equal(fy_loop_attach(img, false, dev2, sizeof(dev2), err, sizeof(err)), 0);
		assert_int_equal(sector_size(dev2), 512);
		assert_int_equal(fy_loop_attach(clone, false, dev3, sizeof(dev3), err, sizeof(err)), 0);
		assert_int_equal(sector_size(dev3), 512);
		detach(dev3);
		detach(dev2);
		unlink(clone);
	}

	/* Bad inputs. */
	assert_int_equal(fy_loop_attach(xfs, false, dev3, sizeof(dev3), err, sizeof(err)), -EISDIR);
	err_has(xfs, NULL);
	assert_int_equal(fy_loop_attach(xfs, true, dev3, sizeof(dev3), err, sizeof(err)), -EISDIR);
	err_has(xfs, "directory", NULL);
	path_in(bad, sizeof(bad), xfs, "no-such.img");
	assert_int_equal(fy_loop_attach(bad, false, dev3, sizeof(dev3), err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);
	assert_int_equal(fy_loop_find(bad, dev3, sizeof(dev3)), -ENOENT);
	assert_int_equal(fy_loop_detach("/dev/null", err, sizeof(err)), -EINVAL);
	err_has("/dev/null", "not a loop device", NULL);
	assert_int_equal(fy_loop_detach(bad, err, sizeof(err)), -ENOENT);
	assert_int_equal(fy_img_remove(img, err, sizeof(err)), 0);
}

/* ---- filesystems -------------------------------------------------------- */

static void probe_is(const char *dev, const char *want)
{
	char type[16] = "?";

	if (fy_fs_probe(dev, type, sizeof(type), err, sizeof(err)))
		fail_msg("%s", err);
	if (strcmp(type, want))
		fail_msg("probe %s: \"%s\", expected \"%s\"", dev, type, want);
}

static void t_probe_mkfs(void **state)
{
	char img[PATH_MAX], small[PATH_MAX], dev[64], sdev[64], type[16];
	const char *btrfs[] = { "mkfs.btrfs", "-q", "-f", NULL, NULL };

	(void)state;
	image_on_loop(xfs, "fs.img", 512 * MiB, img, sizeof(img), dev, sizeof(dev));
	probe_is(dev, "");
	probe_is(img, "");	/* an image file reads the same */
	mkfs(dev, "xfs");
	probe_is(dev, "xfs");
	mkfs(dev, "ext4");
	probe_is(dev, "ext4");
	mkfs(dev, "xfs");
	probe_is(dev, "xfs");
	btrfs[3] = dev;
	if (run(btrfs, true) == 0)
		probe_is(dev, "btrfs");
	else
		print_message("mkfs.btrfs not run: btrfs probe not checked\n");

	/* Bad inputs. */
	assert_int_equal(fy_mkfs(dev, "btrfs", err, sizeof(err)), -EINVAL);
	err_has("btrfs", "not supported", NULL);
	assert_int_equal(fy_mkfs(dev, NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(fy_mkfs("/dev/no-such-device", "xfs", err, sizeof(err)), -ENOENT);
	err_has("/dev/no-such-device", NULL);
	assert_int_equal(fy_fs_probe("/dev/no-such-device", type, sizeof(type), err, sizeof(err)), -ENOENT);
	err_has("/dev/no-such-device", NULL);
	assert_int_equal(fy_fs_probe(dev, type, 3, err, sizeof(err)), -ERANGE);

	/* mkfs.xfs refuses a 16 MiB device, then prints its usage: the error
	 * is its last line before that. */
	image_on_loop(xfs, "small.img", 16 * MiB, small, sizeof(small), sdev, sizeof(sdev));
	assert_int_equal(fy_mkfs(sdev, "xfs", err, sizeof(err)), -EIO);
	print_message("mkfs.xfs on 16 MiB: %s\n", err);
	err_has(sdev, "mkfs.xfs exit status 1: ", NULL);
	assert_null(strstr(err, "Usage"));
	assert_null(strstr(err, "<value>"));
	probe_is(sdev, "");
	detach(sdev);
	detach(dev);
	unlink(small);
	unlink(img);
}

/* ---- mounts ------------------------------------------------------------- */

static void t_mount(void **state)
{
	char ia[PATH_MAX], ib[PATH_MAX], da[64], db[64], tgt[PATH_MAX], tgt2[PATH_MAX], sp[PATH_MAX], f[PATH_MAX + 8];
	char src[PATH_MAX], opts[1024], super[2048], **paths;
	const char *noatime[] = { "noatime" }, *ro[] = { "ro" }, *bogus[] = { "noatime", "bogus_flag_x" };
	const char *comma[] = { "noatime,nodev" }, *nl[] = { "nodev\nx" }, *data[] = { "noatime", "commit=7" };
	const char *nodev[] = { "nodev", "", "defaults" };
	size_t n;
	int fd;

	(void)state;
	image_on_loop(xfs, "ma.img", 512 * MiB, ia, sizeof(ia), da, sizeof(da));
	image_on_loop(xfs, "mb.img", 64 * MiB, ib, sizeof(ib), db, sizeof(db));
	mkfs(da, "xfs");
	mkfs(db, "ext4");
	path_in(tgt, sizeof(tgt), T, "m1");
	path_in(tgt2, sizeof(tgt2), T, "m2");

	/* A new mount point, made on the way. */
	assert_false(exists(tgt));
	if (fy_mount(da, tgt, "xfs", noatime, 1, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(fy_mountpoint(tgt, src, sizeof(src)), 1);
	assert_string_equal(src, da);
	assert_true(mount_opts(tgt, opts, sizeof(opts), super, sizeof(super)));
	assert_true(has_opt(opts, "rw") && has_opt(opts, "noatime"));
	/* Idempotent; another device or another read-only state is refused. */
	assert_int_equal(fy_mount(da, tgt, "xfs", noatime, 1, false, err, sizeof(err)), 0);
	assert_int_equal(fy_mount(db, tgt, "ext4", NULL, 0, false, err, sizeof(err)), -EBUSY);
	err_has(tgt, da, NULL);
	assert_int_equal(fy_mount(da, tgt, "xfs", NULL, 0, true, err, sizeof(err)), -EBUSY);
	err_has(tgt, "read-write", NULL);
	path_in(f, sizeof(f), tgt, "file");
	write_pat(f, 0, 4096, 11);

	/* A bind mount of a directory of it is not the filesystem mounted. */
	path_in(sp, sizeof(sp), tgt, "sub");
	assert_int_equal(mkdir(sp, 0700), 0);
	assert_int_equal(mkdir(tgt2, 0700), 0);
	assert_int_equal(mount(sp, tgt2, NULL, MS_BIND, NULL), 0);
	assert_int_equal(fy_mount(da, tgt2, "xfs", noatime, 1, false, err, sizeof(err)), -EBUSY);
	err_has(tgt2, "a part of it", NULL);
	assert_int_equal(fy_unmount(tgt2, err, sizeof(err)), 0);
	assert_false(exists(tgt2));
	assert_int_equal(rmdir(sp), 0);

	/* The same filesystem at a second place; both are its mounts. */
	assert_int_equal(fy_mount(da, tgt2, "xfs", nodev, 3, false, err, sizeof(err)), 0);
	assert_true(mount_opts(tgt2, opts, sizeof(opts), super, sizeof(super)) && has_opt(opts, "nodev"));
	assert_int_equal(fy_mounts_of(da, &paths, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(paths[0], tgt);
	assert_string_equal(paths[1], tgt2);
	fy_strv_free(paths, n);
	/* Not while mounted. */
	assert_int_equal(fy_loop_detach(da, err, sizeof(err)), -EBUSY);
	err_has(da, "mounted", NULL);

	assert_int_equal(fy_unmount(tgt2, err, sizeof(err)), 0);
	assert_false(exists(tgt2));
	assert_int_equal(fy_unmount(tgt, err, sizeof(err)), 0);
	assert_false(exists(tgt));
	assert_int_equal(fy_unmount(tgt, err, sizeof(err)), 0);
	assert_int_equal(fy_mountpoint(tgt, NULL, 0), 0);
	assert_int_equal(fy_mounts_of(da, &paths, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	fy_strv_free(paths, n);

	/* Read-only, by flag; the same state asked by the argument is the
	 * same mount. */
	assert_int_equal(fy_mount(da, tgt, "xfs", ro, 1, false, err, sizeof(err)), 0);
	assert_true(mount_opts(tgt, opts, sizeof(opts), super, sizeof(super)) && has_opt(opts, "ro"));
	check_pat(f, 0, 4096, 11);
	fd = open(f, O_WRONLY | O_CLOEXEC);
	assert_true(fd < 0 && errno == EROFS);
	assert_int_equal(fy_mount(da, tgt, "xfs", NULL, 0, true, err, sizeof(err)), 0);
	assert_int_equal(fy_unmount(tgt, err, sizeof(err)), 0);

	/* A flag the filesystem does not know: the kernel's answer, and the
	 * directory made for the mount is gone again. */
	assert_int_equal(fy_mount(da, tgt, "xfs", bogus, 2, false, err, sizeof(err)), -EINVAL);
	err_has(da, tgt, "bogus_flag_x", "Invalid argument", NULL);
	assert_false(exists(tgt));
	/* A comma or a newline inside one flag: refused before mount(2). */
	assert_int_equal(fy_mount(da, tgt, "xfs", comma, 1, false, err, sizeof(err)), -EINVAL);
	err_has("noatime,nodev", "comma", NULL);
	assert_int_equal(fy_mount(da, tgt, "xfs", nl, 1, false, err, sizeof(err)), -EINVAL);
	assert_false(exists(tgt));

	/* Filesystem data reaches the filesystem. */
	assert_int_equal(fy_mount(db, tgt, "ext4", data, 2, false, err, sizeof(err)), 0);
	assert_true(mount_opts(tgt, opts, sizeof(opts), super, sizeof(super)));
	assert_true(has_opt(opts, "noatime") && has_opt(super, "commit=7"));
	assert_int_equal(fy_unmount(tgt, err, sizeof(err)), 0);

	/* A mount point whose name needs escaping in mountinfo. */
	path_in(sp, sizeof(sp), T, "m space\\tab\t");
	assert_int_equal(fy_mount(db, sp, "ext4", NULL, 0, false, err, sizeof(err)), 0);
	assert_int_equal(fy_mountpoint(sp, src, sizeof(src)), 1);
	assert_string_equal(src, db);
	assert_int_equal(fy_mount(db, sp, "ext4", NULL, 0, false, err, sizeof(err)), 0);
	assert_int_equal(fy_mounts_of(db, &paths, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(paths[0], sp);
	fy_strv_free(paths, n);
	assert_int_equal(fy_unmount(sp, err, sizeof(err)), 0);
	assert_false(exists(sp));

	/* Bad inputs. */
	assert_int_equal(fy_mount(ia, tgt, "xfs", NULL, 0, false, err, sizeof(err)), -ENOTBLK);
	err_has(ia, "not a block device", NULL);
	assert_int_equal(fy_mount("/dev/no-such-device", tgt, "xfs", NULL, 0, false, err, sizeof(err)), -ENOENT);
	err_has("/dev/no-such-device", NULL);
	path_in(f, sizeof(f), T, "no-such-dir/m");
	assert_int_equal(fy_mount(da, f, "xfs", NULL, 0, false, err, sizeof(err)), -ENOENT);
	err_has(f, NULL);
	assert_int_equal(fy_mount(da, tgt, "", NULL, 0, false, err, sizeof(err)), -EINVAL);
	assert_int_equal(fy_mount(da, ia, "xfs", NULL, 0, false, err, sizeof(err)), -ENOTDIR);
	err_has(ia, "not a directory", NULL);
	assert_int_equal(fy_mounts_of(ia, &paths, &n, err, sizeof(err)), -ENOTBLK);
	assert_int_equal(fy_mountpoint("/no/such/path", NULL, 0), 0);
	assert_int_equal(fy_mountpoint(xfs, NULL, 0), 1);
	assert_int_equal(fy_mountpoint(T, NULL, 0), 0);
	assert_false(exists(tgt));

	detach(da);
	detach(db);
	unlink(ia);
	unlink(ib);
}

static void t_bind_block(void **state)
{
	char img[PATH_MAX], img2[PATH_MAX], dev[64], dev2[64], tgt[PATH_MAX], src[PATH_MAX], opts[1024];
	char super[2048], **paths;
	struct stat ds, ts;
	size_t n;

	(void)state;
	image_on_loop(xfs, "bb.img", 64 * MiB, img, sizeof(img), dev, sizeof(dev));
	image_on_loop(xfs, "bb2.img", 64 * MiB, img2, sizeof(img2), dev2, sizeof(dev2));
	path_in(tgt, sizeof(tgt), T, "blk");

	assert_int_equal(fy_bind_block(dev, tgt, true, err, sizeof(err)), 0);
	assert_int_equal(fy_mountpoint(tgt, src, sizeof(src)), 1);
	assert_string_equal(src, dev);
	assert_int_equal(stat(dev, &ds), 0);
	assert_int_equal(stat(tgt, &ts), 0);
	assert_true(S_ISBLK(ts.st_mode) && ts.st_rdev == ds.st_rdev);
	assert_true(mount_opts(tgt, opts, sizeof(opts), super, sizeof(super)) && has_opt(opts, "ro"));
	assert_int_equal(fy_bind_block(dev, tgt, true, err, sizeof(err)), 0);
	assert_int_equal(fy_bind_block(dev, tgt, false, err, sizeof(err)), -EBUSY);
	err_has(tgt, "read-only", NULL);
	assert_int_equal(fy_bind_block(dev2, tgt, true, err, sizeof(err)), -EBUSY);
	err_has(tgt, NULL);
	assert_int_equal(fy_mounts_of(dev, &paths, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(paths[0], tgt);
	fy_strv_free(paths, n);
	assert_int_equal(fy_unmount(tgt, err, sizeof(err)), 0);
	assert_false(exists(tgt));
	assert_int_equal(fy_unmount(tgt, err, sizeof(err)), 0);

	/* Read-write: writes through the published node reach the image. */
	assert_int_equal(fy_bind_block(dev, tgt, false, err, sizeof(err)), 0);
	assert_true(mount_opts(tgt, opts, sizeof(opts), super, sizeof(super)) && has_opt(opts, "rw"));
	write_pat(tgt, 2 * MiB, 8192, 12);
	check_pat(img, 2 * MiB, 8192, 12);
	assert_int_equal(fy_unmount(tgt, err, sizeof(err)), 0);
	assert_false(exists(tgt));

	/* Bad inputs. */
	assert_int_equal(fy_bind_block(img, tgt, false, err, sizeof(err)), -ENOTBLK);
	err_has(img, "not a block device", NULL);
	assert_false(exists(tgt));
	assert_int_equal(fy_bind_block(dev, T, false, err, sizeof(err)), -EISDIR);
	err_has(T, "directory", NULL);
	detach(dev);
	detach(dev2);
	unlink(img);
	unlink(img2);
}

/* ---- freeze ------------------------------------------------------------- */

static void t_freeze(void **state)
{
	char img[PATH_MAX], dev[64], mnt[PATH_MAX], f[PATH_MAX + 8], bad[PATH_MAX];
	pid_t pid;
	int status;

	(void)state;
	image_on_loop(xfs, "fz.img", 512 * MiB, img, sizeof(img), dev, sizeof(dev));
	mkfs(dev, "xfs");
	path_in(mnt, sizeof(mnt), T, "fz");
	assert_int_equal(fy_mount(dev, mnt, "xfs", NULL, 0, false, err, sizeof(err)), 0);
	path_in(f, sizeof(f), mnt, "f");

	assert_int_equal(fy_fs_freeze(mnt, err, sizeof(err)), 0);
	assert_int_equal(fy_fs_freeze(mnt, err, sizeof(err)), -EBUSY);
	err_has(mnt, "already frozen", NULL);
	/* A writer waits for the thaw. */
	pid = fork();
	if (pid == 0) {
		int fd = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

		_exit(fd >= 0 && write(fd, "x", 1) == 1 && !fsync(fd) ? 0 : 1);
	}
	assert_true(pid > 0);
	usleep(300 * 1000);
	assert_int_equal(waitpid(pid, &status, WNOHANG), 0);	/* still blocked */
	assert_int_equal(fy_fs_thaw(mnt, err, sizeof(err)), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(fy_fs_thaw(mnt, err, sizeof(err)), 0);	/* not frozen: fine */

	/* Only a mount point is frozen, never the filesystem a directory is on. */
	assert_int_equal(fy_fs_freeze(T, err, sizeof(err)), -EINVAL);
	err_has(T, "not a mount point", NULL);
	assert_int_equal(fy_fs_thaw(T, err, sizeof(err)), -EINVAL);
	path_in(bad, sizeof(bad), T, "no-such-dir");
	assert_int_equal(fy_fs_freeze(bad, err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);

	assert_int_equal(fy_unmount(mnt, err, sizeof(err)), 0);
	detach(dev);
	unlink(img);
}

/* ---- byte ranges -------------------------------------------------------- */

static void allocated_in(const char *dir)
{
	char p[PATH_MAX];
	struct fy_range *r;
	size_t n;

	path_in(p, sizeof(p), dir, "al.img");
	assert_int_equal(fy_img_create(p, 64 * MiB, err, sizeof(err)), 0);
	write_pat(p, MiB, 4096, 1);
	write_pat(p, 8 * MiB, MiB, 2);
	write_pat(p, 9 * MiB, 64 * KiB, 3);	/* adjacent: one range */
	write_pat(p, 64 * MiB - 4096, 4096, 4);

	const struct fy_range all[] = { { MiB, 4096 }, { 8 * MiB, MiB + 64 * KiB }, { 64 * MiB - 4096, 4096 } };

	assert_int_equal(fy_img_allocated(p, 0, &r, &n, err, sizeof(err)), 0);
	assert_ranges(r, n, all, 3);
	free(r);
	const struct fy_range cut[] = { { 8 * MiB + 100, MiB + 64 * KiB - 100 }, { 64 * MiB - 4096, 4096 } };

	assert_int_equal(fy_img_allocated(p, 8 * MiB + 100, &r, &n, err, sizeof(err)), 0);
	assert_ranges(r, n, cut, 2);
	free(r);
	assert_int_equal(fy_img_allocated(p, MiB + 4096, &r, &n, err, sizeof(err)), 0);
	assert_ranges(r, n, all + 1, 2);
	free(r);
	assert_int_equal(fy_img_allocated(p, 64 * MiB, &r, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	free(r);
	unlink(p);
}

static void t_allocated(void **state)
{
	char bad[PATH_MAX];
	struct fy_range *r;
	size_t n;

	(void)state;
	allocated_in(xfs);
	allocated_in(tmpfs);
	allocated_in(ext4);
	path_in(bad, sizeof(bad), xfs, "no-such.img");
	assert_int_equal(fy_img_allocated(bad, 0, &r, &n, err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);
	assert_int_equal(fy_img_allocated(xfs, 0, &r, &n, err, sizeof(err)), -EINVAL);
	err_has(xfs, "directory", NULL);
}

/* The written byte ranges rounded out to blocks of bs, merged. */
static size_t expected(const struct fy_range *w, size_t nw, uint64_t bs, uint64_t from, uint64_t size,
		       struct fy_range *out)
{
	size_t n = 0;

	for (size_t i = 0; i < nw; i++) {
		uint64_t a = w[i].off / bs * bs, b = (w[i].off + w[i].len + bs - 1) / bs * bs;

		if (b > size)
			b = size;
		if (a < from)
			a = from;
		if (a >= b)
			continue;
		if (n && out[n - 1].off + out[n - 1].len >= a) {
			if (a + (b - a) > out[n - 1].off + out[n - 1].len)
				out[n - 1].len = b - out[n - 1].off;
		} else {
			out[n++] = (struct fy_range){ a, b - a };
		}
	}
	return n;
}

static void t_delta(void **state)
{
	const uint64_t size = GiB;
	/* In increasing order, as expected() wants them. */
	const struct fy_range w[] = {
		{ 5000, 10 },			/* inside one block */
		{ MiB, 64 * KiB },		/* aligned */
		{ 3 * MiB - 1, 2 },		/* across two blocks */
		{ 3 * MiB + 4096, 100 },	/* the block after: merged with them */
		{ 40 * MiB + 4096, 3 * 4096 },	/* in the middle of data */
		{ 700 * MiB, 4096 },		/* a hole of the base */
		{ GiB - 10, 10 },		/* the last block */
	};
	const size_t nw = sizeof(w) / sizeof(w[0]);
	char base[PATH_MAX], target[PATH_MAX], other[PATH_MAX], bad[PATH_MAX];
	struct fy_range want[16], *r;
	struct statfs sf;
	bool reflinked;
	uint64_t bs, grown;
	size_t n, nwant;

	(void)state;
	assert_int_equal(statfs(xfs, &sf), 0);
	bs = (uint64_t)sf.f_bsize;
	path_in(base, sizeof(base), xfs, "d-base.img");
	path_in(target, sizeof(target), xfs, "d-target.img");
	assert_int_equal(fy_img_create(base, size, err, sizeof(err)), 0);
	write_pat(base, 0, 64 * MiB, 21);
	write_pat(base, 512 * MiB, MiB, 22);
	assert_int_equal(fy_img_clone(base, target, &reflinked, err, sizeof(err)), 0);
	assert_true(reflinked);

	/* Fresh clones: nothing differs. */
	assert_int_equal(fy_img_delta(base, target, 0, &r, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	free(r);

	for (size_t i = 0; i < nw; i++)
		write_pat(target, w[i].off, (size_t)w[i].len, 30 + i);
	nwant = expected(w, nw, bs, 0, size, want);
	assert_int_equal(fy_img_delta(base, target, 0, &r, &n, err, sizeof(err)), 0);
	assert_ranges_sane(r, n, size);
	assert_ranges(r, n, want, nwant);
	free(r);

	/* From the middle of a range on. */
	nwant = expected(w, nw, bs, MiB + 32 * KiB, size, want);
	assert_int_equal(fy_img_delta(base, target, MiB + 32 * KiB, &r, &n, err, sizeof(err)), 0);
	assert_ranges(r, n, want, nwant);
	assert_int_equal(r[0].off, MiB + 32 * KiB);
	free(r);
	assert_int_equal(fy_img_delta(base, target, 2 * GiB, &r, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	free(r);

	/* Grown to an odd size: all of the new tail is changed, merged with
	 * the last block's range, and the last range ends at the new size. */
	grown = GiB + 100 * MiB + 123;
	assert_int_equal(truncate(target, (off_t)grown), 0);
	nwant = expected(w, nw, bs, 0, size, want);
	want[nwant - 1].len = grown - want[nwant - 1].off;
	assert_int_equal(fy_img_delta(base, target, 0, &r, &n, err, sizeof(err)), 0);
	assert_ranges_sane(r, n, grown);
	assert_ranges(r, n, want, nwant);
	free(r);
	const struct fy_range tail[] = { { GiB + 5, grown - GiB - 5 } };

	assert_int_equal(fy_img_delta(base, target, GiB + 5, &r, &n, err, sizeof(err)), 0);
	assert_ranges(r, n, tail, 1);
	free(r);

	/* Shrunk: nothing past the target's end. */
	assert_int_equal(truncate(target, (off_t)(2 * MiB)), 0);
	nwant = expected(w, nw, bs, 0, 2 * MiB, want);
	assert_int_equal(nwant, 2);
	assert_int_equal(fy_img_delta(base, target, 0, &r, &n, err, sizeof(err)), 0);
	assert_ranges(r, n, want, nwant);
	free(r);

	/* The extents cannot say. */
	path_in(other, sizeof(other), tmpfs, "d-a.img");
	assert_int_equal(fy_img_create(other, MiB, err, sizeof(err)), 0);
	path_in(bad, sizeof(bad), tmpfs, "d-b.img");
	assert_int_equal(fy_img_create(bad, MiB, err, sizeof(err)), 0);
	assert_int_equal(fy_img_delta(other, bad, 0, &r, &n, err, sizeof(err)), -EOPNOTSUPP);
	err_has("tmpfs", "FIEMAP", NULL);
	unlink(bad);
	assert_int_equal(fy_img_delta(base, other, 0, &r, &n, err, sizeof(err)), -EOPNOTSUPP);
	err_has(base, other, "different filesystems", NULL);
	unlink(other);
	/* Bad inputs. */
	path_in(bad, sizeof(bad), xfs, "no-such.img");
	assert_int_equal(fy_img_delta(base, bad, 0, &r, &n, err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);
	assert_int_equal(fy_img_delta(bad, target, 0, &r, &n, err, sizeof(err)), -ENOENT);
	err_has(bad, NULL);
	assert_int_equal(fy_img_delta(base, base, 0, &r, &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(fy_img_delta(base, xfs, 0, &r, &n, err, sizeof(err)), -EINVAL);
	err_has(xfs, "directory", NULL);
	unlink(base);
	unlink(target);
}

/* A sparse 100 GiB volume with 1000 data extents: clone it, change 1000
 * ranges, ask for the delta.  Checks the answer and prints the times (no
 * limits asserted here: the machine is shared). */
static void t_large(void **state)
{
	const uint64_t size = 100 * GiB, step = size / 1000 / MiB * MiB;
	char base[PATH_MAX], target[PATH_MAX];
	double t0, clone_ms, delta_ms[5];
	struct fy_range *r;
	bool reflinked;
	size_t n;
	int fd;

	(void)state;
	path_in(base, sizeof(base), xfs, "l-base.img");
	path_in(target, sizeof(target), xfs, "l-target.img");
	assert_int_equal(fy_img_create(base, size, err, sizeof(err)), 0);
	fd = open(base, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	for (int i = 0; i < 1000; i++) {
		char buf[64 * 1024];

		memset(buf, i & 0xff, sizeof(buf));
		assert_int_equal(pwrite(fd, buf, sizeof(buf), (off_t)(i * step)), (ssize_t)sizeof(buf));
	}
	assert_int_equal(fsync(fd), 0);
	close(fd);

	t0 = now_ms();
	assert_int_equal(fy_img_clone(base, target, &reflinked, err, sizeof(err)), 0);
	clone_ms = now_ms() - t0;
	assert_true(reflinked);

	fd = open(target, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	for (int i = 0; i < 1000; i++) {
		char buf[4096];

		memset(buf, 0xee, sizeof(buf));
		assert_int_equal(pwrite(fd, buf, sizeof(buf), (off_t)(i * step + 8192)), (ssize_t)sizeof(buf));
	}
	assert_int_equal(fsync(fd), 0);
	close(fd);

	for (int k = 0; k < 5; k++) {
		t0 = now_ms();
		assert_int_equal(fy_img_delta(base, target, 0, &r, &n, err, sizeof(err)), 0);
		delta_ms[k] = now_ms() - t0;
		assert_int_equal(n, 1000);
		for (size_t i = 0; i < n; i++)
			if (r[i].off != i * step + 8192 || r[i].len != 4096)
				fail_msg("range %zu: [%" PRIu64 ", +%" PRIu64 ")", i, r[i].off, r[i].len);
		free(r);
	}
	for (int i = 1; i < 5; i++)
		for (int j = i; j > 0 && delta_ms[j - 1] > delta_ms[j]; j--) {
			double x = delta_ms[j];

			delta_ms[j] = delta_ms[j - 1];
			delta_ms[j - 1] = x;
		}
	print_message("100 GiB sparse image, 1000 extents: FICLONE clone %.1f ms; delta of 1000 changed ranges: "
		      "%.2f ms (median of 5, min %.2f, max %.2f)\n", clone_ms, delta_ms[2], delta_ms[0], delta_ms[4]);
	unlink(base);
	unlink(target);
}

/* ---- the scratch filesystems -------------------------------------------- */

static bool starts_with_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(path, dir, n) && (path[n] == '/' || !path[n]);
}

/* Undo the kernel's octal escapes in place. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
			*w++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/* Mount points under T, last mounted first. */
static size_t mounts_under_T(char (*out)[PATH_MAX], size_t max)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], pt[PATH_MAX];
	size_t n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*s %*s %*s %*s %4095s", pt) != 1)
			continue;
		unescape(pt);
		if (starts_with_dir(pt, T) && n < max)
			snprintf(out[n++], PATH_MAX, "%s", pt);
	}
	fclose(f);
	for (size_t i = 0; i < n / 2; i++) {
		char x[PATH_MAX];

		memcpy(x, out[i], PATH_MAX);
		memcpy(out[i], out[n - 1 - i], PATH_MAX);
		memcpy(out[n - 1 - i], x, PATH_MAX);
	}
	return n;
}

/* Detach every loop device whose backing file is under T; how many are left. */
static int loops_under_T(bool detach_them)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	int left = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char p[PATH_MAX], back[PATH_MAX];
		FILE *f;
		int fd;

		if (strncmp(e->d_name, "loop", 4))
			continue;
		snprintf(p, sizeof(p), "/sys/block/%s/loop/backing_file", e->d_name);
		f = fopen(p, "re");
		if (!f)
			continue;
		if (!fgets(back, sizeof(back), f))
			back[0] = '\0';
		fclose(f);
		back[strcspn(back, "\n")] = '\0';
		if (!starts_with_dir(back, T))
			continue;
		left++;
		if (!detach_them)
			continue;
		snprintf(p, sizeof(p), "/dev/%s", e->d_name);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ioctl(fd, LOOP_CLR_FD, 0);
			close(fd);
		}
	}
	closedir(d);
	return left;
}

static void fixture_teardown(void)
{
	static char m[64][PATH_MAX];
	const char *rm[] = { "rm", "-rf", T, NULL };
	size_t n = 0;

	if (!T[0])
		return;
	/* Mounts of the tests' loop devices first, then those devices (which
	 * keep the XFS busy), then the scratch filesystems. */
	for (int pass = 0; pass < 4; pass++) {
		n = mounts_under_T(m, 64);
		for (size_t i = 0; i < n; i++) {
			int fd = open(m[i], O_RDONLY | O_CLOEXEC);

			if (fd >= 0) {
				ioctl(fd, FITHAW, 0);
				close(fd);
			}
			if (umount2(m[i], 0) && pass == 3)
				umount2(m[i], MNT_DETACH);
		}
		loops_under_T(true);
		if (!n && !loops_under_T(false))
			break;
	}
	if (mounts_under_T(m, 64) || loops_under_T(false))
		fprintf(stderr, "warning: mounts or loop devices under %s are left\n", T);
	else
		run(rm, false);
}

static int fixture_setup(char *why, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	char tmpl[PATH_MAX], img[PATH_MAX + 16], opt[64];
	const char *mkxfs[] = { "mkfs.xfs", "-q", "-m", "reflink=1", img, NULL };
	const char *mkext4[] = { "mkfs.ext4", "-q", "-F", img, NULL };
	const char *mnt[] = { "mount", "-o", "loop", img, NULL, NULL };
	int fd;

	snprintf(tmpl, sizeof(tmpl), "%s/ferry-image-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpl) || !realpath(tmpl, T)) {
		snprintf(why, len, "cannot make a scratch directory %s: %s", tmpl, strerror(errno));
		return -1;
	}
	path_in(xfs, sizeof(xfs), T, "xfs");
	path_in(ext4, sizeof(ext4), T, "ext4");
	path_in(tmpfs, sizeof(tmpfs), T, "tmpfs");

	snprintf(img, sizeof(img), "%s/xfs.img", T);
	fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(2 * GiB))) {
		snprintf(why, len, "cannot make %s: %s", img, strerror(errno));
		return -1;
	}
	close(fd);
	if (run(mkxfs, false)) {
		snprintf(why, len, "mkfs.xfs -m reflink=1 %s failed", img);
		return -1;
	}
	mnt[4] = xfs;
	if (mkdir(xfs, 0700) || run(mnt, false)) {
		snprintf(why, len, "cannot mount -o loop an XFS image on %s here", xfs);
		return -1;
	}

	snprintf(img, sizeof(img), "%s/ext4.img", T);
	fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(256 * MiB))) {
		snprintf(why, len, "cannot make %s: %s", img, strerror(errno));
		return -1;
	}
	close(fd);
	mnt[4] = ext4;
	if (run(mkext4, false) || mkdir(ext4, 0700) || run(mnt, false)) {
		snprintf(why, len, "cannot make and mount an ext4 image on %s here", ext4);
		return -1;
	}

	snprintf(opt, sizeof(opt), "size=%llu", 600 * MiB);
	if (mkdir(tmpfs, 0700) || mount("tmpfs", tmpfs, "tmpfs", 0, opt)) {
		snprintf(why, len, "cannot mount a tmpfs on %s: %s", tmpfs, strerror(errno));
		return -1;
	}
	return 0;
}

static bool have(const char *prog)
{
	const char *argv[] = { prog, "-V", NULL };

	return run(argv, true) == 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_create_grow_remove),
		cmocka_unit_test(t_reflink_capable),
		cmocka_unit_test(t_clone_reflink),
		cmocka_unit_test(t_clone_sparse),
		cmocka_unit_test(t_loop),
		cmocka_unit_test(t_probe_mkfs),
		cmocka_unit_test(t_mount),
		cmocka_unit_test(t_bind_block),
		cmocka_unit_test(t_freeze),
		cmocka_unit_test(t_allocated),
		cmocka_unit_test(t_delta),
		cmocka_unit_test(t_large),
	};
	const char *modprobe[] = { "modprobe", "xfs", NULL };
	char why[PATH_MAX + 128];
	FILE *f;
	char line[128];
	bool xfs_ok = false;
	int status, rc;
	pid_t pid;

	if (geteuid()) {
		printf("skip: needs root (loop devices, mkfs, mount)\n");
		return 77;
	}
	if (!have("mkfs.xfs") || !have("mkfs.ext4")) {
		printf("skip: mkfs.xfs or mkfs.ext4 is missing (xfsprogs, e2fsprogs)\n");
		return 77;
	}
	run(modprobe, true);
	f = fopen("/proc/filesystems", "re");
	while (f && fgets(line, sizeof(line), f))
		xfs_ok |= !!strstr(line, "\txfs\n");
	if (f)
		fclose(f);
	if (!xfs_ok) {
		printf("skip: this kernel has no XFS\n");
		return 77;
	}
	if (fixture_setup(why, sizeof(why))) {
		fixture_teardown();
		printf("skip: %s\n", why);
		return 77;
	}
	printf("scratch: %s (XFS with reflink on %s, ext4 on %s, tmpfs on %s)\n", T, xfs, ext4, tmpfs);
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		exit(cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0);	/* exit: flush, leak check */
	rc = 1;
	if (pid > 0 && waitpid(pid, &status, 0) == pid) {
		if (WIFEXITED(status))
			rc = WEXITSTATUS(status);
		else
			fprintf(stderr, "tests killed by signal %d\n", WTERMSIG(status));
	}
	fixture_teardown();
	return rc;
}
