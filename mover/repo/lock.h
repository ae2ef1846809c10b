/* Repository locks: objects locks/<32 hex>, sealed with magic FYL1
 * (docs/FORMAT.md, "Locks and prune").
 *
 * Backups and forget take shared locks, prune an exclusive one.  Taking is
 * write-then-check: the taker writes its own lock durably, then reads every
 * other lock; on a conflict it deletes its own and fails, so two racing
 * takers both back off and neither wins wrongly.  A held lock is refreshed
 * every FY_LOCK_REFRESH_NS by a thread of this module until released.
 *
 * A lock is stale when it was not refreshed for FY_LOCK_STALE_NS, or when it
 * was taken on this host (same hostname and pid namespace) by a process that
 * no longer exists.  Stale locks are ignored; an exclusive taker removes them.
 * A lock that cannot be decoded counts as a live exclusive lock (fail safe). */
#ifndef FERRY_LOCK_H
#define FERRY_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

#define FY_LOCK_ID_LEN 16
#define FY_LOCK_REFRESH_NS (5 * 60 * INT64_C(1000000000))
#define FY_LOCK_STALE_NS (30 * 60 * INT64_C(1000000000))

struct fy_lock;

/* One line for the operator (a stale lock removed); may be NULL. */
typedef void (*fy_lock_note_fn)(const char *line, void *arg);

/* Take a lock for command ("backup", "prune", ...).  Returns 0 and *lk, or
 * -EBUSY when another live lock conflicts (err names it and says how to
 * clear it), or another -errno (err says what failed).  Release before
 * closing the repository. */
int fy_lock_take(struct fy_repo *r, bool exclusive, const char *command, struct fy_lock **lk,
		 char *err, size_t errlen);
/* The same; each stale lock removed (exclusive takers only) is reported through note. */
int fy_lock_take_note(struct fy_repo *r, bool exclusive, const char *command, fy_lock_note_fn note,
		      void *arg, struct fy_lock **lk, char *err, size_t errlen);
/* Stop refreshing and delete the lock object.  NULL-safe. */
void fy_lock_release(struct fy_lock *lk);
/* 0 while the lock is still ours: its object exists and every refresh so far
 * succeeded.  -ENOLCK (err says why) when it was removed or could not be
 * refreshed; a caller about to delete data stops then. */
int fy_lock_check(struct fy_lock *lk, char *err, size_t errlen);

/* What a lock object says, as read by fy_lock_list(). */
struct fy_lock_info {
	char key[48];           /* locks/<32 hex> */
	bool corrupt;           /* did not decode: why says why; the fields below are empty */
	bool exclusive;
	char command[32];
	char hostname[256];
	int64_t pid;
	int64_t created_unix_nano, refreshed_unix_nano;
	bool stale;             /* why says why */
	char why[160];
};

/* Every lock in the repository (malloc'd array).  A lock that disappears
 * while being read is left out. */
int fy_lock_list(struct fy_repo *r, struct fy_lock_info **locks, size_t *n, char *err, size_t errlen);
/* One line: "backup (shared) on host H pid P since 2026-11-21T10:00:00Z". */
void fy_lock_describe(const struct fy_lock_info *li, char *out, size_t len);
/* Delete one lock object; a lock already gone is not an error. */
int fy_lock_remove(struct fy_repo *r, const struct fy_lock_info *li, char *err, size_t errlen);

/* Tests only: the refresh period of locks taken from now on (0: the default). */
void fy_lock_set_refresh_period(int64_t ns);

#endif
