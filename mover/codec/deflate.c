/* Raw deflate (RFC 1951) with ISA-L igzip, one shot per call.
 *
 * The compressor's level buffer and the two stream structures (~400 KiB
 * together at level 3) live in a per-thread context, allocated on first use
 * and freed when the thread exits, so every call is allocation-free and
 * threads never share state. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/igzip_lib.h>

#include "codec.h"

#define MAX2(a, b) ((a) > (b) ? (a) : (b))
#define LEVEL_BUF_MAX \
	MAX2(MAX2(ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT), ISAL_DEF_LVL3_DEFAULT)

struct zctx {
	struct isal_zstream zs;
	struct inflate_state is;
	uint8_t level_buf[LEVEL_BUF_MAX];
};

static pthread_key_t zctx_key;
static pthread_once_t zctx_once = PTHREAD_ONCE_INIT;
static int zctx_key_err;
static _Thread_local struct zctx *zctx_tl;

static void zctx_free(void *p)
{
	free(p);
}

static void zctx_key_init(void)
{
	zctx_key_err = pthread_key_create(&zctx_key, zctx_free);
}

static struct zctx *zctx_get(void)
{
	struct zctx *c = zctx_tl;

	if (c)
		return c;
	pthread_once(&zctx_once, zctx_key_init);
	if (zctx_key_err)
		return NULL;
	c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	/* The key's destructor frees the context at thread exit. */
	if (pthread_setspecific(zctx_key, c)) {
		free(c);
		return NULL;
	}
	zctx_tl = c;
	return c;
}

static uint32_t level_buf_size(int level)
{
	switch (level) {
	case 1: return ISAL_DEF_LVL1_DEFAULT;
	case 2: return ISAL_DEF_LVL2_DEFAULT;
	case 3: return ISAL_DEF_LVL3_DEFAULT;
	default: return 0;
	}
}

/* ---- noise: segments not worth compressing ---- */

/* A segment is judged from a sample of NOISE_PIECES pieces of NOISE_PIECE
 * bytes spread evenly over it (4 KiB of 64 KiB): noise when the sample's byte
 * counts are as flat as random bytes' are (encrypted or already compressed
 * data, which deflate cannot shrink).  The measure is Pearson's chi-square
 * against the uniform distribution, 256 * sum(c^2) / n - n for n sampled
 * bytes: 255 degrees of freedom, so mean 255 and deviation 22.6 on random
 * bytes; text is in the tens of thousands.  A repeat the sample lines up with
 * (a block copied at a multiple of 4 KiB, up to the 32 KiB deflate can reach)
 * doubles the counts and at least doubles the measure; a run of zeros or of
 * any one byte in a piece adds thousands.  What the sample misses: noise that
 * repeats at a distance that does not line up with it, which is then stored,
 * not deflated. */
#define NOISE_SEG ((size_t)64 << 10)
#define NOISE_PIECES 16
#define NOISE_PIECE 256
#define NOISE_CHI2 400
#define NOISE_CHI2_EARLY 1000

/* Chi-square of the counts in h over n sampled bytes. */
static uint64_t chi2(uint32_t h[4][256], uint64_t n)
{
	uint64_t sum = 0;

	for (int b = 0; b < 256; b++) {
		uint64_t c = (uint64_t)h[0][b] + h[1][b] + h[2][b] + h[3][b];

		sum += c * c;
	}
	return 256 * sum / n - n;
}

static bool noise(const uint8_t *p)
{
	uint32_t h[4][256];
	const size_t stride = NOISE_SEG / NOISE_PIECES;

	memset(h, 0, sizeof(h));
	for (int i = 0; i < NOISE_PIECES; i++) {
		const uint8_t *q = p + (size_t)i * stride;

		/* four tables: runs of one byte do not wait on one counter */
		for (int j = 0; j < NOISE_PIECE; j += 4) {
			h[0][q[j]]++;
			h[1][q[j + 1]]++;
			h[2][q[j + 2]]++;
			h[3][q[j + 3]]++;
		}
		/* A quarter of the sample tells text at once (the measure's
		 * spread on random bytes does not depend on the sample's size):
		 * compressible data, the common case, costs a quarter. */
		if (i == NOISE_PIECES / 4 - 1 && chi2(h, (uint64_t)(i + 1) * NOISE_PIECE) > NOISE_CHI2_EARLY)
			return false;
	}
	return chi2(h, NOISE_PIECES * NOISE_PIECE) <= NOISE_CHI2;
}

/* Whole NOISE_SEG segments only: a shorter tail is always compressed. */
static bool seg_noise(const uint8_t *in, size_t inlen, size_t off)
{
	return inlen - off >= NOISE_SEG && noise(in + off);
}

/* One run of input through igzip's one-shot compressor, appended at out.
 * last: the run ends the input (its final block ends the stream); otherwise
 * the output ends byte-aligned (FULL_FLUSH) so that a stored block can follow. */
static ssize_t deflate_run(struct zctx *c, int level, const uint8_t *in, size_t len, bool last,
			   uint8_t *out, size_t cap)
{
	struct isal_zstream *zs = &c->zs;
	int ret;

	/* Zero the whole stream: isal_deflate_stateless_init() leaves fields it
	 * does not own alone, and stale bytes there spoil levels 2 and 3. */
	memset(zs, 0, sizeof(*zs));
	isal_deflate_stateless_init(zs);
	zs->level = (uint32_t)level;
	zs->level_buf_size = level_buf_size(level);
	zs->level_buf = zs->level_buf_size ? c->level_buf : NULL;
	zs->gzip_flag = IGZIP_DEFLATE;
	zs->end_of_stream = last;
	zs->flush = last ? NO_FLUSH : FULL_FLUSH;
	zs->next_in = (uint8_t *)in;
	zs->avail_in = (uint32_t)len;
	zs->next_out = out;
	zs->avail_out = (uint32_t)cap;

	/* The one-shot compressor needs a few bytes (<= 8) of room beyond its
	 * result, so output within that margin of cap is refused as well. */
	ret = isal_deflate_stateless(zs);
	if (ret == STATELESS_OVERFLOW)
		return -ENOSPC;
	if (ret != COMP_OK)
		return -EINVAL;
	if (zs->avail_in != 0)
		return -ENOSPC;
	return (ssize_t)zs->total_out;
}

/* Stored blocks (RFC 1951 3.2.4) of at most 65535 bytes each, at a byte
 * boundary: a header byte (BFINAL, BTYPE 00, padding), LEN, NLEN, the bytes. */
static ssize_t store_run(const uint8_t *in, size_t len, bool last, uint8_t *out, size_t cap)
{
	size_t o = 0;

	while (len) {
		size_t k = len > 65535 ? 65535 : len;

		if (cap - o < 5 + k)
			return -ENOSPC;
		out[o] = last && k == len ? 1 : 0;
		out[o + 1] = (uint8_t)k;
		out[o + 2] = (uint8_t)(k >> 8);
		out[o + 3] = (uint8_t)~k;
		out[o + 4] = (uint8_t)(~k >> 8);
		memcpy(out + o + 5, in, k);
		o += 5 + k;
		in += k;
		len -= k;
	}
	return (ssize_t)o;
}

ssize_t fy_deflate(int level, const void *in, size_t inlen, void *out, size_t outcap)
{
	const uint8_t *src = in;
	uint8_t *dst = out;
	struct zctx *c;
	size_t cap, off = 0, o = 0;

	if (level < 0 || level > 3)
		return -EINVAL;
	/* igzip counts in 32 bits; blocks are far smaller than that. */
	if (inlen > UINT32_MAX)
		return -EINVAL;
	/* Output that is not smaller than the input is useless to the caller. */
	cap = inlen > 0 ? inlen - 1 : 0;
	if (cap > outcap)
		cap = outcap;
	if (cap == 0)
		return -ENOSPC;
	c = zctx_get();
	if (!c)
		return -ENOMEM;

	/* Runs of compressible segments are deflated, runs of noise stored, all
	 * in one stream; each segment is sampled once.  Most blocks are one run:
	 * all compressible (one igzip call, as if there were no sampling) or all
	 * noise (nothing to try).  A deflated run after noise starts with empty
	 * history, which costs little: the history before it was noise. */
	for (bool n = seg_noise(src, inlen, 0); off < inlen; n = !n) {
		size_t end = off;
		ssize_t w;

		/* a run ends where a segment of the other kind begins */
		do
			end = inlen - end > NOISE_SEG ? end + NOISE_SEG : inlen;
		while (end < inlen && seg_noise(src, inlen, end) == n);
		if (n && off == 0 && end == inlen)
			return -ENOSPC;
		w = n ? store_run(src + off, end - off, end == inlen, dst + o, cap - o)
		      : deflate_run(c, level, src + off, end - off, end == inlen, dst + o, cap - o);
		if (w < 0)
			return w;
		o += (size_t)w;
		off = end;
	}
	return (ssize_t)o;
}

ssize_t fy_inflate(const void *in, size_t inlen, void *out, size_t outlen)
{
	struct zctx *c;
	struct inflate_state *is;
	int ret;

	if (inlen > UINT32_MAX || outlen > UINT32_MAX)
		return -EBADMSG;
	c = zctx_get();
	if (!c)
		return -ENOMEM;
	is = &c->is;
	isal_inflate_init(is);
	is->crc_flag = ISAL_DEFLATE;
	is->next_in = (uint8_t *)in;
	is->avail_in = (uint32_t)inlen;
	is->next_out = out;
	is->avail_out = (uint32_t)outlen;

	ret = isal_inflate_stateless(is);
	/* Success means: the final block was reached and exactly outlen bytes
	 * came out.  Output that would run past outlen is an overflow. */
	if (ret != ISAL_DECOMP_OK || is->block_state != ISAL_BLOCK_FINISH ||
	    is->total_out != outlen)
		return -EBADMSG;
	/* Bytes after the final block (unread, or read ahead into the bit
	 * buffer) mean the frame around the stream is wrong. */
	if (is->avail_in != 0 || is->read_in_length > 7)
		return -EBADMSG;
	return (ssize_t)outlen;
}
