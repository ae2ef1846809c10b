/* Helpers shared by the fuzz targets: see fuzz.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

const uint8_t fz_data_key[FY_KEY_LEN] = {
	0x64, 0x61, 0x74, 0x61, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x6f, 0x66, 0x2d, 0x74, 0x68, 0x65, 0x2d,
	0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x68, 0x61, 0x72, 0x6e, 0x65, 0x73, 0x73, 0x2d, 0x30, 0x30, 0x31,
};
const uint8_t fz_id_key[FY_KEY_LEN] = {
	0x69, 0x64, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x6f, 0x66, 0x2d, 0x74, 0x68, 0x65, 0x2d, 0x66, 0x75,
	0x7a, 0x7a, 0x2d, 0x68, 0x61, 0x72, 0x6e, 0x65, 0x73, 0x73, 0x2d, 0x30, 0x30, 0x30, 0x30, 0x32,
};
const uint8_t fz_repo_id[16] = { 0x72, 0x65, 0x70, 0x6f, 0x2d, 0x69, 0x64, 0x2d,
				 0x6f, 0x66, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x21 };
const uint8_t fz_snap_id[FY_SNAP_ID_LEN] = { 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
					     0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x01 };

const uint8_t fz_raw_key[FY_KEY_LEN] = {
	0x72, 0x61, 0x77, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x6f, 0x66, 0x2d, 0x74, 0x68, 0x65, 0x2d, 0x66,
	0x75, 0x7a, 0x7a, 0x2d, 0x68, 0x61, 0x72, 0x6e, 0x65, 0x73, 0x73, 0x2d, 0x30, 0x30, 0x30, 0x33,
};

size_t fz_config_object(bool encrypted, uint8_t *out, size_t cap)
{
	Ferry__V1__RepoConfig c = FERRY__V1__REPO_CONFIG__INIT;

	c.format_version = FY_FORMAT_VERSION;
	c.repo_id.data = (uint8_t *)fz_repo_id;
	c.repo_id.len = sizeof(fz_repo_id);
	c.chunk_size = FY_DEFAULT_CHUNK;
	c.compression = FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE;
	c.compression_level = 1;
	c.encryption = encrypted ? FERRY__V1__ENCRYPTION__ENCRYPTION_AES256_GCM : FERRY__V1__ENCRYPTION__ENCRYPTION_NONE;
	c.created_unix_nano = 1700000000000000000;
	if (ferry__v1__repo_config__get_packed_size(&c) > cap)
		return 0;
	return ferry__v1__repo_config__pack(&c, out);
}

size_t fz_key_object(int kdf, uint8_t *out, size_t cap)
{
	static const uint8_t salt[16] = "fuzz-salt-000004";
	Ferry__V1__KeyFile k = FERRY__V1__KEY_FILE__INIT;
	uint8_t master[2 * FY_KEY_LEN], wk[FY_KEY_LEN], aad[9 + 16], wrapped[2 * FY_KEY_LEN + FY_SEAL_OVERHEAD];

	memcpy(master, fz_data_key, FY_KEY_LEN);
	memcpy(master + FY_KEY_LEN, fz_id_key, FY_KEY_LEN);
	memcpy(aad, "ferry-key", 9);
	memcpy(aad + 9, fz_repo_id, 16);
	k.kdf = kdf;
	k.created_unix_nano = 1700000000000000000;
	k.hostname = (char *)"fuzz";
	if (kdf == FERRY__V1__KDF__KDF_NONE) {
		k.wrapped_master.data = master;
		k.wrapped_master.len = sizeof(master);
	} else {
		if (kdf == FERRY__V1__KDF__KDF_SCRYPT) {
			k.scrypt_log2_n = 10;
			k.scrypt_r = 1;
			k.scrypt_p = 1;
			k.salt.data = (uint8_t *)salt;
			k.salt.len = sizeof(salt);
			if (fy_scrypt(FZ_PASSWORD, strlen(FZ_PASSWORD), salt, sizeof(salt), 10, 1, 1, wk) < 0)
				return 0;
		} else {
			memcpy(wk, fz_raw_key, FY_KEY_LEN);
		}
		if (fy_seal(wk, aad, sizeof(aad), master, sizeof(master), wrapped) < 0)
			return 0;
		k.wrapped_master.data = wrapped;
		k.wrapped_master.len = sizeof(wrapped);
	}
	if (ferry__v1__key_file__get_packed_size(&k) > cap)
		return 0;
	return ferry__v1__key_file__pack(&k, out);
}

void fz_fail(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* To fd 2 itself: the agent's targets point stderr elsewhere. */
	dprintf(2, "FUZZ PROPERTY VIOLATED: %s\n", msg);
	abort();
}

void fz_repo(struct fy_repo *r, bool encrypted, bool deflate)
{
	memset(r, 0, sizeof(*r));
	r->url = (char *)"fuzz://";
	memcpy(r->repo_id, fz_repo_id, sizeof(r->repo_id));
	r->chunk_size = FY_DEFAULT_CHUNK;
	r->compression = deflate ? FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE : FERRY__V1__COMPRESSION__COMPRESSION_NONE;
	r->level = 1;
	r->encrypted = encrypted;
	memcpy(r->data_key, fz_data_key, FY_KEY_LEN);
	memcpy(r->id_key, fz_id_key, FY_KEY_LEN);
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void fz_rmtree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char dir[256];

static void dir_remove(void)
{
	if (dir[0])
		fz_rmtree(dir);
}

/* Scratch directories of processes that are gone (a crash skips atexit). */
static void sweep_stale(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *de;
	char path[512];
	long pid;

	while (d && (de = readdir(d)))
		if (sscanf(de->d_name, "ferry-fuzz.%ld.", &pid) == 1 && pid > 0 && kill((pid_t)pid, 0) < 0 &&
		    errno == ESRCH) {
			snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
			fz_rmtree(path);
		}
	if (d)
		closedir(d);
}

const char *fz_dir(void)
{
	struct stat st;
	const char *base;

	if (dir[0])
		return dir;
	base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	sweep_stale(base);
	snprintf(dir, sizeof(dir), "%s/ferry-fuzz.%ld.XXXXXX", base, (long)getpid());
	if (!mkdtemp(dir))
		fz_fail("mkdtemp %s: %s", dir, strerror(errno));
	atexit(dir_remove);
	return dir;
}

static int mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0700) && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	return 0;
}

int fz_write(const char *d, const char *rel, const void *buf, size_t len)
{
	char path[1024];
	const char *p = buf;
	int fd, rc = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", d, rel) >= sizeof(path))
		return -ENAMETOOLONG;
	if ((rc = mkdirs(path)))
		return rc;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		p += w;
		len -= (size_t)w;
	}
	close(fd);
	return rc;
}
