/* The manifest scan: no knowledge of what changed, so every block is read
 * and compared with the parent by keyed id (mover/backup.c does the
 * comparing; docs/FORMAT.md has the odds of a miss). */
#include "cbt/cbt_priv.h"

static int scan_changed(const struct fy_cbt_req *req, struct fy_bitmap *changed, char *why, size_t whylen)
{
	int rc = fy_cbt_req_check(&fy_cbt_manifest_scan, NULL, req, changed, why, whylen);

	if (rc < 0)
		return rc;
	if (changed->nbits)
		fy_bitmap_set_range(changed, 0, changed->nbits - 1);
	return 0;
}

const struct fy_cbt_ops fy_cbt_manifest_scan = { .name = "manifest-scan", .changed = scan_changed };
