/* range-list: the blocks touched by the byte ranges listed in a text file
 * (one "OFFSET LENGTH" a line; docs/cbt.md has the exact format).
 *
 * The file is read through one fixed buffer, so memory does not grow with
 * it and a line has a maximum length.  Ranges are kept as block spans and
 * sorted and merged a batch at a time before they touch the bitmap: a file
 * of millions of ranges that each cover most of the volume costs
 * O(n log batch), not O(n * blocks). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbt/cbt_priv.h"

#define RL_LINE_MAX 4096u		/* longest line accepted, newline excluded */
#define RL_BUF (64u * 1024u)		/* read buffer; more than one line */
#define RL_BATCH 65536u			/* spans sorted and merged at a time */
#define RL_QUOTE 40u			/* characters of a bad token shown */

struct rl_span {
	uint64_t first, last;		/* blocks, inclusive */
};

struct rl {
	const struct fy_cbt_req *req;
	struct fy_bitmap *bm;
	unsigned long long line;	/* number of the line being parsed, from 1 */
	struct rl_span *span;		/* RL_BATCH */
	size_t n;
	char *why;
	size_t whylen;
};

static int rl_span_cmp(const void *a, const void *b)
{
	const struct rl_span *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* Sort and merge the batch, then set each merged span once. */
static void rl_flush(struct rl *r)
{
	struct rl_span cur;

	if (!r->n)
		return;
	qsort(r->span, r->n, sizeof(*r->span), rl_span_cmp);
	cur = r->span[0];
	for (size_t i = 1; i < r->n; i++) {
		if (r->span[i].first <= cur.last + 1) {
			if (r->span[i].last > cur.last)
				cur.last = r->span[i].last;
			continue;
		}
		fy_bitmap_set_range(r->bm, cur.first, cur.last);
		cur = r->span[i];
	}
	fy_bitmap_set_range(r->bm, cur.first, cur.last);
	r->n = 0;
}

static bool rl_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int rl_digit(char c, unsigned base)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (base == 16 && c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (base == 16 && c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A token for an error line: at most RL_QUOTE characters, unprintable ones
 * shown as '?'. */
static const char *rl_quote(const char *s, size_t len, char out[RL_QUOTE + 4])
{
	size_t i, n = len > RL_QUOTE ? RL_QUOTE : len;

	for (i = 0; i < n; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (n < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
	return out;
}

static int rl_bad(struct rl *r, const char *fmt_what, const char *tok, size_t toklen)
{
	char q[RL_QUOTE + 4];

	fy_cbt_why(r->why, r->whylen, "ranges file %s line %llu: %s \"%s\"", r->req->arg, r->line,
		   fmt_what, rl_quote(tok, toklen, q));
	return -EINVAL;
}

/* Parse one number token (what, "offset" or "length", names it in errors):
 * decimal digits, or 0x / 0X and hex digits. */
static int rl_number(struct rl *r, const char *what, const char *tok, size_t len, uint64_t *v)
{
	char msg[64];
	unsigned base = 10;
	size_t i = 0;
	uint64_t x = 0;

	if (tok[0] == '-') {
		snprintf(msg, sizeof(msg), "%s is negative:", what);
		return rl_bad(r, msg, tok, len);
	}
	if (len > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X')) {
		base = 16;
		i = 2;
	}
	for (; i < len; i++) {
		int d = rl_digit(tok[i], base);

		if (d < 0) {
			snprintf(msg, sizeof(msg), "%s is not a decimal or 0x-hex number:", what);
			return rl_bad(r, msg, tok, len);
		}
		if (x > (UINT64_MAX - (uint64_t)d) / base) {
			snprintf(msg, sizeof(msg), "%s does not fit in 64 bits:", what);
			return rl_bad(r, msg, tok, len);
		}
		x = x * base + (uint64_t)d;
	}
	*v = x;
	return 0;
}

/* One line, without its newline. */
static int rl_line(struct rl *r, const char *s, size_t len)
{
	const char *tok[3];
	size_t toklen[3], ntok = 0, i = 0;
	uint64_t off, n;
	int ret;

	if (len && s[len - 1] == '\r')
		len--;
	while (i < len && rl_blank(s[i]))
		i++;
	if (i == len || s[i] == '#')
		return 0;
	while (i < len && ntok < 3) {
		tok[ntok] = s + i;
		while (i < len && !rl_blank(s[i]))
			i++;
		toklen[ntok] = (size_t)(s + i - tok[ntok]);
		ntok++;
		while (i < len && rl_blank(s[i]))
			i++;
	}
	if (ntok < 2) {
		fy_cbt_why(r->why, r->whylen, "ranges file %s line %llu: a length is missing (want OFFSET LENGTH)",
			   r->req->arg, r->line);
		return -EINVAL;
	}
	if (ntok > 2)
		return rl_bad(r, "unexpected text after the length:", tok[2], (size_t)(s + len - tok[2]));
	ret = rl_number(r, "offset", tok[0], toklen[0], &off);
	if (!ret)
		ret = rl_number(r, "length", tok[1], toklen[1], &n);
	if (ret)
		return ret;
	if (n > UINT64_MAX - off) {
		fy_cbt_why(r->why, r->whylen, "ranges file %s line %llu: offset %llu + length %llu overflows 64 bits",
			   r->req->arg, r->line, (unsigned long long)off, (unsigned long long)n);
		return -EINVAL;
	}
	if (off + n > r->req->size) {
		fy_cbt_why(r->why, r->whylen,
			   "ranges file %s line %llu: range %llu+%llu ends at %llu, past the end of the %llu-byte volume",
			   r->req->arg, r->line, (unsigned long long)off, (unsigned long long)n,
			   (unsigned long long)(off + n), (unsigned long long)r->req->size);
		return -EINVAL;
	}
	if (!n)
		return 0;
	if (r->n == RL_BATCH)
		rl_flush(r);
	r->span[r->n].first = off / r->req->chunk_size;
	r->span[r->n].last = (off + n - 1) / r->req->chunk_size;
	r->n++;
	return 0;
}

/* Every line of fd through rl_line. */
static int rl_read(struct rl *r, int fd, char *buf)
{
	size_t have = 0, start = 0;
	bool eof = false;
	int ret;

	for (;;) {
		char *nl = memchr(buf + start, '\n', have - start);
		ssize_t got;

		if (nl || (eof && start < have)) {
			size_t len = nl ? (size_t)(nl - (buf + start)) : have - start;

			r->line++;
			if (len > RL_LINE_MAX) {
				fy_cbt_why(r->why, r->whylen, "ranges file %s line %llu: longer than %u bytes",
					   r->req->arg, r->line, RL_LINE_MAX);
				return -EINVAL;
			}
			ret = rl_line(r, buf + start, len);
			if (ret)
				return ret;
			start += len + (nl != NULL);
			continue;
		}
		if (eof)
			return 0;
		if (have - start > RL_LINE_MAX) {
			fy_cbt_why(r->why, r->whylen, "ranges file %s line %llu: longer than %u bytes",
				   r->req->arg, r->line + 1, RL_LINE_MAX);
			return -EINVAL;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		start = 0;
		do
			got = read(fd, buf + have, RL_BUF - have);
		while (got < 0 && errno == EINTR);
		if (got < 0) {
			ret = -errno;
			fy_cbt_why(r->why, r->whylen, "ranges file %s: read after line %llu: %s",
				   r->req->arg, r->line, strerror(-ret));
			return ret;
		}
		if (got == 0)
			eof = true;
		have += (size_t)got;
	}
}

static int range_list_changed(const struct fy_cbt_req *req, struct fy_bitmap *changed, char *why, size_t whylen)
{
	struct rl r = { .req = req, .bm = changed, .why = why, .whylen = whylen };
	char *buf = NULL;
	struct stat st;
	int fd, ret;

	ret = fy_cbt_req_check(&fy_cbt_range_list, "ranges file", req, changed, why, whylen);
	if (ret)
		return ret;
	fd = open(req->arg, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		fy_cbt_why(why, whylen, "ranges file %s: %s", req->arg, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		fy_cbt_why(why, whylen, "ranges file %s: stat: %s", req->arg, strerror(-ret));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = -EISDIR;
		fy_cbt_why(why, whylen, "ranges file %s is a directory", req->arg);
		goto out;
	}
	buf = malloc(RL_BUF);
	r.span = malloc(RL_BATCH * sizeof(*r.span));
	if (!buf || !r.span) {
		ret = -ENOMEM;
		fy_cbt_why(why, whylen, "ranges file %s: out of memory", req->arg);
		goto out;
	}
	ret = rl_read(&r, fd, buf);
	if (!ret)
		rl_flush(&r);
out:
	free(r.span);
	free(buf);
	close(fd);
	return ret;
}

const struct fy_cbt_ops fy_cbt_range_list = {
	.name = "range-list",
	.changed = range_list_changed,
};
