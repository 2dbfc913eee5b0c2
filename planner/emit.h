/* emit.h: the emitters of a chosen plan: Megatron-LM command-line flags.
 * (The JSON plan comes from core's plan_to_json_string.) */
#ifndef MOEPLAN_EMIT_H
#define MOEPLAN_EMIT_H

#include "../core/plan.h"

/* Megatron-LM (Megatron-Core >= 0.12) flags for the plan's model, mapping and
 * training settings, one flag (with its value) per line, lines joined by
 * " \\\n" so the text pastes into a shell command.  Caller frees. NULL on
 * out-of-memory. */
char *emit_megatron_flags(const Plan *p);

#endif
