/* CRC32C through ISA-L, and the zero-block test. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <isa-l/crc.h>

#include "codec.h"

/* crc32_iscsi() takes an int length: feed it at most 1 GiB at a time. */
#define CRC_STEP ((size_t)1 << 30)

uint32_t fy_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	/* ISA-L works on the raw register (no final inversion), so undo the
	 * inversion of the previous standard value before continuing. */
	uint32_t raw = ~crc;

	while (len > 0) {
		size_t n = len < CRC_STEP ? len : CRC_STEP;

		raw = crc32_iscsi((unsigned char *)p, (int)n, raw);
		p += n;
		len -= n;
	}
	return ~raw;
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v)); /* no alignment or aliasing assumptions */
	return v;
}

int fy_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t head;

	if (len < 64) {
		uint64_t acc = 0;

		for (; len >= 8; p += 8, len -= 8)
			acc |= load64(p);
		while (len--)
			acc |= *p++;
		return acc == 0;
	}
	/* Look at the first 64 bytes before anything else: a block of data
	 * almost always fails here, without touching the rest. */
	head = 64 - ((uintptr_t)p & 63);
	{
		uint64_t acc = 0;

		for (size_t i = 0; i < 64; i += 8)
			acc |= load64(p + i);
		if (acc)
			return 0;
	}
	p += head;
	len -= head;
	/* Aligned 256-byte strides; OR-reduce each so the loop vectorises, and
	 * stop at the first stride holding a set bit. */
	while (len >= 256) {
		uint64_t acc = 0;

		for (size_t i = 0; i < 256; i += 8)
			acc |= load64(p + i);
		if (acc)
			return 0;
		p += 256;
		len -= 256;
	}
	{
		uint64_t acc = 0;

		for (; len >= 8; p += 8, len -= 8)
			acc |= load64(p);
		while (len--)
			acc |= *p++;
		return acc == 0;
	}
}
