/* The publish registry: see publish.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "agent_priv.h"
#include "publish.h"

static void entry_path(struct fy_agent *a, const char *vol, const char *target, char *out, size_t len)
{
	unsigned char h[SHA256_DIGEST_LENGTH];
	char hex[2 * 16 + 1];

	SHA256((const unsigned char *)target, strlen(target), h);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	snprintf(out, len, "%s/%s/%s", a->pub_dir, vol, hex);
}

int fy_pub_add(struct fy_agent *a, const char *vol, const char *kind, const char *target)
{
	char dir[1024], path[1200], tmp[1300], body[4200];
	int fd, n, ret = 0;

	snprintf(dir, sizeof(dir), "%s/%s", a->pub_dir, vol);
	ret = fy_mkdir_p(dir, 0700);
	if (ret)
		return ret;
	entry_path(a, vol, target, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	n = snprintf(body, sizeof(body), "%s\n%s\n", kind, target);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, body, (size_t)n) != n || fsync(fd))
		ret = -errno ?: -EIO;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int fy_pub_remove(struct fy_agent *a, const char *vol, const char *target)
{
	char path[1200];

	entry_path(a, vol, target, path, sizeof(path));
	if (unlink(path) && errno != ENOENT)
		return -errno;
	return 0;
}

static int read_entry(const char *path, char *kind, size_t klen, char *target, size_t tlen)
{
	char body[4200], *nl;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, body, sizeof(body) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	body[n] = 0;
	nl = strchr(body, '\n');
	if (!nl)
		return -EIO;
	*nl = 0;
	snprintf(kind, klen, "%s", body);
	if (target) {
		char *t = nl + 1, *e = strchr(t, '\n');

		if (e)
			*e = 0;
		snprintf(target, tlen, "%s", t);
	}
	return 0;
}

int fy_pub_kind(struct fy_agent *a, const char *vol, const char *target, char *kind, size_t len)
{
	char path[1200];

	entry_path(a, vol, target, path, sizeof(path));
	return read_entry(path, kind, len, NULL, 0) == 0 ? 0 : -ENOENT;
}

/* Visit the entries of a volume; stop when fn returns non-zero. */
static int each(struct fy_agent *a, const char *vol, int (*fn)(const char *kind, const char *target, void *arg),
		void *arg)
{
	char dir[1024], path[1400], kind[16], target[4096];
	struct dirent *de;
	DIR *d;
	int ret = 0;

	snprintf(dir, sizeof(dir), "%s/%s", a->pub_dir, vol);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (!ret && (de = readdir(d))) {
		if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!read_entry(path, kind, sizeof(kind), target, sizeof(target)))
			ret = fn(kind, target, arg);
	}
	closedir(d);
	return ret;
}

static int count_fn(const char *kind, const char *target, void *arg)
{
	(void)kind;
	(void)target;
	(*(int *)arg)++;
	return 0;
}

int fy_pub_count(struct fy_agent *a, const char *vol)
{
	int n = 0, ret = each(a, vol, count_fn, &n);

	return ret < 0 ? ret : n;
}

struct first_arg {
	char *path;
	size_t len;
};

static int first_fn(const char *kind, const char *target, void *arg)
{
	struct first_arg *f = arg;

	if (strcmp(kind, "mount"))
		return 0;
	snprintf(f->path, f->len, "%s", target);
	return 1;
}

int fy_pub_first_mount(struct fy_agent *a, const char *vol, char *path, size_t len)
{
	struct first_arg f = { path, len };

	return each(a, vol, first_fn, &f) == 1 ? 0 : -ENOENT;
}

void fy_pub_clear(struct fy_agent *a, const char *vol)
{
	char dir[1024];

	snprintf(dir, sizeof(dir), "%s/%s", a->pub_dir, vol);
	fy_rmtree(dir);
}
