/* attn_backend.h: which flash-attention implementation a run uses; the
 * simulator prices attention kernels from that backend's rate table
 * (simulator/attention.c).  A cluster file may name its default
 * ("attention_backend"); a plan or --attention-backend overrides it. */
#ifndef MOEPLAN_ATTN_BACKEND_H
#define MOEPLAN_ATTN_BACKEND_H

typedef enum {
    ATTN_BACKEND_AUTO = 0,   /* plan: the cluster's; cluster: cudnn */
    ATTN_BACKEND_CUDNN,      /* Transformer Engine FusedAttention (cuDNN) */
    ATTN_BACKEND_FLASH2,     /* FlashAttention-2 */
    ATTN_BACKEND_FA3,        /* FlashAttention-3 (Hopper) */
    ATTN_BACKEND_OWN,        /* moeplan's executor kernel (kernels/attention.cu) */
    ATTN_BACKEND_COUNT
} AttnBackend;

const char *attn_backend_name(AttnBackend b);
/* "auto", "cudnn", "flash2", "fa3" or "own"; -1 if none */
int attn_backend_parse(const char *s, AttnBackend *out);

#endif
