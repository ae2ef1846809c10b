/* diff: which bytes of one snapshot differ from another, from manifests alone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

static int add_range(struct fy_diff_result *res, size_t *cap, uint64_t off, uint64_t len)
{
	if (res->nranges && res->ranges[res->nranges - 1].off + res->ranges[res->nranges - 1].len == off) {
		res->ranges[res->nranges - 1].len += len;
		return 0;
	}
	if (res->nranges == *cap) {
		size_t ncap = *cap ? 2 * *cap : 64;
		struct fy_range *p = realloc(res->ranges, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		res->ranges = p;
		*cap = ncap;
	}
	res->ranges[res->nranges++] = (struct fy_range){ off, len };
	return 0;
}

int fy_diff(struct fy_repo *r, const uint8_t a[FY_SNAP_ID_LEN], const uint8_t b[FY_SNAP_ID_LEN],
	    struct fy_diff_result *res, char *err, size_t errlen)
{
	Ferry__V1__Manifest *ma = NULL, *mb = NULL;
	size_t cap = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	rc = fy_manifest_read(r, a, &ma, err, errlen);
	if (rc < 0)
		return rc;
	rc = fy_manifest_read(r, b, &mb, err, errlen);
	if (rc < 0)
		goto out;
	if (ma->chunk_size != mb->chunk_size) {
		snprintf(err, errlen, "the snapshots have different block sizes (%u and %u bytes)", ma->chunk_size,
			 mb->chunk_size);
		rc = -EINVAL;
		goto out;
	}
	res->a_size = ma->size;
	res->b_size = mb->size;
	res->chunk_size = mb->chunk_size;

	uint64_t cs = mb->chunk_size, nb = mb->n_block_crc32c, na = ma->n_block_crc32c;
	/* Blocks below `same` cover the same bytes in both snapshots. */
	uint64_t same = ma->size == mb->size ? nb : (ma->size < mb->size ? ma->size : mb->size) / cs;

	for (uint64_t i = 0; i < nb; i++) {
		bool differs = i >= same || i >= na || ma->block_crc32c[i] != mb->block_crc32c[i] ||
			       memcmp(ma->chunk_ids.data + i * FY_ID_LEN, mb->chunk_ids.data + i * FY_ID_LEN,
				      FY_ID_LEN) != 0;

		if (!differs)
			continue;
		uint64_t off = i * cs, len = mb->size - off < cs ? mb->size - off : cs;

		if (add_range(res, &cap, off, len) < 0) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		res->changed_bytes += len;
	}
out:
	if (rc < 0) {
		free(res->ranges);
		res->ranges = NULL;
		res->nranges = 0;
	}
	if (ma)
		ferry__v1__manifest__free_unpacked(ma, NULL);
	if (mb)
		ferry__v1__manifest__free_unpacked(mb, NULL);
	return rc;
}
