#!/bin/sh
# context-sweep.sh: Mixtral 8x22B on DGX H100 from 16K to 128K context at a
# fixed 4M tokens per batch, CP growing with the context (each GPU holds
# 2048 tokens: 512 GPUs, TP 4, PP 4, EP 8, CP = seq/8192), the settings of
# the published folding runs (capacity factor 1, distributed optimizer,
# grad/param/tp overlap, no recompute).  One `moeplan simulate --json` per
# point; prints the share of attention compute, the exposed CP time and the
# MFU under both FLOPs conventions.
# SCALE=gpus: the GPUs grow with the context instead (64 x CP: 128 at 16K to
# 1,024 at 128K, DP 4 throughout, as the folding paper's long-context runs
# grew them), still 4M tokens per batch, so each pipeline gets fewer
# micro-batches as the context grows.
#   usage: [SCALE=gpus] scripts/context-sweep.sh [path/to/moeplan] [extra simulate options]
set -eu
bin=${1:-build/moeplan}
[ $# -gt 0 ] && shift
# the first "KEY": NUMBER of the result document (docs/schema/moeplan-result.schema.json)
field() { grep -o "\"$1\":[[:space:]]*[0-9.e+-]*" | head -1 | sed 's/.*:[[:space:]]*//'; }
printf '%8s %4s %5s %5s  %-34s %10s %12s %10s %12s %8s\n' seq gpus cp gbs plan "attention" "CP exposed" "MFU legacy" "MFU megatron" "step s"
for cp in 2 4 8 16; do
    seq=$((8192 * cp))
    gbs=$((4194304 / seq))
    gpus=512
    [ "${SCALE:-}" = gpus ] && gpus=$((64 * cp))
    out=$("$bin" simulate --model mixtral-8x22b --cluster dgx-h100 --gpus "$gpus" --tp 4 --cp "$cp" --pp 4 --ep 8 --etp 1 \
          --seq "$seq" --mbs 1 --gbs "$gbs" --capacity-factor 1 --optimizer-sharding distributed \
          --overlap grad,param,tp --recompute none --flops legacy --json "$@")
    step=$(echo "$out" | field step_time_s)
    attn=$(echo "$out" | field compute_attention)
    cpt=$(echo "$out" | field comm_cp)
    leg=$(echo "$out" | field legacy)
    meg=$(echo "$out" | field megatron)
    awk -v s="$seq" -v n="$gpus" -v c="$cp" -v g="$gbs" -v st="$step" -v a="$attn" -v x="$cpt" -v l="$leg" -v m="$meg" 'BEGIN {
        printf "%8d %4d %5d %5d  %-34s %9.1f%% %11.1f%% %9.1f%% %11.1f%% %8.3f\n", s, n, c, g,
               sprintf("TP4 CP%d PP4 DP%d | ETP1 EP8 EDP%d", c, n / (16 * c), n / 32), 100 * a / st, 100 * x / st, 100 * l, 100 * m, st }'
done
