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

void fy_bitmap_set_range(struct fy_bitmap *b, uint64_t first, uint64_t last)
{
	for (uint64_t i = first; i <= last && i < b->nbits; i++) {
		if (i % 64 == 0 && i + 63 <= last && i + 63 < b->nbits) {
			b->w[i / 64] = ~0ull;
			i += 63;
			continue;
		}
		fy_bitmap_set(b, i);
	}
}

uint64_t fy_bitmap_count(const struct fy_bitmap *b)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < (b->nbits + 63) / 64; i++)
		n += (uint64_t)__builtin_popcountll(b->w[i]);
	return n;
}
