/* Codec tests: every codec checked against an independent reader or a
 * published vector.  The random seed is printed; set FY_TEST_SEED to replay. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zlib.h>

#include "codec/codec.h"

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* Log-like text: words from a small vocabulary, numbers, newlines. */
static void fill_text(uint8_t *p, size_t n)
{
	static const char *const words[] = {
		"block", "device", "snapshot", "backup", "restore", "chunk", "the",
		"of", "and", "to", "error", "ok", "read", "write", "offset", "len",
		"manifest", "store", "seal", "ferry", "volume", "extent", "time",
	};
	size_t i = 0;

	while (i < n) {
		char w[32];
		uint64_t r = rnd();
		int k;

		if (r % 7 == 0)
			k = snprintf(w, sizeof(w), "%u ", (unsigned)(r >> 40) % 100000);
		else if (r % 13 == 0)
			k = snprintf(w, sizeof(w), "\n");
		else
			k = snprintf(w, sizeof(w), "%s ", words[(r >> 8) % (sizeof(words) / sizeof(words[0]))]);
		for (int j = 0; j < k && i < n; j++)
			p[i++] = (uint8_t)w[j];
	}
}

static void unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	assert_non_null(p);
	return p;
}

/* ---- CRC32C ----------------------------------------------------------- */

/* Bitwise reflected CRC32C, polynomial 0x82f63b78; standard pre/post inversion. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

static void test_crc_vectors(void **state)
{
	uint8_t b[32];

	(void)state;
	memset(b, 0, sizeof(b));
	assert_int_equal(fy_crc32c(0, b, 32), 0x8a9136aa);
	memset(b, 0xff, sizeof(b));
	assert_int_equal(fy_crc32c(0, b, 32), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)i;
	assert_int_equal(fy_crc32c(0, b, 32), 0x46dd794e);
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)(31 - i);
	assert_int_equal(fy_crc32c(0, b, 32), 0x113fdb5c);
	assert_int_equal(fy_crc32c(0, "123456789", 9), 0xe3069283);
	assert_int_equal(crc_ref(0, (const uint8_t *)"123456789", 9), 0xe3069283);
	assert_int_equal(fy_crc32c(0, b, 0), 0);
	assert_int_equal(fy_crc32c(0x12345678, b, 0), 0x12345678);
}

static void test_crc_chain(void **state)
{
	const char *s = "123456789";

	(void)state;
	for (size_t cut = 0; cut <= 9; cut++) {
		uint32_t c = fy_crc32c(0, s, cut);

		assert_int_equal(fy_crc32c(c, s + cut, 9 - cut), 0xe3069283);
	}
}

static void test_crc_random(void **state)
{
	enum { MAXN = 70000 };
	uint8_t *buf = xmalloc(MAXN + 64);

	(void)state;
	fill_random(buf, MAXN + 64);
	for (int iter = 0; iter < 300; iter++) {
		size_t off = rnd() % 64;
		size_t n = iter < 100 ? (size_t)iter : rnd() % MAXN;
		size_t cut = n ? rnd() % (n + 1) : 0;
		uint32_t want = crc_ref(0, buf + off, n);
		uint32_t c;

		assert_int_equal(fy_crc32c(0, buf + off, n), want);
		c = fy_crc32c(0, buf + off, cut);
		assert_int_equal(fy_crc32c(c, buf + off + cut, n - cut), want);
	}
	free(buf);
}

/* More than 2 GiB in one call: the int length of ISA-L must not truncate. */
static void test_crc_huge(void **state)
{
	size_t n = ((size_t)1 << 31) + 4096 + 5;
	uint8_t *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint32_t c = 0;
	size_t step = (size_t)64 << 20;

	(void)state;
	if (m == MAP_FAILED)
		skip();
	m[n - 1] = 0x5a; /* the last byte must count */
	m[12345] = 0xa5;
	for (size_t done = 0; done < n; done += step)
		c = fy_crc32c(c, m + done, n - done < step ? n - done : step);
	assert_int_equal(fy_crc32c(0, m, n), c);
	/* and the tail really is covered: the reference over the last bytes. */
	assert_int_equal(fy_crc32c(fy_crc32c(0, m, n - 1), m + n - 1, 1), c);
	m[n - 1] = 0;
	assert_int_not_equal(fy_crc32c(0, m, n), c);
	munmap(m, n);
}

/* ---- fy_is_zero ------------------------------------------------------- */

static void test_is_zero_edges(void **state)
{
	enum { MAXN = 600 };
	uint8_t *raw = xmalloc(MAXN + 128);

	(void)state;
	for (size_t off = 0; off < 64; off++) {
		for (size_t n = 0; n <= MAXN; n += (n < 200 ? 1 : 37)) {
			uint8_t *p = raw + off;

			/* nonzero guards around the range must not count */
			memset(raw, 0xee, MAXN + 128);
			memset(p, 0, n);
			assert_true(fy_is_zero(p, n));
			for (size_t i = 0; i < n; i++) {
				p[i] = (uint8_t)(1u << (i % 8));
				assert_false(fy_is_zero(p, n));
				p[i] = 0;
			}
		}
	}
	free(raw);
}

static void test_is_zero_block(void **state)
{
	size_t n = ((size_t)4 << 20) + 3;
	uint8_t *raw = calloc(1, n + 16);

	(void)state;
	assert_non_null(raw);
	for (size_t off = 0; off < 16; off += 5) {
		uint8_t *p = raw + off;
		size_t pos[] = { 0, 63, 64, 4095, n / 2, n - 257, n - 9, n - 1 };

		assert_true(fy_is_zero(p, n));
		for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
			p[pos[i]] = 0x80;
			assert_false(fy_is_zero(p, n));
			p[pos[i]] = 0;
		}
	}
	free(raw);
}

/* ---- deflate ---------------------------------------------------------- */

#define BLK ((size_t)4 << 20)

/* zlib, the independent reader: raw inflate must give back exactly in. */
static void zlib_check(const uint8_t *z, size_t zlen, const uint8_t *want, size_t n)
{
	z_stream s;
	uint8_t *out = xmalloc(n + 1);

	memset(&s, 0, sizeof(s));
	assert_int_equal(inflateInit2(&s, -15), Z_OK);
	s.next_in = (uint8_t *)z;
	s.avail_in = (uInt)zlen;
	s.next_out = out;
	s.avail_out = (uInt)n + 1;
	assert_int_equal(inflate(&s, Z_FINISH), Z_STREAM_END);
	assert_int_equal(s.total_out, n);
	assert_int_equal(s.avail_in, 0);
	assert_memory_equal(out, want, n);
	inflateEnd(&s);
	free(out);
}

static size_t zlib_deflate(int level, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	z_stream s;
	size_t len;

	memset(&s, 0, sizeof(s));
	assert_int_equal(deflateInit2(&s, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	s.next_in = (uint8_t *)in;
	s.avail_in = (uInt)n;
	s.next_out = out;
	s.avail_out = (uInt)cap;
	assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
	len = s.total_out;
	deflateEnd(&s);
	return len;
}

enum kind { K_TEXT, K_ZERO, K_MIXED };

static void fill_kind(enum kind k, uint8_t *p, size_t n)
{
	switch (k) {
	case K_TEXT:
		fill_text(p, n);
		break;
	case K_ZERO:
		memset(p, 0, n);
		break;
	case K_MIXED: /* quarters: text, random, zero, text */
		fill_text(p, n / 4);
		fill_random(p + n / 4, n / 4);
		memset(p + n / 2, 0, n / 4);
		fill_text(p + 3 * n / 4, n - 3 * n / 4);
		break;
	}
}

static void test_deflate_roundtrip(void **state)
{
	uint8_t *in = xmalloc(BLK), *z = xmalloc(BLK), *back = xmalloc(BLK);
	ssize_t len1_text = 0;

	(void)state;
	for (int k = K_TEXT; k <= K_MIXED; k++) {
		fill_kind(k, in, BLK);
		for (int level = 0; level <= 3; level++) {
			ssize_t zl = fy_deflate(level, in, BLK, z, BLK);

			assert_true(zl > 0);
			assert_true((size_t)zl < BLK);
			zlib_check(z, (size_t)zl, in, BLK);
			memset(back, 0xaa, BLK);
			assert_int_equal(fy_inflate(z, (size_t)zl, back, BLK), (ssize_t)BLK);
			assert_memory_equal(back, in, BLK);
			if (k == K_TEXT) {
				/* real compression at every level: text shrinks to well
				 * under half, and levels 2-3 are not worse than level 1
				 * (a half-initialised stream makes them much worse) */
				assert_true((size_t)zl < BLK / 2);
				if (level == 1)
					len1_text = zl;
				if (level >= 2)
					assert_true(zl <= len1_text + len1_text / 50);
			}
			if (k == K_ZERO)
				assert_true((size_t)zl < BLK / 500);
		}
	}
	/* odd sizes and unaligned buffers */
	for (int i = 0; i < 40; i++) {
		size_t n = 1 + rnd() % 200000, off = rnd() % 16;
		int level = (int)(rnd() % 4);
		ssize_t zl;

		fill_text(in + off, n);
		zl = fy_deflate(level, in + off, n, z + 1, BLK - 1);
		if (n < 64 && zl == -ENOSPC)
			continue; /* tiny text may not shrink */
		assert_true(zl > 0);
		zlib_check(z + 1, (size_t)zl, in + off, n);
		assert_int_equal(fy_inflate(z + 1, (size_t)zl, back + 3, n), (ssize_t)n);
		assert_memory_equal(back + 3, in + off, n);
	}
	free(in);
	free(z);
	free(back);
}

/* Noise (random bytes) among compressible data: the noisy 64 KiB segments
 * are stored, the rest deflated, all in one stream that zlib reads. */
static void test_deflate_noise(void **state)
{
	const size_t seg = (size_t)64 << 10;
	uint8_t *in = xmalloc(BLK), *z = xmalloc(BLK), *back = xmalloc(BLK);
	uint8_t *text = xmalloc(BLK);

	(void)state;
	fill_text(text, BLK);
	for (int round = 0; round < 24; round++) {
		/* a random layout of text, noise and zero runs, some not on
		 * segment boundaries, the last one cut short at a random size */
		size_t n = BLK - (round % 3 ? rnd() % seg : 0), noise_bytes = 0, off = 0;

		while (off < n) {
			size_t len = 1 + rnd() % (3 * seg);
			int kind = (int)(rnd() % 3);

			len = len > n - off ? n - off : len;
			if (kind == 0)
				memcpy(in + off, text + off, len);
			else if (kind == 1)
				fill_random(in + off, len), noise_bytes += len;
			else
				memset(in + off, 0, len);
			off += len;
		}
		for (int level = 0; level <= 3; level++) {
			ssize_t zl = fy_deflate(level, in, n, z, BLK);

			if (zl == -ENOSPC) {
				/* only when nearly all of it is noise */
				assert_true(noise_bytes > n - n / 8);
				continue;
			}
			assert_true(zl > 0);
			zlib_check(z, (size_t)zl, in, n);
			memset(back, 0xaa, n);
			assert_int_equal(fy_inflate(z, (size_t)zl, back, n), (ssize_t)n);
			assert_memory_equal(back, in, n);
			/* the compressible part was compressed */
			assert_true((size_t)zl < noise_bytes + (n - noise_bytes) / 2 + n / 100);
		}
	}
	/* Noise at both ends, text in between; and text at both ends. */
	fill_random(in, BLK);
	memcpy(in + 3 * seg, text, 5 * seg);
	for (int level = 0; level <= 3; level++) {
		ssize_t zl = fy_deflate(level, in, BLK, z, BLK);

		assert_true(zl > 0 && (size_t)zl < BLK - 5 * seg / 2);
		zlib_check(z, (size_t)zl, in, BLK);
	}
	memcpy(in, text, BLK);
	fill_random(in + seg, BLK - 2 * seg);
	for (int level = 0; level <= 3; level++) {
		ssize_t zl = fy_deflate(level, in, BLK, z, BLK);

		assert_true(zl > 0 && (size_t)zl < BLK - seg);
		zlib_check(z, (size_t)zl, in, BLK);
	}
	/* Random bytes that repeat are not noise: one random 4 KiB block over
	 * and over (a volume's copies of one block), or random bytes with a
	 * run of zeros in every segment. */
	for (size_t off = 0; off < BLK; off += 4096)
		if (off == 0)
			fill_random(in, 4096);
		else
			memcpy(in + off, in, 4096);
	assert_true((size_t)fy_deflate(1, in, BLK, z, BLK) < BLK / 4); /* igzip-1: ~11% */
	fill_random(in, BLK);
	for (size_t off = 0; off < BLK; off += seg)
		memset(in + off + 8192, 0, 2048);
	{
		ssize_t zl = fy_deflate(1, in, BLK, z, BLK);

		assert_true(zl > 0 && (size_t)zl < BLK - BLK / 40);
		zlib_check(z, (size_t)zl, in, BLK);
	}
	free(in);
	free(z);
	free(back);
	free(text);
}

static void test_deflate_enospc_einval(void **state)
{
	uint8_t *in = xmalloc(BLK), *z = xmalloc(BLK + 1024);
	ssize_t zl;

	(void)state;
	fill_random(in, BLK);
	for (int level = 0; level <= 3; level++)
		assert_int_equal(fy_deflate(level, in, BLK, z, BLK + 1024), -ENOSPC);
	/* compressible, but the output buffer is too small */
	fill_text(in, BLK);
	zl = fy_deflate(1, in, BLK, z, BLK);
	assert_true(zl > 100);
	assert_int_equal(fy_deflate(1, in, BLK, z, (size_t)zl - 1), -ENOSPC);
	/* igzip's one-shot mode wants up to 8 bytes of slack (see codec.h) */
	assert_int_equal(fy_deflate(1, in, BLK, z, (size_t)zl + 8), zl);
	assert_int_equal(fy_deflate(1, in, 0, z, BLK), -ENOSPC);
	assert_int_equal(fy_deflate(1, in, BLK, z, 0), -ENOSPC);
	assert_int_equal(fy_deflate(-1, in, BLK, z, BLK), -EINVAL);
	assert_int_equal(fy_deflate(4, in, BLK, z, BLK), -EINVAL);
	free(in);
	free(z);
}

static void test_inflate_zlib_stream(void **state)
{
	uint8_t *in = xmalloc(BLK), *z = xmalloc(BLK + 4096), *back = xmalloc(BLK);
	const int levels[] = { 0, 1, 6, 9 };

	(void)state;
	fill_kind(K_MIXED, in, BLK);
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		size_t zl = zlib_deflate(levels[i], in, BLK, z, BLK + 4096);

		memset(back, 0, BLK);
		assert_int_equal(fy_inflate(z, zl, back, BLK), (ssize_t)BLK);
		assert_memory_equal(back, in, BLK);
	}
	free(in);
	free(z);
	free(back);
}

static void test_inflate_corrupt(void **state)
{
	size_t n = 1 << 20;
	uint8_t *in = xmalloc(n), *z = xmalloc(n), *bad = xmalloc(n + 16), *back = xmalloc(n + 16);
	ssize_t zl;
	int rejected = 0;
	static const uint8_t reserved_type[] = { 0x07, 0x00, 0x00, 0x00 };
	/* stored block whose LEN and NLEN disagree */
	static const uint8_t bad_stored[] = { 0x01, 0x05, 0x00, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o' };

	(void)state;
	fill_text(in, n);
	zl = fy_deflate(2, in, n, z, n);
	assert_true(zl > 0);
	/* wrong lengths: the output must be exactly outlen */
	assert_int_equal(fy_inflate(z, (size_t)zl, back, n - 1), -EBADMSG);
	assert_int_equal(fy_inflate(z, (size_t)zl, back, n + 1), -EBADMSG);
	/* truncated streams */
	assert_int_equal(fy_inflate(z, (size_t)zl / 2, back, n), -EBADMSG);
	assert_int_equal(fy_inflate(z, (size_t)zl - 8, back, n), -EBADMSG);
	assert_int_equal(fy_inflate(z, 0, back, n), -EBADMSG);
	assert_int_equal(fy_inflate(reserved_type, sizeof(reserved_type), back, 16), -EBADMSG);
	assert_int_equal(fy_inflate(bad_stored, sizeof(bad_stored), back, 5), -EBADMSG);
	/* bytes after the final block */
	memcpy(bad, z, (size_t)zl);
	bad[zl] = 0;
	assert_int_equal(fy_inflate(bad, (size_t)zl + 1, back, n), -EBADMSG);
	memset(bad + zl, 0x5a, 16);
	assert_int_equal(fy_inflate(bad, (size_t)zl + 16, back, n), -EBADMSG);
	assert_int_equal(fy_inflate(bad, (size_t)zl, back, n), (ssize_t)n);
	assert_memory_equal(back, in, n);
	/* garbage in place of the stream */
	fill_random(bad, (size_t)zl);
	assert_int_equal(fy_inflate(bad, (size_t)zl, back, n), -EBADMSG);
	/* random byte damage: raw deflate has no checksum, so some damage may
	 * still decode to n bytes; the rest must be refused, never crash */
	for (int i = 0; i < 200; i++) {
		ssize_t r;

		memcpy(bad, z, (size_t)zl);
		bad[rnd() % (size_t)zl] ^= (uint8_t)(1 + rnd() % 255);
		r = fy_inflate(bad, (size_t)zl, back, n);
		assert_true(r == -EBADMSG || r == (ssize_t)n);
		rejected += r == -EBADMSG;
	}
	assert_true(rejected > 100);
	free(in);
	free(z);
	free(bad);
	free(back);
}

struct zthread {
	int level;
	uint64_t seed;
	int ok;
};

static void *zthread_main(void *arg)
{
	struct zthread *t = arg;
	size_t n = 1 << 20;
	uint8_t *in = malloc(n), *z = malloc(n), *back = malloc(n);
	uint64_t s = t->seed;

	t->ok = in && z && back;
	for (int i = 0; t->ok && i < 30; i++) {
		ssize_t zl;

		/* per-thread text: a cheap LCG so threads don't share the rng */
		for (size_t j = 0; j < n; j++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			in[j] = (uint8_t)("abcdefgh  \n"[(s >> 60) % 11]);
		}
		zl = fy_deflate((t->level + i) % 4, in, n, z, n);
		if (zl <= 0 || fy_inflate(z, (size_t)zl, back, n) != (ssize_t)n ||
		    memcmp(in, back, n) != 0)
			t->ok = 0;
	}
	free(in);
	free(z);
	free(back);
	return NULL;
}

static void test_deflate_threads(void **state)
{
	enum { NT = 4 };
	pthread_t th[NT];
	struct zthread t[NT];

	(void)state;
	for (int i = 0; i < NT; i++) {
		t[i] = (struct zthread){ .level = i, .seed = rnd(), .ok = 0 };
		assert_int_equal(pthread_create(&th[i], NULL, zthread_main, &t[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_true(t[i].ok);
	}
}

/* ---- HMAC chunk id ---------------------------------------------------- */

static void test_chunk_id_vectors(void **state)
{
	uint8_t key[FY_KEY_LEN], id[FY_ID_LEN], want[FY_ID_LEN];

	(void)state;
	/* RFC 4231 test cases 1 and 2.  HMAC pads a short key with zeros to the
	 * block size, so the RFC key followed by zeros up to 32 bytes is the
	 * same key. */
	memset(key, 0, sizeof(key));
	memset(key, 0x0b, 20);
	assert_int_equal(fy_chunk_id(key, "Hi There", 8, id), 0);
	unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want, 32);
	assert_memory_equal(id, want, 32);

	memset(key, 0, sizeof(key));
	memcpy(key, "Jefe", 4);
	assert_int_equal(fy_chunk_id(key, "what do ya want for nothing?", 28, id), 0);
	unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want, 32);
	assert_memory_equal(id, want, 32);

	/* Computed once with the OpenSSL CLI:
	 * printf 'ferry chunk id cross-check' | openssl dgst -sha256 -mac HMAC \
	 *   -macopt hexkey:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f */
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	assert_int_equal(fy_chunk_id(key, "ferry chunk id cross-check", 26, id), 0);
	unhex("24b78c05ada293a03f6c2f2e3e60f85f5dd43b3c552f6dec91cb8f585a34aa57", want, 32);
	assert_memory_equal(id, want, 32);
}

static void test_chunk_id_random(void **state)
{
	size_t max = 1 << 20;
	uint8_t *data = xmalloc(max);
	uint8_t key[FY_KEY_LEN], id[FY_ID_LEN], want[EVP_MAX_MD_SIZE];

	(void)state;
	fill_random(data, max);
	for (int i = 0; i < 50; i++) {
		size_t n = i < 5 ? (size_t)i : rnd() % max;
		unsigned wl = 0;

		fill_random(key, sizeof(key));
		assert_int_equal(fy_chunk_id(key, data, n, id), 0);
		assert_non_null(HMAC(EVP_sha256(), key, FY_KEY_LEN, data, n, want, &wl));
		assert_int_equal(wl, 32);
		assert_memory_equal(id, want, 32);
		key[i % 32] ^= 1; /* another key, another id */
		assert_int_equal(fy_chunk_id(key, data, n, want), 0);
		assert_memory_not_equal(id, want, 32);
	}
	free(data);
}

/* ---- seal ------------------------------------------------------------- */

/* Independent AES-256-GCM open with the EVP decrypt calls; returns 1 when
 * the tag verifies. */
static int evp_open(const uint8_t *key, const uint8_t *aad, size_t aadlen,
		    const uint8_t *in, size_t inlen, uint8_t *plain)
{
	EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
	size_t len = inlen - FY_SEAL_OVERHEAD;
	int n, ok;

	assert_non_null(cx);
	assert_int_equal(EVP_DecryptInit_ex(cx, EVP_aes_256_gcm(), NULL, NULL, NULL), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL), 1);
	assert_int_equal(EVP_DecryptInit_ex(cx, NULL, NULL, key, in), 1);
	if (aadlen)
		assert_int_equal(EVP_DecryptUpdate(cx, NULL, &n, aad, (int)aadlen), 1);
	assert_int_equal(EVP_DecryptUpdate(cx, plain, &n, in + 12, (int)len), 1);
	assert_int_equal((size_t)n, len);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + inlen - 16)), 1);
	ok = EVP_DecryptFinal_ex(cx, plain + len, &n);
	EVP_CIPHER_CTX_free(cx);
	return ok == 1;
}

static void test_seal_evp(void **state)
{
	size_t max = (1 << 20) + 17;
	uint8_t *plain = xmalloc(max), *sealed = xmalloc(max + FY_SEAL_OVERHEAD), *back = xmalloc(max);
	uint8_t key[FY_KEY_LEN], aad[40];

	(void)state;
	for (int i = 0; i < 30; i++) {
		size_t n = i < 3 ? (size_t)i : rnd() % max;
		size_t al = rnd() % sizeof(aad);

		fill_random(key, sizeof(key));
		fill_random(aad, sizeof(aad));
		fill_random(plain, n);
		assert_int_equal(fy_seal(key, aad, al, plain, n, sealed), 0);
		if (n >= 16)
			assert_memory_not_equal(sealed + FY_NONCE_LEN, plain, 16);
		memset(back, 0, max);
		assert_true(evp_open(key, aad, al, sealed, n + FY_SEAL_OVERHEAD, back));
		assert_memory_equal(back, plain, n);
		memset(back, 0, max);
		assert_int_equal(fy_unseal(key, aad, al, sealed, n + FY_SEAL_OVERHEAD, back), 0);
		assert_memory_equal(back, plain, n);
	}
	free(plain);
	free(sealed);
	free(back);
}

static void test_seal_tamper(void **state)
{
	enum { N = 1000, S = N + FY_SEAL_OVERHEAD };
	uint8_t key[FY_KEY_LEN], aad[24], plain[N], sealed[S], bad[S], back[N];
	/* a bit in the nonce, the ciphertext (first, middle, last) and the tag */
	const size_t spots[] = { 0, 11, 12, 12 + N / 2, 12 + N - 1, 12 + N, S - 1 };

	(void)state;
	fill_random(key, sizeof(key));
	fill_random(aad, sizeof(aad));
	fill_random(plain, sizeof(plain));
	assert_int_equal(fy_seal(key, aad, sizeof(aad), plain, N, sealed), 0);
	for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
		memcpy(bad, sealed, S);
		bad[spots[i]] ^= 0x10;
		memset(back, 0x55, N);
		assert_int_equal(fy_unseal(key, aad, sizeof(aad), bad, S, back), -EBADMSG);
		/* unverified plaintext is not left in the output */
		for (size_t j = 0; j < N; j++)
			assert_int_equal(back[j], 0);
	}
	aad[5] ^= 1;
	assert_int_equal(fy_unseal(key, aad, sizeof(aad), sealed, S, back), -EBADMSG);
	assert_int_equal(fy_unseal(key, aad, sizeof(aad) - 1, sealed, S, back), -EBADMSG);
	aad[5] ^= 1;
	assert_int_equal(fy_unseal(key, NULL, 0, sealed, S, back), -EBADMSG);
	key[31] ^= 0x80;
	assert_int_equal(fy_unseal(key, aad, sizeof(aad), sealed, S, back), -EBADMSG);
	key[31] ^= 0x80;
	assert_int_equal(fy_unseal(key, aad, sizeof(aad), sealed, S - 1, back), -EBADMSG);
	assert_int_equal(fy_unseal(key, aad, sizeof(aad), sealed, FY_SEAL_OVERHEAD - 1, back), -EBADMSG);
	/* and the untouched message still opens */
	assert_int_equal(fy_unseal(key, aad, sizeof(aad), sealed, S, back), 0);
	assert_memory_equal(back, plain, N);
}

static void test_seal_fresh_nonce_inplace(void **state)
{
	enum { N = 4096, S = N + FY_SEAL_OVERHEAD };
	uint8_t key[FY_KEY_LEN], plain[N], a[S], b[S], buf[S];

	(void)state;
	fill_random(key, sizeof(key));
	fill_text(plain, N);
	assert_int_equal(fy_seal(key, "x", 1, plain, N, a), 0);
	assert_int_equal(fy_seal(key, "x", 1, plain, N, b), 0);
	assert_memory_not_equal(a, b, FY_NONCE_LEN);
	assert_memory_not_equal(a + FY_NONCE_LEN, b + FY_NONCE_LEN, N);
	/* in place: plaintext at out + FY_NONCE_LEN, then opened in place */
	memcpy(buf + FY_NONCE_LEN, plain, N);
	assert_int_equal(fy_seal(key, "x", 1, buf + FY_NONCE_LEN, N, buf), 0);
	memcpy(a, buf, S);
	assert_int_equal(fy_unseal(key, "x", 1, buf, S, buf + FY_NONCE_LEN), 0);
	assert_memory_equal(buf + FY_NONCE_LEN, plain, N);
	assert_true(evp_open(key, (const uint8_t *)"x", 1, a, S, b));
	assert_memory_equal(b, plain, N);
}

/* ---- random, scrypt --------------------------------------------------- */

static void test_random(void **state)
{
	uint8_t a[64], b[64];

	(void)state;
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	assert_int_equal(fy_random(a, sizeof(a)), 0);
	assert_int_equal(fy_random(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_false(fy_is_zero(a, sizeof(a)));
	assert_int_equal(fy_random(a, 0), 0);
}

static void test_scrypt_vectors(void **state)
{
	uint8_t key[FY_KEY_LEN], want[FY_KEY_LEN];

	(void)state;
	/* RFC 7914 section 12: first 32 of the 64 published bytes */
	assert_int_equal(fy_scrypt("", 0, (const uint8_t *)"", 0, 4, 1, 1, key), 0);
	unhex("77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442", want, 32);
	assert_memory_equal(key, want, 32);
	assert_int_equal(fy_scrypt("password", 8, (const uint8_t *)"NaCl", 4, 10, 8, 16, key), 0);
	unhex("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162", want, 32);
	assert_memory_equal(key, want, 32);
	/* N = 2^20, r = 8 needs 1 GiB: above OpenSSL's default memory cap */
	assert_int_equal(fy_scrypt("pleaseletmein", 13, (const uint8_t *)"SodiumChloride", 14,
				   20, 8, 1, key), 0);
	unhex("2101cb9b6a511aaeaddbbe09cf70f881ec568d574a2ffd4dabe5ee9820adaa47", want, 32);
	assert_memory_equal(key, want, 32);
}

static void test_scrypt_params(void **state)
{
	uint8_t key[FY_KEY_LEN];

	(void)state;
	assert_int_equal(fy_scrypt("pw", 2, (const uint8_t *)"s", 1, 0, 8, 1, key), -EINVAL);
	assert_int_equal(fy_scrypt("pw", 2, (const uint8_t *)"s", 1, 10, 0, 1, key), -EINVAL);
	assert_int_equal(fy_scrypt("pw", 2, (const uint8_t *)"s", 1, 10, 8, 0, key), -EINVAL);
	assert_int_equal(fy_scrypt("pw", 2, (const uint8_t *)"s", 1, 16, 1, 1, key), -EINVAL);
	assert_int_equal(fy_scrypt("pw", 2, (const uint8_t *)"s", 1, 40, 8, 1, key), -EINVAL);
}

int main(void)
{
	const char *env = getenv("FY_TEST_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_vectors),
		cmocka_unit_test(test_crc_chain),
		cmocka_unit_test(test_crc_random),
		cmocka_unit_test(test_crc_huge),
		cmocka_unit_test(test_is_zero_edges),
		cmocka_unit_test(test_is_zero_block),
		cmocka_unit_test(test_deflate_roundtrip),
		cmocka_unit_test(test_deflate_enospc_einval),
		cmocka_unit_test(test_deflate_noise),
		cmocka_unit_test(test_inflate_zlib_stream),
		cmocka_unit_test(test_inflate_corrupt),
		cmocka_unit_test(test_deflate_threads),
		cmocka_unit_test(test_chunk_id_vectors),
		cmocka_unit_test(test_chunk_id_random),
		cmocka_unit_test(test_seal_evp),
		cmocka_unit_test(test_seal_tamper),
		cmocka_unit_test(test_seal_fresh_nonce_inplace),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_scrypt_vectors),
		cmocka_unit_test(test_scrypt_params),
	};

	printf("test_codec: seed 0x%016llx (FY_TEST_SEED to replay)\n", (unsigned long long)seed);
	fflush(stdout);
	rng_state = seed;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
