/* libaio engine: Linux native AIO (io_setup/io_submit/io_getevents).
 *
 * submit() only queues an iocb; reap() hands all queued iocbs to the kernel
 * with one io_submit().  Native AIO is only asynchronous on O_DIRECT file
 * descriptors; on buffered ones io_submit() performs the I/O itself. */
#include <errno.h>
#include <stdio.h>

#include <libaio.h>

#include "io/io_priv.h"

struct aio_slot {
	struct iocb cb;
	struct fy_io_req *req;
	size_t done;
};

struct fy_aio {
	struct fy_io io;
	io_context_t ctx;
	bool ctx_ok;
	int fd;
	unsigned depth;
	struct fy_io_bufs bufs;
	struct aio_slot *slot;
	struct fy_io_pool pool;
	struct iocb **pending;		/* queued, not yet given to io_submit */
	unsigned npending;
	struct io_event *ev;
	struct fy_io_fifo failed;	/* rejected by io_submit itself */
};

static int aio_probe(char *why, size_t whylen)
{
	io_context_t ctx = 0;
	int ret = io_setup(1, &ctx);

	if (!why)
		whylen = 0;
	if (ret < 0) {
		if (whylen)
			snprintf(why, whylen, "libaio: io_setup failed: %s%s", strerror(-ret),
				 ret == -EAGAIN ? " (fs.aio-max-nr reached)" : "");
		return ret == -ENOSYS ? -ENOTSUP : ret;
	}
	io_destroy(ctx);
	if (whylen)
		snprintf(why, whylen, "libaio: kernel supports native AIO");
	return 0;
}

static int aio_reap(struct fy_io *io, struct fy_io_req **done, unsigned min, unsigned max);

static void aio_exit(struct fy_io *io)
{
	struct fy_aio *a = (struct fy_aio *)io;
	struct fy_io_req *d[16];

	/* Requests only queued so far are issued too, so every submitted
	 * request has been done, on every engine, when exit returns. */
	while (a->ctx_ok && io->inflight && aio_reap(io, d, 1, 16) > 0)
		;
	if (a->ctx_ok)
		io_destroy(a->ctx);
	fy_io_bufs_free(&a->bufs);
	free(a->failed.q);
	free(a->ev);
	free(a->pending);
	free(a->pool.free);
	free(a->slot);
	free(a);
}

static int aio_init(struct fy_io **iop, int fd, const struct fy_io_params *p)
{
	struct fy_aio *a;
	struct fy_io *io;
	int ret;

	ret = fy_io_alloc(iop, fd, p, &fy_io_libaio_ops, sizeof(*a), &io);
	if (ret)
		return ret;
	a = (struct fy_aio *)io;
	a->fd = fd;
	a->depth = p->depth;
	ret = fy_io_bufs_init(&a->bufs, p);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	a->slot = calloc(p->depth, sizeof(*a->slot));
	a->pending = calloc(p->depth, sizeof(*a->pending));
	a->ev = calloc(p->depth, sizeof(*a->ev));
	if (!a->slot || !a->pending || !a->ev || fy_io_pool_init(&a->pool, p->depth) ||
	    fy_io_fifo_init(&a->failed, p->depth))
		goto fail;
	ret = io_setup((int)p->depth, &a->ctx);
	if (ret < 0)
		goto fail;
	a->ctx_ok = true;
	*iop = &a->io;
	return 0;
fail:
	aio_exit(&a->io);
	return ret;
}

static void aio_queue(struct fy_aio *a, struct aio_slot *s)
{
	struct fy_io_req *r = s->req;
	char *buf = (char *)r->buf + s->done;
	size_t len = fy_io_chunk(r, s->done);
	long long off = (long long)(r->off + s->done);

	if (r->op == FY_IO_READ)
		io_prep_pread(&s->cb, a->fd, buf, len, off);
	else
		io_prep_pwrite(&s->cb, a->fd, buf, len, off);
	s->cb.data = s;
	a->pending[a->npending++] = &s->cb;
}

static int aio_submit(struct fy_io *io, struct fy_io_req *r)
{
	struct fy_aio *a = (struct fy_aio *)io;
	int ret, idx;

	if (io->inflight >= a->depth)
		return -EBUSY;
	ret = fy_io_req_check(&a->bufs, r);
	if (ret)
		return ret;
	idx = fy_io_pool_get(&a->pool);
	if (idx < 0)
		return -EBUSY;
	a->slot[idx].req = r;
	a->slot[idx].done = 0;
	aio_queue(a, &a->slot[idx]);
	io->inflight++;
	return 0;
}

static void aio_finish(struct fy_aio *a, struct aio_slot *s)
{
	fy_io_pool_put(&a->pool, (unsigned)(s - a->slot));
}

/* Give queued iocbs to the kernel.  io_submit() stops at the first iocb it
 * rejects and returns the error only if that is the first one: such a
 * request is finished with the error and the rest go on. */
static int aio_flush(struct fy_aio *a)
{
	while (a->npending) {
		int ret = io_submit(a->ctx, (long)a->npending, a->pending);

		if (ret == -EINTR)
			continue;
		if (ret == -EAGAIN)
			return 0;	/* kernel out of resources: retry after reaping */
		if (ret < 0) {
			struct aio_slot *s = a->pending[0]->data;

			s->req->res = ret;
			aio_finish(a, s);
			fy_io_fifo_push(&a->failed, s->req);
			ret = 1;
		}
		a->npending -= (unsigned)ret;
		memmove(a->pending, a->pending + ret, a->npending * sizeof(*a->pending));
	}
	return 0;
}

static int aio_reap(struct fy_io *io, struct fy_io_req **done, unsigned min, unsigned max)
{
	struct fy_aio *a = (struct fy_aio *)io;
	unsigned n = 0, i;
	int got;

	if (min > max || (max && !done))
		return -EINVAL;
	if (min > io->inflight)
		min = io->inflight;
	for (;;) {
		aio_flush(a);
		while (n < max && a->failed.n) {
			done[n++] = fy_io_fifo_pop(&a->failed);
			io->inflight--;
		}
		if (n >= max)
			break;
		/* Only requests in the kernel can complete; never wait on the
		 * ones io_submit had no room for. */
		if (io->inflight - a->npending == 0)
			break;
		got = io_getevents(a->ctx, n < min ? 1 : 0, (long)(max - n), a->ev, NULL);
		if (got == -EINTR)
			continue;
		if (got < 0)
			return n ? (int)n : got;
		for (i = 0; i < (unsigned)got; i++) {
			struct aio_slot *s = a->ev[i].data;

			/* res is the transfer count or -errno in an unsigned long */
			if (!fy_io_step(s->req, &s->done, (long)a->ev[i].res)) {
				aio_queue(a, s);
				continue;
			}
			done[n++] = s->req;
			aio_finish(a, s);
			io->inflight--;
		}
		if (n >= min)
			break;
	}
	aio_flush(a);
	/* Completions found by the last flush are returned by the next reap. */
	while (n < max && a->failed.n) {
		done[n++] = fy_io_fifo_pop(&a->failed);
		io->inflight--;
	}
	return (int)n;
}

const struct fy_io_ops fy_io_libaio_ops = {
	.name = "libaio",
	.probe = aio_probe,
	.init = aio_init,
	.submit = aio_submit,
	.reap = aio_reap,
	.exit = aio_exit,
};
