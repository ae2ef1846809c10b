/* fuzz_deflate: fy_deflate then fy_inflate (mover/codec/deflate.c) must give
 * back the input, whatever mix of text, noise, zeros and repeats it is made
 * of.  fy_deflate samples every 64 KiB segment and stores noise as stored
 * blocks between deflated runs (FULL_FLUSH, a fresh history each run): the
 * fuzzer builds inputs of up to 384 KiB (six segments) that mix those kinds
 * at any boundary.
 * An inflate to one byte more or less than the input must fail.
 *
 * Input: level (1 byte, 0..3; others are tried and must fail), the output
 * room as a fraction of the input (1 byte: 0 means all of it), then
 * segments until the input ends, each a kind (1 byte), a length (2 bytes,
 * little-endian, in units of 8 bytes) and what the kind needs:
 *   0 literal: the next bytes of the input, repeated to the length;
 *   1 noise: 4 bytes of seed for xorshift32;
 *   2 a run of one byte (1 byte);
 *   3 a copy of earlier output from a distance (2 bytes, in units of 8). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "fuzz.h"

#define MAX (384u << 10)

static uint8_t buf[MAX], out[MAX], back[MAX + 1];

static size_t build(struct fz_in *in)
{
	size_t n = 0;

	while (in->n && n < MAX) {
		uint8_t kind = fz_u8(in) & 3;
		size_t len = (size_t)(fz_u8(in) | fz_u8(in) << 8) * 8 + 1;

		if (len > MAX - n)
			len = MAX - n;
		if (kind == 0) {
			size_t k = in->n < 64 ? in->n : 64;

			for (size_t i = 0; i < len; i++)
				buf[n + i] = k ? in->p[i % k] : 0;
			in->p += k;
			in->n -= k;
		} else if (kind == 1) {
			uint32_t x = fz_u32(in) | 1;

			for (size_t i = 0; i < len; i++) {
				x ^= x << 13;
				x ^= x >> 17;
				x ^= x << 5;
				buf[n + i] = (uint8_t)(x >> 11);
			}
		} else if (kind == 2) {
			memset(buf + n, fz_u8(in), len);
		} else {
			size_t dist = (size_t)(fz_u8(in) | fz_u8(in) << 8) * 8 + 1;

			if (dist > n)
				dist = n ? n : 1;
			for (size_t i = 0; i < len; i++)
				buf[n + i] = n ? buf[n + i - dist] : 0;
		}
		n += len;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	int level = fz_u8(&in);
	unsigned room = fz_u8(&in);
	size_t n = build(&in), cap = room ? n * room / 256 : n;
	ssize_t c = fy_deflate(level, buf, n, out, cap);

	if (level > 3) {
		if (c != -EINVAL)
			fz_fail("fy_deflate at level %d returned %zd, not -EINVAL", level, c);
		return 0;
	}
	if (c == -ENOSPC)
		return 0; /* stored raw by the caller: not smaller, or no room */
	if (c < 0)
		fz_fail("fy_deflate of %zu bytes at level %d failed: %zd", n, level, c);
	if ((size_t)c >= n || (size_t)c > cap)
		fz_fail("fy_deflate of %zu bytes made %zd (room %zu): not smaller", n, c, cap);
	if (fy_inflate(out, (size_t)c, back, n) != (ssize_t)n)
		fz_fail("fy_inflate of fy_deflate's %zd bytes did not give back %zu bytes", c, n);
	if (memcmp(back, buf, n))
		fz_fail("fy_inflate of fy_deflate's output differs from the input (%zu bytes, level %d)", n, level);
	if (fy_inflate(out, (size_t)c, back, n + 1) != -EBADMSG)
		fz_fail("fy_inflate accepted an output length of %zu + 1", n);
	if (n > 1 && fy_inflate(out, (size_t)c, back, n - 1) != -EBADMSG)
		fz_fail("fy_inflate accepted an output length of %zu - 1", n);
	if (fy_inflate(out, (size_t)c - 1, back, n) != -EBADMSG)
		fz_fail("fy_inflate accepted a stream cut by one byte");
	return 0;
}
