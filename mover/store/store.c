/* Store dispatch: pick a backend by the scheme of a repository URL. */
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "codec/codec.h"

/* One line per backend; a plain path (no "://") opens the first entry. */
static const struct fy_store_ops *const fy_store_backends[] = {
	&fy_store_file_ops,
	&fy_store_s3_ops,
};

#define FY_NBACKENDS (sizeof(fy_store_backends) / sizeof(fy_store_backends[0]))

void fy_store_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (!errbuf || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
static bool scheme_valid(const char *s, size_t n)
{
	if (n == 0 || !isalpha((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '+' && c != '-' && c != '.')
			return false;
	}
	return true;
}

/* Test hook FERRY_TEST_KILL_AFTER_OPS=OP:N (OP put, del or any; N >= 1): the
 * process raises SIGKILL right after its Nth such store operation returned,
 * whatever it returned, in the thread that made it; the other threads may have
 * operations in flight, and any of them that returns before the signal has
 * taken the process raises it too (so at most N + threads - 1 operations
 * complete, however long the Nth thread waits to be scheduled).  Off (one branch per put and del) when unset.  For
 * kill -9 tests (tests/integration/t_crash.sh), never for production use. */
static pthread_once_t kill_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned kill_ops; /* FY_STORE_OP_* counted; 0: off */
static _Atomic uint64_t kill_after, kill_count;

static int kill_parse(const char *spec)
{
	unsigned ops = 0;
	uint64_t n = 0;
	char *end = NULL;

	atomic_store(&kill_ops, 0);
	if (!spec || !*spec)
		return 0;
	if (!strncmp(spec, "put:", 4))
		ops = FY_STORE_OP_PUT;
	else if (!strncmp(spec, "del:", 4))
		ops = FY_STORE_OP_DEL;
	else if (!strncmp(spec, "any:", 4))
		ops = FY_STORE_OP_PUT | FY_STORE_OP_DEL;
	errno = 0;
	if (ops && isdigit((unsigned char)spec[4]))
		n = strtoull(spec + 4, &end, 10);
	if (!n || errno || *end)
		return -EINVAL;
	atomic_store(&kill_after, n);
	atomic_store(&kill_count, 0);
	atomic_store(&kill_ops, ops);
	return 0;
}

static void kill_setup(void)
{
	const char *v = getenv("FERRY_TEST_KILL_AFTER_OPS");

	if (kill_parse(v) < 0) {
		/* A test that thinks it armed the hook must not run unarmed. */
		fprintf(stderr, "ferry: FERRY_TEST_KILL_AFTER_OPS='%s': expected put:N, del:N or any:N with N >= 1\n", v);
		_exit(2);
	}
}

int fy_store_kill_arm(const char *spec)
{
	pthread_once(&kill_once, kill_setup); /* the environment first, then this */
	return kill_parse(spec);
}

void fy_store_kill_point(unsigned op)
{
	pthread_once(&kill_once, kill_setup);
	if ((atomic_load(&kill_ops) & op) && atomic_fetch_add(&kill_count, 1) + 1 >= atomic_load(&kill_after))
		raise(SIGKILL);
}

int fy_store_open(const char *url, struct fy_store **st, char *errbuf, size_t errlen)
{
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!st)
		return -EINVAL;
	*st = NULL;
	if (!url || !*url) {
		fy_store_err(errbuf, errlen, "empty repository URL");
		return -EINVAL;
	}

	/* A malformed FERRY_TEST_KILL_AFTER_OPS stops the process before it writes anything. */
	pthread_once(&kill_once, kill_setup);
	const char *sep = strstr(url, "://");
	if (!sep)
		return fy_store_backends[0]->open(url, st, errbuf, errlen);

	size_t n = (size_t)(sep - url);
	if (!scheme_valid(url, n)) {
		fy_store_err(errbuf, errlen, "malformed repository URL '%s' (bad scheme)", url);
		return -EINVAL;
	}
	for (size_t i = 0; i < FY_NBACKENDS; i++) {
		const char *name = fy_store_backends[i]->scheme;
		if (strlen(name) == n && strncasecmp(name, url, n) == 0)
			return fy_store_backends[i]->open(url, st, errbuf, errlen);
	}

	char supported[128] = "";
	size_t used = 0;
	for (size_t i = 0; i < FY_NBACKENDS && used < sizeof(supported); i++) {
		int w = snprintf(supported + used, sizeof(supported) - used, "%s%s",
				 i ? ", " : "", fy_store_backends[i]->scheme);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	fy_store_err(errbuf, errlen, "unknown repository URL scheme '%.*s' in '%s' (supported: %s)",
		(int)n, url, url, supported);
	return -EPROTONOSUPPORT;
}

void fy_store_close(struct fy_store *s)
{
	if (s)
		s->ops->close(s);
}

static int collect_key(const char *key, uint64_t size, void *arg)
{
	struct fy_store_keys *l = arg;

	(void)size;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **k = realloc(l->keys, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		l->keys = k;
		l->cap = cap;
	}
	if (!(l->keys[l->n] = strdup(key)))
		return -ENOMEM;
	l->n++;
	return 0;
}

int fy_store_keys(struct fy_store *s, const char *prefix, struct fy_store_keys *out)
{
	*out = (struct fy_store_keys){ 0 };
	return fy_store_list(s, prefix, collect_key, out);
}

void fy_store_keys_free(struct fy_store_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->keys[i]);
	free(k->keys);
	*k = (struct fy_store_keys){ 0 };
}

unsigned fy_store_digests(struct fy_store *s)
{
	return s->ops->digests ? s->ops->digests(s) : 0;
}

int fy_store_retention(struct fy_store *s, const char *key, int64_t *until)
{
	return s->ops->retention ? s->ops->retention(s, key, until) : 0;
}

long fy_store_cleanup(struct fy_store *s, int64_t min_age)
{
	return s->ops->cleanup ? s->ops->cleanup(s, min_age) : 0;
}

int fy_store_make_folder(struct fy_store *s, const char *prefix)
{
	return s->ops->make_folder ? s->ops->make_folder(s, prefix) : 0;
}

void fy_store_stats(struct fy_store *s, struct fy_store_stats *out)
{
	*out = (struct fy_store_stats){ 0 };
	if (s->ops->stats)
		s->ops->stats(s, out);
}

void fy_digest_compute(struct fy_digest *d, unsigned want, const void *buf, size_t len)
{
	unsigned int n = 0;

	want &= ~d->have;
	if (want & FY_DG_SHA256)
		EVP_Digest(buf, len, d->sha256, &n, EVP_sha256(), NULL);
	if (want & FY_DG_MD5)
		EVP_Digest(buf, len, d->md5, &n, EVP_md5(), NULL);
	if (want & FY_DG_CRC32C)
		d->crc32c = fy_crc32c(0, buf, len);
	d->have |= want;
}

static _Thread_local char err_detail[512];
static _Thread_local int err_rc;

int fy_store_fail(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_detail, sizeof(err_detail), fmt, ap);
	va_end(ap);
	err_rc = rc;
	return rc;
}

void fy_store_clear_error(void)
{
	err_rc = 0;
	err_detail[0] = '\0';
}

const char *fy_store_strerror(int rc)
{
	return rc < 0 && rc == err_rc && err_detail[0] ? err_detail : strerror(rc < 0 ? -rc : rc);
}
