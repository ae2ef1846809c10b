/* The subcommands that remove things: forget, prune, unlock. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry_gc.h"
#include "repo/lock.h"

enum {
	OPT_VOLUME = 256,
	OPT_LAST,
	OPT_HOURLY,
	OPT_DAILY,
	OPT_WEEKLY,
	OPT_MONTHLY,
	OPT_YEARLY,
	OPT_DRY_RUN,
	OPT_REMOVE_ALL,
	OPT_ALLOW_EMPTY,
};

static int parse_count(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);

	if (errno || end == s || *end || v == 0 || v > 1000000 || *s == '-')
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* ---- forget ---- */

static const char forget_help[] =
	"usage: ferry forget --repo URL [--volume NAME] [--keep-last N] [--keep-hourly N]\n"
	"                    [--keep-daily N] [--keep-weekly N] [--keep-monthly N]\n"
	"                    [--keep-yearly N] [--dry-run] [--json]\n\n"
	"Remove the snapshots that no --keep-* policy keeps.  Each volume is judged on its\n"
	"own, newest snapshot first: --keep-daily N keeps the newest snapshot of each of\n"
	"the N most recent days that have one, and so on (hours, days, ISO weeks, months\n"
	"and years in local time; set TZ to choose).  A snapshot is kept when any policy\n"
	"keeps it.  At least one --keep-* is required.  The chunks of removed snapshots\n"
	"stay until 'ferry prune'.\n\n"
	"  --volume NAME        only snapshots of this volume\n"
	"  --keep-last N        the N newest snapshots\n"
	"  --keep-hourly N      the newest snapshot of each of the last N hours with one\n"
	"  --keep-daily N       ... of each of the last N days\n"
	"  --keep-weekly N      ... of each of the last N ISO weeks\n"
	"  --keep-monthly N     ... of each of the last N months\n"
	"  --keep-yearly N      ... of each of the last N years\n"
	"  --dry-run            say what would be removed, remove nothing\n"
	CLI_COMMON_HELP;

static void forget_json(const struct fy_forget_result *res, bool dry_run)
{
	printf("{\"dry_run\":%s,\"kept\":%zu,\"removed\":%zu,\"retained\":%zu,\"volumes\":[",
	       dry_run ? "true" : "false", res->kept, res->removed, res->retained);
	for (size_t a = 0, b; a < res->n; a = b) {
		for (b = a; b < res->n && !strcmp(res->items[a].volume, res->items[b].volume); b++)
			;
		printf("%s{\"volume\":", a ? "," : "");
		cli_json_string(stdout, res->items[a].volume);
		for (int keep = 1; keep >= 0; keep--) {
			bool first = true;

			printf(",\"%s\":[", keep ? "keep" : "remove");
			for (size_t i = a; i < b; i++) {
				const struct fy_forget_item *it = &res->items[i];
				char hex[2 * FY_SNAP_ID_LEN + 1], t[40];

				if (!!it->reasons != keep)
					continue;
				fy_hex(it->id, FY_SNAP_ID_LEN, hex);
				cli_time(it->created_unix_nano, t, sizeof(t), true);
				printf("%s{\"id\":\"%s\",\"time\":\"%s\",\"size\":%llu", first ? "" : ",", hex, t,
				       (unsigned long long)it->size);
				first = false;
				if (keep) {
					printf(",\"reasons\":[");
					for (unsigned j = 0, k = 0; j < FY_KEEP_NPOLICIES; j++)
						if (it->reasons & (1u << j))
							printf("%s\"%s\"", k++ ? "," : "", fy_keep_reason_name(1u << j));
					putchar(']');
				}
				if (it->retained_until) {
					char u[40];

					cli_time(it->retained_until * 1000000000, u, sizeof(u), true);
					printf(",\"retained_until\":\"%s\"", u);
				}
				putchar('}');
			}
			putchar(']');
		}
		putchar('}');
	}
	puts("]}");
}

static void forget_table(const struct fy_forget_result *res, bool dry_run)
{
	for (size_t a = 0, b; a < res->n; a = b) {
		size_t keep = 0;

		for (b = a; b < res->n && !strcmp(res->items[a].volume, res->items[b].volume); b++)
			keep += res->items[b].reasons != 0;
		char vol[256];

		printf("%s%s: keep %zu, %s %zu\n", a ? "\n" : "", fy_escape(res->items[a].volume, vol, sizeof(vol)), keep,
		       dry_run ? "would remove" : "remove", b - a - keep);
		printf("  %-8s %-10s %-19s  %10s  %s\n", "Action", "ID", "Time", "Size", "Reasons");
		for (size_t i = a; i < b; i++) {
			const struct fy_forget_item *it = &res->items[i];
			char hex[2 * FY_SNAP_ID_LEN + 1], t[40], sz[32], why[96];

			fy_hex(it->id, FY_SNAP_ID_LEN, hex);
			cli_time(it->created_unix_nano, t, sizeof(t), false);
			cli_human(it->size, sz, sizeof(sz));
			fy_keep_reasons(it->reasons, why, sizeof(why));
			if (it->retained_until) {
				char u[40];

				cli_time(it->retained_until * 1000000000, u, sizeof(u), false);
				snprintf(why, sizeof(why), "Object Lock retains it until %s", u);
			}
			printf("  %-8s %-10.8s %-19s  %10s%s%s\n",
			       it->reasons ? "keep" : it->retained_until ? "retained" : "remove", hex, t, sz,
			       why[0] ? "  " : "", why);
		}
	}
	if (dry_run)
		printf("%zu kept, %zu would be removed (dry run: nothing was removed)\n", res->kept, res->removed);
	else
		printf("%zu kept, %zu removed%s\n", res->kept, res->removed,
		       res->removed ? " (their chunks stay until 'ferry prune')" : "");
	if (res->retained)
		printf("%zu snapshot%s to remove %s under Object Lock retention: left in place, not deleted\n",
		       res->retained, res->retained == 1 ? "" : "s", res->retained == 1 ? "is" : "are");
}

int cmd_forget(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "volume", required_argument, NULL, OPT_VOLUME },
		{ "keep-last", required_argument, NULL, OPT_LAST },
		{ "keep-hourly", required_argument, NULL, OPT_HOURLY },
		{ "keep-daily", required_argument, NULL, OPT_DAILY },
		{ "keep-weekly", required_argument, NULL, OPT_WEEKLY },
		{ "keep-monthly", required_argument, NULL, OPT_MONTHLY },
		{ "keep-yearly", required_argument, NULL, OPT_YEARLY },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct fy_forget_policy pol = { 0 };
	struct fy_forget_result res;
	struct fy_repo *repo = NULL;
	const char *volume = NULL;
	bool dry_run = false;
	char err[512];
	int opt, rc;

	while ((opt = cli_getopt(argc, argv, "forget", longopts)) != -1) {
		unsigned *slot = NULL;

		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(forget_help, stdout);
			return 0;
		case OPT_VOLUME:
			volume = optarg;
			break;
		case OPT_LAST: slot = &pol.last; break;
		case OPT_HOURLY: slot = &pol.hourly; break;
		case OPT_DAILY: slot = &pol.daily; break;
		case OPT_WEEKLY: slot = &pol.weekly; break;
		case OPT_MONTHLY: slot = &pol.monthly; break;
		case OPT_YEARLY: slot = &pol.yearly; break;
		case OPT_DRY_RUN:
			dry_run = true;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
		if (slot && parse_count(optarg, slot) < 0)
			return cli_usage_error("forget", "--%s wants a positive number, not '%s'",
					       longopts[opt - OPT_VOLUME].name, optarg);
	}
	if (optind != argc)
		return cli_usage_error("forget", "unexpected argument '%s'", argv[optind]);
	if (!pol.last && !pol.hourly && !pol.daily && !pol.weekly && !pol.monthly && !pol.yearly)
		return cli_usage_error("forget", "no --keep-* policy given; refusing to remove every snapshot");
	rc = cli_repo(&c, "forget", &repo);
	if (rc)
		return rc;
	rc = fy_forget(repo, volume, &pol, dry_run, &res, err, sizeof(err));
	fy_repo_close(repo);
	if (rc < 0) {
		fy_forget_result_free(&res);
		cli_error("forget failed: %s", err);
		return 1;
	}
	if (c.json)
		forget_json(&res, dry_run);
	else if (!c.quiet)
		forget_table(&res, dry_run);
	fy_forget_result_free(&res);
	return 0;
}

/* ---- prune ---- */

static const char prune_help[] =
	"usage: ferry prune --repo URL [--dry-run] [--allow-empty] [--json]\n\n"
	"Delete every chunk that no snapshot names (the chunks of forgotten snapshots and\n"
	"of interrupted backups).  Prune holds the repository's exclusive lock, so it\n"
	"waits for no one: while a backup or forget runs it fails, naming their lock.\n"
	"A snapshot manifest that cannot be read, or a folder of the repository that cannot\n"
	"be listed, stops prune before it deletes anything; so does a repository that\n"
	"holds chunks and no snapshot at all, unless --allow-empty says to delete them all.\n\n"
	"  --dry-run            count what would be deleted (no lock taken, nothing deleted);\n"
	"                       with --verbose, list the chunks\n"
	"  --allow-empty        the repository has no snapshot on purpose (every one was\n"
	"                       forgotten): delete every chunk\n"
	"On a terminal a progress line shows the deletes (with --verbose, the list of\n"
	"chunks instead).\n\n"
	CLI_COMMON_HELP;

struct prune_cli {
	bool dry_run;
	struct cli_progress *cp;
};

static void prune_note(const char *line, void *arg)
{
	cli_progress_note(((struct prune_cli *)arg)->cp, line);
}

static void print_chunk(const uint8_t id[FY_ID_LEN], uint64_t size, void *arg)
{
	char hex[2 * FY_ID_LEN + 1];

	fy_hex(id, FY_ID_LEN, hex);
	printf("%s chunk %s (%llu bytes)\n", ((struct prune_cli *)arg)->dry_run ? "would remove" : "removing", hex,
	       (unsigned long long)size);
}

int cmd_prune(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "allow-empty", no_argument, NULL, OPT_ALLOW_EMPTY },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct prune_cli pc = { 0 };
	struct fy_prune_opts o = { .note = prune_note, .arg = &pc };
	struct fy_progress prog = { 0 };
	struct fy_prune_result res;
	struct fy_repo *repo = NULL;
	char err[512];
	int opt, rc;

	while ((opt = cli_getopt(argc, argv, "prune", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(prune_help, stdout);
			return 0;
		case OPT_DRY_RUN:
			o.dry_run = true;
			break;
		case OPT_ALLOW_EMPTY:
			o.allow_empty = true;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind != argc)
		return cli_usage_error("prune", "unexpected argument '%s'", argv[optind]);
	pc.dry_run = o.dry_run;
	if (c.verbose && !c.json)
		o.chunk = print_chunk; /* the list of chunks instead of a progress line */
	rc = cli_repo(&c, "prune", &repo);
	if (rc)
		return rc;
	if (!o.chunk) {
		o.progress = &prog;
		pc.cp = cli_progress_start(&prog, "prune", c.quiet || c.json);
	}
	rc = fy_prune(repo, &o, &res, err, sizeof(err));
	cli_progress_stop(pc.cp);
	fy_repo_close(repo);
	if (rc < 0) {
		cli_error("prune failed: %s", err);
		return 1;
	}
	if (c.json) {
		printf("{\"dry_run\":%s,\"snapshots\":%zu,\"chunks_referenced\":%zu,\"chunks_present\":%zu,"
		       "\"chunks_missing\":%zu,\"chunks_kept\":%zu,\"chunks_removed\":%zu,\"bytes_kept\":%llu,"
		       "\"bytes_removed\":%llu,\"chunks_retained\":%zu,\"bytes_retained\":%llu,\"uploads_aborted\":%ld}\n",
		       o.dry_run ? "true" : "false", res.snapshots, res.chunks_referenced, res.chunks_present,
		       res.chunks_missing, res.chunks_kept, res.chunks_removed, (unsigned long long)res.bytes_kept,
		       (unsigned long long)res.bytes_removed, res.chunks_retained, (unsigned long long)res.bytes_retained,
		       res.uploads_aborted);
	} else if (!c.quiet) {
		char kept[32], freed[32];

		cli_human(res.bytes_kept, kept, sizeof(kept));
		cli_human(res.bytes_removed, freed, sizeof(freed));
		printf("%zu snapshot%s: kept %zu chunk%s (%s), %s %zu chunk%s (%s%s)\n", res.snapshots,
		       cli_s(res.snapshots), res.chunks_kept, cli_s(res.chunks_kept), kept,
		       o.dry_run ? "would remove" : "removed", res.chunks_removed, cli_s(res.chunks_removed), freed,
		       o.dry_run ? "; dry run, nothing was deleted" : " freed");
		if (res.chunks_retained) {
			char rb[32], u[40];

			cli_human(res.bytes_retained, rb, sizeof(rb));
			cli_time(res.retained_until * 1000000000, u, sizeof(u), false);
			printf("%zu unreferenced chunk%s (%s) %s under Object Lock retention (until %s at the latest): "
			       "left in place, not deleted\n", res.chunks_retained, cli_s(res.chunks_retained), rb,
			       res.chunks_retained == 1 ? "is" : "are", u);
		}
		if (res.uploads_aborted)
			printf("removed %ld incomplete upload%s left by interrupted writers\n", res.uploads_aborted,
			       cli_s((size_t)res.uploads_aborted));
	}
	if (res.chunks_missing)
		cli_error("%zu chunk%s named by snapshots %s missing from %s: run 'ferry check'", res.chunks_missing,
			  cli_s(res.chunks_missing), res.chunks_missing == 1 ? "is" : "are",
			  c.repo);
	return 0;
}

/* ---- unlock ---- */

static const char unlock_help[] =
	"usage: ferry unlock --repo URL [--remove-all] [--json]\n\n"
	"Remove stale locks: those not refreshed for 30 minutes, and those taken on this\n"
	"host by a process that is gone.  Live locks are kept and listed.\n\n"
	"  --remove-all         remove every lock, live or not (only when no ferry process\n"
	"                       is using the repository: a running backup is then unprotected)\n"
	CLI_COMMON_HELP;

int cmd_unlock(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "remove-all", no_argument, NULL, OPT_REMOVE_ALL },
		CLI_COMMON_LONGOPTS,
		{ 0 },
	};
	struct cli_common c = { 0 };
	struct fy_repo *repo = NULL;
	struct fy_lock_info *locks = NULL;
	size_t n = 0, removed = 0, kept = 0;
	bool all = false;
	char err[512];
	int opt, rc, status = 0;

	while ((opt = cli_getopt(argc, argv, "unlock", longopts)) != -1) {
		if (cli_common_opt(&c, opt, optarg))
			continue;
		switch (opt) {
		case 'h':
			fputs(unlock_help, stdout);
			return 0;
		case OPT_REMOVE_ALL:
			all = true;
			break;
		default:
			return EXIT_USAGE; /* cli_getopt said why */
		}
	}
	if (optind != argc)
		return cli_usage_error("unlock", "unexpected argument '%s'", argv[optind]);
	rc = cli_repo(&c, "unlock", &repo);
	if (rc)
		return rc;
	rc = fy_lock_list(repo, &locks, &n, err, sizeof(err));
	if (rc < 0) {
		cli_error("unlock failed: %s", err);
		fy_repo_close(repo);
		return 1;
	}
	if (c.json)
		printf("{\"locks\":[");
	for (size_t i = 0; i < n; i++) {
		const struct fy_lock_info *li = &locks[i];
		bool remove = all || li->stale;
		char what[400], key[200];

		fy_lock_describe(li, what, sizeof(what));
		if (remove && fy_lock_remove(repo, li, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			status = 1;
			remove = false;
		}
		removed += remove;
		kept += !remove;
		if (c.json) {
			printf("%s{\"lock\":", i ? "," : "");
			cli_json_string(stdout, li->key);
			printf(",\"description\":");
			cli_json_string(stdout, what);
			printf(",\"stale\":%s,\"corrupt\":%s,\"removed\":%s", li->stale ? "true" : "false",
			       li->corrupt ? "true" : "false", remove ? "true" : "false");
			if (li->stale) {
				printf(",\"why\":");
				cli_json_string(stdout, li->why);
			}
			putchar('}');
		} else if (!c.quiet) {
			fy_escape(li->key, key, sizeof(key));
			if (remove)
				printf("removed %slock %s: %s%s%s%s\n", li->stale ? "stale " : "", key, what,
				       li->stale ? " (" : "", li->stale ? li->why : "", li->stale ? ")" : "");
			else
				printf("kept %s lock %s: %s\n", li->corrupt ? "unreadable" : "live", key, what);
		}
	}
	if (c.json)
		printf("],\"removed\":%zu,\"kept\":%zu}\n", removed, kept);
	else if (!c.quiet && n == 0)
		printf("no locks in %s\n", c.repo);
	else if (!c.quiet)
		printf("%zu lock%s removed, %zu kept%s\n", removed, removed == 1 ? "" : "s", kept,
		       kept ? " ('ferry unlock --remove-all' removes live ones, when nothing uses the repository)" : "");
	free(locks);
	fy_repo_close(repo);
	return status;
}
