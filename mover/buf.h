/* Large pipeline buffers (a chunk each): 2 MiB-aligned and backed by
 * transparent huge pages where the kernel offers them, so the codecs and the
 * kernel's copies walk 2 pages per 4 MiB instead of 1024. */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stddef.h>

void *fy_buf_alloc(size_t size);
void fy_buf_free(void *p);

#endif
