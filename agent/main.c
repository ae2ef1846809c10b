/* ferry agent: configuration, start-up (catalog, reconciliation, uploads,
 * gRPC server) and a clean stop on SIGTERM/SIGINT. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "agent_priv.h"
#include "image.h"
#include "log.h"
#include "metrics.h"

/* At a stop, after the grace period: how long cancelled work may take to return. */
#define STOP_MARGIN_MS 1000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferry agent [--endpoint unix:///csi/csi.sock] [--node-id NAME] [--state-dir DIR]\n"
		"                   [--kubelet-dir DIR] [--config PATH] [--upload-workers N]\n"
		"                   [--local-snapshots N] [--policy-dir DIR] [--metrics-address ADDR]\n"
		"                   [--log-format text|json] [--debug]\n\n"
		"Serve the CSI Identity, Controller, Node and SnapshotMetadata services for\n"
		"node-local image volumes; snapshots are uploaded to the repositories their\n"
		"VolumeSnapshotClass names (docs/agent.md).\n\n"
		"  --endpoint URL       unix socket to serve (env CSI_ENDPOINT; default unix:///csi/csi.sock)\n"
		"  --node-id NAME       this node's name (env NODE_ID; default the host name)\n"
		"  --state-dir DIR      volumes, snapshots and the catalog (env FERRY_STATE_DIR;\n"
		"                       default /var/lib/ferry); XFS or btrfs for reflink snapshots\n"
		"  --kubelet-dir DIR    publish targets must lie under it (default /var/lib/kubelet)\n"
		"  --config PATH        'key = value' lines: the long options without '--',\n"
		"                       hook.NAME.pre / hook.NAME.post = COMMAND (freeze hooks),\n"
		"                       lookup-repositories = URL, ... (where snapshots this node\n"
		"                       did not cut are looked up); PATH a file, or a directory\n"
		"                       whose *.conf files are read in name order\n"
		"  --upload-workers N   snapshots uploaded at once (default 2)\n"
		"  --local-snapshots N  local clones kept per volume once uploaded (default 0: all)\n"
		"  --policy-dir DIR     backup policies: every *.yaml file there is a BackupPolicy\n"
		"                       (schedules, targets, retention, prune, drills, objectives;\n"
		"                       docs/operations.md), reread when the directory changes\n"
		"  --metrics-address ADDR  serve Prometheus metrics at http://ADDR/metrics: IP:PORT,\n"
		"                       :PORT (every IPv4 address) or [IPv6]:PORT (default: none)\n"
		"  --log-format F       text (default): TIME LEVEL message; json: one object a line\n"
		"  --debug              log every call, and gRPC's own messages\n\n"
		"Exit status: 0 after SIGTERM/SIGINT (within the grace period, 5 s, plus 1 s),\n"
		"1 when it cannot start (the socket, the state directory), 2 for bad usage.\n");
}

/* lookup-repositories = URL[, URL...]: appended (each line, each file of
 * a config directory adds its own), duplicates once. */
static int add_lookup(struct fy_agent_conf *c, const char *key, const char *val, char *err, size_t errlen)
{
	char *copy = strdup(val), *save = NULL;
	int ret = copy ? 0 : -ENOMEM;

	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !ret; t = strtok_r(NULL, ",", &save)) {
		bool dup = false;

		while (*t == ' ' || *t == '\t')
			t++;
		for (char *e = t + strlen(t); e > t && (e[-1] == ' ' || e[-1] == '\t'); )
			*--e = 0;
		if (!*t)
			continue;
		if ((strncmp(t, "file:///", 8) && strncmp(t, "s3://", 5)) || strlen(t) > 1024) {
			snprintf(err, errlen, "%s: '%.200s' is not a repository URL (file:///PATH or s3://BUCKET/PREFIX?...)",
				 key, t);
			ret = -EINVAL;
			break;
		}
		for (size_t i = 0; i < c->nlookup; i++)
			dup |= !strcmp(c->lookup[i], t);
		if (dup)
			continue;
		if (c->nlookup == FY_MAX_LOOKUP) {
			snprintf(err, errlen, "%s: more than %d repositories", key, FY_MAX_LOOKUP);
			ret = -EINVAL;
			break;
		}
		if (!(c->lookup[c->nlookup] = strdup(t)))
			ret = -ENOMEM;
		else
			c->nlookup++;
	}
	if (ret == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", key);
	free(copy);
	return ret;
}

static int set_key(struct fy_agent_conf *c, const char *key, const char *val, char *err, size_t errlen)
{
	char *end;

#define COPY(field)                                                                          \
	do {                                                                                 \
		if (strlen(val) >= sizeof(c->field)) {                                       \
			snprintf(err, errlen, "%s: too long", key);                          \
			return -ENAMETOOLONG;                                                \
		}                                                                            \
		strcpy(c->field, val);                                                       \
		return 0;                                                                    \
	} while (0)
#define UINT(field)                                                                          \
	do {                                                                                 \
		unsigned long v_ = strtoul(val, &end, 10);                                   \
		if (!*val || *end || v_ > 1024) {                                            \
			snprintf(err, errlen, "%s: '%s' is not a number from 0 to 1024", key, val); \
			return -EINVAL;                                                      \
		}                                                                            \
		c->field = (unsigned)v_;                                                     \
		return 0;                                                                    \
	} while (0)

	if (!strcmp(key, "endpoint"))
		COPY(endpoint);
	if (!strcmp(key, "node-id"))
		COPY(node_id);
	if (!strcmp(key, "state-dir"))
		COPY(state_dir);
	if (!strcmp(key, "kubelet-dir"))
		COPY(kubelet_dir);
	if (!strcmp(key, "policy-dir"))
		COPY(policy_dir);
	if (!strcmp(key, "upload-workers"))
		UINT(upload_workers);
	if (!strcmp(key, "local-snapshots"))
		UINT(local_snapshots);
	if (!strcmp(key, "rpc-workers"))
		UINT(rpc_workers);
	if (!strcmp(key, "metrics-address")) {
		if (*val && fy_metrics_address_check(val, err, errlen))
			return -EINVAL;
		COPY(metrics_address);
	}
	if (!strcmp(key, "log-format")) {
		if (strcmp(val, "text") && strcmp(val, "json")) {
			snprintf(err, errlen, "log-format: '%s' is neither text nor json", val);
			return -EINVAL;
		}
		c->log_json = !strcmp(val, "json");
		return 0;
	}
	if (!strcmp(key, "debug")) {
		c->debug = !strcmp(val, "true") || !strcmp(val, "1");
		return 0;
	}
	if (!strcmp(key, "lookup-repositories"))
		return add_lookup(c, key, val, err, errlen);
	if (!strncmp(key, "hook.", 5)) {
		const char *name = key + 5, *dot = strrchr(name, '.');
		struct fy_hook *h = NULL;
		size_t nl;

		if (!dot || (strcmp(dot, ".pre") && strcmp(dot, ".post")) || dot == name ||
		    (nl = (size_t)(dot - name)) >= sizeof(h->name)) {
			snprintf(err, errlen, "%s: a hook is hook.NAME.pre or hook.NAME.post", key);
			return -EINVAL;
		}
		for (size_t i = 0; i < c->nhooks; i++)
			if (strlen(c->hooks[i].name) == nl && !strncmp(c->hooks[i].name, name, nl))
				h = &c->hooks[i];
		if (!h) {
			if (c->nhooks == FY_MAX_HOOKS) {
				snprintf(err, errlen, "%s: more than %d hooks", key, FY_MAX_HOOKS);
				return -EINVAL;
			}
			h = &c->hooks[c->nhooks++];
			memcpy(h->name, name, nl);
			h->name[nl] = 0;
		}
		char **slot = !strcmp(dot, ".pre") ? &h->pre : &h->post;
		free(*slot);
		*slot = strdup(val);
		return *slot ? 0 : -ENOMEM;
	}
	snprintf(err, errlen, "unknown setting '%s'", key);
	return -EINVAL;
#undef COPY
#undef UINT
}

static void conf_free(struct fy_agent_conf *c)
{
	for (size_t i = 0; i < c->nhooks; i++) {
		free(c->hooks[i].pre);
		free(c->hooks[i].post);
	}
	for (size_t i = 0; i < c->nlookup; i++)
		free(c->lookup[i]);
}

static int read_config_file(struct fy_agent_conf *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[4096], e2[512];
	unsigned no = 0;
	int ret = 0;

	if (!f) {
		snprintf(err, errlen, "config %s: %s", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		char *k = line, *eq, *v, *end;

		no++;
		while (*k == ' ' || *k == '\t')
			k++;
		if (*k == '#' || *k == '\n' || !*k)
			continue;
		eq = strchr(k, '=');
		if (!eq) {
			snprintf(err, errlen, "config %s:%u: expected 'key = value'", path, no);
			ret = -EINVAL;
			break;
		}
		v = eq + 1;
		for (end = eq; end > k && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = 0;
		while (*v == ' ' || *v == '\t')
			v++;
		for (end = v + strlen(v); end > v && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t' ||
						      end[-1] == '\r'); end--)
			;
		*end = 0;
		ret = set_key(c, k, v, e2, sizeof(e2));
		if (ret) {
			snprintf(err, errlen, "config %s:%u: %s", path, no, e2);
			break;
		}
	}
	fclose(f);
	return ret;
}

static int conf_name(const struct dirent *de)
{
	size_t n = strlen(de->d_name);

	return de->d_name[0] != '.' && n > 5 && !strcmp(de->d_name + n - 5, ".conf");
}

/* A config file, or a directory whose *.conf files are read in name order
 * (a ConfigMap mounted as a directory: one key per concern, and a
 * kustomize component adds its own key). */
static int read_config(struct fy_agent_conf *c, const char *path, char *err, size_t errlen)
{
	struct dirent **de = NULL;
	struct stat st;
	char sub[1024];
	int n, ret = 0;

	if (stat(path, &st)) {
		ret = -errno;
		snprintf(err, errlen, "config %s: %s", path, strerror(errno));
		return ret;
	}
	if (!S_ISDIR(st.st_mode))
		return read_config_file(c, path, err, errlen);
	n = scandir(path, &de, conf_name, alphasort);
	if (n < 0) {
		ret = -errno;
		snprintf(err, errlen, "config %s: %s", path, strerror(errno));
		return ret;
	}
	for (int i = 0; i < n; i++) {
		snprintf(sub, sizeof(sub), "%s/%s", path, de[i]->d_name);
		if (!ret && (stat(sub, &st) || S_ISREG(st.st_mode)))
			ret = read_config_file(c, sub, err, errlen);
		free(de[i]);
	}
	free(de);
	return ret;
}

/* Why the agent cannot start (exit 1), once the log's format is known: a
 * JSON log stays JSON to its last line.  (Bad usage, exit 2, is always a
 * plain line, like every ferry command's.) */
static void start_failed(const char *err)
{
	if (fy_log_json())
		fy_log_error("ferry agent: %s", err);
	else
		fprintf(stderr, "ferry agent: %s\n", err);
}

/* The metrics of what the catalog knows, so that they are right from the
 * start (after a restart above all): each volume, and for each snapshot
 * uploaded (READY with a repository snapshot) of a volume still here, its
 * primary and required copies (ferry.csi.dev/copy-to: the upload failed
 * unless each got it).  Optional copies are not counted: the catalog does
 * not say whether a dropped one got it; their RPO shows from the next
 * upload on. */
static void metrics_seed(struct fy_agent *a)
{
	struct fy_cat_volume *v = NULL;
	struct fy_cat_snapshot *s = NULL;
	size_t nv = 0, n = 0, seeded = 0;
	bool more;

	if (fy_cat_volumes(a->cat, &v, &nv))
		return;
	for (size_t i = 0; i < nv; i++)
		fy_volume_metrics(a, &v[i]);
	if (!fy_cat_snaps(a->cat, NULL, NULL, "", 0, &s, &n, &more)) {
		for (size_t i = 0; i < n; i++) {
			struct fy_kv *kv = NULL;
			size_t nkv = 0;
			bool vol = false;
			double created = (double)s[i].created_ns / 1e9, ready = (double)s[i].ready_ns / 1e9;

			for (size_t k = 0; k < nv; k++)
				vol |= !strcmp(v[k].id, s[i].volume_id);
			if (!vol || s[i].state != FY_SNAP_READY || !s[i].repo_snapshot[0] ||
			    fy_cat_snap_params(a->cat, s[i].id, &kv, &nkv))
				continue;
			for (size_t k = 0; k < nkv; k++) {
				char *list, *save = NULL, shown[512];

				if (!strcmp(kv[k].key, FY_P_REPO) && kv[k].value[0]) {
					fy_url_shown(kv[k].value, shown, sizeof(shown));
					fy_metrics_target_seed(s[i].volume_id, shown, created, ready);
					seeded++;
				}
				if (strcmp(kv[k].key, FY_P_COPY) || !(list = strdup(kv[k].value)))
					continue;
				for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
					while (*t == ' ')
						t++;
					for (char *e = t + strlen(t); e > t && e[-1] == ' ';)
						*--e = 0;
					if (!*t)
						continue;
					fy_url_shown(t, shown, sizeof(shown));
					fy_metrics_target_seed(s[i].volume_id, shown, created, ready);
				}
				free(list);
			}
			fy_kv_free(kv, nkv);
		}
		free(s);
	}
	free(v);
	fy_log_debug("metrics: %zu volumes and %zu uploaded snapshots from the catalog", nv, seeded);
}

/* After a restart or kill -9: make the catalog agree with the disk. */
static void reconcile(struct fy_agent *a)
{
	struct fy_cat_snapshot *s = NULL;
	struct fy_cat_volume *v = NULL;
	size_t n = 0, nv = 0, fixed = 0;
	bool more;
	char path[1024], err[512];
	DIR *d;
	struct dirent *de;

	/* Half-written clones and restores are never catalogued: remove them
	 * (a restore from a repository writes VOLUME.ferry-restore beside the
	 * volume's image: no other process restores into this state dir). */
	const char *dirs[] = { a->vol_dir, a->snap_dir, a->tmp_dir };
	for (size_t i = 0; i < 3; i++) {
		d = opendir(dirs[i]);
		while (d && (de = readdir(d))) {
			size_t len = strlen(de->d_name), sl = strlen(".ferry-restore");

			if (strncmp(de->d_name, ".tmp", 4) && dirs[i] != a->tmp_dir &&
			    (len <= sl || strcmp(de->d_name + len - sl, ".ferry-restore")))
				continue;
			if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dirs[i], de->d_name);
			fy_rmtree(path);
			fy_log_info("reconcile: removed the leftover %s", path);
		}
		if (d)
			closedir(d);
	}
	if (!fy_cat_snaps(a->cat, NULL, NULL, "", 0, &s, &n, &more)) {
		for (size_t i = 0; i < n; i++) {
			fy_snap_path(a, s[i].id, path, sizeof(path));
			if (s[i].local && access(path, F_OK)) {
				s[i].local = false;
				if (s[i].state == FY_SNAP_CUT) {
					s[i].state = FY_SNAP_FAILED;
					snprintf(s[i].error, sizeof(s[i].error),
						 "the local clone %.400s is gone before its upload finished", path);
				}
				fy_cat_snap_update(a->cat, &s[i], err, sizeof(err));
				fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = s[i].volume_id, .snapshot = s[i].id },
					"reconcile: snapshot %s: its clone is gone", s[i].id);
				fixed++;
			}
		}
		free(s);
	}
	if (!fy_cat_volumes(a->cat, &v, &nv)) {
		for (size_t i = 0; i < nv; i++) {
			fy_vol_path(a, v[i].id, path, sizeof(path));
			if (access(path, F_OK))
				fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = v[i].id },
					"reconcile: volume %s (%s): its image %s is missing", v[i].id, v[i].name, path);
		}
		free(v);
	}
	fy_log_info("reconcile: %zu snapshots, %zu volumes; %zu fixed", n, nv, fixed);
}

static int setup_dirs(struct fy_agent *a, char *err, size_t errlen)
{
	struct { char *buf; const char *sub; } d[] = {
		{ a->vol_dir, "volumes" }, { a->snap_dir, "snapshots" }, { a->job_dir, "jobs" }, { a->tmp_dir, "tmp" },
		{ a->pub_dir, "publish" },
	};
	int ret = fy_mkdir_p(a->conf.state_dir, 0700);

	if (ret) {
		snprintf(err, errlen, "state dir %s: %s", a->conf.state_dir, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		snprintf(d[i].buf, sizeof(a->vol_dir), "%s/%s", a->conf.state_dir, d[i].sub);
		ret = fy_mkdir_p(d[i].buf, 0700);
		if (ret) {
			snprintf(err, errlen, "state dir: %s: %s", d[i].buf, strerror(-ret));
			return ret;
		}
	}
	ret = fy_img_reflink_capable(a->snap_dir);
	a->reflink = ret == 1;
	return 0;
}

const struct option fy_agent_options[] = {
	{ "endpoint", required_argument, NULL, 'e' },
	{ "node-id", required_argument, NULL, 'n' },
	{ "state-dir", required_argument, NULL, 's' },
	{ "kubelet-dir", required_argument, NULL, 'k' },
	{ "config", required_argument, NULL, 'c' },
	{ "upload-workers", required_argument, NULL, 'u' },
	{ "local-snapshots", required_argument, NULL, 'l' },
	{ "policy-dir", required_argument, NULL, 'p' },
	{ "metrics-address", required_argument, NULL, 'm' },
	{ "log-format", required_argument, NULL, 'f' },
	{ "debug", no_argument, NULL, 'd' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

int fy_agent_main(int argc, char **argv)
{
	const struct option *opts = fy_agent_options;
	struct fy_agent *a;
	struct fy_rpc_method *methods = NULL;
	struct fy_rpc_server *srv = NULL;
	const char *config = NULL, *env;
	char err[1024];
	sigset_t sigs;
	struct timespec t0;
	int64_t until_ms;
	int c, sig, ret = 1, left;
	/* Flags win over the environment, which wins over the config file. */
	struct flag { const char *key, *val; } flags[16];
	size_t nflags = 0;

	a = calloc(1, sizeof(*a));
	if (!a) {
		fprintf(stderr, "ferry agent: out of memory\n");
		return 1;
	}
	strcpy(a->conf.endpoint, "unix:///csi/csi.sock");
	strcpy(a->conf.state_dir, "/var/lib/ferry");
	strcpy(a->conf.kubelet_dir, "/var/lib/kubelet");
	a->conf.upload_workers = 2;
	a->conf.grace_ms = 5000;
	a->conf.default_size = 1ull << 30;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'd': a->conf.debug = true; break;
		case 'h': usage(stdout); free(a); return 0;
		case '?':
			/* The ferry command checked the words first (cli_check_args):
			 * reached only when the agent is started some other way. */
			fprintf(stderr, "ferry agent: bad option '%s' (see 'ferry agent --help')\n", argv[optind - 1]);
			free(a);
			return 2;
		default:
			for (size_t i = 0; opts[i].name; i++)
				if (opts[i].val == c && nflags < 16)
					flags[nflags++] = (struct flag){ opts[i].name, optarg };
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferry agent: unexpected argument '%s'\n", argv[optind]);
		free(a);
		return 2;
	}
	if (gethostname(a->conf.node_id, sizeof(a->conf.node_id) - 1))
		strcpy(a->conf.node_id, "localhost");
	if (config && read_config(&a->conf, config, err, sizeof(err)))
		goto usage_err;
	if ((env = getenv("CSI_ENDPOINT")) && *env && set_key(&a->conf, "endpoint", env, err, sizeof(err)))
		goto usage_err;
	if ((env = getenv("NODE_ID")) && *env && set_key(&a->conf, "node-id", env, err, sizeof(err)))
		goto usage_err;
	if ((env = getenv("FERRY_STATE_DIR")) && *env && set_key(&a->conf, "state-dir", env, err, sizeof(err)))
		goto usage_err;
	for (size_t i = 0; i < nflags; i++)
		if (set_key(&a->conf, flags[i].key, flags[i].val, err, sizeof(err)))
			goto usage_err;
	if (!fy_safe_token(a->conf.node_id, FY_NAME_MAX)) {
		snprintf(err, sizeof(err), "node id '%s' is not a valid name", a->conf.node_id);
		goto usage_err;
	}
	if (a->conf.state_dir[0] != '/' || a->conf.kubelet_dir[0] != '/') {
		snprintf(err, sizeof(err), "--state-dir and --kubelet-dir must be absolute paths");
		goto usage_err;
	}
	if (a->conf.policy_dir[0] && a->conf.policy_dir[0] != '/') {
		snprintf(err, sizeof(err), "--policy-dir must be an absolute path, not '%s'", a->conf.policy_dir);
		goto usage_err;
	}
	if (fy_rpc_endpoint_check(a->conf.endpoint, err, sizeof(err)))
		goto usage_err;
	fy_log_set_debug(a->conf.debug);
	fy_log_set_format(a->conf.log_json ? "json" : "text");

	/* Signals are taken by sigwait below, never by another thread (gRPC
	 * starts its own at the bind). */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < FY_STRIPES; i++) {
		pthread_mutex_init(&a->name_lock[i], NULL);
		pthread_mutex_init(&a->vol_lock[i], NULL);
	}
	size_t n = fy_identity_nmethods + fy_controller_nmethods + fy_node_nmethods + fy_snapmeta_nmethods, k = 0;
	methods = calloc(n, sizeof(*methods));
	if (!methods) {
		fprintf(stderr, "ferry agent: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < fy_identity_nmethods; i++)
		methods[k++] = fy_identity_methods[i];
	for (size_t i = 0; i < fy_controller_nmethods; i++)
		methods[k++] = fy_controller_methods[i];
	for (size_t i = 0; i < fy_node_nmethods; i++)
		methods[k++] = fy_node_methods[i];
	for (size_t i = 0; i < fy_snapmeta_nmethods; i++)
		methods[k++] = fy_snapmeta_methods[i];
	struct fy_rpc_opts ro = {
		.endpoint = a->conf.endpoint,
		.workers = a->conf.rpc_workers,
		.grace_ms = a->conf.grace_ms,
	};
	/* The socket first: a bad one is one line, before anything else is
	 * touched (or logged).  Clients wait in its backlog until we serve. */
	if (fy_rpc_bind(&ro, methods, n, a, &srv, err, sizeof(err))) {
		start_failed(err);
		goto out;
	}
	/* The metrics' address next: one in use is one line, before the state
	 * directory is touched. */
	if (a->conf.metrics_address[0] && fy_metrics_start(a->conf.metrics_address, err, sizeof(err))) {
		start_failed(err);
		goto out;
	}
	if (setup_dirs(a, err, sizeof(err)) || fy_cat_open(a->conf.state_dir, &a->cat, err, sizeof(err))) {
		start_failed(err);
		goto out;
	}
	fy_log_info("ferry agent %s: node %s, state dir %s (%s), endpoint %s", FERRY_VERSION, a->conf.node_id,
		    a->conf.state_dir, a->reflink ? "reflink snapshots" : "no reflink: snapshots are sparse copies",
		    a->conf.endpoint);
	reconcile(a);
	if (a->conf.metrics_address[0])
		metrics_seed(a);
	if (fy_lookup_init(a)) {
		start_failed("out of memory");
		goto out;
	}
	for (size_t i = 0; i < a->conf.nlookup; i++) {
		char shown[512];

		fy_url_shown(a->conf.lookup[i], shown, sizeof(shown));
		fy_log_info("snapshots this node did not cut are looked up in %s", shown);
	}
	if (fy_jobs_start(a, err, sizeof(err)) || fy_sched_start(a, err, sizeof(err)) ||
	    fy_rpc_serve(srv, err, sizeof(err))) {
		start_failed(err);
		goto out;
	}
	fy_log_info("serving %zu methods on %s", n, a->conf.endpoint);

	do
		ret = sigwait(&sigs, &sig);
	while (ret == EINTR);
	fy_log_info("%s: stopping (calls in flight finish within %u ms, uploads stop at a chunk and resume at the "
		    "next start)", strsignal(sig), a->conf.grace_ms);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	until_ms = (int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000 + a->conf.grace_ms + STOP_MARGIN_MS;
	atomic_store(&a->stopping, true);
	fy_jobs_quit(a); /* at once: uploads stop while calls finish */
	fy_sched_quit(a);
	left = fy_rpc_stop(srv) < 0;
	srv = NULL;
	left += fy_sched_stop(a, until_ms) > 0;
	left += fy_jobs_stop(a, until_ms) > 0;
	if (!left)
		fy_sched_free(a);
	if (left) {
		/* Threads stuck in system calls (a store that does not answer)
		 * still use the agent's state: close the catalog under its lock
		 * (a late caller waits for the exit) and end the process here,
		 * without the exit handlers of the libraries they are inside. */
		fy_cat_close_final(a->cat);
		fy_log_info("stopped (work blocked in system calls was left behind; uploads resume at the next "
			    "start)");
		fflush(stderr);
		_exit(0);
	}
	ret = 0;
out:
	fy_rpc_stop(srv);
	fy_sched_stop(a, -1);
	fy_jobs_stop(a, -1);
	fy_sched_free(a);
	fy_metrics_stop();
	if (a->cat)
		fy_cat_close(a->cat);
	fy_lookup_free(a);
	conf_free(&a->conf);
	free(methods);
	free(a);
	if (!ret)
		fy_log_info("stopped");
	return ret;
usage_err:
	fprintf(stderr, "ferry agent: %s\n", err);
	conf_free(&a->conf);
	free(a);
	return 2;
}
