/* The allocation map: which blocks hold data at all.  A block wholly inside
 * a hole of a regular file (SEEK_DATA/SEEK_HOLE) reads as zeros: the backup
 * records it as a zero block without reading it.  Filesystems without hole
 * tracking report the whole file as data, and a block device is all data. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbt/cbt_priv.h"

static int alloc_changed(const struct fy_cbt_req *req, struct fy_bitmap *data, char *why, size_t whylen)
{
	struct stat st;
	uint64_t off = 0;
	int fd, rc = fy_cbt_req_check(&fy_cbt_alloc_map, NULL, req, data, why, whylen);

	if (rc < 0)
		return rc;
	fd = open(req->source, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		fy_cbt_why(why, whylen, "allocation map of %s: %s", req->source, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		fy_cbt_mark(data, req->chunk_size, 0, req->size);
		goto out;
	}
	while (off < req->size) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;

		if (d < 0) {
			if (errno == ENXIO)
				break; /* nothing but hole from off to the end */
			rc = -errno;
			break;
		}
		if ((uint64_t)d >= req->size)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0) {
			rc = -errno;
			break;
		}
		uint64_t end = (uint64_t)h < req->size ? (uint64_t)h : req->size;

		fy_cbt_mark(data, req->chunk_size, (uint64_t)d, end - (uint64_t)d);
		off = end;
	}
	if (rc < 0)
		fy_cbt_why(why, whylen, "allocation map of %s at offset %llu: %s", req->source,
			   (unsigned long long)off, strerror(-rc));
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

const struct fy_cbt_ops fy_cbt_alloc_map = { .name = "allocation-map", .changed = alloc_changed };
