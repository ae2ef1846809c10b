/* CSI Node: publish a volume's loop device as a block device node or as a
 * mounted filesystem at the kubelet's target path, and report its usage. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent_priv.h"
#include "image.h"
#include "log.h"
#include "publish.h"

#define MSG(x) ((const ProtobufCMessage *)(x))

/* A target must be an absolute, normalised path whose parent resolves (with
 * symlinks) to a directory under the kubelet directory. */
static int check_target(const struct fy_agent *a, const char *t, char *why, size_t len)
{
	char parent[PATH_MAX], real[PATH_MAX], kd[PATH_MAX];
	size_t tl = strlen(t), kl;
	const char *slash;

	if (!tl) {
		snprintf(why, len, "target path is required");
		return -EINVAL;
	}
	if (t[0] != '/' || tl >= PATH_MAX - 1 || strstr(t, "//") || strstr(t, "/./") || strstr(t, "/../") ||
	    (tl >= 3 && !strcmp(t + tl - 3, "/..")) || (tl >= 2 && !strcmp(t + tl - 2, "/.")) || t[tl - 1] == '/') {
		snprintf(why, len, "target path '%.200s' is not an absolute, normalised path", t);
		return -EINVAL;
	}
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(why, len, "target path has a control character");
			return -EINVAL;
		}
	if (!realpath(a->conf.kubelet_dir, kd)) {
		snprintf(why, len, "the kubelet directory %s: %s", a->conf.kubelet_dir, strerror(errno));
		return -ENOENT;
	}
	slash = strrchr(t, '/');
	memcpy(parent, t, (size_t)(slash - t));
	parent[slash - t] = 0;
	if (!parent[0])
		strcpy(parent, "/");
	if (!realpath(parent, real)) {
		snprintf(why, len, "target path '%.200s': its directory does not exist: %s", t, strerror(errno));
		return errno == ENOENT ? -EINVAL : -errno;
	}
	kl = strlen(kd);
	if (strncmp(real, kd, kl) || (real[kl] != '/' && real[kl] != 0)) {
		snprintf(why, len, "target path '%.200s' is not under the kubelet directory %s", t, a->conf.kubelet_dir);
		return -EINVAL;
	}
	return 0;
}

static void node_publish(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__NodePublishVolumeRequest *req = (const Csi__V1__NodePublishVolumeRequest *)req_;
	struct fy_agent *a = ctx;
	const Csi__V1__VolumeCapability *cap = req->volume_capability;
	struct fy_cat_volume v;
	char why[768], img[1024], dev[64], fs[16], kind[16];
	const char *want_kind, *fstype;
	bool block, ro = req->readonly;
	pthread_mutex_t *vl;
	int ret;

	if (!req->volume_id || !*req->volume_id)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodePublishVolume: volume_id is required");
	if (!req->target_path || !*req->target_path)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodePublishVolume: target_path is required");
	if (!cap)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodePublishVolume: volume_capability is required");
	if (fy_check_capability(cap, why, sizeof(why)))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodePublishVolume: %s", why);
	if (!fy_safe_token(req->volume_id, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodePublishVolume: volume_id is not a valid id");
	if ((ret = check_target(a, req->target_path, why, sizeof(why))))
		return fy_rpc_fail(call, fy_errno_status(ret), "NodePublishVolume: %s", why);
	if (cap->access_mode->mode == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY)
		ro = true;
	block = cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
	want_kind = block ? "block" : "mount";

	vl = fy_stripe(a->vol_lock, req->volume_id);
	pthread_mutex_lock(vl);
	if (fy_cat_volume_get(a->cat, req->volume_id, &v)) {
		pthread_mutex_unlock(vl);
		return fy_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "NodePublishVolume: volume %s does not exist",
				   req->volume_id);
	}
	if (!fy_pub_kind(a, v.id, req->target_path, kind, sizeof(kind)) && strcmp(kind, want_kind)) {
		pthread_mutex_unlock(vl);
		return fy_rpc_fail(call, GRPC_STATUS_ALREADY_EXISTS,
				   "NodePublishVolume: %s is published at %s as %s, not %s", v.id, req->target_path, kind,
				   want_kind);
	}
	fy_vol_path(a, v.id, img, sizeof(img));
	/* A read-only block publish gets a read-only loop device of its own:
	 * a read-only bind mount of a device node does not stop writes. */
	ret = fy_loop_attach(img, block && ro, dev, sizeof(dev), why, sizeof(why));
	if (ret)
		goto fail;
	if (block) {
		ret = fy_bind_block(dev, req->target_path, ro, why, sizeof(why));
	} else {
		fstype = cap->mount && cap->mount->fs_type && *cap->mount->fs_type ? cap->mount->fs_type
			 : v.fstype[0] ? v.fstype : "ext4";
		ret = fy_fs_probe(dev, fs, sizeof(fs), why, sizeof(why));
		if (!ret && !fs[0]) {
			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = v.id },
				"NodePublishVolume %s: making %s on %s (first use)", v.id, fstype, dev);
			ret = fy_mkfs(dev, fstype, why, sizeof(why));
			snprintf(fs, sizeof(fs), "%s", fstype);
		} else if (!ret && strcmp(fs, fstype)) {
			snprintf(why, sizeof(why), "the volume holds %s, not the %s asked for", fs, fstype);
			ret = -EBUSY;
		}
		if (!ret) {
			/* XFS refuses a second filesystem with the same UUID: a
			 * volume cloned from a snapshot of a mounted volume has it. */
			size_t nf = cap->mount->n_mount_flags;
			const char **flags = calloc(nf + 1, sizeof(*flags));

			if (!flags) {
				ret = -ENOMEM;
				snprintf(why, sizeof(why), "out of memory");
			} else {
				for (size_t i = 0; i < nf; i++)
					flags[i] = cap->mount->mount_flags[i];
				if (!strcmp(fs, "xfs"))
					flags[nf++] = "nouuid";
				ret = fy_mount(dev, req->target_path, fs, flags, nf, ro, why, sizeof(why));
				free(flags);
			}
		}
	}
	if (!ret)
		ret = fy_pub_add(a, v.id, want_kind, req->target_path, dev);
	if (ret && fy_pub_dev_users(a, v.id, dev) == 0) {
		char e2[256];

		fy_loop_detach(dev, e2, sizeof(e2));
	}
fail:
	pthread_mutex_unlock(vl);
	if (ret == -EBUSY)
		return fy_rpc_fail(call, GRPC_STATUS_ALREADY_EXISTS, "NodePublishVolume %s at %s: %s", v.id,
				   req->target_path, why);
	if (ret)
		return fy_rpc_fail(call, ret == -EINVAL ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_INTERNAL,
				   "NodePublishVolume %s at %s: %s", v.id, req->target_path, why);
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = v.id }, "NodePublishVolume %s: %s at %s (%s%s)", v.id, dev,
		req->target_path, want_kind, ro ? ", read-only" : "");
	fy_rpc_reply(call, MSG(&(Csi__V1__NodePublishVolumeResponse)CSI__V1__NODE_PUBLISH_VOLUME_RESPONSE__INIT));
}

/* Is target a publish of v, ours to unmount and remove: recorded in its
 * publish registry, or (a publish whose record a crash lost) a mount of the
 * loop device v's image is bound to?  Anything else under the kubelet
 * directory (another volume's target, another driver's, the kubelet's own
 * files) is never touched. */
static bool published_here(struct fy_agent *a, const struct fy_cat_volume *v, const char *target)
{
	char kind[16], img[1024], dev[64], src[256];

	if (!fy_pub_kind(a, v->id, target, kind, sizeof(kind)))
		return true;
	fy_vol_path(a, v->id, img, sizeof(img));
	return fy_mountpoint(target, src, sizeof(src)) == 1 && !fy_loop_find(img, dev, sizeof(dev)) &&
	       !strcmp(src, dev);
}

static void node_unpublish(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__NodeUnpublishVolumeRequest *req = (const Csi__V1__NodeUnpublishVolumeRequest *)req_;
	struct fy_agent *a = ctx;
	struct fy_cat_volume v;
	char why[768], img[1024], dev[64];
	pthread_mutex_t *vl;
	int ret;

	if (!req->volume_id || !*req->volume_id)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodeUnpublishVolume: volume_id is required");
	if (!req->target_path || !*req->target_path)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodeUnpublishVolume: target_path is required");
	if (!fy_safe_token(req->volume_id, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodeUnpublishVolume: volume_id is not a valid id");
	if ((ret = check_target(a, req->target_path, why, sizeof(why))) && ret != -EINVAL)
		return fy_rpc_fail(call, fy_errno_status(ret), "NodeUnpublishVolume: %s", why);
	if (ret == -EINVAL && access(req->target_path, F_OK) == 0)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodeUnpublishVolume: %s", why);
	vl = fy_stripe(a->vol_lock, req->volume_id);
	pthread_mutex_lock(vl);
	if (fy_cat_volume_get(a->cat, req->volume_id, &v)) {
		pthread_mutex_unlock(vl);
		return fy_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "NodeUnpublishVolume: volume %s does not exist",
				   req->volume_id);
	}
	if (fy_pub_dev(a, v.id, req->target_path, dev, sizeof(dev)))
		dev[0] = 0;
	/* A target that cannot exist, or that is not this volume's, is not
	 * published here: nothing to undo (OK, as CSI wants it idempotent). */
	ret = ret || !published_here(a, &v, req->target_path) ? 0 : fy_unmount(req->target_path, why, sizeof(why));
	if (!ret)
		ret = fy_pub_remove(a, v.id, req->target_path);
	/* The loop device goes with its last target. */
	if (!ret && dev[0] && fy_pub_dev_users(a, v.id, dev) == 0)
		ret = fy_loop_detach(dev, why, sizeof(why));
	fy_vol_path(a, v.id, img, sizeof(img));
	for (int i = 0; !ret && i < 4 && fy_pub_count(a, v.id) == 0 && !fy_loop_find(img, dev, sizeof(dev)); i++)
		ret = fy_loop_detach(dev, why, sizeof(why)); /* one left behind by a crash */
	pthread_mutex_unlock(vl);
	if (ret)
		return fy_rpc_fail(call, fy_errno_status(ret), "NodeUnpublishVolume %s at %s: %s", v.id,
				   req->target_path, why);
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = v.id }, "NodeUnpublishVolume %s at %s", v.id,
		req->target_path);
	fy_rpc_reply(call, MSG(&(Csi__V1__NodeUnpublishVolumeResponse)CSI__V1__NODE_UNPUBLISH_VOLUME_RESPONSE__INIT));
}

static void node_get_volume_stats(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__NodeGetVolumeStatsRequest *req = (const Csi__V1__NodeGetVolumeStatsRequest *)req_;
	struct fy_agent *a = ctx;
	Csi__V1__NodeGetVolumeStatsResponse resp = CSI__V1__NODE_GET_VOLUME_STATS_RESPONSE__INIT;
	Csi__V1__VolumeUsage u[2], *up[2];
	Csi__V1__VolumeCondition cond = CSI__V1__VOLUME_CONDITION__INIT;
	struct fy_cat_volume v;
	char kind[16];
	struct statvfs sv;

	if (!req->volume_id || !*req->volume_id || !req->volume_path || !*req->volume_path)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
				   "NodeGetVolumeStats: volume_id and volume_path are required");
	if (!fy_safe_token(req->volume_id, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "NodeGetVolumeStats: volume_id is not a valid id");
	if (fy_cat_volume_get(a->cat, req->volume_id, &v))
		return fy_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "NodeGetVolumeStats: volume %s does not exist",
				   req->volume_id);
	if (fy_pub_kind(a, v.id, req->volume_path, kind, sizeof(kind)) || fy_mountpoint(req->volume_path, NULL, 0) != 1)
		return fy_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "NodeGetVolumeStats: %s is not published at %s", v.id,
				   req->volume_path);
	for (int i = 0; i < 2; i++) {
		csi__v1__volume_usage__init(&u[i]);
		up[i] = &u[i];
	}
	u[0].unit = CSI__V1__VOLUME_USAGE__UNIT__BYTES;
	if (!strcmp(kind, "block")) {
		u[0].total = (int64_t)v.size;
		resp.n_usage = 1;
	} else {
		if (statvfs(req->volume_path, &sv))
			return fy_rpc_fail(call, GRPC_STATUS_INTERNAL, "NodeGetVolumeStats: statvfs %s: %s",
					   req->volume_path, strerror(errno));
		u[0].total = (int64_t)((uint64_t)sv.f_blocks * sv.f_frsize);
		u[0].available = (int64_t)((uint64_t)sv.f_bavail * sv.f_frsize);
		u[0].used = (int64_t)((uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize);
		u[1].unit = CSI__V1__VOLUME_USAGE__UNIT__INODES;
		u[1].total = (int64_t)sv.f_files;
		u[1].available = (int64_t)sv.f_favail;
		u[1].used = (int64_t)(sv.f_files - sv.f_ffree);
		resp.n_usage = 2;
	}
	resp.usage = up;
	cond.abnormal = false;
	cond.message = (char *)"";
	resp.volume_condition = &cond;
	fy_rpc_reply(call, MSG(&resp));
}

static void node_get_capabilities(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	static const Csi__V1__NodeServiceCapability__RPC__Type types[] = {
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME_STATS,
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__VOLUME_CONDITION,
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__SINGLE_NODE_MULTI_WRITER,
	};
	enum { N = sizeof(types) / sizeof(types[0]) };
	Csi__V1__NodeGetCapabilitiesResponse resp = CSI__V1__NODE_GET_CAPABILITIES_RESPONSE__INIT;
	Csi__V1__NodeServiceCapability caps[N], *capp[N];
	Csi__V1__NodeServiceCapability__RPC rpc[N];

	(void)req;
	(void)ctx;
	for (size_t i = 0; i < N; i++) {
		csi__v1__node_service_capability__init(&caps[i]);
		csi__v1__node_service_capability__rpc__init(&rpc[i]);
		rpc[i].type = types[i];
		caps[i].type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
		caps[i].rpc = &rpc[i];
		capp[i] = &caps[i];
	}
	resp.n_capabilities = N;
	resp.capabilities = capp;
	fy_rpc_reply(call, MSG(&resp));
}

static void node_get_info(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	struct fy_agent *a = ctx;
	Csi__V1__NodeGetInfoResponse resp = CSI__V1__NODE_GET_INFO_RESPONSE__INIT;
	Csi__V1__Topology topo = CSI__V1__TOPOLOGY__INIT;
	Csi__V1__Topology__SegmentsEntry seg = CSI__V1__TOPOLOGY__SEGMENTS_ENTRY__INIT, *segp = &seg;

	(void)req;
	resp.node_id = a->conf.node_id;
	seg.key = (char *)FY_TOPOLOGY_KEY;
	seg.value = a->conf.node_id;
	topo.n_segments = 1;
	topo.segments = &segp;
	resp.accessible_topology = &topo;
	fy_rpc_reply(call, MSG(&resp));
}

const struct fy_rpc_method fy_node_methods[] = {
	{ "/csi.v1.Node/NodePublishVolume", &csi__v1__node_publish_volume_request__descriptor, node_publish, false },
	{ "/csi.v1.Node/NodeUnpublishVolume", &csi__v1__node_unpublish_volume_request__descriptor, node_unpublish,
	  false },
	{ "/csi.v1.Node/NodeGetVolumeStats", &csi__v1__node_get_volume_stats_request__descriptor, node_get_volume_stats,
	  false },
	{ "/csi.v1.Node/NodeGetCapabilities", &csi__v1__node_get_capabilities_request__descriptor,
	  node_get_capabilities, true },
	{ "/csi.v1.Node/NodeGetInfo", &csi__v1__node_get_info_request__descriptor, node_get_info, true },
};
const size_t fy_node_nmethods = sizeof(fy_node_methods) / sizeof(fy_node_methods[0]);
