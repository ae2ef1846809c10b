/* backup --freeze MOUNTPOINT, and the warning when a source is mounted.
 *
 * The filesystem is frozen (FIFREEZE, ferry_fs.h) just before the backup
 * reads and thawed when it returns, whatever it returns; a signal that ends
 * the process (SIGINT, SIGTERM, SIGHUP, ...) thaws it first.  SIGKILL cannot
 * be caught: after one, `fsfreeze -u MOUNTPOINT` thaws it (README.md). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/fs.h>

#include "cli.h"
#include "ferry_fs.h"

/* For the signal handler: the mount point, open, while it is frozen. */
static volatile sig_atomic_t frozen;
static int frozen_fd = -1;
static char frozen_at[PATH_MAX];

static const int fatal_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2,
				     SIGXCPU, SIGXFSZ, SIGABRT };
#define NFATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

static void thaw_and_die(int sig)
{
	if (frozen) {
		ioctl(frozen_fd, FITHAW, 0); /* async-signal-safe: one system call */
		frozen = 0;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void block_fatal(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < NFATAL; i++)
		sigaddset(&set, fatal_signals[i]);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

/* The block device a source is read from: itself, or the loop device bound
 * read-write to it (an image file).  0 when there is none. */
static dev_t source_rdev(const struct stat *st, char *loop, size_t len)
{
	unsigned num;
	uint32_t flags;
	struct stat ls;

	loop[0] = '\0';
	if (S_ISBLK(st->st_mode))
		return st->st_rdev;
	if (!S_ISREG(st->st_mode) || fy_loop_lookup(st, -1, &num, &flags) < 0)
		return 0;
	snprintf(loop, len, "/dev/loop%u", num);
	if (stat(loop, &ls) < 0 || !S_ISBLK(ls.st_mode))
		return 0;
	return ls.st_rdev;
}

int cli_mount_warnings(const char *source, const char *freeze_real, char (*warn)[512], size_t max)
{
	struct fy_mount_info *mi = NULL;
	struct stat st;
	char loop[64];
	size_t n = 0, nw = 0;
	dev_t rdev;

	if (stat(source, &st) < 0 || !(rdev = source_rdev(&st, loop, sizeof(loop))))
		return 0;
	if (fy_mounts_of_rdev(rdev, &mi, &n) < 0)
		return 0;
	for (size_t i = 0; i < n && nw < max; i++) {
		char real[PATH_MAX];

		if (mi[i].node || mi[i].ro)
			continue;
		if (freeze_real && realpath(mi[i].point, real) && !strcmp(real, freeze_real))
			continue; /* frozen for the read: consistent */
		snprintf(warn[nw++], sizeof(warn[0]),
			 "%s%s%s%s is mounted read-write at %s (%s): the copy is crash-consistent at best "
			 "(--freeze %s freezes it during the backup)", source, loop[0] ? " (attached as " : "", loop,
			 loop[0] ? ")" : "", mi[i].point, mi[i].fstype, mi[i].point);
	}
	fy_mount_info_free(mi, n);
	return (int)nw;
}

int cli_freeze(const char *mnt, const char *source, const char *const *repos, size_t nrepos, char *err,
	       size_t errlen)
{
	struct fy_mnt_at at;
	struct stat st, ms;
	char real[PATH_MAX], loop[64];
	dev_t rdev;
	sigset_t old;
	int rc;

	if (!realpath(mnt, real)) {
		snprintf(err, errlen, "--freeze %s: %s", mnt, strerror(errno));
		return -errno;
	}
	rc = fy_mnt_at(real, &at);
	if (rc == 0 && !at.mounted)
		rc = -EINVAL;
	if (rc < 0) {
		snprintf(err, errlen, "--freeze %s: %s", mnt, rc == -EINVAL ? "not a mount point" : strerror(-rc));
		return rc;
	}
	/* The filesystem frozen must be the one on the source: else the read is
	 * no more consistent than without, and some other filesystem stops. */
	if (stat(source, &st) < 0) {
		snprintf(err, errlen, "cannot open source %s: %s", source, strerror(errno));
		return -errno;
	}
	rdev = source_rdev(&st, loop, sizeof(loop));
	if (!rdev || !fy_mnt_same_dev(at.maj, at.min, at.source, rdev)) {
		snprintf(err, errlen, "--freeze %s: the filesystem mounted there (%s, %s) is not on %s%s%s: nothing "
			 "frozen", mnt, at.source, at.fstype, source, loop[0] ? " or " : "", loop);
		return -EINVAL;
	}
	/* A repository on the frozen filesystem would block the backup's own writes. */
	if (stat(real, &ms) < 0) {
		snprintf(err, errlen, "--freeze %s: %s", mnt, strerror(errno));
		return -errno;
	}
	for (size_t i = 0; i < nrepos; i++) {
		const char *p = repos[i];
		struct stat rs;

		if (strstr(p, "://") && strncasecmp(p, "file://", 7))
			continue; /* not on a local filesystem */
		if (!strncasecmp(p, "file://", 7))
			p += 7;
		if (stat(p, &rs) == 0 && rs.st_dev == ms.st_dev) {
			snprintf(err, errlen, "--freeze %s: the repository %s is on that filesystem: its writes would "
				 "wait for the thaw forever; nothing frozen", mnt, repos[i]);
			return -EDEADLK;
		}
	}
	frozen_fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (frozen_fd < 0) {
		snprintf(err, errlen, "--freeze %s: %s", mnt, strerror(errno));
		return -errno;
	}
	snprintf(frozen_at, sizeof(frozen_at), "%s", real);
	for (size_t i = 0; i < NFATAL; i++) {
		struct sigaction sa = { .sa_handler = thaw_and_die };

		sigemptyset(&sa.sa_mask);
		sigaction(fatal_signals[i], &sa, NULL);
	}
	/* Dirty data written back before the freeze, while writers still run:
	 * the freeze then stalls them only for what is left. */
	if (fy_fs_sync(real, err, errlen))
		return -EIO;
	/* No signal between the freeze and the flag that says to thaw. */
	block_fatal(&old);
	rc = fy_fs_freeze(real, err, errlen);
	if (rc == 0)
		frozen = 1;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int cli_thaw(char *err, size_t errlen)
{
	sigset_t old;
	int rc = 0;

	if (frozen_fd < 0)
		return 0;
	block_fatal(&old);
	if (frozen) {
		rc = fy_fs_thaw(frozen_at, err, errlen);
		if (rc == 0)
			frozen = 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0) {
		close(frozen_fd);
		frozen_fd = -1;
	}
	return rc;
}
