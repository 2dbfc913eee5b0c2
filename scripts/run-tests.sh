#!/usr/bin/env bash
# run-tests.sh BUILD_DIR...: runs every CPU test binary of each build
# directory (cmocka suites, the fuzz-corpus replays, then the multi-rank MPI
# suites under mpirun) and prints one closing line "tests: N passed, M failed".
# A replay (build/tests/fuzz/replay_NAME, tests/fuzz/replay.c) counts each
# corpus file of tests/fuzz/corpus/NAME/ it ran as one passed test.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
passed=0; failed=0; failed_names=""
count() { # $1 = log file: add cmocka's PASSED/FAILED counts
    local p f
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1" | awk '{s+=$1} END {print s+0}')
    echo "$p $f"
}
for build in "$@"; do
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        log=$(mktemp)
        MOEPLAN_BIN="$build/moeplan" "$t" >"$log" 2>&1; rc=$?
        read -r p f < <(count "$log")
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        passed=$((passed + p)); failed=$((failed + f))
        if [ $rc -ne 0 ]; then failed_names="$failed_names $t"; cat "$log"; fi
        printf '%-48s %4d passed %3d failed\n' "$t" "$p" "$f"
        rm -f "$log"
    done
    for t in "$build"/tests/fuzz/replay_*; do
        [ -x "$t" ] || continue
        name=${t##*/replay_}
        log=$(mktemp)
        timeout 300 "$t" "$root/tests/fuzz/corpus/$name" >"$log" 2>&1; rc=$?
        p=$(sed -n 's/^replay_.*: \([0-9]*\) inputs replayed$/\1/p' "$log" | tail -1)
        p=${p:-0}; f=0
        if [ $rc -ne 0 ]; then p=0; f=1; failed_names="$failed_names $t"; cat "$log"; fi
        passed=$((passed + p)); failed=$((failed + f))
        printf '%-48s %4d passed %3d failed\n' "$t" "$p" "$f"
        rm -f "$log"
    done
    for t in "$build"/tests/mpi/test_*; do
        [ -x "$t" ] || continue
        # the CP suite also runs its 8-rank case: all five dimensions
        # (TP2 CP2 PP2, EP4) with the distributed optimizer
        nps="1 2 4"
        case "$t" in */test_exec_cp) nps="1 2 4 8" ;; esac
        for np in $nps; do
            log=$(mktemp)
            # Open MPI's own plugins leak at exit (LeakSanitizer reports them
            # from unloaded modules): leak checking is off for the MPI suites,
            # on for every other suite; ASan's other checks stay on.
            ASAN_OPTIONS=detect_leaks=0 timeout 600 mpirun --oversubscribe -np $np "$t" >"$log" 2>&1; rc=$?
            read -r p f < <(count "$log")
            if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
            passed=$((passed + p)); failed=$((failed + f))
            if [ $rc -ne 0 ]; then failed_names="$failed_names $t(np=$np)"; cat "$log"; fi
            printf '%-48s %4d passed %3d failed\n' "$t (np=$np)" "$p" "$f"
            rm -f "$log"
        done
    done
done
[ -n "$failed_names" ] && echo "failing:$failed_names"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
