/* CSI snapshots: the cut (freeze, clone, thaw) inside CreateSnapshot, the
 * upload queued behind it (jobs.c), DeleteSnapshot, ListSnapshots, and
 * bringing a snapshot back as a volume. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_priv.h"
#include "ferry.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"

#define MSG(x) ((const ProtobufCMessage *)(x))
#define MAP(x) ((struct fy_map_entry *const *)(x))
#define HOOK_TIMEOUT_MS 60000

extern char **environ;

void fy_snapshot_to_csi(const struct fy_cat_snapshot *s, Csi__V1__Snapshot *out, Google__Protobuf__Timestamp *ts)
{
	csi__v1__snapshot__init(out);
	google__protobuf__timestamp__init(ts);
	out->size_bytes = (int64_t)s->size;
	out->snapshot_id = (char *)s->id;
	out->source_volume_id = (char *)s->volume_id;
	ts->seconds = s->created_ns / 1000000000LL;
	ts->nanos = (int32_t)(s->created_ns % 1000000000LL);
	out->creation_time = ts;
	out->ready_to_use = s->state == FY_SNAP_READY;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Run a freeze hook: argv split on spaces, no shell; the volume, snapshot
 * and mount point in the environment.  Killed after HOOK_TIMEOUT_MS. */
static int run_hook(const char *cmd, const char *what, const struct fy_cat_volume *v, const char *snap_name,
		    const char *mnt, char *why, size_t len)
{
	char *copy = strdup(cmd), *argv[32], *save = NULL, *envv[64];
	char e_vol[160], e_name[200], e_snap[200], e_mnt[1100];
	size_t n = 0, ne = 0;
	struct timespec t0;
	pid_t pid;
	int st, ret;

	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, " \t", &save); t && n < 31; t = strtok_r(NULL, " \t", &save))
		argv[n++] = t;
	argv[n] = NULL;
	if (!n) {
		free(copy);
		return 0;
	}
	for (char **e = environ; *e && ne < 58; e++)
		if (!strncmp(*e, "PATH=", 5) || !strncmp(*e, "HOME=", 5) || !strncmp(*e, "LANG=", 5))
			envv[ne++] = *e;
	snprintf(e_vol, sizeof(e_vol), "FERRY_VOLUME_ID=%s", v->id);
	snprintf(e_name, sizeof(e_name), "FERRY_VOLUME_NAME=%s", v->name);
	snprintf(e_snap, sizeof(e_snap), "FERRY_SNAPSHOT_NAME=%s", snap_name);
	snprintf(e_mnt, sizeof(e_mnt), "FERRY_MOUNT_PATH=%s", mnt ? mnt : "");
	envv[ne++] = e_vol;
	envv[ne++] = e_name;
	envv[ne++] = e_snap;
	envv[ne++] = e_mnt;
	envv[ne] = NULL;
	ret = posix_spawnp(&pid, argv[0], NULL, NULL, argv, envv);
	if (ret) {
		snprintf(why, len, "%s hook '%s': %s", what, argv[0], strerror(ret));
		free(copy);
		return -ret;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			ret = -errno;
			snprintf(why, len, "%s hook '%s': waitpid: %s", what, argv[0], strerror(errno));
			free(copy);
			return ret;
		}
		if (ms_since(&t0) > HOOK_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			snprintf(why, len, "%s hook '%s' ran longer than %d s and was killed", what, argv[0],
				 HOOK_TIMEOUT_MS / 1000);
			free(copy);
			return -ETIMEDOUT;
		}
		nanosleep(&(struct timespec){ 0, 2000000 }, NULL); /* a hook is a process: poll its exit */
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		snprintf(why, len, "%s hook '%s' failed (%s %d)", what, argv[0], WIFEXITED(st) ? "exit" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		free(copy);
		return -ECANCELED;
	}
	free(copy);
	return 0;
}

/* The cut: pre-hook, freeze the filesystem the volume is mounted as (if it
 * is), clone the image, thaw, post-hook.  Thaw always follows a freeze. */
static int cut(struct fy_agent *a, const struct fy_cat_volume *v, const char *snap_id, const char *snap_name,
	       const struct fy_hook *hook, bool freeze, bool *reflinked, double *frozen_ms, char *why, size_t len)
{
	char img[1024], clone[1024], mnt[1024] = "", e2[256];
	struct timespec t0;
	bool frozen = false;
	int ret;

	fy_vol_path(a, v->id, img, sizeof(img));
	fy_snap_path(a, snap_id, clone, sizeof(clone));
	if (fy_pub_first_mount(a, v->id, mnt, sizeof(mnt)))
		mnt[0] = 0;
	if (hook && hook->pre) {
		ret = run_hook(hook->pre, "pre", v, snap_name, mnt[0] ? mnt : NULL, why, len);
		if (ret)
			return ret;
	}
	/* Write the dirty data back first, writers still running: the freeze
	 * then has little left to flush, and the frozen window (timed from
	 * here) stays short after heavy writes.  A failed sync is no reason
	 * not to cut: the freeze flushes what is left. */
	if (freeze && mnt[0] && fy_fs_sync(mnt, e2, sizeof(e2)))
		fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = v->id, .snapshot = snap_id, .error = e2 },
			"snapshot %s: %s (the freeze flushes instead)", snap_id, e2);
	/* ... and so is the image file's (the loop device writes through its
	 * page cache): the reflink clone would flush it inside the window. */
	{
		int fd = open(img, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fdatasync(fd)) {
			const char *e = strerror(errno);

			fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = v->id, .snapshot = snap_id, .error = e },
				"snapshot %s: sync %s: %s (the clone flushes instead)", snap_id, img, e);
		}
		if (fd >= 0)
			close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (freeze && mnt[0]) {
		ret = fy_fs_freeze(mnt, why, len);
		if (ret)
			goto post;
		frozen = true;
	}
	ret = fy_img_clone(img, clone, reflinked, why, len);
	if (frozen) {
		int t = fy_fs_thaw(mnt, e2, sizeof(e2));

		if (t && !ret) {
			snprintf(why, len, "%s", e2);
			ret = t;
		}
	}
	*frozen_ms = ms_since(&t0);
post:
	if (hook && hook->post) {
		int p = run_hook(hook->post, "post", v, snap_name, mnt[0] ? mnt : NULL, ret ? e2 : why,
				 ret ? sizeof(e2) : len);

		if (p && !ret)
			ret = p;
	}
	if (ret)
		fy_img_remove(clone, e2, sizeof(e2));
	return ret;
}

static const struct fy_hook *find_hook(const struct fy_agent *a, const char *name)
{
	for (size_t i = 0; i < a->conf.nhooks; i++)
		if (!strcmp(a->conf.hooks[i].name, name))
			return &a->conf.hooks[i];
	return NULL;
}

static void reply_snapshot(struct fy_rpc_call *call, const struct fy_cat_snapshot *s)
{
	Csi__V1__CreateSnapshotResponse resp = CSI__V1__CREATE_SNAPSHOT_RESPONSE__INIT;
	Csi__V1__Snapshot snap;
	Google__Protobuf__Timestamp ts;

	fy_snapshot_to_csi(s, &snap, &ts);
	resp.snapshot = &snap;
	fy_rpc_reply(call, MSG(&resp));
}

/* Save the secrets of an upload for its job (and for a restart). */
static int save_job_secrets(struct fy_agent *a, const char *snap_id, const Csi__V1__CreateSnapshotRequest *req,
			    char *why, size_t len)
{
	char dir[1024], sub[1100], prefix[32];
	bool s3;
	int ret;

	fy_job_dir(a, snap_id, dir, sizeof(dir));
	ret = fy_secrets_write(dir, MAP(req->secrets), req->n_secrets, "", &s3, why, len);
	for (int i = 1; !ret && i < FY_MAX_TARGETS_URL; i++) {
		snprintf(prefix, sizeof(prefix), "copy-%d.", i);
		snprintf(sub, sizeof(sub), "%s/copy-%d", dir, i);
		ret = fy_secrets_write(sub, MAP(req->secrets), req->n_secrets, prefix, &s3, why, len);
	}
	return ret;
}

void fy_create_snapshot(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__CreateSnapshotRequest *req = (const Csi__V1__CreateSnapshotRequest *)req_;
	struct fy_agent *a = ctx;
	struct fy_cat_snapshot s, parent;
	struct fy_cat_volume v;
	struct fy_kv *kv = NULL;
	const char *repo, *hookname, *freeze, *insecure;
	const struct fy_hook *hook = NULL;
	pthread_mutex_t *nl, *vl;
	char why[768];
	double frozen_ms = 0;
	size_t nkv = 0;
	int ret;

	if (!req->name || !*req->name)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateSnapshot: name is required");
	if (strlen(req->name) > FY_NAME_MAX)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateSnapshot: name is longer than %d bytes",
				   FY_NAME_MAX);
	if (fy_has_control(req->name))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateSnapshot: name holds a control character");
	if (!req->source_volume_id || !*req->source_volume_id)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateSnapshot: source_volume_id is required");
	if (!fy_safe_token(req->source_volume_id, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
				   "CreateSnapshot: source_volume_id is not a valid id");
	if (fy_check_map(MAP(req->parameters), req->n_parameters, 4096, "parameters", true, why, sizeof(why)) ||
	    fy_check_map(MAP(req->secrets), req->n_secrets, 4096, "secrets", false, why, sizeof(why)))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateSnapshot: %s", why);
	repo = fy_map_get(MAP(req->parameters), req->n_parameters, FY_P_REPO);
	hookname = fy_map_get(MAP(req->parameters), req->n_parameters, FY_P_HOOK);
	freeze = fy_map_get(MAP(req->parameters), req->n_parameters, FY_P_FREEZE);
	if (hookname && !(hook = find_hook(a, hookname)))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
				   "CreateSnapshot: hook '%.64s' is not configured on this node (hook.NAME.pre/post in "
				   "the agent's config)", hookname);
	if (freeze && strcmp(freeze, "true") && strcmp(freeze, "false"))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateSnapshot: %s must be true or false",
				   FY_P_FREEZE);
	insecure = fy_map_get(MAP(req->parameters), req->n_parameters, FY_P_INSECURE);
	if (insecure && strcmp(insecure, "true") && strcmp(insecure, "false"))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateSnapshot: %s must be true or false, "
				   "not '%.64s'", FY_P_INSECURE, insecure);

	nl = fy_stripe(a->name_lock, req->name);
	pthread_mutex_lock(nl);
	if (!fy_cat_snap_by_name(a->cat, req->name, &s)) {
		if (strcmp(s.volume_id, req->source_volume_id)) {
			pthread_mutex_unlock(nl);
			return fy_rpc_fail(call, GRPC_STATUS_ALREADY_EXISTS,
					   "CreateSnapshot: snapshot '%s' exists (%s) for another volume (%s)", req->name,
					   s.id, s.volume_id);
		}
		if (s.state == FY_SNAP_FAILED) {
			/* Report the failure once, and try again with these secrets. */
			snprintf(why, sizeof(why), "%s", s.error);
			if (s.local) {
				char e2[256];

				s.state = FY_SNAP_CUT;
				s.error[0] = 0;
				if (!save_job_secrets(a, s.id, req, e2, sizeof(e2)) &&
				    !fy_cat_snap_update(a->cat, &s, e2, sizeof(e2)) &&
				    !fy_cat_job_put(a->cat, s.id, e2, sizeof(e2))) {
					struct fy_cat_job j = { .attempts = 0 };

					snprintf(j.snapshot_id, sizeof(j.snapshot_id), "%s", s.id);
					j.queued_ns = fy_now_ns();
					j.next_ns = 0;
					fy_cat_job_update(a->cat, &j, e2, sizeof(e2));
				}
				fy_jobs_kick(a);
			}
			pthread_mutex_unlock(nl);
			return fy_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "CreateSnapshot '%s' (%s): the upload failed: %s%s",
					   req->name, s.id, why, s.local ? "; retrying" : "");
		}
		if (s.state == FY_SNAP_CUT && !save_job_secrets(a, s.id, req, why, sizeof(why)))
			fy_jobs_kick(a); /* fresher secrets for the upload in progress */
		pthread_mutex_unlock(nl);
		return reply_snapshot(call, &s);
	}

	vl = fy_stripe(a->vol_lock, req->source_volume_id);
	pthread_mutex_lock(vl);
	if (fy_cat_volume_get(a->cat, req->source_volume_id, &v)) {
		pthread_mutex_unlock(vl);
		pthread_mutex_unlock(nl);
		return fy_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "CreateSnapshot: volume %s does not exist",
				   req->source_volume_id);
	}
	memset(&s, 0, sizeof(s));
	fy_new_id("snap", s.id, sizeof(s.id));
	snprintf(s.name, sizeof(s.name), "%s", req->name);
	snprintf(s.volume_id, sizeof(s.volume_id), "%s", v.id);
	s.size = v.size;
	if (!fy_cat_snap_newest(a->cat, v.id, &parent))
		snprintf(s.parent_id, sizeof(s.parent_id), "%s", parent.id);
	s.created_ns = fy_now_ns();
	ret = cut(a, &v, s.id, s.name, hook, !freeze || !strcmp(freeze, "true"), &s.reflinked, &frozen_ms, why,
		  sizeof(why));
	if (ret) {
		pthread_mutex_unlock(vl);
		pthread_mutex_unlock(nl);
		return fy_rpc_fail(call, fy_errno_status(ret), "CreateSnapshot '%s' of %s: %s", req->name, v.id, why);
	}
	s.local = true;
	s.state = repo && *repo ? FY_SNAP_CUT : FY_SNAP_READY;
	if (s.state == FY_SNAP_READY)
		s.ready_ns = fy_now_ns();
	/* The class parameters are kept (never the secrets). */
	kv = calloc(req->n_parameters ? req->n_parameters : 1, sizeof(*kv));
	for (size_t i = 0; kv && i < req->n_parameters; i++) {
		kv[nkv].key = req->parameters[i]->key;
		kv[nkv].value = req->parameters[i]->value;
		nkv++;
	}
	ret = kv ? 0 : -ENOMEM;
	if (!ret && s.state == FY_SNAP_CUT)
		ret = save_job_secrets(a, s.id, req, why, sizeof(why));
	if (!ret)
		ret = fy_cat_snap_put(a->cat, &s, kv, nkv, why, sizeof(why));
	if (!ret && s.state == FY_SNAP_CUT)
		ret = fy_cat_job_put(a->cat, s.id, why, sizeof(why));
	free(kv);
	pthread_mutex_unlock(vl);
	pthread_mutex_unlock(nl);
	if (ret) {
		char path[1024], e2[256];

		fy_snap_path(a, s.id, path, sizeof(path));
		fy_img_remove(path, e2, sizeof(e2));
		fy_job_dir(a, s.id, path, sizeof(path));
		fy_secrets_remove(path);
		fy_cat_snap_delete(a->cat, s.id, e2, sizeof(e2));
		return fy_rpc_fail(call, fy_errno_status(ret), "CreateSnapshot '%s': %s", req->name, why);
	}
	fy_metrics_cut(frozen_ms / 1e3);
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = v.id, .snapshot = s.id },
		"CreateSnapshot '%s': %s of %s cut in %.2f ms (%s%s)%s", s.name, s.id, v.id, frozen_ms,
		s.reflinked ? "reflink" : "sparse copy", hook ? ", hooks" : "",
		s.state == FY_SNAP_CUT ? ", upload queued" : ", node-local");
	if (s.state == FY_SNAP_CUT)
		fy_jobs_kick(a);
	reply_snapshot(call, &s);
}

/* What DeleteSnapshot waits for an upload of the snapshot to stop, at most
 * (it stops at the next chunk: this bounds only one blocked store request). */
#define DROP_WAIT_MS 5000

void fy_delete_snapshot(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__DeleteSnapshotRequest *req = (const Csi__V1__DeleteSnapshotRequest *)req_;
	struct fy_agent *a = ctx;
	struct fy_cat_snapshot s;
	struct fy_kv *kv = NULL;
	char path[1024], why[512], committed[33], c2[33], shown[512] = "its repository", what[1024] = "";
	bool has_repo = false;
	pthread_mutex_t *nl, *vl;
	size_t nkv = 0;
	int64_t left;
	int ret, drop;

	if (!req->snapshot_id || !*req->snapshot_id)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "DeleteSnapshot: snapshot_id is required");
	if (!fy_safe_token(req->snapshot_id, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "DeleteSnapshot: snapshot_id is not a valid id");
	if (fy_cat_snap_get(a->cat, req->snapshot_id, &s))
		return fy_rpc_reply(call, MSG(&(Csi__V1__DeleteSnapshotResponse)CSI__V1__DELETE_SNAPSHOT_RESPONSE__INIT));
	/* Its upload first: the job goes for good, a run of it stops (waited
	 * for a bounded time, well within the caller's deadline). */
	left = fy_rpc_ms_left(call) - 1000;
	drop = fy_jobs_drop(a, s.id, left < 0 ? 0 : left < DROP_WAIT_MS ? (unsigned)left : DROP_WAIT_MS, committed,
			    why, sizeof(why));
	if (drop < 0)
		return fy_rpc_fail(call, fy_errno_status(drop), "DeleteSnapshot %s: %s", s.id, why);
	nl = fy_stripe(a->name_lock, s.name);
	vl = fy_stripe(a->vol_lock, s.volume_id);
	pthread_mutex_lock(nl);
	pthread_mutex_lock(vl);
	/* Again under the name's lock: a CreateSnapshot retrying this name may
	 * have queued it meanwhile; from here on none can. */
	ret = fy_jobs_drop(a, s.id, 0, c2, why, sizeof(why));
	if (ret == FY_DROP_LEFT && drop != FY_DROP_LEFT)
		drop = FY_DROP_LEFT;
	fy_snap_path(a, s.id, path, sizeof(path));
	if (ret >= 0)
		ret = fy_img_remove(path, why, sizeof(why));
	if (!ret) {
		fy_job_dir(a, s.id, path, sizeof(path));
		fy_secrets_remove(path);
		if (!fy_cat_snap_params(a->cat, s.id, &kv, &nkv)) {
			for (size_t i = 0; i < nkv; i++)
				if (!strcmp(kv[i].key, FY_P_REPO) && kv[i].value[0]) {
					fy_url_shown(kv[i].value, shown, sizeof(shown));
					has_repo = true;
				}
			fy_kv_free(kv, nkv);
		}
		ret = fy_cat_snap_delete(a->cat, s.id, why, sizeof(why));
	}
	pthread_mutex_unlock(vl);
	pthread_mutex_unlock(nl);
	if (ret)
		return fy_rpc_fail(call, fy_errno_status(ret), "DeleteSnapshot %s: %s", s.id, why);
	if (drop == FY_DROP_STOPPED)
		snprintf(what, sizeof(what), ": its upload was stopped, nothing of it was committed to %s; the chunks it "
			 "had stored stay there unreferenced until `ferry prune`", shown);
	else if (drop == FY_DROP_COMMITTED)
		snprintf(what, sizeof(what), ": its upload had just completed, and %s keeps it as snapshot %s until "
			 "retention removes it", shown, committed);
	else if (drop == FY_DROP_LEFT)
		snprintf(what, sizeof(what), ": its upload, blocked in a store request, did not stop in time: it never "
			 "resumes, and what it does when the request returns is discarded; chunks it stored stay in %s "
			 "unreferenced until `ferry prune`", shown);
	else if (s.state != FY_SNAP_READY && s.local)
		snprintf(what, sizeof(what), ": its pending upload is dropped; nothing of it was committed to %s (chunks "
			 "an earlier attempt stored, if any, stay unreferenced until `ferry prune`)", shown);
	else if (s.repo_snapshot[0])
		snprintf(what, sizeof(what), ": its copy in the repository is kept (retention prunes it)");
	fy_logf(FY_LOG_INFO,
		&(struct fy_log_fields){ .volume = s.volume_id, .snapshot = s.id, .target = has_repo ? shown : NULL },
		"DeleteSnapshot %s ('%s')%s", s.id, s.name, what);
	fy_rpc_reply(call, MSG(&(Csi__V1__DeleteSnapshotResponse)CSI__V1__DELETE_SNAPSHOT_RESPONSE__INIT));
}

/* ListSnapshots of one id this node's catalog lacks (on a worker: a
 * search may read a repository): the csi-snapshotter asks it of a static
 * VolumeSnapshotContent (restoring in another cluster) for its status.
 * Found: one entry, ready; found nowhere: none (the spec's answer);
 * repositories that refused the secrets or could not be read: the error. */
static void list_from_repositories(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__ListSnapshotsRequest *req = (const Csi__V1__ListSnapshotsRequest *)req_;
	struct fy_agent *a = ctx;
	Csi__V1__ListSnapshotsResponse resp = CSI__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
	Csi__V1__ListSnapshotsResponse__Entry ent = CSI__V1__LIST_SNAPSHOTS_RESPONSE__ENTRY__INIT, *entp = &ent;
	Csi__V1__Snapshot snap = CSI__V1__SNAPSHOT__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	struct fy_found f;
	char why[1024];
	int ret;

	ret = fy_lookup_snapshot(a, req->snapshot_id, NULL, 0, MAP(req->secrets), req->n_secrets, &f, why,
				 sizeof(why));
	if (ret == -ENOENT)
		return fy_rpc_reply(call, MSG(&resp));
	if (ret)
		return fy_rpc_fail(call, fy_lookup_status(ret), "ListSnapshots: %s", why);
	if (req->source_volume_id && *req->source_volume_id && strcmp(req->source_volume_id, f.m->volume)) {
		fy_found_free(&f);
		return fy_rpc_reply(call, MSG(&resp));
	}
	snap.snapshot_id = req->snapshot_id;
	snap.source_volume_id = f.m->volume;
	snap.size_bytes = (int64_t)f.m->size;
	ts.seconds = f.m->created_unix_nano / 1000000000LL;
	ts.nanos = (int32_t)(f.m->created_unix_nano % 1000000000LL);
	snap.creation_time = &ts;
	snap.ready_to_use = true;
	ent.snapshot = &snap;
	resp.n_entries = 1;
	resp.entries = &entp;
	fy_rpc_reply(call, MSG(&resp));
	fy_found_free(&f);
}

void fy_list_snapshots(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__ListSnapshotsRequest *req = (const Csi__V1__ListSnapshotsRequest *)req_;
	struct fy_agent *a = ctx;
	Csi__V1__ListSnapshotsResponse resp = CSI__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
	struct fy_cat_snapshot *s = NULL;
	Csi__V1__ListSnapshotsResponse__Entry *ents = NULL, **entp = NULL;
	Csi__V1__Snapshot *snaps = NULL;
	Google__Protobuf__Timestamp *ts = NULL;
	const char *vol = req->source_volume_id ? req->source_volume_id : "";
	const char *sid = req->snapshot_id ? req->snapshot_id : "";
	const char *tok = req->starting_token ? req->starting_token : "";
	size_t n = 0;
	bool more = false;
	int ret;

	if (req->max_entries < 0)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "ListSnapshots: max_entries is negative");
	if ((*vol && !fy_safe_token(vol, FY_ID_MAX)) || (*sid && !fy_safe_token(sid, FY_ID_MAX)))
		return fy_rpc_reply(call, MSG(&resp)); /* no such snapshot can exist */
	if (*tok && !fy_safe_token(tok, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_ABORTED, "ListSnapshots: starting_token is not one we gave");
	ret = fy_cat_snaps(a->cat, vol, sid, tok, (size_t)req->max_entries, &s, &n, &more);
	if (!ret && !n && *sid && !*tok && a->conf.nlookup && fy_our_id(sid, "snap")) {
		free(s);
		return fy_rpc_defer(call, list_from_repositories); /* another node's, or cluster's? */
	}
	if (ret == -EINVAL)
		return fy_rpc_fail(call, GRPC_STATUS_ABORTED, "ListSnapshots: starting_token '%s' is not one we gave "
				   "(or its snapshot is gone): list from the start", tok);
	if (ret)
		return fy_rpc_fail(call, fy_errno_status(ret), "ListSnapshots: the catalog: %s", strerror(-ret));
	if (n) {
		ents = calloc(n, sizeof(*ents));
		entp = calloc(n, sizeof(*entp));
		snaps = calloc(n, sizeof(*snaps));
		ts = calloc(n, sizeof(*ts));
		if (!ents || !entp || !snaps || !ts) {
			free(ents), free(entp), free(snaps), free(ts), free(s);
			return fy_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "ListSnapshots: out of memory");
		}
	}
	for (size_t i = 0; i < n; i++) {
		csi__v1__list_snapshots_response__entry__init(&ents[i]);
		fy_snapshot_to_csi(&s[i], &snaps[i], &ts[i]);
		ents[i].snapshot = &snaps[i];
		entp[i] = &ents[i];
	}
	resp.n_entries = n;
	resp.entries = entp;
	if (more && n)
		resp.next_token = s[n - 1].id;
	fy_rpc_reply(call, MSG(&resp));
	free(ents);
	free(entp);
	free(snaps);
	free(ts);
	free(s);
}

int fy_snapshot_repo(struct fy_agent *a, const struct fy_cat_snapshot *s, struct fy_map_entry *const *secrets,
		     size_t nsecrets, struct fy_repo **r, char *err, size_t errlen)
{
	struct fy_kv *kv = NULL;
	size_t nkv = 0;
	const char *url = NULL;
	char dir[700], id[48];
	bool s3;
	int ret;

	*r = NULL;
	ret = fy_cat_snap_params(a->cat, s->id, &kv, &nkv);
	if (ret) {
		snprintf(err, errlen, "snapshot %s: its parameters: %s", s->id, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < nkv; i++)
		if (!strcmp(kv[i].key, FY_P_REPO))
			url = kv[i].value;
	if (!url || !*url || !s->repo_snapshot[0]) {
		snprintf(err, errlen, "snapshot %s is not on this node any more and was never uploaded", s->id);
		fy_kv_free(kv, nkv);
		return -ENOENT;
	}
	fy_new_id("secrets", id, sizeof(id));
	snprintf(dir, sizeof(dir), "%s/%s", a->tmp_dir, id);
	ret = fy_secrets_write(dir, secrets, nsecrets, "", &s3, err, errlen);
	if (!ret)
		ret = fy_repo_open_dir(url, dir, fy_repo_open_flags(kv, nkv) & FY_OPEN_INSECURE, NULL,
				       "the request's secrets", r, err, errlen);
	fy_secrets_remove(dir); /* read at open */
	fy_kv_free(kv, nkv);
	return ret;
}

int fy_snapshot_restore_repo(struct fy_repo *r, const uint8_t rid[FY_SNAP_ID_LEN], const char *what,
			     const char *volume, const char *snapshot, const char *path, char *err, size_t errlen)
{
	struct fy_restore_opts ro = { .target = path };
	struct fy_restore_result res;
	char shown[512];
	int ret = fy_restore(r, rid, &ro, &res, err, errlen);

	fy_url_shown(r->url, shown, sizeof(shown));
	if (!ret)
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = volume, .snapshot = snapshot, .target = shown },
			"restored snapshot %s into %s: %llu bytes in %.2f s", what, path,
			(unsigned long long)res.bytes_written, res.seconds);
	return ret;
}

int fy_snapshot_materialise(struct fy_agent *a, const struct fy_cat_snapshot *s, const char *volume,
			    const char *path, struct fy_map_entry *const *secrets, size_t nsecrets, char *err,
			    size_t errlen)
{
	char clone[1024], what[200];
	struct fy_repo *r;
	uint8_t id[FY_SNAP_ID_LEN];
	bool reflinked;
	int ret;

	fy_snap_path(a, s->id, clone, sizeof(clone));
	if (s->local && !access(clone, F_OK))
		return fy_img_clone(clone, path, &reflinked, err, errlen);
	ret = fy_snapshot_repo(a, s, secrets, nsecrets, &r, err, errlen);
	if (ret)
		return ret;
	if (fy_unhex(s->repo_snapshot, id, sizeof(id))) {
		fy_repo_close(r);
		snprintf(err, errlen, "snapshot %s: bad repository id '%s' in the catalog", s->id, s->repo_snapshot);
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "%s from its repository", s->id);
	ret = fy_snapshot_restore_repo(r, id, what, volume, s->id, path, err, errlen);
	fy_repo_close(r);
	return ret;
}

/* A snapshot the agent takes by itself, for a backup policy: the cut of
 * CreateSnapshot and its upload job (agent_priv.h). */
int fy_snapshot_take(struct fy_agent *a, const struct fy_take *t, struct fy_cat_snapshot *s, char *err,
		     size_t errlen)
{
	struct fy_cat_snapshot parent;
	struct fy_cat_volume v;
	const struct fy_hook *hook = NULL;
	pthread_mutex_t *nl, *vl;
	char dir[1024], e2[256];
	double frozen_ms = 0;
	int ret;

	if (t->hook && !(hook = find_hook(a, t->hook))) {
		snprintf(err, errlen, "hook '%.64s' is not configured on this node (hook.NAME.pre/post in the agent's "
			 "config)", t->hook);
		return -EINVAL;
	}
	nl = fy_stripe(a->name_lock, t->name);
	pthread_mutex_lock(nl);
	if (!fy_cat_snap_by_name(a->cat, t->name, s)) {
		pthread_mutex_unlock(nl);
		return -EEXIST; /* this run was cut already (before a restart) */
	}
	vl = fy_stripe(a->vol_lock, t->volume_id);
	pthread_mutex_lock(vl);
	if (fy_cat_volume_get(a->cat, t->volume_id, &v)) {
		pthread_mutex_unlock(vl);
		pthread_mutex_unlock(nl);
		snprintf(err, errlen, "volume %s does not exist", t->volume_id);
		return -ENOENT;
	}
	memset(s, 0, sizeof(*s));
	fy_new_id("snap", s->id, sizeof(s->id));
	snprintf(s->name, sizeof(s->name), "%s", t->name);
	snprintf(s->volume_id, sizeof(s->volume_id), "%s", v.id);
	s->size = v.size;
	if (!fy_cat_snap_newest(a->cat, v.id, &parent))
		snprintf(s->parent_id, sizeof(s->parent_id), "%s", parent.id);
	s->created_ns = t->created_ns;
	ret = cut(a, &v, s->id, s->name, hook, t->freeze, &s->reflinked, &frozen_ms, err, errlen);
	if (ret) {
		pthread_mutex_unlock(vl);
		pthread_mutex_unlock(nl);
		return ret;
	}
	fy_metrics_cut(frozen_ms / 1000.0);
	s->local = true;
	s->state = FY_SNAP_CUT;
	fy_job_dir(a, s->id, dir, sizeof(dir));
	ret = t->write_secrets(dir, t->arg, err, errlen);
	if (!ret)
		ret = fy_cat_snap_put(a->cat, s, t->kv, t->nkv, err, errlen);
	if (!ret)
		ret = fy_cat_job_put(a->cat, s->id, err, errlen);
	pthread_mutex_unlock(vl);
	pthread_mutex_unlock(nl);
	if (ret) {
		char path[1024];

		fy_snap_path(a, s->id, path, sizeof(path));
		fy_img_remove(path, e2, sizeof(e2));
		fy_secrets_remove(dir);
		fy_cat_snap_delete(a->cat, s->id, e2, sizeof(e2));
		return ret;
	}
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = v.id, .snapshot = s->id, .policy = t->policy },
		"policy %s: snapshot %s ('%s') of %s cut in %.2f ms (%s%s), upload queued", t->policy, s->id, s->name,
		v.id, frozen_ms, s->reflinked ? "reflink" : "sparse copy", hook ? ", hooks" : "");
	fy_jobs_kick(a);
	return 0;
}
