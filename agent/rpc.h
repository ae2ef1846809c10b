/* A small gRPC server on gRPC C core for unary and server-streaming methods
 * whose messages are protobuf-c structs.
 *
 * A few threads serve one completion queue: they accept calls, decode the
 * request, and either run the handler at once (methods marked inline: fast,
 * never blocking — Probe, GetPluginInfo, ListSnapshots) or hand the call to a
 * pool of worker threads (everything that may block: mkfs, mount, freeze,
 * restores, streams).  A handler ends every call with exactly one of
 * fy_rpc_reply, fy_rpc_fail or fy_rpc_end (after fy_rpc_send for a stream). */
#ifndef FERRY_AGENT_RPC_H
#define FERRY_AGENT_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

struct fy_rpc_server;
struct fy_rpc_call;

/* req is owned by the call and freed after the call ends. */
typedef void (*fy_rpc_fn)(struct fy_rpc_call *call, const ProtobufCMessage *req, void *ctx);

struct fy_rpc_method {
	const char *path;                        /* "/csi.v1.Identity/Probe" */
	const ProtobufCMessageDescriptor *req;   /* the request type */
	fy_rpc_fn fn;
	bool inline_call;                        /* run on the completion-queue thread */
};

struct fy_rpc_opts {
	const char *endpoint;    /* "unix:///csi/csi.sock" (unix sockets only) */
	unsigned cq_threads;     /* 0: 2 */
	unsigned workers;        /* 0: 8 */
	unsigned socket_mode;    /* 0: 0660 */
	unsigned grace_ms;       /* at stop, how long calls in flight may finish before they are cancelled; 0: 5000 */
};

/* The socket path of a unix endpoint ("unix:///a/b", "unix:/a/b", "/a/b"),
 * or -EINVAL for anything else (tcp endpoints are refused: the CSI socket is
 * local and guarded by file permissions). */
int fy_rpc_endpoint_path(const char *endpoint, char *path, size_t len);
/* 0, or -EINVAL with one line saying what is wrong with the endpoint (a
 * scheme other than unix, a relative or too long path): bad usage. */
int fy_rpc_endpoint_check(const char *endpoint, char *err, size_t errlen);

/* Bind and listen (gRPC's own log goes to ours, at debug level: see log.h).
 * Nothing is served yet: clients wait in the socket's backlog.  -EINVAL for
 * a bad endpoint (fy_rpc_endpoint_check), other -errno when the socket
 * cannot be had; err says why in one line. */
int fy_rpc_bind(const struct fy_rpc_opts *o, const struct fy_rpc_method *methods, size_t n, void *ctx,
		struct fy_rpc_server **srv, char *err, size_t errlen);
/* Serve in background threads (after fy_rpc_bind). */
int fy_rpc_serve(struct fy_rpc_server *srv, char *err, size_t errlen);
/* Stop accepting calls, let calls in flight finish for grace_ms, cancel the
 * rest (queued calls are answered UNAVAILABLE without running), give the
 * cancelled handlers one more second, and free everything: 0.  A handler
 * still running then (stuck in a system call) is not waited for: the
 * socket is removed, the server is left as it is, and -ETIMEDOUT says that
 * the process must end (_exit) without freeing what such handlers use.
 * Also for a server bound but never served. */
int fy_rpc_stop(struct fy_rpc_server *srv);
/* Calls accepted so far (for logs and tests). */
uint64_t fy_rpc_calls(struct fy_rpc_server *srv);

/* Unary success. */
void fy_rpc_reply(struct fy_rpc_call *c, const ProtobufCMessage *resp);
/* Failure with a status and one line of details (never a secret). */
void fy_rpc_fail(struct fy_rpc_call *c, grpc_status_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One message of a server stream; waits until gRPC has taken it.  -ECANCELED
 * when the client went away or the server is stopping: end the call then. */
int fy_rpc_send(struct fy_rpc_call *c, const ProtobufCMessage *msg);
/* End a stream with OK. */
void fy_rpc_end(struct fy_rpc_call *c);

/* From an inline handler that finds it must block after all: return at
 * once without answering, and fn runs on a worker with the same call and
 * request (which answers it).  Once per call. */
void fy_rpc_defer(struct fy_rpc_call *c, fy_rpc_fn fn);

/* Has the client cancelled, the deadline passed, or the server begun to stop? */
bool fy_rpc_cancelled(struct fy_rpc_call *c);
/* The method path, for logs. */
const char *fy_rpc_method(const struct fy_rpc_call *c);
/* Milliseconds left before the client's deadline (INT64_MAX: none). */
int64_t fy_rpc_ms_left(const struct fy_rpc_call *c);

const char *fy_rpc_status_name(grpc_status_code code);

#endif
