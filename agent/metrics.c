/* The agent's Prometheus metrics: see metrics.h.  (Stand-in: every call does
 * nothing until the /metrics endpoint lands.) */
#include <errno.h>
#include <stdio.h>

#include "metrics.h"

int fy_metrics_start(const char *addr, char *err, size_t errlen)
{
	snprintf(err, errlen, "--metrics-address %s: metrics are not built into this ferry", addr);
	return -ENOSYS;
}

void fy_metrics_stop(void) {}
void fy_metrics_csi_call(const char *m, int c, double s) { (void)m; (void)c; (void)s; }
void fy_metrics_cut(double s) { (void)s; }
void fy_metrics_upload(const struct fy_metrics_upload *u) { (void)u; }
void fy_metrics_upload_queue(unsigned n) { (void)n; }
void fy_metrics_target_snapshot(const char *v, const char *t, double c) { (void)v; (void)t; (void)c; }
void fy_metrics_objectives(const char *v, const char *t, double r, double o) { (void)v; (void)t; (void)r; (void)o; }
void fy_metrics_drill(const char *v, const char *t, bool ok, double w, double r, double b, uint64_t n)
{
	(void)v; (void)t; (void)ok; (void)w; (void)r; (void)b; (void)n;
}
void fy_metrics_forget(const char *t, int s, unsigned n) { (void)t; (void)s; (void)n; }
void fy_metrics_prune(const char *t, int s, uint64_t c, uint64_t b) { (void)t; (void)s; (void)c; (void)b; }
void fy_metrics_policies(unsigned n) { (void)n; }
void fy_metrics_policy_error(const char *p, const char *k) { (void)p; (void)k; }
