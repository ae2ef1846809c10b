/* Raw deflate (RFC 1951) with ISA-L igzip, one shot per call.
 *
 * The compressor's level buffer and the two stream structures (~400 KiB
 * together at level 3) live in a per-thread context, allocated on first use
 * and freed when the thread exits, so every call is allocation-free and
 * threads never share state. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
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

ssize_t fy_deflate(int level, const void *in, size_t inlen, void *out, size_t outcap)
{
	struct zctx *c;
	struct isal_zstream *zs;
	size_t cap;
	int ret;

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
	zs = &c->zs;
	/* Zero the whole stream: isal_deflate_stateless_init() leaves fields it
	 * does not own alone, and stale bytes there spoil levels 2 and 3. */
	memset(zs, 0, sizeof(*zs));
	isal_deflate_stateless_init(zs);
	zs->level = (uint32_t)level;
	zs->level_buf_size = level_buf_size(level);
	zs->level_buf = zs->level_buf_size ? c->level_buf : NULL;
	zs->gzip_flag = IGZIP_DEFLATE;
	zs->end_of_stream = 1;
	zs->flush = NO_FLUSH;
	zs->next_in = (uint8_t *)in;
	zs->avail_in = (uint32_t)inlen;
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
