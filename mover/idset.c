#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idset.h"

static const uint8_t zero_id[32];

static size_t slot_of(const struct fy_idset *s, const uint8_t id[32])
{
	uint64_t h;

	memcpy(&h, id, sizeof(h));
	return (size_t)(h & (s->cap - 1));
}

int fy_idset_init(struct fy_idset *s, size_t expect)
{
	size_t cap = 1024;

	while (cap < 2 * expect)
		cap *= 2;
	s->slots = calloc(cap, 32);
	s->vals = calloc(cap, sizeof(uint32_t));
	s->cap = cap;
	s->n = 0;
	if (!s->slots || !s->vals) {
		fy_idset_free(s);
		return -ENOMEM;
	}
	return 0;
}

void fy_idset_free(struct fy_idset *s)
{
	free(s->slots);
	free(s->vals);
	s->slots = NULL;
	s->vals = NULL;
	s->cap = s->n = 0;
}

static int grow(struct fy_idset *s)
{
	struct fy_idset bigger;

	if (fy_idset_init(&bigger, s->cap) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++)
		if (memcmp(s->slots + 32 * i, zero_id, 32) != 0)
			fy_idset_add(&bigger, s->slots + 32 * i, s->vals[i], NULL);
	fy_idset_free(s);
	*s = bigger;
	return 0;
}

int fy_idset_add(struct fy_idset *s, const uint8_t id[32], uint32_t v, uint32_t *val)
{
	if (2 * (s->n + 1) > s->cap && grow(s) < 0)
		return -ENOMEM;
	for (size_t i = slot_of(s, id);; i = (i + 1) & (s->cap - 1)) {
		uint8_t *slot = s->slots + 32 * i;

		if (memcmp(slot, id, 32) == 0) {
			if (val)
				*val = s->vals[i];
			return 0;
		}
		if (memcmp(slot, zero_id, 32) == 0) {
			memcpy(slot, id, 32);
			s->vals[i] = v;
			s->n++;
			return 1;
		}
	}
}

int fy_idset_get(const struct fy_idset *s, const uint8_t id[32], uint32_t *val)
{
	for (size_t i = slot_of(s, id);; i = (i + 1) & (s->cap - 1)) {
		const uint8_t *slot = s->slots + 32 * i;

		if (memcmp(slot, id, 32) == 0) {
			if (val)
				*val = s->vals[i];
			return 1;
		}
		if (memcmp(slot, zero_id, 32) == 0)
			return 0;
	}
}

int fy_idset_has(const struct fy_idset *s, const uint8_t id[32])
{
	return fy_idset_get(s, id, NULL);
}

const uint8_t *fy_idset_next(const struct fy_idset *s, size_t *pos, uint32_t *val)
{
	for (size_t i = *pos; i < s->cap; i++) {
		if (memcmp(s->slots + 32 * i, zero_id, 32) != 0) {
			*pos = i + 1;
			if (val)
				*val = s->vals[i];
			return s->slots + 32 * i;
		}
	}
	*pos = s->cap;
	return NULL;
}
