/* fuzz_policy: a backup policy file (agent/policy.c, fy_policy_parse: libyaml's
 * document loader, then the BackupPolicy schema field by field) and the
 * cron lines in it (agent/cron.c).  A policy file comes from a ConfigMap
 * that anyone allowed to edit it writes; the agent parses it on every
 * change, so no file may crash, hang or leak it, and a refusal must say why.
 *
 * Input: flags (1 byte), then the bytes.
 *   bit 0 clear: the bytes are a policy file; what the parser accepts must
 *     hold: a name of 1..63 bytes, 1..FY_MAX_TARGETS targets each with a
 *     URL, the drill's target among them, its schedules firing on minutes
 *     they match;
 *   bit 0 set: the bytes (up to a NUL) are one cron line; when it parses,
 *     fy_cron_next from a time the next 8 bytes choose is -1 or a later
 *     whole minute that the line matches. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "fuzz.h"
#include "policy.h"

/* Does c match the minute t (Unix seconds, UTC)? */
static bool matches(const struct fy_cron *c, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	bool dom, dow;

	gmtime_r(&tt, &tm);
	if (!(c->min >> tm.tm_min & 1) || !(c->hour >> tm.tm_hour & 1) || !(c->mon >> (tm.tm_mon + 1) & 1))
		return false;
	dom = c->dom >> tm.tm_mday & 1;
	dow = c->dow >> tm.tm_wday & 1;
	if (c->dom_star || c->dow_star)
		return (c->dom_star || dom) && (c->dow_star || dow);
	return dom || dow;
}

static void check_next(const struct fy_cron *c, int64_t after, const char *what)
{
	int64_t n = fy_cron_next(c, after);

	if (n == -1)
		return;
	if (n <= after || n % 60)
		fz_fail("%s: fy_cron_next(%lld) = %lld: not a later whole minute", what, (long long)after,
			(long long)n);
	if (!matches(c, n))
		fz_fail("%s: fy_cron_next(%lld) = %lld, a minute the line does not match", what, (long long)after,
			(long long)n);
}

static void one_cron(struct fz_in *in)
{
	/* 2001..2100: the years a schedule is asked about */
	int64_t after = 978307200 + (int64_t)(fz_u64(in) % (3155760000ULL));
	size_t n = in->n < 512 ? in->n : 512;
	char line[513], err[256] = "";
	struct fy_cron c;

	memcpy(line, in->p, n);
	line[n] = '\0';
	if (fy_cron_parse(line, &c, err, sizeof(err))) {
		if (!err[0] || !memchr(err, 0, sizeof(err)))
			fz_fail("fy_cron_parse refused '%s' without saying why", line);
		return;
	}
	check_next(&c, after, line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	struct fy_policy *p = NULL;
	const char *kind = NULL;
	char err[512] = "";

	if (flags & 1) {
		one_cron(&in);
		return 0;
	}
	if (fy_policy_parse("fuzz.yaml", (const char *)in.p, in.n, &p, &kind, err, sizeof(err))) {
		if (!err[0] || !memchr(err, 0, sizeof(err)) || !kind)
			fz_fail("fy_policy_parse refused a file without saying why (or of which kind)");
		if (strcmp(kind, "parse") && strcmp(kind, "schema") && strcmp(kind, "cron"))
			fz_fail("fy_policy_parse: error kind '%s' is none the metric knows", kind);
		if (p)
			fz_fail("fy_policy_parse refused a file and still returned a policy");
		return 0;
	}
	if (!p || !p->name || !*p->name || strlen(p->name) > FY_POLICY_NAME_MAX)
		fz_fail("an accepted policy without a valid name");
	if (!p->ntargets || p->ntargets > FY_MAX_TARGETS || p->drill_target >= p->ntargets)
		fz_fail("an accepted policy with %zu targets, drilling target %zu", p->ntargets, p->drill_target);
	for (size_t i = 0; i < p->ntargets; i++)
		if (!p->targets[i].url || !*p->targets[i].url)
			fz_fail("an accepted policy's target %zu has no URL", i);
	if (!p->schedule_text || (p->drill && !p->drill_text) || (p->prune && !p->prune_text))
		fz_fail("an accepted policy without the text of one of its schedules");
	if (p->jitter < 0 || p->rpo < 0 || p->rto < 0 || p->drill_check_timeout <= 0)
		fz_fail("an accepted policy with a negative duration");
	check_next(&p->schedule, 1764720000, p->schedule_text); /* 2025-12-03 */
	if (p->prune)
		check_next(&p->prune_schedule, 1764720000, p->prune_text);
	if (p->drill)
		check_next(&p->drill_schedule, 1764720000, p->drill_text);
	fy_policy_unref(p);
	return 0;
}
