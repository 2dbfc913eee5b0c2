#!/usr/bin/env bash
# device-kernels.sh: every GPU check and timing of kernels/, in one call.
#
#   scripts/device-kernels.sh build   (here) compiles kernels/*.{c,cu} and
#       tests/gpu/test_kernels.cu with nvcc into build/kern/ (nothing else
#       of the tree is needed, so a half-built tree elsewhere does not block it)
#   scripts/device-kernels.sh run     (on the device machine) prints the GPU,
#       runs build/kern/test_kernels (correctness table, then timings) and
#       copies the log to $OUT/kernels.log; builds first if the binary is absent
#   scripts/device-kernels.sh sanitize  (on the device machine) the checks
#       alone under compute-sanitizer memcheck (out-of-bounds and misaligned
#       accesses), log in $OUT/memcheck.log
#
# Device call: run(command="scripts/device-kernels.sh run", carry=["build/kern"],
#                  kind="nvidia-h100-x1")
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
out=build/kern
build() {
    mkdir -p "$out/obj"
    local flags="-O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -I. -Xcompiler -Wall,-Wextra,-Werror"
    local objs=() pids=()
    for f in kernels/*.c; do
        o="$out/obj/$(basename "$f").o"; objs+=("$o")
        gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I. -DMOEPLAN_HAVE_CUDA -I/usr/local/cuda/include -c "$f" -o "$o" & pids+=($!)
    done
    for f in kernels/*.cu; do
        o="$out/obj/$(basename "$f").o"; objs+=("$o")
        $NVCC $flags -c "$f" -o "$o" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    $NVCC $flags -o "$out/test_kernels" tests/gpu/test_kernels.cu "${objs[@]}" \
        -L/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart -Xlinker -rpath,/usr/local/cuda/lib64
    echo "built $out/test_kernels"
}
case "${1:-run}" in
    build) build ;;
    run)
        [ -x "$out/test_kernels" ] || build
        nvidia-smi -L || true
        nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true
        log=${OUT:-/tmp}/kernels.log
        set +e
        "$out/test_kernels" "${@:2}" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        echo "test_kernels exit status: $rc"
        exit "$rc"
        ;;
    sanitize)
        [ -x "$out/test_kernels" ] || build
        cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
        log=${OUT:-/tmp}/memcheck.log
        set +e
        timeout 300 "$cs" --tool memcheck --print-limit 20 "$out/test_kernels" --no-timing > "$log" 2>&1
        rc=$?
        grep -E 'ERROR SUMMARY|checks,|Invalid|misaligned' "$log" | head -30
        echo "memcheck exit status: $rc"
        exit "$rc"
        ;;
    *) echo "usage: $0 build|run|sanitize [--no-timing]" >&2; exit 2 ;;
esac
