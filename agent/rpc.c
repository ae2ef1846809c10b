/* A gRPC server on gRPC C core for protobuf-c messages: see rpc.h.
 *
 * Life of a call.  A request is always posted for every registered method
 * (and one for unknown methods).  When one completes, a CQ thread posts the
 * next, posts RECV_CLOSE_ON_SERVER (which tells us when the client cancels),
 * decodes the payload and runs the handler inline or queues it for a worker.
 * The call is reference-counted: one reference for the handler (dropped by
 * the dispatcher when the handler returns), one for the close batch, one per
 * send batch in flight.  The last one frees it.  Only one send batch is ever
 * outstanding per call: fy_rpc_send waits for its completion, and the final
 * reply is the last batch. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "rpc.h"

#define RPC_REQS_PER_METHOD 4   /* requests kept posted per method: accepts overlap */
#define RPC_CANCEL_MS 1000      /* at stop, after the grace: how long cancelled handlers may take to return */

enum tag_kind { T_REQ, T_UNKNOWN, T_CLOSE, T_BATCH, T_SHUTDOWN };

struct rpc_tag {
	enum tag_kind kind;
	void *p;
};

struct fy_rpc_call {
	struct fy_rpc_server *srv;
	const struct fy_rpc_method *m;  /* NULL for an unknown method */
	size_t mi;                      /* its index */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details;      /* unknown methods */
	grpc_byte_buffer *payload;
	ProtobufCMessage *req;
	struct rpc_tag req_tag, close_tag, batch_tag;
	int cancelled;                  /* RECV_CLOSE_ON_SERVER */
	atomic_bool closed;             /* the close batch completed */
	atomic_int refs;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool waiting, batch_done, batch_ok;
	bool md_sent, answered;
	grpc_byte_buffer *out;
	grpc_slice status_details;
	bool has_details;
	struct fy_rpc_call *next;       /* worker queue */
	fy_rpc_fn later;                /* fy_rpc_defer: run this on a worker */
	bool deferred;
	int64_t t0_us;                  /* when it was accepted (monotonic), for its latency */
};

struct fy_rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	const struct fy_rpc_method *methods;
	size_t n;
	void **handles;
	void *ctx;
	struct fy_rpc_opts o;
	char path[108];
	pthread_t *cq_thr, *wk_thr;
	unsigned ncq, nwk;
	const char **running;           /* per worker: the method of the handler it runs, or NULL */
	unsigned wk_started;
	bool served;                    /* grpc_server_start was called */
	bool cancelled;                 /* stop: calls were cancelled; queued ones are not run */
	atomic_bool stopping;
	atomic_uint_fast64_t calls;
	struct rpc_tag shutdown_tag;
	pthread_mutex_t mu;
	pthread_cond_t cv;              /* CLOCK_MONOTONIC */
	bool shutdown_done, quit;
	struct fy_rpc_call *qhead, *qtail;
	long active;                    /* calls alive */
};

const char *fy_rpc_status_name(grpc_status_code code)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
		"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
		"UNAUTHENTICATED",
	};
	if ((unsigned)code < sizeof(names) / sizeof(names[0]))
		return names[code];
	return "?";
}

/* The path part of a unix endpoint ("unix:///a/b", "unix:/a/b", "/a/b"). */
static const char *endpoint_rest(const char *endpoint)
{
	if (!strncmp(endpoint, "unix://", 7))
		return endpoint + 7;
	if (!strncmp(endpoint, "unix:", 5))
		return endpoint + 5;
	return endpoint;
}

int fy_rpc_endpoint_path(const char *endpoint, char *path, size_t len)
{
	const char *p;
	struct sockaddr_un sa;

	if (!endpoint)
		return -EINVAL;
	p = endpoint_rest(endpoint);
	if (p[0] != '/' || strlen(p) >= sizeof(sa.sun_path) || strlen(p) >= len)
		return -EINVAL;
	strcpy(path, p);
	return 0;
}

int fy_rpc_endpoint_check(const char *endpoint, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	char path[sizeof(sa.sun_path)];
	const char *scheme_end, *p;

	if (!endpoint || !*endpoint) {
		snprintf(err, errlen, "endpoint: empty (unix:///path/csi.sock)");
		return -EINVAL;
	}
	if (!fy_rpc_endpoint_path(endpoint, path, sizeof(path)))
		return 0;
	scheme_end = strstr(endpoint, "://");
	p = endpoint_rest(endpoint);
	if (scheme_end && strncmp(endpoint, "unix://", 7))
		snprintf(err, errlen, "endpoint '%s': only unix sockets are served (unix:///path/csi.sock), not %.*s://",
			 endpoint, (int)(scheme_end - endpoint), endpoint);
	else if (p[0] != '/')
		snprintf(err, errlen, "endpoint '%s': not an absolute socket path (unix:///path/csi.sock)", endpoint);
	else
		snprintf(err, errlen, "endpoint '%s': a unix socket path is at most %zu bytes", endpoint,
			 sizeof(sa.sun_path) - 1);
	return -EINVAL;
}

/* gRPC core's own log (gpr_log) goes into ours, one line per message, at
 * debug level: shown with --debug only, where ferry's own lines already say
 * what went wrong.  An assertion's last words before abort() always show. */
static void grpc_log(gpr_log_func_args *args)
{
	char msg[1024];
	const char *file = args->file ? strrchr(args->file, '/') : NULL;
	size_t i;

	snprintf(msg, sizeof(msg), "%s", args->message ? args->message : "");
	for (i = 0; msg[i]; i++)
		if (msg[i] == '\n' || msg[i] == '\r' || msg[i] == '\t')
			msg[i] = ' ';
	file = file ? file + 1 : args->file ? args->file : "?";
	if (!strncmp(msg, "assertion failed", 16))
		fy_log_error("grpc: %s:%d: %s", file, args->line, msg);
	else
		fy_log_debug("grpc %s: %s:%d: %s", gpr_log_severity_string(args->severity), file, args->line, msg);
}

static int64_t mono_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* ---- call lifetime ---- */

static void call_unref(struct fy_rpc_call *c)
{
	struct fy_rpc_server *s = c->srv;

	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	if (c->call)
		grpc_call_unref(c->call);
	grpc_metadata_array_destroy(&c->md);
	grpc_call_details_destroy(&c->details);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->req)
		protobuf_c_message_free_unpacked(c->req, NULL);
	if (c->out)
		grpc_byte_buffer_destroy(c->out);
	if (c->has_details)
		grpc_slice_unref(c->status_details);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	pthread_mutex_lock(&s->mu);
	if (--s->active == 0)
		pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static struct fy_rpc_call *call_new(struct fy_rpc_server *s, size_t mi)
{
	struct fy_rpc_call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->srv = s;
	c->mi = mi;
	c->m = mi < s->n ? &s->methods[mi] : NULL;
	grpc_metadata_array_init(&c->md);
	grpc_call_details_init(&c->details);
	c->req_tag = (struct rpc_tag){ c->m ? T_REQ : T_UNKNOWN, c };
	c->close_tag = (struct rpc_tag){ T_CLOSE, c };
	c->batch_tag = (struct rpc_tag){ T_BATCH, c };
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pthread_mutex_lock(&s->mu);
	s->active++;
	pthread_mutex_unlock(&s->mu);
	return c;
}

/* Post a request for method mi (s->n: unknown methods). */
static void post_request(struct fy_rpc_server *s, size_t mi)
{
	struct fy_rpc_call *c;
	grpc_call_error e;

	if (atomic_load(&s->stopping))
		return;
	c = call_new(s, mi);
	if (!c) {
		fy_log_error("rpc: out of memory posting a request");
		return;
	}
	if (c->m)
		e = grpc_server_request_registered_call(s->server, s->handles[mi], &c->call, &c->deadline, &c->md,
							&c->payload, s->cq, s->cq, &c->req_tag);
	else
		e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq, &c->req_tag);
	if (e != GRPC_CALL_OK) {
		fy_log_error("rpc: cannot post a request for %s: grpc_call_error %d",
			     c->m ? c->m->path : "unknown methods", (int)e);
		call_unref(c);
	}
}

/* ---- answering ---- */

/* Start a batch on the call; with wait, block until it completes and say
 * whether it succeeded.  Without, its completion frees what it sent. */
static bool start_batch(struct fy_rpc_call *c, const grpc_op *ops, size_t n, bool wait)
{
	grpc_call_error e;
	bool ok = true;

	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_lock(&c->mu);
	c->waiting = wait;
	c->batch_done = false;
	pthread_mutex_unlock(&c->mu);
	e = grpc_call_start_batch(c->call, ops, n, &c->batch_tag, NULL);
	if (e != GRPC_CALL_OK) {
		fy_log_error("rpc: %s: grpc_call_start_batch: error %d", fy_rpc_method(c), (int)e);
		atomic_fetch_sub(&c->refs, 1); /* the handler's reference keeps it alive */
		return false;
	}
	if (!wait)
		return true;
	pthread_mutex_lock(&c->mu);
	while (!c->batch_done)
		pthread_cond_wait(&c->cv, &c->mu);
	ok = c->batch_ok;
	c->waiting = false;
	pthread_mutex_unlock(&c->mu);
	if (c->out) {
		grpc_byte_buffer_destroy(c->out);
		c->out = NULL;
	}
	call_unref(c); /* the batch's reference, released here for a waited batch */
	return ok;
}

static void batch_done(struct fy_rpc_call *c, bool ok)
{
	pthread_mutex_lock(&c->mu);
	c->batch_done = true;
	c->batch_ok = ok;
	if (c->waiting) {
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		return; /* the waiter drops the reference */
	}
	pthread_mutex_unlock(&c->mu);
	call_unref(c);
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice sl = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(sl));
	bb = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);
	return bb;
}

/* The last batch of a call: [initial metadata] [message] status. */
static void finish(struct fy_rpc_call *c, const ProtobufCMessage *msg, grpc_status_code code, const char *details)
{
	grpc_op ops[3];
	size_t n = 0;

	if (c->answered) {
		fy_log_error("rpc: %s answered twice (bug)", fy_rpc_method(c));
		return;
	}
	c->answered = true;
	/* Every call ends here, whoever answers it: its method, status, latency. */
	fy_metrics_csi_call(c->m ? c->m->path : NULL, (int)code, (double)(mono_us() - c->t0_us) / 1e6);
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		c->md_sent = true;
	}
	if (msg) {
		c->out = pack(msg);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = c->out;
		n++;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	if (details && *details) {
		c->status_details = grpc_slice_from_copied_string(details);
		c->has_details = true;
		ops[n].data.send_status_from_server.status_details = &c->status_details;
	}
	n++;
	start_batch(c, ops, n, false);
}

void fy_rpc_reply(struct fy_rpc_call *c, const ProtobufCMessage *resp)
{
	finish(c, resp, GRPC_STATUS_OK, NULL);
}

void fy_rpc_end(struct fy_rpc_call *c)
{
	finish(c, NULL, GRPC_STATUS_OK, NULL);
}

void fy_rpc_fail(struct fy_rpc_call *c, grpc_status_code code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fy_log_info("%s: %s: %s", fy_rpc_method(c), fy_rpc_status_name(code), msg);
	finish(c, NULL, code, msg);
}

int fy_rpc_send(struct fy_rpc_call *c, const ProtobufCMessage *msg)
{
	grpc_op ops[2];
	size_t n = 0;

	if (fy_rpc_cancelled(c))
		return -ECANCELED;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		c->md_sent = true;
	}
	c->out = pack(msg);
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = c->out;
	n++;
	return start_batch(c, ops, n, true) ? 0 : -ECANCELED;
}

bool fy_rpc_cancelled(struct fy_rpc_call *c)
{
	if (atomic_load(&c->srv->stopping))
		return true;
	if (atomic_load(&c->closed) && c->cancelled)
		return true;
	return fy_rpc_ms_left(c) <= 0;
}

const char *fy_rpc_method(const struct fy_rpc_call *c)
{
	return c->m ? c->m->path : "unknown method";
}

int64_t fy_rpc_ms_left(const struct fy_rpc_call *c)
{
	gpr_timespec now, d;

	if (!c->m || gpr_time_cmp(c->deadline, gpr_inf_future(c->deadline.clock_type)) == 0)
		return INT64_MAX;
	now = gpr_now(c->deadline.clock_type);
	d = gpr_time_sub(c->deadline, now);
	return (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
}

/* ---- dispatch ---- */

static void enqueue(struct fy_rpc_call *c)
{
	struct fy_rpc_server *s = c->srv;

	pthread_mutex_lock(&s->mu);
	if (s->qtail)
		s->qtail->next = c;
	else
		s->qhead = c;
	s->qtail = c;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void fy_rpc_defer(struct fy_rpc_call *c, fy_rpc_fn fn)
{
	if (!c->deferred && !c->answered)
		c->later = fn;
}

static void run_handler(struct fy_rpc_call *c)
{
	fy_rpc_fn fn = c->later ? c->later : c->m->fn;

	c->later = NULL;
	fn(c, c->req, c->srv->ctx);
	if (c->later && !c->answered) {
		c->deferred = true; /* once: a deferred handler runs on a worker */
		return enqueue(c);  /* with the handler's reference */
	}
	if (!c->answered)
		finish(c, NULL, GRPC_STATUS_INTERNAL, "the handler did not answer");
	call_unref(c); /* the handler's reference */
}

static void *worker(void *arg)
{
	struct fy_rpc_server *s = arg;
	struct fy_rpc_call *c;
	unsigned me;

	pthread_mutex_lock(&s->mu);
	me = s->wk_started++;
	for (;;) {
		bool skip;

		while (!s->qhead && !s->quit)
			pthread_cond_wait(&s->cv, &s->mu);
		c = s->qhead;
		if (!c)
			break;
		s->qhead = c->next;
		if (!s->qhead)
			s->qtail = NULL;
		skip = s->cancelled;
		s->running[me] = c->m->path;
		pthread_mutex_unlock(&s->mu);
		if (skip) { /* accepted, never started: nothing was done */
			finish(c, NULL, GRPC_STATUS_UNAVAILABLE, "the agent is stopping");
			call_unref(c);
		} else {
			run_handler(c);
		}
		pthread_mutex_lock(&s->mu);
		s->running[me] = NULL;
		if (atomic_load(&s->stopping))
			pthread_cond_broadcast(&s->cv); /* fy_rpc_stop waits for the handlers */
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void accepted(struct fy_rpc_call *c)
{
	struct fy_rpc_server *s = c->srv;
	grpc_op op;
	grpc_byte_buffer_reader rd;
	grpc_slice sl;

	c->t0_us = mono_us();
	atomic_fetch_add(&s->calls, 1);
	post_request(s, c->mi);

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	atomic_fetch_add(&c->refs, 1);
	if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) != GRPC_CALL_OK) {
		atomic_fetch_sub(&c->refs, 1);
		atomic_store(&c->closed, true);
	}

	if (!c->m) {
		char *name = grpc_slice_to_c_string(c->details.method);

		fy_log_info("rpc: unknown method %s: UNIMPLEMENTED", name);
		finish(c, NULL, GRPC_STATUS_UNIMPLEMENTED, "this plugin does not implement that method");
		gpr_free(name);
		call_unref(c);
		return;
	}
	if (!c->payload) {
		finish(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
		call_unref(c);
		return;
	}
	if (!grpc_byte_buffer_reader_init(&rd, c->payload)) {
		finish(c, NULL, GRPC_STATUS_INTERNAL, "cannot read the request");
		call_unref(c);
		return;
	}
	sl = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	c->req = protobuf_c_message_unpack(c->m->req, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
	grpc_slice_unref(sl);
	if (!c->req) {
		finish(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid protobuf message");
		call_unref(c);
		return;
	}
	if (c->m->inline_call) {
		run_handler(c);
		return;
	}
	enqueue(c);
}

static void *cq_loop(void *arg)
{
	struct fy_rpc_server *s = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		struct rpc_tag *t;
		struct fy_rpc_call *c;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return NULL;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		t = ev.tag;
		c = t->p;
		switch (t->kind) {
		case T_REQ:
		case T_UNKNOWN:
			if (!ev.success) { /* the server is shutting down */
				call_unref(c);
				break;
			}
			accepted(c);
			break;
		case T_CLOSE:
			atomic_store(&c->closed, true);
			call_unref(c);
			break;
		case T_BATCH:
			batch_done(c, ev.success);
			break;
		case T_SHUTDOWN:
			pthread_mutex_lock(&s->mu);
			s->shutdown_done = true;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->mu);
			break;
		}
	}
}

/* ---- start and stop ---- */

/* Is something already serving on path?  A live agent must not lose its socket. */
static bool socket_live(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return live;
}

static void server_free(struct fy_rpc_server *s)
{
	if (s->server)
		grpc_server_destroy(s->server);
	if (s->cq)
		grpc_completion_queue_destroy(s->cq);
	free(s->handles);
	free(s->cq_thr);
	free(s->wk_thr);
	free(s->running);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
	grpc_shutdown();
}

/* Stop a server no thread serves (never served, or its threads failed to
 * start): cancel, drain the queue here, free. */
static void teardown_here(struct fy_rpc_server *s)
{
	atomic_store(&s->stopping, true);
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	grpc_server_cancel_all_calls(s->server);
	grpc_completion_queue_shutdown(s->cq);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE && ((struct rpc_tag *)ev.tag)->kind != T_SHUTDOWN)
			call_unref(((struct rpc_tag *)ev.tag)->p);
	}
	server_free(s);
}

/* Why could nothing listen on path?  The usual reasons, named. */
static void bind_reason(const char *path, char *why, size_t len)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	if (stat(dir, &st))
		snprintf(why, len, "%s: %s", dir, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		snprintf(why, len, "%s is not a directory", dir);
	else if (access(dir, W_OK | X_OK))
		snprintf(why, len, "%s: %s", dir, strerror(errno));
	else
		snprintf(why, len, "gRPC could not bind it (--debug shows gRPC's reason)");
}

int fy_rpc_bind(const struct fy_rpc_opts *o, const struct fy_rpc_method *methods, size_t n, void *ctx,
		struct fy_rpc_server **srvp, char *err, size_t errlen)
{
	struct fy_rpc_server *s;
	grpc_server_credentials *creds;
	pthread_condattr_t ca;
	char addr[128], why[256];
	struct stat st;
	mode_t old;
	int ok;

	*srvp = NULL;
	if (fy_rpc_endpoint_check(o->endpoint, err, errlen))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->o = *o;
	if (!s->o.cq_threads)
		s->o.cq_threads = 2;
	if (!s->o.workers)
		s->o.workers = 8;
	if (!s->o.socket_mode)
		s->o.socket_mode = 0660;
	if (!s->o.grace_ms)
		s->o.grace_ms = 5000;
	s->methods = methods;
	s->n = n;
	s->ctx = ctx;
	s->shutdown_tag = (struct rpc_tag){ T_SHUTDOWN, s };
	gpr_set_log_function(grpc_log);
	grpc_init();
	fy_rpc_endpoint_path(o->endpoint, s->path, sizeof(s->path));
	if (socket_live(s->path)) {
		snprintf(err, errlen, "endpoint %s: another process is serving on this socket", o->endpoint);
		server_free(s);
		return -EADDRINUSE;
	}
	if (!lstat(s->path, &st) && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "endpoint %s: %s exists and is not a socket", o->endpoint, s->path);
		server_free(s);
		return -EEXIST;
	}
	s->server = grpc_server_create(NULL, NULL);
	s->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	s->handles = calloc(n ? n : 1, sizeof(void *));
	if (!s->handles) {
		snprintf(err, errlen, "out of memory");
		server_free(s);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		s->handles[i] = grpc_server_register_method(s->server, methods[i].path, NULL,
							    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
		if (!s->handles[i]) {
			snprintf(err, errlen, "cannot register method %s", methods[i].path);
			server_free(s);
			return -EINVAL;
		}
	}
	snprintf(addr, sizeof(addr), "unix:%s", s->path);
	creds = grpc_insecure_server_credentials_create();
	/* The socket is born with the mode we want: no window in which anyone
	 * else could connect.  It is bound and listening from here on; calls
	 * wait in its backlog until fy_rpc_serve. */
	old = umask(0777 & ~s->o.socket_mode);
	ok = grpc_server_add_http2_port(s->server, addr, creds);
	umask(old);
	grpc_server_credentials_release(creds);
	if (!ok) {
		bind_reason(s->path, why, sizeof(why));
		snprintf(err, errlen, "endpoint %s: cannot listen on %s: %s", o->endpoint, s->path, why);
		teardown_here(s);
		return -EADDRNOTAVAIL;
	}
	if (chmod(s->path, s->o.socket_mode)) {
		int e = errno;

		snprintf(err, errlen, "endpoint %s: chmod %o: %s", o->endpoint, s->o.socket_mode, strerror(e));
		unlink(s->path);
		teardown_here(s);
		return -e;
	}
	*srvp = s;
	return 0;
}

int fy_rpc_serve(struct fy_rpc_server *s, char *err, size_t errlen)
{
	s->cq_thr = calloc(s->o.cq_threads, sizeof(pthread_t));
	s->wk_thr = calloc(s->o.workers, sizeof(pthread_t));
	s->running = calloc(s->o.workers, sizeof(*s->running));
	if (!s->cq_thr || !s->wk_thr || !s->running) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	grpc_server_start(s->server);
	s->served = true;
	for (size_t i = 0; i <= s->n; i++)
		for (int k = 0; k < (i < s->n ? RPC_REQS_PER_METHOD : 1); k++)
			post_request(s, i);
	for (; s->ncq < s->o.cq_threads; s->ncq++)
		if (pthread_create(&s->cq_thr[s->ncq], NULL, cq_loop, s))
			break;
	for (; s->nwk < s->o.workers; s->nwk++)
		if (pthread_create(&s->wk_thr[s->nwk], NULL, worker, s))
			break;
	if (!s->ncq || !s->nwk) {
		snprintf(err, errlen, "cannot start threads");
		return -EAGAIN;
	}
	return 0;
}

uint64_t fy_rpc_calls(struct fy_rpc_server *s)
{
	return atomic_load(&s->calls);
}

/* Handlers running or queued (s->mu held); their methods into what. */
static unsigned busy(struct fy_rpc_server *s, char *what, size_t len)
{
	unsigned n = 0;
	size_t off = 0;

	if (what && len)
		what[0] = 0;
	for (unsigned i = 0; i < s->nwk; i++) {
		if (!s->running[i])
			continue;
		n++;
		if (what && off < len)
			off += (size_t)snprintf(what + off, len - off, "%s%s", off ? ", " : "", s->running[i]);
	}
	for (struct fy_rpc_call *c = s->qhead; c; c = c->next)
		n++;
	return n;
}

int fy_rpc_stop(struct fy_rpc_server *s)
{
	int64_t t0 = fy_mono_ms(), grace_end, hard_end;
	unsigned left;
	char what[512];
	bool quiet;

	if (!s)
		return 0;
	if (!s->served || !s->ncq) { /* no thread to see the tag: cancel and drain here */
		pthread_mutex_lock(&s->mu);
		s->cancelled = s->quit = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		for (unsigned i = 0; i < s->nwk; i++)
			pthread_join(s->wk_thr[i], NULL);
		unlink(s->path);
		teardown_here(s);
		return 0;
	}
	atomic_store(&s->stopping, true);
	grace_end = t0 + s->o.grace_ms;
	hard_end = grace_end + RPC_CANCEL_MS;
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	/* Calls in flight may finish within the grace period. */
	pthread_mutex_lock(&s->mu);
	while (!s->shutdown_done && fy_cond_wait_until(&s->cv, &s->mu, grace_end))
		;
	if (!s->shutdown_done)
		fy_log_info("rpc: calls still in flight after %u ms: cancelling them", s->o.grace_ms);
	s->cancelled = true;
	pthread_mutex_unlock(&s->mu);
	grpc_server_cancel_all_calls(s->server);
	/* Cancelled handlers see fy_rpc_cancelled; one stuck in a system call
	 * (a store that does not answer) is not waited for beyond hard_end. */
	pthread_mutex_lock(&s->mu);
	while (!((quiet = s->shutdown_done && !busy(s, NULL, 0))) && fy_cond_wait_until(&s->cv, &s->mu, hard_end))
		;
	if (!quiet) {
		left = busy(s, what, sizeof(what));
		pthread_mutex_unlock(&s->mu);
		fy_log_error("rpc: %u call%s still running %lld ms after the stop began%s%s: left behind (the process "
			     "exits without them)", left, left == 1 ? "" : "s", (long long)(fy_mono_ms() - t0),
			     what[0] ? ": " : "", what);
		unlink(s->path);
		return -ETIMEDOUT;
	}
	s->quit = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < s->nwk; i++)
		pthread_join(s->wk_thr[i], NULL);
	/* Every handler has returned; the last batches complete (cancelled). */
	pthread_mutex_lock(&s->mu);
	while (s->active > 0 && fy_cond_wait_until(&s->cv, &s->mu, hard_end))
		;
	left = (unsigned)s->active;
	pthread_mutex_unlock(&s->mu);
	if (left) {
		fy_log_error("rpc: %u call%s not released %lld ms after the stop began: left behind", left,
			     left == 1 ? "" : "s", (long long)(fy_mono_ms() - t0));
		unlink(s->path);
		return -ETIMEDOUT;
	}
	grpc_completion_queue_shutdown(s->cq);
	for (unsigned i = 0; i < s->ncq; i++)
		pthread_join(s->cq_thr[i], NULL);
	unlink(s->path);
	server_free(s);
	return 0;
}
