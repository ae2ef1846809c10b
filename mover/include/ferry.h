/* libferry: the data path from a block device or image file to a repository
 * and back.  The CLI and (later) the CSI agent are its users.
 * Every call returns 0 or a negative errno; on failure err receives one line
 * that names what was wrong (a path, an offset, a chunk, a URL). */
#ifndef FERRY_H
#define FERRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

/* Progress counters, read by a progress printer while the work runs. */
struct fy_progress {
	_Atomic uint64_t done;  /* bytes processed (of the volume; check, copy, prune: of chunks) */
	_Atomic uint64_t total; /* bytes to process, 0 while unknown (it may grow: copy) */
	_Atomic(const char *) phase; /* what runs while no bytes move yet ("reading manifests"), or NULL */
};

struct fy_label {
	const char *key, *value;
};

/* One backup writes to its repository and to up to FY_MAX_TARGETS - 1
 * copies of it (repositories made with fy_repo_init_copy: same keys, so a
 * block is read, compressed and sealed once and the same bytes go to each). */
#define FY_MAX_TARGETS 8

struct fy_target_result {
	char url[512];
	bool optional;
	int status;             /* 0, or the -errno that dropped this (optional) target */
	char error[512];        /* why it was dropped */
	uint32_t chunks_new;    /* chunks this target did not have */
	uint64_t bytes_stored;  /* their sealed bytes */
	struct fy_store_stats stats; /* requests and retries (S3) */
};

struct fy_backup_opts {
	const char *source;     /* image file or block device */
	const char *volume;     /* volume name recorded in the manifest */
	const struct fy_label *labels;
	size_t nlabels;
	const char *io_engine;  /* "auto" (default), "io_uring", "libaio", "psync" */
	unsigned queue_depth;   /* reads in flight; 0: 8 */
	unsigned threads;       /* hashing/compression/sealing workers; 0: online cores */
	unsigned uploaders;     /* puts in flight; 0: the store's concurrency */
	bool verbose;           /* say what was chosen and why, on stderr */
	struct fy_progress *progress;
	/* The parent: NULL or "auto" (the newest snapshot of the same volume),
	 * "none" (a full backup), or a snapshot id / unique prefix. */
	const char *parent;
	/* Change sources (mover/cbt/); with neither, a parent means a manifest scan. */
	const char *changed_ranges; /* a ranges file (docs/cbt.md); needs an explicit parent */
	const char *base_image;     /* the reflink clone the parent was read from */
	bool manifest_scan;         /* ignore change sources: read everything, compare with the parent */
	/* Copies written in the same pass (the repository given to fy_backup is
	 * the primary).  A failing copy fails the backup unless optional[i]. */
	struct fy_repo *const *copies;
	const bool *copy_optional;
	size_t ncopies;
	/* Set by another thread to stop the backup early (-ECANCELED): what is
	 * stored stays stored, and a rerun skips it.  NULL: never. */
	const atomic_bool *cancel;
	/* The snapshot's time in its manifest (Unix ns): the data's point in
	 * time, such as the agent's cut of the clone read here; 0: when the
	 * backup starts. */
	int64_t created_unix_nano;
};

struct fy_backup_result {
	uint8_t snapshot_id[FY_SNAP_ID_LEN];
	uint8_t parent_id[FY_SNAP_ID_LEN];
	bool has_parent;
	uint64_t size;
	uint64_t bytes_read, bytes_new, bytes_stored, bytes_zero, bytes_dedup;
	uint64_t bytes_reused;  /* unchanged per the change source: not read, parent's ids reused */
	uint64_t bytes_same;    /* read, and the same as the parent's block (manifest scan) */
	uint32_t chunks_new, chunks_dedup;
	double seconds;
	char engine[16];
	bool direct;
	char change_source[16]; /* "full", "manifest-scan", "range-list", "extent-diff" */
	char warning[512];      /* a change source that failed and why (the backup fell back), or "" */
	struct fy_target_result targets[FY_MAX_TARGETS]; /* [0]: the primary, then the copies */
	size_t ntargets;
};

int fy_backup(struct fy_repo *r, const struct fy_backup_opts *o, struct fy_backup_result *res,
	      char *err, size_t errlen);

/* Restore refuses, before writing anything: a target inside the file://
 * repository being restored from (by device and inode: symlinks, bind
 * mounts and hard links are seen through; a loop device bound to one of its
 * files too), an existing file unless overwrite, a block device that is
 * mounted or held open exclusively unless force, a file a loop device is
 * bound to unless force, and a target another restore is writing. */
struct fy_restore_opts {
	const char *target;     /* file (created, or replaced with overwrite) or block device (>= volume size) */
	unsigned threads;       /* 0: 4 x online cores (fetching and writing overlap with decoding) */
	bool verbose;
	struct fy_progress *progress;
	bool overwrite;         /* replace an existing regular file (else -EEXIST) */
	bool force;             /* overwrite, and write over a mounted or held block device, and
				 * replace a file a loop device is bound to (-EBUSY otherwise) */
	/* Set by another thread or a signal handler to stop the restore at the
	 * next block (-ECANCELED; a file target's temporary file is removed,
	 * a device is left half-written).  NULL: never. */
	const atomic_bool *cancel;
};

struct fy_restore_result {
	uint64_t size, bytes_written, bytes_zero;
	double seconds;
	bool device;
	bool stale_removed;     /* a temporary file left by an interrupted restore was reused */
	char warning[512];      /* what force let through (a mounted device...), or "" */
};

int fy_restore(struct fy_repo *r, const uint8_t id[FY_SNAP_ID_LEN], const struct fy_restore_opts *o,
	       struct fy_restore_result *res, char *err, size_t errlen);

/* check --read-data-subset: which of the referenced chunks are read.
 * SLICE: the n-th of m slices, a function of each chunk's id alone, so that
 * slices 1..m partition the chunks and a chunk keeps its slice as others come
 * and go (m nightly runs read every chunk once).  PERCENT: each chunk chosen
 * independently with probability percent/100, from seed. */
enum fy_subset_kind { FY_SUBSET_ALL, FY_SUBSET_SLICE, FY_SUBSET_PERCENT };

struct fy_check_subset {
	enum fy_subset_kind kind;
	uint64_t n, m;          /* SLICE: 1 <= n <= m */
	double percent;         /* PERCENT: 0 < percent <= 100 */
	uint64_t seed;          /* PERCENT: fy_check draws one (getrandom) unless have_seed */
	bool have_seed;
};

/* Parse "N/M" or "P%" (decimals allowed): 0, or -EINVAL with one line in err
 * that echoes spec and says what it wants. */
int fy_check_subset_parse(const char *spec, struct fy_check_subset *s, char *err, size_t errlen);
/* "3/7", "2.5%", or "all": buf. */
const char *fy_check_subset_str(const struct fy_check_subset *s, char *buf, size_t len);
/* Whether the chunk with this id is read under s. */
bool fy_check_subset_pick(const struct fy_check_subset *s, const uint8_t id[FY_ID_LEN]);

/* check: every manifest decodes, every chunk they name exists; with read_data
 * every such chunk of subset is fetched and verified.  Problems are reported
 * one line each through report(); returns the number of problems (>= 0) or
 * -errno.  progress (may be NULL): with read_data, the stored bytes of the
 * chunks to read (total) and read so far (done). */
struct fy_check_opts {
	bool read_data;
	struct fy_check_subset subset;  /* zeroed: FY_SUBSET_ALL */
	unsigned threads;               /* readers; 0: 2 x online cores */
	struct fy_progress *progress;
	void (*report)(const char *line, void *arg);
	/* Each chunk about to be read and verified (may be NULL; called from the
	 * readers, one call at a time, as report() is). */
	void (*chunk_read)(const uint8_t id[FY_ID_LEN], void *arg);
	void *arg;
};

struct fy_check_result {
	size_t snapshots, chunks_referenced, chunks_present, chunks_unreferenced, chunks_read;
	uint64_t bytes_read;            /* plain bytes of the chunks read and verified */
	/* read_data: the referenced chunks present in the store that the subset
	 * chose (all of them without one), their stored bytes, and the stored
	 * bytes of every referenced chunk present. */
	size_t chunks_selected;
	uint64_t stored_selected, stored_referenced;
	uint64_t seed;                  /* PERCENT: the seed used */
};

long fy_check(struct fy_repo *r, const struct fy_check_opts *o, struct fy_check_result *res, char *err,
	      size_t errlen);

/* diff: the byte ranges of snapshot b that differ from snapshot a, from the
 * manifests alone (block granularity: a block differs when its id or its
 * checksum does), merged and clipped to b's size.  Bytes past a's end are
 * changed; bytes of a past b's end are not ranges of b (b_size says so). */
struct fy_range {
	uint64_t off, len;
};

struct fy_diff_result {
	uint64_t a_size, b_size, changed_bytes;
	uint32_t chunk_size;
	struct fy_range *ranges; /* malloc'd; free() it */
	size_t nranges;
};

int fy_diff(struct fy_repo *r, const uint8_t a[FY_SNAP_ID_LEN], const uint8_t b[FY_SNAP_ID_LEN],
	    struct fy_diff_result *res, char *err, size_t errlen);

/* copy: send the snapshots of from (ids: n * 16 bytes, or NULL for every
 * snapshot) that to lacks, each with the chunks to lacks, verified on the
 * way; to must be a copy of from (fy_repo_init_copy).  Per snapshot: chunks,
 * sync, manifest (the commit point), so an interrupted copy resumes. */
struct fy_copy_opts {
	unsigned threads;       /* objects in flight; 0: the target store's concurrency */
	struct fy_progress *progress;
};

struct fy_copy_result {
	size_t snapshots_copied, snapshots_present;
	size_t chunks_copied, chunks_present; /* present: on the target before the copy */
	uint64_t bytes_copied;
	double seconds;
	struct fy_store_stats from_stats, to_stats;
};

int fy_copy(struct fy_repo *from, struct fy_repo *to, const uint8_t *ids, size_t nids, const struct fy_copy_opts *o,
	    struct fy_copy_result *res, char *err, size_t errlen);

/* Which snapshots a snapshot argument may name: those of volume (NULL: any)
 * that carry every one of labels. */
struct fy_snap_filter {
	const char *volume;
	const struct fy_label *labels;
	size_t nlabels;
};

/* Does the snapshot of manifest m pass f (f NULL: yes)? */
bool fy_snap_filter_match(const Ferry__V1__Manifest *m, const struct fy_snap_filter *f);
/* Is arg a snapshot argument: 4 to 32 lower-case hex digits, or "latest"? */
bool fy_snapshot_arg_valid(const char *arg);
/* Resolve arg (an id, a unique prefix of one, or "latest") among the
 * snapshots f lets through (f NULL: all).  "latest" is the newest readable
 * one; when f names no volume and those snapshots belong to more than one
 * volume, it is -ENOTUNIQ, and err lists the volumes.  A prefix that several
 * snapshots share is -ENOTUNIQ, err listing them; no match is -ENOENT (err
 * says when the snapshot exists but is of another volume or lacks a tag); a
 * malformed arg is -EINVAL.  With keep, *keep receives the snapshot's
 * decoded manifest (free with ferry__v1__manifest__free_unpacked). */
int fy_snapshot_select(struct fy_repo *r, const char *arg, const struct fy_snap_filter *f,
		       uint8_t id[FY_SNAP_ID_LEN], Ferry__V1__Manifest **keep, char *err, size_t errlen);

unsigned fy_online_cores(void);

#endif
