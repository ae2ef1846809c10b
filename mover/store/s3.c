/* S3 store: a repository in a bucket, spoken to with libcurl and signed with
 * our own SigV4 (store/sigv4.c).  docs/store.md documents the URL:
 *
 *   s3://BUCKET[/PREFIX][?region=R&endpoint=URL&style=path|virtual&...]
 *
 * Every operation is blocking and thread-safe: each calling thread borrows
 * a curl handle from a pool (connections stay open between requests), so
 * fy_store_concurrency() callers keep that many requests in flight.
 *
 * Retries: transport failures (refused or reset connections, timeouts,
 * truncated bodies), 5xx but 501, 429 and the SlowDown/RequestTimeout codes are
 * retried with exponential backoff and full jitter.  A PUT or DELETE whose
 * 2xx status arrived is never sent again.
 *
 * Integrity: over HTTPS the payload is UNSIGNED-PAYLOAD and carries
 * x-amz-checksum-crc32c; over plain HTTP the signature covers the payload's
 * SHA-256.  Immutable targets (lock=...) send the Object Lock headers on
 * every object except locks/ (which must stay deletable).
 *
 * Secrets (the secret key, the session token, the Authorization header)
 * are never printed: curl's verbose mode is never turned on. */
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "store/s3xml.h"
#include "store/sigv4.h"

#define S3_KEY_MAX 1024
#define S3_MIN_PART (5u << 20)
#define S3_DEFAULT_CONNS 8
#define S3_MAX_CONNS 64
#define S3_DEFAULT_RETRIES 10

enum { LOCK_NONE, LOCK_GOVERNANCE, LOCK_COMPLIANCE };

struct s3_store {
	struct fy_store hdr;
	char *bucket;
	char *prefix;      /* "" or ending in '/' */
	char *region;
	char *base;        /* "http://127.0.0.1:8000": scheme and authority of requests */
	char *host;        /* the Host header (and what is signed) */
	bool path_style, https, insecure;
	char *ca_file;
	char *ak, *sk, *token;
	int lock;
	int64_t lock_secs;
	char *storage_class;
	unsigned conns, retries;
	unsigned list_page;  /* max-keys of a listing page; 0: the server's (1000) */
	size_t mp_threshold, part_size;
	long low_speed_secs;
	/* NOREPLACE puts as one conditional PUT (If-None-Match: *) rather than
	 * HEAD + PUT; cleared by conditional=0 or when the server answers 501. */
	_Atomic bool cond_put;
	/* as-of=TIME: a read-only view of a versioned bucket as it was then
	 * (each key's newest version not newer than TIME; hidden when that is
	 * a delete marker).  Milliseconds since the epoch, -1 when not set. */
	int64_t as_of_ms;
	char as_of[40];

	pthread_mutex_t mu; /* the idle handle pool */
	CURL *idle[S3_MAX_CONNS];
	unsigned nidle;
	_Atomic uint64_t requests, nretries, up, down;
};

static struct s3_store *s3_of(struct fy_store *s)
{
	return (struct s3_store *)s;
}

/* ---- configuration ---------------------------------------------------- */

static int parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (!strcasecmp(end, "k") || !strcasecmp(end, "KiB"))
		v <<= 10;
	else if (!strcasecmp(end, "m") || !strcasecmp(end, "MiB"))
		v <<= 20;
	else if (!strcasecmp(end, "g") || !strcasecmp(end, "GiB"))
		v <<= 30;
	else if (*end)
		return -EINVAL;
	*out = (size_t)v;
	return 0;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end || *out > max ? -EINVAL : 0;
}

/* Percent-decode in place. */
static void url_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
			char h[3] = { s[1], s[2], 0 };

			*o++ = (char)strtol(h, NULL, 16);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* The first line of a file (a Kubernetes Secret mounted as files), or NULL. */
static char *read_line_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char buf[4096];
	char *r = NULL;

	if (!f)
		return NULL;
	if (fgets(buf, sizeof(buf), f))
		r = strdup(trim(buf));
	fclose(f);
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

/* An AWS shared credentials file (INI): the keys of [profile]. */
static int read_credentials(struct s3_store *s, const char *path, const char *profile, char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[4096], want[256];
	bool in = false, found = false;

	if (!f) {
		fy_store_err(errbuf, errlen, "cannot read S3 credentials file %s: %s", path, strerror(errno));
		return -errno;
	}
	snprintf(want, sizeof(want), "[%s]", profile);
	while (fgets(line, sizeof(line), f)) {
		char *l = trim(line), *eq;

		if (*l == '[') {
			in = strcmp(l, want) == 0;
			found |= in;
			continue;
		}
		if (!in || !(eq = strchr(l, '=')))
			continue;
		*eq = '\0';
		char *k = trim(l), *v = trim(eq + 1);
		char **dst = !strcmp(k, "aws_access_key_id")	   ? &s->ak
			     : !strcmp(k, "aws_secret_access_key") ? &s->sk
			     : !strcmp(k, "aws_session_token")	   ? &s->token
								   : NULL;
		if (dst) {
			free(*dst);
			*dst = strdup(v);
		}
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (!found) {
		fy_store_err(errbuf, errlen, "S3 credentials file %s has no profile [%s]", path, profile);
		return -ENOENT;
	}
	if (!s->ak || !s->sk) {
		fy_store_err(errbuf, errlen, "S3 credentials file %s: profile [%s] lacks aws_access_key_id or "
			     "aws_secret_access_key", path, profile);
		return -EINVAL;
	}
	return 0;
}

/* Credentials, first found wins: credentials=FILE (profile=), secret-dir=DIR
 * (files AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the
 * environment, then the shared credentials file. */
static int load_credentials(struct s3_store *s, const char *file, const char *profile, const char *dir,
			    char *errbuf, size_t errlen)
{
	const char *p = profile ? profile : getenv("AWS_PROFILE") ? getenv("AWS_PROFILE") : "default";

	if (file)
		return read_credentials(s, file, p, errbuf, errlen);
	if (dir) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/AWS_ACCESS_KEY_ID", dir);
		s->ak = read_line_file(path);
		snprintf(path, sizeof(path), "%s/AWS_SECRET_ACCESS_KEY", dir);
		s->sk = read_line_file(path);
		snprintf(path, sizeof(path), "%s/AWS_SESSION_TOKEN", dir);
		s->token = read_line_file(path);
		if (!s->ak || !s->sk || !*s->ak || !*s->sk) {
			fy_store_err(errbuf, errlen, "S3 secret directory %s lacks the files AWS_ACCESS_KEY_ID and "
				     "AWS_SECRET_ACCESS_KEY", dir);
			return -ENOENT;
		}
		return 0;
	}
	if (getenv("AWS_ACCESS_KEY_ID") && getenv("AWS_SECRET_ACCESS_KEY")) {
		s->ak = strdup(getenv("AWS_ACCESS_KEY_ID"));
		s->sk = strdup(getenv("AWS_SECRET_ACCESS_KEY"));
		if (getenv("AWS_SESSION_TOKEN") && *getenv("AWS_SESSION_TOKEN"))
			s->token = strdup(getenv("AWS_SESSION_TOKEN"));
		return s->ak && s->sk ? 0 : -ENOMEM;
	}
	char path[PATH_MAX];
	const char *shared = getenv("AWS_SHARED_CREDENTIALS_FILE");

	if (!shared && getenv("HOME")) {
		snprintf(path, sizeof(path), "%s/.aws/credentials", getenv("HOME"));
		shared = path;
	}
	if (shared && access(shared, R_OK) == 0)
		return read_credentials(s, shared, p, errbuf, errlen);
	fy_store_err(errbuf, errlen, "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add "
		     "credentials=FILE or secret-dir=DIR to the URL");
	return -ENOKEY;
}

static int set_endpoint(struct s3_store *s, const char *ep, char *errbuf, size_t errlen)
{
	const char *auth;
	size_t n;

	if (!strncasecmp(ep, "https://", 8)) {
		s->https = true;
		auth = ep + 8;
	} else if (!strncasecmp(ep, "http://", 7)) {
		auth = ep + 7;
	} else {
		fy_store_err(errbuf, errlen, "S3 endpoint '%s' must begin with http:// or https://", ep);
		return -EINVAL;
	}
	n = strcspn(auth, "/?#");
	if (n == 0 || auth[n + (auth[n] == '/')] != '\0') {
		fy_store_err(errbuf, errlen, "S3 endpoint '%s' must be scheme://host[:port] with no path", ep);
		return -EINVAL;
	}
	if (s->path_style) {
		s->host = strndup(auth, n);
		if (asprintf(&s->base, "%s://%.*s", s->https ? "https" : "http", (int)n, auth) < 0)
			s->base = NULL;
	} else {
		if (asprintf(&s->host, "%s.%.*s", s->bucket, (int)n, auth) < 0)
			s->host = NULL;
		if (asprintf(&s->base, "%s://%s", s->https ? "https" : "http", s->host ? s->host : "") < 0)
			s->base = NULL;
	}
	return s->host && s->base ? 0 : -ENOMEM;
}

/* ---- HTTP ------------------------------------------------------------- */

struct rbuf {
	char *p;
	size_t len, cap;
};

struct call {
	const char *method;
	const char *key;       /* relative to the prefix; NULL: the bucket */
	const char *query;     /* canonical query string, "" for none */
	const uint8_t *body;
	size_t blen;
	const struct fy_digest *dg;
	struct fy_sig_header extra[8]; /* more headers to send and sign (lower case) */
	size_t nextra;
	const char *range;     /* "bytes=A-B" or NULL (sent, not signed) */
	bool want_body;        /* keep the response body */

	/* results */
	long status;
	struct rbuf resp;
	char etag[256], version[256], retain[64], mode[32];
	uint64_t clen;
	bool has_clen;
	char code[64], msg[256];
	/* upload cursor */
	size_t sent;
};

static CURL *take_handle(struct s3_store *s)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s->mu);
	if (s->nidle)
		h = s->idle[--s->nidle];
	pthread_mutex_unlock(&s->mu);
	return h ? h : curl_easy_init();
}

static void give_handle(struct s3_store *s, CURL *h)
{
	pthread_mutex_lock(&s->mu);
	if (s->nidle < S3_MAX_CONNS) {
		s->idle[s->nidle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	if (h)
		curl_easy_cleanup(h);
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct call *c = arg;
	size_t len = sz * n;

	if (!c->want_body && c->status >= 200 && c->status < 300)
		return len;
	if (c->resp.len + len + 1 > c->resp.cap) {
		size_t cap = c->resp.cap ? c->resp.cap : 4096;

		while (cap < c->resp.len + len + 1)
			cap *= 2;
		char *q = realloc(c->resp.p, cap);

		if (!q)
			return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
		c->resp.p = q;
		c->resp.cap = cap;
	}
	memcpy(c->resp.p + c->resp.len, p, len);
	c->resp.len += len;
	c->resp.p[c->resp.len] = '\0';
	return len;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
	size_t k = strlen(name);

	if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return;
	line += k + 1;
	n -= k + 1;
	while (n && isspace((unsigned char)*line))
		line++, n--;
	while (n && isspace((unsigned char)line[n - 1]))
		n--;
	snprintf(out, outlen, "%.*s", (int)n, line);
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct call *c = arg;
	size_t len = sz * n;
	char v[64] = "";

	if (len > 5 && !strncmp(p, "HTTP/", 5)) {
		/* A new response (after 100 Continue): forget the last one's headers. */
		const char *sp = memchr(p, ' ', len);

		c->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		c->etag[0] = c->version[0] = c->retain[0] = c->mode[0] = '\0';
		c->has_clen = false;
		return len;
	}
	header_value(p, len, "etag", c->etag, sizeof(c->etag));
	header_value(p, len, "x-amz-version-id", c->version, sizeof(c->version));
	header_value(p, len, "x-amz-object-lock-retain-until-date", c->retain, sizeof(c->retain));
	header_value(p, len, "x-amz-object-lock-mode", c->mode, sizeof(c->mode));
	header_value(p, len, "content-length", v, sizeof(v));
	if (*v) {
		c->clen = strtoull(v, NULL, 10);
		c->has_clen = true;
		/* Size the body buffer once for a GET of a whole chunk. */
		if (c->want_body && c->clen < (1ull << 31) && c->resp.cap < c->clen + 1 && c->status / 100 == 2) {
			char *q = realloc(c->resp.p, c->clen + 1);

			if (q) {
				c->resp.p = q;
				c->resp.cap = c->clen + 1;
			}
		}
	}
	return len;
}

static size_t on_read(char *p, size_t sz, size_t n, void *arg)
{
	struct call *c = arg;
	size_t len = sz * n, left = c->blen - c->sent;

	if (len > left)
		len = left;
	memcpy(p, c->body + c->sent, len);
	c->sent += len;
	return len;
}

/* curl rewinds the body when it must send it again on a new connection. */
static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct call *c = arg;

	if (origin != SEEK_SET || off < 0 || (size_t)off > c->blen)
		return CURL_SEEKFUNC_CANTSEEK;
	c->sent = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static int hdr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fy_sig_header *)a)->name, ((const struct fy_sig_header *)b)->name);
}

static void backoff(unsigned attempt)
{
	/* Full jitter: uniform in [0, min(10 s, 100 ms * 2^attempt)]. */
	double cap = 0.1 * (double)(1u << (attempt < 7 ? attempt : 7));
	unsigned r = 0;

	if (cap > 10)
		cap = 10;
	RAND_bytes((unsigned char *)&r, sizeof(r));
	double d = cap * (r / 4294967296.0);
	struct timespec ts = { (time_t)d, (long)((d - (time_t)d) * 1e9) };

	nanosleep(&ts, NULL);
}

/* Build the path (encoded) for a key: "/bucket/prefix+key" or "/prefix+key". */
static int object_path(const struct s3_store *s, const char *key, char *out, size_t outlen)
{
	char full[S3_KEY_MAX + 1], enc[3 * S3_KEY_MAX + 1];
	int n;

	if (!key)
		n = snprintf(out, outlen, s->path_style ? "/%s" : "/", s->bucket);
	else {
		if (snprintf(full, sizeof(full), "%s%s", s->prefix, key) >= (int)sizeof(full))
			return -ENAMETOOLONG;
		if (fy_s3_uri_encode(full, strlen(full), 1, enc, sizeof(enc)) < 0)
			return -ENAMETOOLONG;
		n = s->path_style ? snprintf(out, outlen, "/%s/%s", s->bucket, enc) : snprintf(out, outlen, "/%s", enc);
	}
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static bool retryable_status(const struct call *c)
{
	if (c->status == 501) /* Not Implemented does not get better */
		return false;
	if (c->status >= 500 || c->status == 429)
		return true;
	return !strcmp(c->code, "SlowDown") || !strcmp(c->code, "RequestTimeout") ||
	       !strcmp(c->code, "InternalError");
}

static bool retryable_curl(CURLcode e)
{
	switch (e) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SEND_FAIL_REWIND:
		return true;
	default:
		return false;
	}
}

static void amz_now(char date[17])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(date, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* One request, retried as the header comment says.  0 once a final response
 * arrived (c->status says which: the caller judges it), or -errno after a
 * transport failure that retries did not cure (the reason recorded with
 * fy_store_fail). */
static int s3_call(struct s3_store *s, struct call *c)
{
	char path[3 * S3_KEY_MAX + 256], url[4 * S3_KEY_MAX + 512], date[17], auth[1024];
	char phash[FY_SHA256_HEX_LEN + 1], hbuf[16][1200];
	struct fy_sig_header sh[16];
	CURLcode e = CURLE_OK;
	CURL *h;
	int rc;

	rc = object_path(s, c->key, path, sizeof(path));
	if (rc < 0)
		return fy_store_fail(rc, "S3 key too long: %s%s", s->prefix, c->key ? c->key : "");
	snprintf(url, sizeof(url), "%s%s%s%s", s->base, path, c->query[0] ? "?" : "", c->query);
	if (s->https) {
		snprintf(phash, sizeof(phash), "UNSIGNED-PAYLOAD");
	} else if (c->dg && (c->dg->have & FY_DG_SHA256)) {
		static const char d[] = "0123456789abcdef";

		for (int i = 0; i < 32; i++) {
			phash[2 * i] = d[c->dg->sha256[i] >> 4];
			phash[2 * i + 1] = d[c->dg->sha256[i] & 15];
		}
		phash[64] = '\0';
	} else {
		fy_sha256_hex(c->body ? (const void *)c->body : "", c->body ? c->blen : 0, phash);
	}
	h = take_handle(s);
	if (!h)
		return fy_store_fail(-ENOMEM, "cannot create a curl handle");
	for (unsigned attempt = 0;; attempt++) {
		struct curl_slist *hl = NULL;
		size_t nh = 0;

		c->status = 0;
		c->resp.len = 0;
		c->code[0] = c->msg[0] = '\0';
		c->sent = 0;
		amz_now(date);
		sh[nh++] = (struct fy_sig_header){ "host", s->host };
		sh[nh++] = (struct fy_sig_header){ "x-amz-content-sha256", phash };
		sh[nh++] = (struct fy_sig_header){ "x-amz-date", date };
		if (s->token)
			sh[nh++] = (struct fy_sig_header){ "x-amz-security-token", s->token };
		for (size_t i = 0; i < c->nextra && nh < 16; i++)
			sh[nh++] = c->extra[i];
		qsort(sh, nh, sizeof(sh[0]), hdr_cmp);
		struct fy_sig_req sr = {
			.method = c->method, .path = path, .query = c->query, .headers = sh, .nheaders = nh,
			.payload_hash = phash, .amz_date = date, .region = s->region, .service = "s3",
			.access_key = s->ak, .secret_key = s->sk,
		};
		rc = fy_sigv4_sign(&sr, auth, sizeof(auth));
		if (rc < 0) {
			give_handle(s, h);
			return fy_store_fail(rc, "signing the request failed");
		}
		for (size_t i = 0; i < nh; i++) {
			snprintf(hbuf[i], sizeof(hbuf[i]), "%s: %s", sh[i].name, sh[i].value);
			hl = curl_slist_append(hl, hbuf[i]);
		}
		char ah[1100];

		snprintf(ah, sizeof(ah), "Authorization: %s", auth);
		hl = curl_slist_append(hl, ah);
		hl = curl_slist_append(hl, "Expect:");
		if (c->body || !strcmp(c->method, "PUT") || !strcmp(c->method, "POST"))
			hl = curl_slist_append(hl, "Content-Type: application/octet-stream");
		char rh[128];

		if (c->range) {
			snprintf(rh, sizeof(rh), "Range: %s", c->range);
			hl = curl_slist_append(hl, rh);
		}
		curl_easy_reset(h);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->low_speed_secs);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		if (s->ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
		if (s->insecure) {
			curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
			curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
		}
		if (!strcmp(c->method, "HEAD")) {
			curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		} else if (!strcmp(c->method, "PUT")) {
			curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(h, CURLOPT_READDATA, c);
			curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
			curl_easy_setopt(h, CURLOPT_SEEKDATA, c);
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->blen);
		} else if (!strcmp(c->method, "POST")) {
			curl_easy_setopt(h, CURLOPT_POST, 1L);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body ? (const char *)c->body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(c->body ? c->blen : 0));
		} else if (strcmp(c->method, "GET") != 0) {
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
		}
		e = curl_easy_perform(h);
		curl_slist_free_all(hl);
		OPENSSL_cleanse(auth, sizeof(auth));
		OPENSSL_cleanse(ah, sizeof(ah));
		s->requests++;
		s->up += c->sent;
		s->down += c->resp.len;
		if (e == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
		if (c->status >= 300 && c->resp.len)
			fy_s3xml_error(c->resp.p, c->resp.len, c->code, sizeof(c->code), c->msg, sizeof(c->msg));
		bool done_ok = c->status / 100 == 2 && (!strcmp(c->method, "PUT") || !strcmp(c->method, "DELETE"));

		if (e == CURLE_OK || (done_ok && e != CURLE_OK)) {
			if (!retryable_status(c) || attempt >= s->retries)
				break;
		} else if (!retryable_curl(e) || attempt >= s->retries) {
			break;
		}
		s->nretries++;
		backoff(attempt);
	}
	give_handle(s, h);
	if (e != CURLE_OK && !(c->status / 100 == 2 && (!strcmp(c->method, "PUT") || !strcmp(c->method, "DELETE")))) {
		int err = e == CURLE_PEER_FAILED_VERIFICATION || e == CURLE_SSL_CACERT_BADFILE ? -EACCES
			  : e == CURLE_OUT_OF_MEMORY					       ? -ENOMEM
											       : -EIO;
		const char *hint = e == CURLE_PEER_FAILED_VERIFICATION
					   ? " (give the CA with --s3-ca-file or ca-file= in the URL)"
					   : "";

		return fy_store_fail(err, "%s %s%s: %s%s", c->method, s->base, path, curl_easy_strerror(e), hint);
	}
	return 0;
}

/* Map a final non-2xx response to -errno and a reason line. */
static int status_error(struct s3_store *s, const struct call *c, const char *what)
{
	int rc = c->status == 404				     ? -ENOENT
		 : c->status == 403 && !strcmp(c->code, "QuotaExceeded") ? -ENOSPC
		 : c->status == 401 || c->status == 403		     ? -EACCES
		 : c->status == 400 || c->status == 411		     ? -EINVAL
		 : c->status == 409				     ? -EBUSY
		 : c->status == 507				     ? -ENOSPC
								     : -EIO;
	const char *hint = !strcmp(c->code, "SignatureDoesNotMatch") ? " (is the secret key right?)"
			   : !strcmp(c->code, "InvalidAccessKeyId")   ? " (is the access key right?)"
			   : !strcmp(c->code, "NoSuchBucket")	      ? " (create the bucket first)"
								      : "";

	return fy_store_fail(rc, "s3://%s/%s: %s: HTTP %ld %s%s%s%s", s->bucket, s->prefix, what, c->status,
			     c->code[0] ? c->code : "", c->msg[0] ? ": " : "", c->msg, hint);
}

/* ---- object operations ----------------------------------------------- */

static int check_key(const char *key)
{
	if (!key || !*key || key[0] == '/' || strlen(key) > S3_KEY_MAX - 64)
		return -EINVAL;
	return 0;
}

static bool locked_key(const struct s3_store *s, const char *key)
{
	return s->lock != LOCK_NONE && strncmp(key, "locks/", 6) != 0;
}

static void b64(const uint8_t *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Header strings of one object body, kept alive for the request. */
struct body_hdrs {
	struct fy_digest d;
	char md5[32], crc[16], until[32];
};

static void lock_headers(struct s3_store *s, struct call *c, char until[32])
{
	time_t t = time(NULL) + s->lock_secs;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(until, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	c->extra[c->nextra++] =
		(struct fy_sig_header){ "x-amz-object-lock-mode", s->lock == LOCK_COMPLIANCE ? "COMPLIANCE" : "GOVERNANCE" };
	c->extra[c->nextra++] = (struct fy_sig_header){ "x-amz-object-lock-retain-until-date", until };
}

/* The integrity headers of a body (and, for a whole object, Object Lock and
 * storage class).  A whole object carries x-amz-checksum-crc32c, which also
 * satisfies S3's demand for an integrity header on Object Lock writes (Ceph
 * RGW 16 demands none); a part of a multipart upload, and a retention
 * request, carry Content-MD5, which needs no checksum algorithm declared on
 * the upload.  (MD5 of every object of a locked copy cost a fan-out backup
 * here 40% more CPU than plain copies: bench/README.md.) */
static void body_headers(struct s3_store *s, struct call *c, const char *key, const uint8_t *buf, size_t len,
			 const struct fy_digest *dg, bool part, struct body_hdrs *bh)
{
	bool md5 = part;
	unsigned want = (part ? 0 : FY_DG_CRC32C) | (md5 ? FY_DG_MD5 : 0) | (s->https ? 0 : FY_DG_SHA256);

	bh->d = dg ? *dg : (struct fy_digest){ 0 };
	fy_digest_compute(&bh->d, want, buf, len);
	c->dg = &bh->d;
	if (!part) {
		uint8_t be[4] = { (uint8_t)(bh->d.crc32c >> 24), (uint8_t)(bh->d.crc32c >> 16),
				  (uint8_t)(bh->d.crc32c >> 8), (uint8_t)bh->d.crc32c };

		b64(be, 4, bh->crc);
		c->extra[c->nextra++] = (struct fy_sig_header){ "x-amz-checksum-crc32c", bh->crc };
	}
	if (md5) {
		b64(bh->d.md5, 16, bh->md5);
		c->extra[c->nextra++] = (struct fy_sig_header){ "content-md5", bh->md5 };
	}
	if (!part && locked_key(s, key))
		lock_headers(s, c, bh->until);
	if (!part && s->storage_class)
		c->extra[c->nextra++] = (struct fy_sig_header){ "x-amz-storage-class", s->storage_class };
}

/* HEAD key into c: 1 present, 0 absent, -errno (the reason recorded). */
static int head_object(struct s3_store *s, const char *key, struct call *c)
{
	int rc;

	*c = (struct call){ .method = "HEAD", .key = key, .query = "" };
	if (check_key(key))
		return -EINVAL;
	rc = s3_call(s, c);
	free(c->resp.p);
	c->resp.p = NULL;
	if (rc < 0)
		return rc;
	if (c->status == 404)
		return 0;
	return c->status / 100 == 2 ? 1 : status_error(s, c, key);
}

/* ---- as-of views ---- */

static int list_pages(struct s3_store *s, const char *kind, const char *prefix, fy_s3xml_cb cb, void *arg);

/* "2026-11-21T10:00:00Z", with an optional fraction of a second (S3's
 * LastModified has milliseconds): milliseconds since the epoch, or -1. */
static int64_t parse_time_ms(const char *t)
{
	struct tm tm = { 0 };
	const char *p = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
	int64_t ms = 0, scale = 100;

	if (!p)
		return -1;
	if (*p == '.') {
		if (!isdigit((unsigned char)*++p))
			return -1;
		for (; isdigit((unsigned char)*p); p++, scale /= 10)
			ms += scale * (*p - '0');
	}
	if (strcmp(p, "Z") != 0)
		return -1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

static int read_only(struct s3_store *s)
{
	return fy_store_fail(-EROFS, "s3://%s/%s is opened as of %s: a read-only view", s->bucket, s->prefix, s->as_of);
}

/* Which version of each key the view shows.  A listing of versions gives a
 * key's versions together, newest first: the first one not newer than the
 * view's time decides the key (a delete marker hides it). */
struct as_of_pick {
	struct s3_store *s;
	char key[S3_KEY_MAX + 1]; /* the key decided last */
	int (*found)(const struct fy_s3xml_entry *e, void *arg);
	void *arg;
};

static int as_of_entry(const struct fy_s3xml_entry *e, void *arg)
{
	struct as_of_pick *p = arg;
	int64_t t;

	if (!e->key || !strcmp(e->key, p->key))
		return 0;
	t = parse_time_ms(e->time ? e->time : "");
	if (t < 0)
		return fy_store_fail(-EIO, "s3://%s/%s: a version of %s without a LastModified time", p->s->bucket,
				     p->s->prefix, e->key);
	if (t > p->s->as_of_ms)
		return 0;
	snprintf(p->key, sizeof(p->key), "%s", e->key);
	return e->delete_marker ? 0 : p->found(e, p->arg);
}

struct as_of_one {
	const char *full;
	char id[1100];
	uint64_t size;
	bool found;
};

static int as_of_found_one(const struct fy_s3xml_entry *e, void *arg)
{
	struct as_of_one *o = arg;

	if (strcmp(e->key, o->full) != 0)
		return 0;
	snprintf(o->id, sizeof(o->id), "%s", e->id ? e->id : "");
	o->size = e->size;
	o->found = true;
	return 0;
}

/* The version of key the view shows: 1 with its id and size, 0 when there is
 * none (never written by then, or deleted). */
static int as_of_version(struct s3_store *s, const char *key, char *id, size_t idlen, uint64_t *size)
{
	char full[S3_KEY_MAX + 1];
	struct as_of_one o = { .full = full };
	struct as_of_pick p = { .s = s, .found = as_of_found_one, .arg = &o };
	int rc;

	snprintf(full, sizeof(full), "%s%s", s->prefix, key);
	/* List with the bucket-relative key as prefix: list_pages adds s->prefix. */
	rc = list_pages(s, "versions", key, as_of_entry, &p);
	if (rc < 0)
		return rc;
	if (!o.found)
		return 0;
	snprintf(id, idlen, "%s", o.id);
	if (size)
		*size = o.size;
	return 1;
}

static int s3_exists(struct fy_store *st, const char *key, uint64_t *size)
{
	struct call c;
	struct s3_store *s = s3_of(st);
	char id[1100];

	if (s->as_of_ms >= 0) {
		if (check_key(key))
			return -EINVAL;
		fy_store_clear_error();
		return as_of_version(s, key, id, sizeof(id), size);
	}
	int rc = head_object(s, key, &c);

	if (rc == 1 && size)
		*size = c.clen;
	return rc;
}

/* One PUT of a whole object.  With cond, If-None-Match: * makes it keep an
 * existing object: 412 then means "already there" (also when a retry finds
 * the object its first attempt stored), and put_simple returns 1.
 * -ENOTSUP when the server refuses the condition itself (501): the caller
 * falls back. */
static int put_simple(struct s3_store *s, const char *key, const void *buf, size_t len, const struct fy_digest *dg,
		      bool cond)
{
	struct call c = { .method = "PUT", .key = key, .query = "", .body = buf, .blen = len };
	struct body_hdrs bh;
	int rc;

	body_headers(s, &c, key, buf, len, dg, false, &bh);
	if (cond)
		c.extra[c.nextra++] = (struct fy_sig_header){ "if-none-match", "*" };
	rc = s3_call(s, &c);
	free(c.resp.p);
	if (rc < 0)
		return rc;
	if (c.status / 100 == 2)
		return 0;
	if (cond && c.status == 412)
		return 1;
	if (cond && c.status == 501)
		return -ENOTSUP;
	return status_error(s, &c, key);
}

static int abort_upload(struct s3_store *s, const char *key, const char *upload_id)
{
	char q[1200], enc[1100];
	struct call c = { .method = "DELETE", .key = key, .query = q };
	int rc;

	fy_s3_uri_encode(upload_id, strlen(upload_id), 0, enc, sizeof(enc));
	snprintf(q, sizeof(q), "uploadId=%s", enc);
	rc = s3_call(s, &c);
	free(c.resp.p);
	if (rc < 0)
		return rc;
	return c.status / 100 == 2 || c.status == 404 ? 0 : status_error(s, &c, key);
}

/* PUT ?retention on one version (or the current one when version is ""). */
static int set_retention(struct s3_store *s, const char *key, const char *version, const char *until)
{
	char body[512], q[1200], enc[1100];
	struct body_hdrs bh;
	int rc;

	snprintf(body, sizeof(body),
		 "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>%s</Mode>"
		 "<RetainUntilDate>%s</RetainUntilDate></Retention>",
		 s->lock == LOCK_COMPLIANCE ? "COMPLIANCE" : "GOVERNANCE", until);
	fy_s3_uri_encode(version, strlen(version), 0, enc, sizeof(enc));
	snprintf(q, sizeof(q), version[0] ? "retention=&versionId=%s" : "retention=", enc);
	struct call c = { .method = "PUT", .key = key, .query = q, .body = (const uint8_t *)body, .blen = strlen(body) };

	body_headers(s, &c, key, c.body, c.blen, NULL, true, &bh); /* Content-MD5, which PutObjectRetention wants */
	rc = s3_call(s, &c);
	if (rc == 0 && c.status / 100 != 2)
		rc = status_error(s, &c, key);
	free(c.resp.p);
	return rc;
}

/* Multipart: initiate, parts in order, complete; abort on any failure. */
static int put_multipart(struct s3_store *s, const char *key, const uint8_t *buf, size_t len)
{
	char uid[1024], uenc[3200], q[3400], until[32];
	struct body_hdrs bh;
	size_t nparts = (len + s->part_size - 1) / s->part_size;
	char *xml = NULL;
	size_t xlen = 0, xcap = 0;
	int rc;

	struct call ini = { .method = "POST", .key = key, .query = "uploads=", .want_body = true };

	if (locked_key(s, key))
		lock_headers(s, &ini, until);
	if (s->storage_class)
		ini.extra[ini.nextra++] = (struct fy_sig_header){ "x-amz-storage-class", s->storage_class };
	rc = s3_call(s, &ini);
	if (rc == 0 && ini.status / 100 != 2)
		rc = status_error(s, &ini, key);
	if (rc == 0 && fy_s3xml_find(ini.resp.p, ini.resp.len, "UploadId", uid, sizeof(uid)) < 0)
		rc = fy_store_fail(-EIO, "s3://%s/%s%s: starting a multipart upload: no UploadId in the answer", s->bucket,
				   s->prefix, key);
	free(ini.resp.p);
	if (rc < 0)
		return rc;
	fy_s3_uri_encode(uid, strlen(uid), 0, uenc, sizeof(uenc));
	xcap = 128 + nparts * 400;
	xml = malloc(xcap);
	if (!xml) {
		abort_upload(s, key, uid);
		return -ENOMEM;
	}
	xlen = (size_t)snprintf(xml, xcap, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts && rc == 0; i++) {
		size_t off = i * s->part_size, n = len - off < s->part_size ? len - off : s->part_size;
		struct call c = { .method = "PUT", .key = key, .query = q, .body = buf + off, .blen = n };

		snprintf(q, sizeof(q), "partNumber=%zu&uploadId=%s", i + 1, uenc);
		body_headers(s, &c, key, buf + off, n, NULL, true, &bh);
		rc = s3_call(s, &c);
		if (rc == 0 && c.status / 100 != 2)
			rc = status_error(s, &c, key);
		/* Test hook (FERRY_TEST_KILL_IN_MULTIPART): die like a killed pod with
		 * a multipart upload begun and not completed, for
		 * tests/integration/t_s3_faults.sh to show prune removes it. */
		if (rc == 0 && getenv("FERRY_TEST_KILL_IN_MULTIPART"))
			raise(SIGKILL);
		if (rc == 0 && !c.etag[0])
			rc = fy_store_fail(-EIO, "s3://%s/%s%s: part %zu: no ETag in the answer", s->bucket, s->prefix,
					   key, i + 1);
		if (rc == 0)
			xlen += (size_t)snprintf(xml + xlen, xcap - xlen,
						 "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>", i + 1, c.etag);
		free(c.resp.p);
	}
	if (rc == 0) {
		xlen += (size_t)snprintf(xml + xlen, xcap - xlen, "</CompleteMultipartUpload>");
		snprintf(q, sizeof(q), "uploadId=%s", uenc);
		struct call c = { .method = "POST", .key = key, .query = q, .body = (uint8_t *)xml, .blen = xlen,
				  .want_body = true };

		rc = s3_call(s, &c);
		if (rc == 0 && c.status / 100 != 2) {
			/* A retried complete whose first attempt succeeded finds no upload. */
			uint64_t sz = 0;

			if (c.status == 404 && !strcmp(c.code, "NoSuchUpload") && s3_exists(&s->hdr, key, &sz) == 1 &&
			    sz == len)
				rc = 0;
			else
				rc = status_error(s, &c, key);
		} else if (rc == 0 && fy_s3xml_error(c.resp.p, c.resp.len, c.code, sizeof(c.code), c.msg,
						     sizeof(c.msg)) == 0) {
			c.status = 500; /* S3 may report a failed complete inside a 200 */
			rc = status_error(s, &c, key);
		}
		/* Ceph RGW ignores the Object Lock headers of CreateMultipartUpload:
		 * set the retention of the version just completed explicitly. */
		if (rc == 0 && locked_key(s, key))
			rc = set_retention(s, key, c.version, until);
		free(c.resp.p);
	}
	free(xml);
	if (rc < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", fy_store_strerror(rc));
		abort_upload(s, key, uid);
		fy_store_fail(rc, "%s", why);
	}
	return rc;
}

static int s3_get(struct fy_store *st, const char *key, uint64_t off, size_t len, void **buf, size_t *got);

/* Is the object at key exactly buf?  1, 0, or -errno. */
static int holds(struct s3_store *s, const char *key, const void *buf, size_t len)
{
	void *got = NULL;
	size_t n = 0;
	int rc = s3_get(&s->hdr, key, 0, SIZE_MAX, &got, &n);

	if (rc == 0)
		rc = n == len && (len == 0 || memcmp(got, buf, len) == 0);
	free(got);
	return rc == -ENOENT ? 0 : rc;
}

/* FY_PUT_EXCL: create key or say -EEXIST.  One conditional PUT where the
 * server honours it; an object found there that holds exactly our bytes is
 * our own first attempt (its answer was lost), not someone else's.  Where
 * the condition cannot be used (a locked target, conditional=0, a server
 * without it) a HEAD, a PUT and a read back: two creators can still both
 * see their own object if one reads back before the other's PUT lands. */
static int put_excl(struct s3_store *s, const char *key, const void *buf, size_t len, const struct fy_digest *dg)
{
	int rc;

	if (len <= s->mp_threshold && !locked_key(s, key) && atomic_load(&s->cond_put)) {
		rc = put_simple(s, key, buf, len, dg, true);
		if (rc == 1)
			goto existed;
		if (rc != -ENOTSUP)
			return rc;
		atomic_store(&s->cond_put, false);
		fy_store_clear_error();
	}
	rc = s3_exists(&s->hdr, key, NULL);
	if (rc < 0)
		return rc;
	if (rc == 1)
		goto existed;
	rc = len > s->mp_threshold ? put_multipart(s, key, buf, len) : put_simple(s, key, buf, len, dg, false);
	if (rc < 0)
		return rc;
	rc = holds(s, key, buf, len);
	if (rc < 0)
		return rc;
	return rc ? 0 : fy_store_fail(-EEXIST, "s3://%s/%s%s was written by someone else at the same time", s->bucket,
				      s->prefix, key);
existed:
	rc = holds(s, key, buf, len);
	if (rc < 0)
		return rc;
	return rc ? 0 : fy_store_fail(-EEXIST, "s3://%s/%s%s already exists", s->bucket, s->prefix, key);
}

static int s3_put(struct fy_store *st, const char *key, const void *buf, size_t len, unsigned flags,
		  const struct fy_digest *dg)
{
	struct s3_store *s = s3_of(st);
	int rc;

	if (check_key(key))
		return -EINVAL;
	fy_store_clear_error();
	if (s->as_of_ms >= 0)
		return read_only(s);
	if (flags & FY_PUT_EXCL)
		return put_excl(s, key, buf, len, dg);
	/* Keeping an existing object: one conditional PUT where the server
	 * can say "exists" atomically.  Not on a locked target: Ceph RGW
	 * ignores the condition in a versioned bucket, and every extra
	 * version there is locked for the retention; not for multipart. */
	if ((flags & FY_PUT_NOREPLACE) && len <= s->mp_threshold && !locked_key(s, key) && atomic_load(&s->cond_put)) {
		rc = put_simple(s, key, buf, len, dg, true);
		if (rc != -ENOTSUP)
			return rc > 0 ? 0 : rc;
		atomic_store(&s->cond_put, false);
		fy_store_clear_error();
	}
	if (flags & FY_PUT_NOREPLACE) {
		rc = s3_exists(st, key, NULL);
		if (rc != 0)
			return rc < 0 ? rc : 0;
	}
	/* A 2xx answer to a PUT means the object is stored durably. */
	if (len > s->mp_threshold)
		return put_multipart(s, key, buf, len);
	return put_simple(s, key, buf, len, dg, false);
}

static int s3_get(struct fy_store *st, const char *key, uint64_t off, size_t len, void **buf, size_t *got)
{
	struct s3_store *s = s3_of(st);
	char range[80], id[1100], q[3400] = "", enc[3300];
	struct call c = { .method = "GET", .key = key, .query = q, .want_body = true };
	int rc;

	*buf = NULL;
	*got = 0;
	if (check_key(key))
		return -EINVAL;
	if (s->as_of_ms >= 0) {
		fy_store_clear_error();
		rc = as_of_version(s, key, id, sizeof(id), NULL);
		if (rc <= 0)
			return rc < 0 ? rc : -ENOENT;
		fy_s3_uri_encode(id, strlen(id), 0, enc, sizeof(enc));
		snprintf(q, sizeof(q), "versionId=%s", enc);
	}
	if (len == 0) {
		*buf = malloc(1);
		return *buf ? 0 : -ENOMEM;
	}
	if (off || len != SIZE_MAX) {
		if (len == SIZE_MAX)
			snprintf(range, sizeof(range), "bytes=%llu-", (unsigned long long)off);
		else
			snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)off,
				 (unsigned long long)(off + len - 1));
		c.range = range;
	}
	rc = s3_call(s, &c);
	if (rc == 0 && c.status == 416) {
		/* A range past the end: nothing to read. */
		free(c.resp.p);
		*buf = malloc(1);
		return *buf ? 0 : -ENOMEM;
	}
	if (rc == 0 && c.status / 100 != 2)
		rc = status_error(s, &c, key);
	if (rc < 0) {
		free(c.resp.p);
		return rc;
	}
	if (!c.resp.p && !(c.resp.p = malloc(1)))
		return -ENOMEM;
	*buf = c.resp.p;
	*got = c.resp.len;
	return 0;
}

struct list_ctx {
	struct s3_store *s;
	const char *prefix; /* the listing's, below the store's */
	fy_store_list_cb cb;
	void *arg;
};

static int list_entry(const struct fy_s3xml_entry *e, void *arg)
{
	struct list_ctx *l = arg;
	size_t pl = strlen(l->s->prefix);

	/* Only keys under what was asked for, whatever the server sends:
	 * callers take the part after the prefix (snapshots/<id>, locks/<id>). */
	if (strncmp(e->key, l->s->prefix, pl) != 0 || strncmp(e->key + pl, l->prefix, strlen(l->prefix)) != 0)
		return 0;
	return l->cb(e->key + pl, e->size, l->arg);
}

/* Page through a listing: base_query is added to the markers (sorted). */
static int list_pages(struct s3_store *s, const char *kind, const char *prefix, fy_s3xml_cb cb, void *arg)
{
	char full[S3_KEY_MAX + 1], penc[3 * S3_KEY_MAX + 1], m1[1100] = "", m2[1100] = "", e1[3300], e2[3300];
	char q[16384], mk[16] = "", p1[1100], p2[1100];
	bool more = true;
	int rc = 0;

	if (s->list_page)
		snprintf(mk, sizeof(mk), "%u", s->list_page);

	snprintf(full, sizeof(full), "%s%s", s->prefix, prefix);
	fy_s3_uri_encode(full, strlen(full), 0, penc, sizeof(penc));
	while (more && rc == 0) {
		fy_s3_uri_encode(m1, strlen(m1), 0, e1, sizeof(e1));
		fy_s3_uri_encode(m2, strlen(m2), 0, e2, sizeof(e2));
		if (!strcmp(kind, "objects"))
			snprintf(q, sizeof(q), "%s%s%slist-type=2%s%s&prefix=%s", m1[0] ? "continuation-token=" : "", e1,
				 m1[0] ? "&" : "", s->list_page ? "&max-keys=" : "", mk, penc);
		else if (!strcmp(kind, "uploads"))
			snprintf(q, sizeof(q), "%s%s%sprefix=%s%s%s%s&uploads=", m1[0] ? "key-marker=" : "", e1,
				 m1[0] ? "&" : "", penc, m2[0] ? "&upload-id-marker=" : "", e2, "");
		else
			snprintf(q, sizeof(q), "%s%s%sprefix=%s%s%s&versions=", m1[0] ? "key-marker=" : "", e1,
				 m1[0] ? "&" : "", penc, m2[0] ? "&version-id-marker=" : "", e2);
		struct call c = { .method = "GET", .query = q, .want_body = true };

		rc = s3_call(s, &c);
		if (rc == 0 && c.status / 100 != 2)
			rc = status_error(s, &c, prefix[0] ? prefix : "listing");
		/* A listing never answers "missing" (that would read as an empty
		 * folder): a 404 here is a bucket that is gone, an error. */
		if (rc == -ENOENT) {
			char why[512];

			snprintf(why, sizeof(why), "%s", fy_store_strerror(rc));
			rc = fy_store_fail(-EIO, "%s", why);
		}
		if (rc == 0) {
			memcpy(p1, m1, sizeof(p1));
			memcpy(p2, m2, sizeof(p2));
			rc = fy_s3xml_list(c.resp.p, c.resp.len, cb, arg, &more, m1, sizeof(m1), m2, sizeof(m2));
			if (rc == -EBADMSG)
				rc = fy_store_fail(-EIO, "s3://%s/%s: the answer to a listing is not a whole S3 listing "
						   "(not XML, no IsTruncated, or an entry without a Key)", s->bucket, s->prefix);
			else if (rc == 0 && more && !m1[0])
				rc = fy_store_fail(-EIO, "s3://%s/%s: a truncated listing without a marker", s->bucket,
						   s->prefix);
			/* A page whose next marker is the one it was asked with
			 * would be asked for again, forever. */
			if (rc == 0 && more && !strcmp(m1, p1) && !strcmp(m2, p2))
				rc = fy_store_fail(-EIO, "s3://%s/%s: the listing does not advance (the server gave the "
						   "marker '%.200s' twice)", s->bucket, s->prefix, m1);
		}
		free(c.resp.p);
	}
	return rc;
}

static int s3_list(struct fy_store *st, const char *prefix, fy_store_list_cb cb, void *arg)
{
	struct s3_store *s = s3_of(st);
	struct list_ctx l = { s, prefix ? prefix : "", cb, arg };

	fy_store_clear_error();
	if (s->as_of_ms >= 0) {
		struct as_of_pick p = { .s = s, .found = list_entry, .arg = &l };

		return list_pages(s, "versions", prefix ? prefix : "", as_of_entry, &p);
	}
	return list_pages(s, "objects", prefix ? prefix : "", list_entry, &l);
}

struct version_ctx {
	struct s3_store *s;
	const char *full;
	char (*ids)[1100];
	size_t n, cap;
};

static int collect_version(const struct fy_s3xml_entry *e, void *arg)
{
	struct version_ctx *v = arg;

	if (strcmp(e->key, v->full) != 0)
		return 0;
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 4;
		void *p = realloc(v->ids, cap * sizeof(*v->ids));

		if (!p)
			return -ENOMEM;
		v->ids = p;
		v->cap = cap;
	}
	snprintf(v->ids[v->n++], sizeof(v->ids[0]), "%s", e->id);
	return 0;
}

static int delete_one(struct s3_store *s, const char *key, const char *version)
{
	char q[3400] = "", enc[3300];
	struct call c = { .method = "DELETE", .key = key, .query = q };
	int rc;

	if (version) {
		fy_s3_uri_encode(version, strlen(version), 0, enc, sizeof(enc));
		snprintf(q, sizeof(q), "versionId=%s", enc);
	}
	rc = s3_call(s, &c);
	free(c.resp.p);
	if (rc < 0)
		return rc;
	if (c.status / 100 == 2)
		return 0;
	if (c.status == 404 && version)
		return 0; /* already gone (a retried delete) */
	rc = status_error(s, &c, key);
	return c.status == 403 && s->lock != LOCK_NONE ? fy_store_fail(-EPERM, "%s", fy_store_strerror(rc)) : rc;
}

/* Delete a key: in a bucket with Object Lock (versioned), every version of it,
 * so nothing stays behind a delete marker. */
static int s3_del(struct fy_store *st, const char *key)
{
	struct s3_store *s = s3_of(st);
	int rc;

	if (check_key(key))
		return -EINVAL;
	fy_store_clear_error();
	if (s->as_of_ms >= 0)
		return read_only(s);
	if (s->lock == LOCK_NONE)
		return delete_one(s, key, NULL);

	char full[S3_KEY_MAX + 1];
	struct version_ctx v = { .s = s, .full = full };

	snprintf(full, sizeof(full), "%s%s", s->prefix, key);
	/* List with the bucket-relative prefix: list_pages adds s->prefix. */
	rc = list_pages(s, "versions", key, collect_version, &v);
	if (rc == 0 && v.n == 0)
		rc = -ENOENT;
	for (size_t i = 0; i < v.n && rc == 0; i++)
		rc = delete_one(s, key, v.ids[i]);
	free(v.ids);
	return rc;
}

static int64_t parse_iso8601(const char *t)
{
	struct tm tm = { 0 };
	const char *end = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);

	return end ? (int64_t)timegm(&tm) : -1;
}

static int s3_retention(struct fy_store *st, const char *key, int64_t *until)
{
	struct s3_store *s = s3_of(st);
	struct call c;
	int rc;

	if (s->lock == LOCK_NONE)
		return 0;
	rc = head_object(s, key, &c);
	if (rc <= 0)
		return rc;
	int64_t u = c.retain[0] ? parse_iso8601(c.retain) : -1;

	if (u > (int64_t)time(NULL)) {
		*until = u;
		return 1;
	}
	return 0;
}

static int s3_sync(struct fy_store *st)
{
	(void)st; /* a 2xx PUT is durable */
	return 0;
}

struct upload_ctx {
	char (*keys)[1100];
	char (*ids)[1100];
	size_t n, cap;
	int64_t before;
};

static int collect_upload(const struct fy_s3xml_entry *e, void *arg)
{
	struct upload_ctx *u = arg;
	int64_t t = parse_iso8601(e->time);

	if (t >= 0 && t > u->before)
		return 0;
	if (u->n == u->cap) {
		size_t cap = u->cap ? 2 * u->cap : 8;
		void *k = realloc(u->keys, cap * sizeof(*u->keys));

		if (!k)
			return -ENOMEM;
		u->keys = k;
		void *i = realloc(u->ids, cap * sizeof(*u->ids));

		if (!i)
			return -ENOMEM;
		u->ids = i;
		u->cap = cap;
	}
	snprintf(u->keys[u->n], sizeof(u->keys[0]), "%s", e->key);
	snprintf(u->ids[u->n], sizeof(u->ids[0]), "%s", e->id);
	u->n++;
	return 0;
}

static long s3_cleanup(struct fy_store *st, int64_t min_age)
{
	struct s3_store *s = s3_of(st);
	struct upload_ctx u = { .before = (int64_t)time(NULL) - min_age };
	size_t pl = strlen(s->prefix);
	long n = 0;
	int rc;

	if (s->as_of_ms >= 0)
		return 0; /* nothing of a read-only view's to clean */
	rc = list_pages(s, "uploads", "", collect_upload, &u);
	for (size_t i = 0; i < u.n && rc == 0; i++) {
		if (strncmp(u.keys[i], s->prefix, pl) != 0)
			continue;
		rc = abort_upload(s, u.keys[i] + pl, u.ids[i]);
		n += rc == 0;
	}
	free(u.keys);
	free(u.ids);
	return rc < 0 ? rc : n;
}

static unsigned s3_concurrency(struct fy_store *st)
{
	return s3_of(st)->conns;
}

static unsigned s3_digests(struct fy_store *st)
{
	struct s3_store *s = s3_of(st);

	return FY_DG_CRC32C | (s->https ? 0 : FY_DG_SHA256);
}

static void s3_stats(struct fy_store *st, struct fy_store_stats *out)
{
	struct s3_store *s = s3_of(st);

	out->requests = s->requests;
	out->retries = s->nretries;
	out->bytes_up = s->up;
	out->bytes_down = s->down;
}

static void s3_close(struct fy_store *st)
{
	struct s3_store *s = s3_of(st);

	if (!s)
		return;
	for (unsigned i = 0; i < s->nidle; i++)
		curl_easy_cleanup(s->idle[i]);
	pthread_mutex_destroy(&s->mu);
	if (s->sk)
		OPENSSL_cleanse(s->sk, strlen(s->sk));
	if (s->token)
		OPENSSL_cleanse(s->token, strlen(s->token));
	free(s->bucket);
	free(s->prefix);
	free(s->region);
	free(s->base);
	free(s->host);
	free(s->ca_file);
	free(s->ak);
	free(s->sk);
	free(s->token);
	free(s->storage_class);
	free(s->hdr.url);
	free(s);
}

/* An immutable target needs a bucket with Object Lock: refuse otherwise. */
static int check_lock_config(struct s3_store *s, char *errbuf, size_t errlen)
{
	struct call c = { .method = "GET", .query = "object-lock=", .want_body = true };
	char v[32] = "";
	int rc = s3_call(s, &c);

	if (rc == 0 && c.status / 100 == 2)
		fy_s3xml_find(c.resp.p, c.resp.len, "ObjectLockEnabled", v, sizeof(v));
	else if (rc == 0 && c.status != 404 && strcmp(c.code, "ObjectLockConfigurationNotFoundError") != 0)
		rc = status_error(s, &c, "reading the Object Lock configuration");
	free(c.resp.p);
	if (rc < 0) {
		fy_store_err(errbuf, errlen, "%s", fy_store_strerror(rc));
		return rc;
	}
	if (strcmp(v, "Enabled") != 0) {
		fy_store_err(errbuf, errlen, "bucket %s does not have Object Lock enabled: an immutable target (lock=%s) "
			     "needs a bucket created with Object Lock", s->bucket,
			     s->lock == LOCK_COMPLIANCE ? "compliance" : "governance");
		return -EMEDIUMTYPE;
	}
	return 0;
}

/* The URL parameters (docs/store.md).  Each may be given once; every one
 * but insecure (a flag) needs a value. */
static const char *const s3_params[] = {
	"region", "endpoint", "style", "ca-file", "insecure", "credentials", "profile", "secret-dir", "lock",
	"lock-days", "lock-seconds", "storage-class", "connections", "list-page", "retries", "conditional", "as-of",
	"timeout", "multipart-threshold", "part-size",
};

static bool s3_param_known(const char *name)
{
	for (size_t i = 0; i < sizeof(s3_params) / sizeof(s3_params[0]); i++)
		if (!strcmp(name, s3_params[i]))
			return true;
	return false;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int s3_open(const char *url, struct fy_store **out, char *errbuf, size_t errlen)
{
	struct s3_store *s = calloc(1, sizeof(*s));
	char *copy = NULL, *q, *tok, *save = NULL;
	const char *endpoint = NULL, *style = NULL, *cred_file = NULL, *profile = NULL, *secret_dir = NULL;
	int rc = -EINVAL;

	pthread_once(&curl_once, curl_init_once);
	if (!s || !(copy = strdup(url)) || !(s->hdr.url = strdup(url))) {
		free(copy);
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->mu, NULL);
	s->hdr.ops = &fy_store_s3_ops;
	s->conns = S3_DEFAULT_CONNS;
	s->retries = S3_DEFAULT_RETRIES;
	s->mp_threshold = 64u << 20;
	s->part_size = 16u << 20;
	s->low_speed_secs = 60;
	s->path_style = true;
	s->cond_put = true;
	s->as_of_ms = -1;

	/* s3://BUCKET[/PREFIX][?k=v&...] */
	char *rest = copy + 5;

	q = strchr(rest, '?');
	if (q)
		*q++ = '\0';
	char *slash = strchr(rest, '/');

	if (slash)
		*slash++ = '\0';
	if (!*rest || strlen(rest) < 3 || strlen(rest) > 63 || strspn(rest, "abcdefghijklmnopqrstuvwxyz0123456789.-") !=
								      strlen(rest)) {
		fy_store_err(errbuf, errlen, "malformed S3 URL '%s': the bucket name must be 3-63 characters of "
			     "a-z 0-9 . -", url);
		goto fail;
	}
	s->bucket = strdup(rest);
	{
		const char *p = slash ? slash : "";
		size_t n = strlen(p);

		while (n && p[n - 1] == '/')
			n--;
		if (strstr(p, "//") || (n && (strstr(p, "/../") || !strncmp(p, "../", 3)))) {
			fy_store_err(errbuf, errlen, "malformed S3 URL '%s': bad prefix", url);
			goto fail;
		}
		if (asprintf(&s->prefix, "%.*s%s", (int)n, p, n ? "/" : "") < 0)
			s->prefix = NULL;
	}
	const char *region = getenv("AWS_REGION") ? getenv("AWS_REGION") : getenv("AWS_DEFAULT_REGION");
	const char *lock = NULL, *lock_days = NULL, *lock_secs = NULL;

	const char *seen[sizeof(s3_params) / sizeof(s3_params[0])];
	size_t nseen = 0;

	for (tok = q ? strtok_r(q, "&", &save) : NULL; tok; tok = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(tok, '=');
		/* No '=': an empty value, writable (url_decode writes its end). */
		char *v = eq ? eq + 1 : tok + strlen(tok);
		unsigned long long u;

		if (eq)
			*eq = '\0';
		url_decode(v);
		if (s3_param_known(tok)) {
			/* Given twice, which one counts?  Neither: say so. */
			for (size_t i = 0; i < nseen; i++) {
				if (!strcmp(seen[i], tok)) {
					fy_store_err(errbuf, errlen, "S3 URL '%s': parameter '%s' is given twice", url, tok);
					goto fail;
				}
			}
			seen[nseen++] = tok;
			if (!*v && strcmp(tok, "insecure")) {
				fy_store_err(errbuf, errlen, "S3 URL '%s': parameter '%s' has an empty value", url, tok);
				goto fail;
			}
		}
		if (!strcmp(tok, "region"))
			region = v;
		else if (!strcmp(tok, "endpoint"))
			endpoint = v;
		else if (!strcmp(tok, "style"))
			style = v;
		else if (!strcmp(tok, "ca-file"))
			s->ca_file = strdup(v);
		else if (!strcmp(tok, "insecure"))
			s->insecure = !strcmp(v, "1") || !strcmp(v, "true") || !*v;
		else if (!strcmp(tok, "credentials"))
			cred_file = v;
		else if (!strcmp(tok, "profile"))
			profile = v;
		else if (!strcmp(tok, "secret-dir"))
			secret_dir = v;
		else if (!strcmp(tok, "lock"))
			lock = v;
		else if (!strcmp(tok, "lock-days"))
			lock_days = v;
		else if (!strcmp(tok, "lock-seconds"))
			lock_secs = v;
		else if (!strcmp(tok, "storage-class"))
			s->storage_class = strdup(v);
		else if (!strcmp(tok, "connections") && parse_uint(v, S3_MAX_CONNS, &u) == 0 && u > 0)
			s->conns = (unsigned)u;
		else if (!strcmp(tok, "list-page") && parse_uint(v, 1000, &u) == 0 && u > 0)
			s->list_page = (unsigned)u;
		else if (!strcmp(tok, "retries") && parse_uint(v, 30, &u) == 0)
			s->retries = (unsigned)u;
		else if (!strcmp(tok, "conditional") && (!strcmp(v, "0") || !strcmp(v, "1")))
			s->cond_put = v[0] == '1';
		else if (!strcmp(tok, "as-of")) {
			if (strlen(v) >= sizeof(s->as_of) || (s->as_of_ms = parse_time_ms(v)) < 0) {
				fy_store_err(errbuf, errlen,
					     "S3 URL '%s': as-of=%s is not a UTC time like 2026-11-21T10:00:00Z "
					     "(a fraction of a second may follow the seconds)", url, v);
				goto fail;
			}
			snprintf(s->as_of, sizeof(s->as_of), "%s", v);
		}
		else if (!strcmp(tok, "timeout") && parse_uint(v, 3600, &u) == 0 && u > 0)
			s->low_speed_secs = (long)u;
		else if (!strcmp(tok, "multipart-threshold") && parse_size(v, &s->mp_threshold) == 0 &&
			 s->mp_threshold >= S3_MIN_PART)
			;
		else if (!strcmp(tok, "part-size") && parse_size(v, &s->part_size) == 0 && s->part_size >= S3_MIN_PART &&
			 s->part_size <= (1ull << 32))
			;
		else {
			fy_store_err(errbuf, errlen, "S3 URL '%s': unknown or invalid parameter '%s%s%s'", url, tok,
				     eq ? "=" : "", v);
			goto fail;
		}
	}
	if (!s->ca_file && getenv("FERRY_S3_CA_FILE") && *getenv("FERRY_S3_CA_FILE"))
		s->ca_file = strdup(getenv("FERRY_S3_CA_FILE"));
	if (getenv("FERRY_S3_INSECURE") && !strcmp(getenv("FERRY_S3_INSECURE"), "1"))
		s->insecure = true;
	if (s->ca_file && access(s->ca_file, R_OK) != 0) {
		fy_store_err(errbuf, errlen, "S3 CA file %s: %s", s->ca_file, strerror(errno));
		goto fail;
	}
	s->region = strdup(region && *region ? region : "us-east-1");
	if (style && strcmp(style, "path") && strcmp(style, "virtual")) {
		fy_store_err(errbuf, errlen, "S3 URL '%s': style must be path or virtual, not '%s'", url, style);
		goto fail;
	}
	s->path_style = style ? !strcmp(style, "path") : endpoint != NULL;
	{
		char def[256];

		snprintf(def, sizeof(def), "https://s3.%s.amazonaws.com", s->region);
		rc = set_endpoint(s, endpoint ? endpoint : def, errbuf, errlen);
		if (rc < 0)
			goto fail;
		rc = -EINVAL;
	}
	if (lock) {
		if (!strcmp(lock, "compliance"))
			s->lock = LOCK_COMPLIANCE;
		else if (!strcmp(lock, "governance"))
			s->lock = LOCK_GOVERNANCE;
		else {
			fy_store_err(errbuf, errlen, "S3 URL '%s': lock must be compliance or governance, not '%s'", url,
				     lock);
			goto fail;
		}
		unsigned long long d = 0;

		if (lock_days && parse_uint(lock_days, 36500, &d) == 0 && d > 0)
			s->lock_secs = (int64_t)d * 86400;
		else if (lock_secs && parse_uint(lock_secs, 36500ull * 86400, &d) == 0 && d > 0)
			s->lock_secs = (int64_t)d;
		else {
			fy_store_err(errbuf, errlen, "S3 URL '%s': an immutable target needs lock-days=N (or lock-seconds=N), "
				     "N > 0", url);
			goto fail;
		}
	} else if (lock_days || lock_secs) {
		fy_store_err(errbuf, errlen, "S3 URL '%s': lock-days/lock-seconds need lock=compliance|governance", url);
		goto fail;
	}
	if (s->mp_threshold < s->part_size)
		s->mp_threshold = s->part_size;
	rc = load_credentials(s, cred_file, profile, secret_dir, errbuf, errlen);
	if (rc < 0)
		goto fail;
	if (!s->bucket || !s->prefix || !s->region) {
		rc = -ENOMEM;
		goto fail;
	}
	if (s->lock != LOCK_NONE) {
		rc = check_lock_config(s, errbuf, errlen);
		if (rc < 0)
			goto fail;
	}
	free(copy);
	*out = &s->hdr;
	return 0;
fail:
	free(copy);
	s3_close(&s->hdr);
	return rc;
}

const struct fy_store_ops fy_store_s3_ops = {
	.scheme = "s3",
	.open = s3_open,
	.put = s3_put,
	.get = s3_get,
	.exists = s3_exists,
	.list = s3_list,
	.del = s3_del,
	.sync = s3_sync,
	.close = s3_close,
	.concurrency = s3_concurrency,
	.digests = s3_digests,
	.retention = s3_retention,
	.cleanup = s3_cleanup,
	.stats = s3_stats,
};
