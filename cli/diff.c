/* ferry diff: the changed byte ranges between two snapshots, from manifests. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

static const char diff_help[] =
	"usage: ferry diff --repo URL SNAP_A SNAP_B [--json]\n\n"
	"Print the byte ranges of SNAP_B that differ from SNAP_A, one 'OFFSET LENGTH' line\n"
	"each (decimal bytes, merged, in order), computed from the two manifests alone: no\n"
	"data is read.  A block differs when its chunk id or checksum differs, so ranges\n"
	"are whole blocks (the last one cut at SNAP_B's size); bytes past SNAP_A's end\n"
	"are changed.  The output is a valid --changed-ranges file for 'ferry backup'.\n"
	"Snapshots are ids, unique prefixes (4+ hex digits) or 'latest'.\n\n"
	CLI_COMMON_HELP;

int cmd_diff(int argc, char **argv)
{
	static const struct option longopts[] = {
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct fy_repo *repo = NULL;
	struct fy_diff_result d;
	uint8_t a[FY_SNAP_ID_LEN], b[FY_SNAP_ID_LEN];
	char err[512], ha[2 * FY_SNAP_ID_LEN + 1], hb[2 * FY_SNAP_ID_LEN + 1];
	int opt, rc;

	while ((opt = cli_getopt(argc, argv, "diff", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		if (opt == 'h') {
			fputs(diff_help, stdout);
			return 0;
		}
		return EXIT_USAGE; /* cli_getopt said why */
	}
	if (argc - optind != 2)
		return cli_usage_error("diff", "wants SNAP_A and SNAP_B");
	rc = cli_repo(&c, "diff", &repo);
	if (rc)
		return rc;
	if (fy_snapshot_resolve(repo, argv[optind], a, err, sizeof(err)) < 0 ||
	    fy_snapshot_resolve(repo, argv[optind + 1], b, err, sizeof(err)) < 0 ||
	    fy_diff(repo, a, b, &d, err, sizeof(err)) < 0) {
		cli_error("diff failed: %s", err);
		fy_repo_close(repo);
		return 1;
	}
	fy_repo_close(repo);
	fy_hex(a, FY_SNAP_ID_LEN, ha);
	fy_hex(b, FY_SNAP_ID_LEN, hb);
	if (c.json) {
		printf("{\"a\":\"%s\",\"b\":\"%s\",\"a_size\":%" PRIu64 ",\"b_size\":%" PRIu64
		       ",\"block_size\":%u,\"changed_bytes\":%" PRIu64 ",\"ranges\":[",
		       ha, hb, d.a_size, d.b_size, d.chunk_size, d.changed_bytes);
		for (size_t i = 0; i < d.nranges; i++)
			printf("%s{\"offset\":%" PRIu64 ",\"length\":%" PRIu64 "}", i ? "," : "", d.ranges[i].off,
			       d.ranges[i].len);
		printf("]}\n");
	} else {
		for (size_t i = 0; i < d.nranges; i++)
			printf("%" PRIu64 " %" PRIu64 "\n", d.ranges[i].off, d.ranges[i].len);
		if (!c.quiet && (c.verbose || isatty(STDERR_FILENO))) {
			char ch[32], sz[32];

			cli_human(d.changed_bytes, ch, sizeof(ch));
			cli_human(d.b_size, sz, sizeof(sz));
			fprintf(stderr, "%.8s -> %.8s: %s of %s changed in %zu ranges\n", ha, hb, ch, sz, d.nranges);
		}
	}
	free(d.ranges);
	if (fflush(stdout) == EOF) {
		cli_error("diff: writing the output failed");
		return 1;
	}
	return 0;
}
