/* Repository layer: init/open and keys, the sealed-object framing, manifests,
 * snapshot id resolution, and the chunk id set. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry.h"
#include "idset.h"

static char dir[256];
static const struct fy_secret pw = { .password = "unit test password" };

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ferry-test-repo.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static struct fy_init_opts default_opts(void)
{
	return (struct fy_init_opts){ .chunk_size = 1u << 20,
				      .compression = FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE,
				      .level = 1,
				      .scrypt_log2n = 10 };
}

static struct fy_repo *make_repo(const char *sub, const struct fy_init_opts *o, const struct fy_secret *sec)
{
	char url[300], err[512];
	struct fy_repo *r = NULL;

	snprintf(url, sizeof(url), "%s/%s", dir, sub);
	assert_int_equal(fy_repo_init(url, o, sec, err, sizeof(err)), 0);
	assert_int_equal(fy_repo_open(url, sec, &r, err, sizeof(err)), 0);
	return r;
}

static void test_init_open_keys(void **state)
{
	struct fy_init_opts o = default_opts();
	char url[300], err[512];
	struct fy_repo *r = NULL;
	const struct fy_secret wrong = { .password = "not the password" }, none = { 0 };
	uint8_t raw[32];

	(void)state;
	snprintf(url, sizeof(url), "%s/keys", dir);
	assert_int_equal(fy_repo_open(url, &pw, &r, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no repository"));
	assert_int_equal(fy_repo_init(url, &o, &none, err, sizeof(err)), -ENOKEY);
	const struct fy_secret empty = { .password = "" };

	assert_int_equal(fy_repo_init(url, &o, &empty, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "password is empty"));
	assert_int_equal(fy_repo_init(url, &o, &pw, err, sizeof(err)), 0);
	assert_int_equal(fy_repo_init(url, &o, &pw, err, sizeof(err)), -EEXIST);
	assert_int_equal(fy_repo_open(url, &wrong, &r, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "wrong password"));
	assert_int_equal(fy_repo_open(url, &none, &r, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "FERRY_PASSWORD"));
	assert_int_equal(fy_repo_open(url, &pw, &r, err, sizeof(err)), 0);
	assert_int_equal(r->chunk_size, 1u << 20);
	assert_true(r->encrypted);
	fy_repo_close(r);

	/* A raw key repository opens with that key only. */
	memset(raw, 0x5a, sizeof(raw));
	const struct fy_secret rk = { .raw_key = raw };

	snprintf(url, sizeof(url), "%s/raw", dir);
	assert_int_equal(fy_repo_init(url, &o, &rk, err, sizeof(err)), 0);
	assert_int_equal(fy_repo_open(url, &pw, &r, err, sizeof(err)), -EACCES);
	raw[0] ^= 1;
	assert_int_equal(fy_repo_open(url, &rk, &r, err, sizeof(err)), -EACCES);
	raw[0] ^= 1;
	assert_int_equal(fy_repo_open(url, &rk, &r, err, sizeof(err)), 0);
	fy_repo_close(r);

	/* Bad parameters. */
	o.chunk_size = 3u << 20;
	snprintf(url, sizeof(url), "%s/bad", dir);
	assert_int_equal(fy_repo_init(url, &o, &pw, err, sizeof(err)), -EINVAL);
	o.chunk_size = 32u << 20;
	assert_int_equal(fy_repo_init(url, &o, &pw, err, sizeof(err)), -EINVAL);
}

/* A key object whose scrypt parameters exceed what init writes (here r = 32,
 * which at N = 2^22 would be 16 GiB per open) is ignored, and the error
 * says so; the same object with r = 8 opens. */
static void rewrite_key(const char *url, unsigned r, unsigned log2n)
{
	char kdir[400], path[700];
	DIR *d;
	struct dirent *de;
	FILE *f;
	uint8_t buf[4096];
	size_t len;

	snprintf(kdir, sizeof(kdir), "%s/keys", url);
	assert_non_null(d = opendir(kdir));
	while ((de = readdir(d)) && de->d_name[0] == '.')
		;
	assert_non_null(de);
	snprintf(path, sizeof(path), "%s/%s", kdir, de->d_name);
	closedir(d);
	assert_non_null(f = fopen(path, "rb"));
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	Ferry__V1__KeyFile *kf = ferry__v1__key_file__unpack(NULL, len, buf);

	assert_non_null(kf);
	kf->scrypt_r = r;
	kf->scrypt_log2_n = log2n;
	len = ferry__v1__key_file__pack(kf, buf);
	ferry__v1__key_file__free_unpacked(kf, NULL);
	assert_non_null(f = fopen(path, "wb"));
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
}

static void test_key_cost_bounded(void **state)
{
	struct fy_init_opts o = default_opts();
	char url[300], err[512];
	struct fy_repo *r = NULL;

	(void)state;
	o.scrypt_log2n = 10;
	snprintf(url, sizeof(url), "%s/cost", dir);
	assert_int_equal(fy_repo_init(url, &o, &pw, err, sizeof(err)), 0);
	rewrite_key(url, 32, 10);
	assert_int_equal(fy_repo_open(url, &pw, &r, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "beyond what ferry writes (scrypt N=2^10 r=32 p=1)"));
	rewrite_key(url, 8, 10);
	assert_int_equal(fy_repo_open(url, &pw, &r, err, sizeof(err)), 0);
	fy_repo_close(r);
}

/* Creators racing: threads released together by a barrier all find no
 * config (the key derivation between that check and the writes is slower
 * than the check), then race to write it.  One wins; every other one gets
 * -EEXIST and opens the winner's repository with its password. */
#define RACERS 6
struct racer {
	pthread_barrier_t *go;
	const char *url;
	int rc;
	char err[512];
	uint8_t repo_id[16];
	int open_rc;
};

static void *race_init(void *arg)
{
	struct racer *r = arg;
	struct fy_init_opts o = default_opts();
	struct fy_repo *repo = NULL;

	pthread_barrier_wait(r->go);
	r->rc = fy_repo_init(r->url, &o, &pw, r->err, sizeof(r->err));
	r->open_rc = fy_repo_open(r->url, &pw, &repo, r->err, sizeof(r->err));
	if (r->open_rc == 0)
		memcpy(r->repo_id, repo->repo_id, sizeof(r->repo_id));
	fy_repo_close(repo);
	return NULL;
}

static void test_init_race(void **state)
{
	struct racer rs[RACERS];
	pthread_t t[RACERS];
	pthread_barrier_t go;
	char url[300], keys[320];
	int won = 0, nkeys = 0;

	(void)state;
	snprintf(url, sizeof(url), "%s/race", dir);
	pthread_barrier_init(&go, NULL, RACERS);
	for (int i = 0; i < RACERS; i++) {
		rs[i] = (struct racer){ .go = &go, .url = url };
		assert_int_equal(pthread_create(&t[i], NULL, race_init, &rs[i]), 0);
	}
	for (int i = 0; i < RACERS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < RACERS; i++) {
		if (rs[i].rc == 0)
			won++;
		else
			assert_int_equal(rs[i].rc, -EEXIST);
		assert_int_equal(rs[i].open_rc, 0);
		assert_memory_equal(rs[i].repo_id, rs[0].repo_id, 16);
	}
	assert_int_equal(won, 1);
	snprintf(keys, sizeof(keys), "%s/keys", url);
	DIR *d = opendir(keys);

	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));)
		nkeys += e->d_name[0] != '.';
	closedir(d);
	assert_int_equal(nkeys, 1);
}

static void fill(uint8_t *p, size_t n, unsigned seed, bool text)
{
	srand(seed);
	for (size_t i = 0; i < n; i++)
		p[i] = text ? (uint8_t)("abcdefgh \n"[rand() % 10]) : (uint8_t)rand();
}

static void roundtrip_objects(struct fy_repo *r)
{
	size_t n = 300000;
	uint8_t *plain = malloc(n), *out = malloc(FY_OBJ_MAX(n)), *scratch = malloc(n), *back = malloc(n);
	uint8_t name[FY_ID_LEN], other[FY_ID_LEN];
	char why[160];

	memset(name, 7, sizeof(name));
	memset(other, 8, sizeof(other));
	for (int text = 0; text < 2; text++) {
		fill(plain, n, 42 + text, text);
		uint32_t crc = fy_crc32c(0, plain, n);
		ssize_t len = fy_obj_seal(r, "FYC1", name, FY_ID_LEN, plain, n, crc, 1, out);

		assert_true(len > 0);
		if (text && r->compression)
			assert_true((size_t)len < n / 2); /* text compresses */
		assert_int_equal(fy_obj_open(r, "FYC1", name, FY_ID_LEN, out, (size_t)len, back, n, scratch, why,
					     sizeof(why)),
				 (ssize_t)n);
		assert_memory_equal(plain, back, n);
		/* Another name (a swapped object) fails. */
		assert_int_equal(fy_obj_open(r, "FYC1", other, FY_ID_LEN, out, (size_t)len, back, n, scratch, why,
					     sizeof(why)),
				 r->encrypted ? -EBADMSG : (ssize_t)n);
		/* Another magic fails. */
		assert_int_equal(fy_obj_open(r, "FYM1", name, FY_ID_LEN, out, (size_t)len, back, n, scratch, why,
					     sizeof(why)),
				 -EBADMSG);
		/* A flipped bit anywhere fails, naming a reason. */
		for (size_t at = 0; at < (size_t)len; at += (at < 64 ? 1 : 4099)) {
			out[at] ^= 0x10;
			why[0] = '\0';
			assert_int_equal(fy_obj_open(r, "FYC1", name, FY_ID_LEN, out, (size_t)len, back, n, scratch,
						     why, sizeof(why)),
					 -EBADMSG);
			assert_true(why[0] != '\0');
			out[at] ^= 0x10;
		}
		/* Truncated fails. */
		assert_int_equal(fy_obj_open(r, "FYC1", name, FY_ID_LEN, out, (size_t)len - 1, back, n, scratch,
					     why, sizeof(why)),
				 -EBADMSG);
		assert_non_null(strstr(why, "truncated"));
	}
	free(plain);
	free(out);
	free(scratch);
	free(back);
}

static void test_objects_encrypted(void **state)
{
	struct fy_init_opts o = default_opts();
	struct fy_repo *r = make_repo("obj-enc", &o, &pw);

	(void)state;
	roundtrip_objects(r);
	fy_repo_close(r);
}

static void test_objects_plain(void **state)
{
	struct fy_init_opts o = default_opts();
	const struct fy_secret none = { 0 }, plain = { .insecure_no_encryption = true };
	const struct fy_secret pw_plain = { .password = pw.password, .insecure_no_encryption = true };
	char url[300], err[512];
	struct fy_repo *r;

	(void)state;
	o.insecure_no_encryption = true;
	snprintf(url, sizeof(url), "%s/obj-plain", dir);
	assert_int_equal(fy_repo_init(url, &o, &pw, err, sizeof(err)), -EINVAL); /* a password contradicts it */
	assert_int_equal(fy_repo_init(url, &o, &none, err, sizeof(err)), 0);
	/* An unencrypted repository opens only when the caller says so, and
	 * never for one who holds a password or key. */
	assert_int_equal(fy_repo_open(url, &none, &r, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "needs --insecure-no-encryption"));
	assert_int_equal(fy_repo_open(url, &pw, &r, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "yet a password or key was given"));
	assert_int_equal(fy_repo_open(url, &pw_plain, &r, err, sizeof(err)), -EPERM);
	assert_int_equal(fy_repo_open(url, &plain, &r, err, sizeof(err)), 0);

	assert_false(r->encrypted);
	roundtrip_objects(r);
	fy_repo_close(r);
	o.insecure_no_encryption = false;
	o.compression = FERRY__V1__COMPRESSION__COMPRESSION_NONE;
	r = make_repo("obj-nocomp", &o, &pw);
	roundtrip_objects(r);
	fy_repo_close(r);
	/* and an encrypted one does not open with the flag instead of its password */
	snprintf(url, sizeof(url), "%s/obj-nocomp", dir);
	assert_int_equal(fy_repo_open(url, &plain, &r, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "is encrypted: give its password or key"));
	assert_int_equal(fy_repo_open(url, &pw_plain, &r, err, sizeof(err)), 0);
	fy_repo_close(r);
}

static void test_manifests(void **state)
{
	struct fy_init_opts o = default_opts();
	struct fy_repo *r = make_repo("man", &o, &pw);
	Ferry__V1__Manifest m = FERRY__V1__MANIFEST__INIT, *back = NULL;
	Ferry__V1__Manifest__LabelsEntry e = FERRY__V1__MANIFEST__LABELS_ENTRY__INIT, *ep = &e;
	uint8_t id[FY_SNAP_ID_LEN], id2[FY_SNAP_ID_LEN], got[FY_SNAP_ID_LEN], ids[3 * FY_ID_LEN];
	uint32_t crcs[3] = { 1, 2, 3 };
	char err[512], hex[33];

	(void)state;
	memset(id, 0xab, sizeof(id));
	memset(ids, 0x11, sizeof(ids));
	m.snapshot_id.data = id;
	m.snapshot_id.len = sizeof(id);
	m.volume = "vol";
	m.size = 2 * (1u << 20) + 5;
	m.chunk_size = 1u << 20;
	m.created_unix_nano = 1000;
	m.chunk_ids.data = ids;
	m.chunk_ids.len = sizeof(ids);
	m.block_crc32c = crcs;
	m.n_block_crc32c = 3;
	e.key = "app";
	e.value = "db";
	m.labels = &ep;
	m.n_labels = 1;
	assert_int_equal(fy_manifest_write(r, &m, err, sizeof(err)), 0);
	assert_int_equal(fy_manifest_read(r, id, &back, err, sizeof(err)), 0);
	assert_string_equal(back->volume, "vol");
	assert_int_equal(back->size, m.size);
	assert_int_equal(back->n_labels, 1);
	assert_string_equal(back->labels[0]->value, "db");
	assert_memory_equal(back->chunk_ids.data, ids, sizeof(ids));
	assert_int_equal(back->block_crc32c[2], 3);
	ferry__v1__manifest__free_unpacked(back, NULL);

	/* A block table that does not match the size is refused on read. */
	memcpy(id2, id, sizeof(id2));
	id2[0] = 0xac;
	m.snapshot_id.data = id2;
	m.size = 5u << 20;
	m.created_unix_nano = 2000;
	assert_int_equal(fy_manifest_write(r, &m, err, sizeof(err)), 0);
	assert_int_equal(fy_manifest_read(r, id2, &back, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "block table"));

	/* Resolution: full id, prefix, ambiguous prefix, latest, unknown. */
	fy_hex(id, sizeof(id), hex);
	assert_int_equal(fy_snapshot_resolve(r, hex, got, err, sizeof(err)), 0);
	assert_memory_equal(got, id, sizeof(id));
	assert_int_equal(fy_snapshot_resolve(r, "abab", got, err, sizeof(err)), 0);
	assert_int_equal(fy_snapshot_resolve(r, "a", got, err, sizeof(err)), -EINVAL);
	assert_int_equal(fy_snapshot_resolve(r, "ffff", got, err, sizeof(err)), -ENOENT);
	assert_int_equal(fy_snapshot_resolve(r, "../x", got, err, sizeof(err)), -EINVAL);
	/* latest skips the unreadable one (created later) and picks the readable. */
	assert_int_equal(fy_snapshot_resolve(r, "latest", got, err, sizeof(err)), 0);
	assert_memory_equal(got, id, sizeof(id));
	fy_repo_close(r);
}

static void test_idset(void **state)
{
	struct fy_idset s;
	uint8_t id[32];
	uint32_t v = 0;
	size_t pos = 0, seen = 0;

	(void)state;
	assert_int_equal(fy_idset_init(&s, 10), 0);
	for (uint32_t i = 0; i < 100000; i++) {
		memset(id, 0, sizeof(id));
		memcpy(id, &i, sizeof(i));
		id[31] = 1;
		assert_int_equal(fy_idset_add(&s, id, i, NULL), 1);
	}
	assert_int_equal(s.n, 100000);
	uint32_t k = 777;

	memset(id, 0, sizeof(id));
	memcpy(id, &k, sizeof(k));
	id[31] = 1;
	assert_int_equal(fy_idset_add(&s, id, 0, &v), 0);
	assert_int_equal(v, 777);
	assert_true(fy_idset_has(&s, id));
	id[31] = 2;
	assert_false(fy_idset_has(&s, id));
	while (fy_idset_next(&s, &pos, NULL))
		seen++;
	assert_int_equal(seen, 100000);
	fy_idset_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_open_keys),
		cmocka_unit_test(test_key_cost_bounded),
		cmocka_unit_test(test_init_race),
		cmocka_unit_test(test_objects_encrypted),
		cmocka_unit_test(test_objects_plain),
		cmocka_unit_test(test_manifests),
		cmocka_unit_test(test_idset),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
