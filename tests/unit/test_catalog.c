/* The agent's catalog (agent/catalog.c): every call, its errors, paging,
 * persistence, a schema from the future, threads sharing one catalog, and a
 * writer killed with SIGKILL at a random point.  The database is inspected
 * with SQLite directly where the interface cannot show a thing. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "catalog.h"

static char dir[256];
static char dbpath[300];
static struct fy_cat *cat;
static char err[512];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ferry-test-catalog.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(dbpath, sizeof(dbpath), "%s/state.db", dir);
	err[0] = '\0';
	assert_int_equal(fy_cat_open(dir, &cat, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	fy_cat_close(cat);
	cat = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void reopen(void)
{
	fy_cat_close(cat);
	cat = NULL;
	assert_int_equal(fy_cat_open(dir, &cat, err, sizeof(err)), 0);
}

static void mkvol(struct fy_cat_volume *v, const char *id, const char *name)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->id, sizeof(v->id), "%s", id);
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->size = 1ull << 30;
	v->access = FY_ACCESS_MOUNT;
	snprintf(v->fstype, sizeof(v->fstype), "xfs");
	v->created_ns = 1700000000123456789;
}

static void mksnap(struct fy_cat_snapshot *s, const char *id, const char *name, const char *vol, int64_t created)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->volume_id, sizeof(s->volume_id), "%s", vol);
	s->size = 1ull << 30;
	s->created_ns = created;
	s->state = FY_SNAP_CUT;
	s->local = true;
	s->reflinked = true;
}

static void put_snap(const char *id, const char *vol, int64_t created)
{
	struct fy_cat_snapshot s;
	char name[80];

	snprintf(name, sizeof(name), "name-%s", id);
	mksnap(&s, id, name, vol, created);
	assert_int_equal(fy_cat_snap_put(cat, &s, NULL, 0, err, sizeof(err)), 0);
}

static void assert_vol_equal(const struct fy_cat_volume *a, const struct fy_cat_volume *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->name, b->name);
	assert_true(a->size == b->size);
	assert_int_equal(a->access, b->access);
	assert_string_equal(a->fstype, b->fstype);
	assert_string_equal(a->source_snapshot, b->source_snapshot);
	assert_string_equal(a->source_volume, b->source_volume);
	assert_true(a->created_ns == b->created_ns);
}

static void assert_snap_equal(const struct fy_cat_snapshot *a, const struct fy_cat_snapshot *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->volume_id, b->volume_id);
	assert_true(a->size == b->size);
	assert_true(a->created_ns == b->created_ns);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->local, b->local);
	assert_int_equal(a->reflinked, b->reflinked);
	assert_string_equal(a->parent_id, b->parent_id);
	assert_string_equal(a->repo_snapshot, b->repo_snapshot);
	assert_string_equal(a->error, b->error);
	assert_true(a->bytes_uploaded == b->bytes_uploaded);
	assert_true(a->ready_ns == b->ready_ns);
}

/* One integer from a query on a second connection of our own. */
static int64_t sql_int(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v;

	assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return v;
}

static void sql_text(const char *sql, char *out, size_t len)
{
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void sql_exec(const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static unsigned file_mode(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return sb.st_mode & 07777;
}

/* ---- open ---- */

static void test_open(void **state)
{
	struct fy_cat_volume v;
	struct fy_cat *c2 = (struct fy_cat *)&v;
	char path[400], mode[32];

	(void)state;
	mkvol(&v, "vol-1", "pvc-1");
	assert_int_equal(fy_cat_volume_put(cat, &v, err, sizeof(err)), 0);
	assert_int_equal(file_mode(dbpath), 0600);
	snprintf(path, sizeof(path), "%s-wal", dbpath);
	assert_int_equal(file_mode(path), 0600);
	snprintf(path, sizeof(path), "%s-shm", dbpath);
	assert_int_equal(file_mode(path), 0600);

	sql_text("PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	assert_int_equal(sql_int("PRAGMA user_version"), 1);
	/* A snapshot outlives its volume and its parent: no foreign key there. */
	assert_int_equal(sql_int("SELECT count(*) FROM pragma_foreign_key_list('snapshots')"), 0);
	assert_int_equal(sql_int("SELECT count(*) FROM pragma_foreign_key_list('snapshot_params')"
				 " WHERE \"table\" = 'snapshots' AND on_delete = 'CASCADE'"), 1);
	assert_int_equal(sql_int("SELECT count(*) FROM pragma_foreign_key_list('jobs')"
				 " WHERE \"table\" = 'snapshots' AND on_delete = 'CASCADE'"), 1);
	assert_int_equal(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND"
				 " name IN ('snapshots_volume', 'snapshots_created')"), 2);
	/* A state.db someone loosened is tightened again. */
	fy_cat_close(cat);
	cat = NULL;
	assert_int_equal(chmod(dbpath, 0644), 0);
	reopen();
	assert_int_equal(file_mode(dbpath), 0600);

	/* A directory that is not there; a state.db that is not a database. */
	snprintf(path, sizeof(path), "%s/absent", dir);
	assert_int_equal(fy_cat_open(path, &c2, err, sizeof(err)), -ENOENT);
	assert_null(c2);
	assert_non_null(strstr(err, "absent/state.db"));
	snprintf(path, sizeof(path), "%s/junk", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	{
		char f[450];
		FILE *fp;

		snprintf(f, sizeof(f), "%s/state.db", path);
		assert_non_null(fp = fopen(f, "w"));
		for (int i = 0; i < 200; i++)
			fputs("this is not an SQLite database, only text. ", fp);
		fclose(fp);
	}
	c2 = (struct fy_cat *)&v;
	assert_int_equal(fy_cat_open(path, &c2, err, sizeof(err)), -EIO);
	assert_null(c2);
	assert_non_null(strstr(err, "not a database"));
}

static void test_future_version(void **state)
{
	struct fy_cat_volume v;

	(void)state;
	mkvol(&v, "vol-1", "pvc-1");
	assert_int_equal(fy_cat_volume_put(cat, &v, err, sizeof(err)), 0);
	fy_cat_close(cat);
	cat = NULL;
	sql_exec("PRAGMA user_version = 99");

	err[0] = '\0';
	assert_int_equal(fy_cat_open(dir, &cat, err, sizeof(err)), -EPROTO);
	assert_null(cat);
	assert_non_null(strstr(err, "99"));
	assert_non_null(strstr(err, "newer"));
	assert_int_equal(sql_int("PRAGMA user_version"), 99);   /* left as it was */

	sql_exec("PRAGMA user_version = 1");
	reopen();
	assert_int_equal(fy_cat_volume_get(cat, "vol-1", &v), 0);
}

/* ---- volumes ---- */

static void test_volumes(void **state)
{
	struct fy_cat_volume a, b, got, *all;
	size_t n;

	(void)state;
	mkvol(&a, "vol-b", "pvc-b");
	a.size = UINT64_MAX;   /* above INT64_MAX: stored as its bits */
	snprintf(a.source_snapshot, sizeof(a.source_snapshot), "snap-x");
	mkvol(&b, "vol-a", "pvc-a");
	b.access = FY_ACCESS_BLOCK;
	b.fstype[0] = '\0';
	snprintf(b.source_volume, sizeof(b.source_volume), "vol-b");
	assert_int_equal(fy_cat_volume_put(cat, &a, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_volume_put(cat, &b, err, sizeof(err)), 0);

	assert_int_equal(fy_cat_volume_get(cat, "vol-b", &got), 0);
	assert_vol_equal(&got, &a);
	assert_int_equal(fy_cat_volume_by_name(cat, "pvc-a", &got), 0);
	assert_vol_equal(&got, &b);
	assert_int_equal(fy_cat_volume_get(cat, "vol-none", &got), -ENOENT);
	assert_int_equal(fy_cat_volume_by_name(cat, "pvc-none", &got), -ENOENT);

	/* Taken id, taken name: -EEXIST, and err says which. */
	mkvol(&got, "vol-a", "pvc-other");
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "volumes.id"));
	mkvol(&got, "vol-other", "pvc-a");
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "volumes.name"));

	/* Fields that do not end inside their arrays are refused, never cut. */
	mkvol(&got, "vol-long", "pvc-long");
	memset(got.name, 'n', sizeof(got.name));
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), -ENAMETOOLONG);
	mkvol(&got, "vol-long", "pvc-long");
	memset(got.id, 'i', sizeof(got.id));
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), -ENAMETOOLONG);
	mkvol(&got, "vol-long", "pvc-long");
	memset(got.fstype, 'f', sizeof(got.fstype));
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), -ENAMETOOLONG);
	assert_non_null(strstr(err, "fstype longer than 15 bytes"));
	mkvol(&got, "vol-long", "pvc-long");
	memset(got.source_volume, 'v', sizeof(got.source_volume));
	assert_int_equal(fy_cat_volume_update(cat, &got, err, sizeof(err)), -ENAMETOOLONG);
	/* The longest that fits does go in. */
	mkvol(&got, "vol-long", "pvc-long");
	memset(got.name, 'n', FY_NAME_MAX);
	memset(got.id, 'i', FY_ID_MAX);
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_volume_get(cat, got.id, &b), 0);
	assert_int_equal(strlen(b.name), FY_NAME_MAX);
	assert_int_equal(fy_cat_volume_delete(cat, got.id, err, sizeof(err)), 0);
	mkvol(&b, "vol-a", "pvc-a");
	b.access = FY_ACCESS_BLOCK;
	b.fstype[0] = '\0';
	snprintf(b.source_volume, sizeof(b.source_volume), "vol-b");
	/* Nonsense values. */
	mkvol(&got, "vol-bad", "pvc-bad");
	got.access = 7;
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), -EINVAL);
	mkvol(&got, "", "pvc-bad");
	assert_int_equal(fy_cat_volume_put(cat, &got, err, sizeof(err)), -EINVAL);

	/* Update: every field but the id; a taken name; a missing id. */
	a.size = 5ull << 30;
	snprintf(a.name, sizeof(a.name), "pvc-b2");
	a.created_ns = -5;
	a.source_snapshot[0] = '\0';
	assert_int_equal(fy_cat_volume_update(cat, &a, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_volume_get(cat, "vol-b", &got), 0);
	assert_vol_equal(&got, &a);
	assert_int_equal(fy_cat_volume_by_name(cat, "pvc-b", &got), -ENOENT);
	snprintf(a.name, sizeof(a.name), "pvc-a");
	assert_int_equal(fy_cat_volume_update(cat, &a, err, sizeof(err)), -EEXIST);
	mkvol(&got, "vol-none", "pvc-none");
	assert_int_equal(fy_cat_volume_update(cat, &got, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "volume vol-none: no such volume"));

	/* The list, by id, holds exactly the two. */
	assert_int_equal(fy_cat_volumes(cat, &all, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(all[0].id, "vol-a");
	assert_vol_equal(&all[0], &b);
	assert_string_equal(all[1].id, "vol-b");
	assert_string_equal(all[1].name, "pvc-b2");
	free(all);

	/* A row written by something else that does not fit the struct: -EIO,
	 * not a cut string (the catalog logs why on stderr). */
	sql_exec("UPDATE volumes SET fstype = 'a-filesystem-with-a-long-name' WHERE id = 'vol-a'");
	assert_int_equal(fy_cat_volume_get(cat, "vol-a", &got), -EIO);
	all = (struct fy_cat_volume *)&got;
	assert_int_equal(fy_cat_volumes(cat, &all, &n), -EIO);
	assert_null(all);
	sql_exec("UPDATE volumes SET fstype = '' WHERE id = 'vol-a'");
	assert_int_equal(fy_cat_volume_get(cat, "vol-a", &got), 0);

	assert_int_equal(fy_cat_volume_delete(cat, "vol-a", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_volume_get(cat, "vol-a", &got), -ENOENT);
	assert_int_equal(fy_cat_volume_delete(cat, "vol-a", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_volume_delete(cat, "vol-b", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_volumes(cat, &all, &n), 0);
	assert_int_equal(n, 0);
	free(all);
}

/* ---- snapshots ---- */

static void test_snapshots(void **state)
{
	struct fy_cat_snapshot s, got;
	struct fy_cat_volume v;
	struct fy_kv *kv;
	size_t n;

	(void)state;
	mkvol(&v, "vol-1", "pvc-1");
	assert_int_equal(fy_cat_volume_put(cat, &v, err, sizeof(err)), 0);
	mksnap(&s, "snap-1", "vs-1", "vol-1", 1000);
	s.size = UINT64_MAX;
	snprintf(s.parent_id, sizeof(s.parent_id), "snap-0");
	assert_int_equal(fy_cat_snap_put(cat, &s, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_get(cat, "snap-1", &got), 0);
	assert_snap_equal(&got, &s);
	assert_int_equal(fy_cat_snap_by_name(cat, "vs-1", &got), 0);
	assert_snap_equal(&got, &s);
	assert_int_equal(fy_cat_snap_get(cat, "snap-none", &got), -ENOENT);
	assert_int_equal(fy_cat_snap_by_name(cat, "vs-none", &got), -ENOENT);

	/* No parameters: none come back, and that is not -ENOENT. */
	kv = (struct fy_kv *)&got;
	n = 99;
	assert_int_equal(fy_cat_snap_params(cat, "snap-1", &kv, &n), 0);
	assert_int_equal(n, 0);
	assert_null(kv);
	assert_int_equal(fy_cat_snap_params(cat, "snap-none", &kv, &n), -ENOENT);

	/* Taken id, taken name. */
	mksnap(&got, "snap-1", "vs-other", "vol-1", 1);
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "snapshots.id"));
	mksnap(&got, "snap-other", "vs-1", "vol-1", 1);
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "snapshots.name"));

	/* Too long: refused whole. */
	mksnap(&got, "snap-long", "vs-long", "vol-1", 1);
	memset(got.error, 'e', sizeof(got.error));
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), -ENAMETOOLONG);
	assert_non_null(strstr(err, "error longer than 511 bytes"));
	mksnap(&got, "snap-long", "vs-long", "vol-1", 1);
	memset(got.repo_snapshot, 'r', sizeof(got.repo_snapshot));
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), -ENAMETOOLONG);
	mksnap(&got, "snap-long", "vs-long", "vol-1", 1);
	memset(got.volume_id, 'v', sizeof(got.volume_id));
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), -ENAMETOOLONG);
	mksnap(&got, "snap-long", "vs-long", "vol-1", 1);
	memset(got.parent_id, 'p', sizeof(got.parent_id));
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), -ENAMETOOLONG);
	mksnap(&got, "snap-long", "vs-long", "vol-1", 1);
	memset(got.name, 'n', sizeof(got.name));
	assert_int_equal(fy_cat_snap_update(cat, &got, err, sizeof(err)), -ENAMETOOLONG);
	assert_int_equal(fy_cat_snap_get(cat, "snap-long", &got), -ENOENT);
	mksnap(&got, "snap-bad", "vs-bad", "vol-1", 1);
	got.state = 0;
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), -EINVAL);

	/* Update: the upload finished. */
	s.state = FY_SNAP_READY;
	s.local = false;
	s.reflinked = false;
	memset(s.repo_snapshot, 'a', 32);
	memset(s.error, 'x', sizeof(s.error) - 1);
	s.bytes_uploaded = 123456789012345ull;
	s.ready_ns = 2000;
	assert_int_equal(fy_cat_snap_update(cat, &s, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_get(cat, "snap-1", &got), 0);
	assert_snap_equal(&got, &s);
	mksnap(&got, "snap-none", "vs-none", "vol-1", 1);
	assert_int_equal(fy_cat_snap_update(cat, &got, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "snapshot snap-none: no such snapshot"));
	mksnap(&got, "snap-2", "vs-2", "vol-1", 1);
	assert_int_equal(fy_cat_snap_put(cat, &got, NULL, 0, err, sizeof(err)), 0);
	snprintf(got.name, sizeof(got.name), "vs-1");
	assert_int_equal(fy_cat_snap_update(cat, &got, err, sizeof(err)), -EEXIST);

	/* A snapshot outlives its volume. */
	assert_int_equal(fy_cat_volume_delete(cat, "vol-1", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_get(cat, "snap-1", &got), 0);

	/* Delete: gone, and again is 0. */
	assert_int_equal(fy_cat_snap_delete(cat, "snap-2", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_get(cat, "snap-2", &got), -ENOENT);
	assert_int_equal(fy_cat_snap_delete(cat, "snap-2", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_get(cat, "snap-1", &got), 0);
}

static void test_params(void **state)
{
	/* In byte order, which is the order they come back in. */
	static const char *keys[] = { "csi.storage.k8s.io/volumesnapshot/name", "empty", "z", "ünïcödé/キー" };
	static const char *vals[] = { "daily-2024", "", "last", "值 ✓ — ok" };
	struct fy_kv in[4], bad[2], *kv;
	struct fy_cat_snapshot s, got;
	size_t n;

	(void)state;
	/* Given out of order; they come back by key. */
	for (int i = 0; i < 4; i++) {
		in[i].key = (char *)keys[3 - i];
		in[i].value = (char *)vals[3 - i];
	}
	mksnap(&s, "snap-p", "vs-p", "vol-1", 1);
	assert_int_equal(fy_cat_snap_put(cat, &s, in, 4, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_params(cat, "snap-p", &kv, &n), 0);
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++) {
		assert_string_equal(kv[i].key, keys[i]);
		assert_string_equal(kv[i].value, vals[i]);
	}
	fy_kv_free(kv, n);

	/* A key given twice: -EINVAL, and nothing of the snapshot stays. */
	bad[0] = (struct fy_kv){ "k", "1" };
	bad[1] = (struct fy_kv){ "k", "2" };
	mksnap(&s, "snap-q", "vs-q", "vol-1", 2);
	assert_int_equal(fy_cat_snap_put(cat, &s, bad, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "twice"));
	assert_int_equal(fy_cat_snap_get(cat, "snap-q", &got), -ENOENT);
	assert_int_equal(sql_int("SELECT count(*) FROM snapshot_params WHERE snapshot_id = 'snap-q'"), 0);
	bad[1] = (struct fy_kv){ "k2", NULL };
	assert_int_equal(fy_cat_snap_put(cat, &s, bad, 2, err, sizeof(err)), -EINVAL);
	/* A taken name with parameters: no parameter rows left behind either. */
	mksnap(&s, "snap-r", "vs-p", "vol-1", 2);
	assert_int_equal(fy_cat_snap_put(cat, &s, in, 4, err, sizeof(err)), -EEXIST);
	assert_int_equal(sql_int("SELECT count(*) FROM snapshot_params"), 4);

	/* Survive a reopen; go with the snapshot. */
	reopen();
	assert_int_equal(fy_cat_snap_params(cat, "snap-p", &kv, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(kv[3].key, keys[3]);
	assert_string_equal(kv[3].value, vals[3]);
	assert_string_equal(kv[1].value, "");
	fy_kv_free(kv, n);
	assert_int_equal(fy_cat_snap_delete(cat, "snap-p", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_params(cat, "snap-p", &kv, &n), -ENOENT);
	assert_int_equal(sql_int("SELECT count(*) FROM snapshot_params"), 0);
	fy_kv_free(NULL, 0);
}

/* ---- paging ---- */

#define NPAGE 25

/* Snapshot i: created at 1000 + i / 3 (three share each time, the id
 * breaks the tie), of vol-a when i is even, else vol-b.  Inserted in a
 * scrambled order, so the order comes from the query. */
static void put_page_set(void)
{
	for (int k = 0; k < NPAGE; k++) {
		int i = (k * 7) % NPAGE;
		char id[32];

		snprintf(id, sizeof(id), "snap-%02d", i);
		put_snap(id, i % 2 ? "vol-b" : "vol-a", 1000 + i / 3);
	}
}

static bool before(const struct fy_cat_snapshot *a, const struct fy_cat_snapshot *b)
{
	return a->created_ns < b->created_ns || (a->created_ns == b->created_ns && strcmp(a->id, b->id) < 0);
}

/* Page through with page size max; returns the number seen, checking order,
 * uniqueness and the more flags. */
static int walk(const char *vol, size_t max, int expect)
{
	struct fy_cat_snapshot last, *s;
	bool seen[NPAGE] = { false }, more = true;
	char cursor[FY_ID_MAX + 1] = "";
	int total = 0, pages = 0;

	memset(&last, 0, sizeof(last));
	last.created_ns = INT64_MIN;
	while (more) {
		size_t n;

		assert_int_equal(fy_cat_snaps(cat, vol, NULL, cursor, max, &s, &n, &more), 0);
		pages++;
		assert_true(n <= max);
		/* A page says "more" exactly when it is full and rows remain. */
		assert_int_equal(more, total + (int)n < expect);
		if (more)
			assert_int_equal(n, max);
		for (size_t j = 0; j < n; j++) {
			int i = atoi(s[j].id + 5);

			assert_true(before(&last, &s[j]));
			assert_false(seen[i]);
			seen[i] = true;
			if (vol)
				assert_string_equal(s[j].volume_id, vol);
			last = s[j];
		}
		total += (int)n;
		if (n)
			snprintf(cursor, sizeof(cursor), "%s", s[n - 1].id);
		free(s);
	}
	/* No empty last page, but one (empty) page when there is nothing. */
	assert_int_equal(pages, expect ? (expect + (int)max - 1) / (int)max : 1);
	return total;
}

static void test_paging(void **state)
{
	struct fy_cat_snapshot *s;
	size_t n;
	bool more;

	(void)state;
	put_page_set();
	/* 25 in pages of 7: 7, 7, 7, 4. */
	assert_int_equal(walk(NULL, 7, NPAGE), NPAGE);
	/* An exact multiple: the fifth page of 5 says no more. */
	assert_int_equal(walk(NULL, 5, NPAGE), NPAGE);
	assert_int_equal(walk(NULL, 100, NPAGE), NPAGE);
	/* By volume: 13 even, 12 odd. */
	assert_int_equal(walk("vol-a", 4, 13), 13);
	assert_int_equal(walk("vol-b", 7, 12), 12);
	assert_int_equal(walk("vol-none", 7, 0), 0);

	/* All at once (max 0). */
	assert_int_equal(fy_cat_snaps(cat, NULL, NULL, NULL, 0, &s, &n, &more), 0);
	assert_int_equal(n, NPAGE);
	assert_false(more);
	for (size_t j = 1; j < n; j++)
		assert_true(before(&s[j - 1], &s[j]));
	assert_string_equal(s[0].id, "snap-00");
	assert_string_equal(s[NPAGE - 1].id, "snap-24");
	free(s);

	/* One by id; with its volume, another volume, and a cursor past it. */
	assert_int_equal(fy_cat_snaps(cat, "", "snap-13", "", 7, &s, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_false(more);
	assert_string_equal(s[0].id, "snap-13");
	free(s);
	assert_int_equal(fy_cat_snaps(cat, "vol-b", "snap-13", NULL, 0, &s, &n, &more), 0);
	assert_int_equal(n, 1);
	free(s);
	assert_int_equal(fy_cat_snaps(cat, "vol-a", "snap-13", NULL, 0, &s, &n, &more), 0);
	assert_int_equal(n, 0);
	free(s);
	assert_int_equal(fy_cat_snaps(cat, NULL, "snap-13", "snap-13", 0, &s, &n, &more), 0);
	assert_int_equal(n, 0);
	free(s);
	assert_int_equal(fy_cat_snaps(cat, NULL, "snap-13", "snap-12", 0, &s, &n, &more), 0);
	assert_int_equal(n, 1);
	free(s);
	assert_int_equal(fy_cat_snaps(cat, NULL, "snap-none", NULL, 0, &s, &n, &more), 0);
	assert_int_equal(n, 0);
	free(s);

	/* A cursor that names no snapshot, or one deleted since: -EINVAL. */
	s = (struct fy_cat_snapshot *)&n;
	assert_int_equal(fy_cat_snaps(cat, NULL, NULL, "snap-99", 7, &s, &n, &more), -EINVAL);
	assert_null(s);
	assert_int_equal(n, 0);
	assert_int_equal(fy_cat_snaps(cat, NULL, NULL, "snap-06", 7, &s, &n, &more), 0);
	assert_int_equal(n, 7);
	assert_string_equal(s[0].id, "snap-07");
	assert_true(more);
	free(s);
	assert_int_equal(fy_cat_snap_delete(cat, "snap-06", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snaps(cat, NULL, NULL, "snap-06", 7, &s, &n, &more), -EINVAL);
	/* A cursor from the other volume still places the page. */
	assert_int_equal(fy_cat_snaps(cat, "vol-a", NULL, "snap-07", 2, &s, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_string_equal(s[0].id, "snap-08");
	assert_string_equal(s[1].id, "snap-10");
	free(s);
}

static void test_newest(void **state)
{
	struct fy_cat_snapshot s;

	(void)state;
	put_page_set();
	/* vol-a's latest time (1008) holds only snap-24; vol-b's (1007) snap-21 and snap-23. */
	assert_int_equal(fy_cat_snap_newest(cat, "vol-a", &s), 0);
	assert_string_equal(s.id, "snap-24");
	assert_int_equal(fy_cat_snap_newest(cat, "vol-b", &s), 0);
	assert_string_equal(s.id, "snap-23");
	/* Tie on time: the larger id. */
	put_snap("snap-23a", "vol-b", 1007);
	assert_int_equal(fy_cat_snap_newest(cat, "vol-b", &s), 0);
	assert_string_equal(s.id, "snap-23a");
	/* Time first, then id: an older time with a larger id loses. */
	put_snap("snap-zz", "vol-b", 5);
	assert_int_equal(fy_cat_snap_newest(cat, "vol-b", &s), 0);
	assert_string_equal(s.id, "snap-23a");
	assert_int_equal(fy_cat_snap_newest(cat, "vol-none", &s), -ENOENT);
}

static void test_children(void **state)
{
	struct fy_cat_snapshot s;
	struct fy_cat_volume v;
	size_t nv = 9, ns = 9;

	(void)state;
	put_snap("snap-p", "vol-1", 1);
	assert_int_equal(fy_cat_snap_children(cat, "snap-p", &nv, &ns), 0);
	assert_int_equal(nv, 0);
	assert_int_equal(ns, 0);
	for (int i = 0; i < 2; i++) {
		char id[16], name[16];

		snprintf(id, sizeof(id), "vol-c%d", i);
		snprintf(name, sizeof(name), "pvc-c%d", i);
		mkvol(&v, id, name);
		snprintf(v.source_snapshot, sizeof(v.source_snapshot), "snap-p");
		assert_int_equal(fy_cat_volume_put(cat, &v, err, sizeof(err)), 0);
	}
	mkvol(&v, "vol-plain", "pvc-plain");
	assert_int_equal(fy_cat_volume_put(cat, &v, err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++) {
		char id[16], name[16];

		snprintf(id, sizeof(id), "snap-c%d", i);
		snprintf(name, sizeof(name), "vs-c%d", i);
		mksnap(&s, id, name, "vol-1", 2 + i);
		snprintf(s.parent_id, sizeof(s.parent_id), "snap-p");
		assert_int_equal(fy_cat_snap_put(cat, &s, NULL, 0, err, sizeof(err)), 0);
	}
	assert_int_equal(fy_cat_snap_children(cat, "snap-p", &nv, &ns), 0);
	assert_int_equal(nv, 2);
	assert_int_equal(ns, 3);
	assert_int_equal(fy_cat_snap_children(cat, "snap-c0", &nv, &ns), 0);
	assert_int_equal(nv, 0);
	assert_int_equal(ns, 0);
	assert_int_equal(fy_cat_snap_children(cat, "snap-none", &nv, &ns), 0);
	assert_int_equal(nv + ns, 0);
	/* "" would count every volume without a source. */
	assert_int_equal(fy_cat_snap_children(cat, "", &nv, &ns), -EINVAL);
	/* The parent may go; the children keep naming it. */
	assert_int_equal(fy_cat_snap_delete(cat, "snap-p", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_children(cat, "snap-p", &nv, &ns), 0);
	assert_int_equal(nv, 2);
	assert_int_equal(ns, 3);
}

/* ---- jobs ---- */

static void test_jobs(void **state)
{
	struct fy_cat_job *j, u;
	size_t n;
	int64_t q1;

	(void)state;
	assert_int_equal(fy_cat_job_put(cat, "snap-none", err, sizeof(err)), -ENOENT);
	put_snap("snap-1", "vol-1", 1);
	put_snap("snap-2", "vol-1", 2);
	put_snap("snap-3", "vol-1", 3);
	assert_int_equal(fy_cat_jobs(cat, &j, &n), 0);
	assert_int_equal(n, 0);
	free(j);

	assert_int_equal(fy_cat_job_put(cat, "snap-2", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_jobs(cat, &j, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(j[0].snapshot_id, "snap-2");
	assert_int_equal(j[0].attempts, 0);
	assert_true(j[0].next_ns == 0);
	assert_true(j[0].queued_ns > 1700000000ll * 1000000000);
	q1 = j[0].queued_ns;
	free(j);

	/* A failure: attempts and backoff recorded; a second put changes nothing. */
	memset(&u, 0, sizeof(u));
	snprintf(u.snapshot_id, sizeof(u.snapshot_id), "snap-2");
	u.queued_ns = q1;
	u.attempts = 3;
	u.next_ns = q1 + 60000000000;
	assert_int_equal(fy_cat_job_update(cat, &u, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_job_put(cat, "snap-2", err, sizeof(err)), 0);
	usleep(2000);
	assert_int_equal(fy_cat_job_put(cat, "snap-1", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_job_put(cat, "snap-3", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_jobs(cat, &j, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(j[0].snapshot_id, "snap-2");   /* queued first */
	assert_true(j[0].queued_ns == q1);
	assert_int_equal(j[0].attempts, 3);
	assert_true(j[0].next_ns == q1 + 60000000000);
	assert_true(j[1].queued_ns <= j[2].queued_ns);
	assert_true(j[1].queued_ns > q1);
	free(j);

	snprintf(u.snapshot_id, sizeof(u.snapshot_id), "snap-none");
	assert_int_equal(fy_cat_job_update(cat, &u, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "snapshot snap-none: no upload job"));

	/* Survive a reopen. */
	reopen();
	assert_int_equal(fy_cat_jobs(cat, &j, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(j[0].attempts, 3);
	free(j);

	/* Delete; again is 0; a deleted snapshot takes its job along. */
	assert_int_equal(fy_cat_job_delete(cat, "snap-2", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_job_delete(cat, "snap-2", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_snap_delete(cat, "snap-1", err, sizeof(err)), 0);
	assert_int_equal(fy_cat_jobs(cat, &j, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(j[0].snapshot_id, "snap-3");
	free(j);
	/* The cascade in the schema, for a delete made without the catalog. */
	sql_exec("PRAGMA foreign_keys = ON; DELETE FROM snapshots WHERE id = 'snap-3'");
	assert_int_equal(fy_cat_jobs(cat, &j, &n), 0);
	assert_int_equal(n, 0);
	free(j);
}

/* ---- persistence ---- */

static void test_persistence(void **state)
{
	struct fy_kv kv[2] = { { "a", "1" }, { "b", "2" } }, *got;
	struct fy_cat_snapshot s, gs, *ps;
	struct fy_cat_volume v, gv;
	struct fy_cat_job *j;
	size_t n;
	bool more;

	(void)state;
	mkvol(&v, "vol-1", "pvc-1");
	assert_int_equal(fy_cat_volume_put(cat, &v, err, sizeof(err)), 0);
	mksnap(&s, "snap-1", "vs-1", "vol-1", 42);
	snprintf(s.error, sizeof(s.error), "upload: connection refused");
	s.state = FY_SNAP_FAILED;
	assert_int_equal(fy_cat_snap_put(cat, &s, kv, 2, err, sizeof(err)), 0);
	assert_int_equal(fy_cat_job_put(cat, "snap-1", err, sizeof(err)), 0);
	reopen();
	reopen();   /* and once more, on an existing schema */
	assert_int_equal(fy_cat_volume_get(cat, "vol-1", &gv), 0);
	assert_vol_equal(&gv, &v);
	assert_int_equal(fy_cat_snap_by_name(cat, "vs-1", &gs), 0);
	assert_snap_equal(&gs, &s);
	assert_int_equal(fy_cat_snap_params(cat, "snap-1", &got, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(got[1].value, "2");
	fy_kv_free(got, n);
	assert_int_equal(fy_cat_jobs(cat, &j, &n), 0);
	assert_int_equal(n, 1);
	free(j);
	assert_int_equal(fy_cat_snaps(cat, "vol-1", NULL, NULL, 1, &ps, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_false(more);
	assert_snap_equal(&ps[0], &s);
	free(ps);
}

/* ---- threads ---- */

#define NTHREADS 4
#define PER_THREAD 200

static void *writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	struct fy_cat_snapshot s, got, *page;
	char e[512];

	for (int i = 0; i < PER_THREAD; i++) {
		char id[32], name[32], val[16];
		struct fy_kv kv = { "thread", val };
		size_t n;
		bool more;

		snprintf(id, sizeof(id), "snap-t%d-%03d", t, i);
		snprintf(name, sizeof(name), "vs-t%d-%03d", t, i);
		snprintf(val, sizeof(val), "%d", t);
		mksnap(&s, id, name, t % 2 ? "vol-odd" : "vol-even", i);
		if (fy_cat_snap_put(cat, &s, &kv, 1, e, sizeof(e)) != 0) {
			fprintf(stderr, "thread %d: put %s: %s\n", t, id, e);
			return (void *)1;
		}
		if (fy_cat_snap_get(cat, id, &got) != 0 || strcmp(got.name, name) != 0)
			return (void *)2;
		if (i % 20 == 0) {
			if (fy_cat_snaps(cat, NULL, NULL, NULL, 10, &page, &n, &more) != 0)
				return (void *)3;
			free(page);
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t th[NTHREADS];
	struct fy_cat_snapshot *s;
	size_t n;
	bool more;

	(void)state;
	for (int t = 0; t < NTHREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
	for (int t = 0; t < NTHREADS; t++) {
		void *ret;

		assert_int_equal(pthread_join(th[t], &ret), 0);
		assert_null(ret);
	}
	assert_int_equal(fy_cat_snaps(cat, NULL, NULL, NULL, 0, &s, &n, &more), 0);
	assert_int_equal(n, NTHREADS * PER_THREAD);
	free(s);
	assert_int_equal(fy_cat_snaps(cat, "vol-odd", NULL, NULL, 0, &s, &n, &more), 0);
	assert_int_equal(n, NTHREADS / 2 * PER_THREAD);
	free(s);
	assert_int_equal(sql_int("SELECT count(*) FROM snapshot_params"), NTHREADS * PER_THREAD);
}

/* ---- kill -9 ---- */

struct progress {
	_Atomic int64_t done;    /* iterations the child finished (every call returned) */
};

/* Snapshot i of a round: put with two parameters, queued, and every fourth
 * deleted again, so the kill may land in any of the three transactions. */
static void kill_ids(int round, int64_t i, char *id, size_t idlen, char *name, size_t namelen)
{
	snprintf(id, idlen, "snap-r%d-%07lld", round, (long long)i);
	snprintf(name, namelen, "vs-r%d-%07lld", round, (long long)i);
}

static void __attribute__((noreturn)) kill_child(int round, struct progress *p)
{
	struct fy_cat *c;
	char e[512];

	if (fy_cat_open(dir, &c, e, sizeof(e)) != 0) {
		fprintf(stderr, "child: %s\n", e);
		_exit(2);
	}
	for (int64_t i = 0;; i++) {
		struct fy_cat_snapshot s;
		char id[32], name[32];

		kill_ids(round, i, id, sizeof(id), name, sizeof(name));
		struct fy_kv kv[2] = { { "id", id }, { "name", name } };

		mksnap(&s, id, name, "vol-k", round * 1000000000ll + i);
		if (fy_cat_snap_put(c, &s, kv, 2, e, sizeof(e)) != 0 || fy_cat_job_put(c, id, e, sizeof(e)) != 0 ||
		    (i % 4 == 3 && fy_cat_snap_delete(c, id, e, sizeof(e)) != 0)) {
			fprintf(stderr, "child: %s\n", e);
			_exit(3);
		}
		atomic_store(&p->done, i + 1);
	}
}

static void check_after_kill(int round, int64_t done)
{
	struct fy_cat_snapshot *s;
	struct fy_cat_job *j;
	char ok[64];
	size_t n, nj;
	bool more;
	int64_t present = 0, expect = 0;

	sql_text("PRAGMA integrity_check", ok, sizeof(ok));
	assert_string_equal(ok, "ok");
	assert_int_equal(sql_int("SELECT count(*) FROM pragma_foreign_key_check"), 0);
	assert_int_equal(sql_int("SELECT count(*) FROM snapshot_params WHERE snapshot_id NOT IN"
				 " (SELECT id FROM snapshots)"), 0);
	assert_int_equal(sql_int("SELECT count(*) FROM snapshots WHERE id NOT IN"
				 " (SELECT snapshot_id FROM snapshot_params GROUP BY snapshot_id HAVING count(*) = 2)"),
			 0);

	assert_int_equal(fy_cat_snaps(cat, "vol-k", NULL, NULL, 0, &s, &n, &more), 0);
	assert_int_equal(fy_cat_jobs(cat, &j, &nj), 0);
	for (size_t k = 0; k < n; k++) {
		char prefix[16], id[32], name[32];
		struct fy_kv *kv;
		size_t nkv;
		bool queued = false;

		snprintf(prefix, sizeof(prefix), "snap-r%d-", round);
		if (strncmp(s[k].id, prefix, strlen(prefix)) != 0)
			continue;
		int64_t i = atoll(s[k].id + strlen(prefix));

		/* Nothing past the iteration the kill interrupted; of the finished
		 * ones, no deleted one came back. */
		assert_true(i <= done);
		if (i < done)
			assert_true(i % 4 != 3);
		kill_ids(round, i, id, sizeof(id), name, sizeof(name));
		assert_string_equal(s[k].name, name);
		assert_int_equal(fy_cat_snap_params(cat, s[k].id, &kv, &nkv), 0);
		assert_int_equal(nkv, 2);
		assert_string_equal(kv[0].key, "id");
		assert_string_equal(kv[0].value, id);
		assert_string_equal(kv[1].key, "name");
		assert_string_equal(kv[1].value, name);
		fy_kv_free(kv, nkv);
		for (size_t m = 0; m < nj; m++)
			queued |= strcmp(j[m].snapshot_id, s[k].id) == 0;
		if (i < done) {
			assert_true(queued);
			present++;
		}
	}
	/* Every finished iteration is there. */
	for (int64_t i = 0; i < done; i++)
		expect += i % 4 != 3;
	assert_int_equal(present, expect);
	free(s);
	free(j);
}

static void test_kill9(void **state)
{
	struct progress *p;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	const char *env = getenv("FY_TEST_SEED");

	(void)state;
	if (env)
		seed = (unsigned)strtoul(env, NULL, 0);
	printf("kill -9 test: seed %u (FY_TEST_SEED=%u repeats it)\n", seed, seed);
	srand(seed);
	p = mmap(NULL, sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);

	for (int round = 1; round <= 6; round++) {
		int status;
		unsigned delay_us = (unsigned)(rand() % 60000);
		pid_t pid;

		/* No connection of ours open across the fork. */
		fy_cat_close(cat);
		cat = NULL;
		atomic_store(&p->done, 0);
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			kill_child(round, p);
		for (int w = 0; atomic_load(&p->done) < 1 && w < 30000; w++)
			usleep(1000);
		assert_true(atomic_load(&p->done) >= 1);
		usleep(delay_us);
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		int64_t done = atomic_load(&p->done);

		printf("round %d: killed %u us after the first commit, %lld iterations finished\n", round, delay_us,
		       (long long)done);
		/* Reopen as the restarted agent would; then look. */
		assert_int_equal(fy_cat_open(dir, &cat, err, sizeof(err)), 0);
		check_after_kill(round, done);
	}
	munmap(p, sizeof(*p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_future_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_volumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_children, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill9, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
