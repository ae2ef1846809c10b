/* fuzz_ranges: a ranges file ("OFFSET LENGTH" lines, docs/cbt.md: the
 * output of `ferry diff` or of a CSI GetMetadataDelta, given to `backup
 * --changed-ranges`) through the range-list change source
 * (mover/cbt/ranges.c): its line reader, number parser, range checks and
 * the sorted merge into the bitmap of changed blocks.  The file is a memfd,
 * opened by its /proc path as a user's file would be.
 *
 * Input: the volume size (8 bytes, little-endian; cut so that the bitmap
 * has at most 2^24 blocks), the block size (4 bytes; 0 is tried too), then
 * the file's text. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cbt/cbt.h"
#include "fuzz.h"

#define MAX_BITS (1ull << 24)

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = memfd_create("ranges", MFD_CLOEXEC);
	if (fd < 0)
		fz_fail("memfd_create: %s", strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint64_t vsize = fz_u64(&in), nbits;
	uint32_t cs = fz_u32(&in);
	struct fy_cbt_req req = { .source = "fuzz", .chunk_size = cs, .arg = path };
	struct fy_bitmap bm;
	char why[512] = "";

	if (cs && vsize / cs >= MAX_BITS)
		vsize %= (uint64_t)cs * MAX_BITS;
	req.size = vsize;
	nbits = cs ? vsize / cs + (vsize % cs != 0) : 1;
	if (ftruncate(fd, 0) || pwrite(fd, in.p, in.n, 0) != (ssize_t)in.n)
		fz_fail("writing the memfd: %s", strerror(errno));
	if (fy_bitmap_init(&bm, nbits))
		return 0;
	int rc = fy_cbt_range_list.changed(&req, &bm, why, sizeof(why));

	if (rc < 0 && !why[0])
		fz_fail("the range list failed (%d) without saying why", rc);
	if (rc == 0 && !cs)
		fz_fail("the range list accepted a block size of 0");
	/* No bit past the volume's last block is ever set. */
	if (nbits % 64 && bm.w[nbits / 64] >> (nbits % 64))
		fz_fail("a bit past block %llu is set", (unsigned long long)nbits);
	fy_bitmap_free(&bm);
	return 0;
}
