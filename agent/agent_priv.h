/* The agent's shared state and helpers (not an interface of libferry). */
#ifndef FERRY_AGENT_PRIV_H
#define FERRY_AGENT_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "catalog.h"
#include "csi.pb-c.h"
#include "repo/repo.h"
#include "rpc.h"

#define FY_DRIVER_NAME "ferry.csi.dev"
#define FY_TOPOLOGY_KEY "topology.ferry.csi.dev/node"

/* VolumeSnapshotClass parameters (docs/agent.md). */
#define FY_P_REPO "ferry.csi.dev/repository"
#define FY_P_COPY "ferry.csi.dev/copy-to"
#define FY_P_COPY_OPT "ferry.csi.dev/copy-to-optional"
#define FY_P_CREATE "ferry.csi.dev/create-repository"
#define FY_P_HOOK "ferry.csi.dev/hook"
#define FY_P_FREEZE "ferry.csi.dev/freeze"
#define FY_P_INSECURE "ferry.csi.dev/insecure-no-encryption"
#define FY_P_K8S_PREFIX "csi.storage.k8s.io/"
/* A scheduled snapshot's policy: a parameter of its catalog entry and a
 * label of its manifest (retention removes only snapshots carrying it). */
#define FY_P_POLICY "ferry.csi.dev/policy"

/* Secrets (the CSI secrets map): the repository password and S3 keys;
 * "copy-N." before a key gives the N-th copy (1-based) its own. */
#define FY_S_PASSWORD "password"

#define FY_STRIPES 64
#define FY_MAX_HOOKS 16
#define FY_MAX_TARGETS_URL 8
#define FY_MAX_LOOKUP 16          /* lookup-repositories entries */

/* The manifest label every upload records: the CSI snapshot id. */
#define FY_L_SNAPSHOT_ID "ferry.csi.dev/snapshot-id"

struct fy_hook {
	char name[64];
	char *pre, *post;  /* argv strings, split on spaces; NULL if none */
};

struct fy_agent_conf {
	char endpoint[256];
	char node_id[FY_NAME_MAX + 1];
	char state_dir[512];
	char kubelet_dir[512];       /* targets of NodePublish must lie under it */
	unsigned upload_workers;     /* concurrent uploads; default 2 */
	unsigned local_snapshots;    /* local clones kept per volume once uploaded; 0: all */
	unsigned rpc_workers;
	unsigned grace_ms;
	uint64_t default_size;       /* CreateVolume without a capacity: 1 GiB */
	struct fy_hook hooks[FY_MAX_HOOKS];
	size_t nhooks;
	/* Repositories searched for a snapshot this node's catalog does not
	 * know (lookup.c), in order; malloc'd URLs. */
	char *lookup[FY_MAX_LOOKUP];
	size_t nlookup;
	char policy_dir[512];        /* backup policies (sched.c), or "" */
	bool debug;
	char metrics_address[128];   /* --metrics-address: serve /metrics there; "" none */
	bool log_json;               /* --log-format json */
};

struct fy_jobs;
struct fy_lookup;
struct fy_sched;
struct fy_backup_result;

struct fy_agent {
	struct fy_agent_conf conf;
	struct fy_cat *cat;
	char vol_dir[600], snap_dir[600], job_dir[600], tmp_dir[600], pub_dir[600];
	bool reflink;                /* the state dir's filesystem clones */
	pthread_mutex_t name_lock[FY_STRIPES];   /* one CreateVolume/CreateSnapshot per name at a time */
	pthread_mutex_t vol_lock[FY_STRIPES];    /* one cut, publish or delete per volume at a time */
	struct fy_jobs *jobs;
	struct fy_lookup *lookup;    /* lookup.c: which repository holds which snapshot */
	struct fy_sched *sched;      /* sched.c: backup policies, or NULL */
	atomic_bool stopping;
};

/* ---- util.c ---- */
pthread_mutex_t *fy_stripe(pthread_mutex_t *locks, const char *key);
int fy_new_id(const char *prefix, char *id, size_t len);
/* Is s a safe id/name: 1..max bytes, printable, no '/', not "." or ".."? */
bool fy_safe_token(const char *s, size_t max);
/* An id we could have issued ("vol-"/"snap-" + 32 hex). */
bool fy_our_id(const char *s, const char *prefix);
void fy_vol_path(const struct fy_agent *a, const char *id, char *path, size_t len);
void fy_snap_path(const struct fy_agent *a, const char *id, char *path, size_t len);
/* The Kubernetes names a volume was created with ("key=value" lines). */
void fy_vol_labels_path(const struct fy_agent *a, const char *id, char *path, size_t len);
grpc_status_code fy_errno_status(int err);
int64_t fy_now_ns(void);
/* Map lookup in a protobuf-c map (repeated key/value entries). */
struct fy_map_entry {
	ProtobufCMessage base;
	char *key, *value;
};
const char *fy_map_get(struct fy_map_entry *const *e, size_t n, const char *key);
/* Check a CSI map's size (each key and value at most 128/... bytes as the
 * spec limits: the whole map under 4 KiB for parameters). */
/* A control character in any name (or parameter value) is refused. */
bool fy_has_control(const char *s);
int fy_check_map(struct fy_map_entry *const *e, size_t n, size_t max_total, const char *what, bool text_values,
		 char *err, size_t errlen);
/* Write the secrets a target needs into dir (0700; files 0600): for prefix
 * "" the plain keys, for "copy-N." the keys with that prefix (falling back
 * to the plain ones).  Returns whether S3 keys were written (*s3). */
int fy_secrets_write(const char *dir, struct fy_map_entry *const *e, size_t n, const char *prefix, bool *s3,
		     char *err, size_t errlen);
/* A digest of the secrets in dir and its copy-N directories (the files
 * fy_secrets_write makes): equal digests, equal secrets. */
#define FY_SECRETS_DIGEST_LEN 32
int fy_secrets_digest(const char *dir, unsigned char out[FY_SECRETS_DIGEST_LEN]);
/* Remove a secrets directory tree made by fy_secrets_write. */
void fy_secrets_remove(const char *dir);
/* Read dir/password into buf ("" when absent). */
int fy_secret_password(const char *dir, char *buf, size_t len);
/* url with "secret-dir=dir" added when s3 keys were written. */
int fy_target_url(const char *url, const char *dir, bool s3, char *out, size_t len);
int fy_mkdir_p(const char *path, unsigned mode);
/* A repository URL without its query (which may name credential files): for logs. */
void fy_url_shown(const char *url, char *out, size_t len);
/* Open the repository at url with the secrets in dir (fy_secrets_write):
 * the password file and, for S3, the keys (secret-dir=).  With
 * FY_OPEN_CREATE, a repository that does not exist is made (encrypted: it
 * needs a password) — a copy of primary when given.  With
 * FY_OPEN_INSECURE (the class's insecure-no-encryption), an unencrypted
 * repository may be opened, never when a password is among the secrets.
 * whose names the secrets in the hint of a missing password. */
#define FY_OPEN_CREATE 1u
#define FY_OPEN_INSECURE 2u
struct fy_repo;
int fy_repo_open_dir(const char *url, const char *dir, unsigned flags, struct fy_repo *primary, const char *whose,
		     struct fy_repo **r, char *err, size_t errlen);
/* FY_OPEN_* from a snapshot's parameters (create-repository, insecure-no-encryption). */
unsigned fy_repo_open_flags(const struct fy_kv *kv, size_t n);
int fy_rmtree(const char *path);

/* Can we serve this capability?  0, or -EINVAL with why. */
int fy_check_capability(const Csi__V1__VolumeCapability *c, char *why, size_t len);

/* ---- the services ---- */
extern const struct fy_rpc_method fy_identity_methods[];
extern const size_t fy_identity_nmethods;
extern const struct fy_rpc_method fy_controller_methods[];
extern const size_t fy_controller_nmethods;
extern const struct fy_rpc_method fy_node_methods[];
extern const size_t fy_node_nmethods;
extern const struct fy_rpc_method fy_snapmeta_methods[];
extern const size_t fy_snapmeta_nmethods;

/* ---- snapshots (snapshot.c) ---- */
void fy_snapshot_to_csi(const struct fy_cat_snapshot *s, Csi__V1__Snapshot *out, Google__Protobuf__Timestamp *ts);
/* Restore a snapshot into the image at path (for CreateVolume): a clone of
 * the local snapshot, or a restore from its primary repository with the
 * request's secrets. */
int fy_snapshot_materialise(struct fy_agent *a, const struct fy_cat_snapshot *s, const char *volume,
			    const char *path, struct fy_map_entry *const *secrets, size_t nsecrets, char *err,
			    size_t errlen);
/* Open the primary repository a snapshot was uploaded to, with secrets. */
int fy_snapshot_repo(struct fy_agent *a, const struct fy_cat_snapshot *s, struct fy_map_entry *const *secrets,
		     size_t nsecrets, struct fy_repo **r, char *err, size_t errlen);

/* A snapshot the agent takes by itself (a backup policy's run): the cut of
 * CreateSnapshot (hook, freeze, clone, thaw) under the same locks, then the
 * snapshot with kv as its parameters and an upload job, whose secrets
 * write_secrets puts into the job's directory.  0 and *s; -EEXIST when a
 * snapshot of that name exists (*s: it); else -errno with err. */
struct fy_take {
	const char *volume_id, *name, *policy;
	int64_t created_ns;          /* the snapshot's time (the scheduler's clock) */
	const char *hook;            /* a hook.NAME of the config, or NULL */
	bool freeze;
	const struct fy_kv *kv;
	size_t nkv;
	int (*write_secrets)(const char *dir, void *arg, char *err, size_t errlen);
	void *arg;
};
int fy_snapshot_take(struct fy_agent *a, const struct fy_take *t, struct fy_cat_snapshot *s, char *err,
		     size_t errlen);

/* Restore repository snapshot rid into the image at path (created):
 * CreateVolume's restore from a repository; what names the CSI snapshot
 * and where, volume the volume made and snapshot the CSI snapshot id, for
 * the log. */
int fy_snapshot_restore_repo(struct fy_repo *r, const uint8_t rid[FY_SNAP_ID_LEN], const char *what,
			     const char *volume, const char *snapshot, const char *path, char *err, size_t errlen);

/* ---- lookup.c: snapshots this node's catalog does not know ----
 * A CSI snapshot id is looked up by the label FY_L_SNAPSHOT_ID that every
 * upload records in its manifest.  The repositories searched, in order:
 * those a request's parameters name (ferry.csi.dev/repository, copy-to,
 * copy-to-optional: CreateVolume's StorageClass; a copy opened with its
 * "copy-N." secrets), then the config's lookup-repositories; each opened
 * with the request's secrets.  Format 1 has no index of labels: a search
 * reads the manifests one at a time; what it read is remembered (id ->
 * repository snapshot, a bounded cache) so that a repeated call, or a
 * search of another id in the same repository, reads only manifests it
 * has not seen. */
struct fy_found {
	struct fy_repo *repo;            /* open: the caller closes it (fy_found_free) */
	Ferry__V1__Manifest *m;          /* the snapshot's manifest */
	uint8_t rid[FY_SNAP_ID_LEN];     /* its id in that repository */
	char url[2048];                  /* the repository's URL as configured */
	char shown[512];                 /* the same without its query, for messages */
};
int fy_lookup_init(struct fy_agent *a);
void fy_lookup_free(struct fy_agent *a);
/* Find snapshot id.  0 and *f; else -ENOENT (found in none: err names the
 * repositories searched, or says none is configured), -EACCES/-EPERM
 * (no repository could be opened with these secrets), or another -errno
 * (a repository could not be read: the snapshot may be there).  err never
 * holds a secret. */
int fy_lookup_snapshot(struct fy_agent *a, const char *id, struct fy_map_entry *const *params, size_t nparams,
		       struct fy_map_entry *const *secrets, size_t nsecrets, struct fy_found *f, char *err,
		       size_t errlen);
/* Find snapshot id in one open repository (url as given to open it).
 * 0 with *rid and *m (free it), -ENOENT, or -errno (err says). */
int fy_lookup_in(struct fy_agent *a, struct fy_repo *r, const char *url, const char *id,
		 uint8_t rid[FY_SNAP_ID_LEN], Ferry__V1__Manifest **m, char *err, size_t errlen);
/* The status of a lookup's failure. */
grpc_status_code fy_lookup_status(int err);
void fy_found_free(struct fy_found *f);

/* ---- metrics (controller.c, main.c) ---- */
/* Tell the metrics about a volume of this node: its size, name and PVC
 * (read from its labels file). */
void fy_volume_metrics(struct fy_agent *a, const struct fy_cat_volume *v);

/* ---- jobs.c: background uploads ---- */
int fy_jobs_start(struct fy_agent *a, char *err, size_t errlen);
/* Stop: no job is taken any more, runs are cancelled (they stop at the next
 * chunk).  Returns at once. */
void fy_jobs_quit(struct fy_agent *a);
/* fy_jobs_quit, then wait for the upload threads until the monotonic time
 * until_ms (-1: without limit) and free everything: 0.  Threads still
 * blocked then (a store request that does not answer) are left running
 * and nothing is freed: returns how many, and the process must end
 * (_exit) without freeing what they use. */
int fy_jobs_stop(struct fy_agent *a, int64_t until_ms);
void fy_jobs_kick(struct fy_agent *a);
/* The snapshot is being deleted: drop its upload job for good.  Its row
 * goes at once (no worker takes it again, also after a restart); a run of
 * it is cancelled and waited for at most wait_ms.  Returns FY_DROP_IDLE (no
 * run), FY_DROP_STOPPED (the run stopped: nothing committed),
 * FY_DROP_COMMITTED (the run had just committed its manifest: committed
 * holds the repository snapshot id), FY_DROP_LEFT (still blocked in a store
 * request after wait_ms: its result will be discarded), or -errno (the
 * catalog; err says why). */
enum { FY_DROP_IDLE, FY_DROP_STOPPED, FY_DROP_COMMITTED, FY_DROP_LEFT };
int fy_jobs_drop(struct fy_agent *a, const char *snapshot_id, unsigned wait_ms, char committed[33], char *err,
		 size_t errlen);
/* Directory holding a job's secrets. */
void fy_job_dir(const struct fy_agent *a, const char *snapshot_id, char *path, size_t len);
/* A prune of the repository shown as `shown` (fy_url_shown) is about to
 * run: no upload to it starts until fy_jobs_release_repo, and this waits
 * until the uploads to it that are running have ended, calling waiting
 * (may be NULL) once first with the snapshots it waits for.  0, or
 * -ECANCELED when *cancel is set (or the uploads stop) first. */
int fy_jobs_hold_repo(struct fy_agent *a, const char *shown, const atomic_bool *cancel,
		      void (*waiting)(const char *running, void *arg), void *arg);
void fy_jobs_release_repo(struct fy_agent *a, const char *shown);

/* ---- sched.c: backup policies (--policy-dir; docs/operations.md) ----
 * A scheduler thread reads the policies (and rereads them when the
 * directory changes), cuts scheduled snapshots (fy_snapshot_take: their
 * uploads are ordinary jobs), and hands retention, prune and status reads
 * to a maintenance thread and drills to a drill thread. */
int fy_sched_start(struct fy_agent *a, char *err, size_t errlen);
void fy_sched_quit(struct fy_agent *a);
/* Like fy_jobs_stop: 0 (the threads are joined), or how many are still
 * blocked at until_ms (the process must _exit).  fy_sched_free after the
 * uploads have stopped (they report to the scheduler until then). */
int fy_sched_stop(struct fy_agent *a, int64_t until_ms);
void fy_sched_free(struct fy_agent *a);
/* An upload of s has committed (jobs.c): the RPO of its volume on each
 * target that took it, and, for a policy's snapshot, its retention. */
void fy_sched_uploaded(struct fy_agent *a, const struct fy_cat_snapshot *s, const struct fy_kv *kv, size_t nkv,
		       const struct fy_backup_result *res);

#endif
