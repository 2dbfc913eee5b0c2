#!/usr/bin/env bash
# bundle-libs.sh BUILD: makes dist/, a folder that can travel to a GPU machine
# that lacks cJSON, GLPK and hwloc: the moeplan binary, the GPU tests and
# benchmarks, and every shared library they need that is not part of the base
# system, CUDA or Open MPI (those exist there).  Binaries find them through
# their rpath $ORIGIN/lib (tests: $ORIGIN/../lib).
set -euo pipefail
build=${1:-build}
dist=dist
rm -rf "$dist"; mkdir -p "$dist/lib" "$dist/gpu-tests" "$dist/bench"
cp "$build/moeplan" "$dist/"
[ -d "$build/gpu-tests" ] && cp "$build"/gpu-tests/* "$dist/gpu-tests/" 2>/dev/null || true
[ -d "$build/bench" ] && cp "$build"/bench/* "$dist/bench/" 2>/dev/null || true
rm -f "$dist"/gpu-tests/*.d "$dist"/gpu-tests/*.o "$dist"/bench/*.d "$dist"/bench/*.o
for bin in "$dist/moeplan" "$dist"/gpu-tests/* "$dist"/bench/*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
        case "$lib" in
            */libc.so*|*/libm.so*|*/libpthread.so*|*/libdl.so*|*/librt.so*|*/ld-linux*|*/libstdc++*|*/libgcc_s*) ;;
            /usr/local/cuda*|*/libcuda.so*|*/libnccl*|*/libcublas*|*/libcudart*) ;;
            */libmpi*|*/libopen-*|*/openmpi/*|*/libpmix*|*/libevent*|*/libhwloc.so*|*/libudev*|*/libz.so*) ;;
            *) cp -n "$lib" "$dist/lib/" ;;
        esac
    done
done
# hwloc: Open MPI on the target brings its own libhwloc.so.15; ship ours only if absent there.
cp -n "$(ldd "$dist/moeplan" | awk '/libhwloc/ {print $3}')" "$dist/lib/" 2>/dev/null || true
du -sh "$dist"
