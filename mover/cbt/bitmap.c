#include <errno.h>
#include <stdlib.h>

#include "cbt/cbt.h"

int fy_bitmap_init(struct fy_bitmap *b, uint64_t nbits)
{
	b->nbits = nbits;
	b->w = calloc((nbits + 63) / 64 ? (nbits + 63) / 64 : 1, sizeof(uint64_t));
	return b->w ? 0 : -ENOMEM;
}

void fy_bitmap_free(struct fy_bitmap *b)
{
	free(b->w);
	b->w = NULL;
	b->nbits = 0;
}

/* Whole words at a time: a range over a large volume costs nbits / 64 stores. */
void fy_bitmap_set_range(struct fy_bitmap *b, uint64_t first, uint64_t last)
{
	uint64_t fw, lw, head, tail;

	if (!b->nbits || first > last || first >= b->nbits)
		return;
	if (last >= b->nbits)
		last = b->nbits - 1;
	fw = first / 64;
	lw = last / 64;
	head = ~0ull << (first % 64);		/* first and the bits above it */
	tail = ~0ull >> (63 - last % 64);	/* last and the bits below it */

	if (fw == lw) {
		b->w[fw] |= head & tail;
		return;
	}
	b->w[fw] |= head;
	for (uint64_t i = fw + 1; i < lw; i++)
		b->w[i] = ~0ull;
	b->w[lw] |= tail;
}

uint64_t fy_bitmap_count(const struct fy_bitmap *b)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < (b->nbits + 63) / 64; i++)
		n += (uint64_t)__builtin_popcountll(b->w[i]);
	return n;
}
