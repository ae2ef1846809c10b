/* ferry copy: bring a copy of the repository up to date. */
#include <errno.h>
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
	"SNAPSHOTs are ids, unique prefixes or 'latest' (the newest of --volume; refused\n"
	"without it when the repository holds several volumes).\n\n"
	"  --from URL        the repository to copy from (or --repo)\n"
	"  --to URL          the copy to bring up to date\n"
	"  --volume NAME     only snapshots of this volume (also for 'latest' and prefixes)\n"
	"  --tag K=V         only snapshots that carry this tag (repeatable)\n"
	"  --threads N       objects in flight (default: the target store's)\n"
	CLI_COMMON_HELP;

enum {
	OPT_C_VOLUME = 256,
	OPT_C_TAG,
};

/* Without SNAPSHOT arguments but with --volume/--tag: every snapshot they let
 * through, named (so a copy that has one gets its missing chunks too). */
static int filtered_ids(struct fy_repo *from, const struct cli_select *sel, uint8_t **out, size_t *nout)
{
	uint8_t *ids = NULL;
	size_t n = 0, k = 0;
	char lerr[512];
	int rc = fy_snapshot_ids(from, &ids, &n, lerr, sizeof(lerr));

	if (rc < 0) {
		cli_error("copy failed: %s", lerr);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		Ferry__V1__Manifest *m;
		char err[512];

		/* An unreadable manifest stops the copy, as it would without a filter. */
		if (fy_manifest_read(from, ids + i * FY_SNAP_ID_LEN, &m, err, sizeof(err)) < 0) {
			cli_error("copy failed: %s", err);
			free(ids);
			return 1;
		}
		if (fy_snap_filter_match(m, &sel->f))
			memmove(ids + k++ * FY_SNAP_ID_LEN, ids + i * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN);
		ferry__v1__manifest__free_unpacked(m, NULL);
	}
	*out = ids;
	*nout = k;
	return 0;
}

int cmd_copy(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "threads", required_argument, NULL, 'T' },
		{ "volume", required_argument, NULL, OPT_C_VOLUME },
		{ "tag", required_argument, NULL, OPT_C_TAG },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct cli_select sel = { 0 };
	struct fy_repo *from = NULL, *to = NULL;
	struct fy_copy_opts o = { 0 };
	struct fy_copy_result res;
	struct fy_progress prog = { 0 };
	const char *to_url = NULL;
	uint8_t *ids = NULL;
	char err[512];
	int opt, rc;

	sel.f.labels = sel.labels;
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
		case OPT_C_VOLUME:
			sel.f.volume = optarg;
			break;
		case OPT_C_TAG:
			if (cli_tag_opt("copy", optarg, sel.labels, &sel.f.nlabels))
				return EXIT_USAGE;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (!to_url)
		return cli_usage_error("copy", "missing --to URL");
	for (int i = optind; i < argc; i++)
		if (cli_check_snapshot_arg("copy", argv[i]))
			return EXIT_USAGE;
	rc = cli_repos(&c, "copy", &from, &to_url, 1, &to);
	if (rc)
		return rc;
	size_t nids = (size_t)(argc - optind);

	if (!nids && (sel.f.volume || sel.f.nlabels)) {
		rc = filtered_ids(from, &sel, &ids, &nids);
		if (rc)
			goto out;
		if (!nids) {
			char what[256];

			snprintf(what, sizeof(what), "%s%s", sel.f.volume ? " of volume " : "",
				 sel.f.volume ? sel.f.volume : "");
			cli_error("copy failed: no snapshot%s%s in %s", what, sel.f.nlabels ? " with those tags" : "",
				  from->url);
			rc = 1;
			goto out;
		}
	} else if (nids) {
		ids = malloc(nids * FY_SNAP_ID_LEN);
		if (!ids) {
			cli_error("out of memory");
			rc = 1;
			goto out;
		}
		for (size_t i = 0; i < nids; i++)
			if (cli_pick("copy", from, argv[optind + (int)i], &sel, ids + i * FY_SNAP_ID_LEN, NULL)) {
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
