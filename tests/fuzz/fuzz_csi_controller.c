/* fuzz_csi_controller: the agent's Controller and SnapshotMetadata handlers
 * (agent/controller.c, snapshot.c, snapmeta.c) on a gRPC request's bytes:
 * protobuf-c's unpack with the method's request type, as agent/rpc.c does
 * it, then the handler against a real state directory and catalog
 * (csi_fixture.c): a volume, two local snapshots of it and two that are
 * only in a real file:// repository (password FZ_PASSWORD), so that ids,
 * names, capacities, capabilities, parameters, secrets, list tokens,
 * offsets and result limits are checked on their way to the catalog, the
 * images, the repository and the manifests.  Nothing here mounts, makes a
 * filesystem or attaches a loop device.  The call object is a stand-in
 * (rpc_standin.h): it checks that the handler answers exactly once, with a
 * reply that packs or a failure that says what was wrong.
 *
 * Input: a method (1 byte, modulo the table below), then the request. */
#include <stdint.h>
#include <stdlib.h>

#include "csi_fixture.h"
#include "fuzz.h"

static const char *const methods[] = {
	"/csi.v1.Controller/CreateVolume",
	"/csi.v1.Controller/DeleteVolume",
	"/csi.v1.Controller/ValidateVolumeCapabilities",
	"/csi.v1.Controller/GetCapacity",
	"/csi.v1.Controller/CreateSnapshot",
	"/csi.v1.Controller/DeleteSnapshot",
	"/csi.v1.Controller/ListSnapshots",
	"/csi.v1.SnapshotMetadata/GetMetadataAllocated",
	"/csi.v1.SnapshotMetadata/GetMetadataDelta",
	"/csi.v1.Controller/ControllerGetCapabilities",
	"/csi.v1.Identity/GetPluginInfo",
	"/csi.v1.Identity/Probe",
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static struct fy_agent *agent;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	agent = fz_csi_agent(FZ_CSI_CONTROLLER);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	const struct fy_rpc_method *m = fz_csi_method(methods[fz_u8(&in) % NMETHODS]);
	struct fy_rpc_call call;

	fy_standin_run(m, in.p, in.n, agent, NULL, &call);
	fy_standin_done(&call);
	fz_csi_reset(agent);
	return 0;
}
