/* The repository: config, keys, sealed objects (chunks and manifests).
 * docs/FORMAT.md is the contract this code implements. */
#ifndef FERRY_REPO_H
#define FERRY_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec/codec.h"
#include "store/store.h"
#include "ferry.pb-c.h"

#define FY_FORMAT_VERSION 1
#define FY_SNAP_ID_LEN 16
#define FY_OBJ_HDR_LEN 24
#define FY_MIN_CHUNK (1u << 20)
#define FY_MAX_CHUNK (16u << 20)
#define FY_DEFAULT_CHUNK (4u << 20)

/* Worst-case size of a sealed object holding len plain bytes. */
#define FY_OBJ_MAX(len) (FY_OBJ_HDR_LEN + FY_SEAL_OVERHEAD + (size_t)(len))

struct fy_secret {
	const char *password;  /* NULL if not given */
	const uint8_t *raw_key; /* 32 bytes, NULL if not given */
	/* The caller opens an unencrypted repository on purpose
	 * (--insecure-no-encryption).  Without it an unencrypted repository is
	 * refused; with a password or key it is refused always. */
	bool insecure_no_encryption;
};

struct fy_repo {
	struct fy_store *store;
	char *url;
	uint8_t repo_id[16];
	uint32_t chunk_size;
	int compression;       /* FERRY__V1__COMPRESSION__* */
	int level;
	bool encrypted;
	bool folders;          /* the config says init made the folders (FORMAT.md, "Folders") */
	uint8_t data_key[FY_KEY_LEN];
	uint8_t id_key[FY_KEY_LEN];
};

struct fy_init_opts {
	uint32_t chunk_size;
	int compression;       /* FERRY__V1__COMPRESSION__* */
	int level;
	bool insecure_no_encryption;
	unsigned scrypt_log2n; /* 0: default */
};

/* Create a new repository at url.  Refuses (-EEXIST) when one exists, also
 * when another creator made it at the same moment (then open that one). */
int fy_repo_init(const char *url, const struct fy_init_opts *o, const struct fy_secret *sec,
		 char *err, size_t errlen);
/* Make url a copy of an open repository: the same repository id, keys and
 * chunk size (so sealed objects are valid in both), its key file wrapped
 * with sec.  Refuses (-EEXIST) when a repository exists at url. */
int fy_repo_init_copy(const char *url, const struct fy_repo *from, const struct fy_secret *sec,
		      unsigned scrypt_log2n, char *err, size_t errlen);
/* Are a and b the same repository (copies of each other)? */
bool fy_repo_same(const struct fy_repo *a, const struct fy_repo *b);
/* Open and unlock.  -ENOENT: no repository there; -EACCES: wrong password/key;
 * -EPERM: the repository is not encrypted, and either a password or key was
 * given (an encrypted repository is never reopened as plaintext) or
 * sec->insecure_no_encryption was not. */
int fy_repo_open(const char *url, const struct fy_secret *sec, struct fy_repo **repo,
		 char *err, size_t errlen);
void fy_repo_close(struct fy_repo *repo);

/* Seal plain bytes into a framed object (see FORMAT.md).  out must hold
 * FY_OBJ_MAX(len) bytes and not overlap plain.  Returns the object length or -errno. */
ssize_t fy_obj_seal(const struct fy_repo *r, const char magic[4], const uint8_t *name, size_t namelen,
		    const void *plain, size_t len, uint32_t crc, int level, uint8_t *out);
/* Verify and decode an object of objlen bytes into plain (cap bytes).
 * Returns the plain length, or -EBADMSG with a reason in why. */
ssize_t fy_obj_open(const struct fy_repo *r, const char magic[4], const uint8_t *name, size_t namelen,
		    uint8_t *obj, size_t objlen, void *plain, size_t cap, void *scratch,
		    char *why, size_t whylen);

/* The repository's own folders, made by init. */
#define FY_FOLDERS { "keys/", "chunks/", "snapshots/", "locks/" }
/* List one of them ("chunks/", "snapshots/", "keys/", "locks/").  A folder
 * that is missing (in a repository whose init made its folders), not a
 * folder, or unreadable is an error with one line in err naming it, never an
 * empty list.  cb's own non-zero return stops the walk and is returned. */
int fy_repo_list(struct fy_repo *r, const char *folder, fy_store_list_cb cb, void *arg, char *err, size_t errlen);
/* The same, collecting the keys (free with fy_store_keys_free). */
int fy_repo_keys(struct fy_repo *r, const char *folder, struct fy_store_keys *out, char *err, size_t errlen);
/* The chunk id named by a key, if the key is exactly where that chunk lives
 * ("chunks/ab/ab12..." in lower-case hex): 1 and the id; 0 if the name is a
 * chunk id in the wrong place (misplaced: *id is set); -1 if it is no chunk name. */
int fy_chunk_key_id(const char *key, uint8_t id[FY_ID_LEN]);

/* Names, tags and labels (and anything else read from a repository, which
 * may hold anything) are printed through fy_escape: control characters (C0,
 * DEL, C1), a backslash and bytes that are not UTF-8 become \xHH (\\), so
 * nothing read can forge a line or drive a terminal; cut with "..." to fit
 * outlen.  Returns out.  fy_printable: 0 when s is valid UTF-8 without
 * control characters, else -EINVAL with the offending byte's offset in *at. */
const char *fy_escape(const char *s, char *out, size_t outlen);
int fy_printable(const char *s, size_t *at);
/* The length of the printable UTF-8 character at s, or 0 (a control
 * character, bytes that are not UTF-8, or the end of s). */
size_t fy_printable_char(const char *s);

/* Store keys. */
void fy_chunk_key(const uint8_t id[FY_ID_LEN], char key[80]);
void fy_snap_key(const uint8_t id[FY_SNAP_ID_LEN], char key[64]);
void fy_hex(const uint8_t *b, size_t n, char *out);
int fy_unhex(const char *s, uint8_t *b, size_t n);

/* Fetch and verify one chunk into plain (cap bytes); *crc receives its verified
 * crc32c.  FY_VERIFY_ID also recomputes the keyed id (HMAC) from the plain
 * bytes: check --read-data always does; restore does in unencrypted
 * repositories, where no AEAD tag binds the data to its id. */
#define FY_VERIFY_ID 1u
ssize_t fy_chunk_read(const struct fy_repo *r, const uint8_t id[FY_ID_LEN], void *plain, size_t cap,
		      void *scratch, unsigned flags, uint32_t *crc, char *err, size_t errlen);

/* Manifests. */
int fy_manifest_write(struct fy_repo *r, const Ferry__V1__Manifest *m, char *err, size_t errlen);
/* Load and verify snapshots/<id>; free with ferry__v1__manifest__free_unpacked(m, NULL). */
int fy_manifest_read(struct fy_repo *r, const uint8_t id[FY_SNAP_ID_LEN], Ferry__V1__Manifest **m,
		     char *err, size_t errlen);
/* What fy_manifest_read does with the object once read (objlen bytes):
 * open, decode and verify the manifest of snapshot id. */
int fy_manifest_decode(const struct fy_repo *r, const uint8_t id[FY_SNAP_ID_LEN], void *obj, size_t objlen,
		       Ferry__V1__Manifest **m, char *err, size_t errlen);
/* All snapshot ids in the repository (malloc'd array of n * 16 bytes).  A
 * snapshots/ folder that cannot be listed is an error (one line in err). */
int fy_snapshot_ids(struct fy_repo *r, uint8_t **ids, size_t *n, char *err, size_t errlen);
/* The newest readable snapshot (of volume, or of any volume when NULL); -ENOENT if none.
 * With keep, *keep (NULL on entry) receives its decoded manifest, to free. */
int fy_snapshot_newest(struct fy_repo *r, const char *volume, uint8_t id[FY_SNAP_ID_LEN],
		       Ferry__V1__Manifest **keep, char *err, size_t errlen);
/* Resolve a full id or a unique hex prefix (>= 4 digits) or "latest" among
 * every snapshot: fy_snapshot_select (ferry.h) without a filter. */
int fy_snapshot_resolve(struct fy_repo *r, const char *arg, uint8_t id[FY_SNAP_ID_LEN], char *err, size_t errlen);

#endif
