/* Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/):
 * small valid inputs, in each target's input format (docs/fuzzing.md), made
 * with ferry's own encoders so that they stay true to the formats:
 *   cmake --build build-fuzz --target fuzz_corpus
 * Sealed objects hold a random nonce, so the seeds that are whole sealed
 * objects change with every run; every other seed comes out the same. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec/codec.h"
#include "csi.pb-c.h"
#include "csi_fixture.h"
#include "fuzz.h"
#include "repo/lock.h"

static const char *root;

static void seed(const char *target, const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, target);
	if (mkdir(path, 0755) && errno != EEXIST)
		fz_fail("mkdir %s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) || fclose(f))
		fz_fail("writing %s: %s", path, strerror(errno));
}

/* A seed of one flags byte (or method byte) and a packed message. */
static void seed_msg(const char *target, const char *name, uint8_t first, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len + 1);

	if (!buf)
		fz_fail("out of memory");
	protobuf_c_message_pack(m, buf);
	seed(target, name, &first, 1, buf, len);
	free(buf);
}

static void seed_text(const char *target, const char *name, const void *head, size_t hlen, const char *text)
{
	seed(target, name, head, hlen, text, strlen(text));
}

/* ---- objects, chunks, deflate ---- */

static const char text[] = "ferry backs up node-local block volumes to a repository, incrementally "
			   "deduplicated, checksummed, compressed and encrypted, and restores them byte-identical. "
			   "ferry backs up node-local block volumes to a repository.";

static void objects(void)
{
	struct fy_repo r;
	uint8_t obj[FY_OBJ_MAX(sizeof(text))], name[FY_ID_LEN], flags;
	ssize_t n;

	memset(name, 0xa5, sizeof(name));
	for (int enc = 0; enc < 2; enc++)
		for (int kind = 0; kind < 3; kind++) {
			static const char *const magic[] = { "FYC1", "FYM1", "FYL1" };
			static const size_t namelen[] = { FY_ID_LEN, FY_SNAP_ID_LEN, 16 };
			char nm[64];

			fz_repo(&r, enc, true);
			n = fy_obj_seal(&r, magic[kind], name, namelen[kind], text, sizeof(text) - 1,
					fy_crc32c(0, text, sizeof(text) - 1), 1, obj);
			if (n < 0)
				fz_fail("fy_obj_seal: %zd", n);
			flags = (uint8_t)(enc | kind << 1);
			snprintf(nm, sizeof(nm), "%s-%s", magic[kind], enc ? "sealed" : "plain");
			seed("fuzz_object", nm, &flags, 1, obj, (size_t)n);
		}
	flags = 0;
	seed("fuzz_object", "short", &flags, 1, "FYC1\x01", 5);
}

static void chunks(void)
{
	uint8_t head[9], out[sizeof(text)];
	uint32_t plen = sizeof(text) - 1, crc = fy_crc32c(0, text, plen);
	ssize_t c = fy_deflate(1, text, plen, out, sizeof(out));

	if (c < 0)
		fz_fail("fy_deflate: %zd", c);
	memcpy(head + 1, &plen, 4);
	memcpy(head + 5, &crc, 4);
	for (int enc = 0; enc < 2; enc++) {
		head[0] = (uint8_t)(1 | enc << 1);
		seed("fuzz_chunk", enc ? "deflated-sealed" : "deflated-plain", head, 9, out, (size_t)c);
		head[0] = (uint8_t)(enc << 1 | 4);
		seed("fuzz_chunk", enc ? "raw-sealed" : "raw-plain", head, 9, text, plen);
	}
	/* A stored deflate block: 01 LEN NLEN bytes. */
	uint8_t stored[5 + 16] = { 1, 16, 0, 0xef, 0xff };

	memcpy(stored + 5, "sixteen bytes!!!", 16);
	plen = 16;
	crc = fy_crc32c(0, stored + 5, 16);
	memcpy(head + 1, &plen, 4);
	memcpy(head + 5, &crc, 4);
	head[0] = 1 | 2;
	seed("fuzz_chunk", "stored-block", head, 9, stored, sizeof(stored));
}

static void deflates(void)
{
	/* level, room, then segments: kind, length / 8 (2 bytes), what it needs. */
	static const uint8_t text_only[] = { 1, 0, 0, 0x20, 0x00, 'h', 'e', 'l', 'l', 'o', ' ', 'f', 'e', 'r', 'r', 'y' };
	static const uint8_t mixed[] = {
		1, 0,
		1, 0x00, 0x20, 0x12, 0x34, 0x56, 0x78,      /* 64 KiB of noise */
		0, 0x00, 0x20, 't', 'e', 'x', 't', ' ',     /* 64 KiB of text */
		1, 0x00, 0x20, 0x9a, 0xbc, 0xde, 0xf0,      /* 64 KiB of noise */
		3, 0x00, 0x10, 0x00, 0x20,                  /* a copy from 64 KiB back */
	};
	static const uint8_t noise_tail[] = { 3, 0, 1, 0x00, 0x40, 1, 2, 3, 4, 2, 0x80, 0x00, 0 };
	static const uint8_t zeros[] = { 2, 0, 2, 0x00, 0x01, 0 };
	static const uint8_t tight[] = { 1, 128, 0, 0x00, 0x02, 'a', 'b', 'c', 'a', 'b', 'd' };

	seed("fuzz_deflate", "text", text_only, sizeof(text_only), NULL, 0);
	seed("fuzz_deflate", "noise-text-noise-copy", mixed, sizeof(mixed), NULL, 0);
	seed("fuzz_deflate", "noise-then-tail", noise_tail, sizeof(noise_tail), NULL, 0);
	seed("fuzz_deflate", "zeros", zeros, sizeof(zeros), NULL, 0);
	seed("fuzz_deflate", "half-room", tight, sizeof(tight), NULL, 0);
}

/* ---- manifests, config, keys, locks ---- */

static void manifests(void)
{
	Ferry__V1__Manifest m = FERRY__V1__MANIFEST__INIT;
	Ferry__V1__BackupStats st = FERRY__V1__BACKUP_STATS__INIT;
	Ferry__V1__Manifest__LabelsEntry l = FERRY__V1__MANIFEST__LABELS_ENTRY__INIT, *lp = &l;
	uint8_t ids[3 * FY_ID_LEN], parent[FY_SNAP_ID_LEN];
	uint32_t crcs[3] = { 0x11111111, 0x22222222, 0x33333333 };

	memset(ids, 0, sizeof(ids));
	memset(ids + FY_ID_LEN, 0xab, FY_ID_LEN);
	memset(parent, 0x77, sizeof(parent));
	m.format_version = FY_FORMAT_VERSION;
	m.snapshot_id.data = (uint8_t *)fz_snap_id;
	m.snapshot_id.len = FY_SNAP_ID_LEN;
	m.volume = (char *)"pg-data";
	m.size = 2 * FY_MIN_CHUNK + 4096;
	m.chunk_size = FY_MIN_CHUNK;
	m.created_unix_nano = 1700000000000000000;
	m.hostname = (char *)"node-1";
	m.source = (char *)"/dev/vdb";
	m.chunk_ids.data = ids;
	m.chunk_ids.len = sizeof(ids);
	m.n_block_crc32c = 3;
	m.block_crc32c = crcs;
	for (uint8_t f = 0; f < 4; f++) {
		char nm[32];

		snprintf(nm, sizeof(nm), "full-flags%u", f);
		seed_msg("fuzz_manifest", nm, f, &m.base);
	}
	l.key = (char *)"app";
	l.value = (char *)"postgres";
	m.n_labels = 1;
	m.labels = &lp;
	st.bytes_read = 3 << 20;
	st.change_source = (char *)"manifest-scan";
	m.stats = &st;
	m.parent_id.data = parent;
	m.parent_id.len = sizeof(parent);
	m.source_inode = 12345;
	seed_msg("fuzz_manifest", "incremental-labels-stats", 3, &m.base);
	m.size = 0;
	m.chunk_ids.len = 0;
	m.n_block_crc32c = 0;
	seed_msg("fuzz_manifest", "empty-volume", 1, &m.base);
}

static void configs(void)
{
	uint8_t buf[512];
	size_t n;
	Ferry__V1__RepoConfig *c;

	n = fz_config_object(true, buf, sizeof(buf));
	seed("fuzz_config", "encrypted", buf, n, NULL, 0);
	n = fz_config_object(false, buf, sizeof(buf));
	seed("fuzz_config", "unencrypted", buf, n, NULL, 0);
	c = ferry__v1__repo_config__unpack(NULL, n, buf);
	c->chunk_size = FY_MAX_CHUNK;
	c->compression = FERRY__V1__COMPRESSION__COMPRESSION_NONE;
	c->compression_level = 0;
	c->encryption = FERRY__V1__ENCRYPTION__ENCRYPTION_AES256_GCM;
	n = ferry__v1__repo_config__pack(c, buf);
	ferry__v1__repo_config__free_unpacked(c, NULL);
	seed("fuzz_config", "16m-uncompressed", buf, n, NULL, 0);

	n = fz_key_object(FERRY__V1__KDF__KDF_RAW, buf, sizeof(buf));
	seed("fuzz_keyfile", "raw", (uint8_t[]){ 0 }, 1, buf, n);
	n = fz_key_object(FERRY__V1__KDF__KDF_SCRYPT, buf, sizeof(buf));
	seed("fuzz_keyfile", "scrypt", (uint8_t[]){ 1 }, 1, buf, n);
	n = fz_key_object(FERRY__V1__KDF__KDF_NONE, buf, sizeof(buf));
	seed("fuzz_keyfile", "none-unencrypted", (uint8_t[]){ 2 }, 1, buf, n);
}

static void locks(void)
{
	Ferry__V1__Lock l = FERRY__V1__LOCK__INIT;

	l.exclusive = false;
	l.command = (char *)"backup";
	l.hostname = (char *)"node-1";
	l.pid = 4242;
	l.created_unix_nano = 1700000000000000000;
	l.refreshed_unix_nano = 1700000000000000000;
	l.pid_namespace = (char *)"pid:[4026531836]";
	seed_msg("fuzz_lock", "shared-stale", 0, &l.base);
	l.exclusive = true;
	l.command = (char *)"prune";
	l.refreshed_unix_nano = INT64_MAX;
	seed_msg("fuzz_lock", "exclusive-fresh-plain", 2, &l.base);
	seed_msg("fuzz_lock", "exclusive-fresh-deflate", 4, &l.base);
	seed_msg("fuzz_lock", "bad-name", 8, &l.base);
	seed_msg("fuzz_lock", "raw-object", 1, &l.base);
}

static void drill_records(void)
{
	Ferry__V1__DrillRecord d = FERRY__V1__DRILL_RECORD__INIT;

	d.snapshot_id.data = (uint8_t *)fz_snap_id;
	d.snapshot_id.len = FY_SNAP_ID_LEN;
	d.volume = (char *)"pg-data";
	d.snapshot_created_unix_nano = 1700000000000000000;
	d.started_unix_nano = 1700000100000000000;
	d.size = 64 << 20;
	d.bytes = 28 << 20;
	d.restore_nano = 81000000;
	d.verify_nano = 80000000;
	d.check_ran = true;
	d.check_nano = 31000000;
	d.ok = true;
	d.hostname = (char *)"node-1";
	for (uint8_t f = 0; f < 4; f++) {
		char nm[32];

		snprintf(nm, sizeof(nm), "passed-flags%u", f);
		seed_msg("fuzz_drill_record", nm, f, &d.base);
	}
	d.ok = false;
	d.check_status = 4;
	d.stage = (char *)"check";
	d.reason = (char *)"the check 'fsck -n {}' on /dev/loop0 exited with status 4";
	seed_msg("fuzz_drill_record", "failed-check", 1, &d.base);
	seed_msg("fuzz_drill_record", "another-volume", 5, &d.base);
}

/* ---- ranges, S3 XML ---- */

static void ranges(void)
{
	uint8_t head[12];
	uint64_t size = 64ull << 20;
	uint32_t cs = 4u << 20;

	memcpy(head, &size, 8);
	memcpy(head + 8, &cs, 4);
	seed_text("fuzz_ranges", "plain", head, 12, "0 4096\n4194304 8192\n67100000 8864\n");
	seed_text("fuzz_ranges", "hex-comments-crlf", head, 12,
		  "# ferry diff\r\n0x0 0x1000\r\n\t 0X400000   0x2000 \r\n\r\n# end\r\n");
	seed_text("fuzz_ranges", "overlapping", head, 12, "0 10000000\n4096 5000000\n60000000 4000000\n1 0\n");
	seed_text("fuzz_ranges", "past-end", head, 12, "67108864 1\n");
	size = 1000;
	cs = 1;
	memcpy(head, &size, 8);
	memcpy(head + 8, &cs, 4);
	seed_text("fuzz_ranges", "byte-blocks", head, 12, "0 1\n999 1\n500 250\n");
}

static void s3xml(void)
{
	static const char *const docs[][2] = {
		{ "list-objects",
		  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		  "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
		  "<Prefix>repo/snapshots/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>"
		  "<IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
		  "</NextContinuationToken><Contents><Key>repo/snapshots/0011</Key>"
		  "<LastModified>2026-11-21T10:00:00.123Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>4096</Size>"
		  "<StorageClass>STANDARD</StorageClass></Contents><Contents><Key>repo/config</Key><Size>42</Size>"
		  "</Contents></ListBucketResult>" },
		{ "list-versions",
		  "<ListVersionsResult><IsTruncated>false</IsTruncated><NextKeyMarker>k</NextKeyMarker>"
		  "<NextVersionIdMarker>v</NextVersionIdMarker><Version><Key>repo/locks/00</Key><VersionId>v1</VersionId>"
		  "<IsLatest>true</IsLatest><LastModified>2026-11-21T10:00:00Z</LastModified><Size>100</Size></Version>"
		  "<DeleteMarker><Key>repo/config</Key><VersionId>null</VersionId>"
		  "<LastModified>2026-11-20T10:00:00.000Z</LastModified></DeleteMarker></ListVersionsResult>" },
		{ "list-uploads",
		  "<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>true</IsTruncated>"
		  "<NextKeyMarker>repo/chunks/aa/aa</NextKeyMarker><NextUploadIdMarker>2~abc</NextUploadIdMarker>"
		  "<Upload><Key>repo/chunks/aa/aa</Key><UploadId>2~abc</UploadId>"
		  "<Initiated>2026-11-21T10:00:00.000Z</Initiated></Upload></ListMultipartUploadsResult>" },
		{ "error",
		  "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your "
		  "request rate.</Message><RequestId>tx0</RequestId><HostId>h</HostId></Error>" },
		{ "upload-id",
		  "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket>"
		  "<Key>repo/chunks/aa/aa</Key><UploadId>2~VGhpcyBpcyBhbiB1cGxvYWQ</UploadId>"
		  "</InitiateMultipartUploadResult>" },
		{ "object-lock",
		  "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
		  "<Mode>COMPLIANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>" },
	};
	static const uint8_t sel[] = { 0, 0, 0, 1, 2, 3 };

	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		seed_text("fuzz_s3xml", docs[i][0], &sel[i], 1, docs[i][1]);
}

/* An S3 answer of fuzz_s3: status index, header lines, body. */
static size_t answer(char *out, int status_index, const char *headers, const char *body)
{
	size_t n = 0, hl = strlen(headers);

	out[n++] = (char)status_index;
	out[n++] = (char)hl;
	memcpy(out + n, headers, hl);
	n += hl;
	memcpy(out + n, body, strlen(body));
	return n + strlen(body);
}

static void s3(const char *name, uint8_t op, int nans, ...)
{
	char buf[8192];
	size_t n = 0;
	va_list ap;

	va_start(ap, nans);
	for (int i = 0; i < nans; i++) {
		int st = va_arg(ap, int);
		const char *h = va_arg(ap, const char *), *b = va_arg(ap, const char *);

		if (i) {
			memcpy(buf + n, "\nFERRY-NEXT\n", 12);
			n += 12;
		}
		n += answer(buf + n, st, h, b);
	}
	va_end(ap);
	seed("fuzz_s3", name, &op, 1, buf, n);
}

/* statuses[] of fuzz_s3: 0 200, 2 204, 3 206, 7 403, 8 404, 10 412, 13 500. */
static void s3_answers(void)
{
	static const char list[] =
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>repo/snapshots/"
		"00112233445566778899aabbccddeeff</Key><Size>300</Size></Contents><Contents><Key>repo/snapshots/short"
		"</Key><Size>1</Size></Contents></ListBucketResult>";
	static const char locks[] =
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>repo/locks/"
		"00112233445566778899aabbccddeeff</Key><Size>300</Size></Contents></ListBucketResult>";
	static const char keys[] =
		"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>"
		"<Contents><Key>repo/keys/00000000000000aa</Key><Size>120</Size></Contents></ListBucketResult>";
	static const char keys2[] =
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>repo/keys/00000000000000bb</Key>"
		"<Size>120</Size></Contents></ListBucketResult>";
	static const char versions[] =
		"<ListVersionsResult><IsTruncated>false</IsTruncated><Version><Key>repo/locks/"
		"00112233445566778899aabbccddeeff</Key><VersionId>v2</VersionId><LastModified>2026-11-20T10:00:00.000Z"
		"</LastModified><Size>8</Size></Version><DeleteMarker><Key>repo/locks/00112233445566778899aabbccddeeff"
		"</Key><VersionId>v1</VersionId><LastModified>2026-11-19T10:00:00Z</LastModified></DeleteMarker>"
		"</ListVersionsResult>";
	static const char asof[] =
		"<ListVersionsResult><IsTruncated>false</IsTruncated><Version><Key>repo/config</Key><VersionId>v9"
		"</VersionId><LastModified>2026-11-22T10:00:00.000Z</LastModified><Size>8</Size></Version><Version>"
		"<Key>repo/config</Key><VersionId>v8</VersionId><LastModified>2026-11-20T10:00:00.000Z</LastModified>"
		"<Size>8</Size></Version></ListVersionsResult>";
	static const char uploads[] =
		"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>repo/chunks/aa/aa</Key>"
		"<UploadId>2~abc</UploadId><Initiated>2020-01-01T00:00:00.000Z</Initiated></Upload>"
		"</ListMultipartUploadsResult>";
	static const char error[] =
		"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";

	s3("snapshot-ids", 0, 1, 0, "", list);
	s3("lock-list", 1, 2, 0, "", locks, 0, "ETag: \"e\"", "FYL1 not a lock");
	s3("keys-two-pages", 2, 2, 0, "", keys, 0, "", keys2);
	s3("get-config", 3, 1, 0, "ETag: \"abc\"", "config bytes");
	s3("get-missing", 3, 1, 8, "Content-Type: application/xml", error);
	s3("get-range", 4, 1, 3, "Content-Range: bytes 4096-12287/65536", "part of a chunk");
	s3("exists", 5, 1, 0, "Content-Length: 300", "");
	s3("delete-versions", 6, 2, 0, "", versions, 2, "", "");
	s3("cleanup-uploads", 7, 2, 0, "", uploads, 2, "", "");
	s3("multipart", 8, 4, 0, "", "<InitiateMultipartUploadResult><UploadId>2~up</UploadId></InitiateMultipartUploadResult>",
	   0, "ETag: \"p1\"", "", 0, "ETag: \"p2\"", "",
	   0, "", "<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>");
	s3("multipart-error-in-200", 8, 4, 0, "", "<InitiateMultipartUploadResult><UploadId>2~up</UploadId></InitiateMultipartUploadResult>",
	   0, "ETag: \"p1\"", "", 0, "ETag: \"p2\"", "",
	   0, "", "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>");
	s3("put-conditional", 9, 2, 10, "", "<Error><Code>PreconditionFailed</Code></Error>", 0,
	   "x-amz-version-id: v3\nETag: \"m\"", "");
	s3("as-of", 10, 3, 0, "", list, 0, "", asof, 0, "", "config");
	s3("retention", 11, 1, 0, "x-amz-object-lock-mode: COMPLIANCE\nx-amz-object-lock-retain-until-date: "
	   "2030-01-01T00:00:00.000Z", "");
}

/* ---- CSI requests ---- */

/* A map of n key/value pairs whose entries are of type d. */
static ProtobufCMessage **kv(const ProtobufCMessageDescriptor *d, size_t n, ...)
{
	ProtobufCMessage **v = calloc(n, sizeof(*v));
	va_list ap;

	va_start(ap, n);
	for (size_t i = 0; i < n; i++) {
		struct fy_map_entry *e = calloc(1, sizeof(*e));

		protobuf_c_message_init(d, e);
		e->key = va_arg(ap, char *);
		e->value = va_arg(ap, char *);
		v[i] = &e->base;
	}
	va_end(ap);
	return v;
}

static Csi__V1__VolumeCapability *cap(bool block, int mode, const char *fs)
{
	static Csi__V1__VolumeCapability__BlockVolume b = CSI__V1__VOLUME_CAPABILITY__BLOCK_VOLUME__INIT;
	static char *flags[] = { (char *)"noatime", (char *)"nodev" };
	Csi__V1__VolumeCapability *c = calloc(1, sizeof(*c));
	Csi__V1__VolumeCapability__AccessMode *am = calloc(1, sizeof(*am));
	Csi__V1__VolumeCapability__MountVolume *mv = calloc(1, sizeof(*mv));

	csi__v1__volume_capability__init(c);
	csi__v1__volume_capability__access_mode__init(am);
	csi__v1__volume_capability__mount_volume__init(mv);
	am->mode = mode;
	c->access_mode = am;
	if (block) {
		c->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
		c->block = &b;
	} else {
		c->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
		mv->fs_type = (char *)fs;
		mv->n_mount_flags = 2;
		mv->mount_flags = flags;
		c->mount = mv;
	}
	return c;
}

#define SNW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER
#define SNRO CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY

static void controller(void)
{
	const char *t = "fuzz_csi_controller";
	Csi__V1__VolumeCapability *caps[2] = { cap(true, SNW, NULL), cap(false, SNW, "xfs") };

	{
		Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
		Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
		Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
		Csi__V1__VolumeContentSource__SnapshotSource ss = CSI__V1__VOLUME_CONTENT_SOURCE__SNAPSHOT_SOURCE__INIT;
		Csi__V1__VolumeContentSource__VolumeSource vs = CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
		Csi__V1__TopologyRequirement tr = CSI__V1__TOPOLOGY_REQUIREMENT__INIT;
		Csi__V1__Topology topo = CSI__V1__TOPOLOGY__INIT, *topop = &topo;

		r.name = (char *)"pvc-0001";
		cr.required_bytes = 4 << 20;
		cr.limit_bytes = 8 << 20;
		r.capacity_range = &cr;
		r.n_volume_capabilities = 2;
		r.volume_capabilities = caps;
		r.n_parameters = 3;
		r.parameters = (Csi__V1__CreateVolumeRequest__ParametersEntry **)kv(
			&csi__v1__create_volume_request__parameters_entry__descriptor, 3,
			"csi.storage.k8s.io/pvc/name", "data", "csi.storage.k8s.io/pvc/namespace", "db",
			"csi.storage.k8s.io/pv/name", "pvc-0001");
		topo.n_segments = 1;
		topo.segments = (Csi__V1__Topology__SegmentsEntry **)kv(&csi__v1__topology__segments_entry__descriptor, 1,
									 FY_TOPOLOGY_KEY, FZ_NODE);
		tr.n_requisite = 1;
		tr.requisite = &topop;
		r.accessibility_requirements = &tr;
		seed_msg(t, "create-volume", 0, &r.base);
		r.name = (char *)"pvc-from-snap1";
		r.capacity_range = NULL;
		ss.snapshot_id = (char *)FZ_SNAP1;
		src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
		src.snapshot = &ss;
		r.volume_content_source = &src;
		seed_msg(t, "create-volume-from-local-snapshot", 0, &r.base);
		r.name = (char *)"pvc-from-snap3";
		ss.snapshot_id = (char *)FZ_SNAP3;
		r.n_secrets = 1;
		r.secrets = (Csi__V1__CreateVolumeRequest__SecretsEntry **)kv(
			&csi__v1__create_volume_request__secrets_entry__descriptor, 1, "password", FZ_PASSWORD);
		seed_msg(t, "create-volume-from-repository", 0, &r.base);
		/* Another node's snapshot: the StorageClass's repositories (none
		 * there), then lookup-repositories (the fixture's). */
		Csi__V1__CreateVolumeRequest__ParametersEntry **k8s = r.parameters;
		size_t nk8s = r.n_parameters;

		r.name = (char *)"pvc-from-snap5";
		ss.snapshot_id = (char *)FZ_SNAP5;
		r.n_parameters = 2;
		r.parameters = (Csi__V1__CreateVolumeRequest__ParametersEntry **)kv(
			&csi__v1__create_volume_request__parameters_entry__descriptor, 2, FY_P_REPO, "/srv/no-repository",
			FY_P_COPY, "file:///srv/no-copy, /srv/no-copy-2");
		seed_msg(t, "create-volume-lookup", 0, &r.base);
		r.n_parameters = nk8s;
		r.parameters = k8s;
		r.name = (char *)"pvc-clone";
		vs.volume_id = (char *)FZ_VOL1;
		src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
		src.volume = &vs;
		seed_msg(t, "create-volume-clone", 0, &r.base);
		r.name = (char *)"fuzz-vol-1";
		r.volume_content_source = NULL;
		seed_msg(t, "create-volume-existing-name", 0, &r.base);
	}
	{
		Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;

		r.volume_id = (char *)FZ_VOL1;
		seed_msg(t, "delete-volume", 1, &r.base);
	}
	{
		Csi__V1__ValidateVolumeCapabilitiesRequest r = CSI__V1__VALIDATE_VOLUME_CAPABILITIES_REQUEST__INIT;

		r.volume_id = (char *)FZ_VOL1;
		r.n_volume_capabilities = 2;
		r.volume_capabilities = caps;
		seed_msg(t, "validate-capabilities", 2, &r.base);
	}
	{
		Csi__V1__GetCapacityRequest r = CSI__V1__GET_CAPACITY_REQUEST__INIT;

		r.n_volume_capabilities = 1;
		r.volume_capabilities = caps;
		seed_msg(t, "get-capacity", 3, &r.base);
	}
	{
		Csi__V1__CreateSnapshotRequest r = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;

		r.source_volume_id = (char *)FZ_VOL1;
		r.name = (char *)"snapshot-0001";
		r.n_parameters = 3;
		r.parameters = (Csi__V1__CreateSnapshotRequest__ParametersEntry **)kv(
			&csi__v1__create_snapshot_request__parameters_entry__descriptor, 3, FY_P_REPO, "/srv/ferry-repo",
			FY_P_COPY, "s3://bucket/prefix?region=eu-west-1", FY_P_FREEZE, "false");
		r.n_secrets = 3;
		r.secrets = (Csi__V1__CreateSnapshotRequest__SecretsEntry **)kv(
			&csi__v1__create_snapshot_request__secrets_entry__descriptor, 3, "password", FZ_PASSWORD,
			"AWS_ACCESS_KEY_ID", "AKIA0000", "copy-1.AWS_SECRET_ACCESS_KEY", "secret");
		seed_msg(t, "create-snapshot-upload", 4, &r.base);
		r.n_parameters = 0;
		r.n_secrets = 0;
		r.name = (char *)"snapshot-local";
		seed_msg(t, "create-snapshot-local", 4, &r.base);
		r.name = (char *)"fuzz-snap-1";
		seed_msg(t, "create-snapshot-existing-name", 4, &r.base);
	}
	{
		Csi__V1__DeleteSnapshotRequest r = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;

		r.snapshot_id = (char *)FZ_SNAP1;
		seed_msg(t, "delete-snapshot", 5, &r.base);
	}
	{
		Csi__V1__ListSnapshotsRequest r = CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;

		seed_msg(t, "list-snapshots", 6, &r.base);
		r.max_entries = 1;
		r.starting_token = (char *)FZ_SNAP2;
		r.source_volume_id = (char *)FZ_VOL1;
		seed_msg(t, "list-snapshots-page", 6, &r.base);
		r.starting_token = NULL;
		r.snapshot_id = (char *)FZ_SNAP3;
		seed_msg(t, "list-snapshots-one", 6, &r.base);
		r.snapshot_id = (char *)FZ_SNAP5;
		r.source_volume_id = NULL;
		r.max_entries = 0;
		r.n_secrets = 1;
		r.secrets = (Csi__V1__ListSnapshotsRequest__SecretsEntry **)kv(
			&csi__v1__list_snapshots_request__secrets_entry__descriptor, 1, "password", FZ_PASSWORD);
		seed_msg(t, "list-snapshots-lookup", 6, &r.base);
	}
	{
		Csi__V1__GetMetadataAllocatedRequest r = CSI__V1__GET_METADATA_ALLOCATED_REQUEST__INIT;

		r.snapshot_id = (char *)FZ_SNAP1;
		r.max_results = 1;
		seed_msg(t, "allocated-local", 7, &r.base);
		r.snapshot_id = (char *)FZ_SNAP4;
		r.starting_offset = 1 << 20;
		r.n_secrets = 1;
		r.secrets = (Csi__V1__GetMetadataAllocatedRequest__SecretsEntry **)kv(
			&csi__v1__get_metadata_allocated_request__secrets_entry__descriptor, 1, "password", FZ_PASSWORD);
		seed_msg(t, "allocated-repository", 7, &r.base);
		r.snapshot_id = (char *)FZ_SNAP5;
		seed_msg(t, "allocated-lookup", 7, &r.base);
	}
	{
		Csi__V1__GetMetadataDeltaRequest r = CSI__V1__GET_METADATA_DELTA_REQUEST__INIT;

		r.base_snapshot_id = (char *)FZ_SNAP1;
		r.target_snapshot_id = (char *)FZ_SNAP2;
		seed_msg(t, "delta-local", 8, &r.base);
		r.base_snapshot_id = (char *)FZ_SNAP3;
		r.target_snapshot_id = (char *)FZ_SNAP4;
		r.starting_offset = 4096;
		r.max_results = 1;
		r.n_secrets = 1;
		r.secrets = (Csi__V1__GetMetadataDeltaRequest__SecretsEntry **)kv(
			&csi__v1__get_metadata_delta_request__secrets_entry__descriptor, 1, "password", FZ_PASSWORD);
		seed_msg(t, "delta-repository", 8, &r.base);
		r.base_snapshot_id = (char *)FZ_SNAP5;
		seed_msg(t, "delta-lookup", 8, &r.base);
	}
}

static void node(void)
{
	const char *t = "fuzz_csi_node";
	Csi__V1__NodePublishVolumeRequest p = CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;
	Csi__V1__NodeUnpublishVolumeRequest u = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
	Csi__V1__NodeGetVolumeStatsRequest s = CSI__V1__NODE_GET_VOLUME_STATS_REQUEST__INIT;

	p.volume_id = (char *)FZ_VOL1;
	p.target_path = (char *)"@K/pods/p1/volumes/new-block";
	p.volume_capability = cap(true, SNW, NULL);
	seed_msg(t, "publish-block", 0, &p.base);
	p.readonly = true;
	p.volume_capability = cap(true, SNRO, NULL);
	seed_msg(t, "publish-block-readonly", 0, &p.base);
	p.readonly = false;
	p.volume_id = (char *)FZ_VOL2;
	p.target_path = (char *)"@K/pods/p1/link/new-mount";
	p.volume_capability = cap(false, SNW, "ext4");
	seed_msg(t, "publish-mount-via-link", 0, &p.base);
	p.target_path = (char *)"@K/pods/p1/volumes/full";
	seed_msg(t, "publish-mount-on-full-dir", 0, &p.base);
	p.volume_id = (char *)FZ_VOL1;
	p.target_path = (char *)"@K/pods/p1/volumes/blk";
	seed_msg(t, "publish-kind-conflict", 0, &p.base);
	p.target_path = (char *)"@K/escape/etc/target";
	seed_msg(t, "publish-escape", 0, &p.base);
	p.target_path = (char *)"@K/pods/p1/../../outside/x";
	seed_msg(t, "publish-dotdot", 0, &p.base);
	u.volume_id = (char *)FZ_VOL1;
	u.target_path = (char *)"@K/pods/p1/volumes/blk";
	seed_msg(t, "unpublish-block", 1, &u.base);
	u.volume_id = (char *)FZ_VOL2;
	u.target_path = (char *)"@K/pods/p1/volumes/mnt";
	seed_msg(t, "unpublish-mount", 1, &u.base);
	u.target_path = (char *)"@K/outside/file";
	seed_msg(t, "unpublish-outside", 1, &u.base);
	s.volume_id = (char *)FZ_VOL2;
	s.volume_path = (char *)"@K/pods/p1/volumes/mnt";
	seed_msg(t, "volume-stats", 2, &s.base);
	seed(t, "capabilities", (uint8_t[]){ 3 }, 1, NULL, 0);
	seed(t, "info", (uint8_t[]){ 4 }, 1, NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR (tests/fuzz/corpus)\n");
		return 2;
	}
	root = argv[1];
	if (mkdir(root, 0755) && errno != EEXIST)
		fz_fail("mkdir %s: %s", root, strerror(errno));
	objects();
	chunks();
	deflates();
	manifests();
	configs();
	locks();
	drill_records();
	ranges();
	s3xml();
	s3_answers();
	controller();
	node();
	return 0;
}
