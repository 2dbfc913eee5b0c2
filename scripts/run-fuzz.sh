#!/usr/bin/env bash
# run-fuzz.sh BUILD_DIR SECONDS NAME...: runs each libFuzzer harness
# BUILD_DIR/fuzzers/fuzz_NAME for SECONDS, one after another (niced), starting
# from the committed corpus tests/fuzz/corpus/NAME/ (read only: new inputs go
# to BUILD_DIR/run/NAME/corpus/), with the JSON dictionary tests/fuzz/json.dict
# for the JSON harnesses.  Findings (crash-*, leak-*, timeout-*, oom-* files)
# are written to BUILD_DIR/run/NAME/findings/; add a real one to the
# committed corpus once it is fixed.  Prints one line per harness and a total;
# exits 1 if any harness found something.
set -u
build=$1; seconds=$2; shift 2
# the file-reading harnesses write each input to a file: tmpfs is ~9x faster than /tmp here
[ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
total_execs=0; total_findings=0
printf '%-12s %8s %12s %8s %8s  %s\n' harness seconds executions exec/s corpus findings
for name in "$@"; do
    bin="$build/fuzzers/fuzz_$name"
    seeds="tests/fuzz/corpus/$name"
    run="$build/run/$name"
    [ -x "$bin" ] || { echo "run-fuzz: $bin: not built (make FUZZ=1 fuzz-build)"; exit 2; }
    [ -d "$seeds" ] || { echo "run-fuzz: $seeds: no corpus"; exit 2; }
    mkdir -p "$run/corpus" "$run/findings"
    dict=""
    [ "$name" != data ] && dict="-dict=tests/fuzz/json.dict"
    # -timeout: one input running 10 s is a hang; -rss_limit_mb: a 2 GiB
    # process is a finding (the machine is shared)
    nice -n 10 "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        $dict -artifact_prefix="$run/findings/" "$run/corpus" "$seeds" >"$run/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log" | tail -1)
    secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/log" | tail -1)
    found=$(find "$run/findings" -type f | wc -l)
    if [ $rc -ne 0 ] && [ "$found" -eq 0 ]; then found=1; fi
    corpus=$(find "$run/corpus" -type f | wc -l)
    list=$(cd "$run/findings" && ls 2>/dev/null | tr '\n' ' ')
    printf '%-12s %8s %12s %8s %8s  %s\n' "$name" "$seconds" "${execs:-?}" "${secs:-?}" "$corpus" \
        "$([ "$found" -eq 0 ] && echo none || echo "$found: $list(log: $run/log)")"
    total_execs=$((total_execs + ${execs:-0})); total_findings=$((total_findings + found))
done
echo "fuzz: $total_execs executions, $total_findings findings"
[ "$total_findings" -eq 0 ]
