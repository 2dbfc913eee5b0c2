#!/usr/bin/env bash
# device-before-after.sh: the executor before and after a change, on one GPU,
# in one device call (the same work on both sides: same model, shapes,
# tokens per optimizer step, optimizer, steps, seed, learning rate).
#
#   scripts/device-before-after.sh build REV   (here) builds dist/ from the
#       working tree (scripts/device-execute.sh build) and .devcarry/base/dist
#       from git revision REV (a worktree in /tmp), plus build/attn (the cuDNN
#       attention test and benchmark: scripts/device-attention.sh build).
#   scripts/device-before-after.sh run         (on the device machine) finds
#       cuDNN 9 (inside PyTorch's site-packages there), then
#         1. the GPU tests of the working tree (kernels, cuDNN attention,
#            executor invariance on 1 GPU);
#         2. Mixtral-8x7B shapes, first 4 layers, sequence 4096, random
#            tokens, lr 1e-4: mbs 4 with 4 micro-batches (16 sequences per
#            step) and mbs 1 with 1 micro-batch, each with the base binary
#            (own attention), the new binary with --attention own and with
#            --attention cudnn; result JSONs $OUT/ba_<side>_mbs<b>.json;
#         3. a table: step ms, MFU (megatron), attention phase ms, ratios.
#
# Device call:
#   run(command="scripts/device-before-after.sh run",
#       carry=["dist", ".devcarry/base", "build/attn"], kind="nvidia-h200")
set -uo pipefail
cd "$(dirname "$0")/.."

build() {
    set -e
    local rev=${1:?usage: $0 build REV}
    scripts/device-execute.sh build
    scripts/device-attention.sh build
    local wt=/tmp/moeplan-base-$rev
    [ -d "$wt" ] || git worktree add -f "$wt" "$rev"
    (cd "$wt" && scripts/device-execute.sh build)
    rm -rf .devcarry/base && mkdir -p .devcarry/base && cp -r "$wt/dist" .devcarry/base/
    echo "base: $rev -> .devcarry/base/dist"
}

run() {
    export NCCL_NVLS_ENABLE=0
    OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"
    local torch_ld=${LD_LIBRARY_PATH:-}   # PyTorch finds its own cuDNN: its path is left alone
    local cudnn_dir
    cudnn_dir=$(scripts/device-attention.sh cudnn-dir)
    echo "cuDNN library folder: ${cudnn_dir:-none found}"
    [ -n "$cudnn_dir" ] && export LD_LIBRARY_PATH="$cudnn_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    for d in dist .devcarry/base/dist; do
        ldd $d/moeplan | grep -q 'not found' && [ -d $d/lib-mpi ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$PWD/$d/lib-mpi"
    done
    nvidia-smi -L
    local failed=0
    echo "== GPU tests"
    (export LD_LIBRARY_PATH="$PWD/dist/lib:$LD_LIBRARY_PATH"
     timeout 150 dist/gpu-tests/test_kernels > "$OUT/test_kernels.log" 2>&1; echo "test_kernels: exit status $?"; tail -3 "$OUT/test_kernels.log"
     timeout 150 dist/gpu-tests/test_executor --nproc 1 --mode invariance > "$OUT/test_executor.log" 2>&1
     echo "test_executor (invariance, 1 GPU): exit status $?"; grep -E "PASS|FAIL|checks|attention" "$OUT/test_executor.log" | tail -12)
    if [ -x build/attn/test_attention_cudnn ]; then
        timeout 150 build/attn/test_attention_cudnn > "$OUT/test_attention_cudnn.log" 2>&1
        echo "test_attention_cudnn: exit status $?"; grep -E "FAIL|passed|failed" "$OUT/test_attention_cudnn.log" | tail -12
    fi
    echo "== executor before/after"
    local common=(--model mixtral-8x7b --cluster dgx-h200 --gpus 1 --seq 4096 --layers "${LAYERS:-4}" --steps "${STEPS:-12}"
                  --warmup 2 --random-tokens --lr 1e-4 --seed 1234 --optimizer-sharding none --overlap none)
    for mbs in 4 1; do
        local gbs=$((mbs == 4 ? 16 : 1))
        timeout 200 .devcarry/base/dist/moeplan execute "${common[@]}" --mbs $mbs --gbs $gbs \
            --out "$OUT/ba_base_mbs$mbs.json" > "$OUT/ba_base_mbs$mbs.log" 2>&1 || { echo "base mbs $mbs failed"; tail -5 "$OUT/ba_base_mbs$mbs.log"; }
        for att in own cudnn; do
            timeout 200 dist/moeplan execute "${common[@]}" --mbs $mbs --gbs $gbs --attention $att \
                --out "$OUT/ba_${att}_mbs$mbs.json" > "$OUT/ba_${att}_mbs$mbs.log" 2>&1 || { echo "new $att mbs $mbs failed"; tail -5 "$OUT/ba_${att}_mbs$mbs.log"; failed=1; }
        done
    done
    python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print("| work per step | side | step ms | MFU megatron | attention ms | MoE compute ms | optimizer ms | other ms | peak GiB | step vs base |")
print("|---|---|---|---|---|---|---|---|---|---|")
for mbs in (4, 1):
    base = None
    for side in ("base", "own", "cudnn"):
        p = os.path.join(out, "ba_%s_mbs%d.json" % (side, mbs))
        if not os.path.exists(p):
            print("| mbs %d | %s | failed | | | | | | | |" % (mbs, side)); continue
        r = json.load(open(p)); me = r["measured"]; ph = me["phases_s"]
        st = me["step_time_s"]
        if side == "base": base = st
        label = {"base": "before (own attention)", "own": "after, --attention own", "cudnn": "after, --attention cudnn"}[side]
        print("| %s | %s | %.1f | %.1f%% | %.1f | %.1f | %.1f | %.1f | %.1f | %s |" % (
            "16 seq (mbs 4 x 4)" if mbs == 4 else "1 seq (mbs 1)", label, 1e3 * st, 100 * me["mfu"]["megatron"],
            1e3 * ph["attention"], 1e3 * ph["moe_compute"], 1e3 * ph["optimizer"], 1e3 * ph["other"],
            me["peak_memory_bytes"] / 2**30, "%.3f" % (st / base) if base else "-"))
PY
    grep -h "attention\|losses\|loss" "$OUT"/ba_cudnn_mbs4.log | head -5
    if [ -x build/attn/attention_bench ] && [ "${ATTN_BENCH:-1}" = 1 ]; then
        echo "== attention benchmark (quick)"
        timeout "${BENCH_TIMEOUT:-150}" build/attn/attention_bench --quick > "$OUT/attention-bench.log" 2>&1
        echo "attention_bench: exit status $?"; tail -40 "$OUT/attention-bench.log"
        if [ "${TORCH_BENCH:-1}" = 1 ]; then   # PyTorch's SDPA on the same shapes (its own cuDNN)
            LD_LIBRARY_PATH=$torch_ld PYTHONUNBUFFERED=1 timeout "${TORCH_TIMEOUT:-150}" python3 bench/attention_torch.py \
                "$OUT/attention-bench.log" > "$OUT/attention-torch.log" 2>&1
            echo "attention_torch: exit status $?"; tail -45 "$OUT/attention-torch.log"
        fi
    fi
    return $failed
}

case "${1:-run}" in
    build) shift; build "$@" ;;
    run) run ;;
    *) echo "usage: $0 build REV | run" >&2; exit 2 ;;
esac
