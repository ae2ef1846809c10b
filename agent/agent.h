/* ferry agent: the CSI node plugin (Identity, Controller, Node and
 * SnapshotMetadata over gRPC on a unix socket).  docs/agent.md describes it. */
#ifndef FERRY_AGENT_H
#define FERRY_AGENT_H

/* `ferry agent ...`: runs until SIGTERM/SIGINT; returns the exit status. */
int fy_agent_main(int argc, char **argv);

#endif
