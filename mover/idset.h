/* A set of 32-byte chunk ids (open addressing; ids are HMAC outputs, so
 * their first bytes are already a uniform hash).  Not thread-safe: callers
 * that share one hold their own lock. */
#ifndef FERRY_IDSET_H
#define FERRY_IDSET_H

#include <stddef.h>
#include <stdint.h>

struct fy_idset {
	uint8_t *slots;   /* cap * 32 bytes; all-zero = empty (a zero id is never stored) */
	uint32_t *vals;   /* cap values carried with each id */
	size_t cap, n;
};

int fy_idset_init(struct fy_idset *s, size_t expect);
void fy_idset_free(struct fy_idset *s);
/* 1 if inserted, 0 if already present (*val then holds the stored value when val != NULL),
 * -ENOMEM. */
int fy_idset_add(struct fy_idset *s, const uint8_t id[32], uint32_t v, uint32_t *val);
int fy_idset_has(const struct fy_idset *s, const uint8_t id[32]);
/* 1 and *val (when val != NULL) if id is present, else 0; never inserts. */
int fy_idset_get(const struct fy_idset *s, const uint8_t id[32], uint32_t *val);
/* Iterate: returns the next occupied slot index >= *pos, or -1; sets *pos past it. */
const uint8_t *fy_idset_next(const struct fy_idset *s, size_t *pos, uint32_t *val);

#endif
