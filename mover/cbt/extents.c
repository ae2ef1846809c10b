/* extent-diff: compare the extent maps (FIEMAP) of two reflink clones of one
 * volume image, the source and the base the parent snapshot was read from.
 *
 * A byte is unchanged only when both files map it to the same physical byte
 * (the same shared extent, at the same offset into it) with plain, known
 * locations, or when it lies in a hole in both.  Anything else, including
 * every mapping the kernel marks as unknown, delayed, encoded, inline or
 * unaligned, counts as changed.  Both extent lists are walked together once,
 * a batch of extents per FS_IOC_FIEMAP call, so the cost is O(extents +
 * blocks) whatever the file size: a sparse 100 GiB image with a handful of
 * extents is a handful of steps.  docs/cbt.md says why this is safe.
 *
 * One walker (fx_walk) yields the changed byte ranges, merged, in order; the
 * bitmap source marks the blocks they touch and fy_extent_delta collects
 * them for callers that want bytes (the agent's image backend). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>

#include "cbt/cbt_priv.h"
#include "ferry.h"	/* struct fy_range */

#define FX_BATCH 512u	/* extents per FS_IOC_FIEMAP call (28 KiB) */

/* The kernel cannot vouch for these bytes being where fe_physical says. */
#define FX_UNSURE (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED | \
		   FIEMAP_EXTENT_DATA_ENCRYPTED | FIEMAP_EXTENT_NOT_ALIGNED | \
		   FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL)

struct fx_file {
	const char *role;	/* "source", "base image" */
	const char *path;
	int fd;
	struct stat st;
	struct fiemap *fm;	/* header and FX_BATCH extents */
	unsigned i;		/* next unused extent in fm */
	uint64_t next;		/* where the next FIEMAP call starts: the end of the last extent seen */
	bool last;		/* no extents after those in fm */
};

static const char *fx_fs_name(int fd, char *buf, size_t len)
{
	struct statfs sf;

	if (fstatfs(fd, &sf))
		return "unknown";
	switch ((unsigned long)sf.f_type) {
	case XFS_SUPER_MAGIC: return "xfs";
	case BTRFS_SUPER_MAGIC: return "btrfs";
	case EXT4_SUPER_MAGIC: return "ext4";
	case TMPFS_MAGIC: return "tmpfs";
	case NFS_SUPER_MAGIC: return "nfs";
	case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
	}
	snprintf(buf, len, "type 0x%lx", (unsigned long)sf.f_type);
	return buf;
}

static int fx_open(struct fx_file *f, char *why, size_t whylen)
{
	int ret;

	f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		ret = -errno;
		fy_cbt_why(why, whylen, "extent-diff: %s %s: %s", f->role, f->path, strerror(-ret));
		return ret;
	}
	if (fstat(f->fd, &f->st)) {
		ret = -errno;
		fy_cbt_why(why, whylen, "extent-diff: %s %s: stat: %s", f->role, f->path, strerror(-ret));
		return ret;
	}
	if (!S_ISREG(f->st.st_mode)) {
		fy_cbt_why(why, whylen, "extent-diff: %s %s is not a regular file (%s); extent-diff compares "
			   "two reflinked image files", f->role, f->path,
			   S_ISBLK(f->st.st_mode) ? "a block device" : S_ISDIR(f->st.st_mode) ? "a directory" :
			   "a special file");
		return -EINVAL;
	}
	f->fm = calloc(1, sizeof(*f->fm) + FX_BATCH * sizeof(struct fiemap_extent));
	if (!f->fm) {
		fy_cbt_why(why, whylen, "extent-diff: out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* The next batch of extents from f->next on.  Dirty pages are written back
 * first (FIEMAP_FLAG_SYNC): until then XFS keeps a rewrite of a shared block
 * in its copy-on-write fork, and the data fork that FIEMAP reports still
 * shows the old, shared block. */
static int fx_fetch(struct fx_file *f, char *why, size_t whylen)
{
	struct fiemap *fm = f->fm;
	char fsbuf[32];
	unsigned k, n;
	int ret;

	memset(fm, 0, sizeof(*fm));
	fm->fm_start = f->next;
	fm->fm_length = FIEMAP_MAX_OFFSET - f->next;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = FX_BATCH;
	if (ioctl(f->fd, FS_IOC_FIEMAP, fm)) {
		ret = -errno;
		if (ret == -EOPNOTSUPP || ret == -ENOTTY) {
			fy_cbt_why(why, whylen, "extent-diff: %s %s: its filesystem (%s) cannot map file extents "
				   "(FIEMAP); extent-diff needs reflink clones on XFS or btrfs", f->role, f->path,
				   fx_fs_name(f->fd, fsbuf, sizeof(fsbuf)));
			return -EOPNOTSUPP;
		}
		fy_cbt_why(why, whylen, "extent-diff: %s %s: FIEMAP at offset %llu: %s", f->role, f->path,
			   (unsigned long long)f->next, strerror(-ret));
		return ret;
	}
	/* Keep the extents that lie past f->next, trimmed to start there, in
	 * order; an extent that reaches to the end of the address space is
	 * cut short there. */
	for (k = n = 0; k < fm->fm_mapped_extents && k < FX_BATCH; k++) {
		struct fiemap_extent e = fm->fm_extents[k];
		uint64_t end;

		if (e.fe_length > UINT64_MAX - e.fe_logical)
			e.fe_length = UINT64_MAX - e.fe_logical;
		end = e.fe_logical + e.fe_length;
		if (e.fe_flags & FIEMAP_EXTENT_LAST)
			f->last = true;
		if (end <= f->next)
			continue;
		if (e.fe_logical < f->next) {
			uint64_t cut = f->next - e.fe_logical;

			e.fe_logical += cut;
			e.fe_physical += cut;
			e.fe_length -= cut;
		}
		fm->fm_extents[n++] = e;
		f->next = end;
	}
	if (!n && fm->fm_mapped_extents && !f->last) {
		/* Extents, but none past where we asked: asking again would loop. */
		fy_cbt_why(why, whylen, "extent-diff: %s %s: FIEMAP at offset %llu returned no extent past it",
			   f->role, f->path, (unsigned long long)f->next);
		return -EIO;
	}
	if (!fm->fm_mapped_extents)
		f->last = true;	/* nothing mapped from f->next on: the rest is a hole */
	fm->fm_mapped_extents = n;
	f->i = 0;
	return 0;
}

/* The extent of f that ends after pos (it may start after pos: then pos is in
 * a hole up to its start), or NULL: a hole from pos to the end. */
static int fx_seek(struct fx_file *f, uint64_t pos, const struct fiemap_extent **e, char *why, size_t whylen)
{
	int ret;

	for (;;) {
		while (f->i < f->fm->fm_mapped_extents) {
			const struct fiemap_extent *x = &f->fm->fm_extents[f->i];

			if (x->fe_logical + x->fe_length > pos) {
				*e = x;
				return 0;
			}
			f->i++;
		}
		if (f->last) {
			*e = NULL;
			return 0;
		}
		ret = fx_fetch(f, why, whylen);
		if (ret)
			return ret;
	}
}

/* Same physical byte for the same logical byte, and a location the kernel
 * vouches for (physical 0 never holds file data on a filesystem that can
 * share extents; it marks a location it does not know). */
static bool fx_same(const struct fiemap_extent *a, const struct fiemap_extent *b)
{
	if ((a->fe_flags | b->fe_flags) & FX_UNSURE)
		return false;
	if (!a->fe_physical || !b->fe_physical)
		return false;
	if ((a->fe_flags ^ b->fe_flags) & FIEMAP_EXTENT_UNWRITTEN)
		return false;
	return a->fe_physical - a->fe_logical == b->fe_physical - b->fe_logical;
}

/* Where the walker sends changed ranges.  It holds back the last range so
 * that one adjacent to it is merged first: emit sees each maximal run once,
 * in increasing order, never empty. */
struct fx_sink {
	int (*emit)(struct fx_sink *s, uint64_t off, uint64_t len);
	uint64_t off, len;	/* the range held back (len 0: none) */
};

static int fx_add(struct fx_sink *s, uint64_t off, uint64_t len)
{
	int ret = 0;

	if (!len)
		return 0;
	if (s->len && s->off + s->len == off) {
		s->len += len;
		return 0;
	}
	if (s->len)
		ret = s->emit(s, s->off, s->len);
	s->off = off;
	s->len = len;
	return ret;
}

static int fx_flush(struct fx_sink *s)
{
	uint64_t len = s->len;

	s->len = 0;
	return len ? s->emit(s, s->off, len) : 0;
}

/* Walk both maps over [from, limit), sending what differs to sink (not
 * flushed: the caller may add a range after it). */
static int fx_walk(struct fx_file *src, struct fx_file *base, uint64_t from, uint64_t limit,
		   struct fx_sink *sink, char *why, size_t whylen)
{
	uint64_t pos = from;
	int ret;

	/* FIEMAP starts where the walk does; an extent across from is cut there. */
	src->next = base->next = from;
	while (pos < limit) {
		const struct fiemap_extent *a, *b;
		uint64_t end = limit, ea, eb;
		bool ina, inb;

		ret = fx_seek(src, pos, &a, why, whylen);
		if (!ret)
			ret = fx_seek(base, pos, &b, why, whylen);
		if (ret)
			return ret;
		/* Where each file's current piece (extent or hole) ends. */
		ina = a && a->fe_logical <= pos;
		inb = b && b->fe_logical <= pos;
		ea = !a ? UINT64_MAX : ina ? a->fe_logical + a->fe_length : a->fe_logical;
		eb = !b ? UINT64_MAX : inb ? b->fe_logical + b->fe_length : b->fe_logical;
		if (ea < end)
			end = ea;
		if (eb < end)
			end = eb;
		if (ina != inb || (ina && !fx_same(a, b))) {
			ret = fx_add(sink, pos, end - pos);
			if (ret)
				return ret;
		}
		pos = end;
	}
	return 0;
}

static void fx_close(struct fx_file *f)
{
	free(f->fm);
	f->fm = NULL;
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* Open both files and check they can be compared: two different regular
 * files on one filesystem. */
static int fx_open_pair(struct fx_file *src, struct fx_file *base, char *why, size_t whylen)
{
	int ret = fx_open(src, why, whylen);

	if (!ret)
		ret = fx_open(base, why, whylen);
	if (ret)
		return ret;
	if (src->st.st_dev != base->st.st_dev) {
		fy_cbt_why(why, whylen, "extent-diff: %s %s and %s %s are on different filesystems, "
			   "so they cannot share extents", src->role, src->path, base->role, base->path);
		return -EXDEV;
	}
	if (src->st.st_ino == base->st.st_ino) {
		fy_cbt_why(why, whylen, "extent-diff: %s %s is the %s itself, not a clone of it", base->role,
			   base->path, src->role);
		return -EINVAL;
	}
	return 0;
}

/* The bitmap source: every block a changed range touches is set. */
struct fx_mark_sink {
	struct fx_sink s;
	struct fy_bitmap *changed;
	uint32_t chunk_size;
};

static int fx_mark(struct fx_sink *s, uint64_t off, uint64_t len)
{
	struct fx_mark_sink *m = (struct fx_mark_sink *)s;

	fy_cbt_mark(m->changed, m->chunk_size, off, len);
	return 0;
}

static int extent_diff_changed(const struct fy_cbt_req *req, struct fy_bitmap *changed, char *why, size_t whylen)
{
	struct fx_file src = { .role = "source", .fd = -1 }, base = { .role = "base image", .fd = -1 };
	struct fx_mark_sink m = { .s.emit = fx_mark, .changed = changed, .chunk_size = req ? req->chunk_size : 0 };
	uint64_t ssize, bsize;
	int ret;

	ret = fy_cbt_req_check(&fy_cbt_extent_diff, "base image", req, changed, why, whylen);
	if (ret)
		return ret;
	src.path = req->source;
	base.path = req->arg;
	if (!src.path) {
		fy_cbt_why(why, whylen, "extent-diff: no source given");
		return -EINVAL;
	}
	ret = fx_open_pair(&src, &base, why, whylen);
	if (ret)
		goto out;
	ret = -EINVAL;
	ssize = (uint64_t)src.st.st_size;
	bsize = (uint64_t)base.st.st_size;
	if (ssize != req->size) {
		fy_cbt_why(why, whylen, "extent-diff: source %s is %llu bytes, not the %llu being backed up",
			   src.path, (unsigned long long)ssize, (unsigned long long)req->size);
	} else if (bsize != req->parent_size) {
		fy_cbt_why(why, whylen, "base image %s is %llu bytes but the parent snapshot is %llu bytes",
			   base.path, (unsigned long long)bsize, (unsigned long long)req->parent_size);
	} else {
		/* Only below the parent's size: the caller marks the rest. */
		ret = fx_walk(&src, &base, 0, ssize < bsize ? ssize : bsize, &m.s, why, whylen);
		if (!ret)
			ret = fx_flush(&m.s);
	}
out:
	fx_close(&src);
	fx_close(&base);
	return ret;
}

/* fy_extent_delta's sink: a growing array. */
struct fx_list_sink {
	struct fx_sink s;
	struct fy_range *r;
	size_t n, cap;
};

static int fx_list(struct fx_sink *s, uint64_t off, uint64_t len)
{
	struct fx_list_sink *l = (struct fx_list_sink *)s;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct fy_range *r = realloc(l->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		l->r = r;
		l->cap = cap;
	}
	l->r[l->n++] = (struct fy_range){ off, len };
	return 0;
}

int fy_extent_delta(const char *base, const char *target, uint64_t from, struct fy_range **r, size_t *n,
		    char *why, size_t whylen)
{
	struct fx_file t = { .role = "target", .path = target, .fd = -1 };
	struct fx_file b = { .role = "base", .path = base, .fd = -1 };
	struct fx_list_sink l = { .s.emit = fx_list };
	uint64_t tsize, bsize;
	int ret;

	if (!r || !n || !base || !*base || !target || !*target) {
		fy_cbt_why(why, whylen, "extent-diff: no %s given", !target || !*target ? "target" :
			   !base || !*base ? "base" : "result");
		return -EINVAL;
	}
	*r = NULL;
	*n = 0;
	ret = fx_open_pair(&t, &b, why, whylen);
	if (ret)
		goto out;
	tsize = (uint64_t)t.st.st_size;
	bsize = (uint64_t)b.st.st_size;
	ret = fx_walk(&t, &b, from, tsize < bsize ? tsize : bsize, &l.s, why, whylen);
	/* What target holds past base's end is new. */
	if (!ret && tsize > bsize) {
		uint64_t start = from > bsize ? from : bsize;

		if (start < tsize)
			ret = fx_add(&l.s, start, tsize - start);
	}
	if (!ret)
		ret = fx_flush(&l.s);
	if (ret == -ENOMEM)
		fy_cbt_why(why, whylen, "extent-diff: %s %s: out of memory for %zu ranges", t.role, t.path, l.n);
out:
	fx_close(&t);
	fx_close(&b);
	if (ret) {
		free(l.r);
		return ret;
	}
	*r = l.r;
	*n = l.n;
	return 0;
}

const struct fy_cbt_ops fy_cbt_extent_diff = {
	.name = "extent-diff",
	.changed = extent_diff_changed,
};
