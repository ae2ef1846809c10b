/* AWS Signature Version 4 (header-based), written from the published
 * algorithm: canonical request -> string to sign -> HMAC chain of the date,
 * region, service and "aws4_request" -> signature. */
#include "store/sigv4.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

void fy_sha256_hex(const void *buf, size_t len, char out[FY_SHA256_HEX_LEN + 1])
{
	uint8_t md[32];
	unsigned int n = 0;

	EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL);
	hex(md, 32, out);
}

int fy_s3_uri_encode(const char *s, size_t n, int keep_slash, char *out, size_t outlen)
{
	static const char d[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			    c == '_' || c == '.' || c == '~' || (c == '/' && keep_slash);

		if (o + (plain ? 1 : 3) >= outlen)
			return -ENOSPC;
		if (plain) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = d[c >> 4];
			out[o++] = d[c & 15];
		}
	}
	if (o >= outlen)
		return -ENOSPC;
	out[o] = '\0';
	return (int)o;
}

static int mac(const void *key, size_t klen, const char *msg, uint8_t out[32])
{
	unsigned int n = 0;

	return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n) && n == 32
		       ? 0
		       : -EIO;
}

/* Append to a fixed buffer; *o tracks the length, -ENOSPC on overflow. */
static int put(char *buf, size_t cap, size_t *o, const char *s)
{
	size_t n = strlen(s);

	if (*o + n >= cap)
		return -ENOSPC;
	memcpy(buf + *o, s, n + 1);
	*o += n;
	return 0;
}

int fy_sigv4_sign(const struct fy_sig_req *r, char *out, size_t outlen)
{
	char creq[8192], sts[512], signed_hdrs[1024], scope[128], chash[FY_SHA256_HEX_LEN + 1], sig[65];
	char ksecret[256], date[9];
	uint8_t k[32];
	size_t o = 0, so = 0;
	int rc = 0;

	if (strlen(r->amz_date) != 16 || strlen(r->secret_key) + 5 > sizeof(ksecret))
		return -EINVAL;
	memcpy(date, r->amz_date, 8);
	date[8] = '\0';
	signed_hdrs[0] = '\0';
	rc |= put(creq, sizeof(creq), &o, r->method);
	rc |= put(creq, sizeof(creq), &o, "\n");
	rc |= put(creq, sizeof(creq), &o, r->path);
	rc |= put(creq, sizeof(creq), &o, "\n");
	rc |= put(creq, sizeof(creq), &o, r->query);
	rc |= put(creq, sizeof(creq), &o, "\n");
	for (size_t i = 0; i < r->nheaders; i++) {
		if (i && strcmp(r->headers[i - 1].name, r->headers[i].name) >= 0)
			return -EINVAL; /* unsorted or repeated */
		rc |= put(creq, sizeof(creq), &o, r->headers[i].name);
		rc |= put(creq, sizeof(creq), &o, ":");
		rc |= put(creq, sizeof(creq), &o, r->headers[i].value);
		rc |= put(creq, sizeof(creq), &o, "\n");
		if (i)
			rc |= put(signed_hdrs, sizeof(signed_hdrs), &so, ";");
		rc |= put(signed_hdrs, sizeof(signed_hdrs), &so, r->headers[i].name);
	}
	rc |= put(creq, sizeof(creq), &o, "\n");
	rc |= put(creq, sizeof(creq), &o, signed_hdrs);
	rc |= put(creq, sizeof(creq), &o, "\n");
	rc |= put(creq, sizeof(creq), &o, r->payload_hash);
	if (rc)
		return -ENOSPC;
	fy_sha256_hex(creq, o, chash);

	if (snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, r->region, r->service) >= (int)sizeof(scope))
		return -ENOSPC;
	if (snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", r->amz_date, scope, chash) >= (int)sizeof(sts))
		return -ENOSPC;

	snprintf(ksecret, sizeof(ksecret), "AWS4%s", r->secret_key);
	if (mac(ksecret, strlen(ksecret), date, k) || mac(k, 32, r->region, k) || mac(k, 32, r->service, k) ||
	    mac(k, 32, "aws4_request", k) || mac(k, 32, sts, k)) {
		OPENSSL_cleanse(ksecret, sizeof(ksecret));
		return -EIO;
	}
	OPENSSL_cleanse(ksecret, sizeof(ksecret));
	hex(k, 32, sig);
	OPENSSL_cleanse(k, sizeof(k));
	int n = snprintf(out, outlen, "AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=%s,Signature=%s", r->access_key,
			 scope, signed_hdrs, sig);

	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}
