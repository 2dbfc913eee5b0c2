/* pool.h: a caching pool of device memory blocks, so that a training step
 * allocates and frees without calling the device allocator.
 *
 * The backend gives the pool a raw allocator (cudaMalloc / cudaFree on the
 * GPU).  pool_alloc hands out a cached free block that fits (best fit, at
 * most twice the request, so a small buffer does not pin a large block) or
 * takes a new one from the raw allocator; pool_free only marks the block
 * free.  Nothing is returned to the raw allocator before pool_destroy.
 *
 * Why reuse is safe without synchronisation: the executor runs every kernel
 * and every collective in the order of one compute stream (communication on
 * other streams is joined back into it before the backend op returns), and
 * a block is freed only after the host has enqueued its last use; the next
 * owner's work is enqueued later on the same stream.
 *
 * "Sized before the first step": the model requests every buffer of the
 * step once at creation (model.c), so the raw allocations happen there.  A
 * raw allocation while pool_set_in_step(p, 1) is in force (a dropless
 * dispatcher buffer that outgrew its reservation) is counted in
 * step_raw_allocs.  Between steps, pool_trim returns the blocks such a
 * growth left free to the raw allocator, so that memory does not stay
 * held twice (the backend calls it at the end of a step, after the step's
 * last synchronisation).
 */
#ifndef MOEPLAN_EXECUTOR_POOL_H
#define MOEPLAN_EXECUTOR_POOL_H

#include <stddef.h>

typedef void *(*PoolRawAlloc)(void *ctx, size_t bytes);   /* NULL on failure */
typedef void (*PoolRawFree)(void *ctx, void *p);

/* What a block holds, for the memory report (issue 15 item 4), the
 * simulator's breakdown (simulator/memory.c) plus communication buffers. */
typedef enum {
    MEM_WEIGHTS = 0,     /* the working copy the GEMMs read (bf16 CUDA, fp32 CPU) */
    MEM_GRADIENTS,       /* fp32 gradient arenas and the reduced shards */
    MEM_OPTIMIZER,       /* Adam m, v and a separate fp32 master */
    MEM_ACTIVATIONS,     /* kept from a forward to its backward (the default) */
    MEM_COMM,            /* buffers that only carry a collective's data */
    MEM_WORKSPACE,       /* temporaries of one layer call, backend scratch */
    MEM_CATEGORY_COUNT
} MemCategory;

typedef struct {
    void *ptr;
    size_t bytes;
    int used;
    int category;        /* MemCategory of its current owner */
} PoolBlock;

typedef struct {
    PoolRawAlloc raw_alloc;
    PoolRawFree raw_free;
    void *ctx;
    PoolBlock *blocks;
    int count, cap;
    size_t reserved;          /* bytes held from the raw allocator */
    size_t in_use, peak_in_use;
    long raw_allocs;          /* raw allocations so far */
    long step_raw_allocs;     /* of which inside a step */
    int in_step;
    int category;             /* MemCategory of the next pool_alloc */
    size_t cat_in_use[MEM_CATEGORY_COUNT];
    size_t cat_at_peak[MEM_CATEGORY_COUNT];   /* cat_in_use when in_use reached peak_in_use */
} DevicePool;

/* Requests are rounded up to this many bytes (and blocks are aligned to it
 * by cudaMalloc's 256-byte alignment). */
#define POOL_GRANULE 512

void pool_init(DevicePool *p, PoolRawAlloc raw_alloc, PoolRawFree raw_free, void *ctx);
/* NULL when the raw allocator fails (the pool is unchanged) */
void *pool_alloc(DevicePool *p, size_t bytes);
/* ptr must come from pool_alloc (NULL is ignored); returns -1 for a pointer
 * the pool does not hold */
int pool_free(DevicePool *p, void *ptr);
void pool_set_in_step(DevicePool *p, int in_step);
/* the MemCategory that the following pool_alloc calls are counted in */
void pool_set_category(DevicePool *p, int category);
/* returns every free block to the raw allocator (between steps only: the
 * raw free may synchronise the device); the number of blocks returned */
int pool_trim(DevicePool *p);
/* returns every block to the raw allocator */
void pool_destroy(DevicePool *p);

#endif
