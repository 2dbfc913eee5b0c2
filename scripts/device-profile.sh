#!/usr/bin/env bash
# device-profile.sh: where the executor's single-GPU step spends its time, in
# one device call (issue 18: "in whatever order the profile says").
#
#   scripts/device-profile.sh build   (here) dist/ (scripts/device-execute.sh
#       build) and build/simgemm/expert_gemm (cuBLAS's rate at large shapes)
#   scripts/device-profile.sh run     (on the device machine) for Mixtral-8x7B
#       shapes, first 4 layers, sequence 4096, random tokens: mbs 4 x 4
#       micro-batches (cuDNN and the own attention) and mbs 1 x 1, each with
#       `execute --op-profile` (every operation timed with CUDA events: the
#       device machine has no Nsight Systems); then expert_gemm (cuBLAS's
#       rate at large shapes: the GEMM roofline).
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
    local common=(--model mixtral-8x7b --cluster dgx-h200 --gpus 1 --seq 4096 --layers "${LAYERS:-4}" --steps "${STEPS:-6}"
                  --warmup 2 --random-tokens --lr 1e-4 --seed 1234 --optimizer-sharding none --overlap none)
    local mbs gbs att
    for mbs in 4 1; do
        gbs=$((mbs == 4 ? 16 : 1))
        for att in cudnn own; do
            [ "$att" = own ] && [ "$mbs" = 1 ] && continue
            echo "== mbs $mbs gbs $gbs, attention $att, every operation timed"
            timeout 200 dist/moeplan execute "${common[@]}" --mbs $mbs --gbs $gbs --attention $att \
                --op-profile "$OUT/ops_${att}_mbs$mbs.json" > "$OUT/ops_${att}_mbs$mbs.log" 2>&1
            echo "exit status $?"
            sed -n '/step time/,/peak memory/p' "$OUT/ops_${att}_mbs$mbs.log"
            sed -n '/operations per step/,$p' "$OUT/ops_${att}_mbs$mbs.log" | head -${OPS_ROWS:-40}
        done
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
