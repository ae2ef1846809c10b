/* libferry: retention (forget) and garbage collection (prune).
 * Same conventions as ferry.h: 0 or a negative errno; on failure err
 * receives one line naming what was wrong. */
#ifndef FERRY_GC_H
#define FERRY_GC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

/* Why a snapshot is kept: one bit per policy. */
#define FY_KEEP_LAST (1u << 0)
#define FY_KEEP_HOURLY (1u << 1)
#define FY_KEEP_DAILY (1u << 2)
#define FY_KEEP_WEEKLY (1u << 3)
#define FY_KEEP_MONTHLY (1u << 4)
#define FY_KEEP_YEARLY (1u << 5)
#define FY_KEEP_NPOLICIES 6

/* How many snapshots each policy keeps per volume; 0: that policy is off. */
struct fy_forget_policy {
	unsigned last, hourly, daily, weekly, monthly, yearly;
};

struct fy_forget_snap {
	uint8_t id[FY_SNAP_ID_LEN];
	const char *volume;
	int64_t created_unix_nano;
};

/* The retention policy, a pure function (restic's forget semantics).
 * Snapshots are grouped by volume; within a group, newest first, a policy
 * keeps a snapshot while it has budget left and the snapshot's bucket
 * differs from that of the last snapshot this policy kept.  Buckets, in
 * local time (TZ): last, every snapshot; hourly, Y-M-D-H; daily, Y-M-D;
 * weekly, ISO year and week; monthly, Y-M; yearly, Y.  reasons[i] receives
 * the FY_KEEP_* bits of the policies that keep snaps[i]; 0 means remove.
 * -EINVAL when every policy is off (that would remove everything),
 * -ENOMEM. */
int fy_forget_apply(const struct fy_forget_snap *snaps, size_t n, const struct fy_forget_policy *p,
		    unsigned *reasons);
/* "last", "hourly", ... for one FY_KEEP_* bit; NULL for anything else. */
const char *fy_keep_reason_name(unsigned bit);
/* The names of every bit in reasons, comma-separated ("last,daily"). */
void fy_keep_reasons(unsigned reasons, char *out, size_t len);

struct fy_forget_item {
	uint8_t id[FY_SNAP_ID_LEN];
	char *volume;
	int64_t created_unix_nano;
	uint64_t size;
	unsigned reasons;       /* 0: removed (or, with dry_run, would be) */
	int64_t retained_until; /* > 0: the policy removes it, but Object Lock retains its
				 * manifest until then (Unix seconds): kept, not deleted */
};

struct fy_forget_result {
	struct fy_forget_item *items; /* by volume, then newest first */
	size_t n, kept, removed;
	size_t retained;        /* removed by the policy but under Object Lock: left in place */
};

/* Apply the policy to the snapshots of volume (every volume when NULL) and
 * delete the manifests it does not keep, under a shared lock (dry_run: no
 * lock, nothing deleted).  A manifest that cannot be read aborts forget
 * before anything is deleted.  Free the result with fy_forget_result_free,
 * after a failure too. */
int fy_forget(struct fy_repo *r, const char *volume, const struct fy_forget_policy *p, bool dry_run,
	      struct fy_forget_result *res, char *err, size_t errlen);
/* The same for the snapshots f lets through (NULL: all): those of a
 * volume that carry every one of f's labels (a policy's snapshots, which
 * its retention may remove, and no others). */
int fy_forget_matching(struct fy_repo *r, const struct fy_snap_filter *f, const struct fy_forget_policy *p,
		       bool dry_run, struct fy_forget_result *res, char *err, size_t errlen);
void fy_forget_result_free(struct fy_forget_result *res);

struct fy_prune_opts {
	bool dry_run;           /* take no lock, delete nothing, report what would go */
	/* Delete every chunk when the repository holds chunks and no snapshot;
	 * without it prune refuses (-EPERM) before deleting anything. */
	bool allow_empty;
	unsigned threads;       /* deletes in flight; 0: the store's concurrency */
	/* Each stale lock removed, on the way to the exclusive lock (may be NULL). */
	void (*note)(const char *line, void *arg);
	/* Each unreferenced chunk, before it is deleted (may be NULL). */
	void (*chunk)(const uint8_t id[FY_ID_LEN], uint64_t size, void *arg);
	void *arg;
	/* The bytes of unreferenced chunks to delete (total) and done (may be NULL). */
	struct fy_progress *progress;
};

struct fy_prune_result {
	size_t snapshots;
	size_t chunks_referenced;  /* distinct ids named by the manifests */
	size_t chunks_present;     /* chunk objects listed */
	size_t chunks_missing;     /* referenced but absent (ferry check names them) */
	size_t chunks_kept, chunks_removed;
	uint64_t bytes_kept, bytes_removed;
	size_t chunks_retained;    /* unreferenced, but under Object Lock: left in place */
	uint64_t bytes_retained;
	int64_t retained_until;    /* the latest retention among them (Unix seconds) */
	long uploads_aborted;      /* incomplete multipart uploads (S3) or temp files removed */
};

/* Delete every chunk that no manifest names, under the exclusive lock.  A
 * manifest that cannot be read, or a folder that cannot be listed, aborts
 * prune before anything is deleted; so does a repository with chunks and no
 * snapshot, unless o->allow_empty. */
int fy_prune(struct fy_repo *r, const struct fy_prune_opts *o, struct fy_prune_result *res, char *err,
	     size_t errlen);

#endif
