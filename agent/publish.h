/* Where each volume is published, on disk under STATE/publish/<volume id>/:
 * one small file per target ("block" or "mount", then the path), so the
 * agent knows after a restart which targets use a loop device, and which
 * mounted filesystem to freeze at a cut.  (A bind-mounted device node does
 * not show in mountinfo as its device: the kernel cannot tell us.) */
#ifndef FERRY_AGENT_PUBLISH_H
#define FERRY_AGENT_PUBLISH_H

#include <stddef.h>

struct fy_agent;

int fy_pub_add(struct fy_agent *a, const char *vol, const char *kind, const char *target);
int fy_pub_remove(struct fy_agent *a, const char *vol, const char *target);
/* The kind a target is published as ("block"/"mount"): 0, or -ENOENT. */
int fy_pub_kind(struct fy_agent *a, const char *vol, const char *target, char *kind, size_t len);
/* How many targets a volume is published at (>= 0), or -errno. */
int fy_pub_count(struct fy_agent *a, const char *vol);
/* The first mount target of a volume: 0, or -ENOENT. */
int fy_pub_first_mount(struct fy_agent *a, const char *vol, char *path, size_t len);
/* Forget every target of a volume (it is deleted). */
void fy_pub_clear(struct fy_agent *a, const char *vol);

#endif
