/* fuzz_lock: a lock object locks/<id> (mover/repo/lock.c) behind the AEAD
 * check.  The fuzzer writes a Ferry.v1.Lock (proto/ferry.proto); the
 * harness seals it with the known key as a lock holder would, puts it in a
 * real file:// store in a scratch directory, and lists the repository's
 * locks as `ferry unlock` and every lock taker do (fy_lock_list: the read,
 * open, protobuf-c unpack and the staleness judgement), then describes each
 * (fy_lock_describe, what the user reads).
 *
 * Input: flags (1 byte), then the plain Lock message (or the raw object).
 *   bit 0: the bytes are the object itself, not sealed by the harness;
 *   bit 1: an unencrypted repository;
 *   bit 2: the repository compresses (the sealed body is deflated);
 *   bit 3: the object is named with a key that is not 32 hex digits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "repo/lock.h"

static const uint8_t lock_id[FY_LOCK_ID_LEN] = { 0x10, 0x0c, 0x10, 0x0c, 0x10, 0x0c, 0x10, 0x0c,
						 0x10, 0x0c, 0x10, 0x0c, 0x10, 0x0c, 0x10, 0x0c };
static char url[300], lock_key[64];
static struct fy_store *store;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512], hex[2 * FY_LOCK_ID_LEN + 1];

	(void)argc;
	(void)argv;
	snprintf(url, sizeof(url), "%s/repo", fz_dir());
	fy_hex(lock_id, sizeof(lock_id), hex);
	snprintf(lock_key, sizeof(lock_key), "locks/%s", hex);
	if (fz_write(url, "config", "", 0) || fy_store_open(url, &store, err, sizeof(err)))
		fz_fail("cannot open a file store at %s", url);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	const char *key = flags & 8 ? "locks/not-a-lock-name" : lock_key;
	struct fy_lock_info *locks = NULL;
	struct fy_repo r;
	size_t n = 0;
	char err[512] = "", line[1024];
	uint8_t *obj = malloc(FY_OBJ_MAX(in.n));
	ssize_t len = (ssize_t)in.n;

	if (!obj)
		return 0;
	fz_repo(&r, !(flags & 2), flags & 4);
	r.store = store;
	if (flags & 1)
		memcpy(obj, in.p, in.n);
	else
		len = fy_obj_seal(&r, "FYL1", lock_id, FY_LOCK_ID_LEN, in.p, in.n, fy_crc32c(0, in.p, in.n), 1, obj);
	if (len < 0)
		fz_fail("fy_obj_seal of %zu bytes failed: %zd", in.n, len);
	for (int i = 0; i < 2; i++) {
		char path[400];

		snprintf(path, sizeof(path), "%s/%s", url, i ? lock_key : "locks/not-a-lock-name");
		unlink(path);
	}
	if (fz_write(url, key, obj, (size_t)len))
		fz_fail("cannot write %s", key);
	free(obj);
	int rc = fy_lock_list(&r, &locks, &n, err, sizeof(err));

	if (rc < 0)
		fz_fail("fy_lock_list failed on one lock object: %s", err);
	if (n != 1)
		fz_fail("fy_lock_list found %zu locks, not the one there is", n);
	for (size_t i = 0; i < n; i++) {
		fy_lock_describe(&locks[i], line, sizeof(line));
		if (locks[i].corrupt && !locks[i].why[0])
			fz_fail("a lock is corrupt without a reason");
		if (strlen(locks[i].command) >= sizeof(locks[i].command) || strlen(locks[i].hostname) >= sizeof(locks[i].hostname))
			fz_fail("a lock's strings overflow their fields");
	}
	free(locks);
	return 0;
}
