/* The stand-in for agent/rpc.c's call object: see rpc_standin.h. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rpc_standin.h"

/* What rpc.c sends: the message packed.  Unpacked again with its own
 * descriptor, the bytes must decode (the client will decode them). */
static ProtobufCMessage *roundtrip(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *back;

	if (!buf)
		fz_fail("out of memory packing a %s", msg->descriptor->name);
	if (protobuf_c_message_pack(msg, buf) != len)
		fz_fail("a %s packed to another length than it said", msg->descriptor->name);
	back = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
	free(buf);
	if (!back)
		fz_fail("a %s the handler sent does not decode", msg->descriptor->name);
	return back;
}

static void answer(struct fy_rpc_call *c)
{
	if (c->answers++)
		fz_fail("%s answered twice (the second time: %s)", c->method, fy_rpc_status_name(c->status));
}

void fy_rpc_reply(struct fy_rpc_call *c, const ProtobufCMessage *resp)
{
	answer(c);
	c->status = GRPC_STATUS_OK;
	c->reply = roundtrip(resp);
}

void fy_rpc_end(struct fy_rpc_call *c)
{
	answer(c);
	c->status = GRPC_STATUS_OK;
}

void fy_rpc_fail(struct fy_rpc_call *c, grpc_status_code code, const char *fmt, ...)
{
	va_list ap;

	answer(c);
	va_start(ap, fmt);
	vsnprintf(c->details, sizeof(c->details), fmt, ap);
	va_end(ap);
	c->status = code;
	if (code == GRPC_STATUS_OK || (unsigned)code > GRPC_STATUS_UNAUTHENTICATED)
		fz_fail("%s failed with status %d: %s", c->method, (int)code, c->details);
	if (!c->details[0])
		fz_fail("%s failed (%s) without a word", c->method, fy_rpc_status_name(code));
}

int fy_rpc_send(struct fy_rpc_call *c, const ProtobufCMessage *msg)
{
	if (c->answers)
		fz_fail("%s sent a message after its answer", c->method);
	protobuf_c_message_free_unpacked(roundtrip(msg), NULL);
	c->sends++;
	return 0;
}

void fy_rpc_defer(struct fy_rpc_call *c, fy_rpc_fn fn)
{
	if (c->answers)
		fz_fail("%s deferred a call it had answered", c->method);
	if (c->defers++)
		fz_fail("%s deferred a call twice", c->method);
	c->later = fn;
}

bool fy_rpc_cancelled(struct fy_rpc_call *c)
{
	(void)c;
	return false;
}

const char *fy_rpc_method(const struct fy_rpc_call *c)
{
	return c->method;
}

int64_t fy_rpc_ms_left(const struct fy_rpc_call *c)
{
	(void)c;
	return INT64_MAX;
}

const char *fy_rpc_status_name(grpc_status_code code)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
		"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
		"UNAUTHENTICATED",
	};
	return (unsigned)code < sizeof(names) / sizeof(names[0]) ? names[code] : "?";
}

void fy_standin_run(const struct fy_rpc_method *m, const uint8_t *req, size_t len, void *ctx,
		    void (*fix)(ProtobufCMessage *req), struct fy_rpc_call *c)
{
	ProtobufCMessage *msg;

	memset(c, 0, sizeof(*c));
	c->method = m->path;
	/* As rpc.c: protobuf-c's unpack with the method's request type. */
	msg = protobuf_c_message_unpack(m->req, NULL, len, req);
	if (!msg) {
		c->answers = 1;
		c->status = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(c->details, sizeof(c->details), "the request is not a valid protobuf message");
		return;
	}
	if (fix)
		fix(msg);
	m->fn(c, msg, ctx);
	if (c->later) { /* on a worker, in rpc.c */
		fy_rpc_fn later = c->later;

		c->later = NULL;
		if (c->answers)
			fz_fail("%s answered and deferred the call", m->path);
		later(c, msg, ctx);
	}
	if (!c->answers)
		fz_fail("%s did not answer", m->path);
	if (c->sends && c->status == GRPC_STATUS_OK && c->reply)
		fz_fail("%s streamed and replied", m->path);
	if (getenv("FERRY_FUZZ_VERBOSE"))
		dprintf(2, "%s: %s%s%s (%d messages streamed)\n", m->path, fy_rpc_status_name(c->status),
			c->details[0] ? ": " : "", c->details, c->sends);
	protobuf_c_message_free_unpacked(msg, NULL);
}

void fy_standin_done(struct fy_rpc_call *c)
{
	if (c->reply)
		protobuf_c_message_free_unpacked(c->reply, NULL);
	c->reply = NULL;
}
