/* A stand-in for the gRPC call object of agent/rpc.c, linked into the
 * fuzz targets of the agent's handlers instead of rpc.c.  It is a stand-in
 * because a gRPC server and client per input would run a few hundred
 * inputs a second where this runs thousands: the request's bytes still go
 * through protobuf-c's unpack exactly as rpc.c does it, and the handler's
 * answer is packed as rpc.c would send it.  It records how the handler
 * ended the call, and checks the contract of rpc.h: exactly one of
 * fy_rpc_reply, fy_rpc_fail or fy_rpc_end per call, a failure's status
 * never OK. */
#ifndef FERRY_FUZZ_RPC_STANDIN_H
#define FERRY_FUZZ_RPC_STANDIN_H

#include <stdbool.h>

#include "rpc.h"

struct fy_rpc_call {
	const char *method;
	int answers;               /* reply, fail and end calls */
	int sends;                 /* stream messages */
	grpc_status_code status;
	char details[1024];
	ProtobufCMessage *reply;   /* the reply, packed and unpacked again (NULL for a failure or a stream) */
	fy_rpc_fn later;           /* fy_rpc_defer: run after the handler returns, as a worker would */
	int defers;
};

/* Run method (its path, e.g. "/csi.v1.Controller/CreateVolume") of the
 * table on the request's bytes, as rpc.c would: an undecodable request is
 * INVALID_ARGUMENT.  fix, if not NULL, may rewrite the decoded request
 * before the handler sees it.  Checks the contract; *call holds the answer
 * (free its reply with fy_standin_done). */
void fy_standin_run(const struct fy_rpc_method *m, const uint8_t *req, size_t len, void *ctx,
		    void (*fix)(ProtobufCMessage *req), struct fy_rpc_call *call);
void fy_standin_done(struct fy_rpc_call *call);

#endif
