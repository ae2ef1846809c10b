/* Small helpers of the agent: ids, paths, validation, status codes, secrets. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "agent_priv.h"
#include "ferry.h"
#include "log.h"

pthread_mutex_t *fy_stripe(pthread_mutex_t *locks, const char *key)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return &locks[h % FY_STRIPES];
}

int fy_new_id(const char *prefix, char *id, size_t len)
{
	unsigned char r[16];
	int n;

	if (RAND_bytes(r, sizeof(r)) != 1)
		return -EIO;
	n = snprintf(id, len, "%s-", prefix);
	for (size_t i = 0; i < sizeof(r) && (size_t)n + 2 < len; i++)
		n += snprintf(id + n, len - (size_t)n, "%02x", r[i]);
	return 0;
}

bool fy_safe_token(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\')
			return false;
	return true;
}

bool fy_our_id(const char *s, const char *prefix)
{
	size_t pl = strlen(prefix);

	if (strncmp(s, prefix, pl) || s[pl] != '-' || strlen(s) != pl + 1 + 32)
		return false;
	for (const char *p = s + pl + 1; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

void fy_vol_path(const struct fy_agent *a, const char *id, char *path, size_t len)
{
	snprintf(path, len, "%s/%s.img", a->vol_dir, id);
}

void fy_vol_labels_path(const struct fy_agent *a, const char *id, char *path, size_t len)
{
	snprintf(path, len, "%s/%s.labels", a->vol_dir, id);
}

void fy_snap_path(const struct fy_agent *a, const char *id, char *path, size_t len)
{
	snprintf(path, len, "%s/%s.img", a->snap_dir, id);
}

void fy_job_dir(const struct fy_agent *a, const char *snapshot_id, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", a->job_dir, snapshot_id);
}

/* The one place where an errno becomes a gRPC status. */
grpc_status_code fy_errno_status(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return GRPC_STATUS_OK;
	case ENOENT: return GRPC_STATUS_NOT_FOUND;
	case EEXIST: return GRPC_STATUS_ALREADY_EXISTS;
	case EINVAL: case ENAMETOOLONG: return GRPC_STATUS_INVALID_ARGUMENT;
	case EACCES: case EPERM: return GRPC_STATUS_PERMISSION_DENIED;
	case ENOSPC: case EDQUOT: case ENOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case EBUSY: return GRPC_STATUS_FAILED_PRECONDITION;
	case ECANCELED: return GRPC_STATUS_CANCELLED;
	case ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
	case ERANGE: case EFBIG: return GRPC_STATUS_OUT_OF_RANGE;
	case EAGAIN: case ECONNREFUSED: case ECONNRESET: case EHOSTUNREACH: case ENETUNREACH:
		return GRPC_STATUS_UNAVAILABLE;
	case EBADMSG: return GRPC_STATUS_DATA_LOSS;
	case EOPNOTSUPP: return GRPC_STATUS_UNIMPLEMENTED;
	}
	return GRPC_STATUS_INTERNAL;
}

int64_t fy_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

const char *fy_map_get(struct fy_map_entry *const *e, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (e[i]->key && !strcmp(e[i]->key, key))
			return e[i]->value ? e[i]->value : "";
	return NULL;
}

bool fy_has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

int fy_check_map(struct fy_map_entry *const *e, size_t n, size_t max_total, const char *what, bool text_values,
		 char *err, size_t errlen)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		size_t k = e[i]->key ? strlen(e[i]->key) : 0, v = e[i]->value ? strlen(e[i]->value) : 0;

		if (k == 0) {
			snprintf(err, errlen, "%s: an empty key", what);
			return -EINVAL;
		}
		/* Names, parameters and labels end up in the catalog, the logs and
		 * the manifests' labels: a control character there could forge a
		 * line (a secret's value is never shown, and may hold anything). */
		if (fy_has_control(e[i]->key) || (text_values && fy_has_control(e[i]->value))) {
			snprintf(err, errlen, "%s: %s of '%.64s' holds a control character", what,
				 fy_has_control(e[i]->key) ? "the key" : "the value",
				 fy_has_control(e[i]->key) ? "(not shown)" : e[i]->key);
			return -EINVAL;
		}
		total += k + v;
	}
	if (total > max_total) {
		snprintf(err, errlen, "%s: %zu bytes, more than the %zu allowed", what, total, max_total);
		return -EINVAL;
	}
	return 0;
}

int fy_mkdir_p(const char *path, unsigned mode)
{
	char buf[1024];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int fy_rmtree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char sub[1024];
	int ret = 0;

	if (!d)
		return errno == ENOENT ? 0 : (errno == ENOTDIR ? (unlink(path) ? -errno : 0) : -errno);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (de->d_type == DT_DIR)
			ret = fy_rmtree(sub) ?: ret;
		else if (unlink(sub) && errno != ENOENT)
			ret = -errno;
	}
	closedir(d);
	if (rmdir(path) && errno != ENOENT)
		ret = -errno;
	return ret;
}

static int write_secret(const char *dir, const char *name, const char *value, char *err, size_t errlen)
{
	char path[1024], tmp[1100];
	size_t len = strlen(value), off = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "secrets: cannot create a file in %s: %s", dir, strerror(e));
		return -e;
	}
	while (off < len) {
		ssize_t w = write(fd, value + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;

			close(fd);
			unlink(tmp);
			snprintf(err, errlen, "secrets: writing in %s: %s", dir, strerror(e));
			return -e;
		}
		off += (size_t)w;
	}
	if (fsync(fd) || close(fd) || rename(tmp, path)) {
		int e = errno;

		unlink(tmp);
		snprintf(err, errlen, "secrets: saving in %s: %s", dir, strerror(e));
		return -e;
	}
	return 0;
}

/* The secrets a target may have, one file each. */
static const char *const secret_keys[] = { FY_S_PASSWORD, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
					   "AWS_SESSION_TOKEN" };

int fy_secrets_write(const char *dir, struct fy_map_entry *const *e, size_t n, const char *prefix, bool *s3,
		     char *err, size_t errlen)
{
	char pk[256];
	int ret;

	*s3 = false;
	ret = fy_mkdir_p(dir, 0700);
	if (ret) {
		snprintf(err, errlen, "secrets: cannot make %s: %s", dir, strerror(-ret));
		return ret;
	}
	chmod(dir, 0700);
	for (size_t k = 0; k < sizeof(secret_keys) / sizeof(secret_keys[0]); k++) {
		const char *v = NULL;

		if (*prefix) {
			snprintf(pk, sizeof(pk), "%s%s", prefix, secret_keys[k]);
			v = fy_map_get(e, n, pk);
		}
		if (!v)
			v = fy_map_get(e, n, secret_keys[k]);
		if (!v) {
			snprintf(pk, sizeof(pk), "%s/%s", dir, secret_keys[k]);
			unlink(pk);
			continue;
		}
		ret = write_secret(dir, secret_keys[k], v, err, errlen);
		if (ret)
			return ret;
		if (k > 0)
			*s3 = true;
	}
	return 0;
}

/* Hash one secret file into ctx: its name, then "-" when absent or its
 * length and bytes. */
static int digest_file(EVP_MD_CTX *ctx, const char *dir, const char *key)
{
	char path[1200], buf[4096], len[32];
	ssize_t n = 0, r;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	EVP_DigestUpdate(ctx, key, strlen(key) + 1);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT)
			return -errno;
		EVP_DigestUpdate(ctx, "-", 1);
		return 0;
	}
	while (n < (ssize_t)sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - (size_t)n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			break;
		}
		n += r;
	}
	close(fd);
	snprintf(len, sizeof(len), "%zd:", n);
	EVP_DigestUpdate(ctx, len, strlen(len));
	EVP_DigestUpdate(ctx, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
	return ret;
}

int fy_secrets_digest(const char *dir, unsigned char out[FY_SECRETS_DIGEST_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char sub[1100];
	unsigned int len = 0;
	int ret = 0;

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -EIO;
	}
	for (int i = 0; !ret && i < FY_MAX_TARGETS_URL; i++) {
		if (i)
			snprintf(sub, sizeof(sub), "%s/copy-%d", dir, i);
		else
			snprintf(sub, sizeof(sub), "%s", dir);
		EVP_DigestUpdate(ctx, "/", 1);
		for (size_t k = 0; !ret && k < sizeof(secret_keys) / sizeof(secret_keys[0]); k++)
			ret = digest_file(ctx, sub, secret_keys[k]);
	}
	if (!ret && (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != FY_SECRETS_DIGEST_LEN))
		ret = -EIO;
	EVP_MD_CTX_free(ctx);
	return ret;
}

void fy_secrets_remove(const char *dir)
{
	fy_rmtree(dir);
}

int fy_secret_password(const char *dir, char *buf, size_t len)
{
	char path[1024];
	ssize_t n;
	int fd;

	buf[0] = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, FY_S_PASSWORD);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

int fy_target_url(const char *url, const char *dir, bool s3, char *out, size_t len)
{
	int n;

	if (!s3 || strncmp(url, "s3://", 5))
		n = snprintf(out, len, "%s", url);
	else
		n = snprintf(out, len, "%s%csecret-dir=%s", url, strchr(url, '?') ? '&' : '?', dir);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The URL without its query (which may name credential files): for logs. */
void fy_url_shown(const char *url, char *out, size_t len)
{
	size_t q = strcspn(url, "?");

	snprintf(out, len, "%.*s", (int)q, url);
}

unsigned fy_repo_open_flags(const struct fy_kv *kv, size_t n)
{
	unsigned flags = 0;

	for (size_t i = 0; i < n; i++) {
		if (!strcmp(kv[i].key, FY_P_CREATE) && !strcmp(kv[i].value, "true"))
			flags |= FY_OPEN_CREATE;
		if (!strcmp(kv[i].key, FY_P_INSECURE) && !strcmp(kv[i].value, "true"))
			flags |= FY_OPEN_INSECURE;
	}
	return flags;
}

int fy_repo_open_dir(const char *url, const char *dir, unsigned flags, struct fy_repo *primary, const char *whose,
		     struct fy_repo **r, char *err, size_t errlen)
{
	bool create = flags & FY_OPEN_CREATE;
	char full[2048], pw[1024], shown[512], e2[512];
	struct fy_secret sec = { 0 };
	char probe[1100];
	bool s3;
	int ret;

	snprintf(probe, sizeof(probe), "%s/AWS_ACCESS_KEY_ID", dir);
	s3 = access(probe, F_OK) == 0;
	ret = fy_target_url(url, dir, s3, full, sizeof(full));
	if (ret) {
		snprintf(err, errlen, "repository URL too long");
		return ret;
	}
	fy_secret_password(dir, pw, sizeof(pw));
	sec.password = pw[0] ? pw : NULL;
	sec.insecure_no_encryption = flags & FY_OPEN_INSECURE;
	fy_url_shown(url, shown, sizeof(shown));
	/* One line per open: each derives the key from the password (tests count them). */
	fy_logf(FY_LOG_DEBUG, &(struct fy_log_fields){ .target = shown }, "repository %s: opening with %s%s", shown,
		whose, pw[0] ? " (key derivation)" : "");
	ret = fy_repo_open(full, &sec, r, e2, sizeof(e2));
	if (ret == -ENOENT && create) {
		struct fy_init_opts io = { .chunk_size = FY_DEFAULT_CHUNK,
					   .compression = FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE, .level = 1 };
		const char *lg = getenv("FERRY_SCRYPT_LOG2N"); /* tests: a cheaper key derivation */

		if (lg && atoi(lg) >= 10 && atoi(lg) <= 22)
			io.scrypt_log2n = (unsigned)atoi(lg);

		ret = primary ? fy_repo_init_copy(full, primary, &sec, io.scrypt_log2n, e2, sizeof(e2))
			      : fy_repo_init(full, &io, &sec, e2, sizeof(e2));
		if (!ret)
			fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .target = shown }, "created the repository %s%s", shown,
				primary ? " (a copy of the primary)" : "");
		/* -EEXIST: another creator (another upload of this class, another
		 * node) made it first: open theirs, with the same secrets. */
		if (!ret || ret == -EEXIST)
			ret = fy_repo_open(full, &sec, r, e2, sizeof(e2));
	}
	if (ret)
		snprintf(err, errlen, "%.200s: %.700s%s%s%s", shown, e2, ret == -EACCES && !pw[0] ? " (no 'password' in " : "",
			 ret == -EACCES && !pw[0] ? whose : "", ret == -EACCES && !pw[0] ? ")" : "");
	OPENSSL_cleanse(pw, sizeof(pw));
	return ret;
}
