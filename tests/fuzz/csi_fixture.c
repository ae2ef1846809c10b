/* The agent of the CSI fuzz targets: see csi_fixture.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csi_fixture.h"
#include "ferry.h"
#include "fuzz.h"
#include "image.h"
#include "publish.h"

#define MIB (1ull << 20)
#define VOL_SIZE (3 * MIB)
#define T0 INT64_C(1700000000000000000)

static struct fy_agent agent;
static enum fz_csi_kind kind;
static char kubelet[600], outside[600], repo_url[600], notdev[600];

const char *fz_csi_kubelet(void)
{
	return kubelet;
}

const char *fz_csi_repo(void)
{
	return repo_url;
}

const struct fy_rpc_method *fz_csi_method(const char *path)
{
	const struct fy_rpc_method *t[] = { fy_identity_methods, fy_controller_methods, fy_node_methods,
					    fy_snapmeta_methods };
	const size_t n[] = { fy_identity_nmethods, fy_controller_nmethods, fy_node_nmethods, fy_snapmeta_nmethods };

	for (size_t i = 0; i < 4; i++)
		for (size_t j = 0; j < n[i]; j++)
			if (!strcmp(t[i][j].path, path))
				return &t[i][j];
	fz_fail("no method %s in the agent's tables", path);
}

void fz_csi_kubelet_path(char **s)
{
	char *p;

	if (!*s || strncmp(*s, "@K", 2))
		return;
	if (asprintf(&p, "%s%s", kubelet, *s + 2) < 0)
		fz_fail("out of memory");
	free(*s);
	*s = p;
}

static void must(int rc, const char *what)
{
	if (rc)
		fz_fail("fixture: %s: %s", what, strerror(rc < 0 ? -rc : rc));
}

/* ---- fixtures ---- */

static void write_at(const char *path, uint64_t off, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || pwrite(fd, text, strlen(text), (off_t)off) != (ssize_t)strlen(text))
		fz_fail("fixture: writing %s: %s", path, strerror(errno));
	close(fd);
}

static void put_volume(const char *id, const char *name, int access)
{
	struct fy_cat_volume v;
	char path[1024], err[512];

	memset(&v, 0, sizeof(v));
	snprintf(v.id, sizeof(v.id), "%s", id);
	snprintf(v.name, sizeof(v.name), "%s", name);
	v.size = VOL_SIZE;
	v.access = access;
	if (access == FY_ACCESS_MOUNT)
		snprintf(v.fstype, sizeof(v.fstype), "ext4");
	v.created_ns = T0;
	fy_vol_path(&agent, id, path, sizeof(path));
	fz_rmtree(path);
	if (kind == FZ_CSI_NODE) {
		must(mkdir(path, 0700) ? -errno : 0, "a volume's directory");
	} else {
		must(fy_img_create(path, VOL_SIZE, err, sizeof(err)), err);
		write_at(path, 0, "the first block of the fuzz volume");
		write_at(path, MIB + 4096, "the second block");
	}
	fy_cat_volume_delete(agent.cat, id, err, sizeof(err));
	must(fy_cat_volume_put(agent.cat, &v, err, sizeof(err)), err);
}

static void put_snapshot(const char *id, const char *name, int64_t t, bool local, const char *repo_snap,
			 const char *change)
{
	struct fy_cat_snapshot s;
	struct fy_kv kv = { (char *)FY_P_REPO, repo_url };
	char vol[1024], path[1024], err[512];
	bool reflinked;

	memset(&s, 0, sizeof(s));
	snprintf(s.id, sizeof(s.id), "%s", id);
	snprintf(s.name, sizeof(s.name), "%s", name);
	snprintf(s.volume_id, sizeof(s.volume_id), "%s", FZ_VOL1);
	snprintf(s.repo_snapshot, sizeof(s.repo_snapshot), "%s", repo_snap ? repo_snap : "");
	s.size = VOL_SIZE;
	s.created_ns = t;
	s.ready_ns = t;
	s.state = FY_SNAP_READY;
	s.local = local;
	fy_snap_path(&agent, id, path, sizeof(path));
	fz_rmtree(path);
	if (local) {
		fy_vol_path(&agent, FZ_VOL1, vol, sizeof(vol));
		must(fy_img_clone(vol, path, &reflinked, err, sizeof(err)), err);
		if (change)
			write_at(path, 2 * MIB, change);
	}
	fy_cat_snap_delete(agent.cat, id, err, sizeof(err));
	must(fy_cat_snap_put(agent.cat, &s, &kv, repo_snap ? 1 : 0, err, sizeof(err)), err);
}

/* A manifest of a 3 MiB volume in 1 MiB blocks; ids[i] 0 is a hole. */
static void put_manifest(struct fy_repo *r, uint8_t idbyte, const uint8_t ids[3])
{
	Ferry__V1__Manifest m = FERRY__V1__MANIFEST__INIT;
	uint8_t sid[FY_SNAP_ID_LEN], chunk_ids[3 * FY_ID_LEN];
	uint32_t crcs[3];
	char err[512];
	static uint8_t zero[MIB];

	memset(sid, idbyte, sizeof(sid));
	for (int i = 0; i < 3; i++) {
		memset(chunk_ids + i * FY_ID_LEN, ids[i], FY_ID_LEN);
		crcs[i] = ids[i] ? 0x12345678u + ids[i] : fy_crc32c(0, zero, MIB);
	}
	m.format_version = FY_FORMAT_VERSION;
	m.snapshot_id.data = sid;
	m.snapshot_id.len = sizeof(sid);
	m.volume = (char *)FZ_VOL1; /* uploads record the CSI volume id */
	m.size = VOL_SIZE;
	m.chunk_size = MIB;
	m.created_unix_nano = T0 + idbyte;
	m.hostname = (char *)"fuzz";
	m.source = (char *)"/dev/fuzz";
	Ferry__V1__Manifest__LabelsEntry label = FERRY__V1__MANIFEST__LABELS_ENTRY__INIT, *labels = &label;

	/* The id a node that never had it finds it by (lookup.c). */
	label.key = (char *)FY_L_SNAPSHOT_ID;
	label.value = (char *)(idbyte == 0x44 ? FZ_SNAP5 : FZ_SNAP3);
	m.n_labels = 1;
	m.labels = &labels;
	m.chunk_ids.data = chunk_ids;
	m.chunk_ids.len = sizeof(chunk_ids);
	m.n_block_crc32c = 3;
	m.block_crc32c = crcs;
	must(fy_manifest_write(r, &m, err, sizeof(err)), err);
}

static void make_repo(void)
{
	struct fy_init_opts o = { .chunk_size = MIB, .compression = FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE,
				  .level = 1, .scrypt_log2n = 10 };
	struct fy_secret sec = { .password = FZ_PASSWORD };
	static const uint8_t holes[3] = { 0, 0, 0 }, some[3] = { 0, 0xc1, 0xc2 };
	struct fy_repo *r;
	char err[512];

	must(fy_repo_init(repo_url, &o, &sec, err, sizeof(err)), err);
	must(fy_repo_open(repo_url, &sec, &r, err, sizeof(err)), err);
	put_manifest(r, 0x33, holes);
	put_manifest(r, 0x44, some);
	fy_repo_close(r);
}

static void make_kubelet(void)
{
	char p[1200];

	fz_rmtree(kubelet);
	snprintf(p, sizeof(p), "%s/pods/p1/volumes/full/", kubelet);
	must(fz_write(p, "a-file", "", 0), "the kubelet directory");
	snprintf(p, sizeof(p), "%s/pods/p1/volumes", kubelet);
	must(fz_write(p, "blk", "", 0), "the kubelet directory");
	snprintf(p, sizeof(p), "%s/pods/p1/volumes/mnt", kubelet);
	must(mkdir(p, 0700) ? -errno : 0, "the kubelet directory");
	/* Never published: the kubelet's own file, another driver's target. */
	snprintf(p, sizeof(p), "%s/pods/p1/volumes", kubelet);
	must(fz_write(p, "kubelet-file", "", 0), "the kubelet directory");
	snprintf(p, sizeof(p), "%s/pods/p1/volumes/other-driver", kubelet);
	must(mkdir(p, 0700) ? -errno : 0, "the kubelet directory");
	snprintf(p, sizeof(p), "%s/pods/p1/link", kubelet);
	must(symlink("volumes", p) ? -errno : 0, "a symlink in the kubelet directory");
	snprintf(p, sizeof(p), "%s/escape", kubelet);
	must(symlink("/", p) ? -errno : 0, "a symlink in the kubelet directory");
	snprintf(p, sizeof(p), "%s/outside", kubelet);
	must(symlink(outside, p) ? -errno : 0, "a symlink in the kubelet directory");
	must(fz_write(outside, "file", "", 0), "the directory outside");
}

static void publish_records(void)
{
	char t[1200];

	fz_rmtree(agent.pub_dir);
	must(fy_mkdir_p(agent.pub_dir, 0700), "the publish directory");
	if (kind != FZ_CSI_NODE)
		return;
	/* Records of publishes that never happened: the block one's "device"
	 * is a regular file, which no loop call takes for a loop device; the
	 * mount one has none (its unpublish can succeed). */
	snprintf(t, sizeof(t), "%s/pods/p1/volumes/blk", kubelet);
	must(fy_pub_add(&agent, FZ_VOL1, "block", t, notdev), "a publish record");
	snprintf(t, sizeof(t), "%s/pods/p1/volumes/mnt", kubelet);
	must(fy_pub_add(&agent, FZ_VOL2, "mount", t, ""), "a publish record");
}

static bool is_fixture(const char *id)
{
	static const char *const ids[] = { FZ_VOL1, FZ_VOL2, FZ_SNAP1, FZ_SNAP2, FZ_SNAP3, FZ_SNAP4 };

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		if (!strcmp(id, ids[i]))
			return true;
	return false;
}

/* Remove every entry of dir but the fixtures' ("<id>.img"). */
static void sweep(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[1200], id[256];

	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(id, sizeof(id), "%s", de->d_name);
		if (strlen(id) > 4 && !strcmp(id + strlen(id) - 4, ".img")) {
			id[strlen(id) - 4] = 0;
			if (is_fixture(id))
				continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fz_rmtree(path);
	}
	if (d)
		closedir(d);
}

static bool volume_ok(const char *id)
{
	struct fy_cat_volume v;
	char path[1024];

	fy_vol_path(&agent, id, path, sizeof(path));
	return !fy_cat_volume_get(agent.cat, id, &v) && !access(path, F_OK);
}

static bool snapshot_ok(const char *id, bool local)
{
	struct fy_cat_snapshot s;
	char path[1024];

	fy_snap_path(&agent, id, path, sizeof(path));
	return !fy_cat_snap_get(agent.cat, id, &s) && s.state == FY_SNAP_READY && (!local || !access(path, F_OK));
}

void fz_csi_kubelet_check(const char *vol, const char *target)
{
	static const struct { const char *path, *vol; } targets[] = {
		{ "pods/p1/volumes/blk", FZ_VOL1 }, { "pods/p1/volumes/mnt", FZ_VOL2 },
	};
	static const char *const keep[] = {
		"pods", "pods/p1", "pods/p1/volumes", "pods/p1/volumes/full", "pods/p1/volumes/full/a-file",
		"pods/p1/volumes/kubelet-file", "pods/p1/volumes/other-driver", "pods/p1/link", "escape", "outside",
	};
	char p[1200];
	struct stat st;

	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", kubelet, keep[i]);
		if (lstat(p, &st))
			fz_fail("%s (never published) is gone: %s", p, strerror(errno));
	}
	snprintf(p, sizeof(p), "%s/file", outside);
	if (lstat(p, &st))
		fz_fail("%s (outside the kubelet directory) is gone", p);
	/* A publish target goes only with an unpublish of its own volume. */
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", kubelet, targets[i].path);
		if (lstat(p, &st) && !(vol && target && !strcmp(vol, targets[i].vol) && !strcmp(target, p)))
			fz_fail("%s, a target of %s, is gone after a call about %s at %s", p, targets[i].vol,
				vol ? vol : "no volume", target ? target : "no path");
	}
}

void fz_csi_reset(struct fy_agent *a)
{
	struct fy_cat_volume *v = NULL;
	struct fy_cat_snapshot *s = NULL;
	struct fy_cat_job *j = NULL;
	size_t n = 0;
	bool more;
	char err[512];

	(void)a;
	if (!fy_cat_volumes(agent.cat, &v, &n))
		for (size_t i = 0; i < n; i++)
			if (!is_fixture(v[i].id))
				fy_cat_volume_delete(agent.cat, v[i].id, err, sizeof(err));
	free(v);
	if (!fy_cat_snaps(agent.cat, NULL, NULL, "", 0, &s, &n, &more))
		for (size_t i = 0; i < n; i++)
			if (!is_fixture(s[i].id))
				fy_cat_snap_delete(agent.cat, s[i].id, err, sizeof(err));
	free(s);
	if (!fy_cat_jobs(agent.cat, &j, &n))
		for (size_t i = 0; i < n; i++)
			fy_cat_job_delete(agent.cat, j[i].snapshot_id, err, sizeof(err));
	free(j);
	sweep(agent.vol_dir);
	sweep(agent.snap_dir);
	sweep(agent.job_dir);
	sweep(agent.tmp_dir);
	if (!volume_ok(FZ_VOL1))
		put_volume(FZ_VOL1, "fuzz-vol-1", FY_ACCESS_BLOCK);
	if (kind == FZ_CSI_NODE) {
		if (!volume_ok(FZ_VOL2))
			put_volume(FZ_VOL2, "fuzz-vol-2", FY_ACCESS_MOUNT);
		make_kubelet();
		publish_records();
		return;
	}
	if (!snapshot_ok(FZ_SNAP1, true))
		put_snapshot(FZ_SNAP1, "fuzz-snap-1", T0 + 1, true, NULL, NULL);
	if (!snapshot_ok(FZ_SNAP2, true))
		put_snapshot(FZ_SNAP2, "fuzz-snap-2", T0 + 2, true, NULL, "a change in the third block");
	if (!snapshot_ok(FZ_SNAP3, false))
		put_snapshot(FZ_SNAP3, "fuzz-snap-3", T0 + 3, false, "33333333333333333333333333333333", NULL);
	if (!snapshot_ok(FZ_SNAP4, false))
		put_snapshot(FZ_SNAP4, "fuzz-snap-4", T0 + 4, false, "44444444444444444444444444444444", NULL);
	sweep(agent.pub_dir);
}

struct fy_agent *fz_csi_agent(enum fz_csi_kind k)
{
	struct fy_agent *a = &agent;
	const char *d = fz_dir();
	char err[512];

	if (a->cat)
		return a;
	/* The agent logs a line per event on stderr: thousands a second here.
	 * Its stream goes to /dev/null (libFuzzer keeps its own, the sanitizers
	 * and fz_fail write to fd 2); FERRY_FUZZ_VERBOSE keeps it. */
	if (!getenv("FERRY_FUZZ_VERBOSE")) {
		FILE *null = fopen("/dev/null", "w");

		if (null)
			stderr = null;
	}
	kind = k;
	snprintf(a->conf.node_id, sizeof(a->conf.node_id), FZ_NODE);
	snprintf(a->conf.state_dir, sizeof(a->conf.state_dir), "%s/state", d);
	snprintf(kubelet, sizeof(kubelet), "%s/kubelet", d);
	snprintf(a->conf.kubelet_dir, sizeof(a->conf.kubelet_dir), "%s", kubelet);
	snprintf(outside, sizeof(outside), "%s/outside", d);
	snprintf(repo_url, sizeof(repo_url), "%s/repo", d);
	snprintf(notdev, sizeof(notdev), "%s/not-a-device", d);
	a->conf.upload_workers = 1;
	a->conf.default_size = 1ull << 30;
	snprintf(a->vol_dir, sizeof(a->vol_dir), "%s/volumes", a->conf.state_dir);
	snprintf(a->snap_dir, sizeof(a->snap_dir), "%s/snapshots", a->conf.state_dir);
	snprintf(a->job_dir, sizeof(a->job_dir), "%s/jobs", a->conf.state_dir);
	snprintf(a->tmp_dir, sizeof(a->tmp_dir), "%s/tmp", a->conf.state_dir);
	snprintf(a->pub_dir, sizeof(a->pub_dir), "%s/publish", a->conf.state_dir);
	const char *dirs[] = { a->vol_dir, a->snap_dir, a->job_dir, a->tmp_dir, a->pub_dir };

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		must(fy_mkdir_p(dirs[i], 0700), dirs[i]);
	must(fz_write(d, "not-a-device", "", 0), "not-a-device");
	for (int i = 0; i < FY_STRIPES; i++) {
		pthread_mutex_init(&a->name_lock[i], NULL);
		pthread_mutex_init(&a->vol_lock[i], NULL);
	}
	must(fy_cat_open(a->conf.state_dir, &a->cat, err, sizeof(err)), err);
	if (kind == FZ_CSI_CONTROLLER) {
		make_repo();
		/* Ids the catalog lacks are looked up there (lookup.c), as
		 * lookup-repositories does. */
		if (!(a->conf.lookup[0] = strdup(repo_url)) || fy_lookup_init(a))
			fz_fail("fixture: out of memory");
		a->conf.nlookup = 1;
	}
	publish_records();
	fz_csi_reset(a);
	return a;
}
