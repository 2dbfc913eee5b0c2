#!/usr/bin/env bash
# execute-device.sh: the executor benchmark on the device machine (called by
# scripts/device-execute.sh run; needs dist/ from `scripts/device-execute.sh build`).
#
#   1. Mixtral-8x7B shapes (hidden 4096, 32 heads / 8 KV groups, 8 experts
#      top-2, expert FFN 14336, vocab 32000), sequence 4096, mbs 1, 4
#      micro-batches per data-parallel rank, BF16:
#        1 GPU   EP1, as many of the first 4 layers as the simulator says fit
#        2 GPUs  DP2 EP2 ETP1 (4 GPUs DP4 EP4 when 4 are visible)
#      moeplan execute --out writes $OUT/exec_<n>gpu.json.
#   2. A failure drill: a 2-GPU run of a tiny model whose rank 1 is killed
#      (SIGKILL) mid-run: every rank must end, with a message naming rank 1.
#   3. A table: MFU (both conventions), TFLOP/s, the expert-phase TFLOP/s, and
#      the dispatcher's all-to-all bus bandwidth against NCCL's all-to-all bus
#      bandwidth at the same message size (64 MiB: 4096 tokens x 2 x 4096 x
#      2 bytes) measured by test_nccl_bw in the same call ($OUT/nccl_bw.json).
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"
BIN=dist/moeplan
STEPS=${STEPS:-8}; WARMUP=${WARMUP:-2}; MB_PER_RANK=${MB_PER_RANK:-4}; MBS=${MBS:-4}
gpus=$(nvidia-smi -L | grep -c '^GPU')
# random token ids (METHOD.md: time on random data; a learnable task lets the
# router collapse onto few experts), the default 1e-2 load-balancing loss, and
# a peak learning rate of 1e-4 as in MoE pre-training recipes (executor's
# default 1e-3 without warm-up moves the router enough in 8 steps to unbalance
# the experts: 216 ms of dispatcher wait on 2 GPUs, first device run 2026-11-22)
common=(--model mixtral-8x7b --cluster dgx-h200 --seq 4096 --mbs "$MBS" --steps "$STEPS" --warmup "$WARMUP" --random-tokens --lr "${LR:-1e-4}")

run_config() { # $1 gpus, $2 ep, $3 name: largest layer count <= 4 that fits and runs
    local n=$1 ep=$2 name=$3 L
    for L in 4 3 2 1; do
        if ! $BIN execute "${common[@]}" --gpus "$n" --ep "$ep" --gbs $((n * MB_PER_RANK * MBS)) --layers "$L" --check; then
            continue
        fi
        echo "-- $name: $n GPU(s), EP$ep, $L layers"
        if timeout ${RUN_TIMEOUT:-150} $BIN execute "${common[@]}" --gpus "$n" --ep "$ep" --gbs $((n * MB_PER_RANK * MBS)) --layers "$L" \
            --out "$OUT/exec_${n}gpu.json" 2>&1 | tee "$OUT/exec_${n}gpu.log"; then
            [ -f "$OUT/exec_${n}gpu.json" ] && return 0
        fi
        echo "-- $name with $L layers failed; trying fewer"
    done
    return 1
}

failed=0
run_config 1 1 "1 GPU" || failed=1
if [ "$gpus" -ge 4 ]; then run_config 4 4 "4 GPUs" || failed=1
elif [ "$gpus" -ge 2 ]; then run_config 2 2 "2 GPUs" || failed=1; fi

if [ "$gpus" -ge 2 ]; then
    echo "-- failure drill: kill rank 1 of a 2-GPU run"
    $BIN execute --model tests/data/exec-small-moe.json --gpus 2 --ep 2 --seq 128 --steps 1000000 --warmup 1 \
        >"$OUT/drill.log" 2>&1 &
    top=$!
    sleep 12
    victim=$(pgrep -P "$top" | sed -n 2p)
    t0=$(date +%s.%N)
    [ -n "$victim" ] && kill -9 "$victim"
    wait "$top"; rc=$?
    t1=$(date +%s.%N)
    echo "drill: killed pid $victim (rank 1); moeplan exited with status $rc after $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
    tail -3 "$OUT/drill.log"
fi

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
nccl = None
try:
    nccl = json.load(open(os.path.join(out, "nccl_bw.json")))
except Exception:
    pass
ref = None
if nccl and nccl["gpus"] > 1:
    ref = min(nccl["rows"], key=lambda r: abs(r["bytes"] - 64 * 2**20))
print()
print("| run | layers | step ms | MFU megatron | MFU legacy | predicted MFU (megatron) | TFLOP/s/GPU (megatron) | expert-phase TFLOP/s | attention TFLOP/s | tokens/s/GPU | peak GiB | a2a busbw GB/s | NCCL a2a busbw GB/s (%s) |" % (
    "%d MiB" % (ref["bytes"] >> 20) if ref else "n/a"))
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in (1, 2, 4):
    p = os.path.join(out, "exec_%dgpu.json" % n)
    if not os.path.exists(p):
        continue
    r = json.load(open(p))
    pl, me, pr = r["plan"], r["measured"], r.get("predicted") or {}
    name = "%d x %s DP%d EP%d ETP%d" % (n, r["run"]["device"], pl["dp"], pl["ep"], pl["etp"])
    a2a = me.get("a2a_busbw", 0)
    print("| %s | %d | %.1f | %.1f%% | %.1f%% | %.1f%% | %.0f | %.0f | %.0f | %.0f | %.1f | %s | %s |" % (
        name, r["run"]["layers"], 1e3 * me["step_time_s"], 100 * me["mfu"]["megatron"], 100 * me["mfu"]["legacy"],
        100 * pr.get("mfu", {}).get("megatron", 0), me["tflops_per_gpu"]["megatron"], me.get("expert_tflops", 0),
        me.get("attention_tflops", 0), me["tokens_per_s_per_gpu"], me["peak_memory_bytes"] / 2**30,
        "%.0f" % (a2a / 1e9) if a2a > 0 else "-", "%.0f" % (ref["a2a_busbw"] / 1e9) if ref and n > 1 else "-"))
    ph = me["phases_s"]
    print("|   phases ms: attention %.1f, MoE compute %.1f, dispatcher comm %.1f, grad sync %.1f, optimizer %.1f, other %.1f | | | | | | | | | | | | |" % tuple(
        1e3 * ph[k] for k in ("attention", "moe_compute", "dispatcher_comm", "grad_sync", "optimizer", "other")))
PY
exit $failed
