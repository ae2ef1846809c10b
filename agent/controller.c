/* CSI Controller: volumes (sparse images under the state dir), capacity,
 * capabilities.  Snapshots are in snapshot.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent_priv.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"

#define MSG(x) ((const ProtobufCMessage *)(x))
#define MAP(x) ((struct fy_map_entry *const *)(x))
#define MIB (1ull << 20)

int fy_check_capability(const Csi__V1__VolumeCapability *c, char *why, size_t len)
{
	if (!c) {
		snprintf(why, len, "a volume capability is empty");
		return -EINVAL;
	}
	if (!c->access_mode) {
		snprintf(why, len, "a volume capability has no access mode");
		return -EINVAL;
	}
	switch (c->access_mode->mode) {
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER:
		break;
	default:
		snprintf(why, len, "access mode %d is not supported: ferry volumes are node-local "
			 "(SINGLE_NODE_* modes only)", (int)c->access_mode->mode);
		return -EINVAL;
	}
	switch (c->access_type_case) {
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK:
		return 0;
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT:
		if (c->mount && c->mount->fs_type && *c->mount->fs_type && strcmp(c->mount->fs_type, "ext4") &&
		    strcmp(c->mount->fs_type, "xfs")) {
			snprintf(why, len, "filesystem type '%.64s' is not supported (ext4 or xfs)", c->mount->fs_type);
			return -EINVAL;
		}
		for (size_t i = 0; c->mount && i < c->mount->n_mount_flags; i++)
			if (strpbrk(c->mount->mount_flags[i], ",\n")) {
				snprintf(why, len, "mount flag '%.64s' has a comma or newline", c->mount->mount_flags[i]);
				return -EINVAL;
			}
		return 0;
	default:
		snprintf(why, len, "a volume capability has neither block nor mount access");
		return -EINVAL;
	}
}

static bool topology_ours(const struct fy_agent *a, const Csi__V1__Topology *t)
{
	const char *v = fy_map_get(MAP(t->segments), t->n_segments, FY_TOPOLOGY_KEY);

	return v && !strcmp(v, a->conf.node_id);
}

/* The volume's response, with its content source and our topology. */
static void reply_volume(struct fy_rpc_call *call, const struct fy_agent *a, const struct fy_cat_volume *v)
{
	Csi__V1__CreateVolumeResponse resp = CSI__V1__CREATE_VOLUME_RESPONSE__INIT;
	Csi__V1__Volume vol = CSI__V1__VOLUME__INIT;
	Csi__V1__Topology topo = CSI__V1__TOPOLOGY__INIT, *topop = &topo;
	Csi__V1__Topology__SegmentsEntry seg = CSI__V1__TOPOLOGY__SEGMENTS_ENTRY__INIT, *segp = &seg;
	Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
	Csi__V1__VolumeContentSource__SnapshotSource ss = CSI__V1__VOLUME_CONTENT_SOURCE__SNAPSHOT_SOURCE__INIT;
	Csi__V1__VolumeContentSource__VolumeSource vs = CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;

	vol.capacity_bytes = (int64_t)v->size;
	vol.volume_id = (char *)v->id;
	seg.key = (char *)FY_TOPOLOGY_KEY;
	seg.value = (char *)a->conf.node_id;
	topo.n_segments = 1;
	topo.segments = &segp;
	vol.n_accessible_topology = 1;
	vol.accessible_topology = &topop;
	if (v->source_snapshot[0]) {
		ss.snapshot_id = (char *)v->source_snapshot;
		src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
		src.snapshot = &ss;
		vol.content_source = &src;
	} else if (v->source_volume[0]) {
		vs.volume_id = (char *)v->source_volume;
		src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
		src.volume = &vs;
		vol.content_source = &src;
	}
	resp.volume = &vol;
	fy_rpc_reply(call, MSG(&resp));
}

/* The Kubernetes names CreateVolume was given (PVC name and namespace, PV
 * name, with the provisioner's --extra-create-metadata) beside the image, in
 * "key=value" lines: every snapshot of the volume records them as labels. */
static int save_k8s_labels(struct fy_agent *a, const char *id, const Csi__V1__CreateVolumeRequest *req)
{
	char path[1024], tmp[1100];
	FILE *f;
	bool any = false;

	for (size_t i = 0; i < req->n_parameters; i++)
		any |= !strncmp(req->parameters[i]->key, FY_P_K8S_PREFIX, strlen(FY_P_K8S_PREFIX));
	if (!any)
		return 0;
	fy_vol_labels_path(a, id, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	for (size_t i = 0; i < req->n_parameters; i++) {
		const char *k = req->parameters[i]->key, *v = req->parameters[i]->value;

		if (!strncmp(k, FY_P_K8S_PREFIX, strlen(FY_P_K8S_PREFIX)) && !strpbrk(k, "=\n") && !strchr(v, '\n'))
			fprintf(f, "%s=%s\n", k, v);
	}
	if (fflush(f) || fsync(fileno(f))) {
		int e = -errno;

		fclose(f);
		unlink(tmp);
		return e;
	}
	fclose(f);
	return rename(tmp, path) ? -errno : 0;
}

void fy_volume_metrics(struct fy_agent *a, const struct fy_cat_volume *v)
{
	char path[1024], line[512], ns[FY_NAME_MAX + 1] = "", pvc[FY_NAME_MAX + 1] = "";
	FILE *f;

	fy_vol_labels_path(a, v->id, path, sizeof(path));
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '='), *nl = strchr(line, '\n');

		if (nl)
			*nl = 0;
		if (!eq)
			continue;
		*eq = 0;
		if (!strcmp(line, FY_P_K8S_PREFIX "pvc/namespace"))
			snprintf(ns, sizeof(ns), "%s", eq + 1);
		else if (!strcmp(line, FY_P_K8S_PREFIX "pvc/name"))
			snprintf(pvc, sizeof(pvc), "%s", eq + 1);
	}
	if (f)
		fclose(f);
	fy_metrics_volume(&(struct fy_metrics_volume){ .volume = v->id, .name = v->name, .size = v->size,
						       .pvc_namespace = ns[0] ? ns : NULL,
						       .pvc_name = pvc[0] ? pvc : NULL });
}

static void create_volume(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__CreateVolumeRequest *req = (const Csi__V1__CreateVolumeRequest *)req_;
	struct fy_agent *a = ctx;
	struct fy_cat_volume v, old;
	struct fy_cat_snapshot snap;
	struct fy_cat_volume srcvol;
	struct fy_found found = { 0 };
	bool from_repo = false;      /* a snapshot this node's catalog does not know */
	const char *src_snap = "", *src_vol = "";
	uint64_t size, need = 0, limit = 0, required = 0;
	char why[1024], path[1024], srcpath[1024];
	pthread_mutex_t *nl;
	bool reflinked;
	int ret;

	if (!req->name || !*req->name)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateVolume: name is required");
	if (strlen(req->name) > FY_NAME_MAX)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateVolume: name is longer than %d bytes",
				   FY_NAME_MAX);
	if (fy_has_control(req->name))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateVolume: name holds a control character");
	if (!req->n_volume_capabilities)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateVolume: volume_capabilities are required");
	for (size_t i = 0; i < req->n_volume_capabilities; i++)
		if (fy_check_capability(req->volume_capabilities[i], why, sizeof(why)))
			return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateVolume: %s", why);
	if (fy_check_map(MAP(req->parameters), req->n_parameters, 4096, "parameters", true, why, sizeof(why)) ||
	    fy_check_map(MAP(req->secrets), req->n_secrets, 4096, "secrets", false, why, sizeof(why)))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateVolume: %s", why);
	if (req->capacity_range) {
		if (req->capacity_range->required_bytes < 0 || req->capacity_range->limit_bytes < 0)
			return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateVolume: negative capacity_range");
		required = (uint64_t)req->capacity_range->required_bytes;
		limit = (uint64_t)req->capacity_range->limit_bytes;
		if (limit && limit < required)
			return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
					   "CreateVolume: limit_bytes %llu is below required_bytes %llu",
					   (unsigned long long)limit, (unsigned long long)required);
	}
	if (req->accessibility_requirements && req->accessibility_requirements->n_requisite) {
		bool ok = false;

		for (size_t i = 0; i < req->accessibility_requirements->n_requisite; i++)
			ok |= topology_ours(a, req->accessibility_requirements->requisite[i]);
		if (!ok)
			return fy_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
					   "CreateVolume: no requisite topology names this node (%s=%s)",
					   FY_TOPOLOGY_KEY, a->conf.node_id);
	}
	if (req->volume_content_source) {
		const Csi__V1__VolumeContentSource *cs = req->volume_content_source;

		if (cs->type_case == CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT && cs->snapshot) {
			src_snap = cs->snapshot->snapshot_id ? cs->snapshot->snapshot_id : "";
			if (!fy_safe_token(src_snap, FY_ID_MAX))
				return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
						   "CreateVolume: source snapshot id is not valid");
			if (!fy_cat_snap_get(a->cat, src_snap, &snap)) {
				if (snap.state != FY_SNAP_READY && !snap.local)
					return fy_rpc_fail(call, GRPC_STATUS_UNAVAILABLE,
							   "CreateVolume: snapshot %s is not ready yet", src_snap);
				need = snap.size;
			} else if (!fy_cat_volume_by_name(a->cat, req->name, &old) &&
				   !strcmp(old.source_snapshot, src_snap)) {
				from_repo = true; /* a retry: the volume exists (answered below) */
			} else {
				/* Another node's, or another cluster's: from a repository. */
				from_repo = true;
				ret = fy_lookup_snapshot(a, src_snap, MAP(req->parameters), req->n_parameters,
							 MAP(req->secrets), req->n_secrets, &found, why, sizeof(why));
				if (ret)
					return fy_rpc_fail(call, fy_lookup_status(ret), "CreateVolume: %s", why);
				need = found.m->size;
			}
		} else if (cs->type_case == CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME && cs->volume) {
			src_vol = cs->volume->volume_id ? cs->volume->volume_id : "";
			if (!fy_safe_token(src_vol, FY_ID_MAX))
				return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
						   "CreateVolume: source volume id is not valid");
			if (fy_cat_volume_get(a->cat, src_vol, &srcvol))
				return fy_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "CreateVolume: volume %s does not exist",
						   src_vol);
			need = srcvol.size;
		} else {
			return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
					   "CreateVolume: volume_content_source names neither a snapshot nor a volume");
		}
	}
	size = required ? required : need ? need : a->conf.default_size;
	if (size < need)
		size = need;
	size = (size + MIB - 1) / MIB * MIB;
	if (limit && size > limit)
		size = limit / 4096 * 4096;
	if (size < need || size < required || !size) {
		fy_found_free(&found);
		return fy_rpc_fail(call, GRPC_STATUS_OUT_OF_RANGE,
				   "CreateVolume: the source needs %llu bytes, more than limit_bytes %llu allows",
				   (unsigned long long)need, (unsigned long long)limit);
	}

	nl = fy_stripe(a->name_lock, req->name);
	pthread_mutex_lock(nl);
	if (!fy_cat_volume_by_name(a->cat, req->name, &old)) {
		pthread_mutex_unlock(nl);
		fy_found_free(&found);
		if ((required && old.size < required) || (limit && old.size > limit) ||
		    strcmp(old.source_snapshot, src_snap) || strcmp(old.source_volume, src_vol))
			return fy_rpc_fail(call, GRPC_STATUS_ALREADY_EXISTS,
					   "CreateVolume: volume '%s' exists (%s) with another size or source", req->name,
					   old.id);
		return reply_volume(call, a, &old);
	}
	if (from_repo && !found.repo) {
		/* The volume this retry was answered by went meanwhile. */
		pthread_mutex_unlock(nl);
		return fy_rpc_fail(call, GRPC_STATUS_ABORTED, "CreateVolume '%s': the volume was deleted while this "
				   "call ran: call again", req->name);
	}
	memset(&v, 0, sizeof(v));
	if (fy_new_id("vol", v.id, sizeof(v.id))) {
		pthread_mutex_unlock(nl);
		fy_found_free(&found);
		return fy_rpc_fail(call, GRPC_STATUS_INTERNAL, "CreateVolume: no random bytes for an id");
	}
	snprintf(v.name, sizeof(v.name), "%s", req->name);
	v.size = size;
	v.created_ns = fy_now_ns();
	snprintf(v.source_snapshot, sizeof(v.source_snapshot), "%s", src_snap);
	snprintf(v.source_volume, sizeof(v.source_volume), "%s", src_vol);
	const Csi__V1__VolumeCapability *c0 = req->volume_capabilities[0];
	v.access = c0->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK ? FY_ACCESS_BLOCK
											: FY_ACCESS_MOUNT;
	if (v.access == FY_ACCESS_MOUNT && c0->mount && c0->mount->fs_type)
		snprintf(v.fstype, sizeof(v.fstype), "%s", c0->mount->fs_type);
	fy_vol_path(a, v.id, path, sizeof(path));
	if (from_repo) {
		char what[700], hex[2 * FY_SNAP_ID_LEN + 1];

		fy_hex(found.rid, FY_SNAP_ID_LEN, hex);
		snprintf(what, sizeof(what), "%s from %.500s (%s)", src_snap, found.shown, hex);
		ret = fy_snapshot_restore_repo(found.repo, found.rid, what, v.id, src_snap, path, why, sizeof(why));
		fy_found_free(&found);
	} else if (*src_snap) {
		ret = fy_snapshot_materialise(a, &snap, v.id, path, MAP(req->secrets), req->n_secrets, why,
					      sizeof(why));
	} else if (*src_vol) {
		fy_vol_path(a, src_vol, srcpath, sizeof(srcpath));
		ret = fy_img_clone(srcpath, path, &reflinked, why, sizeof(why));
	} else {
		ret = fy_img_create(path, size, why, sizeof(why));
	}
	if (!ret && (*src_snap || *src_vol))
		ret = fy_img_grow(path, size, why, sizeof(why));
	if (!ret)
		ret = save_k8s_labels(a, v.id, req);
	if (!ret)
		ret = fy_cat_volume_put(a->cat, &v, why, sizeof(why));
	pthread_mutex_unlock(nl);
	if (ret) {
		char e2[256];

		fy_img_remove(path, e2, sizeof(e2));
		fy_vol_labels_path(a, v.id, path, sizeof(path));
		unlink(path);
		return fy_rpc_fail(call, fy_errno_status(ret), "CreateVolume '%s': %s", req->name, why);
	}
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = v.id, .snapshot = *src_snap ? src_snap : NULL },
		"CreateVolume '%s': %s, %llu bytes%s%s", v.name, v.id, (unsigned long long)v.size,
		*src_snap ? " from snapshot " : *src_vol ? " from volume " : "", *src_snap ? src_snap : src_vol);
	fy_volume_metrics(a, &v);
	reply_volume(call, a, &v);
}

/* Is the volume published?  Detach its idle loop device. */
static int release_volume(struct fy_agent *a, const struct fy_cat_volume *v, const char *img, char *why, size_t len)
{
	char dev[64];
	int n = fy_pub_count(a, v->id);

	if (n < 0) {
		snprintf(why, len, "its publish registry: %s", strerror(-n));
		return n;
	}
	if (n > 0) {
		snprintf(why, len, "it is published at %d target%s: unpublish first", n, n > 1 ? "s" : "");
		return -EBUSY;
	}
	for (int i = 0; i < 4 && !fy_loop_find(img, dev, sizeof(dev)); i++) { /* read-write and read-only */
		int ret = fy_loop_detach(dev, why, len);

		if (ret)
			return ret;
	}
	return 0;
}

static void delete_volume(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__DeleteVolumeRequest *req = (const Csi__V1__DeleteVolumeRequest *)req_;
	struct fy_agent *a = ctx;
	struct fy_cat_volume v;
	char why[512], path[1024];
	pthread_mutex_t *vl;
	int ret;

	if (!req->volume_id || !*req->volume_id)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "DeleteVolume: volume_id is required");
	if (!fy_safe_token(req->volume_id, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "DeleteVolume: volume_id is not a valid id");
	vl = fy_stripe(a->vol_lock, req->volume_id);
	pthread_mutex_lock(vl);
	if (fy_cat_volume_get(a->cat, req->volume_id, &v)) {
		pthread_mutex_unlock(vl);
		fy_rpc_reply(call, MSG(&(Csi__V1__DeleteVolumeResponse)CSI__V1__DELETE_VOLUME_RESPONSE__INIT));
		return;
	}
	fy_vol_path(a, v.id, path, sizeof(path));
	ret = release_volume(a, &v, path, why, sizeof(why));
	if (!ret)
		ret = fy_img_remove(path, why, sizeof(why));
	if (!ret) {
		fy_vol_labels_path(a, v.id, path, sizeof(path));
		unlink(path);
		fy_pub_clear(a, v.id);
		ret = fy_cat_volume_delete(a->cat, v.id, why, sizeof(why));
	}
	pthread_mutex_unlock(vl);
	if (ret)
		return fy_rpc_fail(call, ret == -EBUSY ? GRPC_STATUS_FAILED_PRECONDITION : fy_errno_status(ret),
				   "DeleteVolume %s: %s", v.id, why);
	fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .volume = v.id }, "DeleteVolume %s ('%s')", v.id, v.name);
	fy_metrics_volume_gone(v.id);
	fy_rpc_reply(call, MSG(&(Csi__V1__DeleteVolumeResponse)CSI__V1__DELETE_VOLUME_RESPONSE__INIT));
}

static void validate_volume_capabilities(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__ValidateVolumeCapabilitiesRequest *req = (const Csi__V1__ValidateVolumeCapabilitiesRequest *)req_;
	struct fy_agent *a = ctx;
	Csi__V1__ValidateVolumeCapabilitiesResponse resp = CSI__V1__VALIDATE_VOLUME_CAPABILITIES_RESPONSE__INIT;
	Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed conf =
		CSI__V1__VALIDATE_VOLUME_CAPABILITIES_RESPONSE__CONFIRMED__INIT;
	struct fy_cat_volume v;
	char why[512];

	if (!req->volume_id || !*req->volume_id)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "ValidateVolumeCapabilities: volume_id is required");
	if (!req->n_volume_capabilities)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
				   "ValidateVolumeCapabilities: volume_capabilities are required");
	if (!fy_safe_token(req->volume_id, FY_ID_MAX))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
				   "ValidateVolumeCapabilities: volume_id is not a valid id");
	if (fy_cat_volume_get(a->cat, req->volume_id, &v))
		return fy_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "ValidateVolumeCapabilities: volume %s does not exist",
				   req->volume_id);
	for (size_t i = 0; i < req->n_volume_capabilities; i++)
		if (fy_check_capability(req->volume_capabilities[i], why, sizeof(why))) {
			resp.message = why;
			return fy_rpc_reply(call, MSG(&resp));
		}
	conf.n_volume_capabilities = req->n_volume_capabilities;
	conf.volume_capabilities = req->volume_capabilities;
	resp.confirmed = &conf;
	fy_rpc_reply(call, MSG(&resp));
}

static void controller_get_capabilities(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	static const Csi__V1__ControllerServiceCapability__RPC__Type types[] = {
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_VOLUME,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_SNAPSHOTS,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__GET_CAPACITY,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__SINGLE_NODE_MULTI_WRITER,
	};
	enum { N = sizeof(types) / sizeof(types[0]) };
	Csi__V1__ControllerGetCapabilitiesResponse resp = CSI__V1__CONTROLLER_GET_CAPABILITIES_RESPONSE__INIT;
	Csi__V1__ControllerServiceCapability caps[N], *capp[N];
	Csi__V1__ControllerServiceCapability__RPC rpc[N];

	(void)req;
	(void)ctx;
	for (size_t i = 0; i < N; i++) {
		csi__v1__controller_service_capability__init(&caps[i]);
		csi__v1__controller_service_capability__rpc__init(&rpc[i]);
		rpc[i].type = types[i];
		caps[i].type_case = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__TYPE_RPC;
		caps[i].rpc = &rpc[i];
		capp[i] = &caps[i];
	}
	resp.n_capabilities = N;
	resp.capabilities = capp;
	fy_rpc_reply(call, MSG(&resp));
}

static void get_capacity(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__GetCapacityRequest *req = (const Csi__V1__GetCapacityRequest *)req_;
	struct fy_agent *a = ctx;
	Csi__V1__GetCapacityResponse resp = CSI__V1__GET_CAPACITY_RESPONSE__INIT;
	char why[512];
	struct statvfs sv;

	for (size_t i = 0; i < req->n_volume_capabilities; i++)
		if (fy_check_capability(req->volume_capabilities[i], why, sizeof(why)))
			return fy_rpc_reply(call, MSG(&resp)); /* none for what we cannot serve */
	if (req->accessible_topology && !topology_ours(a, req->accessible_topology))
		return fy_rpc_reply(call, MSG(&resp));
	if (statvfs(a->vol_dir, &sv))
		return fy_rpc_fail(call, GRPC_STATUS_INTERNAL, "GetCapacity: statvfs %s: %s", a->vol_dir, strerror(errno));
	resp.available_capacity = (int64_t)((uint64_t)sv.f_bavail * sv.f_frsize);
	fy_rpc_reply(call, MSG(&resp));
}

void fy_create_snapshot(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx);
void fy_delete_snapshot(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx);
void fy_list_snapshots(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx);

const struct fy_rpc_method fy_controller_methods[] = {
	{ "/csi.v1.Controller/CreateVolume", &csi__v1__create_volume_request__descriptor, create_volume, false },
	{ "/csi.v1.Controller/DeleteVolume", &csi__v1__delete_volume_request__descriptor, delete_volume, false },
	{ "/csi.v1.Controller/ValidateVolumeCapabilities", &csi__v1__validate_volume_capabilities_request__descriptor,
	  validate_volume_capabilities, true },
	{ "/csi.v1.Controller/ControllerGetCapabilities", &csi__v1__controller_get_capabilities_request__descriptor,
	  controller_get_capabilities, true },
	{ "/csi.v1.Controller/GetCapacity", &csi__v1__get_capacity_request__descriptor, get_capacity, true },
	{ "/csi.v1.Controller/CreateSnapshot", &csi__v1__create_snapshot_request__descriptor, fy_create_snapshot, false },
	{ "/csi.v1.Controller/DeleteSnapshot", &csi__v1__delete_snapshot_request__descriptor, fy_delete_snapshot, false },
	{ "/csi.v1.Controller/ListSnapshots", &csi__v1__list_snapshots_request__descriptor, fy_list_snapshots, true },
};
const size_t fy_controller_nmethods = sizeof(fy_controller_methods) / sizeof(fy_controller_methods[0]);
