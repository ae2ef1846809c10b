/* Helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c): reading
 * the fuzzer's bytes, a repository with a key the harness knows (so that it
 * can seal what the fuzzer made and the decoders behind the AEAD check are
 * what gets fuzzed), and a scratch directory per process.
 * docs/fuzzing.md describes every target and its input. */
#ifndef FERRY_FUZZ_H
#define FERRY_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

/* The fuzzer's bytes, taken from the front. */
struct fz_in {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fz_in *in)
{
	uint8_t v = 0;

	if (in->n) {
		v = in->p[0];
		in->p++;
		in->n--;
	}
	return v;
}

static inline uint32_t fz_u32(struct fz_in *in)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)fz_u8(in) << (8 * i);
	return v;
}

static inline uint64_t fz_u64(struct fz_in *in)
{
	uint64_t lo = fz_u32(in);

	return lo | (uint64_t)fz_u32(in) << 32;
}

/* Stop the process with a message: a property of a decoder's output that
 * must hold did not (libFuzzer keeps the input that did it). */
void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The known keys. */
extern const uint8_t fz_data_key[FY_KEY_LEN], fz_id_key[FY_KEY_LEN], fz_repo_id[16];
/* The snapshot id and lock id the harnesses name their objects with. */
extern const uint8_t fz_snap_id[FY_SNAP_ID_LEN];
/* A repository handle with the known keys and no store (enough for
 * fy_obj_seal / fy_obj_open); chunk size 4 MiB. */
void fz_repo(struct fy_repo *r, bool encrypted, bool deflate);

/* The secrets the harnesses open repositories with. */
extern const uint8_t fz_raw_key[FY_KEY_LEN];
#define FZ_PASSWORD "fuzz password"
/* A repository's objects as ferry writes them (proto/ferry.proto), the
 * repository id fz_repo_id and the master key fz_data_key || fz_id_key:
 * the packed RepoConfig (encrypted or not), and a packed KeyFile whose kdf
 * is FERRY__V1__KDF__KDF_NONE, _RAW (fz_raw_key) or _SCRYPT (FZ_PASSWORD,
 * N = 2^10, r = 1, p = 1).  Return the length written to out, or 0. */
size_t fz_config_object(bool encrypted, uint8_t *out, size_t cap);
size_t fz_key_object(int kdf, uint8_t *out, size_t cap);

/* A directory of this process (made on first use, removed at exit, or by
 * the next target to start if this one crashed), on tmpfs (/dev/shm) when
 * there is one: the agent's catalog and the file store fsync, which tmpfs
 * makes free. */
const char *fz_dir(void);
/* Write len bytes to dir/rel (directories made as needed, no fsync);
 * 0 or -errno. */
int fz_write(const char *dir, const char *rel, const void *buf, size_t len);
/* Remove a tree (no error if absent). */
void fz_rmtree(const char *path);

#endif
