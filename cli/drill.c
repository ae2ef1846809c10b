/* ferry drill: a restore drill (mover/drill.c) from the command line. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ferry_drill.h"

static const char drill_help[] =
	"usage: ferry drill --repo URL [--volume NAME] [--tag K=V] [--snapshot ID|latest]\n"
	"                   [--check CMD [--check-timeout DURATION]] [--scratch-dir DIR]\n"
	"                   [--record] [--json]\n\n"
	"Prove that a snapshot restores: restore it to a scratch image in a new directory\n"
	"under DIR, read the image back from the disk and check every block against the\n"
	"snapshot's manifest (CRC32C, and the keyed id of its data), optionally attach it\n"
	"read-only as a loop device and run CMD against it, then remove the scratch (the\n"
	"loop device, the image, the directory) on every way out: success, failure,\n"
	"SIGINT, SIGTERM, SIGHUP.  The restore time is the RTO of the data (the time to\n"
	"get the volume back from this repository); it is printed with the throughput\n"
	"and, separately, the verification's and the check's times.  Exit status 0 when\n"
	"every step passed, 1 with one line naming what failed (the chunk and block, or\n"
	"the check's exit status and output), 2 for bad usage.\n\n"
	"  --volume NAME        drill the newest snapshot of this volume ('latest' without\n"
	"                       --volume is refused when the repository holds several)\n"
	"  --tag K=V            ... that carries this tag (repeatable)\n"
	"  --snapshot S         an id, a unique prefix of one, or latest (the default)\n"
	"  --check CMD          run CMD with /bin/sh against the restored image attached\n"
	"                       read-only (needs root): every {} in CMD is replaced by the\n"
	"                       device, which is also in FERRY_DRILL_DEVICE (with\n"
	"                       FERRY_DRILL_SNAPSHOT and FERRY_DRILL_VOLUME); e.g.\n"
	"                       --check 'fsck -n {}'.  A non-zero exit fails the drill;\n"
	"                       its output is shown then.  Whatever it leaves running in\n"
	"                       its process group is killed when it exits\n"
	"  --check-timeout D    stop the check after D (90s, 15m, 1h, 7d; default 1h):\n"
	"                       SIGTERM, then SIGKILL 5 s later; a timeout fails the drill\n"
	"  --scratch-dir DIR    where the scratch directory is made (default /var/tmp); it\n"
	"                       must not be inside the repository and must have room for\n"
	"                       the snapshot's data (checked first).  A scratch directory\n"
	"                       left by a killed drill is removed by the next drill there\n"
	"  --record             write the result (passed or failed) to the repository as a\n"
	"                       drill record, which 'ferry status' reads for RTO (needs\n"
	"                       write access; without it a drill writes nothing there)\n"
	"  --threads N          restore and verify workers\n"
	CLI_COMMON_HELP;

enum {
	OPT_D_VOLUME = 256,
	OPT_D_TAG,
	OPT_D_SNAPSHOT,
	OPT_D_CHECK,
	OPT_D_TIMEOUT,
	OPT_D_SCRATCH,
	OPT_D_RECORD,
	OPT_D_THREADS,
};

static atomic_bool drill_cancel;
static volatile sig_atomic_t drill_signal;

static void on_signal(int sig)
{
	drill_signal = sig;
	atomic_store(&drill_cancel, true);
}

static void json_opt_string(const char *s)
{
	if (s)
		cli_json_string(stdout, s);
	else
		printf("null");
}

static void print_json(const struct fy_drill_result *res, const char *repo, const char *check, bool recorded,
		       const char *warn)
{
	char hex[2 * FY_SNAP_ID_LEN + 1], t[40], st[40];
	double mbps = res->restore_seconds > 0 ? res->bytes / res->restore_seconds / 1e6 : 0;

	fy_hex(res->snapshot_id, FY_SNAP_ID_LEN, hex);
	cli_time(res->started_unix_nano, t, sizeof(t), true);
	printf("{\"result\":\"%s\",\"reason\":", res->ok ? "ok" : "failed");
	cli_json_string(stdout, res->ok ? "" : res->reason);
	printf(",\"stage\":");
	json_opt_string(res->ok ? NULL : res->stage);
	printf(",\"time\":\"%s\",\"repository\":", t);
	cli_json_string(stdout, repo);
	printf(",\"snapshot\":\"%s\",\"volume\":", hex);
	json_opt_string(res->volume);
	if (res->volume) {
		cli_time(res->snapshot_unix_nano, st, sizeof(st), true);
		printf(",\"snapshot_time\":\"%s\"", st);
	} else {
		printf(",\"snapshot_time\":null");
	}
	printf(",\"size\":%llu,\"bytes\":%llu,\"blocks\":%llu,\"blocks_verified\":%llu,\"restore_s\":%.3f,"
	       "\"throughput_mbps\":%.1f,\"rto_s\":%.3f,\"verify_s\":%.3f,\"check\":",
	       (unsigned long long)res->size, (unsigned long long)res->bytes, (unsigned long long)res->blocks,
	       (unsigned long long)res->blocks_verified, res->restore_seconds, mbps, res->restore_seconds,
	       res->verify_seconds);
	json_opt_string(check);
	printf(",\"device\":");
	json_opt_string(res->device[0] ? res->device : NULL);
	if (res->check_ran) {
		printf(",\"check_s\":%.3f,\"check_status\":%d,\"check_timed_out\":%s,\"check_output\":", res->check_seconds,
		       res->check_status, res->check_timed_out ? "true" : "false");
		cli_json_string(stdout, res->check_output);
	} else {
		printf(",\"check_s\":null,\"check_status\":null,\"check_timed_out\":false,\"check_output\":null");
	}
	printf(",\"recorded\":%s,\"stale_scratch_removed\":%u,\"warnings\":[", recorded ? "true" : "false",
	       res->stale_removed);
	if (warn && warn[0])
		cli_json_string(stdout, warn);
	printf("]}\n");
}

int cmd_drill(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "volume", required_argument, NULL, OPT_D_VOLUME },
		{ "tag", required_argument, NULL, OPT_D_TAG },
		{ "snapshot", required_argument, NULL, OPT_D_SNAPSHOT },
		{ "check", required_argument, NULL, OPT_D_CHECK },
		{ "check-timeout", required_argument, NULL, OPT_D_TIMEOUT },
		{ "scratch-dir", required_argument, NULL, OPT_D_SCRATCH },
		{ "record", no_argument, NULL, OPT_D_RECORD },
		{ "threads", required_argument, NULL, OPT_D_THREADS },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct cli_select sel = { 0 };
	struct fy_drill_opts o = { 0 };
	struct fy_drill_result res;
	struct fy_progress prog = { 0 };
	struct fy_repo *repo = NULL;
	const char *snap = "latest";
	bool record = false, recorded = false;
	uint8_t id[FY_SNAP_ID_LEN];
	char err[1024], warn[1024] = "";
	int opt, rc;

	sel.f.labels = sel.labels;
	while ((opt = cli_getopt(argc, argv, "drill", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(drill_help, stdout);
			return 0;
		case OPT_D_VOLUME:
			sel.f.volume = optarg;
			break;
		case OPT_D_TAG:
			if (cli_tag_opt("drill", optarg, sel.labels, &sel.f.nlabels))
				return EXIT_USAGE;
			break;
		case OPT_D_SNAPSHOT:
			if (cli_check_snapshot_arg("drill", optarg))
				return EXIT_USAGE;
			snap = optarg;
			break;
		case OPT_D_CHECK:
			if (!optarg[strspn(optarg, " \t")])
				return cli_usage_error("drill", "--check wants a command, not '%s'", optarg);
			o.check = optarg;
			break;
		case OPT_D_TIMEOUT:
			if (fy_duration_parse(optarg, &o.check_timeout) < 0 || o.check_timeout <= 0)
				return cli_usage_error("drill", "--check-timeout wants a duration such as 90s, 15m, 1h "
						       "or 7d, not '%s'", optarg);
			break;
		case OPT_D_SCRATCH:
			if (!*optarg)
				return cli_usage_error("drill", "--scratch-dir wants a directory, not ''");
			o.scratch_dir = optarg;
			break;
		case OPT_D_RECORD:
			record = true;
			break;
		case OPT_D_THREADS: {
			char *end;
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);

			if (errno || end == optarg || *end || *optarg == '-' || v == 0 || v > 64)
				return cli_usage_error("drill", "--threads wants a number from 1 to 64, not '%s'", optarg);
			o.threads = (unsigned)v;
			break;
		}
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind != argc)
		return cli_usage_error("drill", "unexpected argument '%s' (the snapshot is --snapshot S)", argv[optind]);
	if (o.check_timeout && !o.check)
		return cli_usage_error("drill", "--check-timeout needs --check CMD");
	rc = cli_repo(&c, "drill", &repo);
	if (rc)
		return rc;
	if (cli_pick("drill", repo, snap, &sel, id, NULL)) {
		fy_repo_close(repo);
		return 1;
	}
	/* From here every way out removes the scratch: a signal asks the drill
	 * to stop, and it cleans up before this process dies of the signal. */
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction sa = { .sa_handler = on_signal };

		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, NULL);
	}
	o.cancel = &drill_cancel;
	o.verbose = c.verbose;
	o.progress = &prog;
	struct cli_progress *cp = cli_progress_start(&prog, "drill", c.quiet || c.json);

	rc = fy_drill(repo, id, &o, &res, err, sizeof(err));
	cli_progress_stop(cp);
	if (rc == -ECANCELED || drill_signal) {
		int sig = drill_signal ? drill_signal : SIGTERM;

		cli_error("drill interrupted by SIG%s: the scratch is removed%s%s", sigabbrev_np(sig),
			  res.stage && !strcmp(res.stage, "cleanup") ? ", except: " : "",
			  res.stage && !strcmp(res.stage, "cleanup") ? res.reason : "");
		fy_drill_result_free(&res);
		fy_repo_close(repo);
		signal(sig, SIG_DFL);
		raise(sig);
		return 1;
	}
	if (record) {
		char e2[512];

		if (fy_drill_record_write(repo, &res, 0, warn, sizeof(warn), e2, sizeof(e2)) < 0) {
			/* The drill's own result stands; the record is what failed. */
			if (res.ok) {
				res.ok = false;
				res.stage = "record";
				snprintf(res.reason, sizeof(res.reason), "the drill passed, but its record was not "
					 "written: %s", e2);
			} else {
				snprintf(warn, sizeof(warn), "the drill's record was not written: %s", e2);
			}
		} else {
			recorded = true;
		}
	}
	fy_repo_close(repo);
	if (warn[0])
		cli_error("warning: %s", warn);
	if (res.stale_removed && c.verbose)
		cli_error("removed %u scratch director%s left by killed drills", res.stale_removed,
			  res.stale_removed == 1 ? "y" : "ies");
	if (c.json)
		print_json(&res, c.repo, o.check, recorded, warn);
	if (!res.ok) {
		/* The check's output, then the one line that says what failed. */
		if (res.check_ran && res.stage && !strcmp(res.stage, "check") && res.check_output[0] && !c.json) {
			fprintf(stderr, "ferry: output of the check:\n");
			for (const char *p = res.check_output; *p;) {
				size_t n = strcspn(p, "\n");
				char line[1024], shown[1100];

				snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 1 ? n : sizeof(line) - 1), p);
				fprintf(stderr, "  | %s\n", fy_escape(line, shown, sizeof(shown)));
				p += n + (p[n] == '\n');
			}
		}
		cli_error("drill failed: %s", res.reason);
		fy_drill_result_free(&res);
		return 1;
	}
	if (!c.json && !c.quiet) {
		char hex[2 * FY_SNAP_ID_LEN + 1], sz[32], by[32], vol[256], chk[256];
		double mbps = res.restore_seconds > 0 ? res.bytes / res.restore_seconds / 1e6 : 0;

		fy_hex(res.snapshot_id, FY_SNAP_ID_LEN, hex);
		cli_human(res.size, sz, sizeof(sz));
		cli_human(res.bytes, by, sizeof(by));
		printf("drill of snapshot %.8s (volume %s, %s, %s of data) passed: restored in %.2f s at %.0f MB/s "
		       "(RTO of the data %.2f s), %llu block%s read back and verified in %.2f s",
		       hex, fy_escape(res.volume, vol, sizeof(vol)), sz, by, res.restore_seconds, mbps,
		       res.restore_seconds, (unsigned long long)res.blocks_verified, cli_s(res.blocks_verified),
		       res.verify_seconds);
		if (res.check_ran)
			printf(", check '%s' on %s exited 0 in %.2f s", fy_escape(o.check, chk, sizeof(chk)), res.device,
			       res.check_seconds);
		printf("%s\n", recorded ? "; recorded" : "");
	}
	fy_drill_result_free(&res);
	return 0;
}
