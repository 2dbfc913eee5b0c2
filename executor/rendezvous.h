/* rendezvous.h: a TCP broadcast of one small blob (the NCCL unique id) from
 * rank 0 to every other rank, for launches without MPI (torchrun style
 * variables, the built-in launcher, srun with MASTER_ADDR/MASTER_PORT).
 *
 * Protocol (all integers little-endian uint32):
 *   peer -> rank 0   "MPRV" magic, world_size, rank
 *   rank 0 -> peer   "MPRV" magic, blob length, blob bytes
 * Rank 0 listens on MASTER_PORT (on the loopback address when MASTER_ADDR
 * is a 127.x address, on every interface otherwise), accepts world_size-1
 * peers and checks that each rank arrives once with the same world size.
 * Peers connect with retries (the listener may start later) until the
 * timeout.  Every wait is bounded by the timeout: a missing rank fails the
 * call with a message naming the ranks that did not arrive.
 */
#ifndef MOEPLAN_EXECUTOR_RENDEZVOUS_H
#define MOEPLAN_EXECUTOR_RENDEZVOUS_H

#include <stddef.h>

#include "core/error.h"

#define RENDEZVOUS_MAX_BLOB 4096

/* rank 0: sends blob[len]; other ranks: receive into blob[len] (the length
 * must match).  timeout_s bounds the whole call. */
int rendezvous_broadcast(const char *addr, int port, int rank, int world_size, void *blob,
                         size_t len, double timeout_s, MpError *err);

#endif
