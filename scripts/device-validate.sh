#!/usr/bin/env bash
# device-validate.sh: measure the machine, calibrate the simulator on it and
# check the prediction against the executor, in one device call
# (docs/validation.md; issue 6 on the kinds that are lent).
#
#   here:    scripts/device-execute.sh build                 (-> dist/, git-ignored)
#   device:  run(command="export NCCL_NVLS_ENABLE=0; scripts/device-validate.sh",
#                carry=["dist"], kind="nvidia-h200-x2")
#   then:    bench/validation-report.sh <files_at>           (tables, here)
#
# Writes under $OUT (7 files: the device tool brings back at most 8):
#   validate.log                 everything printed, the logs below appended
#   nccl_bw.json                 test_nccl_bw: all-gather, reduce-scatter,
#                                all-reduce, all-to-all, send/recv over every
#                                visible GPU, 1 MiB .. 1 GiB
#   calibration.json
#                                test_calibrate: cuBLAS GEMMs at the executor's
#                                shapes, our attention, copy bandwidth on GPU 0,
#                                the collectives copied in
#   exec_<name>.json             moeplan execute --calibration calibration.json:
#                                measured, predicted from defaults and predicted
#                                from the calibration, for
#     x7b_1gpu     Mixtral-8x7B shapes, 4 layers, 1 GPU EP1
#     x7b_dp2ep2   Mixtral-8x7B shapes, 4 layers, DP2 EP2 ETP1   (2+ GPUs)
#     x22b_1gpu    Mixtral-8x22B shapes, 2 layers, 1 GPU EP1
#     x22b_dp2ep2  Mixtral-8x22B shapes, 2 layers, DP2 EP2 ETP1  (2+ GPUs)
#   all at sequence 4096, mbs 4, 4 micro-batches per data-parallel rank,
#   random tokens, 8 steps of which 2 warm-up (bench/execute-device.sh's set-up).
#
# Mode calibrate-cp: the attention kernels of plans, at the shapes the
# simulator prices (every ring step of CP > 1 and the CP 1 full sequence;
# simulator/cal_shapes.h), on one GPU, about a minute:
#
#   here:    scripts/device-execute.sh build                 (-> dist/, git-ignored)
#   device:  run(command="scripts/device-validate.sh calibrate-cp", carry=["dist"], kind="nvidia-h200")
#            (plans: the arguments after calibrate-cp, default calibrations/plans/*.json: Mixtral
#            8x22B at 16K CP2, 32K CP4, 64K CP8, 128K CP16, TP4, the README's context sweep;
#            ATTENTION=cudnn,own also measures the own kernel, which runs the causal square
#            kernels only)
#   writes:  $OUT/calibrate-cp.log, $OUT/calibration-cp.json (attention entries only), then the
#            context sweep (scripts/context-sweep.sh) without and with that file.
#   then:    cp <files_at>/calibration-cp.json calibrations/<gpu>-x1-<date>-cp.json;
#            moeplan simulate --plan P --calibration calibrations/<gpu>-x1-<date>-cp.json
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"
LOGS=$(mktemp -d)
mode=${1:-validate}
case "$mode" in
    validate) exec > >(tee "$OUT/validate.log") 2>&1 ;;
    calibrate-cp) exec > >(tee "$OUT/calibrate-cp.log") 2>&1 ;;
    *) echo "usage: $0 [calibrate-cp [PLAN_JSON...]]" >&2; exit 2 ;;
esac
export LD_LIBRARY_PATH="$PWD/dist/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd dist/moeplan | grep -q 'not found'; then
    export LD_LIBRARY_PATH="$PWD/dist/lib-mpi:$LD_LIBRARY_PATH"
fi

if [ "$mode" = calibrate-cp ]; then
    shift
    plans=("$@"); [ ${#plans[@]} -gt 0 ] || plans=(calibrations/plans/*.json)
    planargs=(); for p in "${plans[@]}"; do planargs+=(--plan "$p"); done
    # cuDNN 9 is loaded at run time (kernels/attention_api.h): PyTorch's, else one beside CUDA
    cudnn_dir=$(scripts/device-attention.sh cudnn-dir)
    echo "cuDNN library folder: ${cudnn_dir:-none found}"
    [ -n "$cudnn_dir" ] && export LD_LIBRARY_PATH="$cudnn_dir:$LD_LIBRARY_PATH"
    nvidia-smi -L
    nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true
    rc=0
    echo "== the plans' attention kernels, measured"
    timeout ${CAL_TIMEOUT:-110} dist/gpu-tests/test_calibrate --attention-only --attention "${ATTENTION:-cudnn}" \
        "${planargs[@]}" --out "$OUT/calibration-cp.json" || { echo "test_calibrate failed"; rc=1; }
    if [ -f "$OUT/calibration-cp.json" ] && [ $# -eq 0 ]; then
        echo "== context sweep, defaults"
        scripts/context-sweep.sh dist/moeplan || rc=1
        echo "== context sweep, --calibration calibration-cp.json"
        scripts/context-sweep.sh dist/moeplan --calibration "$OUT/calibration-cp.json" || rc=1
    elif [ -f "$OUT/calibration-cp.json" ]; then
        for p in "${plans[@]}"; do
            echo "== $p: defaults, then calibrated"
            dist/moeplan simulate --plan "$p" | grep -E "^(step time|MFU)" || rc=1
            dist/moeplan simulate --plan "$p" --calibration "$OUT/calibration-cp.json" | grep -E "^(step time|MFU)" || rc=1
        done
    fi
    exit $rc
fi
nvidia-smi -L
nvidia-smi topo -m 2>/dev/null | head -4
gpus=$(nvidia-smi -L | grep -c '^GPU')
rc=0

echo "== NCCL collectives"
timeout ${NCCL_TIMEOUT:-200} dist/gpu-tests/test_nccl_bw --json "$OUT/nccl_bw.json" >"$LOGS/nccl_bw.log" 2>&1 \
    || { echo "test_nccl_bw failed"; rc=1; }
cat "$LOGS/nccl_bw.log"
echo "== calibration"
coll=(); [ -f "$OUT/nccl_bw.json" ] && coll=(--collectives "$OUT/nccl_bw.json")
timeout ${CAL_TIMEOUT:-200} dist/gpu-tests/test_calibrate "${coll[@]}" --out "$OUT/calibration.json" 2>&1
[ $? -eq 0 ] || { echo "test_calibrate failed"; rc=1; }
cal=(); [ -f "$OUT/calibration.json" ] && cal=(--calibration "$OUT/calibration.json")

STEPS=${STEPS:-8}; WARMUP=${WARMUP:-2}; MB_PER_RANK=${MB_PER_RANK:-4}
run_exec() { # name model gpus ep layers mbs
    local name=$1 model=$2 n=$3 ep=$4 L=$5 mbs=$6
    local args=(--model "$model" --cluster dgx-h200 --seq 4096 --mbs "$mbs" --gpus "$n" --ep "$ep"
                --gbs $((n * MB_PER_RANK * mbs)) --layers "$L" --steps "$STEPS" --warmup "$WARMUP"
                --random-tokens --lr 1e-4 "${cal[@]}")
    echo "== $name: $model, $L layers, $n GPU(s), EP$ep, mbs $mbs"
    dist/moeplan execute "${args[@]}" --check || return 1
    timeout ${RUN_TIMEOUT:-150} dist/moeplan execute "${args[@]}" --out "$OUT/exec_$name.json" >"$LOGS/exec_$name.log" 2>&1
    local s=$?
    cat "$LOGS/exec_$name.log"
    [ $s -eq 0 ] && [ -f "$OUT/exec_$name.json" ]
}
[ -n "${SKIP_EXEC:-}" ] && exit $rc   # SKIP_EXEC=1: measure and calibrate only
run_exec x7b_1gpu mixtral-8x7b 1 1 4 4 || rc=1
[ "$gpus" -ge 2 ] && { run_exec x7b_dp2ep2 mixtral-8x7b 2 2 4 4 || rc=1; }
run_exec x22b_1gpu mixtral-8x22b 1 1 2 4 || run_exec x22b_1gpu mixtral-8x22b 1 1 2 2 || rc=1
[ "$gpus" -ge 2 ] && { run_exec x22b_dp2ep2 mixtral-8x22b 2 2 2 4 || rc=1; }
exit $rc
