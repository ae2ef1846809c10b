/* Which snapshot an argument names: an id, a unique prefix or "latest",
 * among the snapshots of a volume and tags (ferry.h, fy_snapshot_select). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

#define LIST_MAX 8 /* matches named in one error line */

bool fy_snapshot_arg_valid(const char *arg)
{
	size_t len = arg ? strlen(arg) : 0;

	if (arg && !strcmp(arg, "latest"))
		return true;
	return len >= 4 && len <= 2 * FY_SNAP_ID_LEN && strspn(arg, "0123456789abcdef") == len;
}

/* Append s to out (a line being built), control characters shown as '?'. */
static void put(char *out, size_t len, const char *s)
{
	size_t n = strlen(out);

	for (; s && *s && n + 1 < len; s++)
		out[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
	if (n < len)
		out[n] = '\0';
}

static bool has_label(const Ferry__V1__Manifest *m, const struct fy_label *l)
{
	for (size_t i = 0; i < m->n_labels; i++)
		if (!strcmp(m->labels[i]->key, l->key) && !strcmp(m->labels[i]->value, l->value))
			return true;
	return false;
}

/* NULL when m passes the filter, else why not (a label it lacks, or its volume). */
static const char *misfit(const Ferry__V1__Manifest *m, const struct fy_snap_filter *f, const struct fy_label **lack)
{
	*lack = NULL;
	if (!f)
		return NULL;
	if (f->volume && strcmp(m->volume, f->volume))
		return "volume";
	for (size_t i = 0; i < f->nlabels; i++)
		if (!has_label(m, &f->labels[i])) {
			*lack = &f->labels[i];
			return "label";
		}
	return NULL;
}

bool fy_snap_filter_match(const Ferry__V1__Manifest *m, const struct fy_snap_filter *f)
{
	const struct fy_label *lack;

	return !misfit(m, f, &lack);
}

/* " of volume V with tags k=v,..." for messages. */
static void describe_filter(const struct fy_snap_filter *f, char *out, size_t len)
{
	out[0] = '\0';
	if (!f)
		return;
	if (f->volume) {
		put(out, len, " of volume ");
		put(out, len, f->volume);
	}
	for (size_t i = 0; i < f->nlabels; i++) {
		put(out, len, i ? "," : " with tag ");
		put(out, len, f->labels[i].key);
		put(out, len, "=");
		put(out, len, f->labels[i].value);
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_id(const void *a, const void *b)
{
	return memcmp(a, b, FY_SNAP_ID_LEN);
}

/* "latest": the newest readable snapshot the filter lets through. */
static int select_latest(struct fy_repo *r, const struct fy_snap_filter *f, const uint8_t *ids, size_t n,
			 uint8_t id[FY_SNAP_ID_LEN], Ferry__V1__Manifest **keep, char *err, size_t errlen)
{
	Ferry__V1__Manifest *best = NULL;
	char **vols = NULL, what[300];
	size_t nvols = 0;
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		Ferry__V1__Manifest *m;
		const struct fy_label *lack;
		char e2[256];
		bool seen = false;

		/* An unreadable manifest is no candidate; check reports it. */
		if (fy_manifest_read(r, ids + i * FY_SNAP_ID_LEN, &m, e2, sizeof(e2)) < 0)
			continue;
		if (misfit(m, f, &lack)) {
			ferry__v1__manifest__free_unpacked(m, NULL);
			continue;
		}
		for (size_t v = 0; v < nvols && !seen; v++)
			seen = !strcmp(vols[v], m->volume);
		if (!seen) {
			char **nv = realloc(vols, (nvols + 1) * sizeof(*nv));

			if (!nv || !(nv[nvols] = strdup(m->volume))) {
				vols = nv ? nv : vols;
				rc = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				ferry__v1__manifest__free_unpacked(m, NULL);
				break;
			}
			vols = nv;
			nvols++;
		}
		if (!best || m->created_unix_nano > best->created_unix_nano) {
			if (best)
				ferry__v1__manifest__free_unpacked(best, NULL);
			best = m;
			memcpy(id, ids + i * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN);
		} else {
			ferry__v1__manifest__free_unpacked(m, NULL);
		}
	}
	describe_filter(f, what, sizeof(what));
	if (rc == 0 && !best) {
		snprintf(err, errlen, "no readable snapshot%s in %s", what, r->url);
		rc = -ENOENT;
	} else if (rc == 0 && nvols > 1 && !(f && f->volume)) {
		/* The newest of any volume is rarely what a restore wants. */
		char line[512] = "";

		qsort(vols, nvols, sizeof(*vols), by_name);

		snprintf(line, sizeof(line), "'latest' is ambiguous: the snapshots%s in %s belong to %zu volumes (", what,
			 r->url, nvols);
		for (size_t v = 0; v < nvols && v < LIST_MAX; v++) {
			put(line, sizeof(line), v ? ", " : "");
			put(line, sizeof(line), vols[v]);
		}
		put(line, sizeof(line), nvols > LIST_MAX ? ", ...)" : ")");
		snprintf(err, errlen, "%s: name one with --volume NAME", line);
		rc = -ENOTUNIQ;
	}
	for (size_t v = 0; v < nvols; v++)
		free(vols[v]);
	free(vols);
	if (rc == 0 && keep)
		*keep = best;
	else if (best)
		ferry__v1__manifest__free_unpacked(best, NULL);
	return rc;
}

int fy_snapshot_select(struct fy_repo *r, const char *arg, const struct fy_snap_filter *f,
		       uint8_t id[FY_SNAP_ID_LEN], Ferry__V1__Manifest **keep, char *err, size_t errlen)
{
	uint8_t *ids = NULL, *hit = NULL;
	size_t n = 0, nhit = 0, len;
	Ferry__V1__Manifest *m = NULL, *chosen = NULL;
	bool filtered = f && (f->volume || f->nlabels);
	int rc;

	if (keep)
		*keep = NULL;
	if (!fy_snapshot_arg_valid(arg)) {
		char shown[80] = "";

		put(shown, sizeof(shown), arg);
		snprintf(err, errlen, "'%s' is not a snapshot id (4 to 32 lower-case hex digits, or 'latest')", shown);
		return -EINVAL;
	}
	rc = fy_snapshot_ids(r, &ids, &n, err, errlen);
	if (rc < 0)
		return rc;
	if (!strcmp(arg, "latest")) {
		rc = select_latest(r, f, ids, n, id, keep, err, errlen);
		free(ids);
		return rc;
	}
	len = strlen(arg);
	hit = malloc((n ? n : 1) * FY_SNAP_ID_LEN);
	if (!hit) {
		free(ids);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		char hex[2 * FY_SNAP_ID_LEN + 1];

		fy_hex(ids + i * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN, hex);
		if (strncmp(hex, arg, len) == 0)
			memcpy(hit + nhit++ * FY_SNAP_ID_LEN, ids + i * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN);
	}
	free(ids);
	qsort(hit, nhit, FY_SNAP_ID_LEN, by_id);
	/* With a filter, a prefix names one of the snapshots it lets through. */
	size_t kept = 0, nfit_out = 0;
	const char *why = NULL;
	const struct fy_label *lack = NULL;
	char e2[400] = "", other_vol[128] = "", first_out[2 * FY_SNAP_ID_LEN + 1] = "";

	for (size_t i = 0; i < nhit; i++) {
		const uint8_t *h = hit + i * FY_SNAP_ID_LEN;

		if (filtered) {
			if (fy_manifest_read(r, h, &m, e2, sizeof(e2)) < 0)
				continue; /* e2 says why, if nothing else matches */
			const char *w = misfit(m, f, &lack);

			if (w) {
				if (!nfit_out++) {
					why = w;
					snprintf(other_vol, sizeof(other_vol), "%s", m->volume);
					fy_hex(h, FY_SNAP_ID_LEN, first_out);
				}
				ferry__v1__manifest__free_unpacked(m, NULL);
				m = NULL;
				continue;
			}
			if (!chosen) {
				chosen = m;
			} else {
				ferry__v1__manifest__free_unpacked(m, NULL);
			}
			m = NULL;
		}
		memmove(hit + kept++ * FY_SNAP_ID_LEN, h, FY_SNAP_ID_LEN);
	}
	nhit = kept;
	if (nhit == 0) {
		char what[300], shown[128] = "";

		describe_filter(f, what, sizeof(what));
		if (nfit_out == 1 && why && !strcmp(why, "volume")) {
			put(shown, sizeof(shown), other_vol);
			snprintf(err, errlen, "snapshot %.8s is of volume %s, not%s", first_out, shown, what);
		} else if (nfit_out == 1 && lack) {
			snprintf(err, errlen, "snapshot %.8s does not carry the tag%s", first_out, what);
		} else if (e2[0]) {
			snprintf(err, errlen, "%s", e2);
		} else {
			snprintf(err, errlen, "no snapshot %s%s in %s", arg, what, r->url);
		}
		rc = -ENOENT;
		goto out;
	}
	if (nhit > 1) {
		char line[600] = "";

		snprintf(line, sizeof(line), "snapshot prefix %s is ambiguous in %s: %zu snapshots match (", arg, r->url,
			 nhit);
		for (size_t i = 0; i < nhit && i < LIST_MAX; i++) {
			char hex[2 * FY_SNAP_ID_LEN + 1];
			Ferry__V1__Manifest *mm;

			fy_hex(hit + i * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN, hex);
			put(line, sizeof(line), i ? ", " : "");
			put(line, sizeof(line), hex);
			if (fy_manifest_read(r, hit + i * FY_SNAP_ID_LEN, &mm, e2, sizeof(e2)) == 0) {
				put(line, sizeof(line), " of ");
				put(line, sizeof(line), mm->volume);
				ferry__v1__manifest__free_unpacked(mm, NULL);
			}
		}
		put(line, sizeof(line), nhit > LIST_MAX ? ", ...)" : ")");
		snprintf(err, errlen, "%s: give more digits", line);
		rc = -ENOTUNIQ;
		goto out;
	}
	memcpy(id, hit, FY_SNAP_ID_LEN);
	if (keep && !chosen)
		rc = fy_manifest_read(r, id, &chosen, err, errlen);
	if (rc == 0 && keep) {
		*keep = chosen;
		chosen = NULL;
	}
out:
	if (chosen)
		ferry__v1__manifest__free_unpacked(chosen, NULL);
	free(hit);
	return rc;
}

int fy_snapshot_resolve(struct fy_repo *r, const char *arg, uint8_t id[FY_SNAP_ID_LEN], char *err, size_t errlen)
{
	return fy_snapshot_select(r, arg, NULL, id, NULL, err, errlen);
}
