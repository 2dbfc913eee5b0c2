#!/usr/bin/env bash
# device-profile.sh: where the executor's single-GPU step spends its time, in
# one device call (issue 18: "in whatever order the profile says").
#
#   scripts/device-profile.sh build   (here) dist/ (scripts/device-execute.sh
#       build) and build/simgemm/expert_gemm (cuBLAS's rate at large shapes)
#   scripts/device-profile.sh run     (on the device machine) each run of
#       PROFILES (default: Mixtral-8x7B shapes mbs 4 x 4 micro-batches with
#       cuDNN and the own attention, mbs 1 x 1), first LAYERS (4) layers,
#       sequence 4096, random tokens, with `execute --op-profile` (every
#       operation timed with CUDA events and the host's time inside it: the
#       device machine has no Nsight Systems); KERNEL_TESTS=1 first runs the
#       GPU kernel tests and timings; then expert_gemm (cuBLAS's rate at large
#       shapes: the GEMM roofline; GEMM_BENCH=0 skips it).
#
# Device call:
#   run(command="scripts/device-profile.sh run", carry=["dist", "build/simgemm"])
set -uo pipefail
cd "$(dirname "$0")/.."

build() {
    set -e
    scripts/device-execute.sh build
    mkdir -p build/simgemm
    nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -o build/simgemm/expert_gemm bench/expert_gemm.cu -lcublas
}

run() {
    export NCCL_NVLS_ENABLE=0
    OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"
    local cudnn_dir
    cudnn_dir=$(scripts/device-attention.sh cudnn-dir)
    [ -n "$cudnn_dir" ] && export LD_LIBRARY_PATH="$cudnn_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$PWD/dist/lib:$LD_LIBRARY_PATH"
    ldd dist/moeplan | grep -q 'not found' && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$PWD/dist/lib-mpi"
    nvidia-smi -L
    if [ "${KERNEL_TESTS:-0}" = 1 ]; then
        echo "== GPU kernel tests and timings (test_kernels)"
        timeout 200 dist/gpu-tests/test_kernels > "$OUT/test_kernels.log" 2>&1; echo "test_kernels: exit status $?"
        grep -E "FAIL|passed|failed|qwen3|grouped|auto" "$OUT/test_kernels.log" | head -40
    fi
    # PROFILES: runs "NAME:MODEL:MBS:GBS:ATTENTION:EXPERT_GEMM[:BIN]" (BIN: dist
    # or base = .devcarry/base/dist, a binary without --op-profile: phases only;
    # a NAME ending in _noprof runs without the op profile)
    local profiles=${PROFILES:-"mixtral_cudnn_mbs4:mixtral-8x7b:4:16:cudnn:auto mixtral_own_mbs4:mixtral-8x7b:4:16:own:auto mixtral_cudnn_mbs1:mixtral-8x7b:1:1:cudnn:auto"}
    local p name model mbs gbs att eg bin extra
    for p in $profiles; do
        IFS=: read -r name model mbs gbs att eg bin <<< "$p"
        [ "$model" = qwen3 ] && model=bench/models/qwen3-30b-a3b-shapes.json
        bin=${bin:-dist}
        extra=(--attention "$att" --expert-gemm "$eg" --op-profile "$OUT/ops_$name.json")
        case "$name" in *_noprof) extra=(--attention "$att" --expert-gemm "$eg") ;; esac
        if [ "$bin" = base ]; then bin=.devcarry/base/dist; extra=(); fi
        echo "== $name: $model mbs $mbs gbs $gbs, attention $att, expert GEMMs $eg ($bin)"
        timeout 200 "$bin/moeplan" execute --model "$model" --cluster "${CLUSTER:-dgx-h200}" --gpus 1 --seq 4096 \
            --layers "${LAYERS:-4}" --steps "${STEPS:-6}" --warmup 2 --random-tokens --lr 1e-4 --seed 1234 \
            --optimizer-sharding none --overlap none --mbs "$mbs" --gbs "$gbs" "${extra[@]}" > "$OUT/ops_$name.log" 2>&1
        echo "exit status $?"
        head -2 "$OUT/ops_$name.log"
        sed -n '/step time/,/peak memory/p' "$OUT/ops_$name.log"
        sed -n '/operations per step/,$p' "$OUT/ops_$name.log" | head -"${OPS_ROWS:-40}"
    done
    if [ -x build/simgemm/expert_gemm ] && [ "${GEMM_BENCH:-1}" = 1 ]; then
        echo "== cuBLAS at large shapes"
        timeout 120 build/simgemm/expert_gemm > "$OUT/expert_gemm.log" 2>&1; echo "expert_gemm: exit status $?"
        head -20 "$OUT/expert_gemm.log"
    fi
}

case "${1:-run}" in
    build) build ;;
    run) run ;;
    *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
