#!/usr/bin/env bash
# execute-vs-torch.sh: `moeplan execute` beside its PyTorch peer
# (bench/peer_torch.py, eager and torch.compile) on the same work, on one
# GPU, in one device call (issue 18).
#
#   bench/execute-vs-torch.sh build   (here) the CUDA moeplan in build/cuda
#       (its own build folder: a NO_CUDA build in build/ is left alone), then
#       dist/ (scripts/bundle-libs.sh: moeplan and the libraries it needs) and
#       dist/lib-mpi (the Open MPI libraries, used there only if missing).
#       Replaces a dist/ made by scripts/device-execute.sh build.
#   bench/execute-vs-torch.sh run     (on the device machine) for each work
#       below, `moeplan execute` (cuDNN attention from PyTorch's site-packages,
#       as scripts/device-before-after.sh finds it), then the peer eager, then
#       (after every eager run, so that a slow compilation costs only the
#       compile rows) the peer with torch.compile; each run under its own
#       `timeout`, all within BUDGET seconds (default 560: a device call ends
#       at 600).  Results: $OUT/vs_<work>_<side>.json and .log,
#       $OUT/execute-vs-torch.json (all rows) and a markdown table on stdout:
#       tokens/s, step ms, MFU (megatron), peak GiB, executor / peer.
#
# The work (the same on both sides: model shapes, layers, sequence,
# micro-batch, micro-batches per optimizer step, random tokens, lr 1e-4,
# seed 1234, aux loss 1e-2, dropless, AdamW on fp32 masters, one GPU):
#   mixtral-mbs4   Mixtral-8x7B shapes, 4 layers, seq 4096, mbs 4, gbs 16
#   mixtral-mbs1   Mixtral-8x7B shapes, 4 layers, seq 4096, mbs 1, gbs 1
#   qwen3          Qwen3-30B-A3B shapes (128 experts top-8, expert FFN 768),
#                  4 layers, seq 4096, mbs QWEN_MBS (4), gbs QWEN_GBS (16)
# WORKS="mixtral-mbs4 qwen3" picks some; STEPS (8) and WARMUP (2) per run;
# LAYERS (4) for every work (2 on an 80 GB H100); the cluster (MFU peak and
# prediction) is dgx-h200 on an H200, else dgx-h100.
# Mixtral at mbs 4 needs ~132 GiB on the executor's side: an H200.
#
# Device call (NVLink multicast stays off: KINDS.md):
#   run(command="bench/execute-vs-torch.sh run", carry=["dist"], kind="nvidia-h200", needs_h200=true)
set -uo pipefail
cd "$(dirname "$0")/.."

build() {
    set -e
    make -j2 BUILD=build/cuda build/cuda/moeplan
    ldd build/cuda/moeplan | grep -q libcudart ||
        { echo "build/cuda/moeplan has no CUDA backend (is nvcc at /usr/local/cuda/bin/nvcc?)" >&2; exit 1; }
    scripts/bundle-libs.sh build/cuda
    mkdir -p dist/lib-mpi
    ldd build/cuda/moeplan | awk '/=> \// {print $3}' | grep -E 'libmpi|libopen-|libevent|libpmix|libhwloc' |
        while read -r lib; do cp -L "$lib" dist/lib-mpi/; done
    du -sh dist
}

T0=$(date +%s)
BUDGET=${BUDGET:-560}
left() { echo $((BUDGET - ($(date +%s) - T0))); }

# timed NAME LIMIT CMD...: the command under `timeout` (LIMIT, or what is left
# of the budget minus 10 s), output to $OUT/NAME.log; skipped with under 40 s left
timed() {
    local name=$1 limit=$2; shift 2
    local l; l=$(left)
    if [ "$l" -lt 40 ]; then echo "-- $name: skipped ($l s of the budget left)"; return 124; fi
    [ $((l - 10)) -lt "$limit" ] && limit=$((l - 10))
    echo "-- $name (timeout $limit s, $l s left)"
    local t1; t1=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "   exit status $rc after $(( $(date +%s) - t1 )) s"
    [ "$rc" -ne 0 ] && tail -5 "$OUT/$name.log"
    return $rc
}

work_args() { # $1 work -> model layers mbs gbs
    case "$1" in
        mixtral-mbs4) echo "mixtral-8x7b ${LAYERS:-4} 4 16" ;;
        mixtral-mbs1) echo "mixtral-8x7b ${LAYERS:-4} 1 1" ;;
        qwen3) echo "bench/models/qwen3-30b-a3b-shapes.json ${LAYERS:-4} ${QWEN_MBS:-4} ${QWEN_GBS:-16}" ;;
        *) echo "unknown work '$1' (mixtral-mbs4, mixtral-mbs1, qwen3)" >&2; return 2 ;;
    esac
}

run() {
    export NCCL_NVLS_ENABLE=0
    OUT=${OUT:-/tmp/moeplan-out}; mkdir -p "$OUT"; export OUT
    local steps=${STEPS:-8} warmup=${WARMUP:-2} seq=4096 lr=1e-4 seed=1234
    local works=${WORKS:-mixtral-mbs4 mixtral-mbs1 qwen3}
    # the executor: cuDNN 9 from PyTorch's wheel (both sides then run one
    # cuDNN), dist/lib, and the carried Open MPI libraries where missing;
    # PyTorch keeps the environment it came with
    local torch_ld=${LD_LIBRARY_PATH:-} exec_ld cudnn_dir
    cudnn_dir=$(scripts/device-attention.sh cudnn-dir)
    echo "cuDNN library folder for moeplan: ${cudnn_dir:-none found (moeplan falls back to its own attention)}"
    exec_ld="$PWD/dist/lib${cudnn_dir:+:$cudnn_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if LD_LIBRARY_PATH=$exec_ld ldd dist/moeplan | grep -q 'not found'; then
        exec_ld="$exec_ld:$PWD/dist/lib-mpi"
        echo "note: using the carried Open MPI libraries (dist/lib-mpi)"
    fi
    LD_LIBRARY_PATH=$exec_ld ldd dist/moeplan | grep 'not found' && echo "moeplan: missing libraries above"
    nvidia-smi -L
    local cluster=dgx-h200   # the MFU peak and the prediction: the GPU at hand
    nvidia-smi -L | grep -q H200 || { cluster=dgx-h100; echo "note: not an H200 ($cluster): Mixtral-8x7B shapes at mbs 4 and 4 layers need ~132 GiB (LAYERS=2 fits 80 GB)"; }
    python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "grouped_mm", hasattr(torch, "_grouped_mm"))'
    local peer=(env "LD_LIBRARY_PATH=$torch_ld" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1
                python3 bench/peer_torch.py)
    local failed=0

    timed peer_check 90 "${peer[@]}" --check --mode eager || failed=1
    grep -h "check:" "$OUT/peer_check.log"

    local w model layers mbs gbs
    for w in $works; do
        read -r model layers mbs gbs < <(work_args "$w") || { failed=1; continue; }
        timed "vs_${w}_execute" 200 env "LD_LIBRARY_PATH=$exec_ld" dist/moeplan execute --model "$model" \
            --cluster "$cluster" --gpus 1 --layers "$layers" --seq $seq --mbs "$mbs" --gbs "$gbs" --steps "$steps" \
            --warmup "$warmup" --random-tokens --lr $lr --seed $seed --optimizer-sharding none --overlap none \
            --out "$OUT/vs_${w}_execute.json" || failed=1
        timed "vs_${w}_eager" 200 "${peer[@]}" --model "$model" --cluster "$cluster" --layers "$layers" --seq $seq --mbs "$mbs" \
            --gbs "$gbs" --steps "$steps" --warmup "$warmup" --lr $lr --seed $seed --mode eager \
            --out "$OUT/vs_${w}_eager.json" || failed=1
    done
    for w in $works; do
        read -r model layers mbs gbs < <(work_args "$w") || continue
        timed "vs_${w}_compile" 300 "${peer[@]}" --model "$model" --cluster "$cluster" --layers "$layers" --seq $seq --mbs "$mbs" \
            --gbs "$gbs" --steps "$steps" --warmup "$warmup" --lr $lr --seed $seed --mode compile \
            --out "$OUT/vs_${w}_compile.json" || failed=1
    done

    # shellcheck disable=SC2086  # one argument per work
    python3 - "$OUT" $works <<'PY'
import json, os, sys
out, works = sys.argv[1], sys.argv[2:]
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
rows = []
for w in works:
    ex = load(os.path.join(out, "vs_%s_execute.json" % w))
    r = {"work": w}
    if ex:
        me, run = ex["measured"], ex["run"]
        r["execute"] = {"tokens_per_s": me["tokens_per_s_per_gpu"], "step_time_s": me["step_time_s"],
                        "mfu_megatron": me["mfu"]["megatron"], "peak_memory_bytes": me["peak_memory_bytes"],
                        "phases_s": me["phases_s"], "attention": run.get("attention"), "device": run.get("device"),
                        "model": ex["plan"]["model"], "layers": run["layers"], "mbs": ex["plan"]["mbs"],
                        "gbs": ex["plan"]["gbs"], "seq": ex["plan"]["seq"]}
    for side in ("eager", "compile"):
        p = load(os.path.join(out, "vs_%s_%s.json" % (w, side)))
        if p:
            r[side] = {"tokens_per_s": p["tokens_per_s"], "step_time_s": p["step_time_s"],
                       "mfu_megatron": p["mfu"]["megatron"], "peak_memory_bytes": p["peak_memory_bytes"],
                       "torch_max_allocated_bytes": p["torch_max_allocated_bytes"], "torch": p["torch"],
                       "device": p["device"], "model": p["model"], "layers": p["layers"], "mbs": p["mbs"],
                       "gbs": p["gbs"], "seq": p["seq"]}
    rows.append(r)
with open(os.path.join(out, "execute-vs-torch.json"), "w") as f:
    json.dump(rows, f, indent=1)

def model_name(x):   # a model file (bench/models/NAME.json) names the model NAME
    m = x["model"]
    return os.path.splitext(os.path.basename(m))[0] if m.endswith(".json") else m

def same_work(a, b):
    return model_name(a) == model_name(b) and all(a[k] == b[k] for k in ("layers", "mbs", "gbs", "seq"))

print()
print("| work per optimizer step | side | tokens/s | step ms | MFU (megatron) | peak GiB | executor / this |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    ex = r.get("execute")
    for side, label in (("execute", "moeplan execute"), ("eager", "PyTorch eager"), ("compile", "torch.compile")):
        x = r.get(side)
        if not x:
            print("| %s | %s | failed | | | | |" % (r["work"], label))
            continue
        ratio = "-"
        if side != "execute" and ex:
            ratio = "%.3f" % (ex["tokens_per_s"] / x["tokens_per_s"]) if same_work(ex, x) else "different work!"
        work = "%s, %d layers, seq %d, mbs %d x %d micro-batches" % (model_name(x), x["layers"], x["seq"], x["mbs"], x["gbs"] // x["mbs"])
        print("| %s | %s | %.0f | %.1f | %.1f%% | %.1f | %s |" % (
            work, label, x["tokens_per_s"], 1e3 * x["step_time_s"], 100 * x["mfu_megatron"],
            x["peak_memory_bytes"] / 2**30, ratio))
print()
for r in rows:
    ex = r.get("execute")
    if ex:
        ph = ex["phases_s"]
        print("%s: executor on %s (%s attention), phases ms: attention %.1f, MoE compute %.1f, dispatcher %.1f, "
              "optimizer %.1f, other %.1f" % (r["work"], ex["device"], ex["attention"], 1e3 * ph["attention"],
              1e3 * ph["moe_compute"], 1e3 * ph["dispatcher_comm"], 1e3 * ph["optimizer"], 1e3 * ph["other"]))
    for side in ("eager", "compile"):
        if r.get(side):
            print("%s: torch %s %s on %s, allocator peak %.1f GiB" % (r["work"], side, r[side]["torch"],
                  r[side]["device"], r[side]["torch_max_allocated_bytes"] / 2**30))
PY
    echo "execute-vs-torch: $(( $(date +%s) - T0 )) s"
    return $failed
}

case "${1:-run}" in
    build) build ;;
    run) run ;;
    *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
