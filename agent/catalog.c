/* The agent's catalog in SQLite (catalog.h, docs/catalog.md). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "catalog.h"

#define CAT_VERSION 1        /* PRAGMA user_version of the schema below */
#define CAT_BUSY_MS 5000     /* another process holding the file (a second agent, the sqlite3 shell) */

/* Version 1.  snapshots.volume_id and parent_id are not foreign keys: a
 * snapshot outlives its volume and its parent. */
static const char schema_v1[] =
	"CREATE TABLE volumes ("
	" id TEXT PRIMARY KEY NOT NULL,"
	" name TEXT NOT NULL UNIQUE,"
	" size INTEGER NOT NULL,"
	" access INTEGER NOT NULL,"
	" fstype TEXT NOT NULL,"
	" source_snapshot TEXT NOT NULL,"
	" source_volume TEXT NOT NULL,"
	" created_ns INTEGER NOT NULL);"
	"CREATE TABLE snapshots ("
	" id TEXT PRIMARY KEY NOT NULL,"
	" name TEXT NOT NULL UNIQUE,"
	" volume_id TEXT NOT NULL,"
	" size INTEGER NOT NULL,"
	" created_ns INTEGER NOT NULL,"
	" state INTEGER NOT NULL,"
	" local INTEGER NOT NULL,"
	" reflinked INTEGER NOT NULL,"
	" parent_id TEXT NOT NULL,"
	" repo_snapshot TEXT NOT NULL,"
	" error TEXT NOT NULL,"
	" bytes_uploaded INTEGER NOT NULL,"
	" ready_ns INTEGER NOT NULL);"
	"CREATE INDEX snapshots_volume ON snapshots (volume_id, created_ns, id);"
	"CREATE INDEX snapshots_created ON snapshots (created_ns, id);"
	"CREATE INDEX snapshots_parent ON snapshots (parent_id);"
	"CREATE TABLE snapshot_params ("
	" snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,"
	" key TEXT NOT NULL,"
	" value TEXT NOT NULL,"
	" PRIMARY KEY (snapshot_id, key));"
	"CREATE TABLE jobs ("
	" snapshot_id TEXT PRIMARY KEY NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,"
	" queued_ns INTEGER NOT NULL,"
	" attempts INTEGER NOT NULL,"
	" next_ns INTEGER NOT NULL);"
	"PRAGMA user_version = 1;";

#define VOL_COLS "id, name, size, access, fstype, source_snapshot, source_volume, created_ns"
#define SNAP_COLS \
	"id, name, volume_id, size, created_ns, state, local, reflinked, parent_id, repo_snapshot, error, " \
	"bytes_uploaded, ready_ns"
/* The page queries share their parameter numbers (?1 volume, ?2 snapshot,
 * ?3 ?4 the cursor's created_ns and id, ?5 the limit); each uses some. */
#define PAGE_TAIL "(created_ns, id) > (?3, ?4) ORDER BY created_ns, id LIMIT ?5"

enum {
	S_BEGIN, S_COMMIT, S_ROLLBACK,
	S_VOL_PUT, S_VOL_GET, S_VOL_BY_NAME, S_VOL_UPDATE, S_VOL_DELETE, S_VOLS,
	S_SNAP_PUT, S_PARAM_PUT, S_SNAP_GET, S_SNAP_BY_NAME, S_SNAP_UPDATE, S_SNAP_DELETE, S_PARAMS_DELETE,
	S_PARAMS, S_SNAP_CREATED, S_PAGE_ALL, S_PAGE_VOL, S_PAGE_ID, S_NEWEST, S_CHILD_VOLS, S_CHILD_SNAPS,
	S_JOB_PUT, S_JOB_UPDATE, S_JOB_DELETE, S_JOBS,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_VOL_PUT] = "INSERT INTO volumes (" VOL_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[S_VOL_GET] = "SELECT " VOL_COLS " FROM volumes WHERE id = ?1",
	[S_VOL_BY_NAME] = "SELECT " VOL_COLS " FROM volumes WHERE name = ?1",
	[S_VOL_UPDATE] = "UPDATE volumes SET name = ?2, size = ?3, access = ?4, fstype = ?5, source_snapshot = ?6,"
			 " source_volume = ?7, created_ns = ?8 WHERE id = ?1",
	[S_VOL_DELETE] = "DELETE FROM volumes WHERE id = ?1",
	[S_VOLS] = "SELECT " VOL_COLS " FROM volumes ORDER BY id",
	[S_SNAP_PUT] = "INSERT INTO snapshots (" SNAP_COLS ")"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	[S_PARAM_PUT] = "INSERT INTO snapshot_params (snapshot_id, key, value) VALUES (?1, ?2, ?3)",
	[S_SNAP_GET] = "SELECT " SNAP_COLS " FROM snapshots WHERE id = ?1",
	[S_SNAP_BY_NAME] = "SELECT " SNAP_COLS " FROM snapshots WHERE name = ?1",
	[S_SNAP_UPDATE] = "UPDATE snapshots SET name = ?2, volume_id = ?3, size = ?4, created_ns = ?5, state = ?6,"
			  " local = ?7, reflinked = ?8, parent_id = ?9, repo_snapshot = ?10, error = ?11,"
			  " bytes_uploaded = ?12, ready_ns = ?13 WHERE id = ?1",
	[S_SNAP_DELETE] = "DELETE FROM snapshots WHERE id = ?1",
	[S_PARAMS_DELETE] = "DELETE FROM snapshot_params WHERE snapshot_id = ?1",
	[S_PARAMS] = "SELECT key, value FROM snapshot_params WHERE snapshot_id = ?1 ORDER BY key",
	[S_SNAP_CREATED] = "SELECT created_ns FROM snapshots WHERE id = ?1",
	[S_PAGE_ALL] = "SELECT " SNAP_COLS " FROM snapshots WHERE " PAGE_TAIL,
	[S_PAGE_VOL] = "SELECT " SNAP_COLS " FROM snapshots WHERE volume_id = ?1 AND " PAGE_TAIL,
	[S_PAGE_ID] = "SELECT " SNAP_COLS " FROM snapshots WHERE id = ?2 AND (?1 = '' OR volume_id = ?1) AND "
		      PAGE_TAIL,
	[S_NEWEST] = "SELECT " SNAP_COLS " FROM snapshots WHERE volume_id = ?1"
		     " ORDER BY created_ns DESC, id DESC LIMIT 1",
	[S_CHILD_VOLS] = "SELECT count(*) FROM volumes WHERE source_snapshot = ?1",
	[S_CHILD_SNAPS] = "SELECT count(*) FROM snapshots WHERE parent_id = ?1",
	[S_JOB_PUT] = "INSERT INTO jobs (snapshot_id, queued_ns, attempts, next_ns) VALUES (?1, ?2, 0, 0)"
		      " ON CONFLICT (snapshot_id) DO NOTHING",
	[S_JOB_UPDATE] = "UPDATE jobs SET queued_ns = ?2, attempts = ?3, next_ns = ?4 WHERE snapshot_id = ?1",
	[S_JOB_DELETE] = "DELETE FROM jobs WHERE snapshot_id = ?1",
	[S_JOBS] = "SELECT snapshot_id, queued_ns, attempts, next_ns FROM jobs ORDER BY queued_ns, snapshot_id",
};

struct fy_cat {
	pthread_mutex_t mu;      /* every use of db and st */
	sqlite3 *db;
	sqlite3_stmt *st[S_COUNT];
	char path[PATH_MAX];
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int sql_errno(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_BUSY_SNAPSHOT:
	case SQLITE_BUSY_TIMEOUT:
		return -EBUSY;
	default:
		return -EIO;
	}
}

/* One line into err; a call without err (a read) logs it instead, so the
 * -EIO it returns does not come without a reason. */
__attribute__((format(printf, 4, 5)))
static int cat_err(int e, char *err, size_t errlen, const char *fmt, ...)
{
	char line[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (err && errlen)
		snprintf(err, errlen, "%s", line);
	else
		fprintf(stderr, "ferry catalog: %s\n", line);
	return e;
}

/* A failed step, bind or prepare: errno and a line naming what was done. */
static int sql_fail(struct fy_cat *c, int rc, char *err, size_t errlen, const char *what, const char *id)
{
	return cat_err(sql_errno(rc), err, errlen, "%s %s: %s", what, id ? id : "", sqlite3_errmsg(c->db));
}

/* Binding in parameter order; the first failure sticks. */
struct bind {
	sqlite3_stmt *st;
	int i;
	int rc;
};

static void b_text(struct bind *b, const char *s)
{
	b->i++;
	if (b->rc == SQLITE_OK)
		b->rc = sqlite3_bind_text(b->st, b->i, s ? s : "", -1, SQLITE_TRANSIENT);
}

static void b_int(struct bind *b, int64_t v)
{
	b->i++;
	if (b->rc == SQLITE_OK)
		b->rc = sqlite3_bind_int64(b->st, b->i, v);
}

/* Step a statement that returns no rows, then reset it.  SQLITE_OK or the
 * failure (sqlite3_errmsg still describes it). */
static int run(struct bind *b)
{
	int rc = b->rc;

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(b->st);
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = SQLITE_OK;
	}
	sqlite3_reset(b->st);
	return rc;
}

static int tx(struct fy_cat *c, int which)
{
	struct bind b = { c->st[which], 0, SQLITE_OK };

	return run(&b);
}

/* After a failure inside BEGIN: roll back unless SQLite already has. */
static void rollback(struct fy_cat *c)
{
	if (!sqlite3_get_autocommit(c->db))
		tx(c, S_ROLLBACK);
}

/* Is a field's string terminated inside the field? */
static bool fits(const char *s, size_t size)
{
	return strnlen(s, size) < size;
}

/* Copy a text column into a field; -EIO when it does not fit (never cut). */
static int col_text(sqlite3_stmt *st, int i, char *dst, size_t size, const char *row)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i);

	if (!t) {
		dst[0] = '\0';
		if (sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM)
			return cat_err(-ENOMEM, NULL, 0, "reading %s: out of memory", row);
		return 0;
	}
	if (n >= size)
		return cat_err(-EIO, NULL, 0, "%s: column %s holds %zu bytes, more than the %zu it may",
			       row, sqlite3_column_name(st, i), n, size - 1);
	memcpy(dst, t, n);
	dst[n] = '\0';
	return 0;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i);
	char *s = malloc(n + 1);

	if (s) {
		if (t)
			memcpy(s, t, n);
		s[t ? n : 0] = '\0';
	}
	return s;
}

/* p with room for element n (capacity *cap): p itself, a larger copy, or
 * NULL (p untouched) when memory runs out. */
static void *grow(void *p, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return p;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *q = reallocarray(p, ncap, elem);

	if (q)
		*cap = ncap;
	return q;
}

/* ---- open and close ---- */

static int pragma_int(sqlite3 *db, const char *sql, int64_t *v)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*v = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			const unsigned char *t = sqlite3_column_text(st, 0);

			snprintf(out, len, "%s", t ? (const char *)t : "");
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static int version_check(struct fy_cat *c, int64_t v, char *err, size_t errlen)
{
	if (v > CAT_VERSION)
		return cat_err(-EPROTO, err, errlen,
			       "%s: schema version %lld is newer than this ferry knows (%d); refusing to use it",
			       c->path, (long long)v, CAT_VERSION);
	if (v < 0)
		return cat_err(-EPROTO, err, errlen, "%s: schema version %lld is not one of ferry's", c->path,
			       (long long)v);
	return 0;
}

/* Create state.db with mode 0600 (SQLite gives the -wal and -shm files the
 * database file's mode), and make the new name durable. */
static int create_file(const char *dir, const char *path, char *err, size_t errlen)
{
	struct stat sb;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	bool created = fd >= 0;

	if (fd < 0 && errno == EEXIST)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return cat_err(-errno, err, errlen, "open %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) < 0 || ((sb.st_mode & 0077) && fchmod(fd, 0600) < 0)) {
		int e = errno;

		close(fd);
		return cat_err(-e, err, errlen, "chmod 0600 %s: %s", path, strerror(e));
	}
	close(fd);
	if (created) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd < 0 || fsync(dfd) < 0) {
			int e = errno;

			if (dfd >= 0)
				close(dfd);
			return cat_err(-e, err, errlen, "fsync %s: %s", dir, strerror(e));
		}
		close(dfd);
	}
	return 0;
}

/* Settings, then the schema in one transaction. */
static int setup(struct fy_cat *c, char *err, size_t errlen)
{
	sqlite3 *db = c->db;
	char mode[32];
	int64_t v = 0, fk = 0;
	int rc;

	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, CAT_BUSY_MS);
	/* Read the version before changing anything in a file we may not know. */
	if ((rc = pragma_int(db, "PRAGMA user_version", &v)) != SQLITE_OK)
		return sql_fail(c, rc, err, errlen, "reading the schema version of", c->path);
	if ((rc = version_check(c, v, err, errlen)) < 0)
		return rc;
	if ((rc = pragma_text(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode))) != SQLITE_OK)
		return sql_fail(c, rc, err, errlen, "journal_mode=WAL on", c->path);
	if (strcmp(mode, "wal") != 0)
		return cat_err(-EIO, err, errlen, "%s: journal_mode=WAL refused (mode stays %s)", c->path, mode);
	if ((rc = sqlite3_exec(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", NULL, NULL, NULL)) !=
	    SQLITE_OK)
		return sql_fail(c, rc, err, errlen, "synchronous=FULL, foreign_keys=ON on", c->path);
	if ((rc = pragma_int(db, "PRAGMA foreign_keys", &fk)) != SQLITE_OK)
		return sql_fail(c, rc, err, errlen, "reading foreign_keys of", c->path);
	if (fk != 1)
		return cat_err(-EIO, err, errlen, "%s: this SQLite does not enforce foreign keys", c->path);

	if ((rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
		return sql_fail(c, rc, err, errlen, "locking", c->path);
	/* Again inside the transaction: another process may have created it. */
	if ((rc = pragma_int(db, "PRAGMA user_version", &v)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "reading the schema version of", c->path);
	} else if ((rc = version_check(c, v, err, errlen)) < 0) {
		;
	} else if (v == 0 && (rc = sqlite3_exec(db, schema_v1, NULL, NULL, NULL)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "creating the schema in", c->path);
	} else if ((rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "committing the schema of", c->path);
	}
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

void fy_cat_close(struct fy_cat *c)
{
	if (!c)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	if (c->db && sqlite3_close(c->db) != SQLITE_OK)
		fprintf(stderr, "ferry catalog: closing %s: %s\n", c->path, sqlite3_errmsg(c->db));
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void fy_cat_close_final(struct fy_cat *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu); /* never unlocked: see catalog.h */
	for (int i = 0; i < S_COUNT; i++) {
		sqlite3_finalize(c->st[i]);
		c->st[i] = NULL;
	}
	if (c->db && sqlite3_close(c->db) != SQLITE_OK)
		fprintf(stderr, "ferry catalog: closing %s: %s\n", c->path, sqlite3_errmsg(c->db));
	c->db = NULL;
}

int fy_cat_open(const char *dir, struct fy_cat **out, char *err, size_t errlen)
{
	struct fy_cat *c;
	int rc, flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

#ifdef SQLITE_OPEN_EXRESCODE
	flags |= SQLITE_OPEN_EXRESCODE;
#endif
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return cat_err(-ENOMEM, err, errlen, "out of memory");
	if ((size_t)snprintf(c->path, sizeof(c->path), "%s/state.db", dir) >= sizeof(c->path)) {
		free(c);
		return cat_err(-ENAMETOOLONG, err, errlen, "%s/state.db: path too long", dir);
	}
	if ((rc = pthread_mutex_init(&c->mu, NULL)) != 0) {
		free(c);
		return cat_err(-rc, err, errlen, "pthread_mutex_init: %s", strerror(rc));
	}
	if ((rc = create_file(dir, c->path, err, errlen)) < 0)
		goto fail;
	/* Our mutex serialises every use of the connection (and keeps
	 * sqlite3_errmsg ours until read), so SQLite's own is not needed. */
	if ((rc = sqlite3_open_v2(c->path, &c->db, flags, NULL)) != SQLITE_OK) {
		rc = c->db ? sql_fail(c, rc, err, errlen, "opening", c->path)
			   : cat_err(-ENOMEM, err, errlen, "opening %s: out of memory", c->path);
		goto fail;
	}
	if ((rc = setup(c, err, errlen)) != SQLITE_OK)
		goto fail;
	for (int i = 0; i < S_COUNT; i++) {
		rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL);
		if (rc != SQLITE_OK) {
			rc = cat_err(sql_errno(rc), err, errlen, "%s: preparing \"%s\": %s", c->path, stmt_sql[i],
				     sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	fy_cat_close(c);
	return rc;
}

/* ---- volumes ---- */

/* A struct's string field, for the length check. */
struct field {
	const char *name, *s;
	size_t size;
};

/* -ENAMETOOLONG naming the first field not terminated inside its array. */
static int fields_fit(const char *what, const char *id, const struct field *f, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		if (!fits(f[i].s, f[i].size))
			return cat_err(-ENAMETOOLONG, err, errlen, "%s %.*s: %s longer than %zu bytes", what,
				       FY_ID_MAX, id, f[i].name, f[i].size - 1);
	return 0;
}

static int volume_check(const struct fy_cat_volume *v, char *err, size_t errlen)
{
	const struct field f[] = {
		{ "id", v->id, sizeof(v->id) },
		{ "name", v->name, sizeof(v->name) },
		{ "fstype", v->fstype, sizeof(v->fstype) },
		{ "source_snapshot", v->source_snapshot, sizeof(v->source_snapshot) },
		{ "source_volume", v->source_volume, sizeof(v->source_volume) },
	};
	int rc = fields_fit("volume", v->id, f, sizeof(f) / sizeof(f[0]), err, errlen);

	if (rc < 0)
		return rc;
	if (!v->id[0] || !v->name[0])
		return cat_err(-EINVAL, err, errlen, "volume: empty id or name");
	if (v->access != FY_ACCESS_BLOCK && v->access != FY_ACCESS_MOUNT)
		return cat_err(-EINVAL, err, errlen, "volume %s: access %d is neither block nor mount", v->id,
			       v->access);
	return 0;
}

static void bind_volume(struct bind *b, const struct fy_cat_volume *v)
{
	b_text(b, v->id);
	b_text(b, v->name);
	b_int(b, (int64_t)v->size);
	b_int(b, v->access);
	b_text(b, v->fstype);
	b_text(b, v->source_snapshot);
	b_text(b, v->source_volume);
	b_int(b, v->created_ns);
}

static int read_volume(sqlite3_stmt *st, struct fy_cat_volume *v)
{
	const char *row = "a volume";
	int rc;

	memset(v, 0, sizeof(*v));
	if ((rc = col_text(st, 0, v->id, sizeof(v->id), row)) < 0)
		return rc;
	row = v->id;
	if ((rc = col_text(st, 1, v->name, sizeof(v->name), row)) < 0 ||
	    (rc = col_text(st, 4, v->fstype, sizeof(v->fstype), row)) < 0 ||
	    (rc = col_text(st, 5, v->source_snapshot, sizeof(v->source_snapshot), row)) < 0 ||
	    (rc = col_text(st, 6, v->source_volume, sizeof(v->source_volume), row)) < 0)
		return rc;
	v->size = (uint64_t)sqlite3_column_int64(st, 2);
	v->access = sqlite3_column_int(st, 3);
	v->created_ns = sqlite3_column_int64(st, 7);
	return 0;
}

int fy_cat_volume_put(struct fy_cat *c, const struct fy_cat_volume *v, char *err, size_t errlen)
{
	int rc = volume_check(v, err, errlen);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&c->mu);
	struct bind b = { c->st[S_VOL_PUT], 0, SQLITE_OK };

	bind_volume(&b, v);
	if ((rc = run(&b)) != SQLITE_OK)
		rc = sql_fail(c, rc, err, errlen, "inserting volume", v->id);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* One row by a key; -ENOENT when there is none. */
static int get_one(struct fy_cat *c, int which, const char *key, void *out,
		   int (*rd)(sqlite3_stmt *, void *), const char *what)
{
	struct bind b = { c->st[which], 0, SQLITE_OK };
	int rc;

	pthread_mutex_lock(&c->mu);
	b_text(&b, key);
	rc = b.rc;
	if (rc == SQLITE_OK)
		rc = sqlite3_step(b.st);
	if (rc == SQLITE_ROW)
		rc = rd(b.st, out);
	else if (rc == SQLITE_DONE)
		rc = -ENOENT;
	else
		rc = sql_fail(c, rc, NULL, 0, what, key);
	sqlite3_reset(b.st);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static int read_volume_any(sqlite3_stmt *st, void *v)
{
	return read_volume(st, v);
}

int fy_cat_volume_get(struct fy_cat *c, const char *id, struct fy_cat_volume *v)
{
	return get_one(c, S_VOL_GET, id, v, read_volume_any, "reading volume");
}

int fy_cat_volume_by_name(struct fy_cat *c, const char *name, struct fy_cat_volume *v)
{
	return get_one(c, S_VOL_BY_NAME, name, v, read_volume_any, "reading the volume named");
}

/* Run a bound UPDATE of the row keyed id (under c->mu); no row changed is
 * -ENOENT with "<what_row> <id>: <missing>". */
static int run_update(struct fy_cat *c, struct bind *b, char *err, size_t errlen, const char *what,
		      const char *row, const char *id, const char *missing)
{
	int rc = run(b);

	if (rc != SQLITE_OK)
		return sql_fail(c, rc, err, errlen, what, id);
	if (sqlite3_changes(c->db) == 0)
		return cat_err(-ENOENT, err, errlen, "%s %s: %s", row, id, missing);
	return 0;
}

int fy_cat_volume_update(struct fy_cat *c, const struct fy_cat_volume *v, char *err, size_t errlen)
{
	int rc = volume_check(v, err, errlen);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&c->mu);
	struct bind b = { c->st[S_VOL_UPDATE], 0, SQLITE_OK };

	bind_volume(&b, v);
	rc = run_update(c, &b, err, errlen, "updating volume", "volume", v->id, "no such volume");
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* A DELETE by id; a missing row is not an error. */
static int delete_one(struct fy_cat *c, int which, const char *id, char *err, size_t errlen, const char *what)
{
	struct bind b = { c->st[which], 0, SQLITE_OK };
	int rc;

	pthread_mutex_lock(&c->mu);
	b_text(&b, id);
	if ((rc = run(&b)) != SQLITE_OK)
		rc = sql_fail(c, rc, err, errlen, what, id);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int fy_cat_volume_delete(struct fy_cat *c, const char *id, char *err, size_t errlen)
{
	return delete_one(c, S_VOL_DELETE, id, err, errlen, "deleting volume");
}

/* Every row of a prepared listing, each read into an element of elem bytes
 * by read_row (< 0: stop with that error); *out malloc'd.  Under c->mu. */
static int list_rows(struct fy_cat *c, sqlite3_stmt *st, size_t elem, int (*read_row)(sqlite3_stmt *, void *),
		     const char *what, void **out, size_t *nout)
{
	char *v = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	*nout = 0;
	pthread_mutex_lock(&c->mu);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char *nv = grow(v, &cap, n, elem);

		if (!nv) {
			rc = cat_err(-ENOMEM, NULL, 0, "%s: out of memory", what);
			break;
		}
		v = nv;
		memset(v + n * elem, 0, elem);
		if ((rc = read_row(st, v + n * elem)) < 0)
			break;
		n++;
	}
	if (rc == SQLITE_DONE)
		rc = 0;
	else if (rc > 0)
		rc = sql_fail(c, rc, NULL, 0, what, NULL);
	sqlite3_reset(st);
	pthread_mutex_unlock(&c->mu);
	if (rc < 0) {
		free(v);
		return rc;
	}
	*out = v;
	*nout = n;
	return 0;
}

int fy_cat_volumes(struct fy_cat *c, struct fy_cat_volume **out, size_t *nout)
{
	return list_rows(c, c->st[S_VOLS], sizeof(**out), read_volume_any, "listing volumes", (void **)out, nout);
}

/* ---- snapshots ---- */

static int snap_check(const struct fy_cat_snapshot *s, char *err, size_t errlen)
{
	const struct field f[] = {
		{ "id", s->id, sizeof(s->id) },
		{ "name", s->name, sizeof(s->name) },
		{ "volume_id", s->volume_id, sizeof(s->volume_id) },
		{ "parent_id", s->parent_id, sizeof(s->parent_id) },
		{ "repo_snapshot", s->repo_snapshot, sizeof(s->repo_snapshot) },
		{ "error", s->error, sizeof(s->error) },
	};
	int rc = fields_fit("snapshot", s->id, f, sizeof(f) / sizeof(f[0]), err, errlen);

	if (rc < 0)
		return rc;
	if (!s->id[0] || !s->name[0])
		return cat_err(-EINVAL, err, errlen, "snapshot: empty id or name");
	if (s->state != FY_SNAP_CUT && s->state != FY_SNAP_READY && s->state != FY_SNAP_FAILED)
		return cat_err(-EINVAL, err, errlen, "snapshot %s: state %d is not a snapshot state", s->id,
			       s->state);
	return 0;
}

static void bind_snap(struct bind *b, const struct fy_cat_snapshot *s)
{
	b_text(b, s->id);
	b_text(b, s->name);
	b_text(b, s->volume_id);
	b_int(b, (int64_t)s->size);
	b_int(b, s->created_ns);
	b_int(b, s->state);
	b_int(b, s->local);
	b_int(b, s->reflinked);
	b_text(b, s->parent_id);
	b_text(b, s->repo_snapshot);
	b_text(b, s->error);
	b_int(b, (int64_t)s->bytes_uploaded);
	b_int(b, s->ready_ns);
}

static int read_snap(sqlite3_stmt *st, struct fy_cat_snapshot *s)
{
	const char *row = "a snapshot";
	int rc;

	memset(s, 0, sizeof(*s));
	if ((rc = col_text(st, 0, s->id, sizeof(s->id), row)) < 0)
		return rc;
	row = s->id;
	if ((rc = col_text(st, 1, s->name, sizeof(s->name), row)) < 0 ||
	    (rc = col_text(st, 2, s->volume_id, sizeof(s->volume_id), row)) < 0 ||
	    (rc = col_text(st, 8, s->parent_id, sizeof(s->parent_id), row)) < 0 ||
	    (rc = col_text(st, 9, s->repo_snapshot, sizeof(s->repo_snapshot), row)) < 0 ||
	    (rc = col_text(st, 10, s->error, sizeof(s->error), row)) < 0)
		return rc;
	s->size = (uint64_t)sqlite3_column_int64(st, 3);
	s->created_ns = sqlite3_column_int64(st, 4);
	s->state = sqlite3_column_int(st, 5);
	s->local = sqlite3_column_int(st, 6) != 0;
	s->reflinked = sqlite3_column_int(st, 7) != 0;
	s->bytes_uploaded = (uint64_t)sqlite3_column_int64(st, 11);
	s->ready_ns = sqlite3_column_int64(st, 12);
	return 0;
}

static int read_snap_any(sqlite3_stmt *st, void *s)
{
	return read_snap(st, s);
}

int fy_cat_snap_put(struct fy_cat *c, const struct fy_cat_snapshot *s, const struct fy_kv *kv, size_t nkv,
		    char *err, size_t errlen)
{
	struct bind b;
	int rc = snap_check(s, err, errlen);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < nkv; i++)
		if (!kv[i].key || !kv[i].value)
			return cat_err(-EINVAL, err, errlen, "snapshot %s: parameter %zu without key or value",
				       s->id, i);
	pthread_mutex_lock(&c->mu);
	if ((rc = tx(c, S_BEGIN)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "beginning the insert of snapshot", s->id);
		goto out;
	}
	b = (struct bind){ c->st[S_SNAP_PUT], 0, SQLITE_OK };
	bind_snap(&b, s);
	if ((rc = run(&b)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "inserting snapshot", s->id);
		goto undo;
	}
	for (size_t i = 0; i < nkv; i++) {
		b = (struct bind){ c->st[S_PARAM_PUT], 0, SQLITE_OK };
		b_text(&b, s->id);
		b_text(&b, kv[i].key);
		b_text(&b, kv[i].value);
		if ((rc = run(&b)) != SQLITE_OK) {
			/* The snapshot row went in, so a conflict here is a key given twice. */
			if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
				rc = cat_err(-EINVAL, err, errlen, "snapshot %s: parameter \"%s\" given twice", s->id,
					     kv[i].key);
			else
				rc = sql_fail(c, rc, err, errlen, "inserting the parameters of snapshot", s->id);
			goto undo;
		}
	}
	if ((rc = tx(c, S_COMMIT)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "committing snapshot", s->id);
		goto undo;
	}
	goto out;
undo:
	rollback(c);
out:
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int fy_cat_snap_get(struct fy_cat *c, const char *id, struct fy_cat_snapshot *s)
{
	return get_one(c, S_SNAP_GET, id, s, read_snap_any, "reading snapshot");
}

int fy_cat_snap_by_name(struct fy_cat *c, const char *name, struct fy_cat_snapshot *s)
{
	return get_one(c, S_SNAP_BY_NAME, name, s, read_snap_any, "reading the snapshot named");
}

int fy_cat_snap_update(struct fy_cat *c, const struct fy_cat_snapshot *s, char *err, size_t errlen)
{
	int rc = snap_check(s, err, errlen);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&c->mu);
	struct bind b = { c->st[S_SNAP_UPDATE], 0, SQLITE_OK };

	bind_snap(&b, s);
	rc = run_update(c, &b, err, errlen, "updating snapshot", "snapshot", s->id, "no such snapshot");
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int fy_cat_snap_delete(struct fy_cat *c, const char *id, char *err, size_t errlen)
{
	/* Explicit rather than left to ON DELETE CASCADE: the same result with
	 * foreign keys off (the sqlite3 shell's default). */
	static const int steps[] = { S_PARAMS_DELETE, S_JOB_DELETE, S_SNAP_DELETE };
	int rc;

	pthread_mutex_lock(&c->mu);
	if ((rc = tx(c, S_BEGIN)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "beginning the delete of snapshot", id);
		goto out;
	}
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct bind b = { c->st[steps[i]], 0, SQLITE_OK };

		b_text(&b, id);
		if ((rc = run(&b)) != SQLITE_OK) {
			rc = sql_fail(c, rc, err, errlen, "deleting snapshot", id);
			goto undo;
		}
	}
	if ((rc = tx(c, S_COMMIT)) != SQLITE_OK) {
		rc = sql_fail(c, rc, err, errlen, "committing the delete of snapshot", id);
		goto undo;
	}
	goto out;
undo:
	rollback(c);
out:
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void fy_kv_free(struct fy_kv *kv, size_t n)
{
	if (!kv)
		return;
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

/* Does the snapshot exist?  1, 0 or -errno.  Called with the mutex held. */
static int snap_exists(struct fy_cat *c, const char *id)
{
	struct bind b = { c->st[S_SNAP_CREATED], 0, SQLITE_OK };
	int rc;

	b_text(&b, id);
	rc = b.rc;
	if (rc == SQLITE_OK)
		rc = sqlite3_step(b.st);
	if (rc == SQLITE_ROW)
		rc = 1;
	else if (rc == SQLITE_DONE)
		rc = 0;
	else
		rc = sql_fail(c, rc, NULL, 0, "reading snapshot", id);
	sqlite3_reset(b.st);
	return rc;
}

/* Sorted by key; -ENOENT when the snapshot does not exist (0 parameters of
 * a snapshot that does is *n = 0). */
int fy_cat_snap_params(struct fy_cat *c, const char *id, struct fy_kv **out, size_t *nout)
{
	struct bind b = { c->st[S_PARAMS], 0, SQLITE_OK };
	struct fy_kv *kv = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	*nout = 0;
	pthread_mutex_lock(&c->mu);
	b_text(&b, id);
	rc = b.rc;
	if (rc == SQLITE_OK) {
		while ((rc = sqlite3_step(b.st)) == SQLITE_ROW) {
			struct fy_kv *nkv = grow(kv, &cap, n, sizeof(*kv));

			if (!nkv) {
				rc = -ENOMEM;
				break;
			}
			kv = nkv;
			kv[n].key = col_dup(b.st, 0);
			kv[n].value = col_dup(b.st, 1);
			n++;
			if (!kv[n - 1].key || !kv[n - 1].value) {
				rc = -ENOMEM;
				break;
			}
		}
	}
	if (rc == -ENOMEM)
		cat_err(rc, NULL, 0, "reading the parameters of snapshot %s: out of memory", id);
	else if (rc != SQLITE_DONE)
		rc = sql_fail(c, rc, NULL, 0, "reading the parameters of snapshot", id);
	else
		rc = 0;
	sqlite3_reset(b.st);
	if (rc == 0 && n == 0) {
		rc = snap_exists(c, id);
		rc = rc == 1 ? 0 : rc == 0 ? -ENOENT : rc;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc < 0) {
		fy_kv_free(kv, n);
		return rc;
	}
	*out = kv;
	*nout = n;
	return 0;
}

int fy_cat_snaps(struct fy_cat *c, const char *volume_id, const char *snapshot_id, const char *after_id,
		 size_t max, struct fy_cat_snapshot **out, size_t *nout, bool *more)
{
	struct fy_cat_snapshot *s = NULL;
	size_t n = 0, cap = 0;
	int64_t after_ns = INT64_MIN;   /* with id "": before every row (ids are never empty) */
	int which = S_PAGE_ALL, rc = 0;
	struct bind b;

	*out = NULL;
	*nout = 0;
	*more = false;
	if (!volume_id)
		volume_id = "";
	if (!snapshot_id)
		snapshot_id = "";
	if (!after_id)
		after_id = "";
	if (snapshot_id[0])
		which = S_PAGE_ID;
	else if (volume_id[0])
		which = S_PAGE_VOL;
	if (max >= INT64_MAX)
		max = 0;

	pthread_mutex_lock(&c->mu);
	if (after_id[0]) {
		struct bind a = { c->st[S_SNAP_CREATED], 0, SQLITE_OK };

		b_text(&a, after_id);
		rc = a.rc;
		if (rc == SQLITE_OK)
			rc = sqlite3_step(a.st);
		if (rc == SQLITE_ROW) {
			after_ns = sqlite3_column_int64(a.st, 0);
			rc = 0;
		} else if (rc == SQLITE_DONE) {
			rc = -EINVAL;   /* a cursor we did not hand out, or its snapshot is gone */
		} else {
			rc = sql_fail(c, rc, NULL, 0, "reading the cursor snapshot", after_id);
		}
		sqlite3_reset(a.st);
		if (rc < 0)
			goto out;
	}

	b = (struct bind){ c->st[which], 0, SQLITE_OK };
	b_text(&b, volume_id);
	b_text(&b, snapshot_id);
	b_int(&b, after_ns);
	b_text(&b, after_id);
	b_int(&b, max ? (int64_t)max + 1 : -1);
	rc = b.rc;
	if (rc == SQLITE_OK) {
		while ((rc = sqlite3_step(b.st)) == SQLITE_ROW) {
			if (max && n == max) {
				*more = true;
				rc = SQLITE_DONE;
				break;
			}
			struct fy_cat_snapshot *ns = grow(s, &cap, n, sizeof(*s));

			if (!ns) {
				rc = cat_err(-ENOMEM, NULL, 0, "listing snapshots: out of memory");
				break;
			}
			s = ns;
			if ((rc = read_snap(b.st, &s[n])) < 0)
				break;
			n++;
		}
	}
	if (rc == SQLITE_DONE)
		rc = 0;
	else if (rc > 0)
		rc = sql_fail(c, rc, NULL, 0, "listing snapshots", NULL);
	sqlite3_reset(b.st);
out:
	pthread_mutex_unlock(&c->mu);
	if (rc < 0) {
		free(s);
		*more = false;
		return rc;
	}
	*out = s;
	*nout = n;
	return 0;
}

int fy_cat_snap_newest(struct fy_cat *c, const char *volume_id, struct fy_cat_snapshot *s)
{
	return get_one(c, S_NEWEST, volume_id, s, read_snap_any, "reading the newest snapshot of volume");
}

/* SELECT count(*) ... = ?1.  Called with the mutex held. */
static int count(struct fy_cat *c, int which, const char *id, size_t *n)
{
	struct bind b = { c->st[which], 0, SQLITE_OK };
	int rc;

	b_text(&b, id);
	rc = b.rc;
	if (rc == SQLITE_OK)
		rc = sqlite3_step(b.st);
	if (rc == SQLITE_ROW) {
		*n = (size_t)sqlite3_column_int64(b.st, 0);
		rc = 0;
	} else {
		rc = sql_fail(c, rc, NULL, 0, "counting the children of snapshot", id);
	}
	sqlite3_reset(b.st);
	return rc;
}

int fy_cat_snap_children(struct fy_cat *c, const char *id, size_t *volumes, size_t *snapshots)
{
	int rc;

	*volumes = *snapshots = 0;
	/* "" is what a volume without a source and a snapshot without a parent hold. */
	if (!id || !id[0])
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	rc = count(c, S_CHILD_VOLS, id, volumes);
	if (rc == 0)
		rc = count(c, S_CHILD_SNAPS, id, snapshots);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* ---- jobs ---- */

int fy_cat_job_put(struct fy_cat *c, const char *snapshot_id, char *err, size_t errlen)
{
	struct bind b = { c->st[S_JOB_PUT], 0, SQLITE_OK };
	int rc;

	pthread_mutex_lock(&c->mu);
	b_text(&b, snapshot_id);
	b_int(&b, now_ns());
	rc = run(&b);
	if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
		rc = cat_err(-ENOENT, err, errlen, "upload job for snapshot %s: no such snapshot", snapshot_id);
	else if (rc != SQLITE_OK)
		rc = sql_fail(c, rc, err, errlen, "queueing the upload of snapshot", snapshot_id);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int fy_cat_job_update(struct fy_cat *c, const struct fy_cat_job *j, char *err, size_t errlen)
{
	struct bind b = { c->st[S_JOB_UPDATE], 0, SQLITE_OK };
	int rc;

	pthread_mutex_lock(&c->mu);
	b_text(&b, j->snapshot_id);
	b_int(&b, j->queued_ns);
	b_int(&b, j->attempts);
	b_int(&b, j->next_ns);
	rc = run_update(c, &b, err, errlen, "updating the upload job of snapshot", "snapshot", j->snapshot_id,
			"no upload job");
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* Absent: 0, like the other deletes. */
int fy_cat_job_delete(struct fy_cat *c, const char *snapshot_id, char *err, size_t errlen)
{
	return delete_one(c, S_JOB_DELETE, snapshot_id, err, errlen, "deleting the upload job of snapshot");
}

static int read_job(sqlite3_stmt *st, void *p)
{
	struct fy_cat_job *j = p;
	int rc = col_text(st, 0, j->snapshot_id, sizeof(j->snapshot_id), "an upload job");

	if (rc < 0)
		return rc;
	j->queued_ns = sqlite3_column_int64(st, 1);
	j->attempts = (unsigned)sqlite3_column_int64(st, 2);
	j->next_ns = sqlite3_column_int64(st, 3);
	return 0;
}

int fy_cat_jobs(struct fy_cat *c, struct fy_cat_job **out, size_t *nout)
{
	return list_rows(c, c->st[S_JOBS], sizeof(**out), read_job, "listing upload jobs", (void **)out, nout);
}
