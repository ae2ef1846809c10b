/* The image volume backend: a volume is a sparse image file under the agent's
 * state directory; a snapshot is a reflink clone of it (FICLONE on XFS or
 * btrfs), or a sparse copy where the filesystem cannot share extents.  Block
 * access attaches the image to a loop device; mount access puts a filesystem
 * on that device.  Every call returns 0 or a negative errno and, on failure,
 * writes one line naming what failed (path, device, syscall) into err. */
#ifndef FERRY_AGENT_IMAGE_H
#define FERRY_AGENT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"  /* struct fy_range */
#include "ferry_fs.h"

/* Create a sparse image of size bytes at path (O_EXCL: -EEXIST if present),
 * fsync it and its directory. */
int fy_img_create(const char *path, uint64_t size, char *err, size_t errlen);
/* Grow an image (never shrink: -EINVAL).  If the image is attached, its
 * loop device takes the new size too (LOOP_SET_CAPACITY). */
int fy_img_grow(const char *path, uint64_t size, char *err, size_t errlen);
/* Clone src to dst: FICLONE when the filesystem shares extents (*reflinked =
 * true), otherwise a sparse copy (SEEK_DATA/SEEK_HOLE; holes stay holes).
 * Written to a temporary name in dst's directory, fsynced, renamed, directory
 * fsynced: dst is either complete or absent.  An existing dst is never
 * replaced: -EEXIST. */
int fy_img_clone(const char *src, const char *dst, bool *reflinked, char *err, size_t errlen);
/* Can dir's filesystem make reflink clones?  1 yes, 0 no, -errno. */
int fy_img_reflink_capable(const char *dir);
/* Remove an image (absent is fine), fsync the directory. */
int fy_img_remove(const char *path, char *err, size_t errlen);

/* Loop devices.  attach reuses a loop device already bound to the same file
 * (same st_dev and st_ino) the same way (read-only or read-write), else
 * binds a free one (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, falling back to
 * LOOP_SET_FD + LOOP_SET_STATUS64): buffered, 512-byte sectors (see
 * im_loop_bind for why never direct I/O).  dev receives "/dev/loopN".  A
 * read-only attach gets a device of its own with LO_FLAGS_READ_ONLY.  A
 * directory: -EISDIR.  Two attaches of one image at the same moment may bind
 * two devices: the caller serialises the calls of each volume. */
int fy_loop_attach(const char *img, bool readonly, char *dev, size_t devlen, char *err, size_t errlen);
/* The loop device bound to img: 0 and dev, or -ENOENT. */
int fy_loop_find(const char *img, char *dev, size_t devlen);
/* Unbind (LOOP_CLR_FD); a device already free is fine.  A device with a
 * filesystem mounted from it: -EBUSY; not a loop device: -EINVAL. */
int fy_loop_detach(const char *dev, char *err, size_t errlen);

/* What filesystem is on dev, read from its superblock: "ext4", "xfs", "btrfs",
 * or "" when none is recognised (a blank device reads as ""). */
int fy_fs_probe(const char *dev, char *type, size_t typelen, char *err, size_t errlen);
/* mkfs.ext4 or mkfs.xfs on dev (fork/exec, no shell); its stderr's last
 * line (the last before a "Usage:" it printed) goes into err on failure,
 * with the exit status: -EIO.  Any other fstype: -EINVAL; no such device or
 * no such program: -ENOENT. */
int fy_mkfs(const char *dev, const char *fstype, char *err, size_t errlen);

/* Mount dev on target (a directory, created if missing) with the CSI
 * mount_flags: the known ones (ro, rw, noatime, relatime, nodiratime, nodev,
 * nosuid, noexec, sync, dirsync, lazytime) become MS_* flags, the rest are
 * passed as filesystem data, comma-separated ("defaults" is ignored).  A
 * flag with a comma or a newline is -EINVAL.  Already mounted from the same
 * device with the same read-only state: 0 (idempotent); from another device,
 * or with the other read-only state: -EBUSY.  dev not a block device:
 * -ENOTBLK.  A directory made here is removed again if the mount fails. */
int fy_mount(const char *dev, const char *target, const char *fstype, const char *const *flags, size_t nflags,
	     bool readonly, char *err, size_t errlen);
/* Bind-mount a block device node onto target (a regular file, created if
 * missing): how a block volume is published.  Idempotent like fy_mount.
 * Read-only marks the mount read-only, which stops no one from writing the
 * device through it (the kernel does not check a device node's mount for
 * writes): only a read-only loop device does. */
int fy_bind_block(const char *dev, const char *target, bool readonly, char *err, size_t errlen);
/* Unmount target if it is a mount point (not mounted: 0), then remove the
 * file or empty directory (absent: 0). */
int fy_unmount(const char *target, char *err, size_t errlen);
/* fy_mountpoint, fy_mounts_of, fy_fs_freeze/fy_fs_thaw and the loop lookup
 * live in the library (ferry_fs.h): the CLI uses them too. */

/* Byte ranges of img that hold data (SEEK_DATA / SEEK_HOLE), in order,
 * merged, starting at or after from (a range that straddles from is cut to
 * start there).  *r is malloc'd. */
int fy_img_allocated(const char *img, uint64_t from, struct fy_range **r, size_t *n, char *err, size_t errlen);
/* Byte ranges of target that may differ from base, two reflink clones of
 * one volume, from their extent maps (FIEMAP) alone, never their data:
 * the same walk as cbt's extent-diff, at the filesystem's block granularity.
 * Bytes past base's end are changed.  -EOPNOTSUPP when the extents cannot
 * say (no FIEMAP, not clones of each other: on different filesystems); the
 * caller may fall back to manifests.  base and target the same file, or not
 * regular files: -EINVAL.  fy_extent_delta (mover/cbt/cbt.h) does the walk. */
int fy_img_delta(const char *base, const char *target, uint64_t from, struct fy_range **r, size_t *n,
		 char *err, size_t errlen);

#endif
