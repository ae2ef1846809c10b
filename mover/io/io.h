/* Block I/O engines: io_uring, libaio and psync behind one ops table.
 *
 * An engine instance is bound to one open file descriptor and keeps up to
 * `depth` requests in flight.  Every request carries its own result: the
 * number of bytes transferred (short only at end of file) or -errno.  A short
 * transfer that is not at end of file is finished by the engine itself
 * (resubmitting the residual), and EINTR/EAGAIN are retried inside it, so a
 * caller never sees them.  All functions return 0 (or a count) on success and
 * a negative errno on failure; errno is never the channel. */
#ifndef FERRY_IO_H
#define FERRY_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FY_IO_ALIGN 4096u /* buffer, offset and length alignment for O_DIRECT */

enum fy_io_op { FY_IO_READ = 0, FY_IO_WRITE = 1 };

struct fy_io_req {
	enum fy_io_op op;
	void *buf;         /* FY_IO_ALIGN-aligned when the fd is O_DIRECT */
	size_t len;
	uint64_t off;
	int buf_index;     /* index into fy_io_params.bufs whose range holds
	                    * [buf, buf + len), or -1 (not registered) */
	ssize_t res;       /* set on completion: bytes done, or -errno */
	void *udata;       /* caller's */
};

struct fy_io_params {
	unsigned depth;    /* max requests in flight (>= 1) */
	void **bufs;       /* optional buffers to register (io_uring fixed buffers) */
	unsigned nbufs;
	size_t buf_size;   /* size of each of bufs */
};

struct fy_io;

struct fy_io_ops {
	const char *name;
	/* 0 if the engine can run on this kernel; otherwise -errno and a reason in why. */
	int (*probe)(char *why, size_t whylen);
	int (*init)(struct fy_io **io, int fd, const struct fy_io_params *p);
	/* Queue one request; returns -EBUSY if depth requests are already in
	 * flight, -EINVAL for a malformed request (bad op, buf_index, length).
	 * The request must stay valid until reap returns it. */
	int (*submit)(struct fy_io *io, struct fy_io_req *req);
	/* Wait until at least min requests complete (min may be 0: poll; a min
	 * above the number in flight is lowered to it); store up to max
	 * completed request pointers in done; return how many, or -errno. */
	int (*reap)(struct fy_io *io, struct fy_io_req **done, unsigned min, unsigned max);
	/* Waits for requests still in flight, then frees the instance. */
	void (*exit)(struct fy_io *io);
};

extern const struct fy_io_ops fy_io_uring_ops;
extern const struct fy_io_ops fy_io_libaio_ops;
extern const struct fy_io_ops fy_io_psync_ops;

/* Every engine instance starts with this, so the generic calls below dispatch. */
struct fy_io {
	const struct fy_io_ops *ops;
	unsigned inflight;  /* submitted and not yet returned by reap */
	unsigned nfixed;    /* bufs[0..nfixed) are registered with the kernel
	                     * (io_uring fixed buffers); 0 when none are */
};

/* Choose an engine by name ("auto", "io_uring", "libaio", "psync").  "auto"
 * probes io_uring, then libaio, then psync.  On success *ops is set and, when
 * why is given, it says what was chosen and why (for verbose output).
 * Returns -EINVAL for an unknown name, -ENOTSUP (with why) when a named
 * engine cannot run here. */
int fy_io_select(const char *name, const struct fy_io_ops **ops, char *why, size_t whylen);

/* Open path for reading (write=false) or writing, with O_DIRECT when the file
 * allows it (falls back to buffered I/O and says so in *direct).  Returns an
 * fd or -errno. */
int fy_io_open_path(const char *path, bool write, bool *direct);

/* Size in bytes of a regular file or block device. */
int fy_io_size(int fd, uint64_t *size);

static inline int fy_io_submit(struct fy_io *io, struct fy_io_req *r)
{
	return io->ops->submit(io, r);
}
static inline int fy_io_reap(struct fy_io *io, struct fy_io_req **done, unsigned min, unsigned max)
{
	return io->ops->reap(io, done, min, max);
}
static inline void fy_io_exit(struct fy_io *io)
{
	if (io)
		io->ops->exit(io);
}

#endif
