/* Internal helpers shared by the I/O engines; not part of the public API. */
#ifndef FERRY_IO_PRIV_H
#define FERRY_IO_PRIV_H

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"

/* Largest single transfer handed to the kernel.  Linux caps one read or
 * write at 0x7ffff000 bytes anyway, and io_uring's length field is 32 bits;
 * a longer request simply continues like a short transfer. */
#define FY_IO_CHUNK (1u << 30)

/* The limit actually used: FY_IO_CHUNK, lowered only by tests so that every
 * request is finished in several pieces, like a string of short transfers. */
extern size_t fy_io_chunk_max;

#define FY_IO_MAX_DEPTH 4096u

/* Copy of the caller's buffer table, so requests can be checked against it. */
struct fy_io_bufs {
	void **buf;
	unsigned n;
	size_t size;
};

static inline int fy_io_bufs_init(struct fy_io_bufs *b, const struct fy_io_params *p)
{
	memset(b, 0, sizeof(*b));
	if (!p->nbufs)
		return 0;
	if (!p->bufs || !p->buf_size)
		return -EINVAL;
	b->buf = calloc(p->nbufs, sizeof(*b->buf));
	if (!b->buf)
		return -ENOMEM;
	memcpy(b->buf, p->bufs, p->nbufs * sizeof(*b->buf));
	b->n = p->nbufs;
	b->size = p->buf_size;
	return 0;
}

static inline void fy_io_bufs_free(struct fy_io_bufs *b)
{
	free(b->buf);
	b->buf = NULL;
	b->n = 0;
}

static inline int fy_io_params_check(const struct fy_io_params *p)
{
	if (!p || p->depth < 1 || p->depth > FY_IO_MAX_DEPTH)
		return -EINVAL;
	return 0;
}

/* The start every engine's init shares: check the arguments, allocate the
 * engine's zeroed state (size bytes, struct fy_io first) and set its ops. */
static inline int fy_io_alloc(struct fy_io **iop, int fd, const struct fy_io_params *p,
			      const struct fy_io_ops *ops, size_t size, struct fy_io **io)
{
	int ret;

	if (!iop || fd < 0)
		return -EINVAL;
	ret = fy_io_params_check(p);
	if (ret)
		return ret;
	*io = calloc(1, size);
	if (!*io)
		return -ENOMEM;
	(*io)->ops = ops;
	return 0;
}

/* A request must name a registered buffer that contains it, or none. */
static inline int fy_io_req_check(const struct fy_io_bufs *b, const struct fy_io_req *r)
{
	const char *base;

	if (!r || (r->op != FY_IO_READ && r->op != FY_IO_WRITE))
		return -EINVAL;
	if (r->len > SSIZE_MAX || r->off > (uint64_t)INT64_MAX - r->len)
		return -EINVAL;
	if (r->len && !r->buf)
		return -EINVAL;
	if (r->buf_index < 0)
		return 0;
	if ((unsigned)r->buf_index >= b->n)
		return -EINVAL;
	base = b->buf[r->buf_index];
	if ((const char *)r->buf < base || r->len > b->size ||
	    (size_t)((const char *)r->buf - base) > b->size - r->len)
		return -EINVAL;
	return 0;
}

/* Account one kernel result for a request of which *done bytes are already
 * transferred.  Returns 1 when the request is finished (req->res is set), 0
 * when the residual at buf + *done, off + *done must be issued again. */
static inline int fy_io_step(struct fy_io_req *r, size_t *done, long res)
{
	if (res == -EINTR || res == -EAGAIN)
		return 0;
	if (res < 0) {
		r->res = res;
		return 1;
	}
	if (res == 0) {
		if (*done == r->len || r->op == FY_IO_READ)
			r->res = (ssize_t)*done;	/* read: end of file */
		else
			r->res = -EIO;			/* a write that makes no progress */
		return 1;
	}
	if ((size_t)res > r->len - *done) {
		r->res = -EIO;
		return 1;
	}
	*done += (size_t)res;
	if (*done < r->len)
		return 0;
	r->res = (ssize_t)*done;
	return 1;
}

static inline size_t fy_io_chunk(const struct fy_io_req *r, size_t done)
{
	size_t left = r->len - done;

	return left > fy_io_chunk_max ? fy_io_chunk_max : left;
}

/* Slot allocator: depth slots, a stack of free indices. */
struct fy_io_pool {
	unsigned *free;
	unsigned nfree;
};

static inline int fy_io_pool_init(struct fy_io_pool *p, unsigned depth)
{
	p->free = calloc(depth, sizeof(*p->free));
	if (!p->free)
		return -ENOMEM;
	for (p->nfree = 0; p->nfree < depth; p->nfree++)
		p->free[p->nfree] = depth - 1 - p->nfree;
	return 0;
}

static inline int fy_io_pool_get(struct fy_io_pool *p)
{
	return p->nfree ? (int)p->free[--p->nfree] : -1;
}

static inline void fy_io_pool_put(struct fy_io_pool *p, unsigned idx)
{
	p->free[p->nfree++] = idx;
}

/* FIFO of completed requests not yet handed to the caller. */
struct fy_io_fifo {
	struct fy_io_req **q;
	unsigned cap, head, n;
};

static inline int fy_io_fifo_init(struct fy_io_fifo *f, unsigned cap)
{
	f->q = calloc(cap, sizeof(*f->q));
	f->cap = cap;
	f->head = f->n = 0;
	return f->q ? 0 : -ENOMEM;
}

static inline void fy_io_fifo_push(struct fy_io_fifo *f, struct fy_io_req *r)
{
	f->q[(f->head + f->n++) % f->cap] = r;
}

static inline struct fy_io_req *fy_io_fifo_pop(struct fy_io_fifo *f)
{
	struct fy_io_req *r;

	if (!f->n)
		return NULL;
	r = f->q[f->head];
	f->head = (f->head + 1) % f->cap;
	f->n--;
	return r;
}

#endif
