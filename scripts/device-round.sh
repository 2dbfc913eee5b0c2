#!/usr/bin/env bash
# device-round.sh: one device call that checks and measures a round of
# executor changes on one GPU (the device tool allows a few calls a session,
# each at most 600 s; this keeps them to one):
#   1. the GPU kernel tests and timings (test_kernels: every kernel against
#      the CPU reference, the expert GEMMs loop / grouped batched / strided
#      on padded groups at Qwen3's shapes);
#   2. the executor beside its PyTorch peer on the same work
#      (bench/execute-vs-torch.sh run: Mixtral-8x7B shapes mbs 4 x 4 and
#      mbs 1, Qwen3-30B-A3B shapes mbs 4 x 4), within VS_BUDGET seconds;
#   3. before / after: the binary of BASE_REV (.devcarry/base/dist, built by
#      scripts/device-before-after.sh build REV) and today's, same work, own
#      attention, alternated twice at mbs 1 and once at mbs 4 (phases only);
#   4. an op profile of the Qwen3 step (where it goes now);
#   5. with CALIB=1, the attention kernels of the context-sweep plans
#      (scripts/device-validate.sh calibrate-cp), if time is left.
#
#   here:    scripts/device-execute.sh build                 (-> dist/)
#   device:  run(command="scripts/device-round.sh run", carry=["dist", ".devcarry/base"])
#   env:     LAYERS (4; 2 on an 80 GB H100), CLUSTER (dgx-h200 / dgx-h100 by the GPU's name)
# Files under $OUT (the device tool brings back 8): test_kernels.log,
# execute-vs-torch.json, vs_<work>_execute.json (the executor's result
# documents: phases, memory measured beside predicted), round.log
# (everything printed), ops_qwen3.json, calibration-cp.json (CALIB=1).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
left() { echo $((${BUDGET:-570} - ($(date +%s) - T0))); }

run() {
    export NCCL_NVLS_ENABLE=0
    OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"; export OUT
    exec > >(tee "$OUT/round.log") 2>&1
    local gpu; gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    echo "GPU: $gpu"
    case "$gpu" in *H100*) export LAYERS=${LAYERS:-2} CLUSTER=${CLUSTER:-dgx-h100} ;;
                   *) export LAYERS=${LAYERS:-4} CLUSTER=${CLUSTER:-dgx-h200} ;; esac
    local cudnn_dir; cudnn_dir=$(scripts/device-attention.sh cudnn-dir)
    local base_ld=${LD_LIBRARY_PATH:-}
    export LD_LIBRARY_PATH="$PWD/dist/lib${cudnn_dir:+:$cudnn_dir}${base_ld:+:$base_ld}"
    ldd dist/moeplan | grep -q 'not found' && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$PWD/dist/lib-mpi"

    echo "== 1. GPU kernel tests (test_kernels)"
    timeout 150 dist/gpu-tests/test_kernels > "$OUT/test_kernels.log" 2>&1; echo "test_kernels: exit status $?"
    grep -E "FAIL|checks|qwen3|strided" "$OUT/test_kernels.log" | head -30

    echo "== 2. executor beside PyTorch ($(left) s left)"
    (export LD_LIBRARY_PATH="$base_ld"; BUDGET=$(( $(left) - ${AFTER_VS:-170} )) bench/execute-vs-torch.sh run 2>&1 |
        grep -E "^\||exit status|skipped|Error|error" | head -30)

    echo "== 3. before / after, own attention ($(left) s left)"
    local common=(--cluster "$CLUSTER" --gpus 1 --seq 4096 --layers "$LAYERS" --steps 6 --warmup 2 --random-tokens
                  --lr 1e-4 --seed 1234 --optimizer-sharding none --overlap none --model mixtral-8x7b)
    local side mbs gbs bin extra
    for side in new base new base new4 base4; do
        [ "$(left)" -lt 60 ] && { echo "-- skipped: $(left) s left"; break; }
        mbs=1; gbs=1; case $side in *4) mbs=4; gbs=16 ;; esac
        bin=dist; extra=(--attention own)
        case $side in base*) bin=.devcarry/base/dist; extra=() ;; esac
        [ -x "$bin/moeplan" ] || { echo "-- $bin/moeplan missing"; continue; }
        printf '%-6s mbs %d: ' "$side" "$mbs"
        timeout 120 "$bin/moeplan" execute "${common[@]}" --mbs $mbs --gbs $gbs "${extra[@]}" 2>&1 |
            awk '/step time|MoE compute|attention  |optimizer/ {printf "%s %s  ", $1 $2, $(NF-2)} END {print ""}'
    done

    echo "== 4. Qwen3 op profile ($(left) s left)"
    if [ "$(left)" -gt 60 ]; then
        timeout 100 dist/moeplan execute --model bench/models/qwen3-30b-a3b-shapes.json --cluster "$CLUSTER" --gpus 1 \
            --seq 4096 --layers "$LAYERS" --mbs 4 --gbs 16 --steps 4 --warmup 2 --random-tokens --lr 1e-4 --seed 1234 \
            --optimizer-sharding none --overlap none --op-profile "$OUT/ops_qwen3.json" 2>&1 |
            sed -n '1p;/step time/,/other (embed/p;/operations per step/,$p' | head -28
    fi

    echo "== 5. attention kernels of the context-sweep plans ($(left) s left; CALIB=1 runs it)"
    if [ "${CALIB:-0}" = 1 ] && [ "$(left)" -gt 45 ]; then
        CAL_TIMEOUT=$(( $(left) - 15 )) scripts/device-validate.sh calibrate-cp > /dev/null 2>&1
        echo "calibrate-cp: exit status $?"
        grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ +TP" "$OUT/calibrate-cp.log" | head -8
        rm -f "$OUT/calibrate-cp.log"
    fi
    rm -f "$OUT"/vs_*.log "$OUT"/vs_*_eager.json "$OUT"/vs_*_compile.json   # the executor's result JSONs stay
    ls "$OUT"
}

case "${1:-run}" in
    run) run ;;
    *) echo "usage: $0 run" >&2; exit 2 ;;
esac
