/* psync engine: pread/pwrite done synchronously inside submit().  The
 * completion is queued and handed out by reap(), so callers drive it exactly
 * like the asynchronous engines. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "io/io_priv.h"

struct fy_psync {
	struct fy_io io;
	int fd;
	unsigned depth;
	struct fy_io_bufs bufs;
	struct fy_io_fifo done;
};

static int psync_probe(char *why, size_t whylen)
{
	if (why && whylen)
		snprintf(why, whylen, "psync: always available");
	return 0;
}

static void psync_exit(struct fy_io *io)
{
	struct fy_psync *ps = (struct fy_psync *)io;

	fy_io_bufs_free(&ps->bufs);
	free(ps->done.q);
	free(ps);
}

static int psync_init(struct fy_io **iop, int fd, const struct fy_io_params *p)
{
	struct fy_psync *ps;
	struct fy_io *io;
	int ret;

	ret = fy_io_alloc(iop, fd, p, &fy_io_psync_ops, sizeof(*ps), &io);
	if (ret)
		return ret;
	ps = (struct fy_psync *)io;
	ps->fd = fd;
	ps->depth = p->depth;
	ret = fy_io_bufs_init(&ps->bufs, p);
	if (!ret)
		ret = fy_io_fifo_init(&ps->done, p->depth);
	if (ret) {
		psync_exit(&ps->io);
		return ret;
	}
	*iop = &ps->io;
	return 0;
}

static void psync_run(int fd, struct fy_io_req *r)
{
	size_t done = 0;
	ssize_t n;

	do {
		char *p = (char *)r->buf + done;
		size_t len = fy_io_chunk(r, done);
		off_t off = (off_t)(r->off + done);

		if (r->op == FY_IO_READ)
			n = pread(fd, p, len, off);
		else
			n = pwrite(fd, p, len, off);
		if (n < 0)
			n = -errno;
	} while (!fy_io_step(r, &done, n));
}

static int psync_submit(struct fy_io *io, struct fy_io_req *r)
{
	struct fy_psync *ps = (struct fy_psync *)io;
	int ret;

	if (io->inflight >= ps->depth)
		return -EBUSY;
	ret = fy_io_req_check(&ps->bufs, r);
	if (ret)
		return ret;
	psync_run(ps->fd, r);
	fy_io_fifo_push(&ps->done, r);
	io->inflight++;
	return 0;
}

static int psync_reap(struct fy_io *io, struct fy_io_req **done, unsigned min, unsigned max)
{
	struct fy_psync *ps = (struct fy_psync *)io;
	unsigned n = 0;

	if (min > max || (max && !done))
		return -EINVAL;
	/* Everything submitted has already completed: min is always met. */
	while (n < max && ps->done.n) {
		done[n++] = fy_io_fifo_pop(&ps->done);
		io->inflight--;
	}
	return (int)n;
}

const struct fy_io_ops fy_io_psync_ops = {
	.name = "psync",
	.probe = psync_probe,
	.init = psync_init,
	.submit = psync_submit,
	.reap = psync_reap,
	.exit = psync_exit,
};
