/* The agent's metrics (agent/metrics.c): the registry as a scrape renders
 * it (fy_metrics_text) -- counters, histograms (cumulative buckets, +Inf,
 * _sum, _count), RPO from the newest creation time at the scrape's clock,
 * the RTO estimate, a deleted volume's series gone, label values escaped
 * and made UTF-8, no URL query in a label -- checked line by line and, when
 * promtool is installed (scripts/install-deps.sh installs it), by promtool
 * check metrics; the address check; an address in use.  The HTTP side is
 * tested against a running agent (tests/csi/test_metrics.py). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"

static char err[512];

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The value of the sample whose line starts with series + " " (exact), or NAN-ish failure. */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	fail_msg("no sample %s in:\n%s", series, text);
	return -1;
}

/* |a - b| <= eps, in doubles (cmocka's assert_float_equal rounds to float). */
#define assert_near(a, b, eps)                                                              \
	do {                                                                                \
		double a_ = (a), b_ = (b);                                                  \
		if (!(a_ - b_ <= (eps) && b_ - a_ <= (eps)))                                \
			fail_msg("%s = %.6f, want %.6f +- %g", #a, a_, b_, (double)(eps));  \
	} while (0)

static bool has_series(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return true;
	return false;
}

/* promtool check metrics on text: 0 pass, 1 fail, 77 no promtool. */
static int promtool(const char *text)
{
	char path[] = "/tmp/ferry-test-metrics.XXXXXX", cmd[256];
	FILE *f;
	int fd, st;

	if (system("command -v promtool >/dev/null 2>&1"))
		return 77;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	st = system(cmd);
	unlink(path);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static void test_address_check(void **state)
{
	const char *good[] = { "127.0.0.1:9808", ":9808", "0.0.0.0:0", "[::1]:9808", "[::]:65535", NULL };
	const char *bad[] = { "", "9808", "localhost:9808", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
			      "127.0.0.1:-1", "127.0.0.1:80x", "::1:9808", "[::1]9808", "[::1", "[1.2.3.4]:80",
			      "1.2.3.4.5:80", "127.0.0.1:123456", NULL };

	(void)state;
	for (size_t i = 0; good[i]; i++)
		assert_int_equal(fy_metrics_address_check(good[i], err, sizeof(err)), 0);
	for (size_t i = 0; bad[i]; i++) {
		err[0] = 0;
		assert_int_equal(fy_metrics_address_check(bad[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "--metrics-address"));
		assert_null(strchr(err, '\n'));
		if (bad[i][0])
			assert_non_null(strstr(err, bad[i])); /* it echoes what was given */
	}
}

static void test_off_does_nothing(void **state)
{
	size_t len;

	(void)state;
	/* Before fy_metrics_start: calls are no-ops, there is nothing to scrape. */
	fy_metrics_csi_call("/csi.v1.Identity/Probe", 0, 0.001);
	fy_metrics_upload_queue(3);
	assert_null(fy_metrics_text(&len));
}

static void test_address_in_use(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	char addr[64];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	assert_int_equal(fy_metrics_start(addr, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, addr));
	close(fd);
}

static void test_registry(void **state)
{
	char *text;
	size_t len;
	double t0 = now_s();

	(void)state;
	assert_int_equal(fy_metrics_start("127.0.0.1:0", err, sizeof(err)), 0);

	/* CSI calls: counters by code, latency histogram by method. */
	fy_metrics_csi_call("/csi.v1.Node/NodePublishVolume", 0, 0.003);
	fy_metrics_csi_call("/csi.v1.Node/NodePublishVolume", 5, 0.0001);
	fy_metrics_csi_call("/csi.v1.Node/NodePublishVolume", 0, 1000);
	fy_metrics_csi_call(NULL, 12, 0.0001);            /* an unknown method */
	fy_metrics_csi_call("/x\"y/z/w", 12, 0.0001);     /* the client's name: not a label */
	fy_metrics_csi_call("/csi.v1.Identity/Probe", 99, 0.0001); /* no such code: UNKNOWN */
	/* The cut and uploads. */
	fy_metrics_cut(0.012);
	fy_metrics_upload(&(struct fy_metrics_upload){ .volume = "vol-a", .status = 0, .bytes_read = 100,
						       .bytes_stored = 60, .bytes_dedup = 40, .retries = 2, .seconds = 3 });
	fy_metrics_upload(&(struct fy_metrics_upload){ .volume = "vol-a", .status = -EIO, .retries = 5 });
	fy_metrics_upload(&(struct fy_metrics_upload){ .volume = "vol-a", .status = -ECANCELED });
	fy_metrics_upload_queue(4);
	/* Volumes, targets, RPO, drills, objectives. */
	fy_metrics_volume(&(struct fy_metrics_volume){ .volume = "vol-a", .name = "pvc-1", .pvc_namespace = "db",
						       .pvc_name = "data", .size = 2u << 30 });
	fy_metrics_volume(&(struct fy_metrics_volume){ .volume = "vol-b", .name = "pvc-2", .size = 1u << 30 });
	fy_metrics_target_snapshot("vol-a", "file:///r?secret-dir=/run/secret-xyz", t0 - 100);
	fy_metrics_target_seed("vol-a", "file:///r", t0 - 5000, t0 - 4000); /* older: RPO stays */
	fy_metrics_target_seed("vol-b", "s3://b/p?region=x", t0 - 7200, t0 - 7000);
	fy_metrics_objectives("vol-a", "file:///r", 3600, 1800);
	fy_metrics_drill("vol-a", "file:///r", true, t0 - 50, 10, 1e8, 1u << 30);
	fy_metrics_drill("vol-a", "file:///r", false, t0 - 10, 1, 0, 1u << 30);
	fy_metrics_drill("vol-b", "s3://b/p", true, t0 - 10, 7, 5e7, 1u << 30);
	/* A label value with every character that needs care. */
	fy_metrics_target_snapshot("vol-b", "file:///odd\"q\\b\nl\xff\xc3(\xc3\xa9", t0 - 1);
	fy_metrics_forget("file:///r", 0, 3);
	fy_metrics_forget("file:///r", -EIO, 0);
	fy_metrics_prune("file:///r", 0, 7, 7000);
	fy_metrics_policies(2);
	fy_metrics_policy_error("nightly", "cron");
	fy_metrics_policy_error("nightly", "cron");
	fy_metrics_policy_error("we\"ird\n", "parse");
	/* A volume deleted: its series go. */
	fy_metrics_volume(&(struct fy_metrics_volume){ .volume = "vol-gone", .name = "pvc-9", .size = 1 });
	fy_metrics_target_snapshot("vol-gone", "file:///r", t0 - 100000);
	fy_metrics_upload(&(struct fy_metrics_upload){ .volume = "vol-gone", .status = 0 });
	fy_metrics_volume_gone("vol-gone");

	text = fy_metrics_text(&len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);

	assert_int_equal(value_of(text, "ferry_build_info{version=\"" FERRY_VERSION "\"}"), 1);
	assert_int_equal(value_of(text, "ferry_csi_requests_total{service=\"csi.v1.Node\",method=\"NodePublishVolume\","
					"code=\"OK\"}"), 2);
	assert_int_equal(value_of(text, "ferry_csi_requests_total{service=\"csi.v1.Node\",method=\"NodePublishVolume\","
					"code=\"NOT_FOUND\"}"), 1);
	assert_int_equal(value_of(text, "ferry_csi_requests_total{service=\"unknown\",method=\"unknown\","
					"code=\"UNIMPLEMENTED\"}"), 2);
	assert_int_equal(value_of(text, "ferry_csi_requests_total{service=\"csi.v1.Identity\",method=\"Probe\","
					"code=\"UNKNOWN\"}"), 1);
	assert_null(strstr(text, "x\\\"y"));
	/* Cumulative buckets: 0.0001 <= 0.001; 0.003 <= 0.005; 1000 only in +Inf. */
#define NPV "ferry_csi_request_duration_seconds_bucket{service=\"csi.v1.Node\",method=\"NodePublishVolume\","
	assert_int_equal(value_of(text, NPV "le=\"0.001\"}"), 1);
	assert_int_equal(value_of(text, NPV "le=\"0.0025\"}"), 1);
	assert_int_equal(value_of(text, NPV "le=\"0.005\"}"), 2);
	assert_int_equal(value_of(text, NPV "le=\"300\"}"), 2);
	assert_int_equal(value_of(text, NPV "le=\"+Inf\"}"), 3);
	assert_int_equal(value_of(text, "ferry_csi_request_duration_seconds_count{service=\"csi.v1.Node\","
					"method=\"NodePublishVolume\"}"), 3);
	assert_near(value_of(text, "ferry_csi_request_duration_seconds_sum{service=\"csi.v1.Node\","
					  "method=\"NodePublishVolume\"}"), 1000.0031, 1e-9);
	assert_int_equal(value_of(text, "ferry_snapshot_cut_seconds_bucket{le=\"0.01\"}"), 0);
	assert_int_equal(value_of(text, "ferry_snapshot_cut_seconds_bucket{le=\"0.015\"}"), 1);
	assert_int_equal(value_of(text, "ferry_uploads_total{volume=\"vol-a\",result=\"success\"}"), 1);
	assert_int_equal(value_of(text, "ferry_uploads_total{volume=\"vol-a\",result=\"failure\"}"), 1);
	assert_int_equal(value_of(text, "ferry_uploads_total{volume=\"vol-a\",result=\"cancelled\"}"), 1);
	assert_int_equal(value_of(text, "ferry_upload_read_bytes_total{volume=\"vol-a\"}"), 100);
	assert_int_equal(value_of(text, "ferry_upload_stored_bytes_total{volume=\"vol-a\"}"), 60);
	assert_int_equal(value_of(text, "ferry_upload_deduplicated_bytes_total{volume=\"vol-a\"}"), 40);
	assert_int_equal(value_of(text, "ferry_upload_store_retries_total{volume=\"vol-a\"}"), 7);
	/* Successful uploads only: 3 s (vol-a) and 0 s (vol-gone's, before it went). */
	assert_int_equal(value_of(text, "ferry_upload_duration_seconds_count"), 2);
	assert_int_equal(value_of(text, "ferry_upload_duration_seconds_bucket{le=\"2.5\"}"), 1);
	assert_int_equal(value_of(text, "ferry_upload_duration_seconds_bucket{le=\"5\"}"), 2);
	assert_int_equal(value_of(text, "ferry_uploads_queued"), 4);
	assert_int_equal(value_of(text, "ferry_volume_info{volume=\"vol-a\",name=\"pvc-1\",pvc_namespace=\"db\","
					"pvc=\"data\"}"), 1);
	assert_int_equal(value_of(text, "ferry_volume_info{volume=\"vol-b\",name=\"pvc-2\"}"), 1);
	assert_int_equal(value_of(text, "ferry_volume_size_bytes{volume=\"vol-a\"}"), 2u << 30);

	/* RPO at the scrape's clock from the newest snapshot (t0 - 100): no
	 * query in the target label, and the older seed did not move it back. */
#define RA "{volume=\"vol-a\",target=\"file:///r\"}"
	double rpo = value_of(text, "ferry_rpo_seconds" RA);
	assert_true(rpo >= 100 && rpo < 100 + 120);
	assert_near(value_of(text, "ferry_newest_snapshot_timestamp_seconds" RA), t0 - 100, 1e-3);
	assert_true(value_of(text, "ferry_last_upload_success_timestamp_seconds" RA) >= t0);
	assert_near(value_of(text, "ferry_rpo_seconds{volume=\"vol-b\",target=\"s3://b/p\"}"),
			   now_s() - (t0 - 7200), 120);
	assert_near(value_of(text, "ferry_last_upload_success_timestamp_seconds{volume=\"vol-b\","
					  "target=\"s3://b/p\"}"), t0 - 7000, 1e-3);
	assert_null(strstr(text, "secret-dir"));
	assert_null(strstr(text, "region=x"));
	assert_int_equal(value_of(text, "ferry_rpo_objective_seconds" RA), 3600);
	assert_int_equal(value_of(text, "ferry_rto_objective_seconds" RA), 1800);
	/* The last drill failed: its result 0; RTO from the one that passed,
	 * and estimated for the volume's 2 GiB from the 1 GiB drilled. */
	assert_int_equal(value_of(text, "ferry_drill_last_success" RA), 0);
	assert_near(value_of(text, "ferry_drill_last_timestamp_seconds" RA), t0 - 10, 1e-3);
	assert_int_equal(value_of(text, "ferry_drill_last_restore_seconds" RA), 1);
	assert_int_equal(value_of(text, "ferry_rto_seconds" RA), 10);
	assert_int_equal(value_of(text, "ferry_rto_estimate_seconds" RA), 20);
	assert_int_equal(value_of(text, "ferry_drill_last_success{volume=\"vol-b\",target=\"s3://b/p\"}"), 1);
	assert_near(value_of(text, "ferry_drill_last_throughput_bytes_per_second{volume=\"vol-b\","
					  "target=\"s3://b/p\"}"), 5e7, 1);
	assert_int_equal(value_of(text, "ferry_rto_estimate_seconds{volume=\"vol-b\",target=\"s3://b/p\"}"), 7);
	/* Escaped: quote, backslash, newline; 0xff and the lone 0xc3 are U+FFFD; é stays. */
	assert_true(has_series(text, "ferry_rpo_seconds{volume=\"vol-b\",target=\"file:///odd\\\"q\\\\b\\nl"
				     "\xef\xbf\xbd\xef\xbf\xbd(\xc3\xa9\"}"));
	assert_int_equal(value_of(text, "ferry_forget_runs_total{target=\"file:///r\",result=\"success\"}"), 1);
	assert_int_equal(value_of(text, "ferry_forget_runs_total{target=\"file:///r\",result=\"failure\"}"), 1);
	assert_int_equal(value_of(text, "ferry_forget_removed_snapshots_total{target=\"file:///r\"}"), 3);
	assert_int_equal(value_of(text, "ferry_prune_removed_chunks_total{target=\"file:///r\"}"), 7);
	assert_int_equal(value_of(text, "ferry_prune_removed_bytes_total{target=\"file:///r\"}"), 7000);
	assert_int_equal(value_of(text, "ferry_policies_in_force"), 2);
	assert_int_equal(value_of(text, "ferry_policy_errors_total{policy=\"nightly\",kind=\"cron\"}"), 2);
	assert_int_equal(value_of(text, "ferry_policy_errors_total{policy=\"we\\\"ird\\n\",kind=\"parse\"}"), 1);
	/* The deleted volume: nothing of it. */
	assert_null(strstr(text, "vol-gone"));

	/* A real parser agrees with the format. */
	int rc = promtool(text);
	if (rc == 77)
		print_message("promtool is not installed: the format was checked line by line only\n");
	else
		assert_int_equal(rc, 0);
	free(text);

	/* Stopped: nothing to scrape, calls are no-ops again. */
	fy_metrics_stop();
	fy_metrics_cut(1);
	assert_null(fy_metrics_text(&len));
	/* And it starts again, empty. */
	assert_int_equal(fy_metrics_start("127.0.0.1:0", err, sizeof(err)), 0);
	text = fy_metrics_text(&len);
	assert_non_null(text);
	assert_null(strstr(text, "vol-a"));
	assert_int_equal(value_of(text, "ferry_snapshot_cut_seconds_count"), 0);
	free(text);
	fy_metrics_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_check),
		cmocka_unit_test(test_off_does_nothing),
		cmocka_unit_test(test_address_in_use),
		cmocka_unit_test(test_registry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
