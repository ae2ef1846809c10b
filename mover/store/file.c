/* File store: a repository in a local directory ("file:///abs/path" or a
 * plain path).  An object is a regular file at <root>/<key>.
 *
 * put: write a ".tmp-" file beside the target, fsync it, rename it into
 * place.  A crash leaves either no object or the whole object under its key
 * (plus, at worst, a stale temp file, which list() never reports).
 *
 * The new directory entry is durable only once its directory has been
 * fsync'd.  Every directory whose entries we change is recorded in a dirty
 * set; sync() fsyncs each recorded directory once.  FY_PUT_DURABLE fsyncs the
 * target directory and every dirty ancestor before returning.
 *
 * The mutex guards the dirty set only; no lock is held across I/O. */
#include "store/store.h"

#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FY_FILE_KEY_MAX 1024 /* bytes; the S3 limit, so keys stay portable */
#define FY_FILE_CONCURRENCY 8
#define TMP_PREFIX ".tmp-"
#define TMP_PREFIX_LEN 5

struct dirty_dir {
	struct dirty_dir *next;
	uint64_t hash;
	uint64_t gen; /* last mark; sync() drops the entry only if unchanged */
	char path[];
};

struct file_store {
	struct fy_store hdr;
	char *root; /* absolute, no trailing '/' except for "/" itself */
	pthread_mutex_t lock;
	struct dirty_dir **buckets;
	size_t nbuckets, count;
	uint64_t gen;
};

/* A directory to fsync; gen != 0: drop it from the dirty set afterwards
 * unless it was marked again meanwhile. */
struct flush_item {
	char *path;
	uint64_t gen;
	bool done;
};

static atomic_ulong tmp_seq;

static struct file_store *fs_of(struct fy_store *s)
{
	return (struct file_store *)s;
}

/* ---- keys and paths ---- */

/* Keys: '/'-separated relative paths of non-empty components other than
 * ".", ".." and names reserved for temp files. */
static int check_key(const char *key)
{
	if (!key || !*key || key[0] == '/')
		return -EINVAL;
	if (strlen(key) > FY_FILE_KEY_MAX)
		return -ENAMETOOLONG;
	for (const char *c = key;;) {
		const char *e = strchr(c, '/');
		size_t l = e ? (size_t)(e - c) : strlen(c);
		if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
			return -EINVAL;
		if (l >= TMP_PREFIX_LEN && memcmp(c, TMP_PREFIX, TMP_PREFIX_LEN) == 0)
			return -EINVAL;
		if (l > NAME_MAX)
			return -ENAMETOOLONG;
		if (!e)
			return 0;
		c = e + 1;
	}
}

/* root + "/" + rel (rel may be empty: the root itself). */
static char *join(const struct file_store *fs, const char *rel, size_t rlen)
{
	size_t n = strlen(fs->root);
	bool sep = rlen && fs->root[n - 1] != '/';
	char *p = malloc(n + sep + rlen + 1);
	if (!p)
		return NULL;
	memcpy(p, fs->root, n);
	if (sep)
		p[n++] = '/';
	memcpy(p + n, rel, rlen);
	p[n + rlen] = '\0';
	return p;
}

/* Length of the parent of the absolute path p[0..len): "/a/b" -> 2 ("/a"),
 * "/a" -> 1 ("/"), "/" -> 0 (none). */
static size_t parent_len(const char *p, size_t len)
{
	if (len <= 1)
		return 0;
	size_t i = len - 1;
	while (i > 0 && p[i] != '/')
		i--;
	return i ? i : 1;
}

/* ---- the dirty-directory set ---- */

static uint64_t hash_path(const char *p, size_t n)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static struct dirty_dir **dirty_find(struct file_store *fs, const char *p, size_t n, uint64_t h)
{
	struct dirty_dir **pp = &fs->buckets[h & (fs->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && strncmp((*pp)->path, p, n) == 0 && (*pp)->path[n] == '\0')
			return pp;
	return pp;
}

static void dirty_grow(struct file_store *fs)
{
	size_t nb = fs->nbuckets * 2;
	struct dirty_dir **b = calloc(nb, sizeof(*b));
	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct dirty_dir *d = fs->buckets[i], *next;
		for (; d; d = next) {
			next = d->next;
			d->next = b[d->hash & (nb - 1)];
			b[d->hash & (nb - 1)] = d;
		}
	}
	free(fs->buckets);
	fs->buckets = b;
	fs->nbuckets = nb;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	while (fsync(fd) < 0) {
		if (errno == EINTR)
			continue;
		/* Some filesystems cannot fsync a directory at all; there is
		 * nothing more we could do for it. */
		if (errno != EINVAL)
			rc = -errno;
		break;
	}
	close(fd);
	return rc;
}

/* Record that the entries of directory p[0..n) changed (or are about to). */
static int mark_dirty(struct file_store *fs, const char *p, size_t n)
{
	uint64_t h = hash_path(p, n);
	pthread_mutex_lock(&fs->lock);
	struct dirty_dir **pp = dirty_find(fs, p, n, h);
	if (!*pp) {
		struct dirty_dir *d = malloc(sizeof(*d) + n + 1);
		if (!d) {
			pthread_mutex_unlock(&fs->lock);
			/* Cannot remember it: make it durable now instead. */
			char *copy = strndup(p, n);
			int rc = copy ? fsync_dir(copy) : -ENOMEM;
			free(copy);
			return rc == -ENOENT ? 0 : rc;
		}
		d->next = NULL;
		d->hash = h;
		memcpy(d->path, p, n);
		d->path[n] = '\0';
		*pp = d;
		if (++fs->count > 2 * fs->nbuckets)
			dirty_grow(fs);
		pp = dirty_find(fs, p, n, h);
	}
	(*pp)->gen = ++fs->gen;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

/* fsync every item, then drop the ones whose mark did not change. */
static int flush_items(struct file_store *fs, struct flush_item *v, size_t n)
{
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		int r = fsync_dir(v[i].path);
		v[i].done = r == 0 || r == -ENOENT; /* a removed directory has nothing to persist */
		if (!v[i].done && !rc)
			rc = r;
	}
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < n; i++) {
		if (!v[i].done || !v[i].gen)
			continue;
		size_t len = strlen(v[i].path);
		struct dirty_dir **pp = dirty_find(fs, v[i].path, len, hash_path(v[i].path, len));
		if (*pp && (*pp)->gen == v[i].gen) {
			struct dirty_dir *d = *pp;
			*pp = d->next;
			free(d);
			fs->count--;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

static void free_items(struct flush_item *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

/* Make the entry `dir`/name durable: fsync dir itself, then each ancestor
 * still in the dirty set (a directory we or another thread just created). */
static int flush_chain(struct file_store *fs, const char *dir)
{
	size_t cap = 8, n = 0;
	struct flush_item *v = calloc(cap, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int rc = 0;
	size_t len = strlen(dir);
	pthread_mutex_lock(&fs->lock);
	for (bool first = true; len; first = false, len = parent_len(dir, len)) {
		struct dirty_dir *d = *dirty_find(fs, dir, len, hash_path(dir, len));
		if (!d && !first)
			continue;
		if (n == cap) {
			struct flush_item *nv = realloc(v, 2 * cap * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap *= 2;
		}
		v[n].path = strndup(dir, len);
		v[n].gen = d ? d->gen : 0;
		v[n].done = false;
		if (!v[n].path) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!rc)
		rc = flush_items(fs, v, n);
	free_items(v, n);
	return rc;
}

/* ---- open / close ---- */


static void file_close(struct fy_store *s)
{
	struct file_store *fs = fs_of(s);
	if (!fs)
		return;
	if (fs->buckets) {
		for (size_t i = 0; i < fs->nbuckets; i++) {
			struct dirty_dir *d = fs->buckets[i], *next;
			for (; d; d = next) {
				next = d->next;
				free(d);
			}
		}
		free(fs->buckets);
	}
	pthread_mutex_destroy(&fs->lock);
	free(fs->root);
	free(fs->hdr.url);
	free(fs);
}

static int file_open(const char *url, struct fy_store **out, char *errbuf, size_t errlen)
{
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!out || !url)
		return -EINVAL;
	*out = NULL;

	const char *path = url;
	if (strncasecmp(url, "file://", 7) == 0) {
		path = url + 7;
		if (path[0] != '/') {
			fy_store_err(errbuf, errlen, "file URL '%s' needs an absolute path (file:///path)", url);
			return -EINVAL;
		}
	} else if (strstr(url, "://")) {
		fy_store_err(errbuf, errlen, "'%s' is not a file URL", url);
		return -EINVAL;
	}
	if (!*path) {
		fy_store_err(errbuf, errlen, "empty repository path");
		return -EINVAL;
	}

	struct file_store *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	pthread_mutex_init(&fs->lock, NULL);
	fs->hdr.ops = &fy_store_file_ops;
	fs->hdr.url = strdup(url);
	fs->nbuckets = 64;
	fs->buckets = calloc(fs->nbuckets, sizeof(*fs->buckets));
	if (!fs->hdr.url || !fs->buckets) {
		file_close(&fs->hdr);
		return -ENOMEM;
	}

	/* Anchor a relative path now, so a later chdir() cannot move the store. */
	if (path[0] == '/') {
		fs->root = strdup(path);
	} else {
		char *cwd = getcwd(NULL, 0);
		if (!cwd) {
			int e = errno;
			fy_store_err(errbuf, errlen, "getcwd: %s", strerror(e));
			file_close(&fs->hdr);
			return -e;
		}
		if (asprintf(&fs->root, "%s/%s", cwd, path) < 0)
			fs->root = NULL;
		free(cwd);
	}
	if (!fs->root) {
		file_close(&fs->hdr);
		return -ENOMEM;
	}
	size_t n = strlen(fs->root);
	while (n > 1 && fs->root[n - 1] == '/')
		fs->root[--n] = '\0';

	/* Nothing is created here; but a root that exists must be a directory. */
	struct stat sb;
	if (stat(fs->root, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
		fy_store_err(errbuf, errlen, "repository path '%s' is not a directory", fs->root);
		file_close(&fs->hdr);
		return -ENOTDIR;
	}
	*out = &fs->hdr;
	return 0;
}

/* ---- put ---- */

/* mkdir -p of path (absolute, modified in place but restored), marking the
 * parent of each directory created.  The parent is marked before mkdir as
 * well: a concurrent FY_PUT_DURABLE that sees the new directory must also
 * find its parent in the dirty set. */
static int make_dirs(struct file_store *fs, char *path, size_t len)
{
	size_t plen = parent_len(path, len);
	if (!plen)
		return -ENOENT; /* "/" itself is missing: cannot happen */
	char save = path[len];
	path[len] = '\0';
	int rc = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		mark_dirty(fs, path, plen);
		if (mkdir(path, 0700) == 0) {
			rc = mark_dirty(fs, path, plen);
			break;
		}
		rc = -errno;
		if (rc == -EEXIST) {
			rc = 0;
			break;
		}
		if (rc != -ENOENT || attempt)
			break;
		rc = make_dirs(fs, path, plen);
		if (rc)
			break;
	}
	path[len] = save;
	return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int make_temp(int dfd, char *name, size_t cap)
{
	for (int i = 0; i < 100; i++) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(name, cap, TMP_PREFIX "%ld-%lu-%lx", (long)getpid(),
			 atomic_fetch_add(&tmp_seq, 1), (unsigned long)ts.tv_nsec);
		int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd < 0 ? -errno : fd;
	}
	return -EEXIST;
}

enum { PLACED_RENAMED, PLACED_LINKED, PLACED_EXISTED };

/* Move the temp to its final name; returns a PLACED_* or -errno. */
static int place(int dfd, const char *tmp, const char *base, bool noreplace)
{
	if (!noreplace)
		return renameat(dfd, tmp, dfd, base) ? -errno : PLACED_RENAMED;
	if (renameat2(dfd, tmp, dfd, base, RENAME_NOREPLACE) == 0)
		return PLACED_RENAMED;
	if (errno == EEXIST)
		return PLACED_EXISTED;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -errno;
	/* Filesystem without RENAME_NOREPLACE: link() refuses to replace too. */
	if (linkat(dfd, tmp, dfd, base, 0) == 0)
		return PLACED_LINKED;
	return errno == EEXIST ? PLACED_EXISTED : -errno;
}

static int file_put(struct fy_store *s, const char *key, const void *buf, size_t len, unsigned flags,
		    const struct fy_digest *dg)
{
	(void)dg;
	struct file_store *fs = fs_of(s);
	int rc = check_key(key);
	if (rc)
		return rc;
	if (!buf && len)
		return -EINVAL;

	const char *slash = strrchr(key, '/');
	const char *base = slash ? slash + 1 : key;
	char *dir = join(fs, key, slash ? (size_t)(slash - key) : 0);
	if (!dir)
		return -ENOMEM;

	char tmp[64];
	int fd = -1;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT) {
		rc = make_dirs(fs, dir, strlen(dir));
		if (rc)
			goto out;
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd < 0) {
		rc = -errno;
		goto out;
	}

	fd = make_temp(dfd, tmp, sizeof(tmp));
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	rc = write_all(fd, buf, len);
	while (!rc && fsync(fd) < 0)
		if (errno != EINTR)
			rc = -errno;
	if (close(fd) < 0 && !rc && errno != EINTR)
		rc = -errno;
	fd = -1;
	if (rc)
		goto out_unlink;

	rc = place(dfd, tmp, base, flags & (FY_PUT_NOREPLACE | FY_PUT_EXCL));
	if (rc < 0)
		goto out_unlink;
	if (rc != PLACED_RENAMED)
		unlinkat(dfd, tmp, 0);
	if (rc == PLACED_EXISTED && (flags & FY_PUT_EXCL)) {
		rc = fy_store_fail(-EEXIST, "%s/%s already exists", fs->root, key);
		goto out;
	}
	if (rc != PLACED_EXISTED) {
		rc = mark_dirty(fs, dir, strlen(dir));
		if (rc)
			goto out;
	}
	rc = (flags & FY_PUT_DURABLE) ? flush_chain(fs, dir) : 0;
	goto out;

out_unlink:
	unlinkat(dfd, tmp, 0);
out:
	if (dfd >= 0)
		close(dfd);
	free(dir);
	return rc;
}

/* ---- get / exists / del ---- */

static int file_get(struct fy_store *s, const char *key, uint64_t off, size_t len, void **buf, size_t *got)
{
	struct file_store *fs = fs_of(s);
	if (!buf || !got)
		return -EINVAL;
	*buf = NULL;
	*got = 0;
	int rc = check_key(key);
	if (rc)
		return rc;
	char *path = join(fs, key, strlen(key));
	if (!path)
		return -ENOMEM;
	/* O_NONBLOCK: a fifo planted under an object's name must not hang us
	 * (it is refused below, as not a regular file). */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	free(path);
	if (fd < 0)
		return errno == ENOTDIR ? -ENOENT : -errno;

	char *b = NULL;
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = -ENOENT; /* a directory is not an object */
		goto out;
	}
	uint64_t size = (uint64_t)sb.st_size;
	if (off > size) {
		rc = -EINVAL;
		goto out;
	}
	uint64_t avail = size - off;
	if (avail >= SIZE_MAX && len == SIZE_MAX) {
		rc = -EFBIG;
		goto out;
	}
	size_t want = (uint64_t)len > avail ? (size_t)avail : len;
	b = malloc(want ? want : 1);
	if (!b) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t done = 0; done < want;) {
		ssize_t r = pread(fd, b + done, want - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		if (r == 0) {
			rc = -EIO; /* objects are immutable: it was truncated under us */
			goto out;
		}
		done += (size_t)r;
	}
	*buf = b;
	*got = want;
	b = NULL;
out:
	free(b);
	close(fd);
	return rc;
}

static int file_exists(struct fy_store *s, const char *key, uint64_t *size)
{
	struct file_store *fs = fs_of(s);
	int rc = check_key(key);
	if (rc)
		return rc;
	char *path = join(fs, key, strlen(key));
	if (!path)
		return -ENOMEM;
	struct stat sb;
	rc = stat(path, &sb);
	free(path);
	if (rc < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	if (!S_ISREG(sb.st_mode))
		return 0;
	if (size)
		*size = (uint64_t)sb.st_size;
	return 1;
}

static int file_del(struct fy_store *s, const char *key)
{
	struct file_store *fs = fs_of(s);
	int rc = check_key(key);
	if (rc)
		return rc;
	char *path = join(fs, key, strlen(key));
	if (!path)
		return -ENOMEM;
	if (unlink(path) < 0) {
		rc = errno == ENOTDIR || errno == EISDIR ? -ENOENT : -errno;
	} else {
		size_t n = strlen(path);
		rc = mark_dirty(fs, path, parent_len(path, n));
	}
	free(path);
	return rc;
}

/* ---- list ---- */

struct walk {
	fy_store_list_cb cb;
	void *arg;
	char key[FY_FILE_KEY_MAX + 1];
};

/* Report every object under directory dfd (whose key prefix is w->key[0..klen)),
 * restricted at this level to names starting with `match`.  Consumes dfd.
 *
 * An object is a regular file, or a symlink to one (get() follows symlinks
 * too).  Anything else that cannot be classified -- a dangling symlink, a
 * symlink to a directory (never followed: loops), a fifo, a device -- makes
 * the listing fail: a listing that skipped it could hide an object from a
 * caller that deletes what it does not see (prune). */
static int walk_dir(struct walk *w, int dfd, size_t klen, const char *match)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return -e;
	}
	size_t mlen = match ? strlen(match) : 0;
	int rc = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				rc = fy_store_fail(-errno, "reading the directory of %.*s: %s", (int)klen, w->key,
						   strerror(errno));
			break;
		}
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (!strncmp(name, TMP_PREFIX, TMP_PREFIX_LEN))
			continue;
		if (mlen && strncmp(name, match, mlen) != 0)
			continue;
		size_t nlen = strlen(name);
		if (klen + nlen + 1 > FY_FILE_KEY_MAX)
			continue; /* longer than any key: not ours */

		memcpy(w->key + klen, name, nlen + 1);
		struct stat sb;
		if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* deleted while we walk */
			rc = fy_store_fail(-errno, "%s: %s", w->key, strerror(errno));
			break;
		}
		if (S_ISLNK(sb.st_mode)) {
			if (fstatat(dirfd(d), name, &sb, 0) < 0) {
				int e = errno;
				rc = fy_store_fail(e == ENOENT ? -EIO : -e, "%s is a symlink%s%s",
						   w->key, e == ENOENT ? " to nothing (dangling)" : ": ",
						   e == ENOENT ? "" : strerror(e));
				break;
			}
			if (!S_ISREG(sb.st_mode)) {
				rc = fy_store_fail(-EIO, "%s is a symlink to something that is not a regular file "
						   "(not followed)", w->key);
				break;
			}
		}
		if (S_ISREG(sb.st_mode)) {
			rc = w->cb(w->key, (uint64_t)sb.st_size, w->arg);
			if (rc)
				break;
		} else if (S_ISDIR(sb.st_mode)) {
			int cfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0) {
				if (errno == ENOENT)
					continue;
				rc = fy_store_fail(-errno, "%s/: %s", w->key, strerror(errno));
				break;
			}
			w->key[klen + nlen] = '/';
			w->key[klen + nlen + 1] = '\0';
			rc = walk_dir(w, cfd, klen + nlen + 1, NULL);
			if (rc)
				break;
		} else {
			rc = fy_store_fail(-EIO, "%s is neither a regular file nor a directory", w->key);
			break;
		}
	}
	closedir(d);
	return rc;
}

/* Why the directory `dir` (of the listed prefix) cannot be opened: -ENOENT
 * only when nothing is there at all; a dangling symlink or something that
 * is not a directory is another error, never an empty listing. */
static int list_dir_error(const char *dir, int e)
{
	struct stat sb;
	char target[PATH_MAX];

	if (e == ENOENT && lstat(dir, &sb) == 0 && S_ISLNK(sb.st_mode)) {
		ssize_t n = readlink(dir, target, sizeof(target) - 1);

		target[n > 0 ? n : 0] = '\0';
		return fy_store_fail(-EIO, "%s is a symlink to '%s', which does not exist (a mount that went away?)",
				     dir, target);
	}
	if (e == ENOENT)
		return fy_store_fail(-ENOENT, "%s does not exist", dir);
	if (e == ENOTDIR)
		return fy_store_fail(-ENOTDIR, "%s is not a directory", dir);
	return fy_store_fail(-e, "%s: %s", dir, strerror(e));
}

static int file_list(struct fy_store *s, const char *prefix, fy_store_list_cb cb, void *arg)
{
	struct file_store *fs = fs_of(s);
	fy_store_clear_error();
	if (!cb)
		return -EINVAL;
	if (!prefix)
		prefix = "";
	if (prefix[0] == '/')
		return -EINVAL;
	size_t plen = strlen(prefix);
	if (plen > FY_FILE_KEY_MAX)
		return 0;

	/* Only the directory holding the prefix's last component is walked,
	 * and below it only the entries that start with that component. */
	const char *slash = strrchr(prefix, '/');
	size_t dlen = slash ? (size_t)(slash - prefix) : 0;
	struct walk *w = malloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cb = cb;
	w->arg = arg;
	memcpy(w->key, prefix, dlen);
	w->key[dlen] = '\0';
	int rc = dlen ? check_key(w->key) : 0;
	if (rc) {
		free(w);
		return rc == -ENAMETOOLONG ? 0 : rc;
	}
	char *dir = join(fs, w->key, dlen);
	if (!dir) {
		free(w);
		return -ENOMEM;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = list_dir_error(dir, errno);
		free(dir);
		free(w);
		return rc;
	}
	free(dir);
	if (slash) {
		w->key[dlen] = '/';
		w->key[++dlen] = '\0';
	}
	rc = walk_dir(w, dfd, dlen, slash ? slash + 1 : prefix);
	free(w);
	return rc;
}

/* ---- folders ---- */

/* Make the directory of the keys under prefix ("chunks/") exist, durably. */
static int file_make_folder(struct fy_store *s, const char *prefix)
{
	struct file_store *fs = fs_of(s);
	size_t n = strlen(prefix);

	while (n && prefix[n - 1] == '/')
		n--;
	char *key = strndup(prefix, n);
	if (!key)
		return -ENOMEM;
	int rc = check_key(key);
	char *dir = rc ? NULL : join(fs, key, n);
	free(key);
	if (rc)
		return rc;
	if (!dir)
		return -ENOMEM;
	/* mkdir, then look at what is there (it may have been made meanwhile by
	 * another creator of the repository: that is fine; a dangling symlink,
	 * on which mkdir says EEXIST too, is not ours to replace). */
	struct stat sb;
	rc = make_dirs(fs, dir, strlen(dir));
	if (!rc && stat(dir, &sb) < 0)
		rc = errno == ENOENT && lstat(dir, &sb) == 0 ? -EIO : -errno;
	else if (!rc && !S_ISDIR(sb.st_mode))
		rc = -ENOTDIR;
	if (!rc)
		rc = flush_chain(fs, dir);
	free(dir);
	return rc;
}

/* ---- sync ---- */

static int file_sync(struct fy_store *s)
{
	struct file_store *fs = fs_of(s);
	pthread_mutex_lock(&fs->lock);
	size_t n = 0, cap = fs->count;
	struct flush_item *v = cap ? calloc(cap, sizeof(*v)) : NULL;
	int rc = cap && !v ? -ENOMEM : 0;
	for (size_t i = 0; !rc && i < fs->nbuckets; i++) {
		for (struct dirty_dir *d = fs->buckets[i]; d && n < cap; d = d->next) {
			v[n].path = strdup(d->path);
			v[n].gen = d->gen;
			if (!v[n].path) {
				rc = -ENOMEM;
				break;
			}
			n++;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (!rc)
		rc = flush_items(fs, v, n);
	free_items(v, n);
	/* Objects this handle did not write but a backup reuses (chunks a killed
	 * backup renamed into place before its directory fsync) must be durable
	 * too before a manifest names them: flush the whole filesystem. */
	if (!rc) {
		int fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			rc = errno == ENOENT ? 0 : -errno; /* nothing stored yet: nothing to flush */
		else if (syncfs(fd) < 0)
			rc = -errno;
		if (fd >= 0)
			close(fd);
	}
	return rc;
}

/* Temp files of puts that never finished (a killed writer): older than
 * min_age seconds, they belong to nobody. */
static _Thread_local struct {
	time_t before;
	long removed;
	int err;
} sweep;

static int sweep_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	if (type == FTW_F && !strncmp(path + ftw->base, TMP_PREFIX, TMP_PREFIX_LEN) && sb->st_mtime <= sweep.before) {
		if (unlink(path) == 0)
			sweep.removed++;
		else if (errno != ENOENT)
			sweep.err = -errno;
	}
	return 0;
}

static long file_cleanup(struct fy_store *s, int64_t min_age)
{
	struct file_store *fs = fs_of(s);

	sweep.before = time(NULL) - (time_t)min_age;
	sweep.removed = 0;
	sweep.err = 0;
	if (nftw(fs->root, sweep_one, 16, FTW_PHYS) < 0)
		return errno == ENOENT ? 0 : -errno;
	return sweep.err ? sweep.err : sweep.removed;
}

static unsigned file_concurrency(struct fy_store *s)
{
	(void)s;
	return FY_FILE_CONCURRENCY;
}

const struct fy_store_ops fy_store_file_ops = {
	.scheme = "file",
	.open = file_open,
	.put = file_put,
	.get = file_get,
	.exists = file_exists,
	.list = file_list,
	.del = file_del,
	.sync = file_sync,
	.close = file_close,
	.concurrency = file_concurrency,
	.cleanup = file_cleanup,
	.make_folder = file_make_folder,
};
