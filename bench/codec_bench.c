/* codec_bench: throughput of ferry's per-block codec path.
 *
 *   codec_bench [--threads N] [--level L] [--seconds S] [--stripe BYTES] [--json] [FILE]
 *
 * Per 4 MiB block it does what a backup does: fy_is_zero (a zero block is
 * skipped there and costs nothing more), then crc32c, the HMAC chunk id,
 * igzip deflate at level L (raw when it does not shrink) and AES-256-GCM
 * seal.  With FILE, up to 1 GiB of it is loaded into memory first and looped
 * over, so the disk is not measured.  Without FILE, 256 MiB of deterministic
 * data is made in memory, in stripes (1 MiB by default) cycling random,
 * zeros, repetitive text, varied text.  With 1 MiB stripes every 4 MiB block
 * holds some of each, so no block is all zero; --stripe 4M gives whole zero
 * blocks (a quarter of them).  MB/s are 10^6 bytes of input per second. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec/codec.h"

#define BLOCK ((size_t)4 << 20)
#define FILE_MAX ((size_t)1 << 30)
#define SYNTH_SIZE ((size_t)256 << 20)

struct block {
	const uint8_t *p;
	size_t len;
	int zero;
};

static struct block *blocks;
static size_t nblocks, nzero;
static int level = 1;
static uint8_t key[FY_KEY_LEN];
static atomic_int stop;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "codec_bench: %s: %s\n", what, strerror(err));
	exit(1);
}

static void *xaligned(size_t n)
{
	void *p = NULL;
	int err = posix_memalign(&p, 4096, n);

	if (err)
		die("posix_memalign", err);
	return p;
}

/* ---- data ------------------------------------------------------------- */

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *const vocab[] = {
	"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with",
	"block", "device", "snapshot", "backup", "restore", "chunk", "error",
	"read", "write", "offset", "length", "manifest", "store", "volume",
	"extent", "request", "queue", "latency", "sector", "journal", "inode",
	"commit", "flush", "barrier", "replica", "cluster", "tenant", "policy",
	"retention", "schedule", "checksum", "compress", "encrypt", "verify",
	"INFO", "WARN", "DEBUG", "ERROR", "user", "session", "kernel", "page",
	"cache", "buffer", "thread", "worker", "socket", "timeout", "retry",
};

/* varied: larger vocabulary use, numbers and hex ids (log lines);
 * repetitive: a handful of words. */
static void fill_text(uint8_t *p, size_t n, int varied)
{
	size_t nv = sizeof(vocab) / sizeof(vocab[0]);
	size_t i = 0;

	while (i < n) {
		char w[48];
		uint64_t r = rnd();
		int k;

		if (varied && r % 5 == 0)
			k = snprintf(w, sizeof(w), "%llu ", (unsigned long long)(r >> 44));
		else if (varied && r % 11 == 0)
			k = snprintf(w, sizeof(w), "id=%08llx ", (unsigned long long)(r >> 32));
		else if (r % 17 == 0)
			k = snprintf(w, sizeof(w), ".\n");
		else
			k = snprintf(w, sizeof(w), "%s ", vocab[(r >> 8) % (varied ? nv : 8)]);
		for (int j = 0; j < k && i < n; j++)
			p[i++] = (uint8_t)w[j];
	}
}

static uint8_t *make_synthetic(size_t size, size_t stripe)
{
	uint8_t *d = xaligned(size);

	for (size_t off = 0, s = 0; off < size; off += stripe, s++) {
		size_t n = size - off < stripe ? size - off : stripe;

		switch (s % 4) {
		case 0:
			for (size_t i = 0; i + 8 <= n; i += 8) {
				uint64_t v = rnd();

				memcpy(d + off + i, &v, 8);
			}
			break;
		case 1:
			memset(d + off, 0, n);
			break;
		case 2:
			fill_text(d + off, n, 0);
			break;
		case 3:
			fill_text(d + off, n, 1);
			break;
		}
	}
	return d;
}

static uint8_t *load_file(const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY);
	uint8_t *d = xaligned(FILE_MAX);
	size_t got = 0;

	if (fd < 0)
		die(path, errno);
	while (got < FILE_MAX) {
		ssize_t r = read(fd, d + got, FILE_MAX - got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			die(path, errno);
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (got == 0) {
		fprintf(stderr, "codec_bench: %s: empty\n", path);
		exit(1);
	}
	*size = got;
	return d;
}

static void make_blocks(const uint8_t *d, size_t size)
{
	nblocks = (size + BLOCK - 1) / BLOCK;
	blocks = calloc(nblocks, sizeof(*blocks));
	if (!blocks)
		die("calloc", ENOMEM);
	for (size_t i = 0; i < nblocks; i++) {
		blocks[i].p = d + i * BLOCK;
		blocks[i].len = size - i * BLOCK < BLOCK ? size - i * BLOCK : BLOCK;
		blocks[i].zero = fy_is_zero(blocks[i].p, blocks[i].len);
		nzero += blocks[i].zero;
	}
}

/* ---- the per-block path ---------------------------------------------- */

struct worker {
	pthread_t th;
	size_t first;
	uint8_t *zbuf, *sbuf;
	uint64_t in_bytes, data_bytes, stored_bytes, nblk;
	double end;
	int err;
};

static pthread_barrier_t start_bar;

/* Returns bytes stored for the block (0 for a zero block) or -errno. */
static ssize_t do_block(const struct block *b, uint8_t *zbuf, uint8_t *sbuf)
{
	uint8_t id[FY_ID_LEN];
	const uint8_t *src = b->p;
	size_t slen = b->len;
	ssize_t zl;
	volatile uint32_t crc;
	int ret;

	if (fy_is_zero(b->p, b->len))
		return 0;
	crc = fy_crc32c(0, b->p, b->len);
	(void)crc;
	ret = fy_chunk_id(key, b->p, b->len, id);
	if (ret)
		return ret;
	zl = fy_deflate(level, b->p, b->len, zbuf, BLOCK);
	if (zl >= 0) {
		src = zbuf;
		slen = (size_t)zl;
	} else if (zl != -ENOSPC) {
		return zl;
	}
	ret = fy_seal(key, id, sizeof(id), src, slen, sbuf);
	if (ret)
		return ret;
	return (ssize_t)(slen + FY_SEAL_OVERHEAD);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	size_t i = w->first;

	pthread_barrier_wait(&start_bar);
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		const struct block *b = &blocks[i];
		ssize_t r = do_block(b, w->zbuf, w->sbuf);

		if (r < 0) {
			w->err = (int)-r;
			break;
		}
		w->in_bytes += b->len;
		w->nblk++;
		if (!b->zero)
			w->data_bytes += b->len;
		w->stored_bytes += (uint64_t)r;
		if (++i == nblocks)
			i = 0;
	}
	w->end = now();
	return NULL;
}

/* ---- single-thread stages -------------------------------------------- */

enum stage { ST_ZERO, ST_CRC, ST_HMAC, ST_DEFLATE, ST_SEAL, ST_N };
static const char *const stage_name[ST_N] = { "is_zero", "crc32c", "hmac", "deflate", "seal" };

/* MB/s of one stage over the non-zero blocks (is_zero: over an all-zero
 * block, its full-scan worst case). */
static double run_stage(enum stage st, double secs, uint8_t *zbuf, uint8_t *sbuf, const uint8_t *zeros)
{
	uint64_t bytes = 0;
	size_t i = 0;
	double t0 = now(), t;

	do {
		for (int k = 0; k < 4; k++) {
			const struct block *b;
			uint8_t id[FY_ID_LEN];
			volatile uint32_t sink;
			int ret = 0;

			if (st == ST_ZERO) {
				sink = (uint32_t)fy_is_zero(zeros, BLOCK);
				bytes += BLOCK;
				continue;
			}
			do {
				b = &blocks[i];
				i = (i + 1) % nblocks;
			} while (b->zero);
			switch (st) {
			case ST_CRC:
				sink = fy_crc32c(0, b->p, b->len);
				break;
			case ST_HMAC:
				ret = fy_chunk_id(key, b->p, b->len, id);
				break;
			case ST_DEFLATE: {
				ssize_t zl = fy_deflate(level, b->p, b->len, zbuf, BLOCK);

				ret = zl == -ENOSPC ? 0 : zl < 0 ? (int)zl : 0;
				break;
			}
			case ST_SEAL:
				ret = fy_seal(key, NULL, 0, b->p, b->len, sbuf);
				break;
			default:
				break;
			}
			(void)sink;
			if (ret < 0)
				die(stage_name[st], -ret);
			bytes += b->len;
		}
		t = now();
	} while (t - t0 < secs);
	return (double)bytes / (t - t0) / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: codec_bench [--threads N] [--level 0-3] [--seconds S] "
			"[--stripe BYTES[K|M]] [--json] [FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	double seconds = 3;
	size_t stripe = (size_t)1 << 20, size;
	int json = 0;
	const char *file = NULL;
	uint8_t *data, *zeros, *zbuf, *sbuf;
	double stage_mbps[ST_N], t0, t1 = 0, stage_secs;
	struct worker *w;
	uint64_t in = 0, dat = 0, stored = 0, nblk = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			nthreads = atol(argv[++i]);
		} else if (!strcmp(argv[i], "--level") && i + 1 < argc) {
			level = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			seconds = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--stripe") && i + 1 < argc) {
			char *end;

			stripe = strtoull(argv[++i], &end, 0);
			if (*end == 'K' || *end == 'k')
				stripe <<= 10;
			else if (*end == 'M' || *end == 'm')
				stripe <<= 20;
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (argv[i][0] == '-' || file) {
			usage();
		} else {
			file = argv[i];
		}
	}
	if (nthreads < 1 || nthreads > 1024 || level < 0 || level > 3 || seconds <= 0 || stripe == 0)
		usage();

	if (file) {
		data = load_file(file, &size);
	} else {
		size = SYNTH_SIZE;
		data = make_synthetic(size, stripe);
	}
	make_blocks(data, size);
	if (fy_random(key, sizeof(key)))
		die("fy_random", EIO);
	zeros = xaligned(BLOCK);
	memset(zeros, 0, BLOCK);
	zbuf = xaligned(BLOCK);
	sbuf = xaligned(BLOCK + FY_SEAL_OVERHEAD);

	stage_secs = seconds / 4 < 0.5 ? 0.5 : seconds / 4;
	for (int st = 0; st < ST_N; st++) {
		if (st != ST_ZERO && nzero == nblocks)
			stage_mbps[st] = 0;
		else
			stage_mbps[st] = run_stage(st, stage_secs, zbuf, sbuf, zeros);
	}

	w = calloc((size_t)nthreads, sizeof(*w));
	if (!w)
		die("calloc", ENOMEM);
	pthread_barrier_init(&start_bar, NULL, (unsigned)nthreads + 1);
	for (long i = 0; i < nthreads; i++) {
		int err;

		w[i].first = (size_t)i * nblocks / (size_t)nthreads;
		w[i].zbuf = xaligned(BLOCK);
		w[i].sbuf = xaligned(BLOCK + FY_SEAL_OVERHEAD);
		err = pthread_create(&w[i].th, NULL, worker_main, &w[i]);
		if (err)
			die("pthread_create", err);
	}
	pthread_barrier_wait(&start_bar);
	t0 = now();
	{
		struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };

		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
	}
	atomic_store(&stop, 1);
	for (long i = 0; i < nthreads; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].err)
			die("block path", w[i].err);
		in += w[i].in_bytes;
		dat += w[i].data_bytes;
		stored += w[i].stored_bytes;
		nblk += w[i].nblk;
		if (w[i].end > t1)
			t1 = w[i].end;
	}

	{
		double mbps = (double)in / (t1 - t0) / 1e6;
		double ratio = dat ? (double)stored / (double)dat : 0;
		double ratio_all = in ? (double)stored / (double)in : 0;

		if (json) {
			printf("{\"threads\":%ld,\"level\":%d,\"mbps\":%.1f,\"stages\":{", nthreads, level, mbps);
			for (int st = 0; st < ST_N; st++)
				printf("%s\"%s\":%.1f", st ? "," : "", stage_name[st], stage_mbps[st]);
			printf("},\"ratio\":%.4f,\"ratio_all\":%.4f,\"seconds\":%.2f,\"blocks\":%llu,"
			       "\"data\":\"%s\",\"data_mib\":%.1f,\"zero_blocks\":%zu,\"dataset_blocks\":%zu}\n",
			       ratio, ratio_all, t1 - t0, (unsigned long long)nblk,
			       file ? "file" : "synthetic", (double)size / (1 << 20), nzero, nblocks);
		} else {
			printf("data: %s, %.1f MiB in %zu blocks of 4 MiB, %zu all-zero",
			       file ? file : "synthetic", (double)size / (1 << 20), nblocks, nzero);
			if (!file)
				printf(" (stripes of %zu bytes: random, zero, repetitive text, varied text)", stripe);
			printf("\nsingle thread, MB/s:");
			for (int st = 0; st < ST_N; st++)
				printf("  %s %.0f", stage_name[st], stage_mbps[st]);
			printf("\n");
			printf("per-block path (is_zero, crc32c, hmac, deflate level %d, seal), %ld thread%s:\n"
			       "  %.0f MB/s input (%.0f MB/s per thread), %llu blocks in %.2f s\n"
			       "  stored/input %.3f for non-zero blocks, %.3f overall (zero blocks store nothing)\n",
			       level, nthreads, nthreads == 1 ? "" : "s", mbps, mbps / (double)nthreads,
			       (unsigned long long)nblk, t1 - t0, ratio, ratio_all);
		}
	}
	for (long i = 0; i < nthreads; i++) {
		free(w[i].zbuf);
		free(w[i].sbuf);
	}
	free(w);
	pthread_barrier_destroy(&start_bar);
	free(zeros);
	free(zbuf);
	free(sbuf);
	free(blocks);
	free(data);
	return 0;
}
