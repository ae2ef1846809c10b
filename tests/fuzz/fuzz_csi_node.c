/* fuzz_csi_node: the agent's Node handlers (agent/node.c) on a gRPC
 * request's bytes, through protobuf-c's unpack as agent/rpc.c does it, with
 * a real state directory, catalog and publish records (csi_fixture.c) and
 * a real kubelet directory with symlinks that stay inside it, lead out of
 * it and to "/".  What is fuzzed is the validation of ids, capabilities and
 * above all target paths (absolute, normalised, no control characters,
 * their directory resolving under the kubelet directory), and what
 * unpublish does with paths that pass: nothing in the kubelet directory
 * but a volume's own publish targets may be removed.  The fixture volumes'
 * images are directories: an input that gets through every check fails to
 * attach a loop device, so nothing is ever mounted or formatted.  The call
 * object is a stand-in (rpc_standin.h).
 *
 * Input: a method (1 byte, modulo the table below), then the request.  A
 * target_path or volume_path that starts with "@K" has it replaced by the
 * kubelet directory (the seeds cannot know the scratch directory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi_fixture.h"
#include "fuzz.h"

static const char *const methods[] = {
	"/csi.v1.Node/NodePublishVolume",
	"/csi.v1.Node/NodeUnpublishVolume",
	"/csi.v1.Node/NodeGetVolumeStats",
	"/csi.v1.Node/NodeGetCapabilities",
	"/csi.v1.Node/NodeGetInfo",
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static struct fy_agent *agent;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	agent = fz_csi_agent(FZ_CSI_NODE);
	return 0;
}

/* The volume and target of this input's unpublish, if it is one. */
static char unpub_vol[256], unpub_target[8192];

static void kubelet_paths(ProtobufCMessage *msg)
{
	if (msg->descriptor == &csi__v1__node_publish_volume_request__descriptor) {
		fz_csi_kubelet_path(&((Csi__V1__NodePublishVolumeRequest *)msg)->target_path);
	} else if (msg->descriptor == &csi__v1__node_unpublish_volume_request__descriptor) {
		Csi__V1__NodeUnpublishVolumeRequest *u = (Csi__V1__NodeUnpublishVolumeRequest *)msg;

		fz_csi_kubelet_path(&u->target_path);
		snprintf(unpub_vol, sizeof(unpub_vol), "%s", u->volume_id ? u->volume_id : "");
		snprintf(unpub_target, sizeof(unpub_target), "%s", u->target_path ? u->target_path : "");
	}
	else if (msg->descriptor == &csi__v1__node_get_volume_stats_request__descriptor)
		fz_csi_kubelet_path(&((Csi__V1__NodeGetVolumeStatsRequest *)msg)->volume_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	const struct fy_rpc_method *m = fz_csi_method(methods[fz_u8(&in) % NMETHODS]);
	struct fy_rpc_call call;

	unpub_vol[0] = unpub_target[0] = 0;
	fy_standin_run(m, in.p, in.n, agent, kubelet_paths, &call);
	/* The fixtures can never be published: an OK here means a loop device
	 * was attached to something that is not an image. */
	if (!strcmp(m->path, "/csi.v1.Node/NodePublishVolume") && call.status == GRPC_STATUS_OK)
		fz_fail("NodePublishVolume succeeded on a fixture whose image is a directory");
	/* Whatever is not a volume's publish target stays where it is. */
	fz_csi_kubelet_check(unpub_vol[0] ? unpub_vol : NULL, unpub_target);
	fy_standin_done(&call);
	fz_csi_reset(agent);
	return 0;
}
