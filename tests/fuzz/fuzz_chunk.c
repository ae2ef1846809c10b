/* fuzz_chunk: a chunk's body behind the AEAD check.  The harness knows the
 * repository's key: it frames the fuzzer's body with a valid header (its
 * own CRC right) and seals it, so fy_obj_open (mover/repo/object.c) gets
 * past authentication and what is fuzzed is what comes after it: the
 * length checks, the inflate of a deflate stream (mover/codec/deflate.c,
 * ISA-L igzip) that must come out at exactly the header's length, and the
 * CRC32C of the plain bytes.
 *
 * Input: flags (1 byte), the header's plain length (4, little-endian), the
 * header's CRC32C of the plain data (4), then the body.
 *   bit 0: the header says "compressed" (the body is a deflate stream);
 *   bit 1: seal it (an encrypted repository); clear: an unencrypted one;
 *   bit 2: the CRC field is replaced by the CRC32C of the body itself (so
 *          that a raw body, or a stored deflate block, passes the check and
 *          the fuzzer sees the path of success);
 *   bit 3: a format version other than 1 (bits 4-7 give it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define CAP (FY_DEFAULT_CHUNK)

static uint8_t plain[CAP], scratch[CAP];

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in), id[FY_ID_LEN], aad[FY_OBJ_HDR_LEN + FY_ID_LEN];
	uint32_t plen = fz_u32(&in), crc = fz_u32(&in);
	bool comp = flags & 1, enc = flags & 2;
	struct fy_repo r;
	char why[160] = "";
	size_t objlen = FY_OBJ_HDR_LEN + in.n + (enc ? FY_SEAL_OVERHEAD : 0);
	uint8_t *obj;

	if (in.n > CAP)
		return 0;
	fz_repo(&r, enc, comp);
	memset(id, 0x3c, sizeof(id));
	if (flags & 4)
		crc = fy_crc32c(0, in.p, in.n);
	obj = malloc(objlen);
	if (!obj)
		return 0;
	memcpy(obj, "FYC1", 4);
	obj[4] = flags & 8 ? (uint8_t)(flags >> 4) : FY_FORMAT_VERSION;
	obj[5] = comp;
	obj[6] = enc;
	obj[7] = 0;
	put_le32(obj + 8, plen);
	put_le32(obj + 12, crc);
	put_le32(obj + 16, (uint32_t)(objlen - FY_OBJ_HDR_LEN));
	put_le32(obj + 20, fy_crc32c(0, obj, 20));
	if (enc) {
		memcpy(aad, obj, FY_OBJ_HDR_LEN);
		memcpy(aad + FY_OBJ_HDR_LEN, id, FY_ID_LEN);
		if (fy_seal(fz_data_key, aad, sizeof(aad), in.p, in.n, obj + FY_OBJ_HDR_LEN) < 0)
			fz_fail("fy_seal failed on %zu bytes", in.n);
	} else {
		memcpy(obj + FY_OBJ_HDR_LEN, in.p, in.n);
	}
	ssize_t n = fy_obj_open(&r, "FYC1", id, FY_ID_LEN, obj, objlen, plain, CAP, scratch, why, sizeof(why));

	if (n >= 0) {
		if ((uint32_t)n != plen)
			fz_fail("fy_obj_open returned %zd bytes, the header says %u", n, plen);
		if (fy_crc32c(0, plain, (size_t)n) != crc)
			fz_fail("fy_obj_open accepted plain bytes whose CRC32C is not the header's");
		if (!comp && (size_t)n == in.n && memcmp(plain, in.p, in.n))
			fz_fail("a raw body came back different");
	} else if (!why[0]) {
		fz_fail("fy_obj_open failed (%zd) without saying why", n);
	}
	free(obj);
	return 0;
}
