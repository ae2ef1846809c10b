/* Change sources: which blocks of a volume may differ from its parent
 * snapshot, so that only those are read.  One file per source, behind one
 * const ops table (like mover/io/).  A source that cannot answer (FIEMAP
 * unsupported, a malformed ranges file, a base image that is not the parent)
 * returns a negative errno with one line in why; the caller then falls back
 * to the manifest scan (read everything, compare keyed ids) with a warning:
 * never a wrong backup.
 *
 * The answer is a bitmap over blocks of chunk_size bytes: bit i set means
 * block i [i*cs, min(size,(i+1)*cs)) may have changed and must be read.
 * A clear bit is a promise that every byte of the block is unchanged. */
#ifndef FERRY_CBT_H
#define FERRY_CBT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fy_bitmap {
	uint64_t nbits;
	uint64_t *w;       /* (nbits + 63) / 64 words */
};

int fy_bitmap_init(struct fy_bitmap *b, uint64_t nbits); /* all clear; -ENOMEM */
void fy_bitmap_free(struct fy_bitmap *b);
static inline void fy_bitmap_set(struct fy_bitmap *b, uint64_t i) { b->w[i / 64] |= 1ull << (i % 64); }
static inline bool fy_bitmap_test(const struct fy_bitmap *b, uint64_t i) { return b->w[i / 64] >> (i % 64) & 1; }
/* Set bits [first, last] inclusive. */
void fy_bitmap_set_range(struct fy_bitmap *b, uint64_t first, uint64_t last);
uint64_t fy_bitmap_count(const struct fy_bitmap *b);

struct fy_cbt_req {
	const char *source;     /* the volume being backed up (file or block device) */
	uint64_t size;          /* its size in bytes */
	uint32_t chunk_size;
	uint64_t parent_size;   /* the parent snapshot's volume size */
	const char *arg;        /* the source's argument: a ranges file, a base image path */
};

struct fy_cbt_ops {
	const char *name;       /* "range-list", "extent-diff", "manifest-scan", "allocation-map" */
	/* Fill changed (already sized to ceil(size / chunk_size) bits, all clear).
	 * Blocks at or past the parent's size, and the parent's last block when
	 * the size changed, are set by the caller, not here. */
	int (*changed)(const struct fy_cbt_req *req, struct fy_bitmap *changed, char *why, size_t whylen);
};

/* The byte ranges of target that may differ from base, two reflink clones
 * of one image, from their extent maps (FIEMAP) alone: the walk behind the
 * extent-diff source, which marks the blocks these ranges touch.  Ranges
 * start at or after from (one across from is cut there), are merged
 * (strictly increasing, never adjacent, never empty) and end at target's
 * size; bytes of target past base's end are changed.  Ranges begin and end
 * on the filesystem's blocks except at from, base's end and target's end.
 * *r is malloc'd (NULL when *n is 0).  -EOPNOTSUPP: no FIEMAP here; -EXDEV: different filesystems;
 * -EINVAL: not two different regular files.  cbt/extents.c. */
struct fy_range;	/* ferry.h */
int fy_extent_delta(const char *base, const char *target, uint64_t from, struct fy_range **r, size_t *n,
		    char *why, size_t whylen);

extern const struct fy_cbt_ops fy_cbt_range_list;  /* cbt/ranges.c */
extern const struct fy_cbt_ops fy_cbt_extent_diff; /* cbt/extents.c */
/* The manifest scan (cbt/scan.c): every block may have changed; the backup
 * reads each and compares its keyed id with the parent's.  Takes no arg. */
extern const struct fy_cbt_ops fy_cbt_manifest_scan;
/* The allocation map (cbt/alloc.c), used on every backup, parent or not: a
 * set bit means the block holds data (SEEK_DATA/SEEK_HOLE on a regular
 * file; every block of a device); a clear bit, that the whole block is a
 * hole, which reads as zeros and is never read.  Takes no arg. */
extern const struct fy_cbt_ops fy_cbt_alloc_map;

#endif
