/* fuzz_s3: S3 answers through the S3 store itself (mover/store/s3.c):
 * libcurl talks HTTP to a server on loopback in this process that answers
 * with what the fuzzer wrote (status, header lines, body), and the store
 * and its callers do with the answers what they do with a real server's:
 * the status and error documents, the headers (Content-Length, ETag,
 * Object Lock retention), the listings page by page (objects, versions of
 * an Object Lock bucket or of an as-of view, multipart uploads) and what
 * the repository makes of the keys listed (snapshot ids, locks, keys).
 * The server is a stand-in for a real S3 server only in that it answers
 * every request with the fuzzer's bytes; the client code is all real.
 *
 * Input: an operation (1 byte, modulo the table in run_op), then the
 * answers, separated by FZ_S3_NEXT: the k-th request of the operation gets
 * the k-th answer (the last one again when they run out).  An answer is a
 * status (1 byte, an index into statuses[]), the length of its header
 * lines (1 byte), the header lines ('\n' between them), then the body. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "repo/lock.h"

#define FZ_S3_NEXT "\nFERRY-NEXT\n"

static const int statuses[] = { 200, 200, 204, 206, 301, 304, 400, 403, 404, 409, 412, 416, 429, 500, 501, 503 };

static int lfd = -1;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *answers;   /* this input's answers */
static size_t answers_len;
static unsigned served;          /* requests answered for this input */
static struct fy_store *plain_st, *lock_st, *asof_st;

/* The k-th answer of the input: [start, end). */
static void nth_answer(unsigned k, const uint8_t **p, size_t *n)
{
	const uint8_t *a = answers ? answers : (const uint8_t *)"", *end = a + answers_len;
	size_t sep = strlen(FZ_S3_NEXT);

	for (unsigned i = 0; i < k; i++) {
		const uint8_t *nx = memmem(a, (size_t)(end - a), FZ_S3_NEXT, sep);

		if (!nx)
			break;
		a = nx + sep;
	}
	const uint8_t *nx = memmem(a, (size_t)(end - a), FZ_S3_NEXT, sep);

	*p = a;
	*n = (size_t)((nx ? nx : end) - a);
}

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

/* One request on a fresh connection: read it (its body too), answer, close. */
static void serve(int fd)
{
	char req[65536];
	size_t have = 0;
	char *end = NULL;

	while (!end && have < sizeof(req) - 1) {
		ssize_t r = recv(fd, req + have, sizeof(req) - 1 - have, 0);

		if (r <= 0)
			return;
		have += (size_t)r;
		req[have] = 0;
		end = strstr(req, "\r\n\r\n");
	}
	if (!end)
		return;
	bool head = !strncmp(req, "HEAD ", 5);
	unsigned long long clen = 0;

	for (char *l = strstr(req, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
		if (!strncasecmp(l + 2, "content-length:", 15))
			clen = strtoull(l + 17, NULL, 10);
	size_t got = have - (size_t)(end + 4 - req);

	while (got < clen) {
		ssize_t r = recv(fd, req, sizeof(req), 0);

		if (r <= 0)
			return;
		got += (size_t)r;
	}

	const uint8_t *a;
	size_t n;

	pthread_mutex_lock(&mu);
	nth_answer(served++, &a, &n);
	struct fz_in in = { a, n };
	int status = statuses[fz_u8(&in) % (sizeof(statuses) / sizeof(statuses[0]))];
	size_t hlen = fz_u8(&in);

	if (hlen > in.n)
		hlen = in.n;
	char *out = malloc(256 + 2 * hlen + in.n);
	size_t o = (size_t)sprintf(out, "HTTP/1.1 %d Fuzz\r\nConnection: close\r\n", status);

	for (size_t i = 0; i < hlen; i++) {
		if (in.p[i] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
		} else if (in.p[i] != '\r') {
			out[o++] = (char)in.p[i];
		}
	}
	if (hlen && in.p[hlen - 1] != '\n')
		o += (size_t)sprintf(out + o, "\r\n");
	o += (size_t)sprintf(out + o, "Content-Length: %zu\r\n\r\n", in.n - hlen);
	if (!head) {
		memcpy(out + o, in.p + hlen, in.n - hlen);
		o += in.n - hlen;
	}
	pthread_mutex_unlock(&mu);
	write_all(fd, out, o);
	free(out);
}

static void *server(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		serve(fd);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
}

static void set_answers(const uint8_t *p, size_t n)
{
	pthread_mutex_lock(&mu);
	answers = p;
	answers_len = n;
	served = 0;
	pthread_mutex_unlock(&mu);
}

static struct fy_store *open_store(int port, const char *extra)
{
	char url[512], err[512];
	struct fy_store *st = NULL;

	snprintf(url, sizeof(url),
		 "s3://fuzz-bucket/repo?endpoint=http://127.0.0.1:%d&region=us-east-1&retries=0&connections=1"
		 "&timeout=5&multipart-threshold=5M&part-size=5M%s", port, extra);
	if (fy_store_open(url, &st, err, sizeof(err)))
		fz_fail("opening %s: %s", url, err);
	return st;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char lock_ok[] = "\x00\x00<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
				      "</ObjectLockConfiguration>";
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	pthread_t t;

	(void)argc;
	(void)argv;
	setenv("AWS_ACCESS_KEY_ID", "AKIAFUZZFUZZFUZZFUZZ", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "fuzz/secret/key/fuzz/secret/key/fuzz/sec", 1);
	unsetenv("AWS_SESSION_TOKEN");
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 64) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl))
		fz_fail("a loopback socket: %s", strerror(errno));
	if (pthread_create(&t, NULL, server, NULL))
		fz_fail("cannot start the server thread");
	pthread_detach(t);
	int port = ntohs(sa.sin_port);

	plain_st = open_store(port, "");
	set_answers((const uint8_t *)lock_ok, sizeof(lock_ok) - 1);
	lock_st = open_store(port, "&lock=compliance&lock-days=1");
	asof_st = open_store(port, "&as-of=2026-11-21T10:00:00Z");
	return 0;
}

static int count_key(const char *key, uint64_t size, void *arg)
{
	(void)size;
	(void)strlen(key);
	++*(size_t *)arg;
	return 0;
}

static void run_op(uint8_t op)
{
	static uint8_t big[(5u << 20) + 1];
	struct fy_repo r;
	struct fy_store_keys keys;
	struct fy_lock_info *locks = NULL;
	uint8_t *ids = NULL;
	void *buf = NULL;
	size_t n = 0, got = 0;
	uint64_t size;
	int64_t until;
	char err[512];

	fz_repo(&r, true, false);
	r.store = plain_st;
	switch (op % 12) {
	case 0: /* the snapshots of the repository (ListObjectsV2) */
		if (!fy_snapshot_ids(&r, &ids, &n, err, sizeof(err)))
			free(ids);
		break;
	case 1: /* its locks: a listing, then each lock object */
		if (!fy_lock_list(&r, &locks, &n, err, sizeof(err)))
			free(locks);
		break;
	case 2: /* its key objects (the list is freed after a failure too) */
		fy_store_keys(plain_st, "keys/", &keys);
		fy_store_keys_free(&keys);
		break;
	case 3:
		if (!fy_store_get(plain_st, "config", 0, SIZE_MAX, &buf, &got))
			free(buf);
		break;
	case 4:
		if (!fy_store_get(plain_st, "chunks/ab/abab", 4096, 8192, &buf, &got))
			free(buf);
		break;
	case 5:
		fy_store_exists(plain_st, "snapshots/00112233445566778899aabbccddeeff", &size);
		break;
	case 6: /* delete in an Object Lock bucket: every version, listed */
		fy_store_del(lock_st, "locks/00112233445566778899aabbccddeeff");
		break;
	case 7: /* prune's cleanup: incomplete multipart uploads, listed and aborted */
		fy_store_cleanup(plain_st, 0);
		break;
	case 8: /* a multipart upload: initiate (UploadId), parts, complete */
		fy_store_put(plain_st, "chunks/cd/cdcd", big, sizeof(big), FY_PUT_DURABLE);
		break;
	case 9: /* a conditional put, and a locked one */
		fy_store_put(plain_st, "chunks/ef/efef", "chunk", 5, FY_PUT_NOREPLACE);
		fy_store_put(lock_st, "snapshots/00112233445566778899aabbccddeeff", "manifest", 8, FY_PUT_DURABLE);
		break;
	case 10: /* an as-of view: list, get (versions listing, then a version) */
		fy_store_list(asof_st, "snapshots/", count_key, &n);
		if (!fy_store_get(asof_st, "config", 0, SIZE_MAX, &buf, &got))
			free(buf);
		break;
	case 11: /* Object Lock retention (HEAD) */
		fy_store_retention(lock_st, "chunks/ab/abab", &until);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t op = fz_u8(&in);

	set_answers(in.p, in.n);
	run_op(op);
	set_answers(NULL, 0);
	return 0;
}
