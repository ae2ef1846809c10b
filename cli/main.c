/* ferry: back up block devices and image files to a repository, and restore them. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "agent.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "init", cmd_init, "create a repository" },
	{ "backup", cmd_backup, "back up a block device or image file as a new snapshot" },
	{ "restore", cmd_restore, "restore a snapshot to a file or block device" },
	{ "snapshots", cmd_snapshots, "list snapshots" },
	{ "check", cmd_check, "verify the repository (with --read-data: every byte)" },
	{ "diff", cmd_diff, "the changed byte ranges between two snapshots" },
	{ "forget", cmd_forget, "remove snapshots by a retention policy (--keep-daily 7 ...)" },
	{ "prune", cmd_prune, "delete the chunks no snapshot names" },
	{ "unlock", cmd_unlock, "remove stale repository locks" },
	{ "copy", cmd_copy, "send snapshots to a copy of the repository (another bucket, region, account)" },
	{ "drill", cmd_drill, "restore a snapshot to scratch, verify and check it, time it (RTO)" },
	{ "status", cmd_status, "RPO and RTO per volume and repository, against objectives" },
	{ "agent", fy_agent_main, "run the CSI node plugin (gRPC on a unix socket)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry COMMAND [OPTIONS] ...\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-10s %s\n  %-10s %s\n\n'ferry COMMAND --help' (or 'ferry help COMMAND') describes each "
		"command.\nExit status: 0 success, 1 failure, 2 bad usage; status: 3 an objective breached\n"
		"(README.md).\n", "version", "print the version", "help", "this list, or one command's help");
}

static const char version_help[] =
	"usage: ferry version\n\n"
	"Print ferry's version (also: ferry --version).\n";

static int find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			return (int)i;
	return -1;
}

int main(int argc, char **argv)
{
	int i;

	if (argc < 2) {
		cli_error("no command given (try 'ferry --help')");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		if (argc == 2) {
			usage(stdout);
			return 0;
		}
		if (argc > 3) {
			cli_error("help: unexpected argument '%s' (ferry help COMMAND describes one command)", argv[3]);
			return EXIT_USAGE;
		}
		/* ferry help COMMAND: that command's --help */
		if (!strcmp(argv[2], "version")) {
			fputs(version_help, stdout);
			return 0;
		}
		if (!strcmp(argv[2], "help")) {
			usage(stdout);
			return 0;
		}
		i = find(argv[2]);
		if (i < 0) {
			cli_error("unknown command '%s' (try 'ferry --help')", argv[2]);
			return EXIT_USAGE;
		}
		char *hargv[] = { argv[2], "--help", NULL };

		return commands[i].run(2, hargv);
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			fputs(version_help, stdout);
			return 0;
		}
		if (argc > 2) {
			cli_error("version: unexpected argument '%s' (see 'ferry version --help')", argv[2]);
			return EXIT_USAGE;
		}
		printf("ferry %s\n", FERRY_VERSION);
		return 0;
	}
	i = find(argv[1]);
	if (i >= 0 && commands[i].run == fy_agent_main &&
	    cli_check_args(argc - 1, argv + 1, "agent", "h", fy_agent_options))
		return EXIT_USAGE;
	if (i >= 0)
		return commands[i].run(argc - 1, argv + 1);
	cli_error("unknown command '%s' (try 'ferry --help')", argv[1]);
	return EXIT_USAGE;
}
