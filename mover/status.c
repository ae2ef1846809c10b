/* Drill records and status (ferry_drill.h): what `ferry status` and the
 * agent read to show RPO and RTO per volume and repository.
 *
 * A record is drills/<tag>/<id> (docs/FORMAT.md, "Drill records"): tag is
 * the first 16 bytes of HMAC-SHA256(id key, "ferry-drill-volume" 0x00
 * volume), so the key does not reveal the volume's name; id is the drill's
 * start time (8 bytes, big-endian nanoseconds) and 8 random bytes, so the
 * keys of one volume sort by time.  Sealed with magic FYD1, named by the 32
 * bytes tag || id: a record cannot be moved to another volume or renamed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_drill.h"

#define TAG_LEN 16
#define RID_LEN 16
#define RECORD_MAX (64 * 1024)
#define READ_MAX 64 /* records read per volume, newest first, looking for one that passed */

static void volume_tag(const struct fy_repo *r, const char *volume, uint8_t tag[TAG_LEN])
{
	static const char dom[] = "ferry-drill-volume"; /* and its NUL */
	size_t vl = strlen(volume);
	uint8_t *buf = malloc(sizeof(dom) + vl), id[FY_ID_LEN];

	if (!buf) {
		memset(tag, 0, TAG_LEN);
		return;
	}
	memcpy(buf, dom, sizeof(dom));
	memcpy(buf + sizeof(dom), volume, vl);
	fy_chunk_id(r->id_key, buf, sizeof(dom) + vl, id);
	memcpy(tag, id, TAG_LEN);
	free(buf);
}

static void folder_of(const uint8_t tag[TAG_LEN], char out[64])
{
	char hex[2 * TAG_LEN + 1];

	fy_hex(tag, TAG_LEN, hex);
	snprintf(out, 64, "drills/%s/", hex);
}

/* Keys of a volume's folder that are record names, newest first. */
static int by_key_desc(const void *a, const void *b)
{
	return strcmp(*(char *const *)b, *(char *const *)a);
}

static int list_records(struct fy_repo *r, const char *folder, struct fy_store_keys *keys, char *err,
			size_t errlen)
{
	int rc = fy_store_keys(r->store, folder, keys);
	size_t k = 0, fl = strlen(folder);
	uint8_t rid[RID_LEN];

	if (rc == -ENOENT) { /* no drill recorded yet: drills/ is made by the first */
		fy_store_keys_free(keys);
		return 0;
	}
	if (rc < 0) {
		snprintf(err, errlen, "listing %s of %s: %s", folder, r->url, fy_store_strerror(rc));
		fy_store_keys_free(keys);
		return rc;
	}
	for (size_t i = 0; i < keys->n; i++) {
		const char *name = keys->keys[i] + fl;

		if (strncmp(keys->keys[i], folder, fl) || strlen(name) != 2 * RID_LEN || fy_unhex(name, rid, RID_LEN) ||
		    strspn(name, "0123456789abcdef") != 2 * RID_LEN) {
			free(keys->keys[i]); /* not a record's name: not ours */
			continue;
		}
		keys->keys[k++] = keys->keys[i];
	}
	keys->n = k;
	if (keys->n > 1)
		qsort(keys->keys, keys->n, sizeof(*keys->keys), by_key_desc);
	return 0;
}

int fy_drill_record_write(struct fy_repo *r, const struct fy_drill_result *res, unsigned keep, char *warn,
			  size_t warnlen, char *err, size_t errlen)
{
	Ferry__V1__DrillRecord rec = FERRY__V1__DRILL_RECORD__INIT;
	uint8_t name[TAG_LEN + RID_LEN], *plain = NULL, *obj = NULL;
	char host[256] = "", folder[64], hex[2 * RID_LEN + 1], key[128];
	struct fy_store_keys keys = { 0 };
	uint64_t t = (uint64_t)res->started_unix_nano;
	size_t len;
	int rc;

	if (warn && warnlen)
		warn[0] = '\0';
	if (!res->volume) {
		snprintf(err, errlen, "drill record: the drill has no volume (it failed before reading the snapshot)");
		return -EINVAL;
	}
	gethostname(host, sizeof(host) - 1);
	rec.snapshot_id.data = (uint8_t *)res->snapshot_id;
	rec.snapshot_id.len = FY_SNAP_ID_LEN;
	rec.volume = res->volume;
	rec.snapshot_created_unix_nano = res->snapshot_unix_nano;
	rec.started_unix_nano = res->started_unix_nano;
	rec.size = res->size;
	rec.bytes = res->bytes;
	rec.restore_nano = (uint64_t)(res->restore_seconds * 1e9);
	rec.verify_nano = (uint64_t)(res->verify_seconds * 1e9);
	rec.check_ran = res->check_ran;
	rec.check_status = res->check_status;
	rec.check_timed_out = res->check_timed_out;
	rec.check_nano = (uint64_t)(res->check_seconds * 1e9);
	rec.ok = res->ok;
	rec.stage = (char *)(res->stage ? res->stage : "");
	rec.reason = (char *)res->reason;
	rec.hostname = host;
	volume_tag(r, res->volume, name);
	for (int i = 0; i < 8; i++)
		name[TAG_LEN + i] = (uint8_t)(t >> (56 - 8 * i));
	fy_random(name + TAG_LEN + 8, 8);
	len = ferry__v1__drill_record__get_packed_size(&rec);
	plain = malloc(len ? len : 1);
	obj = malloc(FY_OBJ_MAX(len));
	if (!plain || !obj) {
		rc = -ENOMEM;
		snprintf(err, errlen, "drill record: out of memory");
		goto out;
	}
	ferry__v1__drill_record__pack(&rec, plain);
	ssize_t n = fy_obj_seal(r, "FYD1", name, sizeof(name), plain, len, fy_crc32c(0, plain, len), 1, obj);

	if (n < 0) {
		rc = (int)n;
		snprintf(err, errlen, "sealing the drill record: %s", strerror(-rc));
		goto out;
	}
	folder_of(name, folder);
	fy_hex(name + TAG_LEN, RID_LEN, hex);
	snprintf(key, sizeof(key), "%s%s", folder, hex);
	rc = fy_store_put(r->store, key, obj, (size_t)n, FY_PUT_DURABLE | FY_PUT_NOREPLACE);
	if (rc < 0) {
		snprintf(err, errlen, "writing the drill record %s to %s: %s", key, r->url, fy_store_strerror(rc));
		goto out;
	}
	/* The volume's older records beyond keep go; one still under Object
	 * Lock stays until its retention passes. */
	char lerr[256];

	if (list_records(r, folder, &keys, lerr, sizeof(lerr)) < 0) {
		if (warn)
			snprintf(warn, warnlen, "the record is stored, but old records were not removed: %s", lerr);
		goto out;
	}
	for (size_t i = keep ? keep : FY_DRILL_KEEP; i < keys.n; i++) {
		int64_t until;
		int d;

		if (fy_store_retention(r->store, keys.keys[i], &until) == 1)
			continue;
		d = fy_store_del(r->store, keys.keys[i]);
		if (d < 0 && d != -ENOENT && warn && !warn[0])
			snprintf(warn, warnlen, "the record is stored, but an old record %s was not removed: %s",
				 keys.keys[i], fy_store_strerror(d));
	}
out:
	fy_store_keys_free(&keys);
	free(plain);
	free(obj);
	return rc;
}

int fy_drill_record_decode(const struct fy_repo *r, const uint8_t name[32], const char *volume, void *obj,
			   size_t objlen, struct fy_drill_record *out, char *why, size_t whylen)
{
	uint8_t *plain = malloc(RECORD_MAX), *scratch = malloc(RECORD_MAX);
	char w2[160];
	int rc;

	if (!plain || !scratch) {
		rc = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	ssize_t n = fy_obj_open(r, "FYD1", name, TAG_LEN + RID_LEN, obj, objlen, plain, RECORD_MAX, scratch, w2,
				sizeof(w2));

	if (n < 0) {
		rc = (int)n;
		snprintf(why, whylen, "%s", w2);
		goto out;
	}
	Ferry__V1__DrillRecord *rec = ferry__v1__drill_record__unpack(NULL, (size_t)n, plain);

	if (!rec) {
		rc = -EBADMSG;
		snprintf(why, whylen, "it does not decode");
		goto out;
	}
	if (!rec->volume || strcmp(rec->volume, volume) || rec->snapshot_id.len != FY_SNAP_ID_LEN) {
		rc = -EBADMSG;
		snprintf(why, whylen, "it names another volume or no snapshot");
		ferry__v1__drill_record__free_unpacked(rec, NULL);
		goto out;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out->snapshot_id, rec->snapshot_id.data, FY_SNAP_ID_LEN);
	out->snapshot_unix_nano = rec->snapshot_created_unix_nano;
	out->started_unix_nano = rec->started_unix_nano;
	out->size = rec->size;
	out->bytes = rec->bytes;
	out->restore_seconds = rec->restore_nano / 1e9;
	out->verify_seconds = rec->verify_nano / 1e9;
	out->check_seconds = rec->check_nano / 1e9;
	out->check_ran = rec->check_ran;
	out->check_status = rec->check_status;
	out->check_timed_out = rec->check_timed_out;
	out->ok = rec->ok;
	snprintf(out->stage, sizeof(out->stage), "%s", rec->stage ? rec->stage : "");
	snprintf(out->reason, sizeof(out->reason), "%s", rec->reason ? rec->reason : "");
	snprintf(out->hostname, sizeof(out->hostname), "%s", rec->hostname ? rec->hostname : "");
	ferry__v1__drill_record__free_unpacked(rec, NULL);
	rc = 0;
out:
	free(plain);
	free(scratch);
	return rc;
}

/* Read and open one record; 0, or -errno with why. */
static int record_read(struct fy_repo *r, const char *key, const uint8_t tag[TAG_LEN], const char *volume,
		       struct fy_drill_record *out, char *why, size_t whylen)
{
	uint8_t name[TAG_LEN + RID_LEN];
	void *obj = NULL;
	size_t objlen = 0;
	char w2[200];
	int rc;

	memcpy(name, tag, TAG_LEN);
	if (fy_unhex(strrchr(key, '/') + 1, name + TAG_LEN, RID_LEN) < 0)
		return -EINVAL;
	rc = fy_store_get(r->store, key, 0, SIZE_MAX, &obj, &objlen);
	if (rc < 0) {
		snprintf(why, whylen, "reading drill record %s: %s", key, fy_store_strerror(rc));
		return rc;
	}
	rc = fy_drill_record_decode(r, name, volume, obj, objlen, out, w2, sizeof(w2));
	if (rc < 0)
		snprintf(why, whylen, "drill record %s is corrupt: %s", key, w2);
	free(obj);
	return rc;
}

/* The newest record of the volume and the newest that passed. */
static int volume_drills(struct fy_repo *r, struct fy_volume_status *v)
{
	struct fy_store_keys keys = { 0 };
	uint8_t tag[TAG_LEN];
	char folder[64];
	int rc;

	volume_tag(r, v->volume, tag);
	folder_of(tag, folder);
	rc = list_records(r, folder, &keys, v->record_error, sizeof(v->record_error));
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < keys.n && i < READ_MAX && !v->have_ok_drill; i++) {
		struct fy_drill_record rec;
		char why[256];

		if (record_read(r, keys.keys[i], tag, v->volume, &rec, why, sizeof(why)) < 0) {
			if (!v->bad_records++)
				snprintf(v->record_error, sizeof(v->record_error), "%s", why);
			continue;
		}
		if (!v->have_drill) {
			v->drill = rec;
			v->have_drill = true;
		}
		if (rec.ok) {
			v->ok_drill = rec;
			v->have_ok_drill = true;
		}
	}
	fy_store_keys_free(&keys);
	return 0;
}

static int by_volume(const void *a, const void *b)
{
	return strcmp(((const struct fy_volume_status *)a)->volume, ((const struct fy_volume_status *)b)->volume);
}

int fy_status_read(struct fy_repo *r, const char *volume, struct fy_status *st, char *err, size_t errlen)
{
	uint8_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc;

	memset(st, 0, sizeof(*st));
	rc = fy_snapshot_ids(r, &ids, &n, err, errlen);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		Ferry__V1__Manifest *m;
		struct fy_volume_status *v = NULL;
		char e2[256];

		if (fy_manifest_read(r, ids + i * FY_SNAP_ID_LEN, &m, e2, sizeof(e2)) < 0) {
			st->unreadable++;
			continue;
		}
		if (volume && strcmp(volume, m->volume)) {
			ferry__v1__manifest__free_unpacked(m, NULL);
			continue;
		}
		for (size_t k = 0; k < st->n && !v; k++)
			if (!strcmp(st->v[k].volume, m->volume))
				v = &st->v[k];
		if (!v) {
			if (st->n == cap) {
				size_t nc = cap ? 2 * cap : 8;
				struct fy_volume_status *nv = realloc(st->v, nc * sizeof(*nv));

				if (!nv) {
					ferry__v1__manifest__free_unpacked(m, NULL);
					rc = -ENOMEM;
					break;
				}
				st->v = nv;
				cap = nc;
			}
			v = &st->v[st->n];
			memset(v, 0, sizeof(*v));
			v->volume = strdup(m->volume);
			if (!v->volume) {
				ferry__v1__manifest__free_unpacked(m, NULL);
				rc = -ENOMEM;
				break;
			}
			v->snapshot_unix_nano = INT64_MIN;
			st->n++;
		}
		v->snapshots++;
		if (m->created_unix_nano > v->snapshot_unix_nano) {
			memcpy(v->snapshot_id, m->snapshot_id.data, FY_SNAP_ID_LEN);
			v->snapshot_unix_nano = m->created_unix_nano;
			v->size = m->size;
			v->bytes = fy_manifest_data_bytes(m);
		}
		ferry__v1__manifest__free_unpacked(m, NULL);
	}
	free(ids);
	if (rc < 0) {
		snprintf(err, errlen, "reading the snapshots of %s: out of memory", r->url);
		fy_status_free(st);
		return rc;
	}
	if (st->n)
		qsort(st->v, st->n, sizeof(*st->v), by_volume);
	/* A volume's records that cannot be listed are said in its row; the
	 * snapshots still are. */
	for (size_t k = 0; k < st->n; k++)
		volume_drills(r, &st->v[k]);
	return 0;
}

void fy_status_free(struct fy_status *st)
{
	for (size_t k = 0; k < st->n; k++)
		free(st->v[k].volume);
	free(st->v);
	memset(st, 0, sizeof(*st));
}

bool fy_rto(const struct fy_volume_status *v, double *measured, double *estimate)
{
	const struct fy_drill_record *d = &v->ok_drill;

	if (!v->have_ok_drill)
		return false;
	*measured = d->restore_seconds;
	/* The same throughput over the data of the newest snapshot. */
	*estimate = d->bytes && v->bytes ? d->restore_seconds * ((double)v->bytes / (double)d->bytes) :
		    d->restore_seconds;
	return true;
}
