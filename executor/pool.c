/* pool.c: the caching device-memory pool (pool.h). */
#include "executor/pool.h"

#include <stdlib.h>
#include <string.h>

void pool_init(DevicePool *p, PoolRawAlloc raw_alloc, PoolRawFree raw_free, void *ctx)
{
    memset(p, 0, sizeof *p);
    p->category = MEM_ACTIVATIONS;
    p->raw_alloc = raw_alloc;
    p->raw_free = raw_free;
    p->ctx = ctx;
}

static size_t round_up(size_t bytes)
{
    if (bytes == 0) bytes = 1;
    return (bytes + POOL_GRANULE - 1) / POOL_GRANULE * POOL_GRANULE;
}

void *pool_alloc(DevicePool *p, size_t bytes)
{
    size_t want = round_up(bytes);
    /* best fit among free blocks, at most 2x the request */
    int best = -1;
    for (int i = 0; i < p->count; i++) {
        PoolBlock *b = &p->blocks[i];
        if (b->used || b->bytes < want || b->bytes / 2 > want) continue;
        if (best < 0 || b->bytes < p->blocks[best].bytes) best = i;
    }
    if (best < 0) {
        if (p->count == p->cap) {
            int cap = p->cap ? 2 * p->cap : 64;
            PoolBlock *nb = realloc(p->blocks, sizeof(PoolBlock) * (size_t)cap);
            if (!nb) return NULL;
            p->blocks = nb;
            p->cap = cap;
        }
        void *ptr = p->raw_alloc(p->ctx, want);
        if (!ptr) return NULL;
        best = p->count++;
        p->blocks[best] = (PoolBlock){ptr, want, 0, 0};
        p->reserved += want;
        p->raw_allocs++;
        if (p->in_step) p->step_raw_allocs++;
    }
    PoolBlock *b = &p->blocks[best];
    b->used = 1;
    b->category = p->category;
    p->in_use += b->bytes;
    p->cat_in_use[b->category] += b->bytes;
    if (p->in_use > p->peak_in_use) {
        p->peak_in_use = p->in_use;
        memcpy(p->cat_at_peak, p->cat_in_use, sizeof p->cat_at_peak);
    }
    return b->ptr;
}

int pool_free(DevicePool *p, void *ptr)
{
    if (!ptr) return 0;
    for (int i = 0; i < p->count; i++) {
        PoolBlock *b = &p->blocks[i];
        if (b->ptr != ptr) continue;
        if (!b->used) return -1;
        b->used = 0;
        p->in_use -= b->bytes;
        p->cat_in_use[b->category] -= b->bytes;
        return 0;
    }
    return -1;
}

void pool_set_in_step(DevicePool *p, int in_step) { p->in_step = in_step; }

void pool_set_category(DevicePool *p, int category)
{
    if (category >= 0 && category < MEM_CATEGORY_COUNT) p->category = category;
}

int pool_trim(DevicePool *p)
{
    int kept = 0, freed = 0;
    for (int i = 0; i < p->count; i++) {
        PoolBlock b = p->blocks[i];
        if (b.used) { p->blocks[kept++] = b; continue; }
        p->raw_free(p->ctx, b.ptr);
        p->reserved -= b.bytes;
        freed++;
    }
    p->count = kept;
    return freed;
}

void pool_destroy(DevicePool *p)
{
    for (int i = 0; i < p->count; i++) p->raw_free(p->ctx, p->blocks[i].ptr);
    free(p->blocks);
    memset(p, 0, sizeof *p);
}
