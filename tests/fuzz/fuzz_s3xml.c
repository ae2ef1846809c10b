/* fuzz_s3xml: the XML bodies an S3 server answers with, through ferry's
 * readers of them (mover/store/s3xml.c, libxml2's tree API): listings
 * (ListBucketResult, ListVersionsResult, ListMultipartUploadsResult, with
 * their entries and the markers of the next page), error documents
 * (<Error><Code/><Message/>) and single elements (UploadId,
 * ObjectLockEnabled).  Every string handed out must be a terminated string
 * that fits the caller's buffer.
 *
 * Input: a selector (1 byte), then the body.
 *   0: a listing; 1: an error document; 2..: the first element named
 *   UploadId, ObjectLockEnabled, Code, Key (by selector - 2, modulo 4). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "store/s3xml.h"

static int entry(const struct fy_s3xml_entry *e, void *arg)
{
	size_t *count = arg;

	if (!e->key || !e->id || !e->time)
		fz_fail("a listing entry without a key, id or time string");
	/* The callers copy these into buffers of 1100 bytes (keys, ids). */
	if (strlen(e->key) >= 1100 || strlen(e->id) >= 1100 || strlen(e->time) >= 64)
		fz_fail("a listing entry's string is longer than its buffer");
	return ++*count > 100000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "UploadId", "ObjectLockEnabled", "Code", "Key" };
	struct fz_in in = { data, size };
	uint8_t sel = fz_u8(&in);
	/* An exact copy: reads past the body are caught (it is not a string). */
	char *body = malloc(in.n ? in.n : 1);
	char a[1100], b[1100];
	size_t count = 0;
	bool trunc = false;
	int rc;

	if (!body)
		return 0;
	memcpy(body, in.p, in.n);
	memset(a, 'x', sizeof(a));
	memset(b, 'x', sizeof(b));
	if (sel == 0) {
		rc = fy_s3xml_list(body, in.n, entry, &count, &trunc, a, sizeof(a), b, sizeof(b));
		if (rc == 0 && (strnlen(a, sizeof(a)) == sizeof(a) || strnlen(b, sizeof(b)) == sizeof(b)))
			fz_fail("a listing's next markers are not terminated strings");
	} else if (sel == 1) {
		char code[64], msg[256];

		memset(code, 'x', sizeof(code));
		memset(msg, 'x', sizeof(msg));
		rc = fy_s3xml_error(body, in.n, code, sizeof(code), msg, sizeof(msg));
		if (rc == 0 && (strnlen(code, sizeof(code)) == sizeof(code) || strnlen(msg, sizeof(msg)) == sizeof(msg)))
			fz_fail("an error's code or message is not a terminated string");
	} else {
		char v[64];

		memset(v, 'x', sizeof(v));
		rc = fy_s3xml_find(body, in.n, names[(sel - 2) % 4], v, sizeof(v));
		if (rc == 0 && strnlen(v, sizeof(v)) == sizeof(v))
			fz_fail("an element's text is not a terminated string");
	}
	free(body);
	return 0;
}
