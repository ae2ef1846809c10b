/* Store dispatch: pick a backend by the scheme of a repository URL. */
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One line per backend; a plain path (no "://") opens the first entry. */
static const struct fy_store_ops *const fy_store_backends[] = {
	&fy_store_file_ops,
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
