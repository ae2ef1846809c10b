/* Backup policies: the files of --policy-dir, each one Kubernetes-shaped
 * object (apiVersion ferry.csi.dev/v1alpha1, kind BackupPolicy, metadata,
 * spec), parsed with libyaml and checked against the schema of
 * docs/operations.md ("Policies") — every field, its type, its default;
 * an unknown field is an error.  policy.c parses; sched.c runs them. */
#ifndef FERRY_AGENT_POLICY_H
#define FERRY_AGENT_POLICY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cron.h"
#include "ferry.h"
#include "ferry_gc.h"

#define FY_POLICY_API "ferry.csi.dev/v1alpha1"
#define FY_POLICY_KIND "BackupPolicy"
#define FY_POLICY_NAME_MAX 63      /* a DNS-1123 label */
#define FY_POLICY_FILE_MAX (256 * 1024)
#define FY_POLICY_SELECT_MAX 256   /* volumeIds + pvcs */

struct fy_pol_target {
	char *url;
	char *secret_dir;       /* one file per key (a mounted Secret), or NULL */
	char *secret_file;      /* KEY=VALUE lines, or NULL */
	char *key_prefix;       /* "copy-2.": PREFIX+KEY is read before KEY; or NULL */
	bool optional;          /* copies only */
	bool retention;         /* a retention is given */
	struct fy_forget_policy keep;
};

struct fy_pol_pvc {
	char *ns;
	char *name;             /* a glob (fnmatch), or NULL: every PVC of ns */
};

struct fy_policy {
	atomic_int refs;
	char *file;             /* the file's name in the directory */
	unsigned char digest[32]; /* SHA-256 of the file's bytes */
	char *name, *ns;        /* metadata.name, metadata.namespace (or NULL) */
	char **volume_ids;
	size_t nvolume_ids;
	struct fy_pol_pvc *pvcs;
	size_t npvcs;
	char *schedule_text;
	struct fy_cron schedule;
	int64_t jitter;         /* seconds */
	bool freeze;
	char *hook;             /* or NULL */
	struct fy_pol_target targets[FY_MAX_TARGETS];
	size_t ntargets;        /* [0] the primary, then the copies */
	bool prune;
	char *prune_text;
	struct fy_cron prune_schedule;
	bool drill;
	char *drill_text;
	struct fy_cron drill_schedule;
	size_t drill_target;    /* index into targets */
	char *drill_check;      /* or NULL */
	int64_t drill_check_timeout; /* seconds */
	bool drill_record;
	char *drill_scratch;    /* or NULL: /var/tmp */
	int64_t rpo, rto;       /* seconds; 0: no objective */
};

/* Parse one policy file (file: its name, for messages; text, len: its
 * bytes).  0 and *out (refs 1), or -errno with one line in err —
 * "FILE: FIELD: what is wrong (line N)" — and *kind the error's class
 * for the metric: "parse" (not YAML, not one document), "schema" (a field
 * missing, unknown, of the wrong type or value), "cron" (a schedule). */
int fy_policy_parse(const char *file, const char *text, size_t len, struct fy_policy **out, const char **kind,
		    char *err, size_t errlen);
struct fy_policy *fy_policy_ref(struct fy_policy *p);
void fy_policy_unref(struct fy_policy *p);

/* The secrets of a target, read now from its file or directory: the keys
 * of a snapshot class's secret (password, AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).  0, or -errno with one line
 * naming the file or directory and what is missing (never a value). */
#define FY_POL_SECRET_KEYS 4
struct fy_pol_secrets {
	char *val[FY_POL_SECRET_KEYS]; /* NULL: absent */
};
extern const char *const fy_pol_secret_keys[FY_POL_SECRET_KEYS];
int fy_pol_secrets_read(const struct fy_pol_target *t, struct fy_pol_secrets *s, char *err, size_t errlen);
void fy_pol_secrets_free(struct fy_pol_secrets *s);

#endif
