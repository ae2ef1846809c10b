/* check: the repository's structure, and with read_data every byte.
 *
 * 1. every manifest is read and verified (AEAD tag, crc, block table);
 * 2. every chunk a manifest names exists in the store;
 * 3. with read_data, every named chunk (or those of a subset: a slice, a
 *    random share) is fetched and verified exactly as a restore would (tag,
 *    inflate, crc32c, HMAC id), on several threads.
 * Each problem is reported as one line naming the snapshot or chunk. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ferry.h"
#include "idset.h"

struct check {
	struct fy_repo *repo;
	const struct fy_check_opts *o;
	struct fy_check_subset subset; /* o->subset, with its seed drawn */
	struct fy_idset referenced; /* value: index of a snapshot that names the chunk */
	struct fy_idset present;
	uint8_t *snap_ids;
	pthread_mutex_t lock;
	size_t pos;                 /* read_data cursor over referenced */
	long problems;
	struct fy_check_result *res;
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->lock);
	c->problems++;
	c->o->report(line, c->o->arg);
	pthread_mutex_unlock(&c->lock);
}

/* --- --read-data-subset ------------------------------------------------- */

/* Digits only, at least one, no sign or space; -ERANGE past UINT64_MAX. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (!len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		unsigned d = (unsigned)(s[i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int fy_check_subset_parse(const char *spec, struct fy_check_subset *s, char *err, size_t errlen)
{
	size_t len = strlen(spec);
	const char *slash = memchr(spec, '/', len);
	char shown[200];

	memset(s, 0, sizeof(*s));
	fy_escape(spec, shown, sizeof(shown));
	if (len && spec[len - 1] == '%') {
		size_t digits = 0, dots = 0;

		for (size_t i = 0; i + 1 < len; i++) {
			if (isdigit((unsigned char)spec[i]))
				digits++;
			else if (spec[i] == '.')
				dots++;
			else
				goto neither;
		}
		if (!digits || dots > 1)
			goto neither;
		char *end;
		double p = strtod(spec, &end); /* only digits and a dot: no sign, exponent, inf or nan */

		if (end != spec + len - 1 || !(p > 0 && p <= 100)) {
			snprintf(err, errlen, "'%s' is no share of the chunks: P%% wants 0 < P <= 100", shown);
			return -EINVAL;
		}
		s->kind = FY_SUBSET_PERCENT;
		s->percent = p;
		return 0;
	}
	if (slash) {
		int rn = parse_u64(spec, (size_t)(slash - spec), &s->n);
		int rm = parse_u64(slash + 1, len - (size_t)(slash - spec) - 1, &s->m);

		if (rn == -EINVAL || rm == -EINVAL)
			goto neither;
		if (rn == -ERANGE || rm == -ERANGE) {
			snprintf(err, errlen, "'%s' is no slice: a number is too large (N/M wants 1 <= N <= M <= %llu)",
				 shown, (unsigned long long)UINT64_MAX);
			return -EINVAL;
		}
		if (s->m < 1 || s->n < 1 || s->n > s->m) {
			snprintf(err, errlen, "'%s' is no slice: N/M wants 1 <= N <= M", shown);
			return -EINVAL;
		}
		s->kind = FY_SUBSET_SLICE;
		return 0;
	}
neither:
	memset(s, 0, sizeof(*s));
	snprintf(err, errlen, "'%s' is neither N/M (the N-th of M slices, 1 <= N <= M) nor P%% (0 < P <= 100)", shown);
	return -EINVAL;
}

const char *fy_check_subset_str(const struct fy_check_subset *s, char *buf, size_t len)
{
	switch (s->kind) {
	case FY_SUBSET_SLICE:
		snprintf(buf, len, "%llu/%llu", (unsigned long long)s->n, (unsigned long long)s->m);
		break;
	case FY_SUBSET_PERCENT:
		snprintf(buf, len, "%.15g%%", s->percent);
		break;
	default:
		snprintf(buf, len, "all");
	}
	return buf;
}

/* splitmix64's finaliser: a bijection that spreads every input bit. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* The one place that chooses what check reads.  A chunk id is an HMAC under
 * the repository's key, so its leading 8 bytes are a uniform 64-bit value
 * that depends on that chunk alone: value mod m is its slice, which neither
 * the set of other chunks nor the order they are listed in can change.  A
 * later repository format that stores chunks in packs would call this with
 * the pack's id instead, and read whole packs.  A percentage draws from a
 * hash of the id and the run's seed: independent per chunk, new per seed. */
bool fy_check_subset_pick(const struct fy_check_subset *s, const uint8_t id[FY_ID_LEN])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | id[i];
	switch (s->kind) {
	case FY_SUBSET_SLICE:
		return v % s->m == s->n - 1;
	case FY_SUBSET_PERCENT: {
		const double two64 = 18446744073709551616.0;
		double t = s->percent / 100.0 * two64;

		if (t >= two64)
			return true;
		return mix64(v ^ mix64(s->seed)) < (uint64_t)t;
	}
	default:
		return true;
	}
}

/* A chunk is present only under its own key, where restore looks for it;
 * a chunk name anywhere else under chunks/ is a problem of its own. */
static int collect_present(const char *key, uint64_t size, void *arg)
{
	struct check *c = arg;
	uint8_t id[FY_ID_LEN];
	char want[80], shown[300];

	switch (fy_chunk_key_id(key, id)) {
	case 1:
		/* The value: the object's size, for --read-data's progress. */
		return fy_idset_add(&c->present, id, size > UINT32_MAX ? UINT32_MAX : (uint32_t)size, NULL) < 0 ?
		       -ENOMEM : 0;
	case 0:
		fy_chunk_key(id, want);
		problem(c, "chunk object %s is misplaced: a chunk with this id belongs at %s, where restore looks "
			"for it", fy_escape(key, shown, sizeof(shown)), want);
		return 0;
	}
	return 0;
}

static void *read_worker(void *arg)
{
	struct check *c = arg;
	uint32_t cap = FY_MAX_CHUNK;
	uint8_t *plain = malloc(cap), *scratch = malloc(cap);

	if (!plain || !scratch) {
		problem(c, "out of memory");
		goto out;
	}
	for (;;) {
		uint8_t id[FY_ID_LEN];
		uint32_t snap, stored = 0;
		char err[256];
		bool chosen;

		pthread_mutex_lock(&c->lock);
		const uint8_t *p = fy_idset_next(&c->referenced, &c->pos, &snap);

		if (p)
			memcpy(id, p, FY_ID_LEN);
		/* missing: already reported; or not in the subset */
		chosen = p && fy_idset_get(&c->present, id, &stored) && fy_check_subset_pick(&c->subset, id);
		if (chosen && c->o->chunk_read)
			c->o->chunk_read(id, c->o->arg); /* one at a time, as report() */
		pthread_mutex_unlock(&c->lock);
		if (!p)
			break;
		if (!chosen)
			continue;
		ssize_t n = fy_chunk_read(c->repo, id, plain, cap, scratch, FY_VERIFY_ID, NULL, err, sizeof(err));

		if (c->o->progress)
			atomic_fetch_add(&c->o->progress->done, stored);
		if (n < 0) {
			char hex[2 * FY_SNAP_ID_LEN + 1];

			fy_hex(c->snap_ids + (size_t)snap * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN, hex);
			problem(c, "%s (named by snapshot %s)", err, hex);
			continue;
		}
		pthread_mutex_lock(&c->lock);
		c->res->chunks_read++;
		c->res->bytes_read += (uint64_t)n;
		pthread_mutex_unlock(&c->lock);
	}
out:
	free(plain);
	free(scratch);
	return NULL;
}

long fy_check(struct fy_repo *r, const struct fy_check_opts *o, struct fy_check_result *res, char *err,
	      size_t errlen)
{
	struct check c = { .repo = r, .o = o, .subset = o->subset, .res = res };
	struct fy_progress *progress = o->progress;
	size_t nsnaps = 0;
	long rc;

	memset(res, 0, sizeof(*res));
	pthread_mutex_init(&c.lock, NULL);
	if (o->read_data && c.subset.kind == FY_SUBSET_PERCENT && !c.subset.have_seed) {
		/* A new sample each run: the seed from the kernel's generator. */
		ssize_t got;

		do
			got = getrandom(&c.subset.seed, sizeof(c.subset.seed), 0);
		while (got < 0 && errno == EINTR);
		if (got != (ssize_t)sizeof(c.subset.seed)) {
			rc = got < 0 ? -errno : -EIO;
			snprintf(err, errlen, "cannot draw a random seed for the sample: getrandom: %s", strerror(-(int)rc));
			goto out;
		}
	}
	res->seed = c.subset.seed;
	if (fy_idset_init(&c.referenced, 4096) < 0 || fy_idset_init(&c.present, 4096) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (progress)
		atomic_store(&progress->phase, "reading the manifests");
	rc = fy_snapshot_ids(r, &c.snap_ids, &nsnaps, err, errlen);
	if (rc < 0)
		goto out;
	res->snapshots = nsnaps;
	for (size_t i = 0; i < nsnaps; i++) {
		Ferry__V1__Manifest *m;
		char e2[320];

		if (fy_manifest_read(r, c.snap_ids + i * FY_SNAP_ID_LEN, &m, e2, sizeof(e2)) < 0) {
			problem(&c, "%s", e2);
			continue;
		}
		size_t n = m->chunk_ids.len / FY_ID_LEN;
		static const uint8_t zero_id[FY_ID_LEN];

		for (size_t b = 0; b < n; b++) {
			const uint8_t *id = m->chunk_ids.data + b * FY_ID_LEN;

			if (memcmp(id, zero_id, FY_ID_LEN) != 0 && fy_idset_add(&c.referenced, id, (uint32_t)i, NULL) < 0) {
				ferry__v1__manifest__free_unpacked(m, NULL);
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
				goto out;
			}
		}
		ferry__v1__manifest__free_unpacked(m, NULL);
	}
	res->chunks_referenced = c.referenced.n;
	if (progress)
		atomic_store(&progress->phase, "listing the chunks");
	rc = fy_repo_list(r, "chunks/", collect_present, &c, err, errlen);
	if (rc < 0)
		goto out;
	res->chunks_present = c.present.n;

	size_t pos = 0, referenced_present = 0;
	uint32_t snap;
	const uint8_t *id;

	while ((id = fy_idset_next(&c.referenced, &pos, &snap)) != NULL) {
		char hex[2 * FY_ID_LEN + 1], shex[2 * FY_SNAP_ID_LEN + 1];

		uint32_t stored;

		if (fy_idset_get(&c.present, id, &stored)) {
			referenced_present++;
			res->stored_referenced += stored;
			if (o->read_data && fy_check_subset_pick(&c.subset, id)) {
				res->chunks_selected++;
				res->stored_selected += stored;
				if (progress)
					atomic_fetch_add(&progress->total, stored);
			}
			continue;
		}
		fy_hex(id, FY_ID_LEN, hex);
		fy_hex(c.snap_ids + (size_t)snap * FY_SNAP_ID_LEN, FY_SNAP_ID_LEN, shex);
		problem(&c, "chunk %s is missing (named by snapshot %s)", hex, shex);
	}
	res->chunks_unreferenced = c.present.n - referenced_present;

	if (o->read_data) {
		unsigned n = o->threads ? o->threads : 2 * fy_online_cores();

		if (progress)
			atomic_store(&progress->phase, "reading the chunks");
		pthread_t tids[64];
		unsigned started = 0;

		if (n > 64)
			n = 64;
		for (; started < n; started++)
			if (pthread_create(&tids[started], NULL, read_worker, &c) != 0)
				break;
		if (started == 0) {
			snprintf(err, errlen, "cannot start threads");
			rc = -EAGAIN;
			goto out;
		}
		for (unsigned i = 0; i < started; i++)
			pthread_join(tids[i], NULL);
	}
	rc = c.problems;
out:
	fy_idset_free(&c.referenced);
	fy_idset_free(&c.present);
	free(c.snap_ids);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
