#!/usr/bin/env bash
# run-gpu-tests.sh DIR: runs every GPU test binary in DIR/gpu-tests (a build
# directory, or dist/ on the device machine) and prints one closing line
# "gpu tests: N passed, M failed" (one per binary).
set -u
export NCCL_NVLS_ENABLE=0
dir=${1:-build}
passed=0; failed=0
for t in "$dir"/gpu-tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    echo "== $t"
    if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $t"; fi
done
echo "gpu tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
