#include <errno.h>
#include <stdlib.h>

#include "queue.h"

int fy_queue_init(struct fy_queue *q, size_t cap)
{
	q->items = calloc(cap, sizeof(void *));
	if (!q->items)
		return -ENOMEM;
	q->cap = cap;
	q->head = q->n = 0;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->nonempty, NULL);
	pthread_cond_init(&q->nonfull, NULL);
	return 0;
}

void fy_queue_destroy(struct fy_queue *q)
{
	if (!q->items)
		return;
	free(q->items);
	q->items = NULL;
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->nonfull);
}

void fy_queue_push(struct fy_queue *q, void *item)
{
	pthread_mutex_lock(&q->lock);
	while (q->n == q->cap)
		pthread_cond_wait(&q->nonfull, &q->lock);
	q->items[(q->head + q->n++) % q->cap] = item;
	pthread_cond_signal(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

static void *take(struct fy_queue *q)
{
	void *item = q->items[q->head];

	q->head = (q->head + 1) % q->cap;
	q->n--;
	pthread_cond_signal(&q->nonfull);
	return item;
}

void *fy_queue_pop(struct fy_queue *q)
{
	void *item;

	pthread_mutex_lock(&q->lock);
	while (q->n == 0)
		pthread_cond_wait(&q->nonempty, &q->lock);
	item = take(q);
	pthread_mutex_unlock(&q->lock);
	return item;
}

void *fy_queue_trypop(struct fy_queue *q)
{
	void *item = NULL;

	pthread_mutex_lock(&q->lock);
	if (q->n > 0)
		item = take(q);
	pthread_mutex_unlock(&q->lock);
	return item;
}
