/* AWS Signature Version 4 for S3 requests (docs/store.md, "s3://").
 *
 * The caller builds the request: an encoded path, a canonical query string
 * (sorted, percent-encoded: fy_s3_uri_encode), the headers to sign and the
 * payload hash; fy_sigv4_sign() returns the Authorization header's value.
 * Pure functions: no clock, no I/O (tests/unit/test_s3.c checks them against
 * the published examples). */
#ifndef FERRY_SIGV4_H
#define FERRY_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#define FY_SHA256_HEX_LEN 64
#define FY_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct fy_sig_header {
	const char *name;  /* lower case */
	const char *value; /* no leading or trailing spaces */
};

struct fy_sig_req {
	const char *method;       /* "GET", "PUT", ... */
	const char *path;         /* encoded: "/bucket/key" or "/key" */
	const char *query;        /* canonical query string, "" for none */
	const struct fy_sig_header *headers; /* sorted by name; must include host and x-amz-date */
	size_t nheaders;
	const char *payload_hash; /* hex SHA-256 or "UNSIGNED-PAYLOAD" */
	const char *amz_date;     /* "20130524T000000Z" */
	const char *region;
	const char *service;      /* "s3" */
	const char *access_key, *secret_key;
};

/* Write "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
 * into out.  Returns its length, or -ENOSPC / -EINVAL / -EIO. */
int fy_sigv4_sign(const struct fy_sig_req *r, char *out, size_t outlen);

/* Percent-encode s the way SigV4 expects: unreserved bytes (A-Z a-z 0-9 - _ . ~)
 * kept, every other byte %XX in upper case; '/' kept when keep_slash.
 * Returns the length written (out NUL-terminated), or -ENOSPC. */
int fy_s3_uri_encode(const char *s, size_t n, int keep_slash, char *out, size_t outlen);

/* Lower-case hex SHA-256 of buf into hex (65 bytes). */
void fy_sha256_hex(const void *buf, size_t len, char hex[FY_SHA256_HEX_LEN + 1]);

#endif
