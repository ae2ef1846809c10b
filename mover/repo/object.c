/* Sealed objects: the framing shared by chunks and manifests (docs/FORMAT.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/repo.h"

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void fy_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse exactly 2n hex digits. */
int fy_unhex(const char *s, uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	return s[2 * n] == '\0' ? 0 : -EINVAL;
}

void fy_chunk_key(const uint8_t id[FY_ID_LEN], char key[80])
{
	char hex[2 * FY_ID_LEN + 1];

	fy_hex(id, FY_ID_LEN, hex);
	snprintf(key, 80, "chunks/%.2s/%s", hex, hex);
}

/* The length of the printable UTF-8 character at s, or 0 when s starts a
 * control character (C0, DEL, C1), bytes that are not UTF-8, or the end. */
size_t fy_printable_char(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned char c = p[0];
	size_t n;
	unsigned lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return c >= 0x20 && c != 0x7f ? 1 : 0;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xc2)
		lo = 0xa0; /* U+0080..U+009F: the C1 controls */
	else if (c == 0xe0)
		lo = 0xa0; /* overlong */
	else if (c == 0xed)
		hi = 0x9f; /* surrogates */
	else if (c == 0xf0)
		lo = 0x90; /* overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* above U+10FFFF */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

int fy_printable(const char *s, size_t *at)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; p[i];) {
		size_t n = fy_printable_char((const char *)p + i);

		if (!n) {
			if (at)
				*at = i;
			return -EINVAL;
		}
		i += n;
	}
	return 0;
}

const char *fy_escape(const char *s, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t o = 0;

	if (!outlen)
		return out;
	for (size_t i = 0; p[i];) {
		size_t n = fy_printable_char((const char *)p + i);
		char tmp[8];
		size_t tl;

		if (n == 1 && p[i] == '\\') {
			memcpy(tmp, "\\\\", 2);
			tl = 2;
		} else if (n) {
			memcpy(tmp, p + i, n);
			tl = n;
		} else {
			tl = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", p[i]);
			n = 1;
		}
		if (o + tl + 4 > outlen) { /* room for "..." and the NUL */
			if (o + 4 <= outlen) {
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(out + o, tmp, tl);
		o += tl;
		i += n;
	}
	out[o < outlen ? o : outlen - 1] = '\0';
	return out;
}

int fy_chunk_key_id(const char *key, uint8_t id[FY_ID_LEN])
{
	const char *name = strrchr(key, '/');
	char canon[80];

	if (!name || fy_unhex(name + 1, id, FY_ID_LEN) < 0)
		return -1;
	fy_chunk_key(id, canon);
	return strcmp(canon, key) == 0;
}

void fy_snap_key(const uint8_t id[FY_SNAP_ID_LEN], char key[64])
{
	char hex[2 * FY_SNAP_ID_LEN + 1];

	fy_hex(id, FY_SNAP_ID_LEN, hex);
	snprintf(key, 64, "snapshots/%s", hex);
}

/* aad = header || name (name is at most 32 bytes). */
static size_t make_aad(uint8_t aad[FY_OBJ_HDR_LEN + FY_ID_LEN], const uint8_t *hdr, const uint8_t *name,
		       size_t namelen)
{
	memcpy(aad, hdr, FY_OBJ_HDR_LEN);
	memcpy(aad + FY_OBJ_HDR_LEN, name, namelen);
	return FY_OBJ_HDR_LEN + namelen;
}

ssize_t fy_obj_seal(const struct fy_repo *r, const char magic[4], const uint8_t *name, size_t namelen,
		    const void *plain, size_t len, uint32_t crc, int level, uint8_t *out)
{
	/* The body is deflated straight to where it ends up (after the header,
	 * and after the nonce when sealed) and encrypted in place there: one
	 * pass over the compressed bytes, no scratch buffer. */
	uint8_t *dst = out + FY_OBJ_HDR_LEN + (r->encrypted ? FY_NONCE_LEN : 0);
	const uint8_t *body = plain;
	size_t blen = len;
	int comp = 0;
	uint8_t aad[FY_OBJ_HDR_LEN + FY_ID_LEN];

	if (len > UINT32_MAX - FY_OBJ_MAX(0) || namelen > FY_ID_LEN)
		return -EINVAL;
	if (r->compression == FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE && len > 0) {
		ssize_t c = fy_deflate(level, plain, len, dst, len);

		if (c >= 0) {
			body = dst;
			blen = (size_t)c;
			comp = 1;
		} else if (c != -ENOSPC) {
			return c;
		}
	}
	size_t payload = blen + (r->encrypted ? FY_SEAL_OVERHEAD : 0);

	memcpy(out, magic, 4);
	out[4] = FY_FORMAT_VERSION;
	out[5] = (uint8_t)comp;
	out[6] = r->encrypted ? 1 : 0;
	out[7] = 0;
	put_le32(out + 8, (uint32_t)len);
	put_le32(out + 12, crc);
	put_le32(out + 16, (uint32_t)payload);
	put_le32(out + 20, fy_crc32c(0, out, 20));
	if (r->encrypted) {
		int rc = fy_seal(r->data_key, aad, make_aad(aad, out, name, namelen), body, blen,
				 out + FY_OBJ_HDR_LEN);
		if (rc < 0)
			return rc;
	} else if (body != dst) {
		memcpy(dst, body, blen);
	}
	return (ssize_t)(FY_OBJ_HDR_LEN + payload);
}

ssize_t fy_obj_open(const struct fy_repo *r, const char magic[4], const uint8_t *name, size_t namelen,
		    uint8_t *obj, size_t objlen, void *plain, size_t cap, void *scratch,
		    char *why, size_t whylen)
{
	uint8_t aad[FY_OBJ_HDR_LEN + FY_ID_LEN];

	if (objlen < FY_OBJ_HDR_LEN) {
		snprintf(why, whylen, "truncated (%zu bytes, shorter than the header)", objlen);
		return -EBADMSG;
	}
	if (memcmp(obj, magic, 4) != 0) {
		snprintf(why, whylen, "bad magic (not a %.4s object)", magic);
		return -EBADMSG;
	}
	if (get_le32(obj + 20) != fy_crc32c(0, obj, 20)) {
		snprintf(why, whylen, "header checksum mismatch");
		return -EBADMSG;
	}
	if (obj[4] != FY_FORMAT_VERSION) {
		snprintf(why, whylen, "unknown object format version %u", obj[4]);
		return -EBADMSG;
	}
	uint32_t plen = get_le32(obj + 8), crc = get_le32(obj + 12), payload = get_le32(obj + 16);
	int comp = obj[5], enc = obj[6];

	if ((size_t)payload + FY_OBJ_HDR_LEN != objlen) {
		snprintf(why, whylen, "truncated or padded: header says %u payload bytes, object has %zu",
			 payload, objlen - FY_OBJ_HDR_LEN);
		return -EBADMSG;
	}
	if (comp > 1 || enc > 1 || plen > cap) {
		snprintf(why, whylen, "invalid header (compression %d, encryption %d, length %u)", comp, enc, plen);
		return -EBADMSG;
	}
	if (enc != (r->encrypted ? 1 : 0)) {
		snprintf(why, whylen, "encryption flag does not match the repository");
		return -EBADMSG;
	}
	uint8_t *body = obj + FY_OBJ_HDR_LEN;
	size_t blen = payload;

	if (enc) {
		if (payload < FY_SEAL_OVERHEAD) {
			snprintf(why, whylen, "truncated ciphertext");
			return -EBADMSG;
		}
		blen = payload - FY_SEAL_OVERHEAD;
		/* Decrypt in place is not offered by fy_unseal: decrypt into scratch
		 * (compressed body) or straight into plain (raw body). */
		uint8_t *dst = comp ? scratch : plain;

		if (!comp && blen != plen) {
			snprintf(why, whylen, "raw body of %zu bytes, header says %u", blen, plen);
			return -EBADMSG;
		}
		if (blen > cap) {
			snprintf(why, whylen, "body larger than its plain length");
			return -EBADMSG;
		}
		if (fy_unseal(r->data_key, aad, make_aad(aad, obj, name, namelen), body, payload, dst) < 0) {
			snprintf(why, whylen, "authentication failed (corrupt, or not this repository's)");
			return -EBADMSG;
		}
		body = dst;
	}
	if (comp) {
		if (fy_inflate(body, blen, plain, plen) != (ssize_t)plen) {
			snprintf(why, whylen, "body does not inflate to %u bytes", plen);
			return -EBADMSG;
		}
	} else if (body != plain) {
		if (blen != plen) {
			snprintf(why, whylen, "raw body of %zu bytes, header says %u", blen, plen);
			return -EBADMSG;
		}
		memcpy(plain, body, plen);
	}
	if (fy_crc32c(0, plain, plen) != crc) {
		snprintf(why, whylen, "crc32c mismatch on the plain data");
		return -EBADMSG;
	}
	return plen;
}

ssize_t fy_chunk_read(const struct fy_repo *r, const uint8_t id[FY_ID_LEN], void *plain, size_t cap,
		      void *scratch, unsigned flags, uint32_t *crc, char *err, size_t errlen)
{
	char key[80], why[160], hex[2 * FY_ID_LEN + 1];
	void *obj = NULL;
	size_t objlen = 0;
	uint8_t check[FY_ID_LEN];

	fy_chunk_key(id, key);
	fy_hex(id, FY_ID_LEN, hex);
	int rc = fy_store_get(r->store, key, 0, SIZE_MAX, &obj, &objlen);

	if (rc == -ENOENT) {
		snprintf(err, errlen, "chunk %s is missing from the repository", hex);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "reading chunk %s: %s", hex, fy_store_strerror(rc));
		return rc;
	}
	ssize_t n = fy_obj_open(r, "FYC1", id, FY_ID_LEN, obj, objlen, plain, cap, scratch, why, sizeof(why));

	if (n >= 0 && crc)
		*crc = get_le32((uint8_t *)obj + 12); /* verified against the plain bytes by fy_obj_open */
	free(obj);
	if (n < 0) {
		snprintf(err, errlen, "chunk %s is corrupt: %s", hex, why);
		return n;
	}
	if ((flags & FY_VERIFY_ID) &&
	    (fy_chunk_id(r->id_key, plain, (size_t)n, check) < 0 || memcmp(check, id, FY_ID_LEN) != 0)) {
		snprintf(err, errlen, "chunk %s is corrupt: its content does not match its id", hex);
		return -EBADMSG;
	}
	return n;
}
