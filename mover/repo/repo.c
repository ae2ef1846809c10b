/* Repository config and keys: init, open (unlock), close (docs/FORMAT.md). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "repo/repo.h"

#define SCRYPT_LOG2N 15
#define SCRYPT_R 8
#define SCRYPT_P 1
#define MASTER_LEN (2 * FY_KEY_LEN)
#define WRAPPED_LEN (MASTER_LEN + FY_SEAL_OVERHEAD)

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t key_aad(uint8_t aad[9 + 16], const uint8_t repo_id[16])
{
	memcpy(aad, "ferry-key", 9);
	memcpy(aad + 9, repo_id, 16);
	return 9 + 16;
}

static int wrapping_key(const Ferry__V1__KeyFile *kf, const struct fy_secret *sec, uint8_t wk[FY_KEY_LEN])
{
	if (kf->kdf == FERRY__V1__KDF__KDF_SCRYPT) {
		if (!sec->password)
			return -ENOKEY;
		/* At most what init writes (r = 8, p = 1, N up to 2^22: 4 GiB):
		 * whoever can write keys/ must not make every open allocate
		 * 16 GiB (r = 32) or spin for minutes (p = 16). */
		if (kf->scrypt_log2_n < 10 || kf->scrypt_log2_n > 22 || kf->scrypt_r == 0 || kf->scrypt_r > 8 ||
		    kf->scrypt_p == 0 || kf->scrypt_p > 4)
			return -E2BIG;
		return fy_scrypt(sec->password, strlen(sec->password), kf->salt.data, kf->salt.len,
				 kf->scrypt_log2_n, kf->scrypt_r, kf->scrypt_p, wk);
	}
	if (kf->kdf == FERRY__V1__KDF__KDF_RAW) {
		if (!sec->raw_key)
			return -ENOKEY;
		memcpy(wk, sec->raw_key, FY_KEY_LEN);
		return 0;
	}
	return -EINVAL;
}

static int put_message(struct fy_store *st, const char *key, const ProtobufCMessage *msg, unsigned flags)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	int rc;

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	rc = fy_store_put(st, key, buf, len, FY_PUT_DURABLE | flags);
	free(buf);
	return rc;
}

static int init_repo(const char *url, const struct fy_init_opts *o, const struct fy_repo *from,
		     const struct fy_secret *sec, char *err, size_t errlen)
{
	struct fy_store *st = NULL;
	uint8_t master[MASTER_LEN], wk[FY_KEY_LEN], salt[16], kid[8], aad[25];
	uint8_t wrapped[WRAPPED_LEN];
	char key[64], hex[17], host[256] = "";
	Ferry__V1__RepoConfig cfg = FERRY__V1__REPO_CONFIG__INIT;
	Ferry__V1__KeyFile kf = FERRY__V1__KEY_FILE__INIT;
	int rc;

	if (o->chunk_size < FY_MIN_CHUNK || o->chunk_size > FY_MAX_CHUNK ||
	    (o->chunk_size & (o->chunk_size - 1))) {
		snprintf(err, errlen, "chunk size %u is not a power of two from 1 MiB to 16 MiB", o->chunk_size);
		return -EINVAL;
	}
	if (o->compression == FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE && (o->level < 0 || o->level > 3)) {
		snprintf(err, errlen, "compression level %d is out of range (igzip 0..3)", o->level);
		return -EINVAL;
	}
	if (o->scrypt_log2n && (o->scrypt_log2n < 10 || o->scrypt_log2n > 22)) {
		snprintf(err, errlen, "scrypt cost 2^%u is out of range (2^10 .. 2^22)", o->scrypt_log2n);
		return -EINVAL;
	}
	if (o->insecure_no_encryption && (sec->password || sec->raw_key)) {
		snprintf(err, errlen, "a password or key and --insecure-no-encryption contradict each other");
		return -EINVAL;
	}
	if (!o->insecure_no_encryption && sec->password && !*sec->password) {
		snprintf(err, errlen, "the password is empty: a password cannot be empty");
		return -EINVAL;
	}
	if (!o->insecure_no_encryption && !sec->password && !sec->raw_key) {
		snprintf(err, errlen, "no password: set FERRY_PASSWORD, or give --password-file or --key-file "
			 "(or --insecure-no-encryption)");
		return -ENOKEY;
	}
	rc = fy_store_open(url, &st, err, errlen);
	if (rc < 0)
		return rc;
	rc = fy_store_exists(st, "config", NULL);
	if (rc != 0) {
		if (rc > 0)
			snprintf(err, errlen, "a repository already exists at %s", url);
		else
			snprintf(err, errlen, "cannot read %s: %s", url, fy_store_strerror(rc));
		rc = rc > 0 ? -EEXIST : rc;
		goto out;
	}
	/* Test hook: FERRY_TEST_STOP_AT=init stops the process here (SIGSTOP),
	 * past the check for a config, so a test can release several creators
	 * at once and make them race (tests/integration/t_repo_init_race.sh). */
	if (getenv("FERRY_TEST_STOP_AT") && !strcmp(getenv("FERRY_TEST_STOP_AT"), "init"))
		raise(SIGSTOP);

	cfg.format_version = FY_FORMAT_VERSION;
	uint8_t repo_id[16];

	if ((rc = fy_random(repo_id, sizeof(repo_id))) < 0 || (rc = fy_random(master, sizeof(master))) < 0 ||
	    (rc = fy_random(salt, sizeof(salt))) < 0 || (rc = fy_random(kid, sizeof(kid))) < 0) {
		snprintf(err, errlen, "no random bytes: %s", strerror(-rc));
		goto out;
	}
	if (from) {
		/* A copy: the same repository in another place (FORMAT.md, "Copies"). */
		memcpy(repo_id, from->repo_id, sizeof(repo_id));
		memcpy(master, from->data_key, FY_KEY_LEN);
		memcpy(master + FY_KEY_LEN, from->id_key, FY_KEY_LEN);
	}
	cfg.repo_id.data = repo_id;
	cfg.repo_id.len = sizeof(repo_id);
	cfg.chunk_size = o->chunk_size;
	cfg.compression = o->compression;
	cfg.compression_level = (uint32_t)o->level;
	cfg.encryption = o->insecure_no_encryption ? FERRY__V1__ENCRYPTION__ENCRYPTION_NONE
						   : FERRY__V1__ENCRYPTION__ENCRYPTION_AES256_GCM;
	cfg.created_unix_nano = now_ns();

	gethostname(host, sizeof(host) - 1);
	kf.hostname = host;
	kf.created_unix_nano = cfg.created_unix_nano;
	if (o->insecure_no_encryption) {
		kf.kdf = FERRY__V1__KDF__KDF_NONE;
		kf.wrapped_master.data = master;
		kf.wrapped_master.len = MASTER_LEN;
	} else {
		if (sec->password) {
			kf.kdf = FERRY__V1__KDF__KDF_SCRYPT;
			kf.scrypt_log2_n = o->scrypt_log2n ? o->scrypt_log2n : SCRYPT_LOG2N;
			kf.scrypt_r = SCRYPT_R;
			kf.scrypt_p = SCRYPT_P;
			kf.salt.data = salt;
			kf.salt.len = sizeof(salt);
		} else {
			kf.kdf = FERRY__V1__KDF__KDF_RAW;
		}
		rc = wrapping_key(&kf, sec, wk);
		if (rc < 0) {
			snprintf(err, errlen, "deriving the key: %s", strerror(-rc));
			goto out;
		}
		rc = fy_seal(wk, aad, key_aad(aad, repo_id), master, MASTER_LEN, wrapped);
		if (rc < 0) {
			snprintf(err, errlen, "wrapping the master key: %s", strerror(-rc));
			goto out;
		}
		kf.wrapped_master.data = wrapped;
		kf.wrapped_master.len = WRAPPED_LEN;
	}
	/* The folders first (file stores): from here on a missing one is damage. */
	cfg.folders = true;
	{
		static const char *const folders[] = FY_FOLDERS;

		for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
			rc = fy_store_make_folder(st, folders[i]);
			if (rc < 0) {
				snprintf(err, errlen, "making the folder %s of %s: %s", folders[i], url,
					 fy_store_strerror(rc));
				goto out;
			}
		}
	}
	fy_hex(kid, sizeof(kid), hex);
	snprintf(key, sizeof(key), "keys/%s", hex);
	rc = put_message(st, key, &kf.base, FY_PUT_NOREPLACE);
	/* config last: it says "a repository is here".  Created only if absent:
	 * of creators racing past the check above, one wins; each other one
	 * removes its key object (which wraps a master key bound to a repo_id
	 * that is nobody's) and gets -EEXIST, so it opens the winner's. */
	if (rc == 0)
		rc = put_message(st, "config", &cfg.base, FY_PUT_EXCL);
	if (rc == -EEXIST) {
		fy_store_del(st, key); /* may fail on an Object Lock target: the key is then a harmless orphan */
		snprintf(err, errlen, "a repository already exists at %s (created by someone else at the same time)", url);
	} else if (rc < 0) {
		snprintf(err, errlen, "writing the repository at %s: %s", url, fy_store_strerror(rc));
	}
out:
	OPENSSL_cleanse(master, sizeof(master));
	OPENSSL_cleanse(wk, sizeof(wk));
	fy_store_close(st);
	return rc;
}

/* The outcome of listing one of r's folders: 0, cb's value, or -errno with
 * one line in err naming the folder. */
static int list_outcome(struct fy_repo *r, const char *folder, int rc, char *err, size_t errlen)
{
	if (rc >= 0)
		return rc;
	/* A repository made before init made its folders gets one at its first
	 * write: until then it is not there, and that means empty. */
	if (rc == -ENOENT && !r->folders)
		return 0;
	char why[600]; /* may name whatever the folder holds: escaped */

	snprintf(err, errlen, "cannot list the %s folder of %s: %s%s", folder, r->url,
		 fy_escape(fy_store_strerror(rc), why, sizeof(why)),
		 rc == -ENOENT ? " (every repository has it from 'ferry init' on: a missing folder is not taken "
				 "as an empty one)" : "");
	return rc;
}

int fy_repo_list(struct fy_repo *r, const char *folder, fy_store_list_cb cb, void *arg, char *err, size_t errlen)
{
	return list_outcome(r, folder, fy_store_list(r->store, folder, cb, arg), err, errlen);
}

int fy_repo_keys(struct fy_repo *r, const char *folder, struct fy_store_keys *out, char *err, size_t errlen)
{
	int rc = list_outcome(r, folder, fy_store_keys(r->store, folder, out), err, errlen);

	if (rc < 0)
		fy_store_keys_free(out);
	return rc;
}

int fy_repo_init(const char *url, const struct fy_init_opts *o, const struct fy_secret *sec,
		 char *err, size_t errlen)
{
	return init_repo(url, o, NULL, sec, err, errlen);
}

int fy_repo_init_copy(const char *url, const struct fy_repo *from, const struct fy_secret *sec,
		      unsigned scrypt_log2n, char *err, size_t errlen)
{
	struct fy_init_opts o = {
		.chunk_size = from->chunk_size,
		.compression = from->compression,
		.level = from->level,
		.insecure_no_encryption = !from->encrypted,
		.scrypt_log2n = scrypt_log2n,
	};

	if (!strcmp(url, from->url)) {
		snprintf(err, errlen, "a repository cannot be a copy of itself (%s)", url);
		return -EINVAL;
	}
	return init_repo(url, &o, from, sec, err, errlen);
}

bool fy_repo_same(const struct fy_repo *a, const struct fy_repo *b)
{
	return !memcmp(a->repo_id, b->repo_id, sizeof(a->repo_id)) && a->chunk_size == b->chunk_size &&
	       a->encrypted == b->encrypted && !CRYPTO_memcmp(a->data_key, b->data_key, FY_KEY_LEN) &&
	       !CRYPTO_memcmp(a->id_key, b->id_key, FY_KEY_LEN);
}

/* Try each key object; 0 and the master key on success. */
static int unlock(struct fy_repo *r, const struct fy_secret *sec, uint8_t master[MASTER_LEN], char *err,
		  size_t errlen)
{
	struct fy_store_keys l;
	int rc = fy_repo_keys(r, "keys/", &l, err, errlen);
	bool any_usable = false;
	char costly[300] = "";

	if (rc < 0)
		goto out;
	rc = -EACCES;
	for (size_t i = 0; i < l.n && rc != 0; i++) {
		void *buf = NULL;
		size_t len = 0;
		uint8_t wk[FY_KEY_LEN], aad[25];

		if (fy_store_get(r->store, l.keys[i], 0, SIZE_MAX, &buf, &len) < 0)
			continue;
		Ferry__V1__KeyFile *kf = ferry__v1__key_file__unpack(NULL, len, buf);

		free(buf);
		if (!kf)
			continue;
		if (kf->kdf == FERRY__V1__KDF__KDF_NONE && !r->encrypted && kf->wrapped_master.len == MASTER_LEN) {
			memcpy(master, kf->wrapped_master.data, MASTER_LEN);
			rc = 0;
		} else if (r->encrypted && kf->wrapped_master.len == WRAPPED_LEN) {
			int wr = wrapping_key(kf, sec, wk);

			if (wr == -E2BIG && !costly[0])
				snprintf(costly, sizeof(costly), "; %.120s asks for a key derivation beyond what ferry "
					 "writes (scrypt N=2^%u r=%u p=%u): ignored", l.keys[i], kf->scrypt_log2_n,
					 kf->scrypt_r, kf->scrypt_p);
			if (wr == 0) {
				any_usable = true;
				if (fy_unseal(wk, aad, key_aad(aad, r->repo_id), kf->wrapped_master.data, WRAPPED_LEN,
					      master) == 0)
					rc = 0;
				OPENSSL_cleanse(wk, sizeof(wk));
			}
		}
		ferry__v1__key_file__free_unpacked(kf, NULL);
	}
	if (rc != 0) {
		if (l.n == 0)
			snprintf(err, errlen, "repository %s has no key objects (keys/ is empty)", r->url);
		else if (!any_usable && !sec->password && !sec->raw_key)
			snprintf(err, errlen, "repository %s is encrypted: set FERRY_PASSWORD, or give --password-file "
				 "or --key-file", r->url);
		else
			snprintf(err, errlen, "wrong password or key for %s: no key object could be unlocked%s", r->url,
				 costly);
	}
out:
	fy_store_keys_free(&l);
	return rc;
}

int fy_repo_open(const char *url, const struct fy_secret *sec, struct fy_repo **out, char *err, size_t errlen)
{
	struct fy_repo *r = calloc(1, sizeof(*r));
	void *buf = NULL;
	size_t len = 0;
	uint8_t master[MASTER_LEN];
	Ferry__V1__RepoConfig *cfg = NULL;
	int rc;

	if (!r || !(r->url = strdup(url))) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = fy_store_open(url, &r->store, err, errlen);
	if (rc < 0)
		goto fail;
	rc = fy_store_get(r->store, "config", 0, SIZE_MAX, &buf, &len);
	if (rc == -ENOENT) {
		snprintf(err, errlen, "no repository at %s (no config object): create one with 'ferry init'", url);
		goto fail;
	}
	if (rc < 0) {
		snprintf(err, errlen, "reading the config of %s: %s", url, fy_store_strerror(rc));
		goto fail;
	}
	cfg = ferry__v1__repo_config__unpack(NULL, len, buf);
	if (!cfg || cfg->repo_id.len != 16) {
		snprintf(err, errlen, "the config object of %s is corrupt", url);
		rc = -EBADMSG;
		goto fail;
	}
	if (cfg->format_version != FY_FORMAT_VERSION) {
		snprintf(err, errlen, "repository %s has format version %u; this ferry reads version %u", url,
			 cfg->format_version, FY_FORMAT_VERSION);
		rc = -EPROTO;
		goto fail;
	}
	if (cfg->chunk_size < FY_MIN_CHUNK || cfg->chunk_size > FY_MAX_CHUNK ||
	    (cfg->chunk_size & (cfg->chunk_size - 1)) || cfg->compression_level > 3 ||
	    (cfg->compression != FERRY__V1__COMPRESSION__COMPRESSION_NONE &&
	     cfg->compression != FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE) ||
	    (cfg->encryption != FERRY__V1__ENCRYPTION__ENCRYPTION_NONE &&
	     cfg->encryption != FERRY__V1__ENCRYPTION__ENCRYPTION_AES256_GCM)) {
		snprintf(err, errlen, "the config object of %s has invalid values", url);
		rc = -EBADMSG;
		goto fail;
	}
	memcpy(r->repo_id, cfg->repo_id.data, 16);
	r->chunk_size = cfg->chunk_size;
	r->compression = cfg->compression;
	r->level = (int)cfg->compression_level;
	r->encrypted = cfg->encryption != FERRY__V1__ENCRYPTION__ENCRYPTION_NONE;
	r->folders = cfg->folders;
	/* The config is not authenticated: whoever can write to the store can
	 * replace it with an unencrypted one and add a key object without KDF.
	 * Whoever holds a password or key expects an encrypted repository, and
	 * an unencrypted one is opened only when the caller says so each time. */
	if (!r->encrypted && (sec->password || sec->raw_key)) {
		snprintf(err, errlen, "repository %s is not encrypted, yet a password or key was given: refusing to "
			 "open it (was its config replaced?  an encrypted repository is never opened as plaintext)", url);
		rc = -EPERM;
		goto fail;
	}
	if (!r->encrypted && !sec->insecure_no_encryption) {
		snprintf(err, errlen, "repository %s is not encrypted: opening it needs --insecure-no-encryption", url);
		rc = -EPERM;
		goto fail;
	}
	if (r->encrypted && sec->insecure_no_encryption && !sec->password && !sec->raw_key) {
		snprintf(err, errlen, "repository %s is encrypted: give its password or key, not "
			 "--insecure-no-encryption", url);
		rc = -EACCES;
		goto fail;
	}
	rc = unlock(r, sec, master, err, errlen);
	if (rc < 0)
		goto fail;
	memcpy(r->data_key, master, FY_KEY_LEN);
	memcpy(r->id_key, master + FY_KEY_LEN, FY_KEY_LEN);
	OPENSSL_cleanse(master, sizeof(master));
	ferry__v1__repo_config__free_unpacked(cfg, NULL);
	free(buf);
	*out = r;
	return 0;
fail:
	if (cfg)
		ferry__v1__repo_config__free_unpacked(cfg, NULL);
	free(buf);
	fy_repo_close(r);
	return rc;
}

void fy_repo_close(struct fy_repo *r)
{
	if (!r)
		return;
	if (r->store)
		fy_store_close(r->store);
	OPENSSL_cleanse(r->data_key, sizeof(r->data_key));
	OPENSSL_cleanse(r->id_key, sizeof(r->id_key));
	free(r->url);
	free(r);
}
