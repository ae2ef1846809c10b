/* Manifests: one sealed object per snapshot, the commit point of a backup. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/repo.h"

#define MANIFEST_MAX (1u << 30) /* 1 GiB of manifest: a 128 PiB volume at 4 MiB blocks */

int fy_manifest_write(struct fy_repo *r, const Ferry__V1__Manifest *m, char *err, size_t errlen)
{
	size_t len = ferry__v1__manifest__get_packed_size(m);
	uint8_t *plain = malloc(len ? len : 1), *obj = malloc(FY_OBJ_MAX(len));
	char key[64];
	int rc = -ENOMEM;

	if (!plain || !obj || m->snapshot_id.len != FY_SNAP_ID_LEN) {
		snprintf(err, errlen, "writing the manifest: %s", plain && obj ? "bad id" : "out of memory");
		rc = plain && obj ? -EINVAL : -ENOMEM;
		goto out;
	}
	ferry__v1__manifest__pack(m, plain);
	ssize_t n = fy_obj_seal(r, "FYM1", m->snapshot_id.data, FY_SNAP_ID_LEN, plain, len,
				fy_crc32c(0, plain, len), 1, obj);
	if (n < 0) {
		rc = (int)n;
		snprintf(err, errlen, "sealing the manifest: %s", strerror(-rc));
		goto out;
	}
	fy_snap_key(m->snapshot_id.data, key);
	rc = fy_store_put(r->store, key, obj, (size_t)n, FY_PUT_DURABLE | FY_PUT_NOREPLACE);
	if (rc < 0)
		snprintf(err, errlen, "writing manifest %s to %s: %s", key, r->url, strerror(-rc));
out:
	free(plain);
	free(obj);
	return rc;
}

static int valid_manifest(const Ferry__V1__Manifest *m, const uint8_t id[FY_SNAP_ID_LEN], char *why, size_t whylen)
{
	if (m->snapshot_id.len != FY_SNAP_ID_LEN || memcmp(m->snapshot_id.data, id, FY_SNAP_ID_LEN) != 0) {
		snprintf(why, whylen, "it names another snapshot id");
		return -EBADMSG;
	}
	if (m->chunk_size < FY_MIN_CHUNK || m->chunk_size > FY_MAX_CHUNK || (m->chunk_size & (m->chunk_size - 1))) {
		snprintf(why, whylen, "invalid chunk size %u", m->chunk_size);
		return -EBADMSG;
	}
	/* ceil(size / chunk_size) without size + chunk_size - 1, which wraps
	 * for a size near 2^64 into a table of no blocks at all. */
	uint64_t n = m->size / m->chunk_size + (m->size % m->chunk_size != 0);

	if (m->chunk_ids.len != n * FY_ID_LEN || m->n_block_crc32c != n) {
		snprintf(why, whylen, "block table does not match the volume size (%llu blocks expected)",
			 (unsigned long long)n);
		return -EBADMSG;
	}
	return 0;
}

int fy_manifest_decode(const struct fy_repo *r, const uint8_t id[FY_SNAP_ID_LEN], void *obj, size_t objlen,
		       Ferry__V1__Manifest **out, char *err, size_t errlen)
{
	char why[160], hex[2 * FY_SNAP_ID_LEN + 1];
	uint8_t *plain = NULL, *scratch = NULL;
	int rc = 0;

	fy_hex(id, FY_SNAP_ID_LEN, hex);
	/* The plain length is in the header; bound it before allocating. */
	size_t cap = objlen >= FY_OBJ_HDR_LEN ? ((uint8_t *)obj)[8] | ((uint8_t *)obj)[9] << 8 |
						       ((uint8_t *)obj)[10] << 16 | (size_t)((uint8_t *)obj)[11] << 24
					      : 0;
	if (cap > MANIFEST_MAX)
		cap = 0;
	plain = malloc(cap ? cap : 1);
	scratch = malloc(cap ? cap : 1);
	if (!plain || !scratch) {
		rc = -ENOMEM;
		snprintf(err, errlen, "reading manifest snapshots/%s: out of memory", hex);
		goto out;
	}
	ssize_t n = fy_obj_open(r, "FYM1", id, FY_SNAP_ID_LEN, obj, objlen, plain, cap, scratch, why, sizeof(why));

	if (n < 0) {
		rc = (int)n;
		snprintf(err, errlen, "manifest of snapshot %s is corrupt: %s", hex, why);
		goto out;
	}
	Ferry__V1__Manifest *m = ferry__v1__manifest__unpack(NULL, (size_t)n, plain);

	if (!m) {
		rc = -EBADMSG;
		snprintf(err, errlen, "manifest of snapshot %s is corrupt: it does not decode", hex);
		goto out;
	}
	rc = valid_manifest(m, id, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "manifest of snapshot %s is corrupt: %s", hex, why);
		ferry__v1__manifest__free_unpacked(m, NULL);
		goto out;
	}
	*out = m;
out:
	free(plain);
	free(scratch);
	return rc;
}

int fy_manifest_read(struct fy_repo *r, const uint8_t id[FY_SNAP_ID_LEN], Ferry__V1__Manifest **out,
		     char *err, size_t errlen)
{
	char key[64];
	void *obj = NULL;
	size_t objlen = 0;
	int rc;

	fy_snap_key(id, key);
	rc = fy_store_get(r->store, key, 0, SIZE_MAX, &obj, &objlen);
	if (rc == -ENOENT) {
		char hex[2 * FY_SNAP_ID_LEN + 1];

		fy_hex(id, FY_SNAP_ID_LEN, hex);
		snprintf(err, errlen, "snapshot %s not found: its manifest %s is missing", hex, key);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "reading manifest %s: %s", key, strerror(-rc));
		return rc;
	}
	rc = fy_manifest_decode(r, id, obj, objlen, out, err, errlen);
	free(obj);
	return rc;
}

struct id_list {
	uint8_t *ids;
	size_t n, cap;
};

static int collect_snap(const char *key, uint64_t size, void *arg)
{
	struct id_list *l = arg;
	const char *name = key + strlen("snapshots/");

	(void)size;
	if (strlen(name) != 2 * FY_SNAP_ID_LEN)
		return 0; /* not ours */
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		uint8_t *p = realloc(l->ids, cap * FY_SNAP_ID_LEN);

		if (!p)
			return -ENOMEM;
		l->ids = p;
		l->cap = cap;
	}
	if (fy_unhex(name, l->ids + l->n * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN) == 0)
		l->n++;
	return 0;
}

int fy_snapshot_ids(struct fy_repo *r, uint8_t **ids, size_t *n, char *err, size_t errlen)
{
	struct id_list l = { 0 };
	int rc = fy_repo_list(r, "snapshots/", collect_snap, &l, err, errlen);

	if (rc < 0) {
		free(l.ids);
		return rc;
	}
	*ids = l.ids;
	*n = l.n;
	return 0;
}

int fy_snapshot_newest(struct fy_repo *r, const char *volume, uint8_t id[FY_SNAP_ID_LEN],
		       Ferry__V1__Manifest **keep, char *err, size_t errlen)
{
	uint8_t *ids = NULL;
	size_t n = 0;
	int64_t best = INT64_MIN;
	bool found = false;
	int rc = fy_snapshot_ids(r, &ids, &n, err, errlen);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		Ferry__V1__Manifest *m;
		char e2[256];

		/* An unreadable manifest is no candidate; check reports it. */
		if (fy_manifest_read(r, ids + i * FY_SNAP_ID_LEN, &m, e2, sizeof(e2)) < 0)
			continue;
		if ((!volume || strcmp(m->volume, volume) == 0) && m->created_unix_nano > best) {
			best = m->created_unix_nano;
			memcpy(id, ids + i * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN);
			found = true;
			if (keep) {
				if (*keep)
					ferry__v1__manifest__free_unpacked(*keep, NULL);
				*keep = m; /* the best so far: kept, not read again by the caller */
				continue;
			}
		}
		ferry__v1__manifest__free_unpacked(m, NULL);
	}
	free(ids);
	if (!found) {
		if (volume)
			snprintf(err, errlen, "no snapshot of volume %s in %s", volume, r->url);
		else
			snprintf(err, errlen, "no readable snapshot in %s", r->url);
		return -ENOENT;
	}
	return 0;
}
