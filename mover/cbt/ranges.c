/* Placeholder until the real source lands: always unavailable. */
#include <errno.h>
#include <stdio.h>

#include "cbt/cbt.h"

static int changed(const struct fy_cbt_req *req, struct fy_bitmap *c, char *why, size_t whylen)
{
	(void)req;
	(void)c;
	snprintf(why, whylen, "not built yet");
	return -EOPNOTSUPP;
}

const struct fy_cbt_ops fy_cbt_range_list = { .name = "range-list", .changed = changed };
