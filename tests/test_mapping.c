/* test_mapping.c: the rank generator against every published vector
 * (tests/data/rank-groups.md, a copy of the reference file, parsed here) and
 * property tests over every factorisation of 1..1024 GPUs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapping.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

/* ---- published vectors ------------------------------------------------ */

/* Parses "- kind: [0,1] [2,3]" into groups; returns group count. */
static int parse_groups(const char *line, int *flat, int *group_size) {
    int groups = 0, n = 0, size = 0;
    for (const char *p = strchr(line, '['); p; p = strchr(p, '[')) {
        p++;
        size = 0;
        while (*p && *p != ']') {
            char *end;
            flat[n++] = (int)strtol(p, &end, 10);
            size++;
            p = (*end == ',') ? end + 1 : end;
        }
        groups++;
    }
    *group_size = size;
    return groups;
}

static void test_published_vectors(void **state) {
    (void)state;
    FILE *f = fopen(TEST_DATA "/rank-groups.md", "r");
    assert_non_null(f);
    char line[4096];
    Mapping m = {0};
    int sections = 0, checked_kinds = 0, flat[4096], members[4096];
    bool have = false;
    while (fgets(line, sizeof line, f)) {
        int w, tp, cp, dp, pp = 1, etp, ep, edp;
        if (!strncmp(line, "## ", 3)) {
            have = false;
            /* "## 16 GPUs; attention TP2 CP2 DP4 PP1; experts ETP1 EP8 EDP2" or without CP/PP */
            const char *a = strstr(line, "attention"), *e = strstr(line, "experts");
            if (!a || !e || sscanf(line, "## %d GPUs", &w) != 1) continue;
            const char *s;
            tp = (s = strstr(a, "TP")) && s < e ? atoi(s + 2) : 1;
            cp = (s = strstr(a, "CP")) && s < e ? atoi(s + 2) : 1;
            dp = (s = strstr(a, "DP")) && s < e ? atoi(s + 2) : 1;
            pp = (s = strstr(a, "PP")) && s < e ? atoi(s + 2) : 1;
            etp = (s = strstr(e, "ETP")) ? atoi(s + 3) : 1;
            ep = (s = strstr(e, " EP")) ? atoi(s + 3) : 1;
            edp = (s = strstr(e, "EDP")) ? atoi(s + 3) : 1;
            m = (Mapping){.world = w, .tp = tp, .cp = cp, .pp = pp, .vpp = 1, .etp = etp, .ep = ep};
            MpError err;
            assert_int_equal(mapping_resolve(&m, 0, &err), 0);
            assert_int_equal(m.dp, dp);
            assert_int_equal(m.edp, edp);
            have = true;
            sections++;
            continue;
        }
        char kind[32];
        if (!have || sscanf(line, "- %31[a-z_]:", kind) != 1) continue;
        GroupKind k;
        assert_int_equal(group_kind_parse(kind, &k), 0);
        int size, groups = parse_groups(line, flat, &size);
        assert_int_equal(groups, mapping_num_groups(&m, k));
        assert_int_equal(size, mapping_group_size(&m, k));
        for (int g = 0; g < groups; g++) {
            mapping_group_members(&m, k, g, members);
            for (int i = 0; i < size; i++) {
                if (members[i] != flat[g * size + i])
                    fail_msg("%d GPUs %s group %d member %d: got %d want %d", m.world, kind, g, i, members[i],
                             flat[g * size + i]);
            }
        }
        checked_kinds++;
    }
    fclose(f);
    assert_int_equal(sections, 5);
    assert_int_equal(checked_kinds, 5 * GROUP_KIND_COUNT);
}

/* ---- properties --------------------------------------------------------- */

static void check_kind(const Mapping *m, GroupKind k, int expected_size, unsigned char *seen, int *flat) {
    int n = mapping_group_size(m, k), groups = mapping_num_groups(m, k);
    if (n != expected_size) fail_msg("%s: size %d want %d", group_kind_name(k), n, expected_size);
    assert_int_equal(n * groups, m->world);
    memset(seen, 0, (size_t)m->world);
    mapping_rank_groups(m, k, flat);
    for (int g = 0; g < groups; g++) {
        const int *members = flat + g * n;
        for (int i = 0; i < n; i++) { /* plain checks: this loop runs ~10^9 times */
            int r = members[i];
            if (r < 0 || r >= m->world || (i && r <= members[i - 1]) || seen[r])
                fail_msg("%d GPUs tp%d cp%d pp%d: %s group %d member %d = %d is out of range, "
                         "out of order or in two groups", m->world, m->tp, m->cp, m->pp, group_kind_name(k), g, i, r);
            seen[r] = 1; /* each rank in exactly one group */
        }
        /* group_of_rank agrees, for a sample of groups, on the first and last member */
        if (g % 13 && g != groups - 1) continue;
        int other[4096];
        mapping_group_members(m, k, g, other);
        assert_memory_equal(other, members, sizeof(int) * (size_t)n);
        assert_int_equal(mapping_group_of_rank(m, k, members[n - 1], other), n - 1);
        assert_int_equal(other[0], members[0]);
        assert_int_equal(mapping_group_of_rank(m, k, members[0], NULL), 0);
    }
}

/* Every (tp, cp, pp) and (etp, ep, pp) dividing N, for N = 1..1024, both
 * orders.  The two grids are checked separately (they are independent), and
 * pp groups are checked against their closed form, which makes them
 * identical across the grids whenever the rules allow the mapping. */
static void test_all_factorisations(void **state) {
    (void)state;
    unsigned char *seen = malloc(1024);
    int *members = malloc(sizeof(int) * 1024);
    long mappings = 0;
    for (int w = 1; w <= 1024; w++) {
        for (int a = 1; a <= w; a++) {
            if (w % a) continue;
            for (int b = 1; a * b <= w; b++) {
                if ((w / a) % b) continue;
                for (int pp = 1; a * b * pp <= w; pp++) {
                    if ((w / (a * b)) % pp) continue;
                    for (int order = 0; order < 2; order++) {
                        /* dense grid with tp=a, cp=b; expert grid with etp=a, ep=b */
                        Mapping m = {.world = w, .tp = a, .cp = b, .pp = pp, .vpp = 1, .etp = a, .ep = b,
                                     .order = (RankOrder)order};
                        MpError err;
                        assert_int_equal(mapping_resolve(&m, 0, &err), 0);
                        assert_int_equal(m.dp * a * b * pp, w);
                        check_kind(&m, GROUP_TP, a, seen, members);
                        check_kind(&m, GROUP_CP, b, seen, members);
                        check_kind(&m, GROUP_DP, m.dp, seen, members);
                        check_kind(&m, GROUP_DP_CP, m.dp * b, seen, members);
                        check_kind(&m, GROUP_TP_CP, a * b, seen, members);
                        check_kind(&m, GROUP_PP, pp, seen, members);
                        check_kind(&m, GROUP_ETP, a, seen, members);
                        check_kind(&m, GROUP_EP, b, seen, members);
                        check_kind(&m, GROUP_EDP, m.edp, seen, members);
                        check_kind(&m, GROUP_ETP_EP, a * b, seen, members);
                        /* pp group of rank 0: stride w/pp (pp last) or a*b (pp before dp) */
                        int stride = order == 0 ? w / pp : a * b;
                        mapping_group_members(&m, GROUP_PP, 0, members);
                        for (int i = 0; i < pp; i++) assert_int_equal(members[i], i * stride);
                        mappings++;
                    }
                }
            }
        }
    }
    assert_true(mappings > 10000);
    free(seen);
    free(members);
}

/* With pp last, the dense and expert pp groups coincide for any folding.
 * The expert grid (etp, ep, edp, pp) has the same shape as the dense grid of
 * a mapping with tp = etp and cp = ep, so its pp groups are those. */
static void test_pp_groups_identical_when_folded(void **state) {
    (void)state;
    int dense[64], expert[64];
    for (int w = 8; w <= 256; w *= 2) {
        for (int pp = 1; pp <= 8 && 2 * pp <= w; pp *= 2) {
            Mapping m = {.world = w, .tp = 2, .cp = 1, .pp = pp, .vpp = 1, .etp = 1, .ep = w / pp};
            MpError err;
            assert_int_equal(mapping_resolve(&m, 0, &err), 0);
            for (int r = 0; r < w; r += 3) {
                mapping_group_of_rank(&m, GROUP_PP, r, dense);
                Mapping e = m;
                e.tp = m.etp;
                e.cp = m.ep; /* dense grid shaped like m's expert grid */
                assert_int_equal(mapping_resolve(&e, 0, &err), 0);
                mapping_group_of_rank(&e, GROUP_PP, r, expert);
                assert_memory_equal(dense, expert, sizeof(int) * (size_t)pp);
            }
        }
    }
}

static void test_rules(void **state) {
    (void)state;
    MpError err;
    Mapping m = {.world = 128, .tp = 3, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 8};
    assert_int_equal(mapping_resolve(&m, 8, &err), -1);
    assert_non_null(strstr(err.msg, "tp: tp*cp*pp = 3 does not divide gpus 128"));
    m = (Mapping){.world = 128, .tp = 2, .cp = 1, .pp = 8, .vpp = 1, .etp = 1, .ep = 32};
    assert_int_equal(mapping_resolve(&m, 8, &err), -1);
    assert_non_null(strstr(err.msg, "ep: etp*ep*pp = 256 does not divide gpus 128"));
    m = (Mapping){.world = 64, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 16};
    assert_int_equal(mapping_resolve(&m, 8, &err), -1);
    assert_non_null(strstr(err.msg, "ep: 16 does not divide the model's 8 experts"));
    m = (Mapping){.world = 64, .tp = 2, .cp = 1, .pp = 2, .vpp = 1, .etp = 1, .ep = 4,
                  .order = ORDER_TP_CP_EP_PP_DP};
    assert_int_equal(mapping_resolve(&m, 8, &err), -1); /* dp 16, edp 8 */
    assert_non_null(strstr(err.msg, "order:"));
    m.ep = 2; /* edp 16 == dp 16: allowed */
    assert_int_equal(mapping_resolve(&m, 8, &err), 0);
    m = (Mapping){.world = 8, .tp = 0, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1};
    assert_int_equal(mapping_resolve(&m, 8, &err), -1);
    assert_non_null(strstr(err.msg, "tp: must be a positive integer"));
    m = (Mapping){.world = -8, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1};
    assert_int_equal(mapping_resolve(&m, 8, &err), -1);
    assert_non_null(strstr(err.msg, "gpus: must be a positive integer"));
    m = (Mapping){.world = 8, .tp = 1, .cp = 1, .pp = 1, .vpp = 2, .etp = 1, .ep = 1};
    assert_int_equal(mapping_resolve(&m, 8, &err), -1);
    assert_non_null(strstr(err.msg, "vpp:"));
}

static void test_placement(void **state) {
    (void)state;
    GroupPlacement p;
    /* 128 GPUs, TP2 PP8 EP8 folded: ep group = 8 consecutive ranks = one node */
    Mapping m = {.world = 128, .tp = 2, .cp = 1, .pp = 8, .vpp = 1, .etp = 1, .ep = 8};
    MpError err;
    assert_int_equal(mapping_resolve(&m, 8, &err), 0);
    mapping_placement(&m, GROUP_EP, 8, &p);
    assert_int_equal(p.size, 8);
    assert_int_equal(p.nodes, 1);
    assert_int_equal(p.max_per_node, 8);
    /* coupled TP2 EP4 ETP2: ep stride 2, members 0,2,4,6: one node, 4 per node */
    m.etp = 2; m.ep = 4;
    assert_int_equal(mapping_resolve(&m, 8, &err), 0);
    mapping_placement(&m, GROUP_EP, 8, &p);
    assert_int_equal(p.nodes, 1);
    assert_int_equal(p.max_per_node, 4);
    /* dp group: 8 ranks with stride 2 over 16 ranks (dp = 128/16 = 8) -> 2 nodes, 4 each */
    mapping_placement(&m, GROUP_DP, 8, &p);
    assert_int_equal(p.size, 8);
    assert_int_equal(p.nodes, 2);
    assert_int_equal(p.max_per_node, 4);
    /* pp: stride 16 -> 8 nodes, 1 per node */
    mapping_placement(&m, GROUP_PP, 8, &p);
    assert_int_equal(p.nodes, 8);
    assert_int_equal(p.max_per_node, 1);
    /* TP3 on 8-GPU nodes: group [6,7,8] straddles two nodes: worst group reported */
    Mapping t = {.world = 24, .tp = 3, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1};
    assert_int_equal(mapping_resolve(&t, 0, &err), 0);
    mapping_placement(&t, GROUP_TP, 8, &p);
    assert_int_equal(p.nodes, 2);
    assert_int_equal(p.max_per_node, 2);
    /* a job smaller than a node */
    Mapping s = {.world = 4, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 4};
    assert_int_equal(mapping_resolve(&s, 8, &err), 0);
    mapping_placement(&s, GROUP_EP, 8, &p);
    assert_int_equal(p.nodes, 1);
    assert_int_equal(p.max_per_node, 4);
}

/* The residue-based placement against a walk over every group's members
 * (group_placement on mapping_group_members), over every factorisation of
 * small worlds, both orders, every group kind and several node sizes
 * (dividing, multiple of and coprime to the group strides). */
static void test_placement_matches_every_group(void **state) {
    (void)state;
    static const int worlds[] = {24, 32, 48};
    static const int nodes[] = {1, 3, 4, 8, 16};
    int *members = malloc(128 * sizeof *members);
    assert_non_null(members);
    long checked = 0;
    for (size_t wi = 0; wi < sizeof worlds / sizeof worlds[0]; wi++) {
        int W = worlds[wi];
        for (int tp = 1; tp <= W; tp++) for (int cp = 1; cp * tp <= W; cp++) for (int pp = 1; pp * cp * tp <= W; pp++) {
            if (W % (tp * cp * pp)) continue;
            for (int etp = 1; etp * pp <= W; etp++) for (int ep = 1; ep * etp * pp <= W; ep++) {
                if (W % (etp * ep * pp)) continue;
                for (int order = 0; order < 2; order++) {
                    Mapping m = {.world = W, .tp = tp, .cp = cp, .pp = pp, .vpp = 1, .etp = etp, .ep = ep,
                                 .order = order ? ORDER_TP_CP_EP_PP_DP : ORDER_TP_CP_EP_DP_PP};
                    MpError err;
                    if (mapping_resolve(&m, 0, &err)) continue;
                    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
                        int n = mapping_group_size(&m, (GroupKind)k), groups = mapping_num_groups(&m, (GroupKind)k);
                        for (size_t ni = 0; ni < sizeof nodes / sizeof nodes[0]; ni++) {
                            GroupPlacement want = {0}, got;
                            for (int idx = 0; idx < groups; idx++) {
                                GroupPlacement p;
                                mapping_group_members(&m, (GroupKind)k, idx, members);
                                group_placement(members, n, nodes[ni], &p);
                                if (!idx || p.nodes > want.nodes || (p.nodes == want.nodes && p.max_per_node < want.max_per_node))
                                    want = p;
                            }
                            mapping_placement(&m, (GroupKind)k, nodes[ni], &got);
                            if (got.nodes != want.nodes || got.max_per_node != want.max_per_node || got.size != want.size)
                                fail_msg("W%d tp%d cp%d pp%d etp%d ep%d order%d kind %s node %d: got %d nodes x %d, want %d x %d",
                                         W, tp, cp, pp, etp, ep, order, group_kind_name((GroupKind)k), nodes[ni],
                                         got.nodes, got.max_per_node, want.nodes, want.max_per_node);
                            checked++;
                        }
                    }
                }
            }
        }
    }
    free(members);
    assert_true(checked > 10000);
}

/* A million GPUs: the placement needs no per-group loop and no stack array
 * the size of a group (a VLA there overflowed the stack at 2,097,152 GPUs). */
static void test_placement_huge_world(void **state) {
    (void)state;
    Mapping m = {.world = 1 << 20, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1};
    MpError err;
    assert_int_equal(mapping_resolve(&m, 0, &err), 0);
    GroupPlacement p;
    mapping_placement(&m, GROUP_DP, 8, &p);
    assert_int_equal(p.size, 1 << 20);
    assert_int_equal(p.nodes, (1 << 20) / 8);
    assert_int_equal(p.max_per_node, 8);
    /* tp 8: dp stride 8 -> one member per node */
    m.tp = 8;
    assert_int_equal(mapping_resolve(&m, 0, &err), 0);
    mapping_placement(&m, GROUP_DP, 8, &p);
    assert_int_equal(p.nodes, (1 << 20) / 8);
    assert_int_equal(p.max_per_node, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_all_factorisations),
        cmocka_unit_test(test_pp_groups_identical_when_folded),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_placement),
        cmocka_unit_test(test_placement_matches_every_group),
        cmocka_unit_test(test_placement_huge_world),
    };
    return cmocka_run_group_tests_name("mapping", tests, NULL, NULL);
}
