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
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"
LOGS=$(mktemp -d)
exec > >(tee "$OUT/validate.log") 2>&1
export LD_LIBRARY_PATH="$PWD/dist/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd dist/moeplan | grep -q 'not found'; then
    export LD_LIBRARY_PATH="$PWD/dist/lib-mpi:$LD_LIBRARY_PATH"
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
