/* The subcommands: init, backup, restore, snapshots, check. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int bad_number(const char *cmd, const char *opt, const char *arg)
{
	return cli_usage_error(cmd, "%s wants a positive number, not '%s'", opt, arg);
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);

	if (errno || end == s || *end || v == 0 || v > max || *s == '-')
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* ---- init ---- */

static const char init_help[] =
	"usage: ferry init --repo URL [--chunk-size SIZE] [--compression igzip:0..3|none]\n"
	"                  [--insecure-no-encryption]\n"
	"       ferry init --repo URL --copy-of URL2 [--insecure-no-encryption]\n\n"
	"Create a repository.  It is encrypted (AES-256-GCM) with a master key wrapped by\n"
	"the password (FERRY_PASSWORD or --password-file, scrypt) or by a raw --key-file.\n"
	"With --copy-of, create a copy of the repository at URL2 (opened with the same\n"
	"password): the same keys and chunk size, so 'ferry backup --copy-to URL' and\n"
	"'ferry copy' can write the same sealed chunks to both.  An immutable S3 target\n"
	"(lock=compliance|governance) is refused unless its bucket has Object Lock.\n"
	"--insecure-no-encryption makes an unencrypted repository (tests and trusted storage\n"
	"only); every command that opens it needs the flag again, and none that is given a\n"
	"password or key ever opens it.  With --copy-of it says the original is unencrypted.\n\n"
	"  --copy-of URL2             make a copy of the repository at URL2\n"
	"  --chunk-size SIZE          block size, a power of two from 1M to 16M (default 4M)\n"
	"  --compression C            igzip:0, igzip:1 (default), igzip:2, igzip:3, or none\n"
	CLI_COMMON_HELP;

/* ferry init --repo URL --copy-of FROM */
static int init_copy(struct cli_common *c, const char *from_url)
{
	struct fy_repo *from = NULL;
	char err[512];
	const char *to = c->repo ? c->repo : getenv("FERRY_REPO");
	int rc;

	if (!to || !*to)
		return cli_usage_error("init", "no repository: give --repo URL or set FERRY_REPO");
	/* Open the original with the secret, then wrap its keys with the same secret. */
	c->repo = from_url;
	rc = cli_prepare(c, "init", true);
	if (rc) {
		cli_free(c);
		return rc;
	}
	struct fy_secret sec = { .password = c->password, .raw_key = c->have_raw_key ? c->raw_key : NULL,
				 .insecure_no_encryption = c->insecure };
	const char *lg = getenv("FERRY_SCRYPT_LOG2N");

	rc = fy_repo_open(from_url, &sec, &from, err, sizeof(err));
	if (rc == 0)
		rc = fy_repo_init_copy(to, from, &sec, lg ? (unsigned)atoi(lg) : 0, err, sizeof(err));
	cli_free(c);
	if (rc < 0) {
		fy_repo_close(from);
		cli_error("%s", err);
		return 1;
	}
	if (c->json) {
		printf("{\"repository\":");
		cli_json_string(stdout, to);
		printf(",\"copy_of\":");
		cli_json_string(stdout, from_url);
		printf(",\"chunk_size\":%u,\"encrypted\":%s}\n", from->chunk_size, from->encrypted ? "true" : "false");
	} else if (!c->quiet) {
		printf("created repository %s, a copy of %s (chunk size %u KiB)\n", to, from_url, from->chunk_size >> 10);
	}
	fy_repo_close(from);
	return 0;
}

int cmd_init(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "chunk-size", required_argument, NULL, 'c' },
		{ "compression", required_argument, NULL, 'z' },
		{ "copy-of", required_argument, NULL, 'C' },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	const char *copy_of = NULL;
	bool shaped = false;
	struct fy_init_opts o = { .chunk_size = FY_DEFAULT_CHUNK,
				  .compression = FERRY__V1__COMPRESSION__COMPRESSION_DEFLATE,
				  .level = 1 };
	char err[512];
	int opt, rc;

	while ((opt = cli_getopt(argc, argv, "init", longopts)) != -1) {
		uint64_t size;

		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(init_help, stdout);
			return 0;
		case 'c':
			/* Checked here, not by the library: bad usage, and the words the user typed. */
			if (cli_parse_size(optarg, &size) < 0 || size < FY_MIN_CHUNK || size > FY_MAX_CHUNK ||
			    (size & (size - 1)))
				return cli_usage_error("init", "--chunk-size wants a power of two from 1M to 16M "
						       "(1M, 2M, 4M, 8M, 16M), not '%s'", optarg);
			o.chunk_size = (uint32_t)size;
			shaped = true;
			break;
		case 'C':
			copy_of = optarg;
			break;
		case 'z':
			if (!strcmp(optarg, "none")) {
				o.compression = FERRY__V1__COMPRESSION__COMPRESSION_NONE;
				o.level = 0;
			} else if (!strncmp(optarg, "igzip:", 6) && optarg[6] >= '0' && optarg[6] <= '3' && !optarg[7]) {
				o.level = optarg[6] - '0';
			} else {
				return cli_usage_error("init", "--compression wants igzip:0..3 or none, not '%s'", optarg);
			}
			shaped = true;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind != argc)
		return cli_usage_error("init", "unexpected argument '%s'", argv[optind]);
	if (copy_of && shaped)
		return cli_usage_error("init", "--copy-of takes the chunk size, compression and encryption of the original");
	if (copy_of)
		return init_copy(&c, copy_of); /* --insecure-no-encryption: the original is unencrypted */
	o.insecure_no_encryption = c.insecure;
	rc = cli_prepare(&c, "init", !o.insecure_no_encryption);
	if (rc)
		return rc;
	struct fy_secret sec = { .password = c.password, .raw_key = c.have_raw_key ? c.raw_key : NULL };
	/* Tests only: a cheaper KDF (2^10..2^22; the default is 2^15, see docs/FORMAT.md). */
	const char *lg = getenv("FERRY_SCRYPT_LOG2N");

	if (lg)
		o.scrypt_log2n = (unsigned)atoi(lg);
	rc = fy_repo_init(c.repo, &o, &sec, err, sizeof(err));
	cli_free(&c);
	if (rc < 0) {
		cli_error("%s", err);
		return 1;
	}
	if (c.json) {
		printf("{\"repository\":");
		cli_json_string(stdout, c.repo);
		printf(",\"chunk_size\":%u,\"encrypted\":%s}\n", o.chunk_size,
		       o.insecure_no_encryption ? "false" : "true");
	} else if (!c.quiet) {
		printf("created repository %s (chunk size %u KiB, %s%s)\n", c.repo, o.chunk_size >> 10,
		       o.insecure_no_encryption ? "UNENCRYPTED" : "AES-256-GCM",
		       o.compression ? ", igzip" : ", no compression");
	}
	return 0;
}

/* ---- backup ---- */

static const char backup_help[] =
	"usage: ferry backup --repo URL --volume NAME [OPTIONS] SOURCE\n\n"
	"Back up SOURCE (an image file or a block device) as a new snapshot of volume NAME\n"
	"and print the snapshot's id.  Holes and all-zero blocks are never stored; blocks\n"
	"already in the repository are not stored again.  With a parent, blocks unchanged\n"
	"since it keep its chunks: a change source says which blocks to read, or else every\n"
	"block is read and compared with the parent's (the manifest scan).\n\n"
	"  --volume NAME        the volume's name (recorded in the snapshot; names and tags are\n"
	"                       printable text: UTF-8 without control characters)\n"
	"  --parent P           auto (default: the volume's newest snapshot), none, or a snapshot\n"
	"  --changed-ranges F   read only the byte ranges listed in F (docs/cbt.md): the change\n"
	"                       since --parent, which must then be given explicitly\n"
	"  --base-image PATH    read only extents SOURCE no longer shares with PATH, the reflink\n"
	"                       clone the parent was backed up from (XFS, btrfs); without a\n"
	"                       change source, the file the parent was read from is used\n"
	"                       this way when it is another file on the same filesystem\n"
	"  --manifest-scan      ignore change sources: read every block, compare with the parent\n"
	"  --tag K=V            a label on the snapshot (repeatable)\n"
	"  --io-engine E        auto (default), io_uring, libaio or psync\n"
	"  --queue-depth N      reads in flight (default 8)\n"
	"  --threads N          hashing/compression/encryption workers (default: online cores)\n"
	"  --uploaders N        writes to the repository in flight (default: the store's)\n"
	"  --copy-to URL        also write the snapshot to URL, a copy of the repository made\n"
	"                       with 'ferry init --repo URL --copy-of REPO' (repeatable; the\n"
	"                       volume is read, compressed and sealed once); a failing copy\n"
	"                       fails the backup\n"
	"  --copy-to-optional URL  the same, but a failing copy is dropped and reported\n"
	"  --freeze MOUNTPOINT  freeze the filesystem of SOURCE mounted there (FIFREEZE) for\n"
	"                       the backup, thaw it after (also on errors and on SIGINT,\n"
	"                       SIGTERM...; after a SIGKILL: fsfreeze -u MOUNTPOINT): a\n"
	"                       consistent copy of a mounted filesystem.  Writes to it wait\n"
	"                       meanwhile.  A freeze that fails stops the backup (nothing\n"
	"                       read).  Without it, a SOURCE mounted read-write gets a\n"
	"                       warning: the copy is crash-consistent at best\n"
	CLI_COMMON_HELP;

/* One line (or JSON object) per target of a backup. */
static void print_targets(const struct fy_backup_result *res, bool json)
{
	for (size_t t = 0; t < res->ntargets; t++) {
		const struct fy_target_result *tr = &res->targets[t];
		char st[32];

		if (json) {
			printf("%s{\"url\":", t ? "," : "");
			cli_json_string(stdout, tr->url);
			printf(",\"role\":\"%s\",\"optional\":%s,\"ok\":%s,\"error\":", t ? "copy" : "primary",
			       tr->optional ? "true" : "false", tr->status ? "false" : "true");
			cli_json_string(stdout, tr->error);
			printf(",\"chunks_new\":%u,\"bytes_stored\":%llu,\"requests\":%llu,\"retries\":%llu,"
			       "\"bytes_up\":%llu}",
			       tr->chunks_new, (unsigned long long)tr->bytes_stored,
			       (unsigned long long)tr->stats.requests, (unsigned long long)tr->stats.retries,
			       (unsigned long long)tr->stats.bytes_up);
			continue;
		}
		cli_human(tr->bytes_stored, st, sizeof(st));
		if (tr->status)
			fprintf(stderr, "  %s %s: FAILED (optional, dropped): %s\n", t ? "copy" : "primary", tr->url,
				tr->error);
		else
			fprintf(stderr, "  %s %s: %u new chunks, %s stored, %llu requests, %llu retries\n",
				t ? "copy" : "primary", tr->url, tr->chunks_new, st,
				(unsigned long long)tr->stats.requests, (unsigned long long)tr->stats.retries);
	}
}

int cmd_backup(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "volume", required_argument, NULL, 'V' },
		{ "tag", required_argument, NULL, 't' },
		{ "io-engine", required_argument, NULL, 'e' },
		{ "queue-depth", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 'T' },
		{ "uploaders", required_argument, NULL, 'U' },
		{ "parent", required_argument, NULL, 'p' },
		{ "changed-ranges", required_argument, NULL, 'R' },
		{ "base-image", required_argument, NULL, 'B' },
		{ "manifest-scan", no_argument, NULL, 'S' },
		{ "copy-to", required_argument, NULL, 'c' },
		{ "copy-to-optional", required_argument, NULL, 'o' },
		{ "freeze", required_argument, NULL, 'F' },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct fy_backup_opts o = { .io_engine = "auto", .parent = "auto" };
	const char *copy_urls[FY_MAX_TARGETS - 1];
	bool copy_optional[FY_MAX_TARGETS - 1];
	struct fy_repo *copies[FY_MAX_TARGETS - 1];
	size_t ncopies = 0;
	struct fy_label labels[CLI_MAX_TAGS];
	struct fy_progress prog = { 0 };
	struct fy_backup_result res;
	struct fy_repo *repo = NULL;
	const char *freeze = NULL;
	char err[512], warn[8][512], freeze_real[PATH_MAX] = "";
	int opt, rc, nwarn;

	while ((opt = cli_getopt(argc, argv, "backup", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(backup_help, stdout);
			return 0;
		case 'V':
			o.volume = optarg;
			break;
		case 't':
			if (cli_tag_opt("backup", optarg, labels, &o.nlabels))
				return EXIT_USAGE;
			break;
		case 'e':
			if (strcmp(optarg, "auto") && strcmp(optarg, "io_uring") && strcmp(optarg, "libaio") &&
			    strcmp(optarg, "psync"))
				return cli_usage_error("backup", "--io-engine wants auto, io_uring, libaio or psync, "
						       "not '%s'", optarg);
			o.io_engine = optarg;
			break;
		case 'F':
			if (!*optarg)
				return cli_usage_error("backup", "--freeze wants a mount point, not ''");
			freeze = optarg;
			break;
		case 'd':
			if (parse_uint(optarg, 1024, &o.queue_depth) < 0)
				return bad_number("backup", "--queue-depth", optarg);
			break;
		case 'T':
			if (parse_uint(optarg, 256, &o.threads) < 0)
				return bad_number("backup", "--threads", optarg);
			break;
		case 'U':
			if (parse_uint(optarg, 256, &o.uploaders) < 0)
				return bad_number("backup", "--uploaders", optarg);
			break;
		case 'p':
			o.parent = optarg;
			break;
		case 'R':
			o.changed_ranges = optarg;
			break;
		case 'B':
			o.base_image = optarg;
			break;
		case 'S':
			o.manifest_scan = true;
			break;
		case 'c':
		case 'o':
			if (ncopies == FY_MAX_TARGETS - 1)
				return cli_usage_error("backup", "at most %d copies", FY_MAX_TARGETS - 1);
			copy_urls[ncopies] = optarg;
			copy_optional[ncopies++] = opt == 'o';
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind == argc)
		return cli_usage_error("backup", "missing SOURCE");
	if (optind + 1 != argc)
		return cli_usage_error("backup", "unexpected argument '%s'", argv[optind + 1]);
	if (!*argv[optind])
		return cli_usage_error("backup", "SOURCE is empty");
	if (!o.volume || !*o.volume)
		return cli_usage_error("backup", "missing --volume NAME");
	/* Names and tags are printed by every reader: printable text only. */
	{
		char shown[200];

		if (fy_printable(o.volume, NULL) < 0)
			return cli_usage_error("backup", "--volume '%s' holds a control character or bytes that are not "
					       "UTF-8", fy_escape(o.volume, shown, sizeof(shown)));
		for (size_t i = 0; i < o.nlabels; i++)
			if (fy_printable(labels[i].key, NULL) < 0 || fy_printable(labels[i].value, NULL) < 0)
				return cli_usage_error("backup", "--tag '%s=%s' holds a control character or bytes that "
						       "are not UTF-8", fy_escape(labels[i].key, shown, sizeof(shown)),
						       fy_escape(labels[i].value, shown + 100, 100));
	}
	if ((o.changed_ranges != NULL) + (o.base_image != NULL) + o.manifest_scan > 1)
		return cli_usage_error("backup", "give one of --changed-ranges, --base-image, --manifest-scan");
	if (o.changed_ranges && !strcmp(o.parent, "auto"))
		return cli_usage_error("backup", "--changed-ranges needs --parent SNAPSHOT (the ranges are relative to it)");
	if ((o.changed_ranges || o.base_image) && !strcmp(o.parent, "none"))
		return cli_usage_error("backup", "a change source needs a parent, not --parent none");
	if (strcmp(o.parent, "auto") && strcmp(o.parent, "none") && !fy_snapshot_arg_valid(o.parent))
		return cli_usage_error("backup", "--parent wants auto, none, latest or a snapshot id, not '%s'",
				       o.parent);
	o.source = argv[optind];
	if (freeze && !realpath(freeze, freeze_real)) {
		cli_error("backup failed: --freeze %s: %s", freeze, strerror(errno));
		return 1;
	}
	/* Said before the backup starts (and in --json), even with --quiet. */
	nwarn = cli_mount_warnings(o.source, freeze ? freeze_real : NULL, warn, 8);
	for (int i = 0; i < nwarn; i++)
		cli_error("warning: %s", warn[i]);
	o.labels = labels;
	o.verbose = c.verbose;
	o.progress = &prog;
	char dropped[FY_MAX_TARGETS - 1][512];

	rc = cli_repos_opt(&c, "backup", &repo, copy_urls, copy_optional, ncopies, copies, dropped);
	if (rc)
		return rc;
	/* Optional copies that could not be opened are reported and left out. */
	for (size_t i = 0, j = 0; i < ncopies; i++) {
		if (!copies[i]) {
			cli_error("warning: optional copy %s dropped: %s", copy_urls[i], dropped[i]);
			continue;
		}
		copies[j] = copies[i];
		copy_optional[j++] = copy_optional[i];
		o.ncopies = j;
	}
	o.copies = copies;
	o.copy_optional = copy_optional;
	if (freeze) {
		const char *urls[FY_MAX_TARGETS];

		urls[0] = repo->url;
		for (size_t i = 0; i < o.ncopies; i++)
			urls[i + 1] = copies[i]->url;
		rc = cli_freeze(freeze, o.source, urls, o.ncopies + 1, err, sizeof(err));
		if (rc < 0) {
			fy_repo_close(repo);
			for (size_t i = 0; i < o.ncopies; i++)
				fy_repo_close(copies[i]);
			cli_error("backup failed: %s", err);
			return 1;
		}
		if (c.verbose)
			fprintf(stderr, "ferry: froze %s\n", freeze);
	}
	struct cli_progress *cp = cli_progress_start(&prog, "backup", c.quiet || c.json);

	rc = fy_backup(repo, &o, &res, err, sizeof(err));
	cli_progress_stop(cp);
	if (freeze) {
		char e2[512];

		if (cli_thaw(e2, sizeof(e2)) < 0) {
			cli_error("%s (thaw it with: fsfreeze -u %s)", e2, freeze);
			if (rc == 0) {
				rc = -EIO;
				snprintf(err, sizeof(err), "the snapshot is stored, but %s stays frozen", freeze);
			}
		} else if (c.verbose) {
			fprintf(stderr, "ferry: thawed %s\n", freeze);
		}
	}
	fy_repo_close(repo);
	for (size_t i = 0; i < o.ncopies; i++)
		fy_repo_close(copies[i]);
	if (rc < 0) {
		cli_error("backup failed: %s", err);
		return 1;
	}
	for (size_t t = 1; t < res.ntargets; t++)
		if (res.targets[t].status)
			cli_error("warning: optional copy %s dropped: %s", res.targets[t].url, res.targets[t].error);
	/* A fallback is worth knowing even in quiet mode: it costs a full read. */
	if (res.warning[0])
		cli_error("warning: %s", res.warning);
	char hex[2 * FY_SNAP_ID_LEN + 1], phex[2 * FY_SNAP_ID_LEN + 1] = "";
	double mbps = res.seconds > 0 ? res.size / res.seconds / 1e6 : 0;

	fy_hex(res.snapshot_id, FY_SNAP_ID_LEN, hex);
	if (res.has_parent)
		fy_hex(res.parent_id, FY_SNAP_ID_LEN, phex);
	if (c.json) {
		printf("{\"snapshot_id\":\"%s\",\"volume\":", hex);
		cli_json_string(stdout, o.volume);
		printf(",\"parent_id\":%s%s%s,\"change_source\":\"%s\",\"warning\":", res.has_parent ? "\"" : "",
		       res.has_parent ? phex : "null", res.has_parent ? "\"" : "", res.change_source);
		cli_json_string(stdout, res.warning);
		printf(",\"warnings\":[");
		for (int i = 0; i < nwarn; i++) {
			if (i)
				putchar(',');
			cli_json_string(stdout, warn[i]);
		}
		if (res.warning[0]) {
			if (nwarn)
				putchar(',');
			cli_json_string(stdout, res.warning);
		}
		printf("],\"frozen\":");
		if (freeze)
			cli_json_string(stdout, freeze);
		else
			printf("null");
		printf(",\"size\":%llu,\"bytes_read\":%llu,\"bytes_new\":%llu,\"bytes_stored\":%llu,"
		       "\"bytes_zero\":%llu,\"bytes_dedup\":%llu,\"bytes_reused\":%llu,\"bytes_same\":%llu,"
		       "\"chunks_new\":%u,\"chunks_dedup\":%u,"
		       "\"duration_s\":%.3f,\"throughput_mbps\":%.1f,\"io_engine\":\"%s\",\"direct\":%s,\"targets\":[",
		       (unsigned long long)res.size, (unsigned long long)res.bytes_read,
		       (unsigned long long)res.bytes_new, (unsigned long long)res.bytes_stored,
		       (unsigned long long)res.bytes_zero, (unsigned long long)res.bytes_dedup,
		       (unsigned long long)res.bytes_reused, (unsigned long long)res.bytes_same, res.chunks_new,
		       res.chunks_dedup, res.seconds, mbps, res.engine, res.direct ? "true" : "false");
		print_targets(&res, true);
		uint64_t retries = 0;

		for (size_t t = 0; t < res.ntargets; t++)
			retries += res.targets[t].stats.retries;
		printf("],\"retries\":%llu}\n", (unsigned long long)retries);
		return 0;
	}
	printf("%s\n", hex);
	if (!c.quiet && (c.verbose || isatty(STDERR_FILENO))) {
		char sz[32], rd[32], st[32], zr[32], dd[32], un[32];

		cli_human(res.size, sz, sizeof(sz));
		cli_human(res.bytes_read, rd, sizeof(rd));
		cli_human(res.bytes_stored, st, sizeof(st));
		cli_human(res.bytes_zero, zr, sizeof(zr));
		cli_human(res.bytes_dedup, dd, sizeof(dd));
		cli_human(res.bytes_reused + res.bytes_same, un, sizeof(un));
		if (res.has_parent)
			fprintf(stderr, "snapshot %.8s of %s (parent %.8s, %s): %s volume, %s read, %s unchanged, "
				"%s stored, %s zero/holes, %s already in the repository, %.2f s, %.0f MB/s\n",
				hex, o.volume, phex, res.change_source, sz, rd, un, st, zr, dd, res.seconds, mbps);
		else
			fprintf(stderr, "snapshot %.8s of %s (full): %s volume, %s read, %s stored, %s zero/holes, "
				"%s already in the repository, %.2f s, %.0f MB/s\n", hex, o.volume, sz, rd, st, zr,
				dd, res.seconds, mbps);
		if (res.ntargets > 1 || res.targets[0].stats.requests)
			print_targets(&res, false);
	}
	return 0;
}

/* ---- restore ---- */

static const char restore_help[] =
	"usage: ferry restore --repo URL [OPTIONS] SNAPSHOT TARGET\n\n"
	"Restore SNAPSHOT (an id, a unique prefix of at least 4 hex digits, or 'latest')\n"
	"to TARGET: a file (written beside TARGET as TARGET.ferry-restore and renamed over\n"
	"it when complete; holes stay holes) or a block device at least as large as the\n"
	"volume.  Every block is verified before it is written.  'latest' is the newest\n"
	"snapshot of --volume; without --volume it is refused when the repository holds\n"
	"more than one volume.\n\n"
	"Restore refuses (exit 1, nothing written): a target inside the repository it\n"
	"restores from (seen through symlinks, bind mounts and hard links); an existing\n"
	"file, unless --overwrite; a block device that is mounted or held open\n"
	"exclusively (swap, RAID, LVM), or a file a loop device is bound to, unless\n"
	"--force; a target another restore is writing.  The temporary file of a restore\n"
	"that was killed is reused by the next restore of the same target.\n\n"
	"  --volume NAME        'latest' and id prefixes name snapshots of this volume\n"
	"  --tag K=V            ... that carry this tag (repeatable)\n"
	"  --overwrite          replace TARGET if it is an existing file\n"
	"  --force              --overwrite, and write over a block device even when it is\n"
	"                       mounted or held, and replace a file a loop device is bound\n"
	"                       to (the device keeps reading the old file).  Never: into the\n"
	"                       repository, onto a device smaller than the volume, or over\n"
	"                       a restore in progress\n"
	"  --threads N          fetch/verify/write workers (default: 4 x online cores)\n"
	CLI_COMMON_HELP;

enum {
	OPT_R_OVERWRITE = 256,
	OPT_R_FORCE,
	OPT_R_VOLUME,
	OPT_R_TAG,
};

int cmd_restore(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, 'T' },
		{ "overwrite", no_argument, NULL, OPT_R_OVERWRITE },
		{ "force", no_argument, NULL, OPT_R_FORCE },
		{ "volume", required_argument, NULL, OPT_R_VOLUME },
		{ "tag", required_argument, NULL, OPT_R_TAG },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct cli_select sel = { 0 };
	struct fy_restore_opts o = { 0 };
	struct fy_progress prog = { 0 };
	struct fy_restore_result res;
	struct fy_repo *repo = NULL;
	uint8_t id[FY_SNAP_ID_LEN];
	char err[512];
	int opt, rc;

	sel.f.labels = sel.labels;
	while ((opt = cli_getopt(argc, argv, "restore", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(restore_help, stdout);
			return 0;
		case 'T':
			if (parse_uint(optarg, 256, &o.threads) < 0)
				return bad_number("restore", "--threads", optarg);
			break;
		case OPT_R_OVERWRITE:
			o.overwrite = true;
			break;
		case OPT_R_FORCE:
			o.force = true;
			break;
		case OPT_R_VOLUME:
			sel.f.volume = optarg;
			break;
		case OPT_R_TAG:
			if (cli_tag_opt("restore", optarg, sel.labels, &sel.f.nlabels))
				return EXIT_USAGE;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("restore", "wants SNAPSHOT and TARGET");
	if (cli_check_snapshot_arg("restore", argv[optind]))
		return EXIT_USAGE;
	if (!*argv[optind + 1])
		return cli_usage_error("restore", "TARGET is empty");
	o.target = argv[optind + 1];
	o.verbose = c.verbose;
	o.progress = &prog;
	rc = cli_repo(&c, "restore", &repo);
	if (rc)
		return rc;
	if (cli_pick("restore", repo, argv[optind], &sel, id, NULL)) {
		fy_repo_close(repo);
		return 1;
	}
	struct cli_progress *cp = cli_progress_start(&prog, "restore", c.quiet || c.json);

	rc = fy_restore(repo, id, &o, &res, err, sizeof(err));
	cli_progress_stop(cp);
	fy_repo_close(repo);
	if (rc < 0) {
		cli_error("restore failed: %s", err);
		return 1;
	}
	/* What --force let through is said even with --quiet. */
	if (res.warning[0])
		cli_error("warning: %s", res.warning);
	char hex[2 * FY_SNAP_ID_LEN + 1];
	double mbps = res.seconds > 0 ? res.size / res.seconds / 1e6 : 0;

	fy_hex(id, FY_SNAP_ID_LEN, hex);
	if (c.json) {
		printf("{\"snapshot_id\":\"%s\",\"target\":", hex);
		cli_json_string(stdout, o.target);
		printf(",\"size\":%llu,\"bytes_written\":%llu,\"bytes_zero\":%llu,\"duration_s\":%.3f,"
		       "\"throughput_mbps\":%.1f,\"warnings\":[",
		       (unsigned long long)res.size, (unsigned long long)res.bytes_written,
		       (unsigned long long)res.bytes_zero, res.seconds, mbps);
		if (res.warning[0])
			cli_json_string(stdout, res.warning);
		printf("]}\n");
	} else if (!c.quiet && (c.verbose || isatty(STDERR_FILENO))) {
		char sz[32], wr[32];

		cli_human(res.size, sz, sizeof(sz));
		cli_human(res.bytes_written, wr, sizeof(wr));
		fprintf(stderr, "restored snapshot %.8s to %s: %s volume, %s written, %.2f s, %.0f MB/s\n", hex,
			o.target, sz, wr, res.seconds, mbps);
	}
	return 0;
}

/* ---- snapshots ---- */

static const char snapshots_help[] =
	"usage: ferry snapshots --repo URL [--volume NAME] [--json]\n\n"
	"List the snapshots in the repository, oldest first.\n\n"
	"  --volume NAME        only snapshots of this volume\n"
	CLI_COMMON_HELP;

static int by_time(const void *a, const void *b)
{
	const Ferry__V1__Manifest *x = *(Ferry__V1__Manifest *const *)a, *y = *(Ferry__V1__Manifest *const *)b;

	return (x->created_unix_nano > y->created_unix_nano) - (x->created_unix_nano < y->created_unix_nano);
}

static void print_snapshot_json(const Ferry__V1__Manifest *m)
{
	char hex[2 * FY_SNAP_ID_LEN + 1], t[40];

	fy_hex(m->snapshot_id.data, FY_SNAP_ID_LEN, hex);
	cli_time(m->created_unix_nano, t, sizeof(t), true);
	printf("{\"id\":\"%s\",\"volume\":", hex);
	cli_json_string(stdout, m->volume);
	printf(",\"time\":\"%s\",\"size\":%llu,\"chunk_size\":%u,\"hostname\":", t, (unsigned long long)m->size,
	       m->chunk_size);
	cli_json_string(stdout, m->hostname);
	printf(",\"source\":");
	cli_json_string(stdout, m->source);
	if (m->parent_id.len == FY_SNAP_ID_LEN) {
		fy_hex(m->parent_id.data, FY_SNAP_ID_LEN, hex);
		printf(",\"parent\":\"%s\"", hex);
	}
	printf(",\"labels\":{");
	for (size_t i = 0; i < m->n_labels; i++) {
		if (i)
			putchar(',');
		cli_json_string(stdout, m->labels[i]->key);
		putchar(':');
		cli_json_string(stdout, m->labels[i]->value);
	}
	putchar('}');
	if (m->stats)
		printf(",\"stats\":{\"bytes_read\":%llu,\"bytes_new\":%llu,\"bytes_stored\":%llu,\"bytes_zero\":%llu,"
		       "\"bytes_dedup\":%llu,\"bytes_reused\":%llu,\"bytes_same\":%llu,\"change_source\":\"%s\","
		       "\"duration_s\":%.3f}",
		       (unsigned long long)m->stats->bytes_read, (unsigned long long)m->stats->bytes_new,
		       (unsigned long long)m->stats->bytes_stored, (unsigned long long)m->stats->bytes_zero,
		       (unsigned long long)m->stats->bytes_dedup, (unsigned long long)m->stats->bytes_reused,
		       (unsigned long long)m->stats->bytes_same,
		       m->stats->change_source && *m->stats->change_source ? m->stats->change_source : "full",
		       m->stats->duration_nano / 1e9);
	putchar('}');
}

int cmd_snapshots(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "volume", required_argument, NULL, 'V' },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	const char *volume = NULL;
	struct fy_repo *repo = NULL;
	uint8_t *ids = NULL;
	size_t n = 0, nm = 0;
	Ferry__V1__Manifest **ms = NULL;
	int opt, rc, status = 0;

	while ((opt = cli_getopt(argc, argv, "snapshots", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(snapshots_help, stdout);
			return 0;
		case 'V':
			volume = optarg;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind != argc)
		return cli_usage_error("snapshots", "unexpected argument '%s'", argv[optind]);
	rc = cli_repo(&c, "snapshots", &repo);
	if (rc)
		return rc;
	char lerr[512];

	rc = fy_snapshot_ids(repo, &ids, &n, lerr, sizeof(lerr));
	if (rc < 0) {
		cli_error("%s", lerr);
		fy_repo_close(repo);
		return 1;
	}
	ms = calloc(n ? n : 1, sizeof(*ms));
	for (size_t i = 0; ms && i < n; i++) {
		char err[512];
		Ferry__V1__Manifest *m;

		if (fy_manifest_read(repo, ids + i * FY_SNAP_ID_LEN, &m, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			status = 1;
			continue;
		}
		if (volume && strcmp(volume, m->volume) != 0) {
			ferry__v1__manifest__free_unpacked(m, NULL);
			continue;
		}
		ms[nm++] = m;
	}
	qsort(ms, nm, sizeof(*ms), by_time);
	if (c.json) {
		putchar('[');
		for (size_t i = 0; i < nm; i++) {
			if (i)
				putchar(',');
			print_snapshot_json(ms[i]);
		}
		puts("]");
	} else {
		printf("%-10s %-19s  %-20s %10s  %s\n", "ID", "Time", "Volume", "Size", "Labels");
		for (size_t i = 0; i < nm; i++) {
			char hex[2 * FY_SNAP_ID_LEN + 1], t[40], sz[32];

			fy_hex(ms[i]->snapshot_id.data, FY_SNAP_ID_LEN, hex);
			cli_time(ms[i]->created_unix_nano, t, sizeof(t), false);
			cli_human(ms[i]->size, sz, sizeof(sz));
			/* A repository can hold anything: every field printed escaped. */
			char vol[256], k[256], v[256];

			printf("%-10.8s %-19s  %-20s %10s  ", hex, t, fy_escape(ms[i]->volume, vol, sizeof(vol)), sz);
			for (size_t l = 0; l < ms[i]->n_labels; l++)
				printf("%s%s=%s", l ? "," : "", fy_escape(ms[i]->labels[l]->key, k, sizeof(k)),
				       fy_escape(ms[i]->labels[l]->value, v, sizeof(v)));
			putchar('\n');
		}
		printf("%zu snapshot%s\n", nm, nm == 1 ? "" : "s");
	}
	for (size_t i = 0; i < nm; i++)
		ferry__v1__manifest__free_unpacked(ms[i], NULL);
	free(ms);
	free(ids);
	fy_repo_close(repo);
	return status;
}

/* ---- check ---- */

static const char check_help[] =
	"usage: ferry check --repo URL [--read-data | --read-data-subset N/M|P%] [--threads N]\n\n"
	"Verify the repository: every snapshot's manifest, and that every chunk a snapshot\n"
	"names exists.  With --read-data, read and verify every such chunk (AES-GCM tag,\n"
	"crc32c and keyed id) as a restore would; with --read-data-subset, only some of them.\n"
	"Each problem is one line on stderr; the exit status is 1 when there is any.\n\n"
	"  --read-data          read and verify every byte\n"
	"  --read-data-subset N/M\n"
	"                       read and verify the N-th of M slices of the chunks (1 <= N <= M):\n"
	"                       a chunk's slice follows from its id alone, so N = 1..M over M\n"
	"                       runs reads every chunk once; nightly, a week a round:\n"
	"                       --read-data-subset $(( $(date +%s) / 86400 % 7 + 1 ))/7\n"
	"  --read-data-subset P%\n"
	"                       read and verify a random sample: each chunk with probability\n"
	"                       P/100 (0 < P <= 100, e.g. 2.5%), a new sample each run\n"
	"  --threads N          readers (default: 2 x online cores)\n"
	"  -v, --verbose        name each chunk as it is read ('read chunk ID' on stderr)\n"
	"Manifests and the existence of every chunk are checked in full either way.\n"
	"--json prints one object: snapshots, chunks_referenced, chunks_present,\n"
	"chunks_unreferenced, subset (\"all\", \"N/M\", \"P%\"; null without reading),\n"
	"chunks_selected, stored_bytes_selected, stored_bytes_referenced, chunks_read,\n"
	"bytes_read (plain bytes verified), seed (of a P% sample, else null), problems.\n\n"
	CLI_COMMON_HELP;

static void report_line(const char *line, void *arg)
{
	cli_progress_note(arg, line);
}

static void chunk_read_line(const uint8_t id[FY_ID_LEN], void *arg)
{
	char hex[2 * FY_ID_LEN + 1], line[2 * FY_ID_LEN + 16];

	fy_hex(id, FY_ID_LEN, hex);
	snprintf(line, sizeof(line), "read chunk %s", hex);
	cli_progress_note(arg, line);
}

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "read-data", no_argument, NULL, 'D' },
		{ "read-data-subset", required_argument, NULL, 'S' },
		{ "threads", required_argument, NULL, 'T' },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct fy_check_opts o = { .report = report_line };
	const char *subset = NULL;
	struct fy_repo *repo = NULL;
	struct fy_check_result res;
	char err[512];
	int opt, rc;

	while ((opt = cli_getopt(argc, argv, "check", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(check_help, stdout);
			return 0;
		case 'D':
			o.read_data = true;
			break;
		case 'S':
			if (fy_check_subset_parse(optarg, &o.subset, err, sizeof(err)) < 0)
				return cli_usage_error("check", "--read-data-subset: %s", err);
			subset = optarg;
			break;
		case 'T':
			if (parse_uint(optarg, 64, &o.threads) < 0)
				return bad_number("check", "--threads", optarg);
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind != argc)
		return cli_usage_error("check", "unexpected argument '%s'", argv[optind]);
	if (o.read_data && subset) {
		char shown[200];

		return cli_usage_error("check", "--read-data reads every chunk, --read-data-subset %s some: give one",
				       fy_escape(subset, shown, sizeof(shown)));
	}
	if (subset)
		o.read_data = true;
	rc = cli_repo(&c, "check", &repo);
	if (rc)
		return rc;
	struct fy_progress prog = { 0 };
	/* Progress only when reading data: the structural check is a listing. */
	struct cli_progress *cp = o.read_data ? cli_progress_start(&prog, "check", c.quiet || c.json) : NULL;

	o.progress = o.read_data ? &prog : NULL;
	o.chunk_read = c.verbose ? chunk_read_line : NULL;
	o.arg = cp;
	long problems = fy_check(repo, &o, &res, err, sizeof(err));

	cli_progress_stop(cp);
	fy_repo_close(repo);
	if (problems < 0) {
		cli_error("check failed: %s", err);
		return 1;
	}
	char what[48];

	fy_check_subset_str(&o.subset, what, sizeof(what));
	if (c.json) {
		printf("{\"snapshots\":%zu,\"chunks_referenced\":%zu,\"chunks_present\":%zu,\"chunks_unreferenced\":%zu,",
		       res.snapshots, res.chunks_referenced, res.chunks_present, res.chunks_unreferenced);
		if (o.read_data)
			printf("\"subset\":\"%s\",", what);
		else
			printf("\"subset\":null,");
		printf("\"chunks_selected\":%zu,\"stored_bytes_selected\":%llu,\"stored_bytes_referenced\":%llu,"
		       "\"chunks_read\":%zu,\"bytes_read\":%llu,",
		       res.chunks_selected, (unsigned long long)res.stored_selected,
		       (unsigned long long)res.stored_referenced, res.chunks_read, (unsigned long long)res.bytes_read);
		if (o.subset.kind == FY_SUBSET_PERCENT)
			printf("\"seed\":%llu,", (unsigned long long)res.seed);
		else
			printf("\"seed\":null,");
		printf("\"problems\":%ld}\n", problems);
	} else if (!c.quiet) {
		char rd[32], sel[32], ref[32];

		cli_human(res.bytes_read, rd, sizeof(rd));
		printf("%zu snapshot%s, %zu chunk%s referenced, %zu unreferenced", res.snapshots, cli_s(res.snapshots),
		       res.chunks_referenced, cli_s(res.chunks_referenced), res.chunks_unreferenced);
		if (o.subset.kind != FY_SUBSET_ALL) {
			cli_human(res.stored_selected, sel, sizeof(sel));
			cli_human(res.stored_referenced, ref, sizeof(ref));
			printf(", %s %s: %zu of %zu chunk%s (%s of %s stored) chosen, %zu (%s) read and verified",
			       o.subset.kind == FY_SUBSET_SLICE ? "slice" : "sample", what, res.chunks_selected,
			       res.chunks_referenced, cli_s(res.chunks_referenced), sel, ref, res.chunks_read, rd);
		} else if (o.read_data) {
			printf(", %zu chunk%s (%s) read and verified", res.chunks_read, cli_s(res.chunks_read), rd);
		}
		printf(": %s\n", problems ? "PROBLEMS FOUND" : "no problems");
	}
	if (problems) {
		cli_error("check found %ld problem%s in %s", problems, problems == 1 ? "" : "s", c.repo);
		return 1;
	}
	return 0;
}
