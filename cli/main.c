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
	{ "agent", fy_agent_main, "run the CSI node plugin (gRPC on a unix socket)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry COMMAND [OPTIONS] ...\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-10s %s\n\n'ferry COMMAND --help' describes each command.\n", "version", "print the version");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("ferry %s\n", FERRY_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	cli_error("unknown command '%s' (try 'ferry --help')", argv[1]);
	return EXIT_USAGE;
}
