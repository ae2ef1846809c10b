/* The agent's log (agent/log.c): text and JSON lines as written to stderr
 * (fd 2 is pointed at a file), fields, JSON string escaping of quotes,
 * backslashes and control characters, bytes that are not UTF-8 (stray,
 * overlong, surrogate, cut short) replaced by U+FFFD, well-formed UTF-8
 * kept, long messages cut without breaking the object. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static char path[64];
static int saved_fd = -1;

/* Point fd 2 at a fresh file. */
static void capture(void)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/ferry-test-log.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	saved_fd = dup(2);
	assert_true(saved_fd >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	close(fd);
}

/* Put fd 2 back; what was written (malloc'd). */
static char *captured(void)
{
	FILE *f;
	long n;
	char *buf;

	assert_int_equal(dup2(saved_fd, 2), 2);
	close(saved_fd);
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	unlink(path);
	return buf;
}

/* The line after its time stamp, which must be RFC 3339 UTC with ms. */
static const char *after_time_json(const char *line)
{
	/* {"time":"2026-12-03T13:08:38.123Z", */
	static const char *pre = "{\"time\":\"";
	const char *t = line + strlen(pre);

	assert_memory_equal(line, pre, strlen(pre));
	for (int i = 0; i < 24; i++) {
		char c = t[i];

		if (i == 4 || i == 7)
			assert_int_equal(c, '-');
		else if (i == 10)
			assert_int_equal(c, 'T');
		else if (i == 13 || i == 16)
			assert_int_equal(c, ':');
		else if (i == 19)
			assert_int_equal(c, '.');
		else if (i == 23)
			assert_int_equal(c, 'Z');
		else
			assert_true(c >= '0' && c <= '9');
	}
	assert_int_equal(t[24], '"');
	return t + 25;
}

static void test_json_fields_and_escaping(void **state)
{
	char *out, *save = NULL, *line;
	const char *rest;

	(void)state;
	assert_int_equal(fy_log_set_format("xml"), -EINVAL);
	assert_int_equal(fy_log_set_format("json"), 0);
	assert_true(fy_log_json());
	capture();
	fy_logf(FY_LOG_INFO,
		&(struct fy_log_fields){ .volume = "vol-1", .snapshot = "snap-1", .target = "/repo", .error = NULL },
		"snapshot %s uploaded to %s", "snap-1", "/repo");
	fy_logf(FY_LOG_ERROR, &(struct fy_log_fields){ .volume = "vol-1", .policy = "p\"1\\", .error = "bad\tthing\n" },
		"quote \" backslash \\ bell \x07 del \x7f nl \n cr \r");
	/* Not UTF-8: a stray continuation byte, an overlong '/', a surrogate
	 * (U+D800), a code point above U+10FFFF, a sequence cut by the end;
	 * then well-formed two, three and four byte sequences. */
	fy_log_warn("bad \x80 \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 cut \xe2\x82");
	fy_log_debug("not shown without --debug");
	fy_log_set_debug(true);
	fy_log_debug("shown with --debug");
	fy_log_set_debug(false);
	{
		char big[5000];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		big[2040] = '\xc3'; /* a lead byte without its continuation */
		big[2041] = 'y';
		fy_logf(FY_LOG_INFO, &(struct fy_log_fields){ .error = big }, "%s", big);
	}
	out = captured();

	line = strtok_r(out, "\n", &save);
	assert_non_null(line);
	rest = after_time_json(line);
	assert_string_equal(rest, ",\"level\":\"info\",\"msg\":\"snapshot snap-1 uploaded to /repo\",\"volume\":\"vol-1\","
				  "\"snapshot\":\"snap-1\",\"target\":\"/repo\"}");

	line = strtok_r(NULL, "\n", &save);
	assert_non_null(line);
	rest = after_time_json(line);
	assert_string_equal(rest, ",\"level\":\"error\",\"msg\":\"quote \\\" backslash \\\\ bell \\u0007 del \\u007f nl \\n "
				  "cr \\r\",\"volume\":\"vol-1\",\"policy\":\"p\\\"1\\\\\",\"error\":\"bad\\tthing\\n\"}");

	line = strtok_r(NULL, "\n", &save);
	assert_non_null(line);
	rest = after_time_json(line);
	assert_string_equal(rest, ",\"level\":\"warn\",\"msg\":\"bad \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
				  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
				  "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 cut \xef\xbf\xbd\xef\xbf\xbd\"}");

	line = strtok_r(NULL, "\n", &save);
	assert_non_null(line);
	rest = after_time_json(line);
	assert_string_equal(rest, ",\"level\":\"debug\",\"msg\":\"shown with --debug\"}");

	/* The long one: the message cut at 2047 bytes, the field at 1024, the
	 * object closed; the lone 0xc3 became U+FFFD. */
	line = strtok_r(NULL, "\n", &save);
	assert_non_null(line);
	rest = after_time_json(line);
	assert_non_null(strstr(rest, "x\xef\xbf\xbdy"));
	assert_int_equal(strlen(rest), strlen(",\"level\":\"info\",\"msg\":\"") + 2047 + 2 + strlen("\",\"error\":\"") +
						1024 + strlen("\"}"));
	assert_string_equal(rest + strlen(rest) - 2, "\"}");
	assert_null(strtok_r(NULL, "\n", &save));
	free(out);
	fy_log_set_format("text");
}

static void test_text_appends_unsaid_fields(void **state)
{
	char *out;

	(void)state;
	assert_int_equal(fy_log_set_format("text"), 0);
	assert_false(fy_log_json());
	capture();
	fy_logf(FY_LOG_WARN, &(struct fy_log_fields){ .volume = "vol-9", .snapshot = "snap-9", .error = "it broke" },
		"snapshot %s: %s", "snap-9", "it broke");
	fy_log_info("plain");
	out = captured();
	/* "2026-12-03T13:08:38.123Z warn snapshot snap-9: it broke volume=vol-9\n"
	 * (snapshot and error are said already), then the plain line. */
	assert_true(strlen(out) > 25);
	assert_int_equal(out[23], 'Z');
	assert_int_equal(out[24], ' ');
	{
		char *nl = strchr(out, '\n');

		assert_non_null(nl);
		*nl = 0;
		assert_string_equal(out + 25, "warn snapshot snap-9: it broke volume=vol-9");
		assert_string_equal(nl + 1 + 25, "info plain\n");
	}
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_fields_and_escaping),
		cmocka_unit_test(test_text_appends_unsaid_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
