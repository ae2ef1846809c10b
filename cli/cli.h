/* The ferry command line: shared helpers for the subcommands. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ferry.h"

#define EXIT_USAGE 2

struct cli_common {
	const char *repo;
	const char *password_file;
	const char *key_file;
	bool json, verbose, quiet;
	bool insecure;          /* --insecure-no-encryption: an unencrypted repository, no secret */
	/* filled by cli_secret() */
	char *password;
	uint8_t raw_key[32];
	bool have_raw_key;
};

/* Print "ferry: <msg>" on stderr (one line). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage error for a subcommand; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Every option of argv written in full and known, values present: 0, or
 * EXIT_USAGE after one line naming the first mistake. */
int cli_check_args(int argc, char **argv, const char *cmd, const char *shortopts, const struct option *longopts);

/* getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, longopts) without GNU's
 * abbreviated long options, and with one line of our own for each mistake
 * (an unknown, abbreviated or valueless option): then it returns '?' and
 * the caller returns EXIT_USAGE. */
struct option;
int cli_getopt(int argc, char **argv, const char *cmd, const struct option *longopts);

/* "s" unless n is 1: "%zu snapshot%s", n, cli_s(n). */
static inline const char *cli_s(size_t n)
{
	return n == 1 ? "" : "s";
}

/* Handle an option common to every repository command; 1 if it was one. */
int cli_common_opt(struct cli_common *c, int opt, const char *arg);
/* Resolve --repo / FERRY_REPO and the secret; 0 or an exit code. */
int cli_prepare(struct cli_common *c, const char *cmd, bool need_secret);
void cli_free(struct cli_common *c);
/* cli_prepare, then open and unlock the repository and drop the secret;
 * 0 or an exit code (the error already printed). */
int cli_repo(struct cli_common *c, const char *cmd, struct fy_repo **repo);
/* The same, and more repositories (copies) opened with the same secret. */
int cli_repos(struct cli_common *c, const char *cmd, struct fy_repo **repo, const char *const *more, size_t nmore,
	      struct fy_repo **more_out);
/* The same; an optional[i] repository that cannot be opened is left NULL
 * in more_out[i] with the reason in why[i] instead of failing. */
int cli_repos_opt(struct cli_common *c, const char *cmd, struct fy_repo **repo, const char *const *more,
		  const bool *optional, size_t nmore, struct fy_repo **more_out, char (*why)[512]);

/* Which snapshots a command's SNAPSHOT arguments may name (--volume, --tag). */
#define CLI_MAX_TAGS 64
struct cli_select {
	struct fy_snap_filter f;
	struct fy_label labels[CLI_MAX_TAGS];
};
/* --tag K=V (arg is split in place): 0, or EXIT_USAGE after one line. */
int cli_tag_opt(const char *cmd, char *arg, struct fy_label *labels, size_t *n);
/* A SNAPSHOT argument that cannot be one: EXIT_USAGE after one line; else 0. */
int cli_check_snapshot_arg(const char *cmd, const char *arg);
/* fy_snapshot_select with the command's filter; 0, or 1 after one line. */
int cli_pick(const char *cmd, struct fy_repo *repo, const char *arg, const struct cli_select *sel,
	     uint8_t id[FY_SNAP_ID_LEN], Ferry__V1__Manifest **keep);

int cli_parse_size(const char *s, uint64_t *out);
void cli_human(uint64_t bytes, char *out, size_t len);
void cli_json_string(FILE *f, const char *s);
void cli_time(int64_t unix_nano, char *out, size_t len, bool iso);

/* Progress line on a TTY (bytes, MB/s, ETA); silent otherwise. */
struct cli_progress;
struct cli_progress *cli_progress_start(struct fy_progress *p, const char *what, bool quiet);
void cli_progress_stop(struct cli_progress *cp);
/* One "ferry: LINE" on stderr while a progress line may be showing (cp may be NULL). */
void cli_progress_note(struct cli_progress *cp, const char *line);

/* backup: one warning line per read-write mount of source's filesystem
 * (of the device, or of the loop device bound to an image file), except the
 * mount at freeze_real (realpath) that --freeze holds still; returns how many. */
int cli_mount_warnings(const char *source, const char *freeze_real, char (*warn)[512], size_t max);
/* backup --freeze: check that mnt is where source's filesystem is mounted
 * and that no file:// repository in repos lives on it, then FIFREEZE it;
 * from then on a fatal signal thaws it before the process dies.  0 or -errno
 * with one line in err. */
int cli_freeze(const char *mnt, const char *source, const char *const *repos, size_t nrepos, char *err,
	       size_t errlen);
/* Thaw what cli_freeze froze (nothing frozen: 0). */
int cli_thaw(char *err, size_t errlen);

int cmd_init(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_snapshots(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_forget(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_unlock(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_drill(int argc, char **argv);
int cmd_status(int argc, char **argv);

/* Long options shared by the repository commands (append to each table). */
#define CLI_OPT_S3_CA 0x1000 /* above every command's own option codes */
#define CLI_OPT_S3_INSECURE 0x1001
#define CLI_OPT_INSECURE 0x1002

#define CLI_COMMON_LONGOPTS                                          \
	{ "repo", required_argument, NULL, 'r' },                    \
	{ "s3-ca-file", required_argument, NULL, CLI_OPT_S3_CA },    \
	{ "s3-insecure", no_argument, NULL, CLI_OPT_S3_INSECURE },   \
	{ "password-file", required_argument, NULL, 'P' },           \
	{ "key-file", required_argument, NULL, 'K' },                \
	{ "insecure-no-encryption", no_argument, NULL, CLI_OPT_INSECURE }, \
	{ "json", no_argument, NULL, 'j' },                          \
	{ "verbose", no_argument, NULL, 'v' },                       \
	{ "quiet", no_argument, NULL, 'q' },                         \
	{ "help", no_argument, NULL, 'h' }
#define CLI_COMMON_SHORTOPTS "r:vqh"

#define CLI_COMMON_HELP                                                                         \
	"  -r, --repo URL          repository: file:///path, a path, or s3://BUCKET/PREFIX?...\n"  \
	"                          (docs/store.md; env FERRY_REPO)\n"                             \
	"      --s3-ca-file F      trust the CA certificates in F for https:// S3 endpoints\n"    \
	"      --s3-insecure       do not verify S3 TLS certificates (tests only)\n"              \
	"      --password-file F   read the password from F (first line); else FERRY_PASSWORD\n" \
	"      --key-file F        a raw 32-byte key (binary, or 64 hex digits) instead of a password\n" \
	"      --insecure-no-encryption  the repository is not encrypted (init: make it so); needed\n" \
	"                          each time one is opened, which never happens with a password\n" \
	"      --json              machine-readable output on stdout\n"                            \
	"  -v, --verbose           say what was chosen and why\n"                                  \
	"  -q, --quiet             no progress or summary on stderr\n"                             \
	"  -h, --help              this help\n"

#endif
