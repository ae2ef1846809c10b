/* ferry agent: the CSI node plugin (Identity, Controller, Node and
 * SnapshotMetadata over gRPC on a unix socket).  docs/agent.md describes it. */
#ifndef FERRY_AGENT_H
#define FERRY_AGENT_H

#include <getopt.h>

/* Its options (short option: -h only), for the ferry command's check that
 * every long option is written in full before the agent starts. */
extern const struct option fy_agent_options[];

/* `ferry agent ...`: runs until SIGTERM/SIGINT; returns the exit status. */
int fy_agent_main(int argc, char **argv);

#endif
