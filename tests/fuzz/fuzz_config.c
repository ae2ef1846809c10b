/* fuzz_config: the object "config" (plain, readable before any key is
 * known: whoever can write to the store can write it) through fy_repo_open
 * (mover/repo/repo.c): protobuf-c's unpack of a Ferry.v1.RepoConfig, then
 * the checks of its version, id, chunk size, compression and encryption,
 * and the unlock that follows with the key objects beside it.  The
 * repository is a real file:// store in a scratch directory; its keys/ hold
 * two valid key objects of the harness's repository (one wrapped with the
 * raw key the harness opens with, one in the clear as unencrypted
 * repositories have it).
 *
 * Input: the config object's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static char url[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t key[512];
	size_t n;

	(void)argc;
	(void)argv;
	snprintf(url, sizeof(url), "%s/repo", fz_dir());
	if (!(n = fz_key_object(FERRY__V1__KDF__KDF_RAW, key, sizeof(key))) ||
	    fz_write(url, "keys/00000000000000aa", key, n))
		fz_fail("cannot write the raw key object");
	if (!(n = fz_key_object(FERRY__V1__KDF__KDF_NONE, key, sizeof(key))) ||
	    fz_write(url, "keys/00000000000000bb", key, n))
		fz_fail("cannot write the plain key object");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct fy_secret sec = { .raw_key = fz_raw_key };
	struct fy_repo *r = NULL;
	char err[1024] = "";

	if (fz_write(url, "config", data, size))
		fz_fail("cannot write the config object");
	int rc = fy_repo_open(url, &sec, &r, err, sizeof(err));

	if (rc < 0) {
		if (!err[0])
			fz_fail("fy_repo_open failed (%d) without saying why", rc);
		return 0;
	}
	if (r->chunk_size < FY_MIN_CHUNK || r->chunk_size > FY_MAX_CHUNK || (r->chunk_size & (r->chunk_size - 1)))
		fz_fail("opened a repository with chunk size %u", r->chunk_size);
	if (r->compression != FERRY__V1__COMPRESSION__COMPRESSION_NONE &&
	    r->compression != FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE)
		fz_fail("opened a repository with compression %d", r->compression);
	if (r->level < 0 || r->level > 3)
		fz_fail("opened a repository with compression level %d", r->level);
	if (memcmp(r->data_key, fz_data_key, FY_KEY_LEN) || memcmp(r->id_key, fz_id_key, FY_KEY_LEN))
		fz_fail("opened a repository with another master key");
	fy_repo_close(r);
	return 0;
}
