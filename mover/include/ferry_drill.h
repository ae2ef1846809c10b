/* libferry: restore drills, their records, and the figures an operator
 * watches (RPO, RTO) per volume and repository.  `ferry drill` and `ferry
 * status` are the CLI over these calls; the agent's scheduled drills use the
 * same ones.  Conventions as ferry.h: 0 or a negative errno, one line in err.
 * docs/operations.md says what a drill proves; docs/FORMAT.md ("Drill
 * records") says how a record is stored. */
#ifndef FERRY_DRILL_H
#define FERRY_DRILL_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

/* ---- durations ------------------------------------------------------------
 * "90s", "15m", "1h", "7d", "2w", and sums of them ("1h30m"): a number and a
 * unit (s, m, h, d, w), repeated; no sign, no bare number.  0 and *seconds,
 * or -EINVAL (-ERANGE past a century). */
int fy_duration_parse(const char *s, int64_t *seconds);
/* The largest two units: "45s", "15m", "1h2m", "3d4h"; negative: "-" first. */
void fy_duration_format(int64_t seconds, char *out, size_t len);

/* The data of a snapshot: the bytes of its non-zero blocks (what a restore
 * fetches and writes; zero blocks are holes in a file target). */
uint64_t fy_manifest_data_bytes(const Ferry__V1__Manifest *m);

/* ---- a drill --------------------------------------------------------------
 * fy_drill restores snapshot id to a scratch image in a new directory
 * (scratch_dir/ferry-drill.XXXXXX), verifies it, optionally attaches it as a
 * read-only loop device and runs a check command against it, and removes
 * the scratch (loop device, image, directory) on every way out.
 *
 * Refused before anything is written: a scratch_dir inside the file://
 * repository (and restore's own refusals, ferry.h), and a scratch_dir with
 * less free space than the snapshot's data (its non-zero blocks).
 *
 * Verification: restore already checks every chunk (AEAD tag, CRC32C, the
 * manifest's CRC32C of its block; the keyed id in unencrypted repositories).
 * The drill then reads the synced image back from the disk (O_DIRECT, or
 * with its cached pages dropped) and checks every block against the
 * manifest: its CRC32C, and its keyed id (HMAC under the id key) for a
 * non-zero block or all zeros for a zero one, and the image's size.
 *
 * The check command runs as `/bin/sh -c CMD` with every "{}" in it replaced
 * by the device (/dev/loopN, read-only) and FERRY_DRILL_DEVICE,
 * FERRY_DRILL_SNAPSHOT and FERRY_DRILL_VOLUME in its environment, stdin
 * /dev/null, stdout and stderr captured; in a process group of its own,
 * which is killed when the command exits (nothing it started outlives the
 * drill), on timeout (SIGTERM, SIGKILL 5 s later) and on cancel.  The loop
 * device is bound with LO_FLAGS_AUTOCLEAR and held open by the drill: it
 * unbinds when the drill lets go of it, even when the process is killed.
 *
 * cancel (set from a signal handler, or another thread) stops the drill at
 * the next block or within 0.2 s of the check: it returns -ECANCELED after
 * removing the scratch.  A scratch directory left by a drill that was killed
 * (SIGKILL: nothing could remove it) is removed by the next drill in the
 * same scratch_dir (each drill holds a flock on its directory). */
struct fy_drill_opts {
	const char *scratch_dir;   /* NULL: /var/tmp */
	const char *check;         /* NULL: no check (and no loop device) */
	int64_t check_timeout;     /* seconds; 0: one hour */
	unsigned threads;          /* restore and verify workers; 0: the defaults */
	bool verbose;              /* say on stderr what happens */
	struct fy_progress *progress; /* restore, then verify: total is twice the size */
	const atomic_bool *cancel; /* NULL: never */
};

#define FY_DRILL_OUTPUT_MAX 4096

struct fy_drill_result {
	uint8_t snapshot_id[FY_SNAP_ID_LEN];
	char *volume;              /* malloc'd (fy_drill_result_free) */
	int64_t snapshot_unix_nano; /* when the snapshot was taken */
	int64_t started_unix_nano; /* when the drill began (wall clock) */
	uint64_t size;             /* the volume's size */
	uint64_t bytes;            /* its data: the bytes of its non-zero blocks */
	uint64_t blocks, blocks_verified;
	double restore_seconds;    /* fetch, verify, write and sync: the RTO of the data */
	double verify_seconds;     /* reading the image back */
	bool check_ran;
	char device[32];           /* the loop device the check saw */
	int check_status;          /* its exit status, 128 + N after signal N; -1 when none ran */
	bool check_timed_out;
	double check_seconds;
	char check_output[FY_DRILL_OUTPUT_MAX]; /* the end of its stdout and stderr */
	bool ok;
	const char *stage;         /* where it failed: "scratch", "restore", "verify",
				    * "attach", "check", "cleanup", or "cancelled"; NULL when ok */
	char reason[768];          /* one line: what failed (also in err) */
	char scratch[PATH_MAX];    /* the scratch directory (gone when fy_drill returns) */
	unsigned stale_removed;    /* scratch directories of killed drills removed */
	char warning[512];         /* what went wrong without failing the drill, or "" */
};

/* 0 when every step passed; -ECANCELED; else the failure's -errno (restore's
 * own, -EBADMSG for a block that reads back wrong, -EIO for a check that
 * failed, -ETIMEDOUT for one that timed out) with res->stage and res->reason. */
int fy_drill(struct fy_repo *r, const uint8_t id[FY_SNAP_ID_LEN], const struct fy_drill_opts *o,
	     struct fy_drill_result *res, char *err, size_t errlen);
void fy_drill_result_free(struct fy_drill_result *res);

/* ---- drill records ---------------------------------------------------------
 * drills/<volume tag>/<record>: one sealed DrillRecord per drill, written
 * only when asked (a drill runs with read-only credentials otherwise).
 * fy_drill_record_write stores res (ok or failed) and then deletes the
 * volume's records older than the newest keep (0: FY_DRILL_KEEP), skipping
 * those an Object Lock still retains; a delete that fails is said in warn
 * (the record itself is stored).  forget, prune and copy never touch drills/. */
#define FY_DRILL_KEEP 16

int fy_drill_record_write(struct fy_repo *r, const struct fy_drill_result *res, unsigned keep, char *warn,
			  size_t warnlen, char *err, size_t errlen);

/* One record, as read back. */
struct fy_drill_record {
	uint8_t snapshot_id[FY_SNAP_ID_LEN];
	int64_t snapshot_unix_nano, started_unix_nano;
	uint64_t size, bytes;
	double restore_seconds, verify_seconds, check_seconds;
	bool check_ran, check_timed_out;
	int check_status;
	bool ok;
	char stage[16];
	char reason[768];
	char hostname[256];
};

/* What a reader does with a record object (objlen bytes) once read: open it
 * (magic FYD1, named by the 32 bytes volume tag || record id of its key),
 * decode it and check that it is a record of volume.  0, or -errno with one
 * line in why. */
int fy_drill_record_decode(const struct fy_repo *r, const uint8_t name[32], const char *volume, void *obj,
			   size_t objlen, struct fy_drill_record *out, char *why, size_t whylen);

/* ---- status: RPO and RTO per volume on one repository ----------------------
 * For each volume (or only `volume`): the newest snapshot on r (a manifest
 * there is a complete snapshot: the manifest is the commit point), the
 * newest drill record and the newest successful one.  Volumes in the order
 * of their names. */
struct fy_volume_status {
	char *volume;              /* malloc'd */
	size_t snapshots;          /* of this volume on r */
	uint8_t snapshot_id[FY_SNAP_ID_LEN];
	int64_t snapshot_unix_nano;
	uint64_t size, bytes;      /* of the newest snapshot: size, data (non-zero blocks) */
	bool have_drill, have_ok_drill;
	struct fy_drill_record drill;    /* the newest record */
	struct fy_drill_record ok_drill; /* the newest record of a drill that passed */
	unsigned bad_records;      /* records that did not open (tampered, or not ferry's) */
	char record_error[256];    /* the first such, or why drills/ could not be listed */
};

struct fy_status {
	struct fy_volume_status *v;
	size_t n;
	size_t unreadable;         /* manifests that could not be read (check names them) */
};

int fy_status_read(struct fy_repo *r, const char *volume, struct fy_status *st, char *err, size_t errlen);
void fy_status_free(struct fy_status *st);

/* RTO figures of a volume from its newest passing drill: the measured
 * restore time, and that time scaled to the data of its newest snapshot
 * (bytes / the drill's throughput).  false when there is no such drill. */
bool fy_rto(const struct fy_volume_status *v, double *measured, double *estimate);

#endif
