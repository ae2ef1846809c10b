/* Restore drills (ferry_drill.h): a snapshot restored to a scratch image,
 * read back and checked block by block against its manifest, optionally
 * attached read-only and checked by a command, timed, and removed.
 *
 * The scratch lives in a directory of its own, DIR/ferry-drill.XXXXXX,
 * made under another name, locked (flock) and only then renamed to its
 * final name: a drill that finds a ferry-drill.* directory whose lock
 * nobody holds knows its drill is dead and removes it. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/loop.h>

#include "buf.h"
#include "ferry_drill.h"
#include "ferry_fs.h"
#include "io/io.h"

extern char **environ;

#define SCRATCH_PREFIX "ferry-drill."
#define SCRATCH_NEW_PREFIX "ferry-drill-new."
#define CHECK_GRACE_NS (5 * INT64_C(1000000000))   /* SIGTERM, then SIGKILL this much later */
#define UNBIND_WAIT_NS (10 * INT64_C(1000000000))  /* a prober (udev, blkid) letting go of the device */
#define OUTPUT_KEEP (4 * FY_DRILL_OUTPUT_MAX)

/* ---- durations ----------------------------------------------------------- */

int fy_duration_parse(const char *s, int64_t *seconds)
{
	int64_t total = 0;
	const char *p = s;

	if (!s || !*s)
		return -EINVAL;
	while (*p) {
		char *end;
		int64_t unit;

		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);

		if (errno || end == p)
			return errno == ERANGE ? -ERANGE : -EINVAL;
		switch (*end) {
		case 's': unit = 1; break;
		case 'm': unit = 60; break;
		case 'h': unit = 3600; break;
		case 'd': unit = 86400; break;
		case 'w': unit = 7 * 86400; break;
		default: return -EINVAL;
		}
		if (v > (unsigned long long)(100 * 366 * INT64_C(86400)) / (unsigned long long)unit)
			return -ERANGE;
		total += (int64_t)v * unit;
		if (total > 100 * 366 * INT64_C(86400))
			return -ERANGE;
		p = end + 1;
	}
	*seconds = total;
	return 0;
}

void fy_duration_format(int64_t seconds, char *out, size_t len)
{
	static const struct { int64_t s; char u; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' },
	};
	const char *sign = seconds < 0 ? "-" : "";
	uint64_t v = seconds < 0 ? (uint64_t)(-(seconds + 1)) + 1 : (uint64_t)seconds;

	for (size_t i = 0; i < 4; i++) {
		uint64_t a = v / (uint64_t)units[i].s, rest = v % (uint64_t)units[i].s;

		if (!a && i < 3)
			continue;
		if (i < 3 && rest / (uint64_t)units[i + 1].s)
			snprintf(out, len, "%s%llu%c%llu%c", sign, (unsigned long long)a, units[i].u,
				 (unsigned long long)(rest / (uint64_t)units[i + 1].s), units[i + 1].u);
		else
			snprintf(out, len, "%s%llu%c", sign, (unsigned long long)a, units[i].u);
		return;
	}
}

/* ---- helpers ------------------------------------------------------------- */

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void human(uint64_t b, char *out, size_t len)
{
	if (b < 1024 * 1024)
		snprintf(out, len, "%.1f KiB", b / 1024.0);
	else if (b < (uint64_t)1 << 30)
		snprintf(out, len, "%.1f MiB", b / 1048576.0);
	else
		snprintf(out, len, "%.2f GiB", b / 1073741824.0);
}

static bool cancelled(const struct fy_drill_opts *o)
{
	return o->cancel && atomic_load(o->cancel);
}

/* Record the failure (the first one wins) and return rc. */
static int drill_fail(struct fy_drill_result *res, const char *stage, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int drill_fail(struct fy_drill_result *res, const char *stage, int rc, const char *fmt, ...)
{
	va_list ap;

	if (res->stage)
		return rc;
	res->stage = stage;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
	return rc;
}

static void note(const struct fy_drill_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const struct fy_drill_opts *o, const char *fmt, ...)
{
	va_list ap;

	if (!o->verbose)
		return;
	fputs("ferry: drill: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

uint64_t fy_manifest_data_bytes(const Ferry__V1__Manifest *m)
{
	static const uint8_t zero_id[FY_ID_LEN];
	uint64_t n = m->chunk_ids.len / FY_ID_LEN, bytes = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = i * m->chunk_size;

		if (memcmp(m->chunk_ids.data + i * FY_ID_LEN, zero_id, FY_ID_LEN))
			bytes += m->size - off < m->chunk_size ? m->size - off : m->chunk_size;
	}
	return bytes;
}

/* ---- the scratch directory ------------------------------------------------ */

/* Is dir (open) the file:// repository's top directory or below it? */
static int inside_repo(struct fy_repo *r, int dirfd_, bool *inside)
{
	const char *url = r->store->url;
	struct stat top, st;
	int fd, rc = 0;

	*inside = false;
	if (r->store->ops != &fy_store_file_ops)
		return 0;
	if (!strncasecmp(url, "file://", 7))
		url += 7;
	if (stat(url, &top) < 0)
		return -errno;
	fd = dup(dirfd_);
	if (fd < 0)
		return -errno;
	for (int level = 0; level < 4096; level++) {
		struct stat up;
		int ufd;

		if (fstat(fd, &st) < 0) {
			rc = -errno;
			break;
		}
		if (st.st_dev == top.st_dev && st.st_ino == top.st_ino) {
			*inside = true;
			break;
		}
		ufd = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (ufd < 0 || fstat(ufd, &up) < 0 || (up.st_dev == st.st_dev && up.st_ino == st.st_ino)) {
			if (ufd >= 0)
				close(ufd);
			break; /* the root */
		}
		close(fd);
		fd = ufd;
	}
	close(fd);
	return rc;
}

/* Remove what a drill leaves in its directory: images, restore's temporary
 * files.  Anything else stays (and so does the directory). */
static void scratch_empty(int dfd)
{
	int fd2 = dup(dfd);
	DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd2 >= 0)
			close(fd2);
		return;
	}
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		struct stat st;

		if ((n > 4 && !strcmp(e->d_name + n - 4, ".img")) ||
		    (n > 18 && !strcmp(e->d_name + n - 18, ".img.ferry-restore")))
			if (!fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode))
				unlinkat(dfd, e->d_name, 0);
	}
	closedir(d);
}

/* Remove the scratch directories of drills that were killed: ferry-drill.*
 * directories whose lock nobody holds. */
static unsigned remove_stale(int parent, const struct fy_drill_opts *o)
{
	int fd2 = dup(parent);
	DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	struct dirent *e;
	unsigned removed = 0;

	if (!d) {
		if (fd2 >= 0)
			close(fd2);
		return 0;
	}
	while ((e = readdir(d))) {
		int dfd;

		if (strncmp(e->d_name, SCRATCH_PREFIX, strlen(SCRATCH_PREFIX)))
			continue;
		dfd = openat(parent, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0)
			continue;
		if (flock(dfd, LOCK_EX | LOCK_NB) == 0) {
			scratch_empty(dfd);
			if (unlinkat(parent, e->d_name, AT_REMOVEDIR) == 0) {
				removed++;
				note(o, "removed %s, left by a drill that was killed", e->d_name);
			}
		}
		close(dfd);
	}
	closedir(d);
	return removed;
}

struct scratch {
	int parent;             /* the scratch_dir */
	int dfd;                /* our directory, flocked */
	char name[64];          /* its name in parent */
	char path[PATH_MAX];    /* its path */
	char image[PATH_MAX];   /* the image's path */
	char image_name[64];
};

static int scratch_make(struct fy_repo *r, const Ferry__V1__Manifest *m, const struct fy_drill_opts *o,
			struct scratch *s, struct fy_drill_result *res)
{
	const char *dir = o->scratch_dir && *o->scratch_dir ? o->scratch_dir : "/var/tmp";
	char tmpl[64], hex[2 * FY_SNAP_ID_LEN + 1], have_s[32], need_s[32];
	struct statvfs vfs;
	struct stat st;
	bool inside;
	int rc;

	s->parent = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->parent < 0) {
		rc = -errno;
		return drill_fail(res, "scratch", rc, "scratch directory %s: %s", dir, strerror(-rc));
	}
	rc = inside_repo(r, s->parent, &inside);
	if (rc < 0)
		return drill_fail(res, "scratch", rc, "cannot tell whether scratch directory %s is inside the "
				  "repository %s: %s", dir, r->url, strerror(-rc));
	if (inside)
		return drill_fail(res, "scratch", -EPERM, "scratch directory %s is inside the repository %s: a drill "
				  "never writes into the repository it reads (give --scratch-dir elsewhere)", dir,
				  r->url);
	res->stale_removed = remove_stale(s->parent, o);
	/* Free space: the image is sparse, its data is the non-zero blocks. */
	if (fstatvfs(s->parent, &vfs) < 0) {
		rc = -errno;
		return drill_fail(res, "scratch", rc, "scratch directory %s: statvfs: %s", dir, strerror(-rc));
	}
	uint64_t have = (uint64_t)vfs.f_bavail * vfs.f_frsize;

	if (have < res->bytes) {
		human(have, have_s, sizeof(have_s));
		human(res->bytes, need_s, sizeof(need_s));
		fy_hex(m->snapshot_id.data, FY_SNAP_ID_LEN, hex);
		return drill_fail(res, "scratch", -ENOSPC, "scratch directory %s has %s free; the drill needs %s "
				  "(the data of snapshot %.8s, %llu bytes): nothing restored (give --scratch-dir "
				  "elsewhere)", dir, have_s, need_s, hex, (unsigned long long)res->bytes);
	}
	/* Made under a name no drill removes, locked, then renamed. */
	for (int tries = 0; tries < 100; tries++) {
		uint8_t rnd[6];
		char newname[64], hx[13];

		fy_random(rnd, sizeof(rnd));
		fy_hex(rnd, sizeof(rnd), hx);
		snprintf(newname, sizeof(newname), SCRATCH_NEW_PREFIX "%s", hx);
		snprintf(tmpl, sizeof(tmpl), SCRATCH_PREFIX "%s", hx);
		if (mkdirat(s->parent, newname, 0700) < 0) {
			if (errno == EEXIST)
				continue;
			rc = -errno;
			return drill_fail(res, "scratch", rc, "cannot make a directory in %s: %s", dir, strerror(-rc));
		}
		s->dfd = openat(s->parent, newname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (s->dfd < 0 || flock(s->dfd, LOCK_EX) < 0 ||
		    renameat2(s->parent, newname, s->parent, tmpl, RENAME_NOREPLACE) < 0) {
			rc = -errno;
			if (s->dfd >= 0)
				close(s->dfd);
			s->dfd = -1;
			unlinkat(s->parent, newname, AT_REMOVEDIR);
			if (rc == -EEXIST)
				continue;
			return drill_fail(res, "scratch", rc, "cannot make a scratch directory in %s: %s", dir,
					  strerror(-rc));
		}
		snprintf(s->name, sizeof(s->name), "%s", tmpl);
		break;
	}
	if (!s->name[0])
		return drill_fail(res, "scratch", -EEXIST, "cannot make a scratch directory in %s", dir);
	if (fstat(s->dfd, &st) == 0 && snprintf(s->path, sizeof(s->path), "%s/%s", dir, s->name) < (int)sizeof(s->path)) {
		fy_hex(m->snapshot_id.data, FY_SNAP_ID_LEN, hex);
		snprintf(s->image_name, sizeof(s->image_name), "%.8s.img", hex);
		if (snprintf(s->image, sizeof(s->image), "%s/%s", s->path, s->image_name) < (int)sizeof(s->image)) {
			snprintf(res->scratch, sizeof(res->scratch), "%s", s->path);
			human(have, have_s, sizeof(have_s));
			note(o, "scratch %s (%s free)", s->path, have_s);
			return 0;
		}
	}
	return drill_fail(res, "scratch", -ENAMETOOLONG, "scratch directory %s: path too long", dir);
}

/* Remove the scratch: what a drill put there, and the directory. */
static void scratch_remove(struct scratch *s, struct fy_drill_result *res)
{
	if (s->dfd < 0)
		return;
	scratch_empty(s->dfd);
	if (unlinkat(s->parent, s->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		drill_fail(res, "cleanup", -errno, "cannot remove the scratch directory %s: %s", s->path,
			   strerror(errno));
	close(s->dfd); /* drops the lock */
	s->dfd = -1;
}

/* ---- verify: the image read back against the manifest --------------------- */

struct verify {
	struct fy_repo *repo;
	const Ferry__V1__Manifest *m;
	const struct fy_drill_opts *o;
	int fd;
	bool direct;
	uint64_t nblocks;
	_Atomic uint64_t next, verified;
	pthread_mutex_t lock;
	int failed;
	char why[512];
};

static void verify_fail(struct verify *v, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verify_fail(struct verify *v, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&v->lock);
	if (!v->failed) {
		v->failed = rc;
		va_start(ap, fmt);
		vsnprintf(v->why, sizeof(v->why), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&v->lock);
}

static void *verify_worker(void *arg)
{
	struct verify *v = arg;
	uint32_t cs = v->m->chunk_size;
	uint8_t *buf = fy_buf_alloc(cs);
	static const uint8_t zero_id[FY_ID_LEN];

	if (!buf)
		verify_fail(v, -ENOMEM, "out of memory");
	while (buf && !v->failed) {
		uint64_t i = atomic_fetch_add(&v->next, 1);

		if (i >= v->nblocks)
			break;
		if (cancelled(v->o)) {
			verify_fail(v, -ECANCELED, "cancelled");
			break;
		}
		uint64_t off = i * cs;
		size_t len = (size_t)(v->m->size - off < cs ? v->m->size - off : cs);
		/* O_DIRECT reads whole 4 KiB units; the file ends where the volume does. */
		size_t want = v->direct ? (len + FY_IO_ALIGN - 1) & ~(size_t)(FY_IO_ALIGN - 1) : len, got = 0;

		while (got < len) {
			ssize_t n = pread(v->fd, buf + got, want - got, (off_t)(off + got));

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				verify_fail(v, -errno, "reading block %llu (offset %llu) of the scratch image back: %s",
					    (unsigned long long)i, (unsigned long long)off, strerror(errno));
				break;
			}
			if (n == 0)
				break;
			got += (size_t)n;
		}
		if (v->failed)
			break;
		if (got < len) {
			verify_fail(v, -EBADMSG, "block %llu (offset %llu) of the scratch image reads back short: %zu of "
				    "%zu bytes", (unsigned long long)i, (unsigned long long)off, got, len);
			break;
		}
		const uint8_t *id = v->m->chunk_ids.data + i * FY_ID_LEN;
		uint32_t crc = fy_crc32c(0, buf, len);
		char hex[2 * FY_ID_LEN + 1];

		fy_hex(id, FY_ID_LEN, hex);
		if (crc != v->m->block_crc32c[i]) {
			verify_fail(v, -EBADMSG, "block %llu (offset %llu, chunk %s) of the scratch image reads back "
				    "wrong: crc32c %08x, the manifest says %08x", (unsigned long long)i,
				    (unsigned long long)off, memcmp(id, zero_id, FY_ID_LEN) ? hex : "none: a zero block",
				    crc, v->m->block_crc32c[i]);
			break;
		}
		if (!memcmp(id, zero_id, FY_ID_LEN)) {
			if (!fy_is_zero(buf, len)) {
				verify_fail(v, -EBADMSG, "block %llu (offset %llu) of the scratch image should be zeros "
					    "and is not", (unsigned long long)i, (unsigned long long)off);
				break;
			}
		} else {
			uint8_t again[FY_ID_LEN];

			fy_chunk_id(v->repo->id_key, buf, len, again);
			if (memcmp(again, id, FY_ID_LEN)) {
				verify_fail(v, -EBADMSG, "block %llu (offset %llu) of the scratch image does not hash to "
					    "its chunk %s (keyed id)", (unsigned long long)i, (unsigned long long)off, hex);
				break;
			}
		}
		atomic_fetch_add(&v->verified, 1);
		if (v->o->progress)
			atomic_fetch_add(&v->o->progress->done, len);
	}
	fy_buf_free(buf);
	return NULL;
}

static int verify_image(struct fy_repo *r, const Ferry__V1__Manifest *m, const char *image,
			const struct fy_drill_opts *o, struct fy_drill_result *res)
{
	struct verify v = { .repo = r, .m = m, .o = o };
	unsigned threads = o->threads ? o->threads : fy_online_cores();
	pthread_t tids[64];
	unsigned started = 0;
	struct stat st;
	int rc;

	if (threads > 64)
		threads = 64;
	v.nblocks = m->chunk_ids.len / FY_ID_LEN;
	v.fd = fy_io_open_path(image, false, &v.direct);
	if (v.fd < 0)
		return drill_fail(res, "verify", v.fd, "cannot open the scratch image %s: %s", image, strerror(-v.fd));
	if (fstat(v.fd, &st) < 0 || (uint64_t)st.st_size != m->size) {
		close(v.fd);
		return drill_fail(res, "verify", -EBADMSG, "the scratch image %s is %lld bytes, the volume %llu", image,
				  (long long)st.st_size, (unsigned long long)m->size);
	}
	/* Buffered: what restore wrote is clean and synced; drop it from the
	 * cache so that the disk is read, not the page cache. */
	if (!v.direct)
		posix_fadvise(v.fd, 0, 0, POSIX_FADV_DONTNEED);
	pthread_mutex_init(&v.lock, NULL);
	if (o->progress)
		atomic_fetch_add(&o->progress->total, m->size);
	for (; started < threads; started++)
		if (pthread_create(&tids[started], NULL, verify_worker, &v) != 0)
			break;
	if (!started)
		verify_fail(&v, -EAGAIN, "cannot start threads");
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	close(v.fd);
	res->blocks_verified = v.verified;
	rc = v.failed;
	if (rc)
		drill_fail(res, rc == -ECANCELED ? "cancelled" : "verify", rc, "%s", v.why);
	pthread_mutex_destroy(&v.lock);
	return rc;
}

/* ---- the check command ----------------------------------------------------- */

struct output {
	char *buf;
	size_t len;
	bool cut;
};

static void output_add(struct output *out, const char *p, size_t n)
{
	if (!out->buf)
		return;
	if (n >= OUTPUT_KEEP) {
		p += n - OUTPUT_KEEP / 2;
		n = OUTPUT_KEEP / 2;
		out->len = 0;
		out->cut = true;
	}
	if (out->len + n > OUTPUT_KEEP) {
		size_t drop = out->len + n - OUTPUT_KEEP / 2;

		if (drop > out->len)
			drop = out->len;
		memmove(out->buf, out->buf + drop, out->len - drop);
		out->len -= drop;
		out->cut = true;
	}
	memcpy(out->buf + out->len, p, n);
	out->len += n;
}

/* Read what is there; false at end of file. */
static bool output_read(int fd, struct output *out)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	output_add(out, tmp, (size_t)n);
	return true;
}

/* The last non-empty line of the output, escaped, for the one-line reason. */
static void last_line(const char *s, char *out, size_t len)
{
	const char *end = s + strlen(s), *b;
	char line[512];

	out[0] = '\0';
	while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	for (b = end; b > s && b[-1] != '\n'; b--)
		;
	if (end <= b)
		return;
	snprintf(line, sizeof(line), "%.*s", (int)(end - b), b);
	fy_escape(line, out, len);
}

/* "{}" -> dev, everywhere in cmd (malloc'd). */
static char *substitute(const char *cmd, const char *dev)
{
	size_t n = 1, dl = strlen(dev);
	char *s, *w;

	for (const char *p = cmd; *p; p++)
		n += p[0] == '{' && p[1] == '}' ? dl : 1;
	s = w = malloc(n);
	if (!s)
		return NULL;
	for (const char *p = cmd; *p;) {
		if (p[0] == '{' && p[1] == '}') {
			memcpy(w, dev, dl);
			w += dl;
			p += 2;
		} else {
			*w++ = *p++;
		}
	}
	*w = '\0';
	return s;
}

/* environ with our variables set (the array is malloc'd, the strings ours or environ's). */
static char **check_env(char *const vars[], size_t nvars)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + nvars + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool ours = false;

		for (size_t j = 0; j < nvars && !ours; j++) {
			size_t l = strchr(vars[j], '=') - vars[j] + 1;

			ours = !strncmp(environ[i], vars[j], l);
		}
		if (!ours)
			env[k++] = environ[i];
	}
	for (size_t j = 0; j < nvars; j++)
		env[k++] = vars[j];
	return env;
}

static int run_check(const Ferry__V1__Manifest *m, const struct fy_drill_opts *o, struct fy_drill_result *res)
{
	char hex[2 * FY_SNAP_ID_LEN + 1], *cmd = substitute(o->check, res->device);
	char *v_dev = NULL, *v_snap = NULL, *v_vol = NULL, **env = NULL, shown[256], line[300], tl[32];
	int64_t timeout_ns = (o->check_timeout > 0 ? o->check_timeout : 3600) * INT64_C(1000000000);
	struct output out = { .buf = malloc(OUTPUT_KEEP) };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	int pipefd[2] = { -1, -1 }, rc, status = 0;
	int64_t t0, deadline, killed_at = 0;
	bool eof = false, exited = false, timed_out = false, stop = false;
	pid_t pid;

	fy_escape(o->check, shown, sizeof(shown));
	fy_hex(m->snapshot_id.data, FY_SNAP_ID_LEN, hex);
	if (asprintf(&v_dev, "FERRY_DRILL_DEVICE=%s", res->device) < 0)
		v_dev = NULL; /* asprintf leaves it undefined */
	if (asprintf(&v_snap, "FERRY_DRILL_SNAPSHOT=%s", hex) < 0)
		v_snap = NULL;
	if (asprintf(&v_vol, "FERRY_DRILL_VOLUME=%s", m->volume) < 0)
		v_vol = NULL;
	if (!cmd || !out.buf || !v_dev || !v_snap || !v_vol) {
		rc = drill_fail(res, "check", -ENOMEM, "out of memory");
		goto out;
	}
	char *vars[] = { v_dev, v_snap, v_vol };

	env = check_env(vars, 3);
	if (!env || pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = drill_fail(res, "check", env ? -errno : -ENOMEM, "cannot run the check: %s",
				env ? strerror(errno) : "out of memory");
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGINT);
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGHUP);
	sigaddset(&dflt, SIGQUIT);
	sigaddset(&dflt, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char *argv[] = { "sh", "-c", cmd, NULL };

	note(o, "running the check '%s' on %s", shown, res->device);
	t0 = mono_ns();
	rc = -posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(pipefd[1]);
	pipefd[1] = -1;
	if (rc) {
		rc = drill_fail(res, "check", rc, "cannot run the check '%s': /bin/sh: %s", shown, strerror(-rc));
		goto out;
	}
	res->check_ran = true;
	deadline = t0 + timeout_ns;
	/* Read its output while it runs; watch the clock and the cancel flag. */
	while (!exited || !eof) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
		int64_t now = mono_ns();

		if (!exited) {
			siginfo_t si = { 0 };

			/* Not reaped yet (WNOWAIT): while it is a zombie its group id
			 * cannot be another's, so the group can be killed safely. */
			if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
				exited = true;
				res->check_seconds = (now - t0) / 1e9;
				/* Whatever it left running in its group goes with it. */
				kill(-pid, SIGKILL);
				waitpid(pid, &status, 0);
				deadline = now + CHECK_GRACE_NS; /* for the rest of the output */
			}
		}
		if (!exited && !killed_at && (cancelled(o) || now >= deadline)) {
			timed_out = !cancelled(o);
			stop = true;
			kill(-pid, SIGTERM);
			killed_at = now;
		}
		if (!exited && killed_at && now >= killed_at + CHECK_GRACE_NS)
			kill(-pid, SIGKILL);
		if (exited && !eof && now >= deadline)
			break; /* something outside its group holds the pipe */
		if (!eof && poll(&pfd, 1, 100) > 0)
			eof = !output_read(pipefd[0], &out);
		else if (eof && !exited)
			usleep(20000);
	}
	if (out.buf) {
		size_t keep = out.len < FY_DRILL_OUTPUT_MAX - 8 ? out.len : FY_DRILL_OUTPUT_MAX - 8;

		snprintf(res->check_output, sizeof(res->check_output), "%s%.*s", out.cut || keep < out.len ? "[...]\n" : "",
			 (int)keep, out.buf + out.len - keep);
	}
	res->check_status = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
	res->check_timed_out = timed_out;
	last_line(res->check_output, line, sizeof(line));
	fy_duration_format(timeout_ns / 1000000000, tl, sizeof(tl));
	if (stop && !timed_out)
		rc = drill_fail(res, "cancelled", -ECANCELED, "the check '%s' was stopped: the drill was cancelled", shown);
	else if (timed_out)
		rc = drill_fail(res, "check", -ETIMEDOUT, "the check '%s' on %s timed out after %s (stopped, status %d)%s%s",
				shown, res->device, tl, res->check_status, line[0] ? ": " : "", line);
	else if (WIFSIGNALED(status))
		rc = drill_fail(res, "check", -EIO, "the check '%s' on %s was killed by signal %d (status %d)%s%s", shown,
				res->device, WTERMSIG(status), res->check_status, line[0] ? ": " : "", line);
	else if (res->check_status != 0)
		rc = drill_fail(res, "check", -EIO, "the check '%s' on %s exited with status %d%s%s", shown, res->device,
				res->check_status, line[0] ? ": " : "", line);
	else
		note(o, "the check exited with status 0 in %.2f s", res->check_seconds);
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	free(out.buf);
	free(env);
	free(v_dev);
	free(v_snap);
	free(v_vol);
	free(cmd);
	return rc;
}

/* Attach the image read-only and run the check; the device is unbound
 * before this returns, whatever happened. */
static int attach_and_check(const Ferry__V1__Manifest *m, const char *image, const struct fy_drill_opts *o,
			    struct fy_drill_result *res)
{
	char why[256];
	struct stat st;
	int fd = open(image, O_RDONLY | O_CLOEXEC), ldev, rc;
	unsigned num;
	uint32_t flags;

	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return drill_fail(res, "attach", rc, "cannot open the scratch image %s: %s", image, strerror(-rc));
	}
	ldev = fy_loop_bind(fd, image, true, true, res->device, sizeof(res->device), why, sizeof(why));
	close(fd); /* the device holds the file now */
	if (ldev < 0)
		return drill_fail(res, "attach", ldev, "cannot attach the scratch image read-only: %s", why);
	note(o, "attached %s read-only as %s", image, res->device);
	rc = run_check(m, o, res);
	/* Unbind now if ours is the last open; else at the last close. */
	ioctl(ldev, LOOP_CLR_FD, 0);
	close(ldev);
	/* A prober (udev, blkid) may hold it a moment: wait for it to let go. */
	int64_t until = mono_ns() + UNBIND_WAIT_NS;

	while (fy_loop_lookup(&st, -1, &num, &flags) == 0) {
		if (mono_ns() >= until) {
			int r2 = drill_fail(res, "cleanup", -EBUSY, "%s stays bound to the scratch image: something still "
					    "holds it (a mount the check left?); it unbinds when released", res->device);

			return rc ? rc : r2;
		}
		usleep(20000);
	}
	note(o, "detached %s", res->device);
	return rc;
}

/* ---- the drill ------------------------------------------------------------- */

int fy_drill(struct fy_repo *r, const uint8_t id[FY_SNAP_ID_LEN], const struct fy_drill_opts *o,
	     struct fy_drill_result *res, char *err, size_t errlen)
{
	struct scratch s = { .parent = -1, .dfd = -1 };
	Ferry__V1__Manifest *m = NULL;
	struct fy_restore_result rr;
	int rc;

	memset(res, 0, sizeof(*res));
	res->check_status = -1;
	res->started_unix_nano = wall_ns();
	memcpy(res->snapshot_id, id, FY_SNAP_ID_LEN);
	rc = fy_manifest_read(r, id, &m, res->reason, sizeof(res->reason));
	if (rc < 0) {
		res->stage = "restore";
		goto out;
	}
	res->volume = strdup(m->volume);
	if (!res->volume) {
		rc = drill_fail(res, "restore", -ENOMEM, "out of memory");
		goto out;
	}
	res->snapshot_unix_nano = m->created_unix_nano;
	res->size = m->size;
	res->bytes = fy_manifest_data_bytes(m);
	res->blocks = m->chunk_ids.len / FY_ID_LEN;
	if (cancelled(o)) {
		rc = drill_fail(res, "cancelled", -ECANCELED, "the drill was cancelled");
		goto out;
	}
	rc = scratch_make(r, m, o, &s, res);
	if (rc < 0)
		goto out;

	struct fy_restore_opts ro = { .target = s.image, .threads = o->threads, .verbose = o->verbose,
				      .progress = o->progress, .cancel = o->cancel };
	char e2[768];

	rc = fy_restore(r, id, &ro, &rr, e2, sizeof(e2));
	res->restore_seconds = rr.seconds;
	if (rc < 0) {
		drill_fail(res, rc == -ECANCELED ? "cancelled" : "restore", rc, "%s", e2);
		goto out;
	}
	note(o, "restored snapshot to %s in %.2f s", s.image, rr.seconds);
	/* Test hook: FERRY_TEST_STOP_AT=verifying stops here, the image restored
	 * and synced, before it is read back (tests/integration/t_drill.sh). */
	if (getenv("FERRY_TEST_STOP_AT") && !strcmp(getenv("FERRY_TEST_STOP_AT"), "verifying"))
		raise(SIGSTOP);
	int64_t t0 = mono_ns();

	rc = verify_image(r, m, s.image, o, res);
	res->verify_seconds = (mono_ns() - t0) / 1e9;
	if (rc < 0)
		goto out;
	note(o, "read back and verified %llu blocks in %.2f s", (unsigned long long)res->blocks_verified,
	     res->verify_seconds);
	if (o->check && *o->check) {
		if (cancelled(o)) {
			rc = drill_fail(res, "cancelled", -ECANCELED, "the drill was cancelled");
			goto out;
		}
		rc = attach_and_check(m, s.image, o, res);
	}
out:
	if (s.dfd >= 0) {
		scratch_remove(&s, res);
		if (!rc && res->stage)
			rc = -EIO; /* the cleanup failed */
	}
	if (s.parent >= 0)
		close(s.parent);
	if (m)
		ferry__v1__manifest__free_unpacked(m, NULL);
	res->ok = rc == 0 && !res->stage;
	if (!res->ok && !rc)
		rc = -EIO;
	if (!res->ok)
		snprintf(err, errlen, "%s", res->reason);
	return rc;
}

void fy_drill_result_free(struct fy_drill_result *res)
{
	if (!res)
		return;
	free(res->volume);
	res->volume = NULL;
}
