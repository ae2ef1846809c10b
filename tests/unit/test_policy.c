/* Backup policy files (agent/policy.c): a full policy read field by field,
 * the defaults, each kind of bad file refused with one line naming the
 * file, the field and the line, and the secrets read from a directory and
 * from a file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy.h"

static const char full[] =
	"apiVersion: ferry.csi.dev/v1alpha1\n"
	"kind: BackupPolicy\n"
	"metadata:\n"
	"  name: pg\n"
	"  namespace: prod\n"
	"  labels: {team: db}\n"
	"spec:\n"
	"  selector:\n"
	"    volumeIds: [vol-0123, vol-4567]\n"
	"    pvcs:\n"
	"      - namespace: prod\n"
	"        name: data-pg-*\n"
	"      - namespace: staging\n"
	"  schedule: \"0 */6 * * *\"\n"
	"  jitter: 10m\n"
	"  freeze: false\n"
	"  hook: postgres\n"
	"  drill:\n"
	"    schedule: \"0 5 * * sun\"\n"
	"    target: s3://dr/pg?region=us-east-1\n"
	"    check: fsck -n -f {}\n"
	"    checkTimeout: 30m\n"
	"    record: false\n"
	"    scratchDir: /srv/scratch\n"
	"  targets:\n"
	"    - url: s3://prim/pg?region=eu-west-1\n"
	"      secrets: {dir: /etc/ferry/secrets/repo}\n"
	"      retention: {keepLast: 3, keepDaily: 7, keepWeekly: 4}\n"
	"    - url: s3://dr/pg?region=us-east-1\n"
	"      secrets: {file: /etc/ferry/dr.env, keyPrefix: copy-1.}\n"
	"      retention: {keepMonthly: 12, keepYearly: 2, keepHourly: 24}\n"
	"    - url: file:///mnt/worm\n"
	"      secrets: {dir: /etc/ferry/secrets/worm}\n"
	"      optional: true\n"
	"  prune: {schedule: \"@weekly\"}\n"
	"  objectives: {rpo: 7h, rto: 1h30m}\n";

static void test_full(void **state)
{
	struct fy_policy *p;
	const char *kind = NULL;
	char err[1024] = "";

	(void)state;
	if (fy_policy_parse("pg.yaml", full, strlen(full), &p, &kind, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(p->name, "pg");
	assert_string_equal(p->ns, "prod");
	assert_int_equal(p->nvolume_ids, 2);
	assert_string_equal(p->volume_ids[1], "vol-4567");
	assert_int_equal(p->npvcs, 2);
	assert_string_equal(p->pvcs[0].ns, "prod");
	assert_string_equal(p->pvcs[0].name, "data-pg-*");
	assert_null(p->pvcs[1].name);
	assert_string_equal(p->schedule_text, "0 */6 * * *");
	assert_int_equal(p->schedule.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
	assert_int_equal(p->jitter, 600);
	assert_false(p->freeze);
	assert_string_equal(p->hook, "postgres");
	assert_int_equal(p->ntargets, 3);
	assert_string_equal(p->targets[0].secret_dir, "/etc/ferry/secrets/repo");
	assert_true(p->targets[0].retention);
	assert_int_equal(p->targets[0].keep.last, 3);
	assert_int_equal(p->targets[0].keep.daily, 7);
	assert_int_equal(p->targets[0].keep.weekly, 4);
	assert_int_equal(p->targets[0].keep.hourly, 0);
	assert_string_equal(p->targets[1].secret_file, "/etc/ferry/dr.env");
	assert_string_equal(p->targets[1].key_prefix, "copy-1.");
	assert_int_equal(p->targets[1].keep.monthly, 12);
	assert_int_equal(p->targets[1].keep.yearly, 2);
	assert_int_equal(p->targets[1].keep.hourly, 24);
	assert_false(p->targets[1].optional);
	assert_true(p->targets[2].optional);
	assert_false(p->targets[2].retention);
	assert_true(p->prune);
	assert_string_equal(p->prune_text, "@weekly");
	assert_true(p->drill);
	assert_string_equal(p->drill_text, "0 5 * * sun");
	assert_int_equal(p->drill_target, 1); /* named, though it comes before targets */
	assert_string_equal(p->drill_check, "fsck -n -f {}");
	assert_int_equal(p->drill_check_timeout, 1800);
	assert_false(p->drill_record);
	assert_string_equal(p->drill_scratch, "/srv/scratch");
	assert_int_equal(p->rpo, 7 * 3600);
	assert_int_equal(p->rto, 5400);
	fy_policy_unref(p);
}

static const char minimal[] =
	"apiVersion: ferry.csi.dev/v1alpha1\n"
	"kind: BackupPolicy\n"
	"metadata: {name: small}\n"
	"spec:\n"
	"  selector: {volumeIds: [vol-1]}\n"
	"  schedule: '@daily'\n"
	"  targets:\n"
	"    - {url: 'file:///b/one', secrets: {dir: /s/one}}\n"
	"    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n";

static void test_defaults(void **state)
{
	struct fy_policy *p;
	const char *kind = NULL;
	char err[1024] = "";

	(void)state;
	if (fy_policy_parse("small.yaml", minimal, strlen(minimal), &p, &kind, err, sizeof(err)))
		fail_msg("%s", err);
	assert_null(p->ns);
	assert_int_equal(p->jitter, 0);
	assert_true(p->freeze);
	assert_null(p->hook);
	assert_false(p->prune);
	assert_true(p->drill);                  /* weekly drills by default ... */
	assert_string_equal(p->drill_text, "@weekly");
	assert_int_equal(p->drill_target, 1);   /* ... from the far copy, */
	assert_true(p->drill_record);           /* recorded there */
	assert_null(p->drill_check);
	assert_int_equal(p->drill_check_timeout, 3600);
	assert_null(p->drill_scratch);
	assert_int_equal(p->rpo, 0);
	assert_int_equal(p->rto, 0);
	assert_false(p->targets[0].retention);
	fy_policy_unref(p);
}

/* The minimal policy with one line replaced (or appended under spec). */
static char *variant(const char *find, const char *repl)
{
	static char buf[8192];
	const char *at = find ? strstr(minimal, find) : NULL;

	if (find && !at)
		fail_msg("'%s' not in the minimal policy", find);
	if (!find) {
		snprintf(buf, sizeof(buf), "%s%s", minimal, repl);
	} else {
		snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - minimal), minimal, repl, at + strlen(find));
	}
	return buf;
}

static void test_bad(void **state)
{
	static const struct {
		const char *find, *repl, *kind, *want;
	} bad[] = {
		{ "kind: BackupPolicy\n", "kind: BackupPolicies\n", "schema", "bad.yaml: kind: 'BackupPolicies' is not BackupPolicy (line 2)" },
		{ "apiVersion: ferry.csi.dev/v1alpha1\n", "apiVersion: v1\n", "schema", "apiVersion: 'v1' is not ferry.csi.dev/v1alpha1 (line 1)" },
		{ "apiVersion: ferry.csi.dev/v1alpha1\n", "", "schema", "bad.yaml: apiVersion: is required" },
		{ "metadata: {name: small}\n", "metadata: {nam: small}\n", "schema", "metadata: unknown field 'nam' (known here: name, namespace, labels, annotations) (line 3)" },
		{ "metadata: {name: small}\n", "metadata: {name: Small_1}\n", "schema", "metadata.name: 'Small_1' is not a name" },
		{ "metadata: {name: small}\n", "metadata: {namespace: x}\n", "schema", "metadata.name: is required" },
		{ "  schedule: '@daily'\n", "  schedule: '61 * * * *'\n", "cron", "spec.schedule: '61 * * * *' is not a cron line: the minute field '61': 61 is out of range 0-59 (line 6)" },
		{ "  schedule: '@daily'\n", "  schedule: 5\n", "cron", "spec.schedule: '5' is not a cron line: 1 fields where cron wants 5" },
		{ "  schedule: '@daily'\n", "", "schema", "spec.schedule: is required" },
		{ "  schedule: '@daily'\n", "  schedule: '@daily'\n  schedul: x\n", "schema", "spec: unknown field 'schedul'" },
		{ "  schedule: '@daily'\n", "  schedule: '@daily'\n  schedule: '@hourly'\n", "schema", "spec: field 'schedule' is given twice (line 7)" },
		{ "  selector: {volumeIds: [vol-1]}\n", "  selector: {}\n", "schema", "spec.selector: selects nothing" },
		{ "  selector: {volumeIds: [vol-1]}\n", "  selector: {volumeIds: vol-1}\n", "schema", "spec.selector.volumeIds: is a value, where a list is expected (line 5)" },
		{ "  selector: {volumeIds: [vol-1]}\n", "  selector: {pvcs: [{name: x}]}\n", "schema", "spec.selector.pvcs[0].namespace: is required" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'file:///b/two', secrets: {dir: s/two}}\n", "schema", "spec.targets[1].secrets.dir: 's/two' is not an absolute path (line 9)" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'file:///b/two', secrets: {dir: /s, file: /f}}\n", "schema", "spec.targets[1].secrets: names both dir and file" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'file:///b/two'}\n", "schema", "spec.targets[1].secrets: is required" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'http://x', secrets: {dir: /s}}\n", "schema", "spec.targets[1].url: 'http://x' is not a repository URL" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'file:///b/one', secrets: {dir: /s}}\n", "schema", "spec.targets[1]: 'file:///b/one' is named twice (also targets[0])" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'file:///b/two', secrets: {dir: /s}, retention: {keepDaily: -1}}\n", "schema", "spec.targets[1].retention.keepDaily: '-1' is not a whole number from 0 to 100000" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'file:///b/two', secrets: {dir: /s}, retention: {keepLast: 0}}\n", "schema", "spec.targets[1].retention: keeps nothing" },
		{ "    - {url: 'file:///b/two', secrets: {dir: /s/two}}\n", "    - {url: 'file:///b/two', secrets: {dir: /s}, retention: {keepDays: 3}}\n", "schema", "unknown field 'keepDays'" },
		{ "    - {url: 'file:///b/one', secrets: {dir: /s/one}}\n", "    - {url: 'file:///b/one', secrets: {dir: /s/one}, optional: true}\n", "schema", "spec.targets[0].optional: the primary (the first target) cannot be optional" },
		{ "    - {url: 'file:///b/one', secrets: {dir: /s/one}}\n", "    - {url: 'file:///b/one', secrets: {dir: /s/one}, optional: \"yes\"}\n", "schema", "optional: 'yes' is not true or false (line 8)" },
		{ NULL, "  jitter: 5\n", "schema", "spec.jitter: '5' is not a duration" },
		{ NULL, "  objectives: {rpo: 0s}\n", "schema", "spec.objectives.rpo: '0s' is not a duration such as 90s, 15m, 1h30m, 7d or 2w (above zero)" },
		{ NULL, "  drill: {target: 'file:///b/three'}\n", "schema", "spec.drill.target: 'file:///b/three' is none of spec.targets[].url" },
		{ NULL, "  drill: {schedule: 'weekly'}\n", "cron", "spec.drill.schedule: 'weekly' is not a cron line" },
		{ NULL, "  drill: {enabled: false}\n  objectives: {rto: 1h}\n", "schema", "spec.objectives.rto: needs drills" },
		{ NULL, "  prune: {}\n", "schema", "spec.prune.schedule: is required" },
		{ NULL, "  hook: 'a b'\n", "schema", "spec.hook: 'a b' is not a hook name" },
		{ NULL, "---\nkind: x\n", "parse", "holds more than one YAML document" },
		{ NULL, "  bad: [unclosed\n", "parse", "small.yaml: not valid YAML" },
	};
	struct fy_policy *p;
	const char *kind;
	char err[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *text = variant(bad[i].find, bad[i].repl);
		const char *file = bad[i].kind[0] == 'p' ? "small.yaml" : "bad.yaml";

		err[0] = 0;
		kind = NULL;
		p = NULL;
		if (!fy_policy_parse(file, text, strlen(text), &p, &kind, err, sizeof(err))) {
			fy_policy_unref(p);
			fail_msg("case %zu parsed:\n%s", i, text);
		}
		assert_null(p);
		if (!strstr(err, bad[i].want))
			fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
		if (strcmp(kind, bad[i].kind))
			fail_msg("case %zu: kind %s, want %s (%s)", i, kind, bad[i].kind, err);
		assert_null(strchr(err, '\n')); /* one line */
	}
	/* Not YAML text at all, empty, too big. */
	assert_int_not_equal(fy_policy_parse("e.yaml", "", 0, &p, &kind, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "e.yaml: is empty"));
	assert_int_not_equal(fy_policy_parse("n.yaml", "a\0b", 3, &p, &kind, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "NUL byte"));
	assert_int_not_equal(fy_policy_parse("l.yaml", "- 1\n", 4, &p, &kind, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "l.yaml: (top): is a list, where a mapping is expected (line 1)"));
}

static void test_secrets(void **state)
{
	char dir[] = "/tmp/test_policy.XXXXXX", path[256];
	struct fy_pol_target t = { 0 };
	struct fy_pol_secrets s;
	char err[512];
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	/* A mounted Secret: a file per key; copy-1. keys win with keyPrefix. */
	snprintf(path, sizeof(path), "%s/password", dir);
	f = fopen(path, "w");
	fputs("pw-plain\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/copy-1.password", dir);
	f = fopen(path, "w");
	fputs("pw-copy", f);
	fclose(f);
	t.secret_dir = dir;
	assert_int_equal(fy_pol_secrets_read(&t, &s, err, sizeof(err)), 0);
	assert_string_equal(s.val[0], "pw-plain");
	assert_null(s.val[1]);
	fy_pol_secrets_free(&s);
	t.key_prefix = "copy-1.";
	assert_int_equal(fy_pol_secrets_read(&t, &s, err, sizeof(err)), 0);
	assert_string_equal(s.val[0], "pw-copy");
	fy_pol_secrets_free(&s);
	/* S3 keys come in pairs. */
	snprintf(path, sizeof(path), "%s/AWS_ACCESS_KEY_ID", dir);
	f = fopen(path, "w");
	fputs("AK", f);
	fclose(f);
	assert_int_equal(fy_pol_secrets_read(&t, &s, err, sizeof(err)), -ENOKEY);
	assert_non_null(strstr(err, "has AWS_ACCESS_KEY_ID but not AWS_SECRET_ACCESS_KEY"));
	unlink(path);
	/* A file of KEY=VALUE lines. */
	snprintf(path, sizeof(path), "%s/repo.env", dir);
	f = fopen(path, "w");
	fputs("# the repository\npassword=pw=with=equals\nAWS_ACCESS_KEY_ID = AK\nAWS_SECRET_ACCESS_KEY=SK\n"
	      "copy-1.AWS_SECRET_ACCESS_KEY=SK1\nother=ignored\n", f);
	fclose(f);
	t.secret_dir = NULL;
	t.secret_file = path;
	assert_int_equal(fy_pol_secrets_read(&t, &s, err, sizeof(err)), 0);
	assert_string_equal(s.val[0], "pw=with=equals");
	assert_string_equal(s.val[1], " AK");
	assert_string_equal(s.val[2], "SK1");
	fy_pol_secrets_free(&s);
	/* Missing: the file, the directory, the password; never a value in err. */
	t.secret_file = "/nonexistent/ferry.env";
	assert_int_equal(fy_pol_secrets_read(&t, &s, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "the secrets file /nonexistent/ferry.env: No such file or directory"));
	t.secret_file = NULL;
	t.secret_dir = "/nonexistent/dir";
	assert_int_equal(fy_pol_secrets_read(&t, &s, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "the secrets directory /nonexistent/dir: No such file or directory"));
	snprintf(path, sizeof(path), "%s/password", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/copy-1.password", dir);
	unlink(path);
	t.secret_dir = dir;
	t.key_prefix = NULL;
	assert_int_equal(fy_pol_secrets_read(&t, &s, err, sizeof(err)), -ENOKEY);
	assert_non_null(strstr(err, "no 'password' in the secrets directory"));
	snprintf(path, sizeof(path), "%s/repo.env", dir);
	unlink(path);
	rmdir(dir);
}

/* The example policy deploy/ ships (kustomize component, Helm example). */
static void test_deploy_example(void **state)
{
	const char *src = getenv("FERRY_SRC");
	char path[1024], buf[8192], err[1024];
	struct fy_policy *p;
	const char *kind;
	size_t n;
	FILE *f;

	(void)state;
	if (!src)
		skip(); /* ctest sets it */
	snprintf(path, sizeof(path), "%s/deploy/kubernetes/components/policies/nightly.yaml", src);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (fy_policy_parse("nightly.yaml", buf, n, &p, &kind, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(p->name, "nightly");
	assert_int_equal(p->ntargets, 2);
	assert_true(p->prune && p->drill && p->rpo && p->rto);
	fy_policy_unref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_deploy_example),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
