/* A bounded multi-producer multi-consumer queue of pointers.  The pipeline
 * sizes each queue to hold every buffer that can be in it, so push never
 * waits in practice; pop blocks until an item arrives. */
#ifndef FERRY_QUEUE_H
#define FERRY_QUEUE_H

#include <pthread.h>
#include <stddef.h>

struct fy_queue {
	void **items;
	size_t cap, head, n;
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
};

int fy_queue_init(struct fy_queue *q, size_t cap);
void fy_queue_destroy(struct fy_queue *q);
void fy_queue_push(struct fy_queue *q, void *item);
void *fy_queue_pop(struct fy_queue *q);
/* Non-blocking pop: NULL when empty. */
void *fy_queue_trypop(struct fy_queue *q);

#endif
