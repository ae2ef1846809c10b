/* The agent the CSI fuzz targets run their handlers against: a real state
 * directory (catalog, volumes, snapshots, jobs, publish records) in the
 * process's scratch directory, with fixtures the fuzzer can name (their ids
 * are in the seed corpus and the dictionary), put back after every input
 * that changed them, and everything an input created removed again, so
 * that every input meets the same state.  No upload workers run: a
 * snapshot's upload is queued and never started (a background thread would
 * make the outcome of an input depend on timing). */
#ifndef FERRY_FUZZ_CSI_FIXTURE_H
#define FERRY_FUZZ_CSI_FIXTURE_H

#include <stdbool.h>

#include "agent_priv.h"
#include "rpc_standin.h"

/* Fixture ids ("vol-"/"snap-" + 32 hex: ids the agent could have issued). */
#define FZ_VOL1 "vol-11111111111111111111111111111111"
#define FZ_VOL2 "vol-22222222222222222222222222222222"
#define FZ_SNAP1 "snap-11111111111111111111111111111111" /* local clone of VOL1 */
#define FZ_SNAP2 "snap-22222222222222222222222222222222" /* local clone of VOL1, later */
#define FZ_SNAP3 "snap-33333333333333333333333333333333" /* only in the repository: all holes */
#define FZ_SNAP4 "snap-44444444444444444444444444444444" /* only in the repository: chunks it lacks */
#define FZ_SNAP5 "snap-55555555555555555555555555555555" /* another node's: the label of SNAP4's manifest, not in the catalog */
#define FZ_NODE "fuzz-node"

enum fz_csi_kind {
	FZ_CSI_CONTROLLER, /* volume images are real files; the repository holds SNAP3 and SNAP4 */
	FZ_CSI_NODE,       /* volume "images" are directories: no loop device can ever be attached */
};

/* Make the agent (once per process). */
struct fy_agent *fz_csi_agent(enum fz_csi_kind kind);
/* Put the state back as it was before the input. */
void fz_csi_reset(struct fy_agent *a);
/* The kubelet directory (targets of NodePublish must lie under it). */
const char *fz_csi_kubelet(void);
/* Stop (fz_fail) if an entry of the kubelet directory is gone that is not
 * the target (a path) of the call's unpublish of volume vol (NULL: none):
 * only a volume's own publish targets may go. */
void fz_csi_kubelet_check(const char *vol, const char *target);
/* The repository URL of SNAP3 and SNAP4 (password FZ_PASSWORD). */
const char *fz_csi_repo(void);

/* A method of the agent's tables by path ("/csi.v1.Node/NodePublishVolume"). */
const struct fy_rpc_method *fz_csi_method(const char *path);

/* Replace a leading "@K" of *s by the kubelet directory: the seed corpus
 * names paths under it without knowing where the scratch directory is. */
void fz_csi_kubelet_path(char **s);

#endif
