/* io_uring engine (liburing).
 *
 * submit() only fills SQEs; they reach the kernel in one io_uring_submit()
 * from reap() (or earlier if the SQ fills up).  Caller buffers given in
 * fy_io_params are registered as fixed buffers so the kernel does not pin
 * pages on every I/O; if the locked-memory limit refuses all of them, the
 * largest prefix that fits is registered and the rest use plain READ/WRITE. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "io/io_priv.h"

struct uring_slot {
	struct fy_io_req *req;
	size_t done;
};

struct fy_uring {
	struct fy_io io;
	struct io_uring ring;
	bool ring_ok;
	int fd;
	unsigned depth;
	struct fy_io_bufs bufs;
	struct uring_slot *slot;
	struct fy_io_pool pool;
};

/* kernel.io_uring_disabled: 0 on, 1 only for privileged or io_uring_group, 2 off. */
static int uring_sysctl(void)
{
	char c = '0';
	int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (read(fd, &c, 1) != 1)
		c = '0';
	close(fd);
	return c - '0';
}

static int uring_probe(char *why, size_t whylen)
{
	static const int ops[] = { IORING_OP_READ, IORING_OP_WRITE,
				   IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED };
	struct io_uring_probe *pr;
	struct io_uring ring;
	struct iovec iov;
	char page[64] __attribute__((aligned(64)));
	const char *fixed;
	int ret, dis;
	size_t i;

	if (!why)
		whylen = 0;
	dis = uring_sysctl();
	if (dis == 2) {
		if (whylen)
			snprintf(why, whylen, "io_uring: disabled by sysctl kernel.io_uring_disabled=2");
		return -ENOTSUP;
	}
	ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0) {
		if (whylen)
			snprintf(why, whylen, "io_uring: ring setup failed: %s%s", strerror(-ret),
				 dis == 1 ? " (kernel.io_uring_disabled=1)" : "");
		return ret == -EPERM || ret == -ENOSYS ? -ENOTSUP : ret;
	}
	pr = io_uring_get_probe_ring(&ring);
	if (!pr) {
		io_uring_queue_exit(&ring);
		if (whylen)
			snprintf(why, whylen, "io_uring: kernel cannot report supported opcodes (before 5.6)");
		return -ENOTSUP;
	}
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!io_uring_opcode_supported(pr, ops[i])) {
			io_uring_free_probe(pr);
			io_uring_queue_exit(&ring);
			if (whylen)
				snprintf(why, whylen, "io_uring: kernel lacks opcode %d", ops[i]);
			return -ENOTSUP;
		}
	}
	io_uring_free_probe(pr);
	iov.iov_base = page;
	iov.iov_len = sizeof(page);
	ret = io_uring_register_buffers(&ring, &iov, 1);
	fixed = ret ? "unavailable, plain READ/WRITE" : "supported";
	io_uring_queue_exit(&ring);
	if (whylen)
		snprintf(why, whylen, "io_uring: kernel supports it, registered buffers %s", fixed);
	return 0;
}

static int uring_reap(struct fy_io *io, struct fy_io_req **done, unsigned min, unsigned max);

static void uring_exit(struct fy_io *io)
{
	struct fy_uring *u = (struct fy_uring *)io;
	struct fy_io_req *d[16];

	/* Closing the ring does not wait for I/O into caller buffers the
	 * caller may free next: finish what is in flight first. */
	while (u->ring_ok && io->inflight && uring_reap(io, d, 1, 16) > 0)
		;
	if (u->ring_ok)
		io_uring_queue_exit(&u->ring);	/* also unregisters the buffers */
	fy_io_bufs_free(&u->bufs);
	free(u->pool.free);
	free(u->slot);
	free(u);
}

/* Register bufs[0..n); on -ENOMEM (RLIMIT_MEMLOCK without CAP_IPC_LOCK)
 * retry with half as many.  Returns the number registered. */
static unsigned uring_register(struct fy_uring *u)
{
	struct iovec *iov;
	unsigned i, n = u->bufs.n;
	int ret = -ENOMEM;

	if (!n)
		return 0;
	iov = calloc(n, sizeof(*iov));
	if (!iov)
		return 0;
	for (i = 0; i < n; i++) {
		iov[i].iov_base = u->bufs.buf[i];
		iov[i].iov_len = u->bufs.size;
	}
	while (n) {
		ret = io_uring_register_buffers(&u->ring, iov, n);
		if (ret != -ENOMEM)
			break;
		n /= 2;
	}
	free(iov);
	return ret ? 0 : n;
}

static int uring_init(struct fy_io **iop, int fd, const struct fy_io_params *p)
{
	struct fy_uring *u;
	struct fy_io *io;
	int ret;

	ret = fy_io_alloc(iop, fd, p, &fy_io_uring_ops, sizeof(*u), &io);
	if (ret)
		return ret;
	u = (struct fy_uring *)io;
	u->fd = fd;
	u->depth = p->depth;
	ret = fy_io_bufs_init(&u->bufs, p);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	u->slot = calloc(p->depth, sizeof(*u->slot));
	if (!u->slot || fy_io_pool_init(&u->pool, p->depth))
		goto fail;
	/* SQ holds depth entries and the CQ twice that: each request has at
	 * most one SQE or CQE outstanding, so neither can overflow. */
	ret = io_uring_queue_init(p->depth, &u->ring, 0);
	if (ret < 0)
		goto fail;
	u->ring_ok = true;
	u->io.nfixed = uring_register(u);
	*iop = &u->io;
	return 0;
fail:
	uring_exit(&u->io);
	return ret;
}

static struct io_uring_sqe *uring_sqe(struct fy_uring *u)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&u->ring))) {
		int ret = io_uring_submit(&u->ring);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return NULL;
	}
	return sqe;
}

/* Queue the (remaining part of the) slot's request. */
static int uring_queue(struct fy_uring *u, struct uring_slot *s)
{
	struct fy_io_req *r = s->req;
	struct io_uring_sqe *sqe = uring_sqe(u);
	char *buf = (char *)r->buf + s->done;
	unsigned len = (unsigned)fy_io_chunk(r, s->done);
	uint64_t off = r->off + s->done;
	bool fixed = r->buf_index >= 0 && (unsigned)r->buf_index < u->io.nfixed;

	if (!sqe)
		return -EIO;
	if (r->op == FY_IO_READ && fixed)
		io_uring_prep_read_fixed(sqe, u->fd, buf, len, off, r->buf_index);
	else if (r->op == FY_IO_READ)
		io_uring_prep_read(sqe, u->fd, buf, len, off);
	else if (fixed)
		io_uring_prep_write_fixed(sqe, u->fd, buf, len, off, r->buf_index);
	else
		io_uring_prep_write(sqe, u->fd, buf, len, off);
	io_uring_sqe_set_data(sqe, s);
	return 0;
}

static int uring_submit(struct fy_io *io, struct fy_io_req *r)
{
	struct fy_uring *u = (struct fy_uring *)io;
	struct uring_slot *s;
	int ret, idx;

	if (io->inflight >= u->depth)
		return -EBUSY;
	ret = fy_io_req_check(&u->bufs, r);
	if (ret)
		return ret;
	idx = fy_io_pool_get(&u->pool);
	if (idx < 0)
		return -EBUSY;
	s = &u->slot[idx];
	s->req = r;
	s->done = 0;
	ret = uring_queue(u, s);
	if (ret) {
		fy_io_pool_put(&u->pool, (unsigned)idx);
		return ret;
	}
	io->inflight++;
	return 0;
}

static bool uring_transient(int ret)
{
	return ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

static int uring_reap(struct fy_io *io, struct fy_io_req **done, unsigned min, unsigned max)
{
	struct fy_uring *u = (struct fy_uring *)io;
	struct io_uring_cqe *cqe;
	unsigned n = 0;
	int ret;

	if (min > max || (max && !done))
		return -EINVAL;
	if (min > io->inflight)
		min = io->inflight;
	for (;;) {
		while (n < max && io_uring_peek_cqe(&u->ring, &cqe) == 0) {
			struct uring_slot *s = io_uring_cqe_get_data(cqe);
			long res = cqe->res;

			io_uring_cqe_seen(&u->ring, cqe);
			if (!fy_io_step(s->req, &s->done, res)) {
				ret = uring_queue(u, s);
				if (!ret)
					continue;
				s->req->res = ret;
			}
			done[n++] = s->req;
			fy_io_pool_put(&u->pool, (unsigned)(s - u->slot));
			io->inflight--;
		}
		if (n >= min)
			break;
		ret = io_uring_submit_and_wait(&u->ring, 1);
		if (ret < 0 && !uring_transient(ret))
			return n ? (int)n : ret;
	}
	/* Hand the batch (new requests and residuals) to the kernel. */
	while (io_uring_sq_ready(&u->ring)) {
		ret = io_uring_submit(&u->ring);
		if (ret >= 0)
			break;
		if (!uring_transient(ret))
			return n ? (int)n : ret;
		if (ret != -EINTR)
			break;	/* CQ busy: the next reap submits them */
	}
	return (int)n;
}

const struct fy_io_ops fy_io_uring_ops = {
	.name = "io_uring",
	.probe = uring_probe,
	.init = uring_init,
	.submit = uring_submit,
	.reap = uring_reap,
	.exit = uring_exit,
};
