/* fuzz_object: a sealed object as it comes from a store, bytes the fuzzer
 * chose, through fy_obj_open (mover/repo/object.c): the header, its CRC, the
 * lengths, the AEAD open (mover/codec/seal.c) and, in an unencrypted
 * repository, where nothing stops it, the inflate and CRC32C of the body.
 *
 * Input: one byte of flags, then the object.
 *   bit 0: the repository is encrypted (the AEAD check stops almost
 *          everything: fuzz_chunk reaches past it);
 *   bits 1-2: which object: 0 chunk (FYC1, named by a 32-byte id),
 *          1 manifest (FYM1, 16-byte id), 2 lock (FYL1, 16-byte id), 3 a
 *          chunk opened with a plain buffer of 64 KiB (the cap check). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define CAP (FY_DEFAULT_CHUNK)

static uint8_t plain[CAP], scratch[CAP];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in), name[FY_ID_LEN];
	static const char *const magic[] = { "FYC1", "FYM1", "FYL1", "FYC1" };
	static const size_t namelen[] = { FY_ID_LEN, FY_SNAP_ID_LEN, 16, FY_ID_LEN };
	unsigned kind = (flags >> 1) & 3;
	size_t cap = kind == 3 ? 65536 : CAP;
	struct fy_repo r;
	char why[160] = "";
	uint8_t *obj;

	fz_repo(&r, flags & 1, false);
	memset(name, 0xa5, sizeof(name));
	/* A copy of exactly the object's size: reads past it are caught. */
	obj = malloc(in.n ? in.n : 1);
	if (!obj)
		return 0;
	memcpy(obj, in.p, in.n);
	ssize_t n = fy_obj_open(&r, magic[kind], name, namelen[kind], obj, in.n, plain, cap, scratch, why,
				sizeof(why));

	if (n >= 0 && (size_t)n > cap)
		fz_fail("fy_obj_open returned %zd plain bytes, more than the %zu-byte buffer", n, cap);
	if (n < 0 && !why[0])
		fz_fail("fy_obj_open failed (%zd) without saying why", n);
	free(obj);
	return 0;
}
