#!/usr/bin/env bash
# device-execute.sh: the executor's GPU tests and benchmark, in one device call.
#
#   scripts/device-execute.sh build   (here) make -j2, the GPU tests, make bundle
#       -> dist/ (moeplan, gpu-tests, libraries), plus dist/lib-mpi: the Open MPI
#       libraries moeplan links (used on the device only if it lacks them)
#   scripts/device-execute.sh run     (on the device machine) prints the GPUs,
#       runs every GPU test in dist/gpu-tests, or those named in GPU_TESTS
#       (the NCCL bandwidth test writes $OUT/nccl_bw.json), then
#       bench/execute-device.sh; logs under $OUT
#
# Device call (NVLink multicast stays off: KINDS.md):
#   run(command="export NCCL_NVLS_ENABLE=0; scripts/device-execute.sh run",
#       carry=["dist"], kind="nvidia-h200-x2")
set -uo pipefail
cd "$(dirname "$0")/.."

build() {
    set -e
    make -j2 gpu-build
    make bundle
    mkdir -p dist/lib-mpi
    ldd build/moeplan | awk '/=> \// {print $3}' | grep -E 'libmpi|libopen-|libevent|libpmix|libhwloc' |
        while read -r lib; do cp -L "$lib" dist/lib-mpi/; done
    du -sh dist
}

run() {
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
    OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"; export OUT
    # transitive dependencies (libglpk -> libamd, libcolamd) do not see the
    # binary's $ORIGIN/lib run path: put dist/lib on the search path
    export LD_LIBRARY_PATH="$PWD/dist/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if ldd dist/moeplan | grep -q 'not found'; then
        export LD_LIBRARY_PATH="$PWD/dist/lib-mpi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "note: using the carried Open MPI libraries (dist/lib-mpi)"
    fi
    ldd dist/moeplan | grep 'not found' && echo "moeplan: missing libraries above"
    nvidia-smi -L
    nvidia-smi topo -m 2>/dev/null | head -8
    local failed=0
    echo "== GPU tests"
    for t in dist/gpu-tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        case " ${GPU_TESTS:-$name} " in *" $name "*) ;; *) continue ;; esac
        if [ "$name" = test_executor ]; then
            # parallel invariance on every GPU of the machine (1 GPU vs DP/EP/ETP runs)
            timeout 300 "$t" --nproc "$(nvidia-smi -L | grep -c '^GPU')" --mode invariance >"$OUT/$name.log" 2>&1; rc=$?
            grep -E 'PASS|FAIL|checks' "$OUT/$name.log" | tail -20
        elif [ "$name" = test_nccl_bw ]; then
            timeout 120 "$t" --json "$OUT/nccl_bw.json" 2>&1 | tee "$OUT/$name.log"; rc=${PIPESTATUS[0]}
        else
            timeout 120 "$t" >"$OUT/$name.log" 2>&1; rc=$?
            tail -4 "$OUT/$name.log"
        fi
        echo "$name: exit status $rc"
        [ "$rc" -eq 0 ] || failed=1
    done
    echo "== benchmark"
    bench/execute-device.sh || failed=1
    return $failed
}

case "${1:-run}" in
    build) build ;;
    run) run ;;
    *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
