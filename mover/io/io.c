/* Engine selection, opening with O_DIRECT, and sizing files and devices. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>

#include "io/io_priv.h"

size_t fy_io_chunk_max = FY_IO_CHUNK;

/* In the order "auto" prefers them. */
static const struct fy_io_ops *const fy_io_engines[] = {
	&fy_io_uring_ops,
	&fy_io_libaio_ops,
	&fy_io_psync_ops,
};
#define FY_IO_NENGINES (sizeof(fy_io_engines) / sizeof(fy_io_engines[0]))

static void why_set(char *why, size_t whylen, const char *a, const char *b)
{
	if (!why || !whylen)
		return;
	if (b && *b)
		snprintf(why, whylen, "%s (%s)", a, b);
	else
		snprintf(why, whylen, "%s", a);
}

int fy_io_select(const char *name, const struct fy_io_ops **ops, char *why, size_t whylen)
{
	char reason[192], passed[400] = "";
	size_t i;

	if (!name || !ops)
		return -EINVAL;
	if (strcmp(name, "auto") == 0) {
		for (i = 0; i < FY_IO_NENGINES; i++) {
			reason[0] = '\0';
			if (fy_io_engines[i]->probe(reason, sizeof(reason)) == 0) {
				*ops = fy_io_engines[i];
				why_set(why, whylen, reason, passed);
				return 0;
			}
			/* Remember why the better engines were passed over. */
			snprintf(passed + strlen(passed), sizeof(passed) - strlen(passed),
				 "%s%s", passed[0] ? "; " : "", reason);
		}
		why_set(why, whylen, "no I/O engine can run here", passed);
		return -ENOTSUP;
	}
	for (i = 0; i < FY_IO_NENGINES; i++) {
		if (strcmp(name, fy_io_engines[i]->name) != 0)
			continue;
		reason[0] = '\0';
		if (fy_io_engines[i]->probe(reason, sizeof(reason)) != 0) {
			why_set(why, whylen, reason, NULL);
			return -ENOTSUP;
		}
		*ops = fy_io_engines[i];
		why_set(why, whylen, reason, "requested by name");
		return 0;
	}
	if (why && whylen)
		snprintf(why, whylen, "unknown I/O engine \"%s\" (auto, io_uring, libaio, psync)", name);
	return -EINVAL;
}

/* Whether an fd opened with O_DIRECT can really do direct I/O with our
 * FY_IO_ALIGN alignment.  Some filesystems accept O_DIRECT at open but fail
 * every I/O with EINVAL, or need a larger alignment. */
static bool dio_usable(int fd, bool write)
{
	struct statx stx;
	void *buf;
	ssize_t n;

	memset(&stx, 0, sizeof(stx));
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN))
		return stx.stx_dio_offset_align != 0 &&
		       stx.stx_dio_offset_align <= FY_IO_ALIGN &&
		       stx.stx_dio_mem_align <= FY_IO_ALIGN;
	/* No alignment report: try one aligned block (reading only). */
	if (write || posix_memalign(&buf, FY_IO_ALIGN, FY_IO_ALIGN))
		return true;
	n = pread(fd, buf, FY_IO_ALIGN, 0);
	free(buf);
	return !(n < 0 && errno == EINVAL);
}

int fy_io_open_path(const char *path, bool write, bool *direct)
{
	int flags = (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC;
	int fd;

	if (!path)
		return -EINVAL;
	fd = open(path, flags | O_DIRECT);
	if (fd >= 0 && !dio_usable(fd, write)) {
		close(fd);
		fd = -1;
		errno = EINVAL;
	}
	if (fd >= 0) {
		if (direct)
			*direct = true;
		return fd;
	}
	if (errno != EINVAL)
		return -errno;
	fd = open(path, flags);
	if (fd < 0)
		return -errno;
	if (direct)
		*direct = false;
	return fd;
}

int fy_io_size(int fd, uint64_t *size)
{
	struct stat st;

	if (!size)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	return -EINVAL;
}
