/* ferry copy: bring a copy of the repository up to date. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char copy_help[] =
	"usage: ferry copy --from URL --to URL [--threads N] [SNAPSHOT...]\n\n"
	"Send the snapshots of --from (all of them, or the ones named) that --to does not\n"
	"have, with only the chunks --to lacks.  --to must be a copy of --from, made with\n"
	"'ferry init --repo TO --copy-of FROM'; both are opened with the same password.\n"
	"Chunks are verified on the way and sent as they are (never re-encrypted); each\n"
	"snapshot's manifest is written after its chunks, so an interrupted copy resumes.\n"
	"Use it to seed a new target, or to bring a copy that missed backups (an optional\n"
	"--copy-to that was down) up to date.  A snapshot named on the command line that\n"
	"--to already has gets its missing chunks sent again: that repairs a copy whose\n"
	"chunk objects were lost or removed (docs/dr-runbook.md).\n\n"
	"  --from URL        the repository to copy from (or --repo)\n"
	"  --to URL          the copy to bring up to date\n"
	"  --threads N       objects in flight (default: the target store's)\n"
	CLI_COMMON_HELP;

int cmd_copy(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "threads", required_argument, NULL, 'T' },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct fy_repo *from = NULL, *to = NULL;
	struct fy_copy_opts o = { 0 };
	struct fy_copy_result res;
	struct fy_progress prog = { 0 };
	const char *to_url = NULL;
	uint8_t *ids = NULL;
	char err[512];
	int opt, rc;

	while ((opt = cli_getopt(argc, argv, "copy", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(copy_help, stdout);
			return 0;
		case 'f':
			c.repo = optarg;
			break;
		case 't':
			to_url = optarg;
			break;
		case 'T': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*end || end == optarg || v == 0 || v > 64)
				return cli_usage_error("copy", "--threads wants 1..64, not '%s'", optarg);
			o.threads = (unsigned)v;
			break;
		}
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (!to_url)
		return cli_usage_error("copy", "missing --to URL");
	rc = cli_repos(&c, "copy", &from, &to_url, 1, &to);
	if (rc)
		return rc;
	size_t nids = (size_t)(argc - optind);

	if (nids) {
		ids = malloc(nids * FY_SNAP_ID_LEN);
		if (!ids) {
			cli_error("out of memory");
			rc = 1;
			goto out;
		}
		for (size_t i = 0; i < nids; i++)
			if (fy_snapshot_resolve(from, argv[optind + (int)i], ids + i * FY_SNAP_ID_LEN, err, sizeof(err)) <
			    0) {
				cli_error("copy failed: %s", err);
				rc = 1;
				goto out;
			}
	}
	o.progress = &prog;
	struct cli_progress *cp = cli_progress_start(&prog, "copy", c.quiet || c.json);

	rc = fy_copy(from, to, ids, nids, &o, &res, err, sizeof(err));
	cli_progress_stop(cp);
	if (rc < 0) {
		cli_error("copy failed: %s", err);
		rc = 1;
		goto out;
	}
	if (c.json) {
		printf("{\"from\":");
		cli_json_string(stdout, from->url);
		printf(",\"to\":");
		cli_json_string(stdout, to->url);
		printf(",\"snapshots_copied\":%zu,\"snapshots_present\":%zu,\"chunks_copied\":%zu,\"chunks_present\":%zu,"
		       "\"bytes_copied\":%" PRIu64 ",\"duration_s\":%.3f,\"requests\":%" PRIu64 ",\"retries\":%" PRIu64
		       "}\n",
		       res.snapshots_copied, res.snapshots_present, res.chunks_copied, res.chunks_present,
		       res.bytes_copied, res.seconds, res.from_stats.requests + res.to_stats.requests,
		       res.from_stats.retries + res.to_stats.retries);
	} else if (!c.quiet) {
		char b[32];

		cli_human(res.bytes_copied, b, sizeof(b));
		printf("copied %zu snapshot%s (%zu already there), %zu chunk%s (%s), %.2f s, %" PRIu64 " retr%s\n",
		       res.snapshots_copied, cli_s(res.snapshots_copied), res.snapshots_present, res.chunks_copied,
		       cli_s(res.chunks_copied), b, res.seconds, res.from_stats.retries + res.to_stats.retries,
		       res.from_stats.retries + res.to_stats.retries == 1 ? "y" : "ies");
	}
	rc = 0;
out:
	free(ids);
	fy_repo_close(from);
	fy_repo_close(to);
	return rc;
}
