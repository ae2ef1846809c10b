/* fuzz_manifest: a manifest behind the AEAD check.  The fuzzer writes the
 * plain bytes (a Ferry.v1.Manifest, proto/ferry.proto); the harness seals
 * them as snapshots/<id> would be (fy_obj_seal, with the known key), and
 * fy_manifest_decode (mover/repo/manifest.c: what fy_manifest_read does
 * after the store's get) opens, decodes (protobuf-c) and verifies them.
 * What it accepts must be what restore, check and diff may rely on: the
 * snapshot id, a chunk size they can use, and a block table of exactly
 * ceil(size / chunk_size) blocks, each of which holds at least one byte.
 *
 * Input: flags (1 byte), then the plain manifest.
 *   bit 0: an encrypted repository (sealed); clear: unencrypted;
 *   bit 1: the repository compresses (the object body is deflated). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	struct fy_repo r;
	Ferry__V1__Manifest *m = NULL;
	char err[512] = "";
	uint8_t *obj = malloc(FY_OBJ_MAX(in.n));

	if (!obj)
		return 0;
	fz_repo(&r, flags & 1, flags & 2);
	ssize_t n = fy_obj_seal(&r, "FYM1", fz_snap_id, FY_SNAP_ID_LEN, in.p, in.n, fy_crc32c(0, in.p, in.n), 1, obj);

	if (n < 0)
		fz_fail("fy_obj_seal of %zu bytes failed: %zd", in.n, n);
	int rc = fy_manifest_decode(&r, fz_snap_id, obj, (size_t)n, &m, err, sizeof(err));

	free(obj);
	if (rc < 0) {
		if (!err[0])
			fz_fail("fy_manifest_decode failed (%d) without saying why", rc);
		return 0;
	}
	uint64_t cs = m->chunk_size, nb = m->n_block_crc32c, want = cs ? m->size / cs + (m->size % cs != 0) : 0;

	if (m->snapshot_id.len != FY_SNAP_ID_LEN || memcmp(m->snapshot_id.data, fz_snap_id, FY_SNAP_ID_LEN))
		fz_fail("accepted a manifest of another snapshot id");
	if (cs < FY_MIN_CHUNK || cs > FY_MAX_CHUNK)
		fz_fail("accepted chunk size %llu", (unsigned long long)cs);
	if (nb != want)
		fz_fail("accepted %llu blocks for a %llu-byte volume in %llu-byte blocks (%llu needed)",
			(unsigned long long)nb, (unsigned long long)m->size, (unsigned long long)cs,
			(unsigned long long)want);
	if (m->chunk_ids.len != nb * FY_ID_LEN)
		fz_fail("accepted %zu bytes of chunk ids for %llu blocks", m->chunk_ids.len, (unsigned long long)nb);
	/* Walk the blocks as restore does: each covers [i cs, min(size, (i+1) cs)). */
	for (uint64_t i = 0; i < nb; i++) {
		uint64_t off = i * cs, len = m->size - off < cs ? m->size - off : cs;

		if (off >= m->size || !len)
			fz_fail("block %llu of a %llu-byte volume is empty", (unsigned long long)i,
				(unsigned long long)m->size);
		(void)m->block_crc32c[i];
		(void)m->chunk_ids.data[i * FY_ID_LEN + FY_ID_LEN - 1];
	}
	/* Strings and labels are read by 'ferry snapshots' and the agent. */
	volatile size_t sum = strlen(m->volume) + strlen(m->hostname) + strlen(m->source);

	for (size_t i = 0; i < m->n_labels; i++)
		sum += strlen(m->labels[i]->key) + strlen(m->labels[i]->value);
	if (m->stats)
		sum += strlen(m->stats->change_source);
	(void)sum;
	ferry__v1__manifest__free_unpacked(m, NULL);
	return 0;
}
