/* The agent's Prometheus metrics (served on --metrics-address as /metrics,
 * text exposition format; docs/operations.md lists every metric).
 *
 * Callers report events; this module keeps the numbers and renders them.
 * Every call is thread-safe, cheap (no I/O), and does nothing before
 * fy_metrics_start or after fy_metrics_stop.  Label values are bounded:
 * volume ids of this node, targets as shown URLs (no secrets, no query
 * credentials: fy_url_shown), policy names, gRPC method names. */
#ifndef FERRY_AGENT_METRICS_H
#define FERRY_AGENT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Is addr an address fy_metrics_start can serve on: IPv4:PORT, :PORT (every
 * IPv4 address), [IPv6]:PORT, PORT from 0 (any free port) to 65535?  0, or
 * -EINVAL with one line in err that echoes it (bad usage). */
int fy_metrics_address_check(const char *addr, char *err, size_t errlen);
/* Serve /metrics on addr ("127.0.0.1:9810", ":9810", "[::1]:9810").
 * 0 (and an info line naming the address bound, also the port chosen for
 * port 0), or -errno with one line in err: -EINVAL a bad address,
 * -EADDRINUSE, -EADDRNOTAVAIL... */
int fy_metrics_start(const char *addr, char *err, size_t errlen);
void fy_metrics_stop(void);
/* What a scrape of /metrics gets now (malloc'd, len bytes), or NULL when
 * the metrics are not served (or out of memory).  For tests. */
char *fy_metrics_text(size_t *len);

/* One CSI call ended: its full method name ("/csi.v1.Node/NodePublishVolume"),
 * its gRPC status code and how long it took. */
void fy_metrics_csi_call(const char *method, int grpc_code, double seconds);
/* A snapshot was cut: the frozen window (or the clone, unfrozen) in seconds. */
void fy_metrics_cut(double seconds);

/* An upload attempt of a snapshot of volume ended: status 0, -ECANCELED
 * (stopped: the agent stops, or its snapshot was deleted) or another
 * -errno (failed); bytes and seconds from its fy_backup_result (zero on
 * failure); retries are the store's requests sent again during it. */
struct fy_metrics_upload {
	const char *volume;
	int status;
	uint64_t bytes_read, bytes_stored, bytes_dedup;
	uint64_t retries;
	double seconds;
};
void fy_metrics_upload(const struct fy_metrics_upload *u);
/* Uploads waiting in the queue now. */
void fy_metrics_upload_queue(unsigned n);

/* A volume of this node (CreateVolume, and at the start for each in the
 * catalog): its size (for the RTO estimate) and names (ferry_volume_info).
 * name: the CSI volume name (the PV's); pvc_namespace, pvc_name: NULL when
 * unknown. */
struct fy_metrics_volume {
	const char *volume, *name, *pvc_namespace, *pvc_name;
	uint64_t size;
};
void fy_metrics_volume(const struct fy_metrics_volume *v);
/* The volume is deleted: every series of it goes (its RPO would only grow). */
void fy_metrics_volume_gone(const char *volume);

/* A snapshot of volume created at created_unix_s has just become complete
 * on target (an upload, a copy): the last success time is now, and RPO =
 * now - the newest such creation time, computed at scrape time. */
void fy_metrics_target_snapshot(const char *volume, const char *target, double created_unix_s);
/* The same known from before (the catalog, at the start): the snapshot
 * became complete there at uploaded_unix_s. */
void fy_metrics_target_seed(const char *volume, const char *target, double created_unix_s,
			    double uploaded_unix_s);
/* Objectives of a volume on a target, in seconds (0: none). */
void fy_metrics_objectives(const char *volume, const char *target, double rpo_s, double rto_s);
/* A restore drill of volume from target ended (when: Unix seconds):
 * restore_s and bytes_per_s as fy_drill_result measured them
 * (restore_seconds; bytes / restore_seconds), size the drilled volume's
 * size (fy_drill_result.size): the RTO estimate scales restore_s by the
 * volume's current size over it. */
void fy_metrics_drill(const char *volume, const char *target, bool ok, double when_unix_s, double restore_s,
		      double bytes_per_s, uint64_t size);
/* forget / prune on target ended: status 0 or -errno. */
void fy_metrics_forget(const char *target, int status, unsigned snapshots_removed);
void fy_metrics_prune(const char *target, int status, uint64_t chunks_removed, uint64_t bytes_removed);
/* Policies: how many are in force, and an error of one (kind: "parse",
 * "schema", "cron", "secret", "overlap", "backup", "drill", "retention"). */
void fy_metrics_policies(unsigned in_force);
void fy_metrics_policy_error(const char *policy, const char *kind);

#endif
