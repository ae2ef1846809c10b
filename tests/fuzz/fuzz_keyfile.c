/* fuzz_keyfile: a key object keys/<id> (plain: whoever can write to the
 * store can add one) through fy_repo_open (mover/repo/repo.c): protobuf-c's
 * unpack of a Ferry.v1.KeyFile, the KDF and its parameters, the wrapping
 * key (scrypt of a password, or a raw key) and the AES-GCM unwrap of the
 * master key.  The repository is a real file:// store in a scratch
 * directory with a valid config and the fuzzer's key object as its only one.
 *
 * Input: flags (1 byte), then the key object's bytes.
 *   bit 0: open with the password FZ_PASSWORD; clear: with the raw key;
 *   bit 1: the config says unencrypted (ENCRYPTION_NONE).
 * scrypt with parameters ferry accepts but that cost more than 4 MiB of
 * memory (2^22 blocks of 32 r bytes can be 16 GiB) is legitimately slow:
 * such inputs are opened with the raw key, which stops before the KDF. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static char url[300];
static uint8_t cfg_enc[256], cfg_plain[256];
static size_t ncfg_enc, ncfg_plain;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(url, sizeof(url), "%s/repo", fz_dir());
	ncfg_enc = fz_config_object(true, cfg_enc, sizeof(cfg_enc));
	ncfg_plain = fz_config_object(false, cfg_plain, sizeof(cfg_plain));
	if (!ncfg_enc || !ncfg_plain)
		fz_fail("cannot make the config objects");
	return 0;
}

static bool costly(const uint8_t *p, size_t n)
{
	Ferry__V1__KeyFile *k = ferry__v1__key_file__unpack(NULL, n, p);
	bool c = false;

	if (k && k->kdf == FERRY__V1__KDF__KDF_SCRYPT && k->scrypt_log2_n < 64 && k->scrypt_r && k->scrypt_p)
		c = 128.0 * k->scrypt_r * (double)(1ull << k->scrypt_log2_n) * k->scrypt_p > 4.0 * (1 << 20);
	if (k)
		ferry__v1__key_file__free_unpacked(k, NULL);
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	struct fy_secret sec = { 0 };
	struct fy_repo *r = NULL;
	char err[1024] = "";

	if (flags & 2 ? fz_write(url, "config", cfg_plain, ncfg_plain) : fz_write(url, "config", cfg_enc, ncfg_enc))
		fz_fail("cannot write the config object");
	if (fz_write(url, "keys/00000000000000cc", in.p, in.n))
		fz_fail("cannot write the key object");
	if ((flags & 1) && !costly(in.p, in.n))
		sec.password = FZ_PASSWORD;
	else
		sec.raw_key = fz_raw_key;
	int rc = fy_repo_open(url, &sec, &r, err, sizeof(err));

	if (rc < 0) {
		if (!err[0])
			fz_fail("fy_repo_open failed (%d) without saying why", rc);
		return 0;
	}
	/* Only the real master key can come out of an authenticated unwrap; a
	 * key object in the clear gives whatever it holds (unencrypted only). */
	if (r->encrypted && (memcmp(r->data_key, fz_data_key, FY_KEY_LEN) || memcmp(r->id_key, fz_id_key, FY_KEY_LEN)))
		fz_fail("an encrypted repository opened with another master key");
	fy_repo_close(r);
	return 0;
}
