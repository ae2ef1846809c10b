/* ferry status: RPO and RTO per volume and repository (mover/status.c). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ferry_drill.h"

#define EXIT_BREACH 3
#define MAX_COPIES 15

static const char status_help[] =
	"usage: ferry status --repo URL [--copy URL ...] [--volume NAME] [--rpo DURATION]\n"
	"                    [--rto DURATION] [--json]\n\n"
	"For each volume and each repository given (the primary, then each --copy): the\n"
	"newest snapshot on that repository and when it was taken; RPO, the age of that\n"
	"snapshot (what would be lost if the volume were lost now); the last restore\n"
	"drill recorded there ('ferry drill --record') and RTO, the restore time of the\n"
	"last drill that passed, with an estimate for the data of the newest snapshot at\n"
	"that drill's throughput.  Durations are written 90s, 15m, 1h, 7d (or 1h30m).\n\n"
	"Exit status: 0; 3 when an objective is breached (each breach is one line on\n"
	"stderr); 1 when a repository cannot be read (the others are still shown) or\n"
	"--volume names a volume none of them holds; 2 for bad usage.  --quiet prints\n"
	"no table, only those lines.  (FERRY_TEST_NOW=SECONDS replaces the clock: tests\n"
	"only.)\n\n"
	"  --copy URL           also a copy of the repository (repeatable)\n"
	"  --volume NAME        only this volume\n"
	"  --rpo D              objective: a volume whose newest snapshot on a repository\n"
	"                       is older than D, or that has none there, is a breach\n"
	"  --rto D              objective: a volume whose RTO estimate on a repository is\n"
	"                       above D, or that has no passing drill recorded there, is a\n"
	"                       breach\n"
	CLI_COMMON_HELP;

enum {
	OPT_S_COPY = 256,
	OPT_S_VOLUME,
	OPT_S_RPO,
	OPT_S_RTO,
};

struct target {
	const char *url;
	struct fy_repo *repo;
	bool ok;
	char error[512];
	struct fy_status st;
};

/* "now": the clock, or FERRY_TEST_NOW (Unix seconds; tests only, to drive RPO without waiting). */
static int64_t now_ns(void)
{
	const char *t = getenv("FERRY_TEST_NOW");
	struct timespec ts;

	if (t && *t) {
		char *end;
		double v = strtod(t, &end);

		if (!*end && v > 0)
			return (int64_t)(v * 1e9);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const struct fy_volume_status *find(const struct fy_status *st, const char *volume)
{
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->v[i].volume, volume))
			return &st->v[i];
	return NULL;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "0.52 s" below a minute, else "1h2m". */
static void fmt_secs(double s, char *out, size_t len)
{
	if (s < 60)
		snprintf(out, len, "%.2fs", s);
	else
		fy_duration_format((int64_t)(s + 0.5), out, len);
}

static void json_drill(const struct fy_drill_record *d)
{
	char hex[2 * FY_SNAP_ID_LEN + 1], t[40];
	double mbps = d->restore_seconds > 0 ? d->bytes / d->restore_seconds / 1e6 : 0;

	fy_hex(d->snapshot_id, FY_SNAP_ID_LEN, hex);
	cli_time(d->started_unix_nano, t, sizeof(t), true);
	printf("{\"time\":\"%s\",\"snapshot\":\"%s\",\"result\":\"%s\",\"stage\":", t, hex, d->ok ? "ok" : "failed");
	if (d->ok)
		printf("null");
	else
		cli_json_string(stdout, d->stage);
	printf(",\"reason\":");
	cli_json_string(stdout, d->reason);
	printf(",\"size\":%llu,\"bytes\":%llu,\"restore_s\":%.3f,\"throughput_mbps\":%.1f,\"verify_s\":%.3f,"
	       "\"check_s\":", (unsigned long long)d->size, (unsigned long long)d->bytes, d->restore_seconds, mbps,
	       d->verify_seconds);
	if (d->check_ran)
		printf("%.3f,\"check_status\":%d", d->check_seconds, d->check_status);
	else
		printf("null,\"check_status\":null");
	printf(",\"host\":");
	cli_json_string(stdout, d->hostname);
	putchar('}');
}

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "copy", required_argument, NULL, OPT_S_COPY },
		{ "volume", required_argument, NULL, OPT_S_VOLUME },
		{ "rpo", required_argument, NULL, OPT_S_RPO },
		{ "rto", required_argument, NULL, OPT_S_RTO },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	const char *copies[MAX_COPIES], *volume = NULL;
	bool optional[MAX_COPIES];
	struct fy_repo *copy_repos[MAX_COPIES];
	char why[MAX_COPIES][512];
	struct target tg[MAX_COPIES + 1];
	size_t ncopies = 0, ntg, nvols = 0;
	int64_t rpo_obj = -1, rto_obj = -1;
	char **vols = NULL;
	bool failed = false, breached = false;
	int opt, rc;

	while ((opt = cli_getopt(argc, argv, "status", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(status_help, stdout);
			return 0;
		case OPT_S_COPY:
			if (ncopies == MAX_COPIES)
				return cli_usage_error("status", "at most %d copies", MAX_COPIES);
			if (!*optarg)
				return cli_usage_error("status", "--copy wants a repository URL, not ''");
			copies[ncopies] = optarg;
			optional[ncopies++] = true; /* one that cannot be opened is a row that says so */
			break;
		case OPT_S_VOLUME:
			volume = optarg;
			break;
		case OPT_S_RPO:
		case OPT_S_RTO: {
			int64_t *obj = opt == OPT_S_RPO ? &rpo_obj : &rto_obj;

			if (fy_duration_parse(optarg, obj) < 0 || *obj <= 0)
				return cli_usage_error("status", "--%s wants a duration such as 90s, 15m, 1h or 7d, not '%s'",
						       opt == OPT_S_RPO ? "rpo" : "rto", optarg);
			break;
		}
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind != argc)
		return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
	rc = cli_repos_opt(&c, "status", &tg[0].repo, copies, optional, ncopies, copy_repos, why);
	if (rc)
		return rc;
	ntg = ncopies + 1;
	tg[0].url = c.repo;
	for (size_t i = 0; i < ncopies; i++) {
		tg[i + 1].url = copies[i];
		tg[i + 1].repo = copy_repos[i];
		if (!copy_repos[i])
			memcpy(tg[i + 1].error, why[i], sizeof(tg[i + 1].error)); /* both 512, terminated */
	}
	int64_t now = now_ns();

	/* Read every target; the volumes are those any of them holds. */
	for (size_t i = 0; i < ntg; i++) {
		memset(&tg[i].st, 0, sizeof(tg[i].st));
		tg[i].ok = false;
		if (!tg[i].repo) {
			failed = true;
			continue;
		}
		if (fy_status_read(tg[i].repo, volume, &tg[i].st, tg[i].error, sizeof(tg[i].error)) < 0) {
			failed = true;
			continue;
		}
		tg[i].ok = true;
		for (size_t k = 0; k < tg[i].st.n; k++) {
			bool seen = false;

			for (size_t j = 0; j < nvols && !seen; j++)
				seen = !strcmp(vols[j], tg[i].st.v[k].volume);
			if (seen)
				continue;
			char **nv = realloc(vols, (nvols + 1) * sizeof(*nv));

			if (!nv) {
				cli_error("status: out of memory");
				return 1;
			}
			vols = nv;
			vols[nvols++] = tg[i].st.v[k].volume; /* owned by the status */
		}
	}
	if (nvols)
		qsort(vols, nvols, sizeof(*vols), by_str);
	if (volume && !nvols && !failed) {
		char shown[200];

		cli_error("status: no snapshot of volume '%s' in %s", fy_escape(volume, shown, sizeof(shown)),
			  ncopies ? "any repository given" : "the repository");
		for (size_t i = 0; i < ntg; i++) {
			fy_status_free(&tg[i].st);
			fy_repo_close(tg[i].repo);
		}
		free(vols);
		return 1;
	}

	/* The rows, and the lines that say what is breached. */
	char breach_lines[64][1024];
	size_t nbreach = 0;
	char tnow[40];

	cli_time(now, tnow, sizeof(tnow), true);
	if (c.json) {
		printf("{\"time\":\"%s\",\"objectives\":{\"rpo_s\":", tnow);
		if (rpo_obj > 0)
			printf("%lld", (long long)rpo_obj);
		else
			printf("null");
		printf(",\"rto_s\":");
		if (rto_obj > 0)
			printf("%lld", (long long)rto_obj);
		else
			printf("null");
		printf("},\"targets\":[");
		for (size_t i = 0; i < ntg; i++) {
			printf("%s{\"repository\":", i ? "," : "");
			cli_json_string(stdout, tg[i].url);
			printf(",\"role\":\"%s\",\"ok\":%s,\"error\":", i ? "copy" : "primary", tg[i].ok ? "true" : "false");
			cli_json_string(stdout, tg[i].ok ? "" : tg[i].error);
			printf(",\"unreadable_snapshots\":%zu}", tg[i].st.unreadable);
		}
		printf("],\"rows\":[");
	} else if (!c.quiet) {
		printf("%-16s %-7s %-8s  %-19s  %-9s  %-26s  %-18s  %s\n", "VOLUME", "TARGET", "SNAPSHOT", "CREATED", "RPO",
		       "LAST DRILL", "RTO (ESTIMATE)", "REPOSITORY");
	}
	bool first = true;

	for (size_t j = 0; j < nvols; j++) {
		for (size_t i = 0; i < ntg; i++) {
			const struct fy_volume_status *v = tg[i].ok ? find(&tg[i].st, vols[j]) : NULL;
			const char *role = i ? "copy" : "primary";
			double rto = 0, est = 0;
			bool have_rto = v && fy_rto(v, &rto, &est);
			int64_t rpo_ns = v ? now - v->snapshot_unix_nano : 0;
			int64_t rpo_s = rpo_ns >= 0 ? rpo_ns / 1000000000 : -((-rpo_ns + 999999999) / 1000000000);
			bool rpo_bad = tg[i].ok && rpo_obj > 0 && (!v || rpo_s > rpo_obj);
			bool rto_bad = tg[i].ok && rto_obj > 0 && (!have_rto || est > (double)rto_obj);
			char vol[256], url[512], obj[32], val[32];

			fy_escape(vols[j], vol, sizeof(vol));
			fy_escape(tg[i].url, url, sizeof(url));
			if (rpo_bad && nbreach < 64) {
				fy_duration_format(rpo_obj, obj, sizeof(obj));
				fy_duration_format(rpo_s, val, sizeof(val));
				if (v)
					snprintf(breach_lines[nbreach++], sizeof(breach_lines[0]), "RPO of volume %s on %s %s "
						 "is %s, above the objective %s", vol, role, url, val, obj);
				else
					snprintf(breach_lines[nbreach++], sizeof(breach_lines[0]), "RPO of volume %s on %s %s: "
						 "no snapshot there (objective %s)", vol, role, url, obj);
			}
			if (rto_bad && nbreach < 64) {
				fy_duration_format(rto_obj, obj, sizeof(obj));
				fmt_secs(est, val, sizeof(val));
				if (have_rto)
					snprintf(breach_lines[nbreach++], sizeof(breach_lines[0]), "RTO of volume %s on %s %s "
						 "is %s (estimate for its newest snapshot), above the objective %s", vol, role,
						 url, val, obj);
				else
					snprintf(breach_lines[nbreach++], sizeof(breach_lines[0]), "RTO of volume %s on %s %s: "
						 "unknown, no drill that passed is recorded there (objective %s; ferry drill "
						 "--record)", vol, role, url, obj);
			}
			breached |= rpo_bad || rto_bad;
			if (c.json) {
				printf("%s{\"volume\":", first ? "" : ",");
				first = false;
				cli_json_string(stdout, vols[j]);
				printf(",\"repository\":");
				cli_json_string(stdout, tg[i].url);
				printf(",\"role\":\"%s\",\"ok\":%s", role, tg[i].ok ? "true" : "false");
				if (v) {
					char hex[2 * FY_SNAP_ID_LEN + 1], t[40];

					fy_hex(v->snapshot_id, FY_SNAP_ID_LEN, hex);
					cli_time(v->snapshot_unix_nano, t, sizeof(t), true);
					printf(",\"snapshot\":\"%s\",\"snapshot_time\":\"%s\",\"snapshots\":%zu,\"size\":%llu,"
					       "\"bytes\":%llu,\"rpo_s\":%lld", hex, t, v->snapshots, (unsigned long long)v->size,
					       (unsigned long long)v->bytes, (long long)rpo_s);
				} else {
					printf(",\"snapshot\":null,\"snapshot_time\":null,\"snapshots\":0,\"size\":null,"
					       "\"bytes\":null,\"rpo_s\":null");
				}
				printf(",\"rpo_breached\":%s,\"last_drill\":", rpo_bad ? "true" : "false");
				if (v && v->have_drill)
					json_drill(&v->drill);
				else
					printf("null");
				printf(",\"last_passed_drill\":");
				if (v && v->have_ok_drill)
					json_drill(&v->ok_drill);
				else
					printf("null");
				if (have_rto)
					printf(",\"rto_s\":%.3f,\"rto_estimate_s\":%.3f", rto, est);
				else
					printf(",\"rto_s\":null,\"rto_estimate_s\":null");
				printf(",\"rto_breached\":%s,\"bad_drill_records\":%u,\"drill_records_error\":",
				       rto_bad ? "true" : "false", v ? v->bad_records : 0);
				cli_json_string(stdout, v ? v->record_error : "");
				putchar('}');
				continue;
			}
			if (c.quiet)
				continue; /* the breach lines only */
			char snap[16] = "-", created[40] = "-", rpo[40] = "-", drill[64] = "none", rtos[100] = "-";

			if (!tg[i].ok) {
				snprintf(snap, sizeof(snap), "?");
				snprintf(drill, sizeof(drill), "? (cannot read)");
			}
			if (v) {
				char hex[2 * FY_SNAP_ID_LEN + 1];

				fy_hex(v->snapshot_id, FY_SNAP_ID_LEN, hex);
				snprintf(snap, sizeof(snap), "%.8s", hex);
				cli_time(v->snapshot_unix_nano, created, sizeof(created), false);
				fy_duration_format(rpo_s, rpo, sizeof(rpo));
			}
			if (rpo_bad)
				snprintf(rpo + strlen(rpo), sizeof(rpo) - strlen(rpo), " BREACH");
			if (v && v->have_drill) {
				char t[40];

				cli_time(v->drill.started_unix_nano, t, sizeof(t), false);
				snprintf(drill, sizeof(drill), "%s %s", v->drill.ok ? "ok" : "FAILED", t);
			}
			if (have_rto) {
				char a[32], b[32];

				fmt_secs(rto, a, sizeof(a));
				fmt_secs(est, b, sizeof(b));
				snprintf(rtos, sizeof(rtos), "%s (%s)", a, b);
			}
			if (rto_bad)
				snprintf(rtos + strlen(rtos), sizeof(rtos) - strlen(rtos), " BREACH");
			printf("%-16s %-7s %-8s  %-19s  %-9s  %-26s  %-18s  %s\n", vol, role, snap, created, rpo, drill, rtos,
			       url);
		}
	}
	if (c.json)
		printf("],\"breached\":%s,\"failed\":%s}\n", breached ? "true" : "false", failed ? "true" : "false");
	for (size_t i = 0; i < ntg; i++) {
		char url[512];

		fy_escape(tg[i].url, url, sizeof(url));
		if (!tg[i].ok)
			cli_error("status: %s %s: %s", i ? "copy" : "primary", url, tg[i].error);
		else if (tg[i].st.unreadable)
			cli_error("warning: %zu snapshot%s of %s cannot be read ('ferry check' names them)",
				  tg[i].st.unreadable, cli_s(tg[i].st.unreadable), url);
		for (size_t k = 0; tg[i].ok && k < tg[i].st.n; k++)
			if (tg[i].st.v[k].record_error[0]) {
				char vol[256];

				cli_error("warning: drill records of volume %s on %s: %s",
					  fy_escape(tg[i].st.v[k].volume, vol, sizeof(vol)), url, tg[i].st.v[k].record_error);
			}
	}
	for (size_t k = 0; k < nbreach; k++)
		cli_error("status: %s", breach_lines[k]);
	for (size_t i = 0; i < ntg; i++) {
		fy_status_free(&tg[i].st);
		fy_repo_close(tg[i].repo);
	}
	free(vols);
	return failed ? 1 : breached ? EXIT_BREACH : 0;
}
