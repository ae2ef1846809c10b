/*
 * gen_mixed — write a deterministic mixed-content disk image for bench/run.sh.
 *
 * The image is made of 1 MiB stripes in a repeating cycle of four:
 *
 *   stripe % 4 == 0   random bytes (incompressible)
 *   stripe % 4 == 1   text-like (compressible)
 *   stripe % 4 == 2   zeros, written as real data (no holes)
 *   stripe % 4 == 3   text-like (compressible)
 *
 * so a quarter is random, a quarter zeros and half text. Every stripe is
 * generated from (seed, stripe index) alone, so the same seed and size always
 * give the same bytes, and no two non-zero stripes share content (dedup can
 * only find the zero stripes).
 *
 * usage: gen_mixed --size BYTES [--seed N] --out PATH
 *        BYTES may carry a K/M/G/T suffix (powers of 1024).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STRIPE (1u << 20)
#define NWORDS 2048
#define MAXWORD 12

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t a, uint64_t b)
{
	uint64_t x = a * 0xd1342543de82ef95ULL + b;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

static char words[NWORDS][MAXWORD + 1];
static unsigned char wlen[NWORDS];

/* A fixed vocabulary of pronounceable pseudo-words, built from the seed. */
static void build_vocab(uint64_t seed)
{
	static const char *cons[] = { "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p",
				      "r", "s", "t", "v", "w", "st", "tr", "ch", "th", "pl", "gr" };
	static const char *vow[] = { "a", "e", "i", "o", "u", "ea", "ou", "io", "ai" };
	struct rng r;
	rng_seed(&r, seed, 0xC0FFEEULL);
	for (int i = 0; i < NWORDS; i++) {
		/* short words are common: 1..4 syllables, skewed low */
		int syl = 1 + (int)((rng_next(&r) % 4) * (rng_next(&r) % 4) / 3);
		size_t n = 0;
		for (int k = 0; k < syl; k++) {
			const char *c = cons[rng_next(&r) % (sizeof cons / sizeof cons[0])];
			const char *v = vow[rng_next(&r) % (sizeof vow / sizeof vow[0])];
			size_t lc = strlen(c), lv = strlen(v);
			if (n + lc + lv > MAXWORD)
				break;
			memcpy(words[i] + n, c, lc);
			n += lc;
			memcpy(words[i] + n, v, lv);
			n += lv;
		}
		words[i][n] = '\0';
		wlen[i] = (unsigned char)n;
	}
}

static void fill_random(struct rng *r, unsigned char *buf, size_t len)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = rng_next(r);
		memcpy(buf + i, &v, 8);
	}
}

/* Lines of 40..100 characters of sentences made of vocabulary words. */
static void fill_text(struct rng *r, unsigned char *buf, size_t len)
{
	size_t pos = 0, line = 0, linemax = 40 + rng_next(r) % 61;
	int start = 1;
	while (pos < len) {
		uint64_t v = rng_next(r);
		/* Zipf-like skew: the product of two uniforms favours low indexes. */
		unsigned a = (unsigned)(v & 0x7ff), b = (unsigned)((v >> 11) & 0x7ff);
		unsigned idx = (unsigned)(((uint64_t)a * b) >> 11);
		unsigned punct = (unsigned)((v >> 22) & 0x1f);
		char w[MAXWORD + 3];
		size_t n = wlen[idx];
		memcpy(w, words[idx], n);
		if (start && n > 0)
			w[0] = (char)(w[0] - 'a' + 'A');
		start = 0;
		if (punct == 0) {
			w[n++] = '.';
			start = 1;
		} else if (punct == 1) {
			w[n++] = ',';
		}
		if (line + n + 1 > linemax) {
			w[n++] = '\n';
			line = 0;
			linemax = 40 + rng_next(r) % 61;
		} else {
			w[n++] = ' ';
			line += n;
		}
		if (n > len - pos)
			n = len - pos;
		memcpy(buf + pos, w, n);
		pos += n;
	}
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	int shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: gen_mixed --size BYTES[K|M|G|T] [--seed N] --out PATH\n");
}

int main(int argc, char **argv)
{
	uint64_t size = 0, seed = 1;
	const char *out = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			if (parse_size(argv[++i], &size) < 0) {
				fprintf(stderr, "gen_mixed: bad size '%s'\n", argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			seed = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else {
			usage();
			return 2;
		}
	}
	if (!out || size == 0) {
		usage();
		return 2;
	}

	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "gen_mixed: open %s: %s\n", out, strerror(errno));
		return 1;
	}
	unsigned char *buf = aligned_alloc(4096, STRIPE);
	if (!buf) {
		fprintf(stderr, "gen_mixed: out of memory\n");
		return 1;
	}
	build_vocab(seed);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t nstripes = (size + STRIPE - 1) / STRIPE;
	for (uint64_t i = 0; i < nstripes; i++) {
		size_t len = STRIPE;
		if ((i + 1) * STRIPE > size)
			len = (size_t)(size - i * STRIPE);
		struct rng r;
		rng_seed(&r, seed, i + 1);
		switch (i % 4) {
		case 0: fill_random(&r, buf, STRIPE); break;
		case 2: memset(buf, 0, STRIPE); break;
		default: fill_text(&r, buf, STRIPE); break;
		}
		size_t done = 0;
		while (done < len) {
			ssize_t n = write(fd, buf + done, len - done);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				fprintf(stderr, "gen_mixed: write %s: %s\n", out, strerror(errno));
				return 1;
			}
			done += (size_t)n;
		}
	}
	/* fsync fails with EINVAL on /dev/null and pipes: only files need it. */
	if ((fsync(fd) < 0 && errno != EINVAL) || close(fd) < 0) {
		fprintf(stderr, "gen_mixed: fsync/close %s: %s\n", out, strerror(errno));
		return 1;
	}
	free(buf);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr, "gen_mixed: wrote %" PRIu64 " bytes (seed %" PRIu64 ") to %s in %.1f s\n",
		size, seed, out, s);
	return 0;
}
