/* CSI Identity: who we are, what we offer, are we ready. */
#include <string.h>

#include "agent_priv.h"

#define MSG(x) ((const ProtobufCMessage *)(x))

static void get_plugin_info(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	Csi__V1__GetPluginInfoResponse resp = CSI__V1__GET_PLUGIN_INFO_RESPONSE__INIT;

	(void)req;
	(void)ctx;
	resp.name = (char *)FY_DRIVER_NAME;
	resp.vendor_version = (char *)FERRY_VERSION;
	fy_rpc_reply(call, MSG(&resp));
}

static void get_plugin_capabilities(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	static const Csi__V1__PluginCapability__Service__Type types[] = {
		CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE,
		CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__VOLUME_ACCESSIBILITY_CONSTRAINTS,
		CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__SNAPSHOT_METADATA_SERVICE,
	};
	enum { N = sizeof(types) / sizeof(types[0]) };
	Csi__V1__GetPluginCapabilitiesResponse resp = CSI__V1__GET_PLUGIN_CAPABILITIES_RESPONSE__INIT;
	Csi__V1__PluginCapability caps[N], *capp[N];
	Csi__V1__PluginCapability__Service svc[N];

	(void)req;
	(void)ctx;
	for (size_t i = 0; i < N; i++) {
		csi__v1__plugin_capability__init(&caps[i]);
		csi__v1__plugin_capability__service__init(&svc[i]);
		svc[i].type = types[i];
		caps[i].type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE;
		caps[i].service = &svc[i];
		capp[i] = &caps[i];
	}
	resp.n_capabilities = N;
	resp.capabilities = capp;
	fy_rpc_reply(call, MSG(&resp));
}

static void probe(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	struct fy_agent *a = ctx;
	Csi__V1__ProbeResponse resp = CSI__V1__PROBE_RESPONSE__INIT;
	Google__Protobuf__BoolValue ready = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;

	(void)req;
	ready.value = a->cat != NULL && !atomic_load(&a->stopping);
	resp.ready = &ready;
	fy_rpc_reply(call, MSG(&resp));
}

const struct fy_rpc_method fy_identity_methods[] = {
	{ "/csi.v1.Identity/GetPluginInfo", &csi__v1__get_plugin_info_request__descriptor, get_plugin_info, true },
	{ "/csi.v1.Identity/GetPluginCapabilities", &csi__v1__get_plugin_capabilities_request__descriptor,
	  get_plugin_capabilities, true },
	{ "/csi.v1.Identity/Probe", &csi__v1__probe_request__descriptor, probe, true },
};
const size_t fy_identity_nmethods = sizeof(fy_identity_methods) / sizeof(fy_identity_methods[0]);
