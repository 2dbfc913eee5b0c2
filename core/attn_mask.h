/* attn_mask.h: the mask of one attention block, the one definition that the
 * CP ring layout (core/layout.h) and the attention kernels
 * (kernels/attention_api.h) share, so that a file can include both. */
#ifndef MOEPLAN_ATTN_MASK_H
#define MOEPLAN_ATTN_MASK_H

typedef enum {
    ATTN_MASK_NONE = 0,    /* every query sees every key of the block */
    ATTN_MASK_CAUSAL = 1,  /* key j visible to query row i iff kv_offset + j <= q_offset + i
                            * (equal offsets: row i sees keys 0..i) */
} AttnMask;

#endif
