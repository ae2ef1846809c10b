/* The agent's Prometheus metrics: see metrics.h; docs/operations.md lists
 * every metric.
 *
 * One registry under one mutex: callers add to it (no I/O, a few
 * comparisons and a realloc now and then), and a scrape renders it, under
 * the same mutex, into a growing buffer that libmicrohttpd sends once the
 * mutex is released.  Nothing is read from the catalog or a repository
 * while rendering: the numbers are what callers reported, and RPO is
 * computed from the newest creation time at the scrape's clock.
 *
 * The text exposition format, version 0.0.4: a HELP and a TYPE line per
 * family, label values escaped (backslash, double quote, newline) and made
 * valid UTF-8, histograms as cumulative _bucket{le=...} series ending with
 * le="+Inf", then _sum and _count. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"
#include "metrics.h"
#include "utf8.h"

#define NAME_MAX_LEN 256      /* a label value, at most (longer ones are cut) */
#define TARGET_MAX_LEN 512
#define MAX_ROWS 4096         /* rows per table: a bound whatever callers do */
#define NCODES 17             /* gRPC status codes 0..16 */

/* ---- histograms ---- */

#define HIST_MAX_BOUNDS 16
struct hist {
	const double *bounds; /* upper bounds, increasing; +Inf is implicit */
	size_t nb;
	uint64_t counts[HIST_MAX_BOUNDS]; /* per bucket, not cumulative */
	uint64_t count;
	double sum;
};

/* CSI calls: from a Probe (well under a millisecond) to a CreateVolume
 * restoring gigabytes from a repository (minutes). */
static const double csi_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
				     0.5,   1,      2.5,   5,    10,    30,   60,  300 };
/* The cut's frozen window: the freeze issue's target is 50 ms. */
static const double cut_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1,
				     0.25,  0.5,    1,     2.5,  5,     10 };
/* Uploads: seconds to hours. */
static const double upload_bounds[] = { 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600 };

#define NB(a) (sizeof(a) / sizeof((a)[0]))

static void hist_init(struct hist *h, const double *bounds, size_t nb)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nb = nb;
}

static void hist_observe(struct hist *h, double v)
{
	size_t i = 0;

	if (isnan(v) || v < 0)
		v = 0;
	while (i < h->nb && v > h->bounds[i])
		i++;
	if (i < h->nb)
		h->counts[i]++;
	h->count++;
	h->sum += v;
}

/* ---- the registry ---- */

struct csi_row {
	char service[64], method[64];
	uint64_t codes[NCODES];
	struct hist latency;
};

struct vol_row {
	char volume[NAME_MAX_LEN];
	bool info;
	char name[NAME_MAX_LEN], pvc_ns[NAME_MAX_LEN], pvc[NAME_MAX_LEN];
	bool has_pvc;
	uint64_t size;
	uint64_t ok, failed, cancelled;
	uint64_t bytes_read, bytes_stored, bytes_dedup, retries;
};

struct target_row {
	char volume[NAME_MAX_LEN], target[TARGET_MAX_LEN];
	bool has_snap;
	double newest_created, last_success;
	bool has_obj;
	double rpo_obj, rto_obj;
	bool has_drill;
	bool drill_ok;
	double drill_when, drill_restore, drill_bps;
	bool has_ok_drill;      /* RTO: the last drill that passed */
	double ok_restore;
	uint64_t ok_size;
};

struct retention_row {
	char target[TARGET_MAX_LEN];
	uint64_t forget_ok, forget_failed, forgot;
	uint64_t prune_ok, prune_failed, pruned_chunks, pruned_bytes;
};

struct policy_error_row {
	char policy[NAME_MAX_LEN], kind[32];
	uint64_t n;
};

/* A table of rows that grows. */
struct table {
	void *rows;
	size_t n, cap, size;
	bool full_said;
};

static struct {
	pthread_mutex_t mu;
	bool on;
	struct MHD_Daemon *mhd;
	double started;
	struct table csi, vols, targets, retention, perrs;
	struct hist cut, upload;
	unsigned queued;
	bool has_policies;
	unsigned policies;
	uint64_t scrapes;
} R = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.csi = { .size = sizeof(struct csi_row) },
	.vols = { .size = sizeof(struct vol_row) },
	.targets = { .size = sizeof(struct target_row) },
	.retention = { .size = sizeof(struct retention_row) },
	.perrs = { .size = sizeof(struct policy_error_row) },
};

static double now_unix(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A new zeroed row at the end of t, or NULL (no memory, or the table is at
 * its bound: said once in the log). */
static void *table_add(struct table *t, const char *what)
{
	char *row;

	if (t->n == MAX_ROWS) {
		if (!t->full_said)
			fy_log_warn("metrics: more than %d %s: the new ones are not counted", MAX_ROWS, what);
		t->full_said = true;
		return NULL;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		void *p = realloc(t->rows, cap * t->size);

		if (!p)
			return NULL;
		t->rows = p;
		t->cap = cap;
	}
	row = (char *)t->rows + t->n++ * t->size;
	memset(row, 0, t->size);
	return row;
}

#define ROW(t, type, i) (&((type *)(t).rows)[i])

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* The target as a label: a shown URL, never its query (which may name
 * credential files): callers pass shown URLs, this makes sure. */
static void target_label(char *dst, size_t len, const char *url)
{
	size_t q = strcspn(url ? url : "", "?");

	snprintf(dst, len, "%.*s", (int)q, url ? url : "");
}

static struct vol_row *vol_row(const char *volume, bool add)
{
	for (size_t i = 0; i < R.vols.n; i++)
		if (!strcmp(ROW(R.vols, struct vol_row, i)->volume, volume))
			return ROW(R.vols, struct vol_row, i);
	if (!add)
		return NULL;
	struct vol_row *v = table_add(&R.vols, "volumes");
	if (v)
		copy(v->volume, sizeof(v->volume), volume);
	return v;
}

static struct target_row *target_row(const char *volume, const char *target)
{
	char t[TARGET_MAX_LEN];

	target_label(t, sizeof(t), target);
	for (size_t i = 0; i < R.targets.n; i++) {
		struct target_row *r = ROW(R.targets, struct target_row, i);

		if (!strcmp(r->volume, volume) && !strcmp(r->target, t))
			return r;
	}
	struct target_row *r = table_add(&R.targets, "volume targets");
	if (r) {
		copy(r->volume, sizeof(r->volume), volume);
		copy(r->target, sizeof(r->target), t);
	}
	return r;
}

static struct retention_row *retention_row(const char *target)
{
	char t[TARGET_MAX_LEN];

	target_label(t, sizeof(t), target);
	for (size_t i = 0; i < R.retention.n; i++)
		if (!strcmp(ROW(R.retention, struct retention_row, i)->target, t))
			return ROW(R.retention, struct retention_row, i);
	struct retention_row *r = table_add(&R.retention, "retention targets");
	if (r)
		copy(r->target, sizeof(r->target), t);
	return r;
}

/* ---- what callers report ---- */

#define LOCKED_OR_RETURN()                       \
	do {                                     \
		pthread_mutex_lock(&R.mu);       \
		if (!R.on) {                     \
			pthread_mutex_unlock(&R.mu); \
			return;                  \
		}                                \
	} while (0)

void fy_metrics_csi_call(const char *method, int grpc_code, double seconds)
{
	char service[64] = "unknown", name[64] = "unknown";
	const char *slash;
	struct csi_row *row = NULL;

	/* "/csi.v1.Node/NodePublishVolume": service csi.v1.Node, method
	 * NodePublishVolume.  Anything else (an unknown method: its name is
	 * the client's, unbounded) is counted as "unknown". */
	if (method && method[0] == '/' && (slash = strchr(method + 1, '/')) && slash[1] &&
	    (size_t)(slash - method - 1) < sizeof(service) && strlen(slash + 1) < sizeof(name) &&
	    !strchr(slash + 1, '/')) {
		snprintf(service, sizeof(service), "%.*s", (int)(slash - method - 1), method + 1);
		snprintf(name, sizeof(name), "%s", slash + 1);
	}
	if (grpc_code < 0 || grpc_code >= NCODES)
		grpc_code = 2; /* UNKNOWN */
	LOCKED_OR_RETURN();
	for (size_t i = 0; i < R.csi.n && !row; i++) {
		struct csi_row *r = ROW(R.csi, struct csi_row, i);

		if (!strcmp(r->service, service) && !strcmp(r->method, name))
			row = r;
	}
	if (!row && (row = table_add(&R.csi, "CSI methods"))) {
		memcpy(row->service, service, sizeof(service));
		memcpy(row->method, name, sizeof(name));
		hist_init(&row->latency, csi_bounds, NB(csi_bounds));
	}
	if (row) {
		row->codes[grpc_code]++;
		hist_observe(&row->latency, seconds);
	}
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_cut(double seconds)
{
	LOCKED_OR_RETURN();
	hist_observe(&R.cut, seconds);
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_upload(const struct fy_metrics_upload *u)
{
	struct vol_row *v;

	if (!u || !u->volume)
		return;
	LOCKED_OR_RETURN();
	if ((v = vol_row(u->volume, true))) {
		if (!u->status)
			v->ok++;
		else if (u->status == -ECANCELED)
			v->cancelled++;
		else
			v->failed++;
		v->bytes_read += u->bytes_read;
		v->bytes_stored += u->bytes_stored;
		v->bytes_dedup += u->bytes_dedup;
		v->retries += u->retries;
	}
	if (!u->status)
		hist_observe(&R.upload, u->seconds);
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_upload_queue(unsigned n)
{
	LOCKED_OR_RETURN();
	R.queued = n;
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_volume(const struct fy_metrics_volume *in)
{
	struct vol_row *v;

	if (!in || !in->volume)
		return;
	LOCKED_OR_RETURN();
	if ((v = vol_row(in->volume, true))) {
		v->info = true;
		v->size = in->size;
		copy(v->name, sizeof(v->name), in->name);
		v->has_pvc = in->pvc_name && *in->pvc_name;
		copy(v->pvc_ns, sizeof(v->pvc_ns), in->pvc_namespace);
		copy(v->pvc, sizeof(v->pvc), in->pvc_name);
	}
	pthread_mutex_unlock(&R.mu);
}

/* Remove the rows whose volume is volume from a table of rows that begin
 * with their volume's name. */
static void table_drop_volume(struct table *t, const char *volume)
{
	size_t k = 0;

	for (size_t i = 0; i < t->n; i++) {
		char *row = (char *)t->rows + i * t->size;

		if (!strcmp(row, volume))
			continue;
		if (k != i)
			memcpy((char *)t->rows + k * t->size, row, t->size);
		k++;
	}
	t->n = k;
}

void fy_metrics_volume_gone(const char *volume)
{
	if (!volume)
		return;
	LOCKED_OR_RETURN();
	table_drop_volume(&R.vols, volume);
	table_drop_volume(&R.targets, volume);
	pthread_mutex_unlock(&R.mu);
}

static void target_snapshot(const char *volume, const char *target, double created, double uploaded)
{
	struct target_row *r;

	if (!volume || !target)
		return;
	LOCKED_OR_RETURN();
	if ((r = target_row(volume, target))) {
		/* The newest snapshot: an older one landing late does not move RPO back. */
		if (!r->has_snap || created > r->newest_created)
			r->newest_created = created;
		if (!r->has_snap || uploaded > r->last_success)
			r->last_success = uploaded;
		r->has_snap = true;
	}
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_target_snapshot(const char *volume, const char *target, double created_unix_s)
{
	target_snapshot(volume, target, created_unix_s, now_unix());
}

void fy_metrics_target_seed(const char *volume, const char *target, double created_unix_s, double uploaded_unix_s)
{
	target_snapshot(volume, target, created_unix_s, uploaded_unix_s);
}

void fy_metrics_objectives(const char *volume, const char *target, double rpo_s, double rto_s)
{
	struct target_row *r;

	if (!volume || !target)
		return;
	LOCKED_OR_RETURN();
	if ((r = target_row(volume, target))) {
		r->has_obj = true;
		r->rpo_obj = rpo_s > 0 ? rpo_s : 0;
		r->rto_obj = rto_s > 0 ? rto_s : 0;
	}
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_drill(const char *volume, const char *target, bool ok, double when_unix_s, double restore_s,
		      double bytes_per_s, uint64_t size)
{
	struct target_row *r;

	if (!volume || !target)
		return;
	LOCKED_OR_RETURN();
	if ((r = target_row(volume, target))) {
		r->has_drill = true;
		r->drill_ok = ok;
		r->drill_when = when_unix_s;
		r->drill_restore = restore_s;
		r->drill_bps = bytes_per_s;
		if (ok) {
			r->has_ok_drill = true;
			r->ok_restore = restore_s;
			r->ok_size = size;
		}
	}
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_forget(const char *target, int status, unsigned snapshots_removed)
{
	struct retention_row *r;

	if (!target)
		return;
	LOCKED_OR_RETURN();
	if ((r = retention_row(target))) {
		if (status)
			r->forget_failed++;
		else
			r->forget_ok++;
		r->forgot += snapshots_removed;
	}
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_prune(const char *target, int status, uint64_t chunks_removed, uint64_t bytes_removed)
{
	struct retention_row *r;

	if (!target)
		return;
	LOCKED_OR_RETURN();
	if ((r = retention_row(target))) {
		if (status)
			r->prune_failed++;
		else
			r->prune_ok++;
		r->pruned_chunks += chunks_removed;
		r->pruned_bytes += bytes_removed;
	}
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_policies(unsigned in_force)
{
	LOCKED_OR_RETURN();
	R.has_policies = true;
	R.policies = in_force;
	pthread_mutex_unlock(&R.mu);
}

void fy_metrics_policy_error(const char *policy, const char *kind)
{
	struct policy_error_row *row = NULL;

	if (!policy || !kind)
		return;
	LOCKED_OR_RETURN();
	for (size_t i = 0; i < R.perrs.n && !row; i++) {
		struct policy_error_row *r = ROW(R.perrs, struct policy_error_row, i);

		if (!strncmp(r->policy, policy, sizeof(r->policy) - 1) && !strncmp(r->kind, kind, sizeof(r->kind) - 1))
			row = r;
	}
	if (!row && (row = table_add(&R.perrs, "policy error kinds"))) {
		copy(row->policy, sizeof(row->policy), policy);
		copy(row->kind, sizeof(row->kind), kind);
	}
	if (row)
		row->n++;
	pthread_mutex_unlock(&R.mu);
}

/* ---- rendering ---- */

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void bputs(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		bputs(b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		b->oom = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	bputs(b, big, (size_t)n);
	free(big);
}

/* A label value: backslash, double quote and newline escaped; bytes that
 * are not well-formed UTF-8 replaced by U+FFFD (the format is UTF-8). */
static void blabel(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	for (size_t i = 0; i < n;) {
		size_t seq;

		if (p[i] == '\\')
			bputs(b, "\\\\", 2), i++;
		else if (p[i] == '"')
			bputs(b, "\\\"", 2), i++;
		else if (p[i] == '\n')
			bputs(b, "\\n", 2), i++;
		else if (p[i] < 0x80)
			bputs(b, (const char *)p + i, 1), i++;
		else if ((seq = fy_utf8_seq(p + i, n - i)))
			bputs(b, (const char *)p + i, seq), i += seq;
		else
			bputs(b, "\xef\xbf\xbd", 3), i++;
	}
}

/* A sample value: integers exactly, others with 15 significant digits. */
static void bvalue(struct buf *b, double v)
{
	if (isnan(v))
		bputs(b, "NaN", 3);
	else if (isinf(v))
		bputs(b, v > 0 ? "+Inf" : "-Inf", 4);
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		bprintf(b, "%.0f", v);
	else
		bprintf(b, "%.15g", v);
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k1="v1",k2="v2"} value; labels: NULL-terminated key, value pairs. */
static void sample(struct buf *b, const char *name, const char *const *labels, double v)
{
	bputs(b, name, strlen(name));
	if (labels && labels[0]) {
		bputs(b, "{", 1);
		for (size_t i = 0; labels[i]; i += 2) {
			bprintf(b, "%s%s=\"", i ? "," : "", labels[i]);
			blabel(b, labels[i + 1]);
			bputs(b, "\"", 1);
		}
		bputs(b, "}", 1);
	}
	bputs(b, " ", 1);
	bvalue(b, v);
	bputs(b, "\n", 1);
}

static void sample_u64(struct buf *b, const char *name, const char *const *labels, uint64_t v)
{
	bputs(b, name, strlen(name));
	if (labels && labels[0]) {
		bputs(b, "{", 1);
		for (size_t i = 0; labels[i]; i += 2) {
			bprintf(b, "%s%s=\"", i ? "," : "", labels[i]);
			blabel(b, labels[i + 1]);
			bputs(b, "\"", 1);
		}
		bputs(b, "}", 1);
	}
	bprintf(b, " %" PRIu64 "\n", v);
}

/* The series of one histogram: labels (NULL-terminated pairs, up to 4) plus le. */
static void histogram(struct buf *b, const char *name, const char *const *labels, const struct hist *h)
{
	const char *l[12];
	char le[32], series[128];
	size_t n = 0;
	uint64_t cum = 0;

	for (; labels && labels[n] && n < 8; n += 2)
		l[n] = labels[n], l[n + 1] = labels[n + 1];
	l[n] = "le";
	l[n + 2] = NULL;
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (size_t i = 0; i < h->nb; i++) {
		cum += h->counts[i];
		snprintf(le, sizeof(le), "%g", h->bounds[i]);
		l[n + 1] = le;
		sample_u64(b, series, l, cum);
	}
	l[n + 1] = "+Inf";
	sample_u64(b, series, l, h->count);
	l[n] = NULL;
	snprintf(series, sizeof(series), "%s_sum", name);
	sample(b, series, l, h->sum);
	snprintf(series, sizeof(series), "%s_count", name);
	sample_u64(b, series, l, h->count);
}

static const char *const code_names[NCODES] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

/* Everything, at the clock's now (R.mu held). */
static void render(struct buf *b, double now)
{
	struct vol_row *v;
	struct target_row *t;

	family(b, "ferry_build_info", "gauge", "The ferry agent's version (always 1).");
	sample(b, "ferry_build_info", (const char *const[]){ "version", FERRY_VERSION, NULL }, 1);
	family(b, "ferry_start_time_seconds", "gauge", "When the agent started (Unix time).");
	sample(b, "ferry_start_time_seconds", NULL, R.started);
	family(b, "ferry_metrics_scrapes_total", "counter", "Scrapes of /metrics served, this one included.");
	sample_u64(b, "ferry_metrics_scrapes_total", NULL, R.scrapes);

	/* CSI calls */
	family(b, "ferry_csi_requests_total", "counter",
	       "CSI calls answered, by service, method and gRPC status code.");
	for (size_t i = 0; i < R.csi.n; i++) {
		struct csi_row *r = ROW(R.csi, struct csi_row, i);

		for (int c = 0; c < NCODES; c++)
			if (r->codes[c])
				sample_u64(b, "ferry_csi_requests_total",
					   (const char *const[]){ "service", r->service, "method", r->method, "code",
								  code_names[c], NULL },
					   r->codes[c]);
	}
	family(b, "ferry_csi_request_duration_seconds", "histogram",
	       "How long CSI calls took, from their arrival to their answer, by service and method.");
	for (size_t i = 0; i < R.csi.n; i++) {
		struct csi_row *r = ROW(R.csi, struct csi_row, i);

		histogram(b, "ferry_csi_request_duration_seconds",
			  (const char *const[]){ "service", r->service, "method", r->method, NULL }, &r->latency);
	}

	/* Snapshots and uploads */
	family(b, "ferry_snapshot_cut_seconds", "histogram",
	       "The cut of a snapshot: how long the filesystem stayed frozen (or the clone took, unfrozen).");
	histogram(b, "ferry_snapshot_cut_seconds", NULL, &R.cut);
	family(b, "ferry_uploads_total", "counter",
	       "Upload attempts of snapshots, by volume and result (success, failure, cancelled).");
	for (size_t i = 0; i < R.vols.n; i++) {
		v = ROW(R.vols, struct vol_row, i);
		const char *res[] = { "success", "failure", "cancelled" };
		uint64_t n[] = { v->ok, v->failed, v->cancelled };

		for (size_t k = 0; k < 3; k++)
			sample_u64(b, "ferry_uploads_total",
				   (const char *const[]){ "volume", v->volume, "result", res[k], NULL }, n[k]);
	}
	struct { const char *name, *help; size_t off; } vc[] = {
		{ "ferry_upload_read_bytes_total", "Bytes read from the volume's snapshots by uploads.",
		  offsetof(struct vol_row, bytes_read) },
		{ "ferry_upload_stored_bytes_total",
		  "Bytes uploads stored in repositories (new chunks, compressed and sealed).",
		  offsetof(struct vol_row, bytes_stored) },
		{ "ferry_upload_deduplicated_bytes_total",
		  "Bytes uploads read that the repository already held (not stored again).",
		  offsetof(struct vol_row, bytes_dedup) },
		{ "ferry_upload_store_retries_total", "Store requests uploads had to send again (S3 retries).",
		  offsetof(struct vol_row, retries) },
	};
	for (size_t k = 0; k < NB(vc); k++) {
		family(b, vc[k].name, "counter", vc[k].help);
		for (size_t i = 0; i < R.vols.n; i++) {
			v = ROW(R.vols, struct vol_row, i);
			sample_u64(b, vc[k].name, (const char *const[]){ "volume", v->volume, NULL },
				   *(const uint64_t *)((const char *)v + vc[k].off));
		}
	}
	family(b, "ferry_upload_duration_seconds", "histogram", "How long successful uploads took.");
	histogram(b, "ferry_upload_duration_seconds", NULL, &R.upload);
	family(b, "ferry_uploads_queued", "gauge", "Uploads waiting to run (due, or waiting for a retry).");
	sample_u64(b, "ferry_uploads_queued", NULL, R.queued);

	/* Volumes */
	family(b, "ferry_volume_info", "gauge", "A volume of this node and its Kubernetes names (always 1).");
	family(b, "ferry_volume_size_bytes", "gauge", "A volume's size.");
	for (size_t i = 0; i < R.vols.n; i++) {
		v = ROW(R.vols, struct vol_row, i);
		if (!v->info)
			continue;
		if (v->has_pvc)
			sample(b, "ferry_volume_info",
			       (const char *const[]){ "volume", v->volume, "name", v->name, "pvc_namespace", v->pvc_ns,
						      "pvc", v->pvc, NULL },
			       1);
		else
			sample(b, "ferry_volume_info", (const char *const[]){ "volume", v->volume, "name", v->name, NULL },
			       1);
	}
	for (size_t i = 0; i < R.vols.n; i++) {
		v = ROW(R.vols, struct vol_row, i);
		if (v->info)
			sample_u64(b, "ferry_volume_size_bytes", (const char *const[]){ "volume", v->volume, NULL },
				   v->size);
	}

	/* Per volume and target: RPO, RTO, drills, objectives */
#define TL(r) ((const char *const[]){ "volume", (r)->volume, "target", (r)->target, NULL })
#define EACH_TARGET(cond) \
	for (size_t i = 0; i < R.targets.n; i++) \
		if ((t = ROW(R.targets, struct target_row, i)) && (cond))
	family(b, "ferry_last_upload_success_timestamp_seconds", "gauge",
	       "When a snapshot of the volume last became complete on the target (Unix time).");
	EACH_TARGET(t->has_snap) sample(b, "ferry_last_upload_success_timestamp_seconds", TL(t), t->last_success);
	family(b, "ferry_newest_snapshot_timestamp_seconds", "gauge",
	       "Creation time of the newest snapshot of the volume complete on the target (Unix time).");
	EACH_TARGET(t->has_snap) sample(b, "ferry_newest_snapshot_timestamp_seconds", TL(t), t->newest_created);
	family(b, "ferry_rpo_seconds", "gauge",
	       "Recovery point: now minus the creation time of the newest snapshot complete on the target.");
	EACH_TARGET(t->has_snap) sample(b, "ferry_rpo_seconds", TL(t), now > t->newest_created ? now - t->newest_created : 0);
	family(b, "ferry_rpo_objective_seconds", "gauge", "The RPO objective of the volume on the target (0: none).");
	EACH_TARGET(t->has_obj) sample(b, "ferry_rpo_objective_seconds", TL(t), t->rpo_obj);
	family(b, "ferry_rto_objective_seconds", "gauge", "The RTO objective of the volume on the target (0: none).");
	EACH_TARGET(t->has_obj) sample(b, "ferry_rto_objective_seconds", TL(t), t->rto_obj);
	family(b, "ferry_drill_last_success", "gauge",
	       "Whether the last restore drill of the volume from the target passed (1) or failed (0).");
	EACH_TARGET(t->has_drill) sample(b, "ferry_drill_last_success", TL(t), t->drill_ok ? 1 : 0);
	family(b, "ferry_drill_last_timestamp_seconds", "gauge",
	       "When the last restore drill of the volume from the target ended (Unix time).");
	EACH_TARGET(t->has_drill) sample(b, "ferry_drill_last_timestamp_seconds", TL(t), t->drill_when);
	family(b, "ferry_drill_last_restore_seconds", "gauge",
	       "The restore time the last drill of the volume from the target measured.");
	EACH_TARGET(t->has_drill) sample(b, "ferry_drill_last_restore_seconds", TL(t), t->drill_restore);
	family(b, "ferry_drill_last_throughput_bytes_per_second", "gauge",
	       "The restore throughput of the last drill (the snapshot's data over its restore time).");
	EACH_TARGET(t->has_drill) sample(b, "ferry_drill_last_throughput_bytes_per_second", TL(t), t->drill_bps);
	family(b, "ferry_rto_seconds", "gauge",
	       "Recovery time: the restore time of the last drill of the volume from the target that passed.");
	EACH_TARGET(t->has_ok_drill) sample(b, "ferry_rto_seconds", TL(t), t->ok_restore);
	family(b, "ferry_rto_estimate_seconds", "gauge",
	       "Recovery time estimated for the volume's current size: the last passing drill's restore time "
	       "scaled by the current size over the drilled size.");
	EACH_TARGET(t->has_ok_drill) {
		struct vol_row *vr = vol_row(t->volume, false);
		double est = t->ok_restore;

		if (vr && vr->info && vr->size && t->ok_size)
			est = t->ok_restore * ((double)vr->size / (double)t->ok_size);
		sample(b, "ferry_rto_estimate_seconds", TL(t), est);
	}
#undef EACH_TARGET
#undef TL

	/* Retention */
	family(b, "ferry_forget_runs_total", "counter", "Retention (forget) runs on a target, by result.");
	family(b, "ferry_forget_removed_snapshots_total", "counter", "Snapshots retention removed from a target.");
	family(b, "ferry_prune_runs_total", "counter", "Prune runs on a target, by result.");
	family(b, "ferry_prune_removed_chunks_total", "counter", "Chunks prune removed from a target.");
	family(b, "ferry_prune_removed_bytes_total", "counter", "Bytes prune removed from a target.");
	for (size_t i = 0; i < R.retention.n; i++) {
		struct retention_row *r = ROW(R.retention, struct retention_row, i);

		sample_u64(b, "ferry_forget_runs_total",
			   (const char *const[]){ "target", r->target, "result", "success", NULL }, r->forget_ok);
		sample_u64(b, "ferry_forget_runs_total",
			   (const char *const[]){ "target", r->target, "result", "failure", NULL }, r->forget_failed);
		sample_u64(b, "ferry_forget_removed_snapshots_total", (const char *const[]){ "target", r->target, NULL },
			   r->forgot);
		sample_u64(b, "ferry_prune_runs_total",
			   (const char *const[]){ "target", r->target, "result", "success", NULL }, r->prune_ok);
		sample_u64(b, "ferry_prune_runs_total",
			   (const char *const[]){ "target", r->target, "result", "failure", NULL }, r->prune_failed);
		sample_u64(b, "ferry_prune_removed_chunks_total", (const char *const[]){ "target", r->target, NULL },
			   r->pruned_chunks);
		sample_u64(b, "ferry_prune_removed_bytes_total", (const char *const[]){ "target", r->target, NULL },
			   r->pruned_bytes);
	}

	/* Policies */
	family(b, "ferry_policies_in_force", "gauge", "Backup policies in force.");
	if (R.has_policies)
		sample_u64(b, "ferry_policies_in_force", NULL, R.policies);
	family(b, "ferry_policy_errors_total", "counter", "Errors of backup policies, by policy and kind.");
	for (size_t i = 0; i < R.perrs.n; i++) {
		struct policy_error_row *r = ROW(R.perrs, struct policy_error_row, i);

		sample_u64(b, "ferry_policy_errors_total",
			   (const char *const[]){ "policy", r->policy, "kind", r->kind, NULL }, r->n);
	}
}

/* ---- the HTTP server ---- */

static enum MHD_Result queue_text(struct MHD_Connection *c, unsigned status, const char *text, const char *allow)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

char *fy_metrics_text(size_t *len)
{
	struct buf b = { 0 };

	pthread_mutex_lock(&R.mu);
	if (R.on)
		render(&b, now_unix());
	pthread_mutex_unlock(&R.mu);
	if (b.oom || !b.p) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_size, void **state)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	size_t len = 0;
	char *text;

	(void)cls, (void)version, (void)upload_data;
	if (!*state) { /* the headers: answer once the request is complete */
		*state = c;
		return MHD_YES;
	}
	if (*upload_size) { /* a body we do not want */
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics"))
		return queue_text(c, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n", NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return queue_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET /metrics\n", "GET, HEAD");
	pthread_mutex_lock(&R.mu);
	R.scrapes++;
	pthread_mutex_unlock(&R.mu);
	text = fy_metrics_text(&len);
	if (!text)
		return queue_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no metrics (stopping, or out of memory)\n", NULL);
	resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* libmicrohttpd's own messages, into our log. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = 0;
	fy_log_debug("metrics: libmicrohttpd: %s", msg);
}

/* Parse addr into sa (IPv4 or IPv6), without touching anything. */
static int parse_address(const char *addr, struct sockaddr_storage *sa, socklen_t *salen, char *err, size_t errlen)
{
	char host[64];
	const char *port, *colon;
	unsigned long p;
	char *end;

	memset(sa, 0, sizeof(*sa));
	if (!addr || !*addr) {
		snprintf(err, errlen, "--metrics-address: empty (IP:PORT, :PORT or [IPv6]:PORT)");
		return -EINVAL;
	}
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (!close || close[1] != ':' || (size_t)(close - addr - 1) >= sizeof(host))
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(close - addr - 1), addr + 1);
		port = close + 2;
	} else {
		colon = strchr(addr, ':');
		if (!colon || strchr(colon + 1, ':') || (size_t)(colon - addr) >= sizeof(host))
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		port = colon + 1;
	}
	if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    (p = strtoul(port, &end, 10)) > 65535) {
		snprintf(err, errlen, "--metrics-address '%.200s': the port must be a number from 0 to 65535", addr);
		return -EINVAL;
	}
	if (addr[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			snprintf(err, errlen, "--metrics-address '%.200s': '%s' is not an IPv6 address", addr, host);
			return -EINVAL;
		}
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		*salen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;

		if (!*host)
			s4->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			snprintf(err, errlen, "--metrics-address '%.200s': '%s' is not an IPv4 address (IP:PORT, :PORT "
				 "or [IPv6]:PORT)", addr, host);
			return -EINVAL;
		}
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		*salen = sizeof(*s4);
	}
	return 0;
bad:
	snprintf(err, errlen, "--metrics-address '%.200s': not IP:PORT, :PORT or [IPv6]:PORT", addr);
	return -EINVAL;
}

int fy_metrics_address_check(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t len;

	return parse_address(addr, &sa, &len, err, errlen);
}

static void table_free(struct table *t)
{
	free(t->rows);
	*t = (struct table){ .size = t->size };
}

static void registry_free(void)
{
	table_free(&R.csi);
	table_free(&R.vols);
	table_free(&R.targets);
	table_free(&R.retention);
	table_free(&R.perrs);
}

int fy_metrics_start(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage sa, bound;
	socklen_t salen, blen = sizeof(bound);
	char shown[80], ip[INET6_ADDRSTRLEN];
	struct MHD_Daemon *d;
	int fd, one = 1, ret;

	ret = parse_address(addr, &sa, &salen, err, errlen);
	if (ret)
		return ret;
	/* Our own socket: bind's errno says exactly why it failed (libmicrohttpd
	 * would only say that it could not start). */
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "--metrics-address %s: socket: %s", addr, strerror(errno));
		return ret;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* not in use: TIME_WAIT of a last run */
	if (bind(fd, (struct sockaddr *)&sa, salen) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen)) {
		ret = -errno;
		snprintf(err, errlen, "--metrics-address %s: %s%s", addr, strerror(errno),
			 errno == EADDRINUSE ? " (another process listens there)" : "");
		close(fd);
		return ret;
	}
	if (bound.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&bound)->sin6_addr, ip, sizeof(ip));
		snprintf(shown, sizeof(shown), "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&bound)->sin_addr, ip, sizeof(ip));
		snprintf(shown, sizeof(shown), "%s:%u", ip, ntohs(((struct sockaddr_in *)&bound)->sin_port));
	}
	pthread_mutex_lock(&R.mu);
	if (R.on) {
		pthread_mutex_unlock(&R.mu);
		close(fd);
		snprintf(err, errlen, "--metrics-address %s: the metrics are served already", addr);
		return -EALREADY;
	}
	registry_free();
	hist_init(&R.cut, cut_bounds, NB(cut_bounds));
	hist_init(&R.upload, upload_bounds, NB(upload_bounds));
	R.queued = 0;
	R.has_policies = false;
	R.policies = 0;
	R.scrapes = 0;
	R.started = now_unix();
	R.on = true;
	pthread_mutex_unlock(&R.mu);
	/* One thread polls the socket and renders: scrapes are rare and cheap,
	 * and a slow client is bounded by the connection timeout. */
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, handle, NULL,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first: it says why the others fail */
			     MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!d) {
		pthread_mutex_lock(&R.mu);
		R.on = false;
		registry_free();
		pthread_mutex_unlock(&R.mu);
		close(fd);
		snprintf(err, errlen, "--metrics-address %s: the HTTP server did not start (--debug shows why)", addr);
		return -EIO;
	}
	R.mhd = d;
	fy_log_info("metrics: serving http://%s/metrics", shown);
	return 0;
}

void fy_metrics_stop(void)
{
	struct MHD_Daemon *d;

	pthread_mutex_lock(&R.mu);
	d = R.mhd;
	R.mhd = NULL;
	pthread_mutex_unlock(&R.mu);
	if (d)
		MHD_stop_daemon(d); /* joins its thread; closes the socket */
	pthread_mutex_lock(&R.mu);
	R.on = false;
	registry_free();
	pthread_mutex_unlock(&R.mu);
}
