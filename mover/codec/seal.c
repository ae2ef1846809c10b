/* Keyed chunk ids (HMAC-SHA256), sealing (AES-256-GCM), random bytes and
 * scrypt, all through OpenSSL 3's EVP interfaces.
 *
 * The algorithms are fetched once per process (the fetched objects are
 * immutable and shared by all threads); each call makes its own context.
 * Keeping contexts per thread was measured: under 1% at 4 MiB and about
 * 0.2 us a call at 4 KiB, not worth per-thread state (docs/codec.md). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "codec.h"

/* EVP update calls take an int length: feed at most 1 GiB at a time. */
#define EVP_STEP ((size_t)1 << 30)
/* GCM limit for one message under one nonce: 2^39 - 256 bits. */
#define GCM_MAX_PLAIN ((((uint64_t)1) << 36) - 32)

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MAC *alg_hmac;
static EVP_CIPHER *alg_gcm;

static void algs_init(void)
{
	alg_hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	alg_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static int algs_ready(void)
{
	pthread_once(&algs_once, algs_init);
	return alg_hmac && alg_gcm;
}

int fy_chunk_id(const uint8_t key[FY_KEY_LEN], const void *data, size_t len, uint8_t id[FY_ID_LEN])
{
	EVP_MAC_CTX *mc;
	OSSL_PARAM params[2];
	size_t idlen = 0;
	int ret = -EIO;

	if (!algs_ready())
		return -ENOSYS;
	mc = EVP_MAC_CTX_new(alg_hmac);
	if (!mc)
		return -ENOMEM;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(mc, key, FY_KEY_LEN, params))
		goto out;
	if (len && !EVP_MAC_update(mc, data, len))
		goto out;
	if (EVP_MAC_final(mc, id, &idlen, FY_ID_LEN) && idlen == FY_ID_LEN)
		ret = 0;
out:
	EVP_MAC_CTX_free(mc);
	return ret;
}

/* Authenticate aad in int-sized pieces (aad goes through Update with out NULL). */
static int gcm_aad(EVP_CIPHER_CTX *cx, const void *aad, size_t aadlen)
{
	const unsigned char *p = aad;
	int n;

	while (aadlen > 0) {
		size_t step = aadlen < EVP_STEP ? aadlen : EVP_STEP;

		if (!EVP_CipherUpdate(cx, NULL, &n, p, (int)step))
			return -EIO;
		p += step;
		aadlen -= step;
	}
	return 0;
}

static int gcm_data(EVP_CIPHER_CTX *cx, const void *in, size_t len, uint8_t *out)
{
	const unsigned char *p = in;
	int n;

	while (len > 0) {
		size_t step = len < EVP_STEP ? len : EVP_STEP;

		if (!EVP_CipherUpdate(cx, out, &n, p, (int)step) || (size_t)n != step)
			return -EIO;
		p += step;
		out += step;
		len -= step;
	}
	return 0;
}

int fy_seal(const uint8_t key[FY_KEY_LEN], const void *aad, size_t aadlen,
	    const void *plain, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *cx;
	uint8_t *nonce = out, *ct = out + FY_NONCE_LEN, *tag = ct + len;
	int n, ret;

	if (len > GCM_MAX_PLAIN)
		return -EINVAL;
	if (!algs_ready())
		return -ENOSYS;
	/* A fresh random 96-bit nonce per message (collision odds stay
	 * negligible up to ~2^32 messages under one key). */
	if (RAND_bytes(nonce, FY_NONCE_LEN) != 1)
		return -EIO;
	cx = EVP_CIPHER_CTX_new();
	if (!cx)
		return -ENOMEM;
	/* Default GCM IV length is 12 bytes, the FY_NONCE_LEN we use. */
	ret = EVP_CipherInit_ex2(cx, alg_gcm, key, nonce, 1, NULL) ? 0 : -EIO;
	if (!ret)
		ret = gcm_aad(cx, aad, aadlen);
	if (!ret)
		ret = gcm_data(cx, plain, len, ct);
	if (!ret && !EVP_CipherFinal_ex(cx, ct + len, &n))
		ret = -EIO;
	if (!ret && !EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, FY_TAG_LEN, tag))
		ret = -EIO;
	EVP_CIPHER_CTX_free(cx);
	return ret;
}

int fy_unseal(const uint8_t key[FY_KEY_LEN], const void *aad, size_t aadlen,
	      const uint8_t *in, size_t inlen, void *plain)
{
	EVP_CIPHER_CTX *cx;
	const uint8_t *nonce = in, *ct = in + FY_NONCE_LEN;
	uint8_t tag[FY_TAG_LEN];
	size_t len;
	int n, ret;

	if (inlen < FY_SEAL_OVERHEAD || inlen - FY_SEAL_OVERHEAD > GCM_MAX_PLAIN)
		return -EBADMSG;
	len = inlen - FY_SEAL_OVERHEAD;
	if (!algs_ready())
		return -ENOSYS;
	cx = EVP_CIPHER_CTX_new();
	if (!cx)
		return -ENOMEM;
	/* Copy the tag first: plain may overlap in (in-place open). */
	memcpy(tag, ct + len, FY_TAG_LEN);
	ret = EVP_CipherInit_ex2(cx, alg_gcm, key, nonce, 0, NULL) ? 0 : -EIO;
	if (!ret)
		ret = gcm_aad(cx, aad, aadlen);
	if (!ret)
		ret = gcm_data(cx, ct, len, plain);
	if (!ret && !EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, FY_TAG_LEN, tag))
		ret = -EIO;
	if (!ret && EVP_CipherFinal_ex(cx, (uint8_t *)plain + len, &n) != 1)
		ret = -EBADMSG;
	EVP_CIPHER_CTX_free(cx);
	/* Never leave unverified plaintext behind. */
	if (ret)
		OPENSSL_cleanse(plain, len);
	return ret;
}

int fy_random(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		size_t n = len < EVP_STEP ? len : EVP_STEP;

		if (RAND_bytes(p, (int)n) != 1)
			return -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

int fy_scrypt(const char *password, size_t pwlen, const uint8_t *salt, size_t saltlen,
	      unsigned log2n, unsigned r, unsigned p, uint8_t key[FY_KEY_LEN])
{
	uint64_t n, mem;

	/* RFC 7914: N a power of two > 1, N < 2^(128 r / 8), r p < 2^30.
	 * Keep N below 2^32 as well: that is 4 TiB of memory at r = 1. */
	if (log2n < 1 || log2n > 31 || r < 1 || p < 1 || (uint64_t)r * p >= (1u << 30))
		return -EINVAL;
	if (log2n >= 16 * (uint64_t)r)
		return -EINVAL;
	n = (uint64_t)1 << log2n;
	/* OpenSSL needs 128 r (N + 2) bytes for V plus 128 r p for B; its
	 * default cap (32 MiB) is too small for N = 2^20, r = 8 (1 GiB). */
	mem = 128 * (uint64_t)r * (n + 2) + 128 * (uint64_t)r * p;
	if (mem / 128 / r < n)
		return -EINVAL;
	if (mem > SIZE_MAX / 2)
		return -ENOMEM;
	if (!EVP_PBE_scrypt(password, pwlen, salt, saltlen, n, r, p, mem + 4096,
			    key, FY_KEY_LEN))
		return -ENOMEM; /* parameters were checked: allocation failed */
	return 0;
}
