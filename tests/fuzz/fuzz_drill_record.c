/* fuzz_drill_record: a drill record drills/<tag>/<id> (mover/status.c)
 * behind the AEAD check.  The fuzzer writes the plain bytes (a
 * Ferry.v1.DrillRecord, proto/ferry.proto); the harness seals them as
 * `ferry drill --record` would (fy_obj_seal, with the known key, named by
 * the 32 bytes tag || id), and fy_drill_record_decode (what `ferry status`
 * does with each record it reads) opens, decodes and checks them.  What it
 * accepts must be a record of the volume asked for, of one snapshot, with
 * every string terminated.
 *
 * Input: flags (1 byte), then the plain record.
 *   bit 0: an encrypted repository (sealed); clear: unencrypted;
 *   bit 1: the repository compresses (the object body is deflated);
 *   bit 2: the reader asks for volume "b" instead of "pg-data". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_drill.h"
#include "fuzz.h"

static const uint8_t name[32] = { 0xd1, 0x11, 0xd1, 0x11, 0xd1, 0x11, 0xd1, 0x11, 0xd1, 0x11, 0xd1,
				  0x11, 0xd1, 0x11, 0xd1, 0x11, 0x18, 0x7e, 0x00, 0x00, 0x00, 0x00,
				  0x00, 0x01, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	const char *volume = flags & 4 ? "b" : "pg-data";
	struct fy_drill_record rec;
	struct fy_repo r;
	char why[256] = "";
	uint8_t *obj = malloc(FY_OBJ_MAX(in.n));

	if (!obj)
		return 0;
	fz_repo(&r, flags & 1, flags & 2);
	ssize_t n = fy_obj_seal(&r, "FYD1", name, sizeof(name), in.p, in.n, fy_crc32c(0, in.p, in.n), 1, obj);

	if (n < 0) {
		free(obj);
		return 0; /* larger than an object can be */
	}
	memset(&rec, 0x5a, sizeof(rec));
	int rc = fy_drill_record_decode(&r, name, volume, obj, (size_t)n, &rec, why, sizeof(why));

	free(obj);
	if (rc < 0) {
		if (!why[0] || !memchr(why, 0, sizeof(why)))
			fz_fail("fy_drill_record_decode failed (%d) without saying why", rc);
		return 0;
	}
	/* What status prints and the agent will export. */
	if (!memchr(rec.stage, 0, sizeof(rec.stage)) || !memchr(rec.reason, 0, sizeof(rec.reason)) ||
	    !memchr(rec.hostname, 0, sizeof(rec.hostname)))
		fz_fail("an accepted record has a string without its end");
	volatile size_t sum = strlen(rec.stage) + strlen(rec.reason) + strlen(rec.hostname);
	volatile double t = rec.restore_seconds + rec.verify_seconds + rec.check_seconds;

	(void)sum;
	(void)t;
	return 0;
}
