/* Internal helpers shared by the change sources; not part of the API. */
#ifndef FERRY_CBT_PRIV_H
#define FERRY_CBT_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "cbt/cbt.h"

/* Write one error line into why (which may be NULL). */
void fy_cbt_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The checks every source starts with: an argument (argname says what it
 * is, for the error; NULL: the source takes none), a chunk size, and a bitmap of exactly
 * ceil(size / chunk_size) bits.  0 or -EINVAL with why. */
int fy_cbt_req_check(const struct fy_cbt_ops *ops, const char *argname, const struct fy_cbt_req *req,
		     const struct fy_bitmap *changed, char *why, size_t whylen);

/* Set the bit of every block that a byte of [off, off + len) lies in
 * (nothing when len is 0).  The caller keeps off + len <= the volume size. */
static inline void fy_cbt_mark(struct fy_bitmap *b, uint32_t chunk_size, uint64_t off, uint64_t len)
{
	if (len)
		fy_bitmap_set_range(b, off / chunk_size, (off + len - 1) / chunk_size);
}

#endif
