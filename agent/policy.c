/* Backup policy files: YAML (libyaml's document loader) checked against the
 * schema of docs/operations.md, field by field (policy.h). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <yaml.h>

#include "ferry_drill.h"
#include "policy.h"

const char *const fy_pol_secret_keys[FY_POL_SECRET_KEYS] = { "password", "AWS_ACCESS_KEY_ID",
							     "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN" };

/* ---- walking the document ---- */

struct ctx {
	yaml_document_t *doc;
	const char *file;
	char *err;
	size_t errlen;
	const char *kind;
	char path[256];         /* the field being read: "spec.targets[1].url" */
};

__attribute__((format(printf, 3, 4)))
static int bad(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (n)
		snprintf(c->err, c->errlen, "%s: %s: %s (line %zu)", c->file, c->path[0] ? c->path : "(top)", what,
			 (size_t)n->start_mark.line + 1);
	else
		snprintf(c->err, c->errlen, "%s: %s: %s", c->file, c->path[0] ? c->path : "(top)", what);
	if (!c->kind)
		c->kind = "schema";
	return -EINVAL;
}

/* Descend into a field (restored by the caller from the length returned). */
static size_t push(struct ctx *c, const char *key, long index)
{
	size_t n = strlen(c->path);

	if (key)
		snprintf(c->path + n, sizeof(c->path) - n, "%s%s", n ? "." : "", key);
	else
		snprintf(c->path + n, sizeof(c->path) - n, "[%ld]", index);
	return n;
}

static void pop(struct ctx *c, size_t n)
{
	c->path[n] = 0;
}

static yaml_node_t *node(struct ctx *c, int i)
{
	return yaml_document_get_node(c->doc, i);
}

static const char *type_name(const yaml_node_t *n)
{
	return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a value";
}

static bool is_null(const yaml_node_t *n)
{
	const char *v = (const char *)n->data.scalar.value;

	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (!*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL"));
}

/* A value shown in a message: printable, cut at 64 bytes. */
static const char *shown(const yaml_node_t *n, char *buf, size_t len)
{
	const unsigned char *v = n->data.scalar.value;
	size_t o = 0;

	for (size_t i = 0; i < n->data.scalar.length && o + 5 < len && i < 64; i++)
		o += (size_t)snprintf(buf + o, len - o, v[i] < 0x20 || v[i] == 0x7f ? "\\x%02x" : "%c", v[i]);
	if (n->data.scalar.length > 64 && o + 4 < len)
		o += (size_t)snprintf(buf + o, len - o, "...");
	buf[o] = 0;
	return buf;
}

static int want_type(struct ctx *c, const yaml_node_t *n, yaml_node_type_t t)
{
	if (n->type == t)
		return 0;
	return bad(c, n, "is %s, where %s is expected", type_name(n),
		   t == YAML_MAPPING_NODE ? "a mapping" : t == YAML_SEQUENCE_NODE ? "a list" : "a value");
}

/* A string: any scalar but null; no control characters, at most max bytes. */
static int get_str(struct ctx *c, const yaml_node_t *n, size_t max, char **out)
{
	char b[300];
	int ret = want_type(c, n, YAML_SCALAR_NODE);

	if (ret)
		return ret;
	if (is_null(n))
		return bad(c, n, "is empty");
	if (n->data.scalar.length > max)
		return bad(c, n, "'%s' is longer than %zu bytes", shown(n, b, sizeof(b)), max);
	for (size_t i = 0; i < n->data.scalar.length; i++)
		if (n->data.scalar.value[i] < 0x20 || n->data.scalar.value[i] == 0x7f)
			return bad(c, n, "'%s' holds a control character", shown(n, b, sizeof(b)));
	*out = strdup((const char *)n->data.scalar.value);
	return *out ? 0 : -ENOMEM;
}

static int get_bool(struct ctx *c, const yaml_node_t *n, bool *out)
{
	char b[300];
	const char *v = (const char *)n->data.scalar.value;
	int ret = want_type(c, n, YAML_SCALAR_NODE);

	if (ret)
		return ret;
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp(v, "true"))
		*out = true;
	else if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp(v, "false"))
		*out = false;
	else
		return bad(c, n, "'%s' is not true or false%s", shown(n, b, sizeof(b)),
			   n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE && (!strcmp(v, "true") || !strcmp(v, "false"))
				   ? " (write it without quotes)" : "");
	return 0;
}

static int get_uint(struct ctx *c, const yaml_node_t *n, unsigned max, unsigned *out)
{
	char b[300];
	const char *v = (const char *)n->data.scalar.value;
	unsigned long x = 0;
	int ret = want_type(c, n, YAML_SCALAR_NODE);

	if (ret)
		return ret;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !*v || strspn(v, "0123456789") != strlen(v) ||
	    strlen(v) > 9 || (x = strtoul(v, NULL, 10)) > max)
		return bad(c, n, "'%s' is not a whole number from 0 to %u", shown(n, b, sizeof(b)), max);
	*out = (unsigned)x;
	return 0;
}

/* A duration ("90s", "15m", "1h30m", "7d", "2w"); zero only when allowed. */
static int get_duration(struct ctx *c, const yaml_node_t *n, bool zero_ok, int64_t *out)
{
	char b[300];
	int ret = want_type(c, n, YAML_SCALAR_NODE);

	if (ret)
		return ret;
	if (fy_duration_parse((const char *)n->data.scalar.value, out) < 0 || (!zero_ok && !*out))
		return bad(c, n, "'%s' is not a duration such as 90s, 15m, 1h30m, 7d or 2w%s", shown(n, b, sizeof(b)),
			   zero_ok ? "" : " (above zero)");
	return 0;
}

static int get_cron(struct ctx *c, const yaml_node_t *n, char **text, struct fy_cron *cr)
{
	char e2[400];
	int ret = get_str(c, n, 200, text);

	if (ret)
		return ret;
	if (fy_cron_parse(*text, cr, e2, sizeof(e2))) {
		c->kind = "cron";
		return bad(c, n, "'%s' is not a cron line: %s", *text, e2);
	}
	return 0;
}

/* A mapping's keys, each in known (NULL-terminated), at most once; fn is
 * called for each pair with the key's index in known. */
typedef int (*pair_fn)(struct ctx *c, size_t key, yaml_node_t *v, void *arg);

static int each_pair(struct ctx *c, const yaml_node_t *m, const char *const *known, pair_fn fn, void *arg)
{
	uint64_t seen = 0;
	char b[300];
	int ret = want_type(c, m, YAML_MAPPING_NODE);

	if (ret)
		return ret;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
		size_t i;

		if (!k || !v || k->type != YAML_SCALAR_NODE)
			return bad(c, k, "a key that is not a plain name");
		for (i = 0; known[i]; i++)
			if (!strcmp(known[i], (const char *)k->data.scalar.value))
				break;
		if (!known[i]) {
			char list[400] = "";
			size_t o = 0;

			for (size_t j = 0; known[j] && o < sizeof(list); j++)
				o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", j ? ", " : "", known[j]);
			return bad(c, k, "unknown field '%s' (known here: %s)", shown(k, b, sizeof(b)), list);
		}
		if (seen >> i & 1)
			return bad(c, k, "field '%s' is given twice", known[i]);
		seen |= 1ull << i;
		size_t back = push(c, known[i], 0);

		ret = fn(c, i, v, arg);
		if (ret)
			return ret;
		pop(c, back);
	}
	return 0;
}

/* The value of key in mapping m, or NULL (m already checked by each_pair). */
static yaml_node_t *lookup(struct ctx *c, const yaml_node_t *m, const char *key)
{
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(c, p->key);

		if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
			return node(c, p->value);
	}
	return NULL;
}

static int missing(struct ctx *c, const yaml_node_t *m, const char *key)
{
	size_t back = push(c, key, 0);
	int ret = bad(c, m, "is required");

	pop(c, back);
	return ret;
}

/* ---- the schema ---- */

static bool dns_label(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > FY_POLICY_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (const char *p = s; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
			return false;
	return true;
}

static int string_map(struct ctx *c, const yaml_node_t *m)
{
	int ret = want_type(c, m, YAML_MAPPING_NODE);

	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; !ret && p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(c, p->key), *v = node(c, p->value);

		if (!k || !v || k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
			ret = bad(c, k, "holds something other than text keys and values");
	}
	return ret;
}

static const char *const meta_keys[] = { "name", "namespace", "labels", "annotations", NULL };

static int meta_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_policy *p = arg;
	char b[300];
	int ret;

	switch (key) {
	case 0:
		ret = get_str(c, v, 253, &p->name);
		if (!ret && !dns_label(p->name))
			ret = bad(c, v, "'%s' is not a name of lower-case letters, digits and '-', at most %d "
				  "characters, starting and ending with a letter or digit", shown(v, b, sizeof(b)),
				  FY_POLICY_NAME_MAX);
		return ret;
	case 1:
		if (is_null(v))
			return 0;
		ret = get_str(c, v, 253, &p->ns);
		if (!ret && !dns_label(p->ns))
			ret = bad(c, v, "'%s' is not a namespace name", shown(v, b, sizeof(b)));
		return ret;
	default: /* labels, annotations: kept by Kubernetes, unused here */
		return is_null(v) ? 0 : string_map(c, v);
	}
}

static const char *const pvc_keys[] = { "namespace", "name", NULL };

static int pvc_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_pol_pvc *pv = arg;

	if (key == 0)
		return get_str(c, v, 253, &pv->ns);
	return get_str(c, v, 253, &pv->name);
}

static const char *const selector_keys[] = { "volumeIds", "pvcs", NULL };

static int selector_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_policy *p = arg;
	size_t n;
	int ret = want_type(c, v, YAML_SEQUENCE_NODE);

	if (ret)
		return ret;
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n + p->nvolume_ids + p->npvcs > FY_POLICY_SELECT_MAX)
		return bad(c, v, "more than %d entries in the selector", FY_POLICY_SELECT_MAX);
	if (key == 0) {
		p->volume_ids = calloc(n ? n : 1, sizeof(*p->volume_ids));
		if (!p->volume_ids)
			return -ENOMEM;
	} else {
		p->pvcs = calloc(n ? n : 1, sizeof(*p->pvcs));
		if (!p->pvcs)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *it = node(c, v->data.sequence.items.start[i]);
		size_t back = push(c, NULL, (long)i);

		if (key == 0) {
			ret = get_str(c, it, 64, &p->volume_ids[p->nvolume_ids]);
			if (!ret)
				p->nvolume_ids++;
		} else {
			ret = each_pair(c, it, pvc_keys, pvc_pair, &p->pvcs[p->npvcs]);
			if (!ret && !p->pvcs[p->npvcs].ns)
				ret = missing(c, it, "namespace");
			p->npvcs++;
		}
		if (ret)
			return ret;
		pop(c, back);
	}
	return 0;
}

static const char *const secrets_keys[] = { "dir", "file", "keyPrefix", NULL };

static int secrets_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_pol_target *t = arg;
	char **slot = key == 0 ? &t->secret_dir : key == 1 ? &t->secret_file : &t->key_prefix;
	int ret = get_str(c, v, key == 2 ? 32 : 1024, slot);

	if (!ret && key < 2 && (*slot)[0] != '/')
		ret = bad(c, v, "'%s' is not an absolute path", *slot);
	if (!ret && key == 2 && strpbrk(*slot, "/ "))
		ret = bad(c, v, "'%s' holds '/' or a space", *slot);
	return ret;
}

static const char *const retention_keys[] = { "keepLast", "keepHourly", "keepDaily", "keepWeekly", "keepMonthly",
					      "keepYearly", NULL };

static int retention_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_forget_policy *k = arg;
	unsigned *slot[] = { &k->last, &k->hourly, &k->daily, &k->weekly, &k->monthly, &k->yearly };

	return get_uint(c, v, 100000, slot[key]);
}

static const char *const target_keys[] = { "url", "secrets", "optional", "retention", NULL };

static int target_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_pol_target *t = arg;
	int ret;

	switch (key) {
	case 0:
		ret = get_str(c, v, 1024, &t->url);
		if (!ret && ((strncmp(t->url, "file:///", 8) && strncmp(t->url, "s3://", 5)) || strchr(t->url, ',')))
			ret = bad(c, v, "'%s' is not a repository URL (file:///PATH or s3://BUCKET/PREFIX?..., "
				  "without commas)", t->url);
		return ret;
	case 1:
		ret = each_pair(c, v, secrets_keys, secrets_pair, t);
		if (!ret && !!t->secret_dir == !!t->secret_file)
			ret = bad(c, v, "names %s: give one of dir (a mounted Secret: a file per key) or file "
				  "(KEY=VALUE lines)", t->secret_dir ? "both dir and file" : "neither dir nor file");
		return ret;
	case 2:
		return get_bool(c, v, &t->optional);
	default:
		ret = each_pair(c, v, retention_keys, retention_pair, &t->keep);
		t->retention = true;
		if (!ret && !(t->keep.last | t->keep.hourly | t->keep.daily | t->keep.weekly | t->keep.monthly |
			      t->keep.yearly))
			ret = bad(c, v, "keeps nothing (every keep* is 0 or absent): it would remove every snapshot "
				  "of the policy; leave retention out to keep them all");
		return ret;
	}
}

static int targets(struct ctx *c, yaml_node_t *v, struct fy_policy *p)
{
	size_t n;
	int ret = want_type(c, v, YAML_SEQUENCE_NODE);

	if (ret)
		return ret;
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (!n)
		return bad(c, v, "is empty: name the primary repository at least");
	if (n > FY_MAX_TARGETS)
		return bad(c, v, "names %zu repositories, more than %d", n, FY_MAX_TARGETS);
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *it = node(c, v->data.sequence.items.start[i]);
		struct fy_pol_target *t = &p->targets[i];
		size_t back = push(c, NULL, (long)i);

		p->ntargets = i + 1;
		ret = each_pair(c, it, target_keys, target_pair, t);
		if (!ret && !t->url)
			ret = missing(c, it, "url");
		if (!ret && !t->secret_dir && !t->secret_file)
			ret = missing(c, it, "secrets");
		if (!ret && i == 0 && t->optional) {
			size_t b2 = push(c, "optional", 0);

			ret = bad(c, lookup(c, it, "optional"), "the primary (the first target) cannot be optional");
			pop(c, b2);
		}
		for (size_t k = 0; !ret && k < i; k++)
			if (!strcmp(p->targets[k].url, t->url))
				ret = bad(c, it, "'%s' is named twice (also targets[%zu])", t->url, k);
		if (ret)
			return ret;
		pop(c, back);
	}
	return 0;
}

static const char *const prune_keys[] = { "schedule", NULL };

static int prune_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_policy *p = arg;

	(void)key;
	return get_cron(c, v, &p->prune_text, &p->prune_schedule);
}

static const char *const drill_keys[] = { "enabled", "schedule", "target", "check", "checkTimeout", "record",
					  "scratchDir", NULL };

struct drill_arg {
	struct fy_policy *p;
	char *target;
	yaml_node_t *target_node;
};

static int drill_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct drill_arg *d = arg;
	struct fy_policy *p = d->p;
	int ret;

	switch (key) {
	case 0:
		return get_bool(c, v, &p->drill);
	case 1:
		free(p->drill_text);
		p->drill_text = NULL;
		return get_cron(c, v, &p->drill_text, &p->drill_schedule);
	case 2:
		d->target_node = v;
		return get_str(c, v, 1024, &d->target);
	case 3:
		ret = get_str(c, v, 1024, &p->drill_check);
		if (!ret && !p->drill_check[strspn(p->drill_check, " \t")])
			ret = bad(c, v, "is blank");
		return ret;
	case 4:
		return get_duration(c, v, false, &p->drill_check_timeout);
	case 5:
		return get_bool(c, v, &p->drill_record);
	default:
		ret = get_str(c, v, 1024, &p->drill_scratch);
		if (!ret && p->drill_scratch[0] != '/')
			ret = bad(c, v, "'%s' is not an absolute path", p->drill_scratch);
		return ret;
	}
}

static const char *const objectives_keys[] = { "rpo", "rto", NULL };

static int objectives_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_policy *p = arg;

	return get_duration(c, v, false, key == 0 ? &p->rpo : &p->rto);
}

static const char *const spec_keys[] = { "selector", "schedule", "jitter", "freeze", "hook", "targets", "prune",
					 "drill", "objectives", NULL };

static int spec_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_policy *p = arg;
	char b[300];
	int ret;

	switch (key) {
	case 0:
		ret = each_pair(c, v, selector_keys, selector_pair, p);
		if (!ret && !p->nvolume_ids && !p->npvcs)
			ret = bad(c, v, "selects nothing: give volumeIds or pvcs");
		return ret;
	case 1:
		return get_cron(c, v, &p->schedule_text, &p->schedule);
	case 2:
		return get_duration(c, v, true, &p->jitter);
	case 3:
		return get_bool(c, v, &p->freeze);
	case 4:
		ret = get_str(c, v, 63, &p->hook);
		if (!ret && (strpbrk(p->hook, " .=") || !*p->hook))
			ret = bad(c, v, "'%s' is not a hook name (hook.NAME.pre in the agent's config)",
				  shown(v, b, sizeof(b)));
		return ret;
	case 5:
		return 0; /* read first, by top_pair */
	case 6:
		ret = each_pair(c, v, prune_keys, prune_pair, p);
		if (!ret && !p->prune_text)
			ret = missing(c, v, "schedule");
		p->prune = !ret;
		return ret;
	case 7: {
		struct drill_arg d = { .p = p };

		ret = each_pair(c, v, drill_keys, drill_pair, &d);
		if (!ret && d.target) {
			size_t i;

			for (i = 0; i < p->ntargets && strcmp(p->targets[i].url, d.target); i++)
				;
			if (i == p->ntargets) {
				size_t back = push(c, "target", 0);

				ret = bad(c, d.target_node, "'%s' is none of spec.targets[].url", d.target);
				pop(c, back);
			}
			p->drill_target = i;
		}
		free(d.target);
		return ret;
	}
	default:
		return each_pair(c, v, objectives_keys, objectives_pair, p);
	}
}

static const char *const top_keys[] = { "apiVersion", "kind", "metadata", "spec", NULL };

static int top_pair(struct ctx *c, size_t key, yaml_node_t *v, void *arg)
{
	struct fy_policy *p = arg;
	char *s = NULL, b[300];
	int ret;

	switch (key) {
	case 0:
	case 1:
		ret = get_str(c, v, 253, &s);
		if (!ret && strcmp(s, key == 0 ? FY_POLICY_API : FY_POLICY_KIND))
			ret = bad(c, v, "'%s' is not %s", shown(v, b, sizeof(b)), key == 0 ? FY_POLICY_API : FY_POLICY_KIND);
		free(s);
		return ret;
	case 2:
		ret = each_pair(c, v, meta_keys, meta_pair, p);
		if (!ret && !p->name)
			ret = missing(c, v, "name");
		return ret;
	default:
		/* The drill's default target is the last one: targets are read
		 * first, whatever the order of the keys. */
		{
			yaml_node_t *t = v->type == YAML_MAPPING_NODE ? lookup(c, v, "targets") : NULL;
			size_t back;

			if (t) {
				back = push(c, "targets", 0);
				ret = targets(c, t, p);
				if (ret)
					return ret;
				pop(c, back);
			}
		}
		return each_pair(c, v, spec_keys, spec_pair, p);
	}
}

void fy_policy_unref(struct fy_policy *p)
{
	if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	free(p->file);
	free(p->name);
	free(p->ns);
	for (size_t i = 0; i < p->nvolume_ids; i++)
		free(p->volume_ids[i]);
	free(p->volume_ids);
	for (size_t i = 0; i < p->npvcs; i++) {
		free(p->pvcs[i].ns);
		free(p->pvcs[i].name);
	}
	free(p->pvcs);
	free(p->schedule_text);
	free(p->hook);
	for (size_t i = 0; i < FY_MAX_TARGETS; i++) {
		free(p->targets[i].url);
		free(p->targets[i].secret_dir);
		free(p->targets[i].secret_file);
		free(p->targets[i].key_prefix);
	}
	free(p->prune_text);
	free(p->drill_text);
	free(p->drill_check);
	free(p->drill_scratch);
	free(p);
}

struct fy_policy *fy_policy_ref(struct fy_policy *p)
{
	atomic_fetch_add(&p->refs, 1);
	return p;
}

int fy_policy_parse(const char *file, const char *text, size_t len, struct fy_policy **out, const char **kind,
		    char *err, size_t errlen)
{
	struct fy_policy *p = calloc(1, sizeof(*p));
	yaml_parser_t parser;
	yaml_document_t doc, more;
	yaml_node_t *root;
	struct ctx c = { .doc = &doc, .file = file, .err = err, .errlen = errlen };
	bool loaded = false;
	int ret = 0;

	*out = NULL;
	*kind = "parse";
	if (!p || !yaml_parser_initialize(&parser)) {
		free(p);
		snprintf(err, errlen, "%s: out of memory", file);
		return -ENOMEM;
	}
	atomic_init(&p->refs, 1);
	p->freeze = true;
	p->drill = true;
	p->drill_record = true;
	p->drill_check_timeout = 3600;
	p->drill_target = SIZE_MAX;
	if (len > FY_POLICY_FILE_MAX) {
		snprintf(err, errlen, "%s: %zu bytes, more than the %d a policy may have", file, len, FY_POLICY_FILE_MAX);
		ret = -EFBIG;
		goto out;
	}
	if (memchr(text, 0, len)) {
		snprintf(err, errlen, "%s: holds a NUL byte: not a YAML text file", file);
		ret = -EINVAL;
		goto out;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s: not valid YAML: %s%s%s (line %zu, column %zu)", file,
			 parser.problem ? parser.problem : "a syntax error", parser.context ? " " : "",
			 parser.context ? parser.context : "", (size_t)parser.problem_mark.line + 1,
			 (size_t)parser.problem_mark.column + 1);
		ret = -EINVAL;
		goto out;
	}
	loaded = true;
	root = yaml_document_get_root_node(&doc);
	if (!root) {
		snprintf(err, errlen, "%s: is empty (a policy is one BackupPolicy object)", file);
		ret = -EINVAL;
		goto out;
	}
	if (!yaml_parser_load(&parser, &more)) {
		snprintf(err, errlen, "%s: not valid YAML after the first document: %s (line %zu)", file,
			 parser.problem ? parser.problem : "a syntax error", (size_t)parser.problem_mark.line + 1);
		ret = -EINVAL;
		goto out;
	}
	if (yaml_document_get_root_node(&more)) {
		snprintf(err, errlen, "%s: holds more than one YAML document (one policy per file)", file);
		yaml_document_delete(&more);
		ret = -EINVAL;
		goto out;
	}
	yaml_document_delete(&more);
	c.kind = NULL;
	*kind = "schema";
	ret = each_pair(&c, root, top_keys, top_pair, p);
	if (!ret) {
		static const char *const required[] = { "apiVersion", "kind", "metadata", "spec" };

		for (size_t i = 0; !ret && i < 4; i++)
			if (!lookup(&c, root, required[i]))
				ret = missing(&c, root, required[i]);
	}
	if (!ret) {
		yaml_node_t *spec = lookup(&c, root, "spec");
		static const char *const required[] = { "selector", "schedule", "targets" };

		for (size_t i = 0; !ret && i < 3; i++)
			if (!lookup(&c, spec, required[i])) {
				size_t back = push(&c, "spec", 0);

				ret = missing(&c, spec, required[i]);
				pop(&c, back);
			}
	}
	if (!ret && p->rto && !p->drill) {
		yaml_node_t *o = lookup(&c, lookup(&c, root, "spec"), "objectives");

		snprintf(c.path, sizeof(c.path), "spec.objectives.rto");
		ret = bad(&c, o ? lookup(&c, o, "rto") : NULL, "needs drills (spec.drill.enabled is false): the RTO is what "
			  "a drill measures");
	}
	if (ret && c.kind)
		*kind = c.kind;
	if (ret)
		goto out;
	if (!p->drill_text) {
		p->drill_text = strdup("@weekly");
		if (!p->drill_text || fy_cron_parse(p->drill_text, &p->drill_schedule, err, errlen)) {
			ret = -ENOMEM;
			goto out;
		}
	}
	if (p->drill_target == SIZE_MAX)
		p->drill_target = p->ntargets - 1; /* the far copy */
out:
	if (loaded)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (ret) {
		fy_policy_unref(p);
		return ret;
	}
	*out = p;
	return 0;
}

/* ---- secrets ---- */

void fy_pol_secrets_free(struct fy_pol_secrets *s)
{
	for (size_t i = 0; i < FY_POL_SECRET_KEYS; i++) {
		if (s->val[i]) {
			OPENSSL_cleanse(s->val[i], strlen(s->val[i]));
			free(s->val[i]);
		}
		s->val[i] = NULL;
	}
}

/* A secret's value: the file's bytes up to its first line end (as ferry's
 * --password-file); -ENOENT when absent. */
static int read_value(const char *path, char **out, char *err, size_t errlen)
{
	char buf[4097];
	ssize_t n, got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0) {
		ret = -errno;
		if (ret != -ENOENT)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	while (got < (ssize_t)sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			break;
		}
		got += n;
	}
	close(fd);
	buf[got] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	if (!ret && !(*out = strdup(buf)))
		ret = -ENOMEM;
	OPENSSL_cleanse(buf, sizeof(buf));
	return ret;
}

int fy_pol_secrets_read(const struct fy_pol_target *t, struct fy_pol_secrets *s, char *err, size_t errlen)
{
	const char *pre = t->key_prefix ? t->key_prefix : "";
	struct stat st;
	int ret = 0;

	memset(s, 0, sizeof(*s));
	if (t->secret_dir) {
		if (stat(t->secret_dir, &st)) {
			ret = -errno;
			snprintf(err, errlen, "the secrets directory %s: %s", t->secret_dir, strerror(errno));
			return ret;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "the secrets directory %s: not a directory", t->secret_dir);
			return -ENOTDIR;
		}
		for (size_t k = 0; !ret && k < FY_POL_SECRET_KEYS; k++) {
			char path[1200];

			ret = -ENOENT;
			if (*pre) {
				snprintf(path, sizeof(path), "%s/%s%s", t->secret_dir, pre, fy_pol_secret_keys[k]);
				ret = read_value(path, &s->val[k], err, errlen);
			}
			if (ret == -ENOENT) {
				snprintf(path, sizeof(path), "%s/%s", t->secret_dir, fy_pol_secret_keys[k]);
				ret = read_value(path, &s->val[k], err, errlen);
			}
			if (ret == -ENOENT)
				ret = 0;
		}
	} else {
		FILE *f = fopen(t->secret_file, "re");
		char line[4200];
		char *pv[FY_POL_SECRET_KEYS] = { 0 };

		if (!f) {
			ret = -errno;
			snprintf(err, errlen, "the secrets file %s: %s", t->secret_file, strerror(errno));
			return ret;
		}
		/* KEY=VALUE lines; '#' comments; PREFIX+KEY wins over KEY. */
		while (!ret && fgets(line, sizeof(line), f)) {
			char *eq = strchr(line, '='), *k = line;

			line[strcspn(line, "\r\n")] = 0;
			while (*k == ' ' || *k == '\t')
				k++;
			if (!*k || *k == '#' || !eq)
				continue;
			*eq = 0;
			for (char *e = eq; e > k && (e[-1] == ' ' || e[-1] == '\t'); )
				*--e = 0;
			for (size_t i = 0; i < FY_POL_SECRET_KEYS; i++) {
				bool prefixed = *pre && !strncmp(k, pre, strlen(pre)) &&
						!strcmp(k + strlen(pre), fy_pol_secret_keys[i]);
				char **slot = prefixed ? &pv[i] : !strcmp(k, fy_pol_secret_keys[i]) ? &s->val[i] : NULL;

				if (!slot)
					continue;
				if (*slot) {
					OPENSSL_cleanse(*slot, strlen(*slot));
					free(*slot);
				}
				if (!(*slot = strdup(eq + 1)))
					ret = -ENOMEM;
			}
		}
		OPENSSL_cleanse(line, sizeof(line));
		fclose(f);
		for (size_t i = 0; i < FY_POL_SECRET_KEYS; i++)
			if (pv[i]) {
				if (s->val[i]) {
					OPENSSL_cleanse(s->val[i], strlen(s->val[i]));
					free(s->val[i]);
				}
				s->val[i] = pv[i];
			}
		if (ret == -ENOMEM)
			snprintf(err, errlen, "out of memory");
	}
	if (!ret && (!s->val[0] || !*s->val[0])) {
		snprintf(err, errlen, "no '%s%s' in %s %s", pre, fy_pol_secret_keys[0], t->secret_dir ? "the secrets directory" : "the secrets file",
			 t->secret_dir ? t->secret_dir : t->secret_file);
		ret = -ENOKEY;
	}
	if (!ret && !!s->val[1] != !!s->val[2]) {
		snprintf(err, errlen, "%s %s has %s but not %s", t->secret_dir ? "the secrets directory" : "the secrets file",
			 t->secret_dir ? t->secret_dir : t->secret_file, s->val[1] ? fy_pol_secret_keys[1] : fy_pol_secret_keys[2],
			 s->val[1] ? fy_pol_secret_keys[2] : fy_pol_secret_keys[1]);
		ret = -ENOKEY;
	}
	if (ret)
		fy_pol_secrets_free(s);
	return ret;
}
