/* ferry diff: the changed byte ranges between two snapshots, from manifests. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char diff_help[] =
	"usage: ferry diff --repo URL [OPTIONS] SNAP_A SNAP_B\n\n"
	"Print the byte ranges of SNAP_B that differ from SNAP_A, one 'OFFSET LENGTH' line\n"
	"each (decimal bytes, merged, in order), computed from the two manifests alone: no\n"
	"data is read.  A block differs when its chunk id or checksum differs, so ranges\n"
	"are whole blocks (the last one cut at SNAP_B's size); bytes past SNAP_A's end\n"
	"are changed.  The output is a valid --changed-ranges file for 'ferry backup'.\n"
	"Snapshots are ids, unique prefixes (4+ hex digits) or 'latest' (the newest of\n"
	"--volume; refused without it when the repository holds several volumes).  Two\n"
	"snapshots of different volumes are refused (exit 1) unless --across-volumes.\n\n"
	"  --volume NAME        'latest' and id prefixes name snapshots of this volume\n"
	"  --tag K=V            ... that carry this tag (repeatable)\n"
	"  --across-volumes     compare snapshots of two different volumes\n"
	CLI_COMMON_HELP;

enum {
	OPT_D_VOLUME = 256,
	OPT_D_TAG,
	OPT_D_ACROSS,
};

int cmd_diff(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "volume", required_argument, NULL, OPT_D_VOLUME },
		{ "tag", required_argument, NULL, OPT_D_TAG },
		{ "across-volumes", no_argument, NULL, OPT_D_ACROSS },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct cli_select sel = { 0 };
	struct fy_repo *repo = NULL;
	struct fy_diff_result d;
	Ferry__V1__Manifest *ma = NULL, *mb = NULL;
	uint8_t a[FY_SNAP_ID_LEN], b[FY_SNAP_ID_LEN];
	char err[512], ha[2 * FY_SNAP_ID_LEN + 1], hb[2 * FY_SNAP_ID_LEN + 1];
	bool across = false;
	int opt, rc;

	sel.f.labels = sel.labels;
	while ((opt = cli_getopt(argc, argv, "diff", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(diff_help, stdout);
			return 0;
		case OPT_D_VOLUME:
			sel.f.volume = optarg;
			break;
		case OPT_D_TAG:
			if (cli_tag_opt("diff", optarg, sel.labels, &sel.f.nlabels))
				return EXIT_USAGE;
			break;
		case OPT_D_ACROSS:
			across = true;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("diff", "wants SNAP_A and SNAP_B");
	if (cli_check_snapshot_arg("diff", argv[optind]) || cli_check_snapshot_arg("diff", argv[optind + 1]))
		return EXIT_USAGE;
	rc = cli_repo(&c, "diff", &repo);
	if (rc)
		return rc;
	if (cli_pick("diff", repo, argv[optind], &sel, a, &ma) ||
	    cli_pick("diff", repo, argv[optind + 1], &sel, b, &mb)) {
		rc = 1;
		goto out;
	}
	fy_hex(a, FY_SNAP_ID_LEN, ha);
	fy_hex(b, FY_SNAP_ID_LEN, hb);
	if (strcmp(ma->volume, mb->volume) && !across) {
		/* The ranges of one volume against another mean little. */
		cli_error("diff failed: %.8s is a snapshot of volume %s, %.8s of volume %s: different volumes "
			  "(--across-volumes compares them anyway)", ha, ma->volume, hb, mb->volume);
		rc = 1;
		goto out;
	}
	if (fy_diff(repo, a, b, &d, err, sizeof(err)) < 0) {
		cli_error("diff failed: %s", err);
		rc = 1;
		goto out;
	}
	fy_repo_close(repo);
	repo = NULL;
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
			fprintf(stderr, "%.8s -> %.8s: %s of %s changed in %zu range%s\n", ha, hb, ch, sz, d.nranges,
				cli_s(d.nranges));
		}
	}
	free(d.ranges);
	rc = 0;
	if (fflush(stdout) == EOF) {
		cli_error("diff: writing the output failed");
		rc = 1;
	}
out:
	if (ma)
		ferry__v1__manifest__free_unpacked(ma, NULL);
	if (mb)
		ferry__v1__manifest__free_unpacked(mb, NULL);
	fy_repo_close(repo);
	return rc;
}
