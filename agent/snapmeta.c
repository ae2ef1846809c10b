/* CSI SnapshotMetadata: the allocated ranges of a snapshot and the ranges
 * that changed between two snapshots of one volume, streamed.  Computed from
 * metadata only: the clones' extent maps while both are on this node, else
 * the manifests in the repository (block granularity).  Never from data. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_priv.h"
#include "ferry.h"
#include "image.h"
#include "log.h"

#define MSG(x) ((const ProtobufCMessage *)(x))
#define MAP(x) ((struct fy_map_entry *const *)(x))
#define DEFAULT_RESULTS 256
#define MAX_RESULTS 65536

/* Stream ranges in messages of at most max tuples, then end the call. */
static void stream(struct fy_rpc_call *call, bool delta, const struct fy_range *r, size_t n, uint64_t capacity,
		   int32_t max)
{
	size_t per = max > 0 ? (size_t)max : DEFAULT_RESULTS;
	Csi__V1__BlockMetadata *bm;
	Csi__V1__BlockMetadata **bmp;

	if (per > MAX_RESULTS)
		per = MAX_RESULTS;
	bm = calloc(per, sizeof(*bm));
	bmp = calloc(per, sizeof(*bmp));
	if (!bm || !bmp) {
		free(bm);
		free(bmp);
		return fy_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; i < per; i++) {
		csi__v1__block_metadata__init(&bm[i]);
		bmp[i] = &bm[i];
	}
	/* An empty result is still one message: it carries the capacity. */
	for (size_t at = 0; at < n || (at == 0 && n == 0); ) {
		Csi__V1__GetMetadataAllocatedResponse ra = CSI__V1__GET_METADATA_ALLOCATED_RESPONSE__INIT;
		Csi__V1__GetMetadataDeltaResponse rd = CSI__V1__GET_METADATA_DELTA_RESPONSE__INIT;
		size_t k = n - at < per ? n - at : per;

		for (size_t i = 0; i < k; i++) {
			bm[i].byte_offset = (int64_t)r[at + i].off;
			bm[i].size_bytes = (int64_t)r[at + i].len;
		}
		ra.block_metadata_type = rd.block_metadata_type = CSI__V1__BLOCK_METADATA_TYPE__VARIABLE_LENGTH;
		ra.volume_capacity_bytes = rd.volume_capacity_bytes = (int64_t)capacity;
		ra.n_block_metadata = rd.n_block_metadata = k;
		ra.block_metadata = rd.block_metadata = bmp;
		if (fy_rpc_send(call, delta ? MSG(&rd) : MSG(&ra))) {
			free(bm);
			free(bmp);
			return fy_rpc_fail(call, GRPC_STATUS_CANCELLED, "the stream was cancelled");
		}
		at += k;
		if (!n)
			break;
	}
	free(bm);
	free(bmp);
	fy_rpc_end(call);
}

/* Ranges of a manifest's blocks: the allocated ones (a non-zero chunk id). */
static int manifest_allocated(const Ferry__V1__Manifest *m, uint64_t from, struct fy_range **out, size_t *nout)
{
	static const uint8_t zero[FY_ID_LEN];
	uint64_t cs = m->chunk_size, nb = cs ? (m->size + cs - 1) / cs : 0;
	struct fy_range *r = NULL;
	size_t n = 0, cap = 0;

	for (uint64_t i = 0; i < nb; i++) {
		uint64_t off = i * cs, end = off + cs > m->size ? m->size : off + cs;

		if (end <= from || (i + 1) * FY_ID_LEN > m->chunk_ids.len ||
		    !memcmp(m->chunk_ids.data + i * FY_ID_LEN, zero, FY_ID_LEN))
			continue;
		if (off < from)
			off = from;
		if (n && r[n - 1].off + r[n - 1].len == off) {
			r[n - 1].len += end - off;
			continue;
		}
		if (n == cap) {
			struct fy_range *g = realloc(r, (cap = cap ? 2 * cap : 64) * sizeof(*r));

			if (!g) {
				free(r);
				return -ENOMEM;
			}
			r = g;
		}
		r[n++] = (struct fy_range){ off, end - off };
	}
	*out = r;
	*nout = n;
	return 0;
}

/* Cut ranges to start at or after from. */
static void clip(struct fy_range *r, size_t *n, uint64_t from)
{
	size_t k = 0;

	for (size_t i = 0; i < *n; i++) {
		uint64_t end = r[i].off + r[i].len;

		if (end <= from)
			continue;
		if (r[i].off < from)
			r[i] = (struct fy_range){ from, end - from };
		r[k++] = r[i];
	}
	*n = k;
}

/* Check an id: 0, or the call failed. */
static int check_id(struct fy_rpc_call *call, const char *what, const char *id)
{
	if (!id || !*id) {
		fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s is required", what);
		return -1;
	}
	if (!fy_safe_token(id, FY_ID_MAX)) {
		fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s is not a valid id", what);
		return -1;
	}
	return 0;
}

/* A snapshot this node's catalog does not know, from the repositories
 * (lookup.c): the allocated chunks of its manifest. */
static void allocated_from_repositories(struct fy_rpc_call *call, struct fy_agent *a,
					const Csi__V1__GetMetadataAllocatedRequest *req)
{
	struct fy_found f;
	struct fy_range *r = NULL;
	size_t n = 0;
	uint64_t size;
	char why[1024];
	int ret;

	ret = fy_lookup_snapshot(a, req->snapshot_id, NULL, 0, MAP(req->secrets), req->n_secrets, &f, why,
				 sizeof(why));
	if (ret)
		return fy_rpc_fail(call, fy_lookup_status(ret), "GetMetadataAllocated: %s", why);
	size = f.m->size;
	if ((uint64_t)req->starting_offset >= size) {
		fy_found_free(&f);
		return fy_rpc_fail(call, GRPC_STATUS_OUT_OF_RANGE,
				   "GetMetadataAllocated: starting_offset %lld is past the snapshot's end (%llu bytes)",
				   (long long)req->starting_offset, (unsigned long long)size);
	}
	ret = manifest_allocated(f.m, (uint64_t)req->starting_offset, &r, &n);
	fy_found_free(&f);
	if (ret)
		return fy_rpc_fail(call, fy_errno_status(ret), "GetMetadataAllocated %s: %s", req->snapshot_id,
				   strerror(-ret));
	stream(call, false, r, n, size, req->max_results);
	free(r);
}

static void get_allocated(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__GetMetadataAllocatedRequest *req = (const Csi__V1__GetMetadataAllocatedRequest *)req_;
	struct fy_agent *a = ctx;
	struct fy_cat_snapshot s;
	struct fy_range *r = NULL;
	size_t n = 0;
	char path[1024], why[768];
	int ret;

	if (check_id(call, "snapshot_id", req->snapshot_id))
		return;
	if (req->max_results < 0 || req->starting_offset < 0)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "GetMetadataAllocated: negative %s",
				   req->max_results < 0 ? "max_results" : "starting_offset");
	if (fy_cat_snap_get(a->cat, req->snapshot_id, &s))
		return allocated_from_repositories(call, a, req);
	if ((uint64_t)req->starting_offset >= s.size)
		return fy_rpc_fail(call, GRPC_STATUS_OUT_OF_RANGE,
				   "GetMetadataAllocated: starting_offset %lld is past the snapshot's end (%llu bytes)",
				   (long long)req->starting_offset, (unsigned long long)s.size);
	fy_snap_path(a, s.id, path, sizeof(path));
	if (s.local) {
		ret = fy_img_allocated(path, (uint64_t)req->starting_offset, &r, &n, why, sizeof(why));
	} else {
		struct fy_repo *repo;
		Ferry__V1__Manifest *m;
		uint8_t id[FY_SNAP_ID_LEN];

		ret = fy_snapshot_repo(a, &s, MAP(req->secrets), req->n_secrets, &repo, why, sizeof(why));
		if (!ret) {
			fy_unhex(s.repo_snapshot, id, sizeof(id));
			ret = fy_manifest_read(repo, id, &m, why, sizeof(why));
			if (!ret) {
				ret = manifest_allocated(m, (uint64_t)req->starting_offset, &r, &n);
				ferry__v1__manifest__free_unpacked(m, NULL);
			}
			fy_repo_close(repo);
		}
	}
	if (ret) {
		free(r);
		return fy_rpc_fail(call, ret == -ENOENT ? GRPC_STATUS_FAILED_PRECONDITION : fy_errno_status(ret),
				   "GetMetadataAllocated %s: %s", s.id, why);
	}
	stream(call, false, r, n, s.size, req->max_results);
	free(r);
}

/* The primary repository's URL of a snapshot of this node ("" if none). */
static void repo_url(struct fy_agent *a, const char *id, char *url, size_t len)
{
	struct fy_kv *kv = NULL;
	size_t n = 0;

	url[0] = 0;
	if (fy_cat_snap_params(a->cat, id, &kv, &n))
		return;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kv[i].key, FY_P_REPO))
			snprintf(url, len, "%s", kv[i].value);
	fy_kv_free(kv, n);
}

/* One side of a delta answered from a repository. */
struct side {
	const char *id;
	bool in_catalog;
	struct fy_cat_snapshot cat;
	const char *volume;
	uint64_t size;
	uint8_t rid[FY_SNAP_ID_LEN];
};

/* A delta where this node's catalog lacks one snapshot or both: from the
 * manifests of the repository that holds the target, which must hold the
 * base too (the same repository, or a copy of it). */
static void delta_from_repositories(struct fy_rpc_call *call, struct fy_agent *a,
				    const Csi__V1__GetMetadataDeltaRequest *req, struct side *base, struct side *target)
{
	struct fy_found f = { 0 };
	Ferry__V1__Manifest *bm = NULL;
	struct fy_diff_result d;
	struct fy_range *r;
	size_t n;
	char why[1024], url[2048] = "", shown[512] = "";
	int ret;

	/* The target, and the repository it is in (none: a snapshot of this
	 * node not uploaded yet). */
	if (!target->in_catalog) {
		ret = fy_lookup_snapshot(a, target->id, NULL, 0, MAP(req->secrets), req->n_secrets, &f, why,
					 sizeof(why));
		if (ret)
			return fy_rpc_fail(call, fy_lookup_status(ret), "GetMetadataDelta: target: %s", why);
		memcpy(target->rid, f.rid, sizeof(target->rid));
		snprintf(url, sizeof(url), "%s", f.url);
		snprintf(shown, sizeof(shown), "%s", f.shown);
		target->volume = f.m->volume;
		target->size = f.m->size;
	} else {
		target->volume = target->cat.volume_id;
		target->size = target->cat.size;
		if (target->cat.repo_snapshot[0]) {
			ret = fy_snapshot_repo(a, &target->cat, MAP(req->secrets), req->n_secrets, &f.repo, why,
					       sizeof(why));
			if (ret)
				return fy_rpc_fail(call, ret == -ENOENT ? GRPC_STATUS_FAILED_PRECONDITION
									: fy_errno_status(ret),
						   "GetMetadataDelta %s..%s: %s", base->id, target->id, why);
			fy_unhex(target->cat.repo_snapshot, target->rid, sizeof(target->rid));
			repo_url(a, target->id, url, sizeof(url));
			fy_url_shown(url, shown, sizeof(shown));
		}
	}
	/* The base, in that repository. */
	if (!base->in_catalog) {
		ret = f.repo ? fy_lookup_in(a, f.repo, url, base->id, base->rid, &bm, why, sizeof(why)) : -ENOENT;
		if (ret == -ENOENT) {
			struct fy_found g;
			grpc_status_code code;

			/* Elsewhere?  Then the two cannot be compared; nowhere: NOT_FOUND. */
			ret = fy_lookup_snapshot(a, base->id, NULL, 0, MAP(req->secrets), req->n_secrets, &g, why,
						 sizeof(why));
			if (!ret && f.repo)
				snprintf(why, sizeof(why), "base %s is in %.400s, target %s in %.400s: a delta needs both "
					 "in one repository", base->id, g.shown, target->id, shown);
			else if (!ret)
				snprintf(why, sizeof(why), "target %s is on this node but not uploaded yet, base %s only "
					 "in %.400s: a delta between them needs both in one repository", target->id,
					 base->id, g.shown);
			code = ret ? fy_lookup_status(ret) : f.repo ? GRPC_STATUS_INVALID_ARGUMENT
							: GRPC_STATUS_FAILED_PRECONDITION;
			if (!ret)
				fy_found_free(&g);
			fy_found_free(&f);
			return fy_rpc_fail(call, code, "GetMetadataDelta: %s%s", ret ? "base: " : "", why);
		}
		if (ret) {
			fy_found_free(&f);
			return fy_rpc_fail(call, fy_lookup_status(ret), "GetMetadataDelta: base %s: %s", base->id, why);
		}
		base->volume = bm->volume;
	} else {
		base->volume = base->cat.volume_id;
		if (!base->cat.repo_snapshot[0] || !f.repo) {
			fy_found_free(&f);
			return fy_rpc_fail(call, GRPC_STATUS_FAILED_PRECONDITION,
					   "GetMetadataDelta %s..%s: %s is on this node but not uploaded yet, and %s is "
					   "not on this node: a delta between them needs both in a repository", base->id,
					   target->id, base->cat.repo_snapshot[0] ? target->id : base->id,
					   base->cat.repo_snapshot[0] ? base->id : target->id);
		}
		fy_unhex(base->cat.repo_snapshot, base->rid, sizeof(base->rid));
	}
	if (strcmp(base->volume, target->volume)) {
		ret = -EINVAL;
		snprintf(why, sizeof(why), "%s and %s are snapshots of different volumes", base->id, target->id);
	} else if ((uint64_t)req->starting_offset >= target->size) {
		ret = -ERANGE;
		snprintf(why, sizeof(why), "starting_offset %lld is past the snapshot's end (%llu bytes)",
			 (long long)req->starting_offset, (unsigned long long)target->size);
	} else {
		ret = fy_diff(f.repo, base->rid, target->rid, &d, why, sizeof(why));
		if (ret == -ENOENT && base->in_catalog) {
			/* This node's base went to another repository. */
			ret = -EINVAL;
			snprintf(why, sizeof(why), "base %s was uploaded elsewhere than target %s (in %.400s): a delta "
				 "needs both in one repository", base->id, target->id, shown);
		}
	}
	if (bm)
		ferry__v1__manifest__free_unpacked(bm, NULL);
	fy_found_free(&f);
	if (ret)
		return fy_rpc_fail(call, fy_errno_status(ret), "GetMetadataDelta %s..%s: %s", base->id, target->id,
				   why);
	r = d.ranges;
	n = d.nranges;
	clip(r, &n, (uint64_t)req->starting_offset);
	stream(call, true, r, n, target->size, req->max_results);
	free(r);
}

static void get_delta(struct fy_rpc_call *call, const ProtobufCMessage *req_, void *ctx)
{
	const Csi__V1__GetMetadataDeltaRequest *req = (const Csi__V1__GetMetadataDeltaRequest *)req_;
	struct fy_agent *a = ctx;
	struct side bs = { .id = req->base_snapshot_id }, ts = { .id = req->target_snapshot_id };
	struct fy_cat_snapshot base, target;
	struct fy_range *r = NULL;
	size_t n = 0;
	char bpath[1024], tpath[1024], why[768] = "";
	int ret = -EOPNOTSUPP;

	if (check_id(call, "base_snapshot_id", req->base_snapshot_id) ||
	    check_id(call, "target_snapshot_id", req->target_snapshot_id))
		return;
	if (req->max_results < 0 || req->starting_offset < 0)
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "GetMetadataDelta: negative %s",
				   req->max_results < 0 ? "max_results" : "starting_offset");
	bs.in_catalog = !fy_cat_snap_get(a->cat, bs.id, &bs.cat);
	ts.in_catalog = !fy_cat_snap_get(a->cat, ts.id, &ts.cat);
	if (!bs.in_catalog || !ts.in_catalog)
		return delta_from_repositories(call, a, req, &bs, &ts);
	base = bs.cat;
	target = ts.cat;
	if (strcmp(base.volume_id, target.volume_id))
		return fy_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
				   "GetMetadataDelta: %s and %s are snapshots of different volumes", base.id, target.id);
	if ((uint64_t)req->starting_offset >= target.size)
		return fy_rpc_fail(call, GRPC_STATUS_OUT_OF_RANGE,
				   "GetMetadataDelta: starting_offset %lld is past the snapshot's end (%llu bytes)",
				   (long long)req->starting_offset, (unsigned long long)target.size);
	fy_snap_path(a, base.id, bpath, sizeof(bpath));
	fy_snap_path(a, target.id, tpath, sizeof(tpath));
	if (base.local && target.local)
		ret = fy_img_delta(bpath, tpath, (uint64_t)req->starting_offset, &r, &n, why, sizeof(why));
	if (ret == -EOPNOTSUPP && base.repo_snapshot[0] && target.repo_snapshot[0]) {
		struct fy_repo *repo;
		struct fy_diff_result d;
		uint8_t ia[FY_SNAP_ID_LEN], ib[FY_SNAP_ID_LEN];

		if (why[0])
			fy_log_info("GetMetadataDelta: %s; from the manifests instead", why);
		ret = fy_snapshot_repo(a, &target, MAP(req->secrets), req->n_secrets, &repo, why, sizeof(why));
		if (!ret) {
			fy_unhex(base.repo_snapshot, ia, sizeof(ia));
			fy_unhex(target.repo_snapshot, ib, sizeof(ib));
			ret = fy_diff(repo, ia, ib, &d, why, sizeof(why));
			fy_repo_close(repo);
			if (!ret) {
				r = d.ranges;
				n = d.nranges;
				clip(r, &n, (uint64_t)req->starting_offset);
			}
		}
	} else if (ret == -EOPNOTSUPP && !why[0]) {
		snprintf(why, sizeof(why), "%s is no longer on this node and not in a repository",
			 base.local ? target.id : base.id);
	}
	if (ret) {
		free(r);
		return fy_rpc_fail(call, ret == -EOPNOTSUPP || ret == -ENOENT ? GRPC_STATUS_FAILED_PRECONDITION
									      : fy_errno_status(ret),
				   "GetMetadataDelta %s..%s: %s", base.id, target.id, why);
	}
	stream(call, true, r, n, target.size, req->max_results);
	free(r);
}

const struct fy_rpc_method fy_snapmeta_methods[] = {
	{ "/csi.v1.SnapshotMetadata/GetMetadataAllocated", &csi__v1__get_metadata_allocated_request__descriptor,
	  get_allocated, false },
	{ "/csi.v1.SnapshotMetadata/GetMetadataDelta", &csi__v1__get_metadata_delta_request__descriptor, get_delta,
	  false },
};
const size_t fy_snapmeta_nmethods = sizeof(fy_snapmeta_methods) / sizeof(fy_snapmeta_methods[0]);
