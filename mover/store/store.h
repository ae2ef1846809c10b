/* Object stores: the repository's backing storage, addressed by key
 * ("config", "chunks/ab/ab12...", "snapshots/0f3c...").
 *
 * Every operation is blocking and thread-safe on one handle: a caller keeps
 * many requests in flight by calling from several threads, up to
 * fy_store_concurrency() of them (the file store's fsyncs and the S3 store's
 * HTTP requests both overlap this way; the S3 store keeps a pool of
 * connections, one per caller thread).
 *
 * Durability: put() of a key makes the object visible atomically (never a
 * partial object under its final key).  An object is durable once sync()
 * has returned after its put(); a put() with FY_PUT_DURABLE is durable when
 * it returns.  The manifest of a snapshot is put with FY_PUT_DURABLE after a
 * sync(): that is the commit point.
 *
 * Functions return 0 (or a count) on success and a negative errno on failure:
 * -ENOENT for a missing key, -ENOSPC when the store is full, -EIO otherwise. */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FY_PUT_DURABLE 1u   /* durable on return (implies a sync of this key) */
#define FY_PUT_NOREPLACE 2u /* keep an existing object (content-addressed data) */
/* Create only: -EEXIST when another object is already there (implies
 * NOREPLACE; the object this very call stored, found again by a retry, is
 * success).  Atomic on the file store and on S3 with conditional PUTs; on an
 * Object Lock target (RGW ignores the condition there) it is a HEAD, a PUT
 * and a read back, which catches most races but not all (docs/store.md). */
#define FY_PUT_EXCL 4u

struct fy_store;

/* Digests of an object's bytes that a caller may have computed already (a
 * backup fanned out to several targets computes them once for all). */
#define FY_DG_SHA256 1u
#define FY_DG_CRC32C 2u
#define FY_DG_MD5 4u
struct fy_digest {
	unsigned have; /* FY_DG_* */
	uint8_t sha256[32];
	uint32_t crc32c;
	uint8_t md5[16];
};
void fy_digest_compute(struct fy_digest *d, unsigned want, const void *buf, size_t len);

/* Counters of one store handle (all zero for the file store). */
struct fy_store_stats {
	uint64_t requests; /* HTTP requests sent, retries included */
	uint64_t retries;  /* requests sent again after a retryable failure */
	uint64_t bytes_up, bytes_down;
};

typedef int (*fy_store_list_cb)(const char *key, uint64_t size, void *arg);

struct fy_store_ops {
	const char *scheme; /* "file", "s3" */
	/* url: the whole URL; errbuf receives one line naming what was wrong. */
	int (*open)(const char *url, struct fy_store **st, char *errbuf, size_t errlen);
	/* dg: digests of buf already computed, or NULL. */
	int (*put)(struct fy_store *st, const char *key, const void *buf, size_t len, unsigned flags,
		   const struct fy_digest *dg);
	/* Read len bytes from off (len == SIZE_MAX: to the end) into a malloc'd
	 * buffer returned in *buf with its length in *got. */
	int (*get)(struct fy_store *st, const char *key, uint64_t off, size_t len, void **buf, size_t *got);
	/* 1 if present, 0 if not, -errno on error; *size set when present and size != NULL. */
	int (*exists)(struct fy_store *st, const char *key, uint64_t *size);
	/* Call cb for every key beginning with prefix; stops early when cb returns non-zero
	 * (and returns that value).  A listing that cannot be trusted is an error,
	 * never an empty list: -ENOENT when the prefix's folder does not exist at
	 * all (file store; the caller decides whether that means "empty"), another
	 * -errno when it cannot be read (not a directory, a dangling symlink, a
	 * malformed or truncated S3 answer, ...), with the reason in
	 * fy_store_strerror(). */
	int (*list)(struct fy_store *st, const char *prefix, fy_store_list_cb cb, void *arg);
	int (*del)(struct fy_store *st, const char *key);
	/* Make every put() so far durable. */
	int (*sync)(struct fy_store *st);
	void (*close)(struct fy_store *st);
	unsigned (*concurrency)(struct fy_store *st);
	/* Optional (NULL: nothing to say). */
	/* Which FY_DG_* digests put() would compute itself. */
	unsigned (*digests)(struct fy_store *st);
	/* Object Lock: 1 and *until (Unix seconds) when key may not be deleted
	 * yet, 0 when it may, -errno on error. */
	int (*retention)(struct fy_store *st, const char *key, int64_t *until);
	/* Remove what interrupted writers left (incomplete multipart uploads,
	 * temp files older than min_age seconds); returns how many. */
	long (*cleanup)(struct fy_store *st, int64_t min_age);
	void (*stats)(struct fy_store *st, struct fy_store_stats *out);
	/* Make the folder of the keys under prefix ("chunks/") exist, durably,
	 * so that a later list() of it finds it (stores without folders: NULL). */
	int (*make_folder)(struct fy_store *st, const char *prefix);
};

/* Every store handle starts with this header. */
struct fy_store {
	const struct fy_store_ops *ops;
	char *url;
};

extern const struct fy_store_ops fy_store_file_ops;
extern const struct fy_store_ops fy_store_s3_ops;

/* Open by URL: "file:///abs/path", or a plain path (a file store).  An unknown
 * scheme is -EPROTONOSUPPORT with a line in errbuf naming it. */
int fy_store_open(const char *url, struct fy_store **st, char *errbuf, size_t errlen);

/* Test hook, off unless FERRY_TEST_KILL_AFTER_OPS is set (docs/store.md,
 * "Test hook: kill -9 at a chosen operation"): called after every put and del
 * returns, it raises SIGKILL once the chosen count of them is reached. */
#define FY_STORE_OP_PUT 1u
#define FY_STORE_OP_DEL 2u
void fy_store_kill_point(unsigned op);
/* Arm the hook as FERRY_TEST_KILL_AFTER_OPS would ("put:N", "del:N", "any:N";
 * NULL or "" disarms it), counting from zero; -EINVAL for anything else.
 * For unit tests. */
int fy_store_kill_arm(const char *spec);

static inline int fy_store_put_dg(struct fy_store *s, const char *k, const void *b, size_t n, unsigned f,
				  const struct fy_digest *dg)
{
	int rc = s->ops->put(s, k, b, n, f, dg);

	fy_store_kill_point(FY_STORE_OP_PUT);
	return rc;
}
static inline int fy_store_put(struct fy_store *s, const char *k, const void *b, size_t n, unsigned f)
{ return fy_store_put_dg(s, k, b, n, f, NULL); }
static inline int fy_store_get(struct fy_store *s, const char *k, uint64_t off, size_t n, void **b, size_t *got)
{ return s->ops->get(s, k, off, n, b, got); }
static inline int fy_store_exists(struct fy_store *s, const char *k, uint64_t *size)
{ return s->ops->exists(s, k, size); }
static inline int fy_store_list(struct fy_store *s, const char *p, fy_store_list_cb cb, void *arg)
{ return s->ops->list(s, p, cb, arg); }
static inline int fy_store_del(struct fy_store *s, const char *k)
{
	int rc = s->ops->del(s, k);

	fy_store_kill_point(FY_STORE_OP_DEL);
	return rc;
}
static inline int fy_store_sync(struct fy_store *s)
{ return s->ops->sync(s); }
static inline unsigned fy_store_concurrency(struct fy_store *s)
{ return s->ops->concurrency(s); }
void fy_store_close(struct fy_store *s);
unsigned fy_store_digests(struct fy_store *s);
int fy_store_retention(struct fy_store *s, const char *key, int64_t *until);
long fy_store_cleanup(struct fy_store *s, int64_t min_age);
int fy_store_make_folder(struct fy_store *s, const char *prefix);
void fy_store_stats(struct fy_store *s, struct fy_store_stats *out);

/* The reason of the calling thread's last failed store operation returning
 * rc (e.g. "HTTP 403 SignatureDoesNotMatch: ..."), else strerror(-rc). */
const char *fy_store_strerror(int rc);
/* For backends: record that reason; returns rc. */
int fy_store_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fy_store_clear_error(void);

/* Every key under prefix, collected (a list() for callers that read the
 * objects afterwards).  Free with fy_store_keys_free(). */
struct fy_store_keys {
	char **keys;
	size_t n, cap;
};
int fy_store_keys(struct fy_store *s, const char *prefix, struct fy_store_keys *out);
void fy_store_keys_free(struct fy_store_keys *k);

/* For backends: write one error line into errbuf (which may be NULL). */
void fy_store_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
