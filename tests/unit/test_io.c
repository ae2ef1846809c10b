/* I/O engines against real files on ext4 and, as root, a real loop device.
 * Every engine reads and writes a deterministic pattern; results are checked
 * byte for byte against the pattern and against plain pread(). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/loop.h>
#include <linux/magic.h>

#include "io/io.h"
#include "io/io_priv.h"	/* fy_io_chunk_max */

#define MiB (1024u * 1024u)
#define DEPTH 4
#define CHUNK MiB

/* 16 MiB plus three blocks plus a short last block. */
static const uint64_t file_size = 16ull * MiB + 3 * 4096 + 1234;
static const uint64_t img_size = 20ull * MiB + 3 * 4096;

static char dir[64];
static char data_path[128];
static char img_path[128];
static char loop_dev[256];
static int loop_fd = -1;
static char loop_skip[320];

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Byte p of the stream for seed is byte p%8 of mix(seed, p/8). */
static void pattern(uint64_t seed, uint64_t off, void *out, size_t len)
{
	unsigned char *b = out;
	size_t i;

	for (i = 0; i < len; i++) {
		uint64_t p = off + i;

		b[i] = (unsigned char)(mix((seed << 40) ^ (p >> 3)) >> (8 * (p & 7)));
	}
}

static int write_pattern(int fd, uint64_t seed, uint64_t off, uint64_t len)
{
	unsigned char *buf = malloc(CHUNK);
	uint64_t pos;

	if (!buf)
		return -1;
	for (pos = 0; pos < len; pos += CHUNK) {
		size_t n = len - pos < CHUNK ? (size_t)(len - pos) : CHUNK;

		pattern(seed, off + pos, buf, n);
		if (pwrite(fd, buf, n, (off_t)(off + pos)) != (ssize_t)n) {
			free(buf);
			return -1;
		}
	}
	free(buf);
	return fsync(fd);
}

/* Compare len bytes at off of the file at path with the pattern. */
static int check_pattern(const char *path, uint64_t seed, uint64_t off, uint64_t len)
{
	unsigned char *got = malloc(CHUNK), *want = malloc(CHUNK);
	int fd = open(path, O_RDONLY), ret = 0;
	uint64_t pos;

	if (!got || !want || fd < 0)
		ret = -1;
	for (pos = 0; !ret && pos < len; pos += CHUNK) {
		size_t n = len - pos < CHUNK ? (size_t)(len - pos) : CHUNK;

		pattern(seed, off + pos, want, n);
		if (pread(fd, got, n, (off_t)(off + pos)) != (ssize_t)n || memcmp(got, want, n)) {
			fprintf(stderr, "pattern mismatch in %s near offset %llu\n", path,
				(unsigned long long)(off + pos));
			ret = -1;
		}
	}
	if (fd >= 0)
		close(fd);
	free(got);
	free(want);
	return ret;
}

/* One pass over [off, off + len) through an engine, DEPTH requests in flight.
 * Reads ask for whole CHUNKs, so the last one runs past the end; each result
 * must be exactly what pread() on cmp_fd returns and what the pattern says. */
struct job {
	const struct fy_io_ops *ops;
	int fd;
	enum fy_io_op op;
	uint64_t off, len;
	uint64_t seed;
	bool reg;	/* register the buffers and name them in requests */
	int cmp_fd;	/* reads: compare with pread() on this fd */
	unsigned nfixed;	/* out */
	uint64_t total;		/* out: sum of results */
};

static int run_job(struct job *j)
{
	void *bufs[DEPTH] = { 0 };
	struct fy_io_req req[DEPTH], *done[DEPTH];
	struct fy_io_params p = { .depth = DEPTH };
	struct fy_io *io = NULL;
	unsigned char *ref = malloc(CHUNK), *pat = malloc(CHUNK);
	uint64_t next = j->off, end = j->off + j->len;
	unsigned i, idle = DEPTH;
	unsigned freelist[DEPTH];
	int ret = -1, n;

	j->total = 0;
	for (i = 0; i < DEPTH; i++) {
		if (posix_memalign(&bufs[i], FY_IO_ALIGN, CHUNK))
			goto out;
		freelist[i] = i;
	}
	if (!ref || !pat)
		goto out;
	if (j->reg) {
		p.bufs = bufs;
		p.nbufs = DEPTH;
		p.buf_size = CHUNK;
	}
	n = j->ops->init(&io, j->fd, &p);
	if (n) {
		fprintf(stderr, "%s init: %s\n", j->ops->name, strerror(-n));
		goto out;
	}
	j->nfixed = io->nfixed;
	while (next < end || idle < DEPTH) {
		while (next < end && idle) {
			struct fy_io_req *r = &req[freelist[--idle]];
			unsigned b = (unsigned)(r - req);

			r->op = j->op;
			r->buf = bufs[b];
			r->off = next;
			r->len = CHUNK;
			if (j->op == FY_IO_WRITE) {
				if (end - next < CHUNK)
					r->len = (size_t)(end - next);
				pattern(j->seed, next, r->buf, r->len);
			} else {
				memset(r->buf, 0xa5, CHUNK);
			}
			r->buf_index = j->reg ? (int)b : -1;
			r->res = -12345;
			r->udata = r;
			n = fy_io_submit(io, r);
			if (n) {
				fprintf(stderr, "%s submit: %s\n", j->ops->name, strerror(-n));
				goto out;
			}
			next += CHUNK;
		}
		n = fy_io_reap(io, done, 1, DEPTH);
		if (n < 1) {
			fprintf(stderr, "%s reap returned %d\n", j->ops->name, n);
			goto out;
		}
		for (i = 0; i < (unsigned)n; i++) {
			struct fy_io_req *r = done[i];
			uint64_t want = end - r->off < CHUNK ? end - r->off : CHUNK;

			if (r->udata != r || r->res != (ssize_t)want) {
				fprintf(stderr, "%s: request at %llu: res %zd, want %llu\n",
					j->ops->name, (unsigned long long)r->off, r->res,
					(unsigned long long)want);
				goto out;
			}
			j->total += (uint64_t)r->res;
			if (j->op == FY_IO_READ) {
				pattern(j->seed, r->off, pat, (size_t)want);
				if (pread(j->cmp_fd, ref, CHUNK, (off_t)r->off) != (ssize_t)want ||
				    memcmp(ref, r->buf, (size_t)want) || memcmp(pat, r->buf, (size_t)want)) {
					fprintf(stderr, "%s: data at %llu differs\n", j->ops->name,
						(unsigned long long)r->off);
					goto out;
				}
			}
			freelist[idle++] = (unsigned)(r - req);
		}
	}
	if (io->inflight != 0)
		goto out;
	ret = 0;
out:
	fy_io_exit(io);
	for (i = 0; i < DEPTH; i++)
		free(bufs[i]);
	free(ref);
	free(pat);
	return ret;
}

/* One request, waited for; returns its res. */
static ssize_t one_req(const struct fy_io_ops *ops, int fd, enum fy_io_op op, void *buf,
		       size_t len, uint64_t off)
{
	struct fy_io_params p = { .depth = 2 };
	struct fy_io_req r = { .op = op, .buf = buf, .len = len, .off = off,
			       .buf_index = -1, .res = -12345 }, *done[2];
	struct fy_io *io = NULL;
	int n;

	assert_int_equal(ops->init(&io, fd, &p), 0);
	assert_int_equal(fy_io_submit(io, &r), 0);
	n = fy_io_reap(io, done, 1, 2);
	fy_io_exit(io);
	assert_int_equal(n, 1);
	assert_ptr_equal(done[0], &r);
	return r.res;
}

static bool on_tmpfs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
}

/* --- setup: pattern file under /var/tmp, loop device when root ---------- */

static int run_cmd(const char *cmd, char *out, size_t outlen)
{
	FILE *f = popen(cmd, "r");
	size_t n = 0;

	if (!f)
		return -1;
	if (out && outlen) {
		n = fread(out, 1, outlen - 1, f);
		out[n] = '\0';
		while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
			out[--n] = '\0';
	} else {
		char sink[256];

		while (fread(sink, 1, sizeof(sink), f) > 0)
			;
	}
	return pclose(f);
}

static void loop_setup(void)
{
	struct loop_info64 li;
	char cmd[512], out[200];
	int fd;

	if (geteuid() != 0) {
		snprintf(loop_skip, sizeof(loop_skip), "not root: no loop device");
		return;
	}
	fd = open(img_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write_pattern(fd, 10, 0, img_size)) {
		snprintf(loop_skip, sizeof(loop_skip), "cannot write %s", img_path);
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	snprintf(cmd, sizeof(cmd), "losetup --find --show --direct-io=on %s 2>&1", img_path);
	if (run_cmd(cmd, out, sizeof(out)) != 0 || strncmp(out, "/dev/loop", 9) != 0) {
		snprintf(loop_skip, sizeof(loop_skip), "losetup failed: %s", out);
		return;
	}
	snprintf(loop_dev, sizeof(loop_dev), "%s", out);
	/* Hold the device open with autoclear set: if this process dies
	 * before teardown, the kernel detaches it at the last close. */
	loop_fd = open(loop_dev, O_RDONLY | O_CLOEXEC);
	if (loop_fd >= 0 && ioctl(loop_fd, LOOP_GET_STATUS64, &li) == 0) {
		li.lo_flags |= LO_FLAGS_AUTOCLEAR;
		if (ioctl(loop_fd, LOOP_SET_STATUS64, &li) != 0)
			fprintf(stderr, "note: could not set autoclear on %s\n", loop_dev);
		if (!(li.lo_flags & LO_FLAGS_DIRECT_IO))
			fprintf(stderr, "note: %s did not get direct I/O\n", loop_dev);
	}
	if (loop_fd < 0) {
		snprintf(loop_skip, sizeof(loop_skip), "cannot open %s", loop_dev);
		snprintf(cmd, sizeof(cmd), "losetup -d %s 2>&1", loop_dev);
		run_cmd(cmd, NULL, 0);
		loop_dev[0] = '\0';
	}
}

static void loop_teardown(void)
{
	char cmd[320], path[320];
	int i;

	if (!loop_dev[0])
		return;
	snprintf(cmd, sizeof(cmd), "losetup -d %s 2>&1", loop_dev);
	run_cmd(cmd, NULL, 0);
	if (loop_fd >= 0)
		close(loop_fd);
	loop_fd = -1;
	/* Detach completes at the last close; wait for it to show. */
	snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", loop_dev + 5);
	for (i = 0; i < 100 && access(path, F_OK) == 0; i++)
		usleep(20000);
	if (access(path, F_OK) == 0)
		fprintf(stderr, "warning: %s still attached\n", loop_dev);
	loop_dev[0] = '\0';
}

static int group_setup(void **state)
{
	int fd;

	(void)state;
	snprintf(dir, sizeof(dir), "/var/tmp/ferry-io-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	if (on_tmpfs(dir))
		fprintf(stderr, "note: %s is tmpfs; O_DIRECT alignment is not enforced\n", dir);
	snprintf(data_path, sizeof(data_path), "%s/data", dir);
	snprintf(img_path, sizeof(img_path), "%s/loop.img", dir);
	fd = open(data_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write_pattern(fd, 1, 0, file_size))
		return -1;
	close(fd);
	loop_setup();
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	loop_teardown();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return run_cmd(cmd, NULL, 0) ? -1 : 0;
}

/* --- per-engine tests (state is the engine's ops) ------------------------ */

static void t_read_file(void **state)
{
	const struct fy_io_ops *ops = *state;
	struct job j = { .ops = ops, .op = FY_IO_READ, .len = file_size, .seed = 1 };
	bool direct = false;

	assert_int_equal(file_size % 4096 != 0, 1);
	j.fd = fy_io_open_path(data_path, false, &direct);
	assert_true(j.fd >= 0);
	assert_true(direct);	/* ext4 takes O_DIRECT: the short last block is direct too */
	j.cmp_fd = open(data_path, O_RDONLY);
	assert_true(j.cmp_fd >= 0);

	j.reg = true;
	assert_int_equal(run_job(&j), 0);
	assert_true(j.total == file_size);
	if (ops == &fy_io_uring_ops)
		assert_int_equal(j.nfixed, DEPTH);
	else
		assert_int_equal(j.nfixed, 0);

	j.reg = false;
	assert_int_equal(run_job(&j), 0);
	assert_true(j.total == file_size);
	assert_int_equal(j.nfixed, 0);
	close(j.fd);
	close(j.cmp_fd);
}

static void t_read_eof(void **state)
{
	const struct fy_io_ops *ops = *state;
	uint64_t last = file_size & ~(uint64_t)4095;
	unsigned char want[8192];
	void *buf;
	bool direct;
	int fd = fy_io_open_path(data_path, false, &direct);

	assert_true(fd >= 0);
	assert_int_equal(posix_memalign(&buf, FY_IO_ALIGN, 8192), 0);
	/* Straddling end of file: exactly the bytes that exist. */
	memset(buf, 0, 8192);
	assert_int_equal(one_req(ops, fd, FY_IO_READ, buf, 8192, last), (ssize_t)(file_size - last));
	pattern(1, last, want, (size_t)(file_size - last));
	assert_memory_equal(buf, want, (size_t)(file_size - last));
	/* Wholly past end of file: 0. */
	assert_int_equal(one_req(ops, fd, FY_IO_READ, buf, 4096, last + 8192), 0);
	free(buf);
	close(fd);
}

static void t_write_file(void **state)
{
	const struct fy_io_ops *ops = *state;
	char path[160];
	struct job j = { .ops = ops, .op = FY_IO_WRITE, .len = 16ull * MiB + 8192, .seed = 2,
			 .reg = true };
	bool direct = false;
	int fd;

	snprintf(path, sizeof(path), "%s/out-%s", dir, ops->name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	close(fd);

	/* O_DIRECT, aligned length, registered buffers. */
	j.fd = fy_io_open_path(path, true, &direct);
	assert_true(j.fd >= 0);
	assert_true(direct);
	assert_int_equal(run_job(&j), 0);
	assert_true(j.total == j.len);
	close(j.fd);
	assert_int_equal(check_pattern(path, 2, 0, j.len), 0);

	/* Buffered, unaligned length and offset, unregistered buffers. */
	j.fd = open(path, O_WRONLY);
	assert_true(j.fd >= 0);
	j.off = 333;
	j.len = 3ull * MiB + 777;
	j.seed = 3;
	j.reg = false;
	assert_int_equal(run_job(&j), 0);
	assert_true(j.total == j.len);
	close(j.fd);
	assert_int_equal(check_pattern(path, 2, 0, 333), 0);
	assert_int_equal(check_pattern(path, 3, 333, j.len), 0);
	assert_int_equal(check_pattern(path, 2, 333 + j.len, 16ull * MiB + 8192 - 333 - j.len), 0);
	unlink(path);
}

/* A misaligned O_DIRECT request fails in its own res; the engine goes on. */
static void misaligned(const struct fy_io_ops *ops, const char *path, uint64_t seed)
{
	unsigned char want[4096];
	char *buf;
	bool direct = false;
	int fd = fy_io_open_path(path, false, &direct);

	assert_true(fd >= 0);
	assert_true(direct);
	assert_int_equal(posix_memalign((void **)&buf, FY_IO_ALIGN, 3 * 4096), 0);
	assert_int_equal(one_req(ops, fd, FY_IO_READ, buf, 4096, 1), -EINVAL);
	assert_int_equal(one_req(ops, fd, FY_IO_READ, buf + 1, 4096, 4096), -EINVAL);
	assert_int_equal(one_req(ops, fd, FY_IO_READ, buf, 4096, 8192), 4096);
	pattern(seed, 8192, want, 4096);
	assert_memory_equal(buf, want, 4096);
	free(buf);
	close(fd);
}

static void t_misaligned_file(void **state)
{
	if (on_tmpfs(data_path)) {
		print_message("skip: %s is tmpfs, which does not enforce alignment\n", dir);
		skip();
	}
	misaligned(*state, data_path, 1);
}

static void t_loop_device(void **state)
{
	const struct fy_io_ops *ops = *state;
	struct job j = { .ops = ops, .op = FY_IO_READ, .len = img_size, .seed = 10, .reg = true };
	uint64_t size = 0;
	bool direct = false;

	if (loop_skip[0]) {
		print_message("skip: %s\n", loop_skip);
		skip();
	}
	/* Read the whole device. */
	j.fd = fy_io_open_path(loop_dev, false, &direct);
	assert_true(j.fd >= 0);
	assert_true(direct);
	assert_int_equal(fy_io_size(j.fd, &size), 0);
	assert_true(size == img_size);
	j.cmp_fd = open(loop_dev, O_RDONLY);
	assert_true(j.cmp_fd >= 0);
	assert_int_equal(run_job(&j), 0);
	assert_true(j.total == img_size);
	close(j.fd);

	/* Overwrite 5 MiB + 4 KiB at 1 MiB + 8 KiB, check device and image. */
	j.fd = fy_io_open_path(loop_dev, true, &direct);
	assert_true(j.fd >= 0);
	assert_true(direct);
	j.op = FY_IO_WRITE;
	j.off = MiB + 8192;
	j.len = 5ull * MiB + 4096;
	j.seed = 20;
	assert_int_equal(run_job(&j), 0);
	assert_true(j.total == j.len);
	assert_int_equal(fsync(j.fd), 0);
	assert_int_equal(check_pattern(loop_dev, 20, j.off, j.len), 0);
	assert_int_equal(check_pattern(loop_dev, 10, 0, j.off), 0);
	assert_int_equal(check_pattern(img_path, 20, j.off, j.len), 0);

	/* Put the original bytes back, through the engine again. */
	j.seed = 10;
	assert_int_equal(run_job(&j), 0);
	assert_int_equal(fsync(j.fd), 0);
	close(j.fd);
	assert_int_equal(check_pattern(loop_dev, 10, 0, img_size), 0);
	close(j.cmp_fd);

	misaligned(ops, loop_dev, 10);
}

/* Writing past the end of a block device fails with -ENOSPC, not a hang. */
static void t_loop_past_end(void **state)
{
	const struct fy_io_ops *ops = *state;
	unsigned char want[4096];
	void *buf;
	bool direct;
	int fd;

	if (loop_skip[0]) {
		print_message("skip: %s\n", loop_skip);
		skip();
	}
	assert_int_equal(posix_memalign(&buf, FY_IO_ALIGN, 8192), 0);
	fd = fy_io_open_path(loop_dev, true, &direct);
	assert_true(fd >= 0);
	pattern(10, img_size - 4096, buf, 4096);
	pattern(99, img_size, (char *)buf + 4096, 4096);
	/* The part inside the device is written, then the rest has no room. */
	assert_int_equal(one_req(ops, fd, FY_IO_WRITE, buf, 8192, img_size - 4096), -ENOSPC);
	close(fd);
	fd = fy_io_open_path(loop_dev, false, &direct);
	assert_true(fd >= 0);
	assert_int_equal(one_req(ops, fd, FY_IO_READ, buf, 8192, img_size - 4096), 4096);
	pattern(10, img_size - 4096, want, 4096);
	assert_memory_equal(buf, want, 4096);
	free(buf);
	close(fd);
}

static void t_bad_requests(void **state)
{
	const struct fy_io_ops *ops = *state;
	struct fy_io_params p = { .depth = 1 };
	struct fy_io *io = NULL;
	struct fy_io_req a = { .op = FY_IO_READ, .len = 4096, .buf_index = -1 }, b, *done[1];
	void *buf[1];
	int fd = open(data_path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(posix_memalign(&buf[0], FY_IO_ALIGN, 8192), 0);
	a.buf = buf[0];
	b = a;
	p.depth = 0;
	assert_int_equal(ops->init(&io, fd, &p), -EINVAL);
	p.depth = 1;
	p.bufs = buf;
	p.nbufs = 1;
	p.buf_size = 8192;
	assert_int_equal(ops->init(&io, fd, &p), 0);
	assert_int_equal(io->inflight, 0);
	/* Nothing in flight: min is clamped, nothing returned. */
	assert_int_equal(fy_io_reap(io, done, 1, 1), 0);
	/* Buffer index out of range, or request outside its buffer. */
	b.buf_index = 1;
	assert_int_equal(fy_io_submit(io, &b), -EINVAL);
	b.buf_index = 0;
	b.buf = (char *)buf[0] + 8192 - 4095;
	assert_int_equal(fy_io_submit(io, &b), -EINVAL);
	/* Depth 1: a second request is refused until the first is reaped. */
	a.buf_index = 0;
	assert_int_equal(fy_io_submit(io, &a), 0);
	assert_int_equal(io->inflight, 1);
	b = a;
	assert_int_equal(fy_io_submit(io, &b), -EBUSY);
	assert_int_equal(fy_io_reap(io, done, 1, 1), 1);
	assert_ptr_equal(done[0], &a);
	assert_int_equal(a.res, 4096);
	assert_int_equal(io->inflight, 0);
	fy_io_exit(io);
	free(buf[0]);
	close(fd);
}

/* Each request done in many pieces (the same path as short transfers not at
 * end of file): aligned pieces on O_DIRECT reads, odd ones on buffered writes. */
static void t_pieces(void **state)
{
	const struct fy_io_ops *ops = *state;
	struct job j = { .ops = ops, .op = FY_IO_READ, .len = file_size, .seed = 1, .reg = true };
	char path[160];
	bool direct = false;
	int fd;

	j.fd = fy_io_open_path(data_path, false, &direct);
	assert_true(j.fd >= 0);
	assert_true(direct);
	j.cmp_fd = open(data_path, O_RDONLY);
	assert_true(j.cmp_fd >= 0);
	fy_io_chunk_max = 3 * 4096;
	fd = run_job(&j);
	fy_io_chunk_max = FY_IO_CHUNK;
	assert_int_equal(fd, 0);
	assert_true(j.total == file_size);
	close(j.fd);
	close(j.cmp_fd);

	snprintf(path, sizeof(path), "%s/pieces-%s", dir, ops->name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	j = (struct job){ .ops = ops, .fd = fd, .op = FY_IO_WRITE, .off = 7, .len = 2ull * MiB + 99,
			  .seed = 4 };
	fy_io_chunk_max = 1000;
	fd = run_job(&j);
	fy_io_chunk_max = FY_IO_CHUNK;
	assert_int_equal(fd, 0);
	assert_true(j.total == j.len);
	close(j.fd);
	assert_int_equal(check_pattern(path, 4, 7, j.len), 0);
	unlink(path);
}

/* A write cut short by RLIMIT_FSIZE is continued, and the continuation's
 * -EFBIG is the result: a short write never passes for success. */
static void t_short_write(void **state)
{
	const struct fy_io_ops *ops = *state;
	const size_t limit = MiB + 4096, len = 2 * MiB;
	char path[160];
	int status;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/fsize-%s", dir, ops->name);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { limit, limit };
		struct fy_io_params p = { .depth = 1 };
		struct fy_io_req r = { .op = FY_IO_WRITE, .len = len, .buf_index = -1 }, *done[1];
		struct fy_io *io = NULL;
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		signal(SIGXFSZ, SIG_IGN);
		if (fd < 0 || setrlimit(RLIMIT_FSIZE, &rl) || posix_memalign(&r.buf, 4096, len))
			_exit(3);
		pattern(5, 0, r.buf, len);
		if (ops->init(&io, fd, &p) || fy_io_submit(io, &r) || fy_io_reap(io, done, 1, 1) != 1)
			_exit(3);
		if (r.res != -EFBIG) {
			fprintf(stderr, "%s: res %zd, want -EFBIG\n", ops->name, r.res);
			_exit(1);
		}
		fy_io_exit(io);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(check_pattern(path, 5, 0, limit), 0);
	unlink(path);
}

/* exit() with requests in flight waits for them: once it returns, the
 * buffers hold the data and the kernel no longer touches them. */
static void t_exit_inflight(void **state)
{
	const struct fy_io_ops *ops = *state;
	struct fy_io_params p = { .depth = DEPTH };
	struct fy_io_req r[DEPTH];
	struct fy_io *io = NULL;
	unsigned char *want = malloc(CHUNK);
	void *buf[DEPTH];
	bool direct;
	int fd = fy_io_open_path(data_path, false, &direct), i;

	assert_true(fd >= 0);
	assert_non_null(want);
	assert_int_equal(ops->init(&io, fd, &p), 0);
	for (i = 0; i < DEPTH; i++) {
		assert_int_equal(posix_memalign(&buf[i], FY_IO_ALIGN, CHUNK), 0);
		memset(buf[i], 0xa5, CHUNK);
		r[i] = (struct fy_io_req){ .op = FY_IO_READ, .buf = buf[i], .len = CHUNK,
					   .off = (uint64_t)(2 * i + 1) * CHUNK, .buf_index = -1 };
		assert_int_equal(fy_io_submit(io, &r[i]), 0);
	}
	fy_io_exit(io);
	for (i = 0; i < DEPTH; i++) {
		pattern(1, r[i].off, want, CHUNK);
		assert_memory_equal(buf[i], want, CHUNK);
		free(buf[i]);
	}
	free(want);
	close(fd);
}

/* --- engine-independent tests ------------------------------------------- */

static void t_select(void **state)
{
	const struct fy_io_ops *ops = NULL;
	char why[512] = "";

	(void)state;
	assert_int_equal(fy_io_select("bogus", &ops, why, sizeof(why)), -EINVAL);
	assert_null(ops);
	assert_non_null(strstr(why, "bogus"));

	assert_int_equal(fy_io_select("auto", &ops, why, sizeof(why)), 0);
	print_message("auto: %s\n", why);
	assert_ptr_equal(ops, &fy_io_uring_ops);	/* this machine has io_uring */
	assert_int_equal(strncmp(why, "io_uring:", 9), 0);

	assert_int_equal(fy_io_select("libaio", &ops, why, sizeof(why)), 0);
	assert_ptr_equal(ops, &fy_io_libaio_ops);
	assert_int_equal(fy_io_select("psync", &ops, NULL, 0), 0);
	assert_ptr_equal(ops, &fy_io_psync_ops);
	assert_int_equal(fy_io_select("io_uring", &ops, why, 8), 0);
	assert_ptr_equal(ops, &fy_io_uring_ops);
	assert_int_equal(strlen(why), 7);	/* truncated, terminated */
	assert_int_equal(fy_io_select(NULL, &ops, why, sizeof(why)), -EINVAL);
}

static void t_open_and_size(void **state)
{
	uint64_t size = 0;
	bool direct = true;
	int fd, pfd[2];

	(void)state;
	fd = fy_io_open_path(data_path, false, &direct);
	assert_true(fd >= 0);
	assert_true(direct);
	assert_int_equal(fy_io_size(fd, &size), 0);
	assert_true(size == file_size);
	assert_int_equal(fcntl(fd, F_GETFL) & O_DIRECT, O_DIRECT);
	close(fd);

	/* procfs refuses O_DIRECT: buffered, and said so. */
	fd = fy_io_open_path("/proc/self/status", false, &direct);
	assert_true(fd >= 0);
	assert_false(direct);
	assert_int_equal(fcntl(fd, F_GETFL) & O_DIRECT, 0);
	close(fd);

	/* Writing never creates or truncates. */
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/absent", dir);
		assert_int_equal(fy_io_open_path(path, true, &direct), -ENOENT);
		fd = fy_io_open_path(data_path, true, &direct);
		assert_true(fd >= 0);
		assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY);
		close(fd);
		assert_int_equal(fy_io_size(open(data_path, O_RDONLY), &size), 0);
		assert_true(size == file_size);
	}

	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(fy_io_size(pfd[0], &size), -EINVAL);
	close(pfd[0]);
	close(pfd[1]);
	assert_int_equal(fy_io_size(-1, &size), -EBADF);
}

/* Without CAP_IPC_LOCK, registered buffers count against RLIMIT_MEMLOCK: with
 * room for 1.5 of 4 buffers, io_uring registers a prefix (1) and the others
 * go through plain READ, with the same bytes.  Runs in a child, which drops
 * the capability. */
static void t_uring_memlock(void **state)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct cap[2];
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { 3 * MiB / 2, 3 * MiB / 2 };
		struct job j = { .ops = &fy_io_uring_ops, .op = FY_IO_READ, .len = file_size,
				 .seed = 1, .reg = true };
		bool direct;

		if (syscall(SYS_capget, &hdr, cap) != 0)
			_exit(3);
		cap[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
		cap[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
		if (syscall(SYS_capset, &hdr, cap) != 0 || setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
			_exit(3);
		j.fd = fy_io_open_path(data_path, false, &direct);
		j.cmp_fd = open(data_path, O_RDONLY);
		if (j.fd < 0 || j.cmp_fd < 0)
			_exit(3);
		if (run_job(&j) != 0 || j.total != file_size)
			_exit(1);
		if (j.nfixed != 1) {
			fprintf(stderr, "registered %u buffers, want 1\n", j.nfixed);
			_exit(2);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* cmocka_unit_test_prestate(), but named after the engine too. */
#define ENGINE_TEST(eng, fn) { #eng "/" #fn, fn, NULL, NULL, (void *)&fy_io_##eng##_ops }
#define ENGINE_TESTS(eng)                                               \
	ENGINE_TEST(eng, t_read_file),                                   \
	ENGINE_TEST(eng, t_read_eof),                                    \
	ENGINE_TEST(eng, t_write_file),                                  \
	ENGINE_TEST(eng, t_pieces),                                      \
	ENGINE_TEST(eng, t_short_write),                                 \
	ENGINE_TEST(eng, t_misaligned_file),                             \
	ENGINE_TEST(eng, t_bad_requests),                                \
	ENGINE_TEST(eng, t_exit_inflight),                               \
	ENGINE_TEST(eng, t_loop_device),                                 \
	ENGINE_TEST(eng, t_loop_past_end)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_select),
		cmocka_unit_test(t_open_and_size),
		ENGINE_TESTS(uring),
		ENGINE_TESTS(libaio),
		ENGINE_TESTS(psync),
		cmocka_unit_test(t_uring_memlock),
	};
	char why[256];

	if (fy_io_uring_ops.probe(why, sizeof(why)) != 0) {
		printf("skip: %s\n", why);
		return 77;
	}
	if (fy_io_libaio_ops.probe(why, sizeof(why)) != 0) {
		printf("skip: %s\n", why);
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
