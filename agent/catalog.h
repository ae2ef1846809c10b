/* The agent's catalog: volumes, snapshots and upload jobs, in SQLite in the
 * state directory (state.db, WAL, synchronous=FULL), so it survives a
 * restart and kill -9.  One connection shared by the agent's threads behind
 * a mutex (calls are short; nothing blocks while it is held).  Every call
 * returns 0 or a negative errno (-ENOENT: no such row; -EEXIST: a unique
 * name taken) and writes one line into err on other failures. */
#ifndef FERRY_AGENT_CATALOG_H
#define FERRY_AGENT_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FY_ID_MAX 64     /* our ids: "vol-" / "snap-" + 32 hex */
#define FY_NAME_MAX 128  /* CSI names, at most 128 bytes */

enum fy_access { FY_ACCESS_BLOCK = 1, FY_ACCESS_MOUNT = 2 };

struct fy_cat_volume {
	char id[FY_ID_MAX + 1];
	char name[FY_NAME_MAX + 1];
	uint64_t size;
	int access;                     /* enum fy_access */
	char fstype[16];                /* mount access: "ext4" / "xfs"; "" for block */
	char source_snapshot[FY_ID_MAX + 1]; /* created from this snapshot, or "" */
	char source_volume[FY_ID_MAX + 1];   /* cloned from this volume, or "" */
	int64_t created_ns;             /* CLOCK_REALTIME */
};

enum fy_snap_state {
	FY_SNAP_CUT = 1,        /* clone made, upload pending or running */
	FY_SNAP_READY = 2,      /* on the primary repository, or local-only */
	FY_SNAP_FAILED = 3,     /* upload failed: error says why (retried on the next CreateSnapshot) */
};

struct fy_cat_snapshot {
	char id[FY_ID_MAX + 1];
	char name[FY_NAME_MAX + 1];
	char volume_id[FY_ID_MAX + 1];
	uint64_t size;                  /* the volume's size at the cut */
	int64_t created_ns;             /* the cut's time, CLOCK_REALTIME */
	int state;                      /* enum fy_snap_state */
	bool local;                     /* the clone is on this node */
	bool reflinked;                 /* the clone shares extents with the volume */
	char parent_id[FY_ID_MAX + 1];  /* the volume's previous snapshot at the cut, or "" */
	char repo_snapshot[33];         /* hex id in the primary repository once uploaded, or "" */
	char error[512];                /* last upload error, or "" */
	uint64_t bytes_uploaded;        /* new bytes stored by the upload */
	int64_t ready_ns;               /* when it became ready, or 0 */
};

/* Key/value parameters kept with a snapshot (the VolumeSnapshotClass
 * parameters, never secrets). */
struct fy_kv {
	char *key, *value;
};

struct fy_cat;

/* Open or create dir/state.db (schema versioned by PRAGMA user_version;
 * an unknown newer version is refused). */
int fy_cat_open(const char *dir, struct fy_cat **cat, char *err, size_t errlen);
void fy_cat_close(struct fy_cat *cat);
/* Close the connection of a process about to _exit while other threads may
 * still call in (threads left blocked in system calls at a stop): the
 * catalog stays locked and allocated, so a late call waits for the exit
 * instead of using a closed connection.  Nothing but _exit may follow. */
void fy_cat_close_final(struct fy_cat *cat);

int fy_cat_volume_put(struct fy_cat *cat, const struct fy_cat_volume *v, char *err, size_t errlen); /* insert; -EEXIST on id or name */
int fy_cat_volume_get(struct fy_cat *cat, const char *id, struct fy_cat_volume *v);
int fy_cat_volume_by_name(struct fy_cat *cat, const char *name, struct fy_cat_volume *v);
int fy_cat_volume_update(struct fy_cat *cat, const struct fy_cat_volume *v, char *err, size_t errlen);
int fy_cat_volume_delete(struct fy_cat *cat, const char *id, char *err, size_t errlen); /* absent: 0 */
/* All volumes, ordered by id; *v malloc'd. */
int fy_cat_volumes(struct fy_cat *cat, struct fy_cat_volume **v, size_t *n);

/* Insert a snapshot with its parameters (nkv may be 0).  -EEXIST on id or name. */
int fy_cat_snap_put(struct fy_cat *cat, const struct fy_cat_snapshot *s, const struct fy_kv *kv, size_t nkv,
		    char *err, size_t errlen);
int fy_cat_snap_get(struct fy_cat *cat, const char *id, struct fy_cat_snapshot *s);
int fy_cat_snap_by_name(struct fy_cat *cat, const char *name, struct fy_cat_snapshot *s);
int fy_cat_snap_update(struct fy_cat *cat, const struct fy_cat_snapshot *s, char *err, size_t errlen);
/* Deletes the snapshot, its parameters and its job (absent: 0). */
int fy_cat_snap_delete(struct fy_cat *cat, const char *id, char *err, size_t errlen);
/* The parameters of a snapshot; free with fy_kv_free. */
int fy_cat_snap_params(struct fy_cat *cat, const char *id, struct fy_kv **kv, size_t *n);
void fy_kv_free(struct fy_kv *kv, size_t n);

/* A page of snapshots ordered by (created_ns, id): those after the cursor
 * (after_id "" = from the start), optionally only of volume_id and/or only
 * the one snapshot_id (either may be NULL or ""), at most max (0 = all).
 * *more says whether rows remain after the page.  *s malloc'd. */
int fy_cat_snaps(struct fy_cat *cat, const char *volume_id, const char *snapshot_id, const char *after_id,
		 size_t max, struct fy_cat_snapshot **s, size_t *n, bool *more);
/* The newest snapshot of a volume (by created_ns, then id), or -ENOENT. */
int fy_cat_snap_newest(struct fy_cat *cat, const char *volume_id, struct fy_cat_snapshot *s);
/* Does any volume name this snapshot as its source, or any snapshot name it
 * as parent?  (Counts, for the caller's decisions.) */
int fy_cat_snap_children(struct fy_cat *cat, const char *id, size_t *volumes, size_t *snapshots);

/* Upload jobs: one per snapshot to upload, kept until it succeeds or the
 * snapshot is deleted. */
struct fy_cat_job {
	char snapshot_id[FY_ID_MAX + 1];
	int64_t queued_ns;
	unsigned attempts;
	int64_t next_ns;                /* not before (CLOCK_REALTIME), backoff after a failure */
};
int fy_cat_job_put(struct fy_cat *cat, const char *snapshot_id, char *err, size_t errlen); /* exists: 0 */
int fy_cat_job_update(struct fy_cat *cat, const struct fy_cat_job *j, char *err, size_t errlen);
int fy_cat_job_delete(struct fy_cat *cat, const char *snapshot_id, char *err, size_t errlen);
/* All jobs in queue order (queued_ns, snapshot_id); *j malloc'd. */
int fy_cat_jobs(struct fy_cat *cat, struct fy_cat_job **j, size_t *n);

#endif
