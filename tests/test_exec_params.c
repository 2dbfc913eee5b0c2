/* test_exec_params.c: the executor's parameter table (executor/params.c):
 * the shard of every parameter of a tiny model, the groups its gradient is
 * summed over, the all-reduces the table drives (recorded through a
 * Backend whose all_reduce is replaced), and the step structure: forward
 * and backward as separate calls give the fused call's gradients bit for
 * bit, and a failing device allocation is an error, not an abort.
 * CPU backend, one rank, no MPI collective is called. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor/backend.h"
#include "executor/model.h"
#include "executor/params.h"

static ExecComms one_rank(void)
{
    ExecComms c;
    memset(&c, 0, sizeof c);
    c.world_size = 1;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) c.size_of[k] = 1;
    return c;
}

#define TP_BIT PARAM_GROUP_BIT(GROUP_TP)
#define DP_BIT PARAM_GROUP_BIT(GROUP_DP_CP)
#define EDP_BIT PARAM_GROUP_BIT(GROUP_EDP)

static void test_reduce_groups_of_each_shard(void **s)
{
    (void)s;
    assert_int_equal(params_reduce_groups(SHARD_REPLICATED), DP_BIT | TP_BIT);
    assert_int_equal(params_reduce_groups(SHARD_COLUMN), DP_BIT);
    assert_int_equal(params_reduce_groups(SHARD_ROW), DP_BIT);
    assert_int_equal(params_reduce_groups(SHARD_VOCAB), DP_BIT);
    assert_int_equal(params_reduce_groups(SHARD_EXPERT), EDP_BIT);
    assert_int_equal(params_reduce_groups(SHARD_EXPERT_COLUMN), EDP_BIT);
    assert_int_equal(params_reduce_groups(SHARD_EXPERT_ROW), EDP_BIT);
}

/* ---- the reduction the table drives ---- */

typedef struct { const float *arena; size_t offset, n; int group; } Call;
static Call calls[16];
static int ncalls;
static const ParamStore *recording;

static void record_all_reduce(Backend *b, void *buf, size_t n, ElemType t, GroupKind g)
{
    (void)b; (void)t;
    assert_true(ncalls < 16);
    for (int ar = 0; ar < 2; ar++) {
        const float *base = recording->arena[ar].grad;
        if ((const float *)buf >= base && (const float *)buf < base + recording->arena[ar].n)
            calls[ncalls++] = (Call){base, (size_t)((const float *)buf - base), n, (int)g};
    }
}

static void test_reduction_follows_the_table(void **s)
{
    (void)s;
    ExecComms c = one_rank();
    c.size_of[GROUP_TP] = 2; c.size_of[GROUP_DP_CP] = 2; c.size_of[GROUP_EDP] = 2;
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    be->all_reduce = record_all_reduce;
    ParamStore ps;
    params_init(&ps, be, 1, 4, 4, 4, 0, 0);
    /* dense arena: A [0,4) replicated, B [4,10) column, C [10,12) replicated;
     * expert arena: D [0,8) expert-column, E [8,11) expert-row */
    assert_int_equal(params_add(&ps, "A", 0, PARAM_PLAIN, SHARD_REPLICATED, 1, 0, 4, 0, 1), 0);
    assert_int_equal(params_add(&ps, "D", 1, PARAM_PLAIN, SHARD_EXPERT_COLUMN, 1, 0, 8, 0, 1), 1);
    assert_int_equal(params_add(&ps, "B", 2, PARAM_PLAIN, SHARD_COLUMN, 1, 0, 6, 0, 1), 2);
    assert_int_equal(params_add(&ps, "E", 3, PARAM_PLAIN, SHARD_EXPERT_ROW, 1, 0, 3, 0, 1), 3);
    assert_int_equal(params_add(&ps, "C", 4, PARAM_PLAIN, SHARD_REPLICATED, 1, 0, 2, 0, 1), 4);
    assert_int_equal(ps.arena[0].n, 12);
    assert_int_equal(ps.arena[1].n, 11);
    assert_int_equal(ps.params[4].offset, 10);
    assert_int_equal(ps.params[3].offset, 8);
    assert_int_equal(params_allocate(&ps, &err), 0);
    recording = &ps;
    ncalls = 0;
    params_reduce_grads(&ps);
    /* dense: TP over the two replicated runs, then DP*CP over the whole
     * arena; experts: EDP over the whole arena */
    assert_int_equal(ncalls, 4);
    Call want[4] = {{ps.arena[0].grad, 0, 4, GROUP_TP}, {ps.arena[0].grad, 10, 2, GROUP_TP},
                    {ps.arena[0].grad, 0, 12, GROUP_DP_CP}, {ps.arena[1].grad, 0, 11, GROUP_EDP}};
    for (int i = 0; i < 4; i++) {
        assert_ptr_equal(calls[i].arena, want[i].arena);
        assert_int_equal(calls[i].offset, want[i].offset);
        assert_int_equal(calls[i].n, want[i].n);
        assert_int_equal(calls[i].group, want[i].group);
    }
    /* groups of one: nothing to sum */
    c.size_of[GROUP_TP] = c.size_of[GROUP_DP_CP] = c.size_of[GROUP_EDP] = 1;
    ncalls = 0;
    params_reduce_grads(&ps);
    assert_int_equal(ncalls, 0);
    params_free(&ps);
    be->destroy(be);
}

/* ---- the table of a model ---- */

static void make_plan(Plan *p, const char *model)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(model_spec_tiny(model, &p->model), 0);
    p->map.world = 1; p->map.tp = p->map.cp = p->map.pp = p->map.vpp = 1;
    p->map.ep = p->map.etp = 1;
    MpError err;
    assert_int_equal(mapping_resolve(&p->map, p->model.num_experts, &err), 0);
    p->train.seq_len = 8; p->train.micro_batch = 1; p->train.global_batch = 1;
}

static void test_model_shards(void **s)
{
    (void)s;
    ExecComms c = one_rank();
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    Plan plan;
    make_plan(&plan, "tiny-moe-shared");   /* layer 0 dense, layers 1-2 MoE + shared expert */
    Model *m;
    assert_int_equal(model_create(&plan, 0, 7, be, &m, &err), 0);
    static const struct { const char *name; ParamShard shard; } want[] = {
        {"embedding", SHARD_VOCAB}, {"final_norm", SHARD_REPLICATED}, {"output", SHARD_VOCAB},
        {"layer0.attn_norm", SHARD_REPLICATED}, {"layer0.wqkv", SHARD_COLUMN},
        {"layer0.wo", SHARD_ROW}, {"layer0.mlp_norm", SHARD_REPLICATED},
        {"layer0.mlp.w13", SHARD_COLUMN}, {"layer0.mlp.w2", SHARD_ROW},
        {"layer1.attn_norm", SHARD_REPLICATED}, {"layer1.wqkv", SHARD_COLUMN},
        {"layer1.wo", SHARD_ROW}, {"layer1.mlp_norm", SHARD_REPLICATED},
        {"layer1.router", SHARD_REPLICATED}, {"layer1.experts.w13", SHARD_EXPERT_COLUMN},
        {"layer1.experts.w2", SHARD_EXPERT_ROW}, {"layer1.shared.w13", SHARD_COLUMN},
        {"layer1.shared.w2", SHARD_ROW},
    };
    int n = (int)(sizeof want / sizeof want[0]);
    assert_true(model_num_params(m) >= n);
    for (int i = 0; i < n; i++) {
        const ParamInfo *p = model_param(m, i);
        assert_string_equal(p->name, want[i].name);
        assert_int_equal(p->shard, want[i].shard);
        int expert = want[i].shard == SHARD_EXPERT_COLUMN || want[i].shard == SHARD_EXPERT_ROW;
        assert_int_equal(p->expert, expert);
        assert_int_equal(p->reduce_groups,
                         expert ? EDP_BIT : want[i].shard == SHARD_REPLICATED ? DP_BIT | TP_BIT : DP_BIT);
    }
    /* 3 + 6 (dense layer) + 9 per MoE layer with a shared expert */
    assert_int_equal(model_num_params(m), 3 + 6 + 2 * 9);
    model_destroy(m);
    be->destroy(be);
}

/* ---- forward and backward as separate calls ---- */

static void grads(Model *m, float *out)
{
    size_t off = 0;
    for (int p = 0; p < model_num_params(m); p++) {
        model_param_grad_host(m, p, out + off);
        off += model_param(m, p)->n;
    }
}

static void test_separate_forward_backward(void **s)
{
    (void)s;
    ExecComms c = one_rank();
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    Plan plan;
    make_plan(&plan, "tiny-moe-shared");
    Model *a, *b;
    assert_int_equal(model_create(&plan, 0, 7, be, &a, &err), 0);
    assert_int_equal(model_create(&plan, 0, 7, be, &b, &err), 0);
    model_set_aux_loss_coeff(a, 1e-2f);
    model_set_aux_loss_coeff(b, 1e-2f);
    assert_int_equal(model_slots(a), 1);
    int32_t tok[8], tgt[8];
    for (int i = 0; i < 8; i++) { tok[i] = (5 * i + 3) % 128; tgt[i] = (5 * tok[i] + 3) % 128; }
    size_t n = model_local_params(a);
    float *ga = malloc(n * sizeof(float)), *gb = malloc(n * sizeof(float));
    model_zero_grads(a);
    model_zero_grads(b);
    double la, lb, aux;
    assert_int_equal(model_forward_backward(a, tok, tgt, 1.0f / 8, &la, &err), 0);
    assert_int_equal(model_forward(b, 0, tok, tgt, 1.0f / 8, &err), 0);
    assert_int_equal(model_backward(b, 0, &err), 0);
    assert_int_equal(model_read_losses(b, GROUP_KIND_COUNT, &lb, &aux), 0);
    lb += aux;
    assert_true(la == lb);
    /* ln 128 = 4.852 per token at initialisation (8 tokens summed) plus aux */
    assert_true(la / 8 > 4.5 && la / 8 < 5.2);
    grads(a, ga);
    grads(b, gb);
    assert_memory_equal(ga, gb, n * sizeof(float));
    assert_int_equal(model_forward(b, 1, tok, tgt, 1.0f / 8, &err), -1);
    assert_non_null(strstr(err.msg, "slot 1"));
    free(ga); free(gb);
    model_destroy(a);
    model_destroy(b);
    be->destroy(be);
}

/* ---- a failing device allocation is an error ---- */

static int allocs_left;
static void *(*real_alloc)(Backend *b, size_t bytes);
static void *failing_alloc(Backend *b, size_t bytes)
{
    if (allocs_left-- <= 0) return NULL;
    return real_alloc(b, bytes);
}

static void test_allocation_failure_is_an_error(void **s)
{
    (void)s;
    ExecComms c = one_rank();
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    real_alloc = be->alloc;
    be->alloc = failing_alloc;
    Plan plan;
    make_plan(&plan, "tiny-moe");
    Model *m = NULL;
    /* the 8 arena buffers (CPU: the act copy is the master) and 2 step
     * buffers succeed, the third step buffer fails */
    allocs_left = 10;
    err.msg[0] = 0;
    assert_int_equal(model_create(&plan, 0, 7, be, &m, &err), -1);
    assert_non_null(strstr(err.msg, "device memory"));
    /* the arenas themselves */
    allocs_left = 2;
    assert_int_equal(model_create(&plan, 0, 7, be, &m, &err), -1);
    assert_non_null(strstr(err.msg, "arena"));
    be->destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_groups_of_each_shard),
        cmocka_unit_test(test_reduction_follows_the_table),
        cmocka_unit_test(test_model_shards),
        cmocka_unit_test(test_separate_forward_backward),
        cmocka_unit_test(test_allocation_failure_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
