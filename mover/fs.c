/* The host's filesystems: mountinfo, freeze/thaw, loop devices (ferry_fs.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/loop.h>

#include "ferry_fs.h"

static void fs_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fs_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const char *fs_kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISREG(m) ? "a regular file" : S_ISCHR(m) ? "a character device" :
	       S_ISLNK(m) ? "a symbolic link" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "a special file";
}

/* ---- mountinfo ----------------------------------------------------------- */

/* Undo the kernel's octal escapes (\040 space, \011 tab, \012 newline,
 * \134 backslash) in place. */
static void mnt_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
		    s[3] <= '7') {
			*w++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

static char *mnt_field(char **p)
{
	char *s = *p, *e;

	if (!s)
		return NULL;
	e = strchr(s, ' ');
	if (e) {
		*e = '\0';
		*p = e + 1;
	} else {
		*p = NULL;
	}
	return s;
}

/* "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue" */
static int mnt_parse(char *line, struct fy_mnt *m)
{
	char *p = line, *f;

	line[strcspn(line, "\n")] = '\0';
	if (!mnt_field(&p) || !mnt_field(&p) || !(f = mnt_field(&p)) || sscanf(f, "%u:%u", &m->maj, &m->min) != 2)
		return -EINVAL;
	m->root = mnt_field(&p);
	m->point = mnt_field(&p);
	m->opts = mnt_field(&p);
	while ((f = mnt_field(&p)) && strcmp(f, "-"))
		;	/* optional fields */
	m->fstype = mnt_field(&p);
	m->source = mnt_field(&p);
	if (!m->root || !m->point || !m->opts || !f || !m->fstype || !m->source)
		return -EINVAL;
	mnt_unescape(m->root);
	mnt_unescape(m->point);
	mnt_unescape(m->source);
	return 0;
}

int fy_mnt_each(int (*fn)(const struct fy_mnt *m, void *arg), void *arg)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int ret = 0;

	if (!f)
		return -errno;
	while (!ret && getline(&line, &cap, f) > 0) {
		struct fy_mnt m;

		if (!mnt_parse(line, &m))
			ret = fn(&m, arg);
	}
	if (!ret && ferror(f))
		ret = -EIO;
	free(line);
	fclose(f);
	return ret;
}

bool fy_mnt_opt_has(const char *opts, const char *opt)
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

static int mnt_at_fn(const struct fy_mnt *m, void *arg)
{
	struct fy_mnt_at *a = arg;

	if (strcmp(m->point, a->path))
		return 0;
	a->mounted = true;
	a->ro = fy_mnt_opt_has(m->opts, "ro");
	a->whole = !strcmp(m->root, "/");
	a->maj = m->maj;
	a->min = m->min;
	snprintf(a->fstype, sizeof(a->fstype), "%s", m->fstype);
	snprintf(a->source, sizeof(a->source), "%s", m->source);
	return 0;	/* a later mount on the same point hides this one: read on */
}

int fy_mnt_at(const char *real, struct fy_mnt_at *a)
{
	memset(a, 0, sizeof(*a));
	a->path = real;
	return fy_mnt_each(mnt_at_fn, a);
}

void fy_blkdev_name(dev_t rdev, char *out, size_t len)
{
	char path[64], line[256];
	FILE *f;

	snprintf(out, len, "/dev/block/%u:%u", major(rdev), minor(rdev));
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/uevent", major(rdev), minor(rdev));
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "DEVNAME=", 8)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, len, "/dev/%s", line + 8);
			break;
		}
	}
	fclose(f);
}

bool fy_mnt_same_dev(unsigned maj, unsigned min, const char *source, dev_t rdev)
{
	struct stat st;

	if (maj == major(rdev) && min == minor(rdev))
		return true;
	return source[0] == '/' && !stat(source, &st) && S_ISBLK(st.st_mode) && st.st_rdev == rdev;
}

int fy_mountpoint(const char *path, char *src, size_t srclen)
{
	char real[PATH_MAX];
	struct fy_mnt_at a;
	struct stat st;
	int ret;

	if (!path || !*path)
		return -EINVAL;
	if (!realpath(path, real))
		return errno == ENOENT ? 0 : -errno;
	ret = fy_mnt_at(real, &a);
	if (ret)
		return ret < 0 ? ret : -EIO;
	if (!a.mounted)
		return 0;
	if (src && srclen) {
		/* A bind-mounted device node: the device, not devtmpfs. */
		if (!stat(real, &st) && S_ISBLK(st.st_mode))
			fy_blkdev_name(st.st_rdev, src, srclen);
		else
			snprintf(src, srclen, "%s", a.source);
	}
	return 1;
}

struct mnt_of {
	dev_t rdev;
	struct fy_mount_info *v;
	size_t n, cap;
};

static int mnt_of_fn(const struct fy_mnt *m, void *arg)
{
	struct mnt_of *o = arg;
	struct stat st;
	bool match = fy_mnt_same_dev(m->maj, m->min, m->source, o->rdev), node = false;

	/* The device's node bind-mounted somewhere (the agent's block volumes). */
	if (!match && strcmp(m->root, "/") && (!strcmp(m->fstype, "devtmpfs") || !strcmp(m->fstype, "tmpfs")))
		match = node = !stat(m->point, &st) && S_ISBLK(st.st_mode) && st.st_rdev == o->rdev;
	if (!match)
		return 0;
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 8;
		struct fy_mount_info *v = realloc(o->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		o->v = v;
		o->cap = cap;
	}
	struct fy_mount_info *mi = &o->v[o->n];

	mi->point = strdup(m->point);
	if (!mi->point)
		return -ENOMEM;
	snprintf(mi->fstype, sizeof(mi->fstype), "%s", m->fstype);
	mi->ro = fy_mnt_opt_has(m->opts, "ro");
	mi->node = node;
	o->n++;
	return 0;
}

int fy_mounts_of_rdev(dev_t rdev, struct fy_mount_info **v, size_t *n)
{
	struct mnt_of o = { .rdev = rdev };
	int ret = fy_mnt_each(mnt_of_fn, &o);

	*v = NULL;
	*n = 0;
	if (ret) {
		fy_mount_info_free(o.v, o.n);
		return ret < 0 ? ret : -EIO;
	}
	*v = o.v;
	*n = o.n;
	return 0;
}

void fy_mount_info_free(struct fy_mount_info *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].point);
	free(v);
}

int fy_mounts_of(const char *dev, char ***paths, size_t *n, char *err, size_t errlen)
{
	struct fy_mount_info *v;
	size_t nv;
	struct stat st;
	int ret;

	if (!dev || !*dev || !paths || !n) {
		fs_err(err, errlen, "mounts: no device given");
		return -EINVAL;
	}
	*paths = NULL;
	*n = 0;
	if (stat(dev, &st)) {
		ret = -errno;
		fs_err(err, errlen, "mounts of %s: %s", dev, strerror(-ret));
		return ret;
	}
	if (!S_ISBLK(st.st_mode)) {
		fs_err(err, errlen, "mounts of %s: %s, not a block device", dev, fs_kind(st.st_mode));
		return -ENOTBLK;
	}
	ret = fy_mounts_of_rdev(st.st_rdev, &v, &nv);
	if (ret) {
		fs_err(err, errlen, "mounts of %s: %s", dev, ret == -ENOMEM ? "out of memory" :
		       "cannot read /proc/self/mountinfo");
		return ret;
	}
	/* The strings move into the array of paths. */
	char **p = calloc(nv ? nv : 1, sizeof(*p));

	if (!p) {
		fy_mount_info_free(v, nv);
		fs_err(err, errlen, "mounts of %s: out of memory", dev);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nv; i++)
		p[i] = v[i].point;
	free(v);
	*paths = p;
	*n = nv;
	return 0;
}

void fy_strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- freeze -------------------------------------------------------------- */

/* FIFREEZE / FITHAW, only on a mount point: the ioctl acts on whatever
 * filesystem holds the directory, and freezing the wrong one (the node's
 * root) would stop the node. */
static int fs_freeze(const char *what, const char *mnt, unsigned long req, char *err, size_t errlen)
{
	int fd, ret;

	if (!mnt || !*mnt) {
		fs_err(err, errlen, "%s: no mount point", what);
		return -EINVAL;
	}
	fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		fs_err(err, errlen, "%s %s: open: %s", what, mnt, strerror(-ret));
		return ret;
	}
	ret = fy_mountpoint(mnt, NULL, 0);
	if (ret <= 0) {
		fs_err(err, errlen, "%s %s: %s", what, mnt, ret ? strerror(-ret) : "not a mount point");
		close(fd);
		return ret ? ret : -EINVAL;
	}
	ret = ioctl(fd, req, 0) ? -errno : 0;
	close(fd);
	if (ret == -EINVAL && req == FITHAW)
		return 0;	/* not frozen */
	if (ret)
		fs_err(err, errlen, "%s %s: %s: %s%s", what, mnt, req == FITHAW ? "FITHAW" : "FIFREEZE", strerror(-ret),
		       ret == -EBUSY ? " (already frozen)" : ret == -EOPNOTSUPP ? " (this filesystem cannot freeze)" :
		       "");
	return ret;
}

int fy_fs_sync(const char *mnt, char *err, size_t errlen)
{
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret = 0;

	if (fd < 0 || syncfs(fd) < 0) {
		ret = -errno;
		fs_err(err, errlen, "sync %s: %s", mnt, strerror(-ret));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int fy_fs_freeze(const char *mnt, char *err, size_t errlen)
{
	return fs_freeze("freeze", mnt, FIFREEZE, err, errlen);
}

int fy_fs_thaw(const char *mnt, char *err, size_t errlen)
{
	return fs_freeze("thaw", mnt, FITHAW, err, errlen);
}

/* ---- loop devices -------------------------------------------------------- */

/* "loopN" -> N, or -1. */
static long loop_num(const char *name)
{
	char *end;
	long n;

	if (strncmp(name, "loop", 4) || name[4] < '0' || name[4] > '9')
		return -1;
	n = strtol(name + 4, &end, 10);
	return *end || n < 0 || n > INT_MAX ? -1 : n;
}

/* LOOP_GET_STATUS64's lo_device is the kernel's new_encode_dev() of the
 * backing file's device: compare numbers, not encodings. */
static dev_t loop_dev(uint64_t lo)
{
	return makedev((unsigned)((lo & 0xfff00) >> 8), (unsigned)((lo & 0xff) | ((lo >> 12) & 0xfff00)));
}

int fy_loop_backing(int fd, dev_t *dev, ino_t *ino)
{
	struct loop_info64 info;

	memset(&info, 0, sizeof(info));
	if (ioctl(fd, LOOP_GET_STATUS64, &info))
		return errno == EINVAL || errno == ENOTTY ? -ENOTTY : -errno;
	*dev = loop_dev(info.lo_device);
	*ino = (ino_t)info.lo_inode;
	return 0;
}

/* /sys/block says which devices are bound, so that only those are opened;
 * without sysfs every /dev/loopN is asked. */
int fy_loop_lookup(const struct stat *st, int want_ro, unsigned *num, uint32_t *flags)
{
	bool sys = true;
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	long best = -1;

	if (!d) {
		sys = false;
		d = opendir("/dev");
		if (!d)
			return -ENOENT;
	}
	while ((e = readdir(d))) {
		struct loop_info64 info;
		char path[64];
		long n = loop_num(e->d_name);
		int fd;

		if (n < 0 || (best >= 0 && n >= best))
			continue;
		if (sys) {
			snprintf(path, sizeof(path), "/sys/block/loop%ld/loop/backing_file", n);
			if (access(path, F_OK))
				continue;	/* not bound */
		}
		snprintf(path, sizeof(path), "/dev/loop%ld", n);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		memset(&info, 0, sizeof(info));
		if (!ioctl(fd, LOOP_GET_STATUS64, &info) && loop_dev(info.lo_device) == st->st_dev &&
		    info.lo_inode == (uint64_t)st->st_ino &&
		    (want_ro < 0 || !!(info.lo_flags & LO_FLAGS_READ_ONLY) == want_ro)) {
			best = n;
			*flags = info.lo_flags;
		}
		close(fd);
	}
	closedir(d);
	if (best < 0)
		return -ENOENT;
	*num = (unsigned)best;
	return 0;
}

/* LOOP_CONFIGURE, or LOOP_SET_FD + LOOP_SET_STATUS64 where the kernel lacks
 * it; *call names the ioctl that failed.  -EBUSY: taken by someone else. */
static int loop_bind_one(int ldev, int fd, const char *label, uint32_t flags, const char **call)
{
	struct loop_config cfg;
	struct loop_info64 info;
	size_t n = label ? strlen(label) : 0;
	int e;

	if (n >= LO_NAME_SIZE)
		n = LO_NAME_SIZE - 1;
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)fd;
	cfg.block_size = 512;
	cfg.info.lo_flags = flags;
	memcpy(cfg.info.lo_file_name, label, n);
	*call = "LOOP_CONFIGURE";
	if (!ioctl(ldev, LOOP_CONFIGURE, &cfg))
		return 0;
	e = errno;
	if (e != EINVAL && e != ENOTTY)
		return -e;
	*call = "LOOP_SET_FD";
	if (ioctl(ldev, LOOP_SET_FD, fd))
		return -errno;
	memset(&info, 0, sizeof(info));
	info.lo_flags = flags;
	memcpy(info.lo_file_name, label, n);
	*call = "LOOP_SET_STATUS64";
	if (ioctl(ldev, LOOP_SET_STATUS64, &info)) {
		e = errno;
		ioctl(ldev, LOOP_CLR_FD, 0);
		return -e;
	}
	return 0;
}

int fy_loop_bind(int fd, const char *label, bool readonly, bool autoclear, char *dev, size_t devlen, char *err,
		 size_t errlen)
{
	uint32_t flags = (readonly ? LO_FLAGS_READ_ONLY : 0) | (autoclear ? LO_FLAGS_AUTOCLEAR : 0);
	const char *call = "LOOP_CTL_GET_FREE";
	char path[32];
	struct stat st;
	int ctl, ret = -EBUSY;

	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		fs_err(err, errlen, "loop: %s is not an open regular file", label ? label : "the image");
		return -EINVAL;
	}
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		ret = -errno;
		fs_err(err, errlen, "loop: open /dev/loop-control: %s", strerror(-ret));
		return ret;
	}
	/* Another process may take the device between GET_FREE and the bind. */
	for (int tries = 0; tries < 64; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE), ldev;

		if (n < 0) {
			ret = -errno;
			fs_err(err, errlen, "loop: LOOP_CTL_GET_FREE for %s: %s", label, strerror(-ret));
			break;
		}
		snprintf(path, sizeof(path), "/dev/loop%d", n);
		ldev = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (ldev < 0) {
			ret = -errno;
			fs_err(err, errlen, "loop: open %s for %s: %s", path, label, strerror(-ret));
			break;
		}
		ret = loop_bind_one(ldev, fd, label ? label : "", flags, &call);
		if (ret == -EBUSY) {
			close(ldev);
			continue;
		}
		if (ret) {
			close(ldev);
			fs_err(err, errlen, "loop: %s %s for %s: %s", call, path, label, strerror(-ret));
			break;
		}
		if (snprintf(dev, devlen, "%s", path) >= (int)devlen) {
			ioctl(ldev, LOOP_CLR_FD, 0);
			close(ldev);
			fs_err(err, errlen, "loop: %s does not fit in %zu bytes", path, devlen);
			ret = -ERANGE;
			break;
		}
		close(ctl);
		return ldev;
	}
	if (ret == -EBUSY)
		fs_err(err, errlen, "loop: every free device was taken by another process (64 times) for %s", label);
	close(ctl);
	return ret;
}
