/* exec_test_comms.h: ExecComms over MPI for tests (and for a runtime that
 * wants MPI communicators): one MPI_Comm_split of `world` per group kind,
 * with the members from mapping_group_of_rank() (the layout is never
 * re-derived here: the colour of a group is its smallest member, the key
 * the rank's index inside it). Header-only; needs <mpi.h>. */
#ifndef MOEPLAN_TESTS_EXEC_TEST_COMMS_H
#define MOEPLAN_TESTS_EXEC_TEST_COMMS_H

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapping.h"
#include "executor/executor.h"

typedef struct {
    ExecComms comms;
    MPI_Comm comm[GROUP_KIND_COUNT];
    MPI_Comm world;
} ExecTestComms;

/* map must be resolved and map->world == size of `world`. */
static inline void exec_test_comms_build(const Mapping *map, MPI_Comm world, ExecTestComms *t)
{
    memset(t, 0, sizeof *t);
    int rank, size;
    MPI_Comm_rank(world, &rank);
    MPI_Comm_size(world, &size);
    t->world = world;
    t->comms.world_rank = rank;
    t->comms.world_size = size;
    t->comms.local_rank = rank;
    t->comms.world = &t->world;
    int *members = malloc(sizeof(int) * (size_t)size);
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        int idx = mapping_group_of_rank(map, (GroupKind)k, rank, members);
        MPI_Comm_split(world, members[0], idx, &t->comm[k]);
        t->comms.handle[k] = &t->comm[k];
        t->comms.rank_in[k] = idx;
        t->comms.size_of[k] = mapping_group_size(map, (GroupKind)k);
    }
    free(members);
}

static inline void exec_test_comms_free(ExecTestComms *t)
{
    for (int k = 0; k < GROUP_KIND_COUNT; k++)
        if (t->comm[k] != MPI_COMM_NULL && t->comm[k] != 0) MPI_Comm_free(&t->comm[k]);
}

#endif
