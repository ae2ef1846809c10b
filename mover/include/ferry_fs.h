/* libferry: the host's filesystems as ferry meets them on the way to and
 * from a volume: mounts (/proc/self/mountinfo), freezing a mounted
 * filesystem (FIFREEZE/FITHAW) and the loop devices bound to image files.
 * The CLI (backup --freeze, restore's refusals) and the agent (the cut of a
 * snapshot, publishing) share them.  Same conventions as ferry.h: 0 or a
 * negative errno; where there is an err buffer, one line naming what failed. */
#ifndef FERRY_FS_H
#define FERRY_FS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* One line of /proc/self/mountinfo, parsed in place (escapes undone). */
struct fy_mnt {
	unsigned maj, min;
	char *root, *point, *opts, *fstype, *source;
};

/* Call fn on each mount of this mount namespace, in mountinfo's order (later
 * mounts later); fn returns 0 to go on, anything else stops the walk and is
 * returned.  -errno when mountinfo cannot be read. */
int fy_mnt_each(int (*fn)(const struct fy_mnt *m, void *arg), void *arg);
/* Is opt one of the comma-separated mount options in opts? */
bool fy_mnt_opt_has(const char *opts, const char *opt);

/* What is mounted at a canonical path (realpath): the top mount there. */
struct fy_mnt_at {
	const char *path;
	bool mounted, ro, whole; /* whole: the filesystem's root, not a bind of a part */
	unsigned maj, min;
	char fstype[64];
	char source[PATH_MAX];
};
int fy_mnt_at(const char *real, struct fy_mnt_at *a);

/* Is the filesystem mounted as (major:minor, source) the block device rdev?
 * By number, or for filesystems that report another number (btrfs) by the
 * source's node. */
bool fy_mnt_same_dev(unsigned maj, unsigned min, const char *source, dev_t rdev);
/* A block device's node from its number: /dev/<DEVNAME>, else /dev/block/M:m. */
void fy_blkdev_name(dev_t rdev, char *out, size_t len);

/* Is path a mount point?  1, 0 (also when path does not exist), or -errno.
 * When it is and src is not NULL, src receives the mount source (for a bind
 * mount of a device, the device). */
int fy_mountpoint(const char *path, char *src, size_t srclen);

/* The mounts of block device rdev: filesystems on it (node false) and bind
 * mounts of its device node (node true), in mount order.  *v is malloc'd;
 * free it with fy_mount_info_free. */
struct fy_mount_info {
	char *point;
	char fstype[64];
	bool ro, node;
};
int fy_mounts_of_rdev(dev_t rdev, struct fy_mount_info **v, size_t *n);
void fy_mount_info_free(struct fy_mount_info *v, size_t n);
/* The mount points of dev (a path to a block device), both kinds, in mount
 * order: *paths is a malloc'd array of malloc'd strings. */
int fy_mounts_of(const char *dev, char ***paths, size_t *n, char *err, size_t errlen);
void fy_strv_free(char **v, size_t n);

/* FIFREEZE / FITHAW on the filesystem mounted at mnt.  thaw of a filesystem
 * that is not frozen is 0; freeze of a frozen one is -EBUSY.  mnt must be a
 * mount point (-EINVAL otherwise: never the filesystem a directory is on,
 * which could be the node's root).  A frozen filesystem stays frozen when
 * the process that froze it dies: thaw it with FITHAW (fsfreeze -u MNT). */
int fy_fs_freeze(const char *mnt, char *err, size_t errlen);
int fy_fs_thaw(const char *mnt, char *err, size_t errlen);
/* syncfs(2) of the filesystem mounted at mnt: called before fy_fs_freeze, it
 * writes the dirty data back while writers still run, so that the freeze
 * itself (which must flush whatever is dirty then) holds them only briefly. */
int fy_fs_sync(const char *mnt, char *err, size_t errlen);

/* The lowest-numbered loop device bound to the file st describes (same
 * st_dev and st_ino): any binding (want_ro < 0), only read-write ones (0) or
 * only read-only ones (1).  0 with its number and flags, or -ENOENT. */
int fy_loop_lookup(const struct stat *st, int want_ro, unsigned *num, uint32_t *flags);
/* The file behind loop device fd (LOOP_GET_STATUS64): 0 with its device and
 * inode, -ENXIO when the device is not bound, -ENOTTY when fd is no loop
 * device, or another -errno. */
int fy_loop_backing(int fd, dev_t *dev, ino_t *ino);
/* Bind a free loop device to the open regular file fd (LOOP_CTL_GET_FREE,
 * then LOOP_CONFIGURE, or LOOP_SET_FD + LOOP_SET_STATUS64 on kernels before
 * 5.8): buffered, 512-byte sectors, read-only with readonly (the device is
 * opened read-only too), LO_FLAGS_AUTOCLEAR with autoclear.  label is what
 * losetup shows as the backing file.  Returns the open device (an fd; dev
 * receives /dev/loopN) or -errno with one line in err.  With autoclear the
 * device unbinds when its last opener closes it: hold the fd while the
 * device is needed; a process that dies holding it leaves nothing bound. */
int fy_loop_bind(int fd, const char *label, bool readonly, bool autoclear, char *dev, size_t devlen, char *err,
		 size_t errlen);

#endif
