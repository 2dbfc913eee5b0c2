/* emit.h: the emitters of a chosen plan: Megatron-LM command-line flags and
 * a launch script.  (The JSON plan comes from core's plan_to_json_string.) */
#ifndef MOEPLAN_EMIT_H
#define MOEPLAN_EMIT_H

#include <stddef.h>

#include "../core/plan.h"

/* Megatron-LM (Megatron-Core 0.12 to 0.20) flags for the plan's model,
 * mapping, MoE, precision, recomputation, optimizer sharding and overlap
 * settings: exactly the configuration the simulator priced and the checks
 * of megatron_rules.h passed on.  One flag (with its value, quoted for the
 * shell where needed) per line, lines joined by " \\\n" so the text pastes
 * into a shell command.  Caller frees.  NULL on out-of-memory. */
char *emit_megatron_flags(const Plan *p);

typedef enum { LAUNCH_TORCHRUN = 0, LAUNCH_SRUN = 1 } LauncherKind;

/* A bash script that runs Megatron-LM's pretrain_gpt.py with the flags of
 * emit_megatron_flags on the plan's GPUs (nodes of the cluster's GPUs per
 * node), with the environment the flags need (CUDA_DEVICE_MAX_CONNECTIONS,
 * NCCL settings), data/tokenizer/checkpoint paths from the environment
 * (mock data and a null tokenizer of the model's vocabulary by default),
 * every value that comes from input single-quoted for the shell.
 * torchrun: run it on every node with NODE_RANK and MASTER_ADDR set;
 * srun: run it once inside a Slurm allocation.  Caller frees; NULL on
 * out-of-memory. */
char *emit_launch_script(const Plan *p, LauncherKind launcher);

/* "1" when Megatron-LM needs CUDA_DEVICE_MAX_CONNECTIONS=1 for this plan
 * (TP or CP > 1 on Hopper or earlier, without FSDP and without EP overlap:
 * megatron/training/arguments.py:1454-1478), NULL when it must stay unset
 * (Megatron-FSDP refuses 1: arguments.py:1166) or does not matter. */
const char *emit_cuda_device_max_connections(const Plan *p);

/* s quoted for a POSIX shell: unchanged when it has only [A-Za-z0-9_./:=,+-@%],
 * else in single quotes with each ' written as '\''.  Writes at most len
 * bytes (NUL included); returns -1 when it does not fit. */
int emit_shell_quote(const char *s, char *out, size_t len);

#endif
