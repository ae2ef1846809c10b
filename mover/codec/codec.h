/* Codecs: CRC32C (ISA-L), deflate (ISA-L igzip), sealing (OpenSSL AES-256-GCM)
 * and keyed chunk ids (HMAC-SHA256).  The caller supplies every buffer;
 * nothing here keeps state between calls.  Functions return 0 or a positive
 * length on success and a negative errno on failure. */
#ifndef FERRY_CODEC_H
#define FERRY_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FY_KEY_LEN 32
#define FY_ID_LEN 32
#define FY_NONCE_LEN 12
#define FY_TAG_LEN 16
#define FY_SEAL_OVERHEAD (FY_NONCE_LEN + FY_TAG_LEN)

/* CRC32C (Castagnoli).  fy_crc32c(0, p, n) is the standard value
 * ("123456789" -> 0xe3069283); chain by passing the previous result. */
uint32_t fy_crc32c(uint32_t crc, const void *buf, size_t len);

/* Raw deflate (RFC 1951) with igzip at level 0..3 into out (outcap bytes).
 * Returns the compressed length, or -ENOSPC when the result would not be
 * smaller than inlen (the caller then stores the block raw) or would not fit
 * in outcap with 8 bytes to spare (igzip's one-shot mode needs the slack).
 * -EINVAL for a level outside 0..3 or inlen above 4 GiB - 1.  Thread-safe. */
ssize_t fy_deflate(int level, const void *in, size_t inlen, void *out, size_t outcap);

/* Inflate raw deflate data; the result must be exactly outlen bytes.
 * Returns outlen, or -EBADMSG when the stream is corrupt or of another length. */
ssize_t fy_inflate(const void *in, size_t inlen, void *out, size_t outlen);

/* True when all len bytes are zero (fast). */
int fy_is_zero(const void *buf, size_t len);

/* HMAC-SHA256 of data under key: the chunk id. */
int fy_chunk_id(const uint8_t key[FY_KEY_LEN], const void *data, size_t len, uint8_t id[FY_ID_LEN]);

/* AES-256-GCM.  out receives nonce (fresh, random) | ciphertext | tag, that is
 * len + FY_SEAL_OVERHEAD bytes.  aad is authenticated, not stored.  plain may
 * be out + FY_NONCE_LEN (in place), no other overlap.  Returns 0. */
int fy_seal(const uint8_t key[FY_KEY_LEN], const void *aad, size_t aadlen,
	    const void *plain, size_t len, uint8_t *out);

/* Reverse of fy_seal: in is nonce | ciphertext | tag (inlen bytes), plain
 * receives inlen - FY_SEAL_OVERHEAD bytes.  -EBADMSG when authentication fails
 * or inlen < FY_SEAL_OVERHEAD; plain is then zeroed, never left holding
 * unverified data.  plain may be in + FY_NONCE_LEN (in place).  Returns 0. */
int fy_unseal(const uint8_t key[FY_KEY_LEN], const void *aad, size_t aadlen,
	      const uint8_t *in, size_t inlen, void *plain);

/* Cryptographically strong random bytes. */
int fy_random(void *buf, size_t len);

/* scrypt(password, salt) -> 32-byte key.  log2n, r, p as in RFC 7914
 * (N = 2^log2n, 1 <= log2n <= 31); memory is 128 r (N + p + 2) bytes, 1 GiB
 * at log2n 20, r 8.  -EINVAL for parameters RFC 7914 forbids. */
int fy_scrypt(const char *password, size_t pwlen, const uint8_t *salt, size_t saltlen,
	      unsigned log2n, unsigned r, unsigned p, uint8_t key[FY_KEY_LEN]);

#endif
