#!/usr/bin/env bash
# device-attention.sh: attention through kernels/attention_api.h (cuDNN's
# fused flash attention and the own kernel) on the device machine, in one call.
#
#   scripts/device-attention.sh build   (here) compiles kernels/*.{c,cu},
#       core/error.c, tests/gpu/test_attention_cudnn.cu and
#       bench/attention_bench.cu with nvcc into build/attn/ (nothing else of
#       the tree is needed).  libcudnn is not linked: it is loaded at run time.
#   scripts/device-attention.sh run [--quick]   (on the device machine) finds
#       cuDNN 9 (here /usr/local/cuda/lib64; there, inside PyTorch's
#       site-packages: nvidia/cudnn/lib), prints the GPU, runs the correctness
#       test, then the benchmark (cuDNN, own kernel) and PyTorch's SDPA on the
#       same shapes; logs in $OUT/attention-test.log, $OUT/attention-bench.log,
#       $OUT/attention-torch.log.  With dist/ (scripts/device-execute.sh build)
#       also the executor's GPU invariance test and a 1-layer `moeplan execute
#       --attention cudnn` ($OUT/attention-executor.log).
#       On a test failure it reruns the quick test with cuDNN's error log on
#       ($OUT/cudnn-errors.log).
#
# Device call (from a copy of the tree with build/attn carried):
#   run(command="scripts/device-attention.sh run", carry=[...], kind="nvidia-h200")
set -uo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
out=build/attn
build() {
    set -e
    mkdir -p "$out/obj"
    local flags="-O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -I. -Xcompiler -Wall,-Wextra,-Werror"
    local objs=() pids=()
    for f in kernels/*.c core/error.c core/flops.c core/model.c; do
        o="$out/obj/$(basename "$f").o"; objs+=("$o")
        gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I. -DMOEPLAN_HAVE_CUDA -I/usr/local/cuda/include -c "$f" -o "$o" & pids+=($!)
    done
    for f in kernels/*.cu; do
        o="$out/obj/$(basename "$f").o"; objs+=("$o")
        $NVCC $flags -c "$f" -o "$o" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    local libs="-L/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart -ldl -Xlinker -rpath,/usr/local/cuda/lib64"
    $NVCC $flags -o "$out/test_attention_cudnn" tests/gpu/test_attention_cudnn.cu "${objs[@]}" $libs
    $NVCC $flags -o "$out/attention_bench" bench/attention_bench.cu "${objs[@]}" $libs
    echo "built $out/test_attention_cudnn $out/attention_bench"
}
find_cudnn() {
    # PyTorch's cuDNN 9 (wheel nvidia-cudnn-cu1x: what torch's SDPA uses, so
    # both sides of the comparison run one cuDNN), else one beside CUDA
    local d
    d=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null)
    [ -n "$d" ] && [ -e "$d/libcudnn.so.9" ] && { echo "$d"; return; }
    d=$(python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null | while read -r sp; do
            ls -d "$sp"/nvidia/cudnn/lib 2>/dev/null; done | head -1)
    [ -n "$d" ] && { echo "$d"; return; }
    for d in /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
        [ -e "$d/libcudnn.so.9" ] && { echo "$d"; return; }
    done
}
case "${1:-run}" in
    build) build ;;
    cudnn-dir) find_cudnn ;;   # the folder of libcudnn.so.9 (for other device scripts)
    run)
        [ -x "$out/test_attention_cudnn" ] || build || exit 1
        export NCCL_NVLS_ENABLE=0
        log=${OUT:-/tmp}
        cudnn_dir=$(find_cudnn)
        echo "cuDNN library folder: ${cudnn_dir:-none found}"
        torch_ld=${LD_LIBRARY_PATH:-}   # torch finds its own cuDNN: leave its path alone
        [ -n "$cudnn_dir" ] && export LD_LIBRARY_PATH="$cudnn_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        nvidia-smi -L || true
        nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true
        quick=""
        [ "${2:-}" = "--quick" ] && quick="--quick"
        timeout "${TEST_TIMEOUT:-120}" "$out/test_attention_cudnn" $quick 2>&1 | tee "$log/attention-test.log"
        rc=${PIPESTATUS[0]}
        echo "test_attention_cudnn exit status: $rc"
        if [ -x dist/moeplan ]; then
            # the executor with cuDNN attention: GPU invariance (1-GPU bf16 step vs
            # the CPU float32 step) and a 1-layer Mixtral-8x7B run of the CLI
            (
                export LD_LIBRARY_PATH="$PWD/dist/lib:$LD_LIBRARY_PATH"
                ldd dist/moeplan | grep -q 'not found' && export LD_LIBRARY_PATH="$PWD/dist/lib-mpi:$LD_LIBRARY_PATH"
                timeout "${EXEC_TIMEOUT:-60}" dist/gpu-tests/test_executor --nproc 1 --mode invariance 2>&1
                echo "test_executor exit status: $?"
                [ "${EXEC_CLI:-1}" = 1 ] && timeout "${EXEC_TIMEOUT:-60}" dist/moeplan execute --model mixtral-8x7b --cluster dgx-h200 --gpus 1 --seq 4096 \
                    --mbs 1 --gbs 1 --layers 1 --steps 4 --warmup 2 --random-tokens --attention cudnn 2>&1
                [ "${EXEC_CLI:-1}" = 1 ] && echo "moeplan execute --attention cudnn exit status: $?"
            ) > "$log/attention-executor.log" 2>&1
            grep -E "PASS|FAIL|exit status|attention|step " "$log/attention-executor.log" | head -40
        fi
        if [ "$rc" -ne 0 ]; then
            CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG="$log/cudnn-errors.full" "$out/test_attention_cudnn" --quick > /dev/null 2>&1
            grep -v "^\s*$" "$log/cudnn-errors.full" 2>/dev/null | head -c 4000000 > "$log/cudnn-errors.log"
            rm -f "$log/cudnn-errors.full"
        fi
        bench_args=${BENCH_ARGS:-}
        bench_quick=$quick
        [ "${BENCH_QUICK:-0}" = 1 ] && bench_quick="--quick"
        timeout "${BENCH_TIMEOUT:-300}" "$out/attention_bench" $bench_quick $bench_args 2>&1 | tee "$log/attention-bench.log"
        echo "attention_bench exit status: ${PIPESTATUS[0]}"
        LD_LIBRARY_PATH=$torch_ld PYTHONUNBUFFERED=1 timeout "${TORCH_TIMEOUT:-200}" python3 bench/attention_torch.py "$log/attention-bench.log" 2>&1 | tee "$log/attention-torch.log"
        echo "attention_torch exit status: ${PIPESTATUS[0]}"
        exit "$rc"
        ;;
    *) echo "usage: $0 build|run [--quick]" >&2; exit 2 ;;
esac
