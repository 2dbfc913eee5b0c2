#!/bin/sh
# study-plots.sh: re-draws the four studies of docs/planner.md ("The four
# studies") and the heat map of README "moeplan sweep" into docs/plots/
# (PNG and CSV) and prints each table.  Every point is a full search: about
# three minutes in all on two cores.
#   usage: scripts/study-plots.sh [path/to/moeplan] [study ...]
#   (studies: strong-scaling context-scaling nvlink-domain granularity
#   heatmap-gpus-seq; default all)
set -eu
bin=${1:-build/moeplan}
[ $# -gt 0 ] && shift
out=docs/plots
C="--model mixtral-8x22b --cluster dgx-h100 --seq 4096 --capacity-factor 1.0 --mbs 1 --optimizer-sharding distributed"
only=${*:-all}
run() {
    name=$1
    shift
    case " $only " in *" all "*|*" $name "*) ;; *) return 0 ;; esac
    echo "== $name: moeplan sweep $*" >&2
    # shellcheck disable=SC2086
    "$bin" sweep "$@" --quiet --csv "$out/$name.csv" --plot "$out/$name.png"
}
# shellcheck disable=SC2086
run strong-scaling $C --gbs 1024 --vary gpus=64,128,256,512,1024
run context-scaling --model mixtral-8x22b --cluster dgx-h100 --gpus 256 --capacity-factor 1.0 --mbs 1 \
    --optimizer-sharding distributed --tokens-per-batch 1048576 --vary seq=4096,8192,16384,32768,65536,131072
# shellcheck disable=SC2086
run nvlink-domain $C --gpus 576 --gbs 1152 --vary gpus-per-node=8,16,24,36,72
# shellcheck disable=SC2086
run granularity $C --gpus 256 --gbs 1024 --vary granularity=1,2,4,8
run heatmap-gpus-seq --model mixtral-8x22b --cluster dgx-h100 --capacity-factor 1.0 --mbs 1 \
    --optimizer-sharding distributed --tokens-per-batch 4194304 --vary gpus=32,64,128,256,512,1024 \
    --vary2 seq=4096,8192,16384,32768
