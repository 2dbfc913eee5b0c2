/* test_topo.c: hwloc detection sees this machine, and `moeplan topo --out`
 * writes a cluster file that loads back through the catalog loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/catalog.h"
#include "core/topo_detect.h"

static void test_detect(void **state) {
    (void)state;
    TopoInfo t;
    MpError err;
    assert_int_equal(topo_detect(&t, &err), 0);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(t.cores >= 1 && t.cores <= online); /* cores never exceed hardware threads */
    assert_true(t.num_gpus >= 0 && t.num_ib_nics >= 0);
}

static void test_cluster_file_round_trip(void **state) {
    (void)state;
    const char *bin = getenv("MOEPLAN_BIN") ? getenv("MOEPLAN_BIN") : "build/moeplan";
    char path[] = "/tmp/moeplan-topo-XXXXXX", cmd[1024];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s topo --base dgx-h200 --out %s", bin, path);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    Cluster c, base;
    MpError err;
    if (cluster_lookup(path, &c, &err)) fail_msg("%s", err.msg);
    assert_int_equal(cluster_lookup("dgx-h200", &base, &err), 0);
    assert_string_equal(c.name, "this-dgx-h200");
    assert_true(c.peak_bf16_flops == base.peak_bf16_flops);
    assert_true(c.gpus_per_node >= 1);
    remove(path);
    snprintf(cmd, sizeof cmd, "%s topo --base no-such-cluster --json >/dev/null 2>&1", bin);
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_cluster_file_round_trip),
    };
    return cmocka_run_group_tests_name("topo", tests, NULL, NULL);
}
