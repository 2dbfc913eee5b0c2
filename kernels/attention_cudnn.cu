/* attention_cudnn.cu: cuDNN 9 fused flash attention through the backend
 * (graph) API, libcudnn loaded with dlopen (kernels/attention_cudnn.h).
 * Host code only: every kernel is cuDNN's. */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention_cudnn.h"

/* cuDNN's headers decide; -DMOEPLAN_NO_CUDNN builds the stub on purpose */
#if defined(__has_include) && !defined(MOEPLAN_NO_CUDNN)
#if __has_include(<cudnn_graph.h>)
#define MOEPLAN_HAVE_CUDNN_HEADERS 1
#endif
#endif

#ifndef MOEPLAN_HAVE_CUDNN_HEADERS
/* ---- built without cuDNN's headers: every call says so ---------------- */
struct CudnnAttn { int unused; };
extern "C" int cudnn_attn_open(CudnnAttn **out, MpError *err)
{
    *out = NULL;
    return mp_fail(err, "cudnn: this build has no cuDNN headers (cudnn_graph.h was not found at build time)");
}
extern "C" void cudnn_attn_close(CudnnAttn *c) { (void)c; }
extern "C" long cudnn_attn_version(const CudnnAttn *c) { (void)c; return 0; }
extern "C" int cudnn_attn_prepare(CudnnAttn *c, const AttnShape *s, bool backward, MpError *err)
{
    (void)c; (void)s; (void)backward;
    return mp_fail(err, "cudnn: built without cuDNN");
}
extern "C" size_t cudnn_attn_workspace_bytes(CudnnAttn *c, const AttnShape *s, bool backward)
{
    (void)c; (void)s; (void)backward;
    return 0;
}
extern "C" int cudnn_attn_forward(CudnnAttn *, const AttnShape *, bf16_t *, float *, const bf16_t *,
                                  const bf16_t *, const bf16_t *, void *, size_t, cudaStream_t,
                                  MpError *err)
{
    return mp_fail(err, "cudnn: built without cuDNN");
}
extern "C" int cudnn_attn_backward(CudnnAttn *, const AttnShape *, bf16_t *, bf16_t *, bf16_t *,
                                   const bf16_t *, const bf16_t *, const bf16_t *, const bf16_t *,
                                   const bf16_t *, const float *, void *, size_t, cudaStream_t,
                                   MpError *err)
{
    return mp_fail(err, "cudnn: built without cuDNN");
}
#else

#include <dlfcn.h>
#include <cudnn_graph.h>

typedef cudnnBackendDescriptor_t Desc;

/* The entry points used, resolved from libcudnn.so.9 at run time. */
typedef struct {
    void *lib;
    size_t (*GetVersion)(void);
    const char *(*GetErrorString)(cudnnStatus_t);
    void (*GetLastErrorString)(char *, size_t);
    cudnnStatus_t (*Create)(cudnnHandle_t *);
    cudnnStatus_t (*Destroy)(cudnnHandle_t);
    cudnnStatus_t (*SetStream)(cudnnHandle_t, cudaStream_t);
    cudnnStatus_t (*BackendCreateDescriptor)(cudnnBackendDescriptorType_t, Desc *);
    cudnnStatus_t (*BackendDestroyDescriptor)(Desc);
    cudnnStatus_t (*BackendFinalize)(Desc);
    cudnnStatus_t (*BackendSetAttribute)(Desc, cudnnBackendAttributeName_t,
                                         cudnnBackendAttributeType_t, int64_t, const void *);
    cudnnStatus_t (*BackendGetAttribute)(Desc const, cudnnBackendAttributeName_t,
                                         cudnnBackendAttributeType_t, int64_t, int64_t *, void *);
    cudnnStatus_t (*BackendExecute)(cudnnHandle_t, Desc, Desc);
} CudnnApi;

/* uids of the tensors that the caller's memory backs */
enum {
    UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_DO, UID_DQ, UID_DK, UID_DV,
    UID_SCALE, UID_SHIFT, UID_NEG_INF, UID_ONE, UID_SOFTMAX_SUM, UID_DQ_ACCUM,
    UID_FIRST_VIRTUAL = 100
};

typedef struct {
    AttnShape shape;
    bool backward;
    Desc plan;
    int64_t plan_workspace;   /* bytes cuDNN's plan asks for */
    Desc *descs;              /* every descriptor the plan's graph was built from */
    int ndescs;
} CachedPlan;

struct CudnnAttn {
    CudnnApi api;
    cudnnHandle_t handle;
    long version;
    CachedPlan *plans;
    int nplans, cap;
};

/* ---- errors ------------------------------------------------------------ */
static int cudnn_fail(const CudnnApi *a, cudnnStatus_t st, const char *what, MpError *err)
{
    char last[256] = "";
    if (a->GetLastErrorString) a->GetLastErrorString(last, sizeof last);
    for (char *p = last; *p; p++)
        if (*p == '\n') *p = ' ';
    return mp_fail(err, "cudnn: %s: %s%s%s", what, a->GetErrorString ? a->GetErrorString(st) : "error",
                   last[0] ? ": " : "", last);
}
#define CK(call, what)                                                  \
    do {                                                                \
        cudnnStatus_t st_ = (call);                                     \
        if (st_ != CUDNN_STATUS_SUCCESS) return cudnn_fail(A, st_, what, err); \
    } while (0)

/* ---- loading ----------------------------------------------------------- */
static int load_api(CudnnApi *a, MpError *err)
{
    memset(a, 0, sizeof *a);
    a->lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (!a->lib) {
        const char *why = dlerror();
        return mp_fail(err, "cudnn: libcudnn.so.9 cannot be loaded (%s)", why ? why : "not found");
    }
#define SYM(field, name)                                                                     \
    do {                                                                                     \
        *(void **)&a->field = dlsym(a->lib, name);                                           \
        if (!a->field) {                                                                     \
            dlclose(a->lib);                                                                 \
            a->lib = NULL;                                                                   \
            return mp_fail(err, "cudnn: libcudnn.so.9 lacks %s (not cuDNN 9?)", name);       \
        }                                                                                    \
    } while (0)
    SYM(GetVersion, "cudnnGetVersion");
    SYM(GetErrorString, "cudnnGetErrorString");
    SYM(GetLastErrorString, "cudnnGetLastErrorString");
    SYM(Create, "cudnnCreate");
    SYM(Destroy, "cudnnDestroy");
    SYM(SetStream, "cudnnSetStream");
    SYM(BackendCreateDescriptor, "cudnnBackendCreateDescriptor");
    SYM(BackendDestroyDescriptor, "cudnnBackendDestroyDescriptor");
    SYM(BackendFinalize, "cudnnBackendFinalize");
    SYM(BackendSetAttribute, "cudnnBackendSetAttribute");
    SYM(BackendGetAttribute, "cudnnBackendGetAttribute");
    SYM(BackendExecute, "cudnnBackendExecute");
#undef SYM
    return 0;
}

extern "C" int cudnn_attn_open(CudnnAttn **out, MpError *err)
{
    *out = NULL;
    CudnnAttn *c = (CudnnAttn *)calloc(1, sizeof *c);
    if (!c) return mp_fail(err, "cudnn: out of host memory");
    if (load_api(&c->api, err)) { free(c); return -1; }
    c->version = (long)c->api.GetVersion();
    if (c->version < 90000) {
        long v = c->version;
        dlclose(c->api.lib);
        free(c);
        return mp_fail(err, "cudnn: version %ld is older than 9.0 (the SDPA graphs need cuDNN 9)", v);
    }
    cudnnStatus_t st = c->api.Create(&c->handle);
    if (st != CUDNN_STATUS_SUCCESS) {
        int rc = cudnn_fail(&c->api, st, "cudnnCreate", err);
        dlclose(c->api.lib);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void free_plan(CudnnApi *a, CachedPlan *p)
{
    if (p->plan) a->BackendDestroyDescriptor(p->plan);
    for (int i = p->ndescs - 1; i >= 0; i--) a->BackendDestroyDescriptor(p->descs[i]);
    free(p->descs);
    memset(p, 0, sizeof *p);
}

extern "C" void cudnn_attn_close(CudnnAttn *c)
{
    if (!c) return;
    for (int i = 0; i < c->nplans; i++) free_plan(&c->api, &c->plans[i]);
    free(c->plans);
    if (c->handle) c->api.Destroy(c->handle);
    /* libcudnn stays loaded: its sub-libraries keep state until exit */
    free(c);
}

extern "C" long cudnn_attn_version(const CudnnAttn *c) { return c ? c->version : 0; }

/* ---- graph building ---------------------------------------------------- */
typedef struct {
    CudnnAttn *c;
    Desc *descs;          /* tensors, op descriptors, ops: destroyed with the plan */
    int ndescs, cap;
    Desc ops[64];
    int nops;
    int64_t next_uid;
} Builder;

static int keep(Builder *g, Desc d, MpError *err)
{
    if (g->ndescs == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        Desc *n = (Desc *)realloc(g->descs, sizeof(Desc) * (size_t)cap);
        if (!n) return mp_fail(err, "cudnn: out of host memory");
        g->descs = n;
        g->cap = cap;
    }
    g->descs[g->ndescs++] = d;
    return 0;
}

static int create(Builder *g, cudnnBackendDescriptorType_t type, Desc *d, MpError *err)
{
    const CudnnApi *A = &g->c->api;
    *d = NULL;
    CK(A->BackendCreateDescriptor(type, d), "create descriptor");
    return keep(g, *d, err);
}

/* A tensor [4 dims]; uid < 0 takes the next virtual uid. */
static int tensor(Builder *g, Desc *t, int64_t uid, cudnnDataType_t dt, const int64_t dims[4],
                  const int64_t strides[4], bool is_virtual, bool by_value, MpError *err)
{
    const CudnnApi *A = &g->c->api;
    if (create(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, t, err)) return -1;
    if (uid < 0) uid = g->next_uid++;
    int64_t align = 16;
    CK(A->BackendSetAttribute(*t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt), "tensor data type");
    CK(A->BackendSetAttribute(*t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims), "tensor dims");
    CK(A->BackendSetAttribute(*t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides), "tensor strides");
    CK(A->BackendSetAttribute(*t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), "tensor uid");
    CK(A->BackendSetAttribute(*t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align), "tensor alignment");
    if (is_virtual) CK(A->BackendSetAttribute(*t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual), "tensor virtual");
    if (by_value) CK(A->BackendSetAttribute(*t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value), "tensor by value");
    CK(A->BackendFinalize(*t), "finalize tensor");
    return 0;
}

static int virt(Builder *g, Desc *t, cudnnDataType_t dt, const int64_t dims[4], const int64_t strides[4],
                MpError *err)
{
    return tensor(g, t, -1, dt, dims, strides, true, false, err);
}

static int scalar(Builder *g, Desc *t, int64_t uid, cudnnDataType_t dt, MpError *err)
{
    static const int64_t one[4] = {1, 1, 1, 1};
    return tensor(g, t, uid, dt, one, one, false, true, err);
}

static int add_op(Builder *g, Desc op, MpError *err)
{
    const CudnnApi *A = &g->c->api;
    CK(A->BackendFinalize(op), "finalize operation");
    if (g->nops == (int)(sizeof g->ops / sizeof g->ops[0])) return mp_fail(err, "cudnn: graph too large");
    g->ops[g->nops++] = op;
    return 0;
}

/* y = mode(x [, b [, t]]); axis >= 0 for GEN_INDEX and the index arithmetic */
static int pointwise(Builder *g, cudnnPointwiseMode_t mode, cudnnDataType_t prec, Desc x, Desc b,
                     Desc t, Desc y, int64_t axis, MpError *err)
{
    const CudnnApi *A = &g->c->api;
    Desc pw, op;
    if (create(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw, err)) return -1;
    CK(A->BackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode), "pointwise mode");
    CK(A->BackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec), "pointwise precision");
    if (axis >= 0) CK(A->BackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis), "pointwise axis");
    CK(A->BackendFinalize(pw), "finalize pointwise");
    if (create(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, &op, err)) return -1;
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw), "pointwise desc");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x), "pointwise x");
    if (b) CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b), "pointwise b");
    if (t) CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t), "pointwise t");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y), "pointwise y");
    return add_op(g, op, err);
}

static int matmul(Builder *g, Desc a, Desc b, Desc c, MpError *err)
{
    const CudnnApi *A = &g->c->api;
    Desc mm, op;
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    if (create(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR, &mm, err)) return -1;
    CK(A->BackendSetAttribute(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp), "matmul compute type");
    CK(A->BackendFinalize(mm), "finalize matmul");
    if (create(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, &op, err)) return -1;
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a), "matmul a");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b), "matmul b");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c), "matmul c");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm), "matmul desc");
    return add_op(g, op, err);
}

static int reduction(Builder *g, cudnnReduceTensorOp_t mode, Desc x, Desc y, MpError *err)
{
    const CudnnApi *A = &g->c->api;
    Desc rd, op;
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    if (create(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, &rd, err)) return -1;
    CK(A->BackendSetAttribute(rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode), "reduction operator");
    CK(A->BackendSetAttribute(rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp), "reduction compute type");
    CK(A->BackendFinalize(rd), "finalize reduction");
    if (create(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, &op, err)) return -1;
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x), "reduction x");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y), "reduction y");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd), "reduction desc");
    return add_op(g, op, err);
}

static int reshape(Builder *g, Desc x, Desc y, MpError *err)
{
    const CudnnApi *A = &g->c->api;
    Desc op;
    if (create(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, &op, err)) return -1;
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x), "reshape x");
    CK(A->BackendSetAttribute(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y), "reshape y");
    return add_op(g, op, err);
}

/* The diagonal of a causal block: q_offset - kv_offset (row i sees key j iff
 * j <= i + shift). */
static long causal_shift(const AttnShape *s) { return s->q_offset - s->kv_offset; }

/* Tensors of the caller's memory, in cuDNN's [b, h, s, d] order with the
 * executor's token-major strides. */
typedef struct {
    Desc q, kt, v, vt, o, stats, dout, dq, dk, dv, k_view;
    Desc scale, shift, neg_inf, one;
} IoTensors;

static int io_tensors(Builder *g, const AttnShape *s, bool backward, IoTensors *io, MpError *err)
{
    int64_t B = s->B, H = s->nh, G = s->nkv, Tq = s->Tq, Tk = s->Tk, Dq = s->hd_qk, Dv = s->hd_v;
    int64_t qs = s->q_stride, ks = s->k_stride, vs = s->v_stride;
    const int64_t q_dim[4] = {B, H, Tq, Dq}, q_str[4] = {Tq * qs, Dq, qs, 1};
    const int64_t kt_dim[4] = {B, G, Dq, Tk}, kt_str[4] = {Tk * ks, Dq, 1, ks};
    const int64_t v_dim[4] = {B, G, Tk, Dv}, v_str[4] = {Tk * vs, Dv, vs, 1};
    const int64_t vt_dim[4] = {B, G, Dv, Tk}, vt_str[4] = {Tk * vs, Dv, 1, vs};
    const int64_t o_dim[4] = {B, H, Tq, Dv}, o_str[4] = {Tq * H * Dv, Dv, H * Dv, 1};
    const int64_t st_dim[4] = {B, H, Tq, 1}, st_str[4] = {H * Tq, Tq, 1, 1};
    memset(io, 0, sizeof *io);
    if (tensor(g, &io->q, UID_Q, CUDNN_DATA_BFLOAT16, q_dim, q_str, false, false, err) ||
        tensor(g, &io->kt, UID_K, CUDNN_DATA_BFLOAT16, kt_dim, kt_str, false, false, err) ||
        tensor(g, &io->o, UID_O, CUDNN_DATA_BFLOAT16, o_dim, o_str, false, false, err) ||
        tensor(g, &io->stats, UID_STATS, CUDNN_DATA_FLOAT, st_dim, st_str, false, false, err) ||
        scalar(g, &io->scale, UID_SCALE, CUDNN_DATA_FLOAT, err))
        return -1;
    if (s->mask == ATTN_MASK_CAUSAL && scalar(g, &io->neg_inf, UID_NEG_INF, CUDNN_DATA_FLOAT, err)) return -1;
    if (s->mask == ATTN_MASK_CAUSAL && causal_shift(s) != 0 &&
        scalar(g, &io->shift, UID_SHIFT, CUDNN_DATA_INT32, err))
        return -1;
    if (!backward) return tensor(g, &io->v, UID_V, CUDNN_DATA_BFLOAT16, v_dim, v_str, false, false, err);
    const int64_t k_dim[4] = {B, G, Tk, Dq}, k_str[4] = {Tk * ks, Dq, ks, 1};
    if (tensor(g, &io->vt, UID_V, CUDNN_DATA_BFLOAT16, vt_dim, vt_str, false, false, err) ||
        tensor(g, &io->dout, UID_DO, CUDNN_DATA_BFLOAT16, o_dim, o_str, false, false, err) ||
        tensor(g, &io->dq, UID_DQ, CUDNN_DATA_BFLOAT16, q_dim, q_str, false, false, err) ||
        tensor(g, &io->dk, UID_DK, CUDNN_DATA_BFLOAT16, k_dim, k_str, false, false, err) ||
        tensor(g, &io->dv, UID_DV, CUDNN_DATA_BFLOAT16, v_dim, v_str, false, false, err) ||
        scalar(g, &io->one, UID_ONE, CUDNN_DATA_FLOAT, err) ||
        virt(g, &io->k_view, CUDNN_DATA_BFLOAT16, k_dim, k_str, err))
        return -1;
    return 0;
}

/* S [b, h, Tq, Tk] fp32 = scale * Q K^T, with the causal mask applied. */
static int scaled_masked_scores(Builder *g, const AttnShape *s, const IoTensors *io, Desc *out,
                                MpError *err)
{
    int64_t B = s->B, H = s->nh, Tq = s->Tq, Tk = s->Tk;
    const int64_t sd[4] = {B, H, Tq, Tk}, ss[4] = {H * Tq * Tk, Tq * Tk, Tk, 1};
    Desc S, S1;
    if (virt(g, &S, CUDNN_DATA_FLOAT, sd, ss, err) || matmul(g, io->q, io->kt, S, err) ||
        virt(g, &S1, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, S, io->scale, NULL, S1, -1, err))
        return -1;
    if (s->mask == ATTN_MASK_NONE) { *out = S1; return 0; }
    /* keep (i, j) iff i + shift >= j: the right bound of a diagonal band */
    Desc row, col, cmp, S2;
    if (virt(g, &row, CUDNN_DATA_INT32, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, S1, NULL, NULL, row, 2, err) ||
        virt(g, &col, CUDNN_DATA_INT32, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, S1, NULL, NULL, col, 3, err))
        return -1;
    if (io->shift) {
        Desc row2;
        if (virt(g, &row2, CUDNN_DATA_INT32, sd, ss, err) ||
            pointwise(g, CUDNN_POINTWISE_ADD, CUDNN_DATA_INT32, row, io->shift, NULL, row2, 3, err))
            return -1;
        row = row2;
    }
    if (virt(g, &cmp, CUDNN_DATA_BOOLEAN, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, NULL, cmp, -1, err) ||
        virt(g, &S2, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, S1, io->neg_inf, cmp, S2, -1, err))
        return -1;
    *out = S2;
    return 0;
}

static int forward_graph(Builder *g, const AttnShape *s, MpError *err)
{
    IoTensors io;
    if (io_tensors(g, s, false, &io, err)) return -1;
    int64_t B = s->B, H = s->nh, Tq = s->Tq, Tk = s->Tk;
    const int64_t sd[4] = {B, H, Tq, Tk}, ss[4] = {H * Tq * Tk, Tq * Tk, Tk, 1};
    const int64_t rd[4] = {B, H, Tq, 1}, rs[4] = {H * Tq, Tq, 1, 1};
    Desc S, M, S3, E, Z, LZ, P;
    if (scaled_masked_scores(g, s, &io, &S, err) ||
        virt(g, &M, CUDNN_DATA_FLOAT, rd, rs, err) || reduction(g, CUDNN_REDUCE_TENSOR_MAX, S, M, err) ||
        virt(g, &S3, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, S, M, NULL, S3, -1, err) ||
        virt(g, &E, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, S3, NULL, NULL, E, -1, err) ||
        virt(g, &Z, CUDNN_DATA_FLOAT, rd, rs, err) || reduction(g, CUDNN_REDUCE_TENSOR_ADD, E, Z, err) ||
        virt(g, &LZ, CUDNN_DATA_FLOAT, rd, rs, err) ||
        pointwise(g, CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, Z, NULL, NULL, LZ, -1, err) ||
        pointwise(g, CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, M, LZ, NULL, io.stats, -1, err) ||
        virt(g, &P, CUDNN_DATA_BFLOAT16, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, E, Z, NULL, P, -1, err) ||
        matmul(g, P, io.v, io.o, err))
        return -1;
    return 0;
}

static int backward_graph(Builder *g, const AttnShape *s, MpError *err)
{
    IoTensors io;
    if (io_tensors(g, s, true, &io, err)) return -1;
    int64_t B = s->B, H = s->nh, Tq = s->Tq, Tk = s->Tk, Dq = s->hd_qk, Dv = s->hd_v;
    const int64_t sd[4] = {B, H, Tq, Tk}, ss[4] = {H * Tq * Tk, Tq * Tk, Tk, 1};
    const int64_t td[4] = {B, H, Tk, Tq}, ts[4] = {H * Tq * Tk, Tq * Tk, 1, Tk};   /* S^T views */
    const int64_t rd[4] = {B, H, Tq, 1}, rs[4] = {H * Tq, Tq, 1, 1};
    const int64_t od[4] = {B, H, Tq, Dv}, os[4] = {H * Tq * Dv, Tq * Dv, H * Dv, 1};
    const int64_t qd[4] = {B, H, Tq, Dq}, qa[4] = {H * Tq * Dq, Tq * Dq, Dq, 1};
    Desc dOO, Dr, sum, S, S3, P, PT, dP, dP1, dP2, dS, dST, dq_acc;
    /* D = rowsum(dO o O), fp32 in the workspace */
    if (virt(g, &dOO, CUDNN_DATA_FLOAT, od, os, err) ||
        pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, io.dout, io.o, NULL, dOO, -1, err) ||
        virt(g, &Dr, CUDNN_DATA_FLOAT, rd, rs, err) || reduction(g, CUDNN_REDUCE_TENSOR_ADD, dOO, Dr, err) ||
        tensor(g, &sum, UID_SOFTMAX_SUM, CUDNN_DATA_FLOAT, rd, rs, false, false, err) ||
        pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, Dr, io.one, NULL, sum, -1, err))
        return -1;
    /* P = exp(S - Stats) */
    if (scaled_masked_scores(g, s, &io, &S, err) ||
        virt(g, &S3, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, S, io.stats, NULL, S3, -1, err) ||
        virt(g, &P, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, S3, NULL, NULL, P, -1, err) ||
        virt(g, &PT, CUDNN_DATA_BFLOAT16, td, ts, err) || reshape(g, P, PT, err))
        return -1;
    /* dV = P^T dO (summed over the heads of a group) */
    if (H == s->nkv) {
        if (matmul(g, PT, io.dout, io.dv, err)) return -1;
    } else {
        const int64_t fd[4] = {B, H, Tk, Dv}, fs[4] = {H * Tk * Dv, Tk * Dv, Dv, 1};
        Desc dvf;
        if (virt(g, &dvf, CUDNN_DATA_BFLOAT16, fd, fs, err) || matmul(g, PT, io.dout, dvf, err) ||
            reduction(g, CUDNN_REDUCE_TENSOR_ADD, dvf, io.dv, err))
            return -1;
    }
    /* dS = P o (dO V^T - D) * scale */
    if (virt(g, &dP, CUDNN_DATA_FLOAT, sd, ss, err) || matmul(g, io.dout, io.vt, dP, err) ||
        virt(g, &dP1, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, dP, sum, NULL, dP1, -1, err) ||
        virt(g, &dP2, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dP1, P, NULL, dP2, -1, err) ||
        virt(g, &dS, CUDNN_DATA_FLOAT, sd, ss, err) ||
        pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dP2, io.scale, NULL, dS, -1, err) ||
        virt(g, &dST, CUDNN_DATA_BFLOAT16, td, ts, err) || reshape(g, dS, dST, err))
        return -1;
    /* dK = dS^T Q */
    if (H == s->nkv) {
        if (matmul(g, dST, io.q, io.dk, err)) return -1;
    } else {
        const int64_t fd[4] = {B, H, Tk, Dq}, fs[4] = {H * Tk * Dq, Tk * Dq, Dq, 1};
        Desc dkf;
        if (virt(g, &dkf, CUDNN_DATA_BFLOAT16, fd, fs, err) || matmul(g, dST, io.q, dkf, err) ||
            reduction(g, CUDNN_REDUCE_TENSOR_ADD, dkf, io.dk, err))
            return -1;
    }
    /* dQ = dS K, accumulated in fp32 in the workspace */
    if (reshape(g, io.kt, io.k_view, err) ||
        tensor(g, &dq_acc, UID_DQ_ACCUM, CUDNN_DATA_FLOAT, qd, qa, false, false, err) ||
        matmul(g, dS, io.k_view, dq_acc, err) ||
        pointwise(g, CUDNN_POINTWISE_IDENTITY, CUDNN_DATA_FLOAT, dq_acc, NULL, NULL, io.dq, -1, err))
        return -1;
    return 0;
}

/* Operation graph -> heuristics -> the first engine config that finalizes. */
static int build_plan(Builder *g, Desc *plan, int64_t *workspace, MpError *err)
{
    CudnnAttn *c = g->c;
    const CudnnApi *A = &c->api;
    Desc graph, heur;
    if (create(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph, err)) return -1;
    CK(A->BackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &c->handle), "graph handle");
    CK(A->BackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->nops, g->ops), "graph ops");
    CK(A->BackendFinalize(graph), "finalize operation graph");
    if (create(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur, err)) return -1;
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    CK(A->BackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph), "heuristics graph");
    CK(A->BackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode), "heuristics mode");
    CK(A->BackendFinalize(heur), "finalize heuristics (no engine supports this attention graph)");
    int64_t n = 0;
    CK(A->BackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &n, NULL), "heuristics count");
    if (n < 1) return mp_fail(err, "cudnn: no engine supports this attention graph");
    if (n > 16) n = 16;
    Desc cfgs[16];
    for (int64_t i = 0; i < n; i++)
        if (create(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[i], err)) return -1;
    int64_t got = 0;
    CK(A->BackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, &got, cfgs), "heuristics results");
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    for (int64_t i = 0; i < got; i++) {
        Desc p = NULL;
        CK(A->BackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &p), "create plan");
        cudnnStatus_t st = A->BackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &c->handle);
        if (st == CUDNN_STATUS_SUCCESS)
            st = A->BackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
        if (st == CUDNN_STATUS_SUCCESS) st = A->BackendFinalize(p);
        if (st == CUDNN_STATUS_SUCCESS) {
            int64_t ws = 0, cnt = 0;
            st = A->BackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &cnt, &ws);
            if (st == CUDNN_STATUS_SUCCESS) {
                *plan = p;
                *workspace = ws;
                return 0;
            }
        }
        last = st;
        A->BackendDestroyDescriptor(p);
    }
    return cudnn_fail(A, last, "no engine config of this attention graph finalizes", err);
}

static bool same_shape(const AttnShape *a, const AttnShape *b)
{
    return a->B == b->B && a->Tq == b->Tq && a->Tk == b->Tk && a->nh == b->nh && a->nkv == b->nkv &&
           a->hd_qk == b->hd_qk && a->hd_v == b->hd_v && a->q_stride == b->q_stride &&
           a->k_stride == b->k_stride && a->v_stride == b->v_stride && a->mask == b->mask &&
           (a->mask == ATTN_MASK_NONE || causal_shift(a) == causal_shift(b));
}

static CachedPlan *find_plan(CudnnAttn *c, const AttnShape *s, bool backward)
{
    for (int i = 0; i < c->nplans; i++)
        if (c->plans[i].backward == backward && same_shape(&c->plans[i].shape, s)) return &c->plans[i];
    return NULL;
}

static int check_supported(const AttnShape *s, MpError *err)
{
    if (attn_shape_check(s, err)) return -1;
    if (s->hd_qk % 8 || s->hd_v % 8)
        return mp_fail(err, "cudnn: hd: head dims %d/%d must be multiples of 8", s->hd_qk, s->hd_v);
    if (s->q_stride % 8 || s->k_stride % 8 || s->v_stride % 8)
        return mp_fail(err, "cudnn: strides %d/%d/%d must be multiples of 8 elements", s->q_stride, s->k_stride, s->v_stride);
    if (s->mask == ATTN_MASK_CAUSAL && causal_shift(s) < 0)
        return mp_fail(err, "cudnn: offsets: causal block with q_offset %ld < kv_offset %ld (rows that see no key) is not supported",
                       s->q_offset, s->kv_offset);
    if (s->mask == ATTN_MASK_CAUSAL && causal_shift(s) > INT32_MAX)
        return mp_fail(err, "cudnn: offsets: diagonal shift %ld does not fit int32", causal_shift(s));
    return 0;
}

extern "C" int cudnn_attn_prepare(CudnnAttn *c, const AttnShape *s, bool backward, MpError *err)
{
    if (find_plan(c, s, backward)) return 0;
    if (check_supported(s, err)) return -1;
    Builder g;
    memset(&g, 0, sizeof g);
    g.c = c;
    g.next_uid = UID_FIRST_VIRTUAL;
    Desc plan = NULL;
    int64_t ws = 0;
    int rc = backward ? backward_graph(&g, s, err) : forward_graph(&g, s, err);
    if (!rc) rc = build_plan(&g, &plan, &ws, err);
    if (!rc && c->nplans == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        CachedPlan *n = (CachedPlan *)realloc(c->plans, sizeof(CachedPlan) * (size_t)cap);
        if (!n) rc = mp_fail(err, "cudnn: out of host memory");
        else { c->plans = n; c->cap = cap; }
    }
    if (rc) {
        CachedPlan tmp = {*s, backward, plan, 0, g.descs, g.ndescs};
        free_plan(&c->api, &tmp);
        return -1;
    }
    CachedPlan *p = &c->plans[c->nplans++];
    *p = (CachedPlan){*s, backward, plan, ws, g.descs, g.ndescs};
    return 0;
}

/* Backward workspace: [dQ accumulator fp32 | D fp32 | cuDNN's], 256-byte aligned. */
static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }
static size_t dq_accum_bytes(const AttnShape *s) { return align256((size_t)s->B * s->nh * s->Tq * s->hd_qk * 4); }
static size_t softmax_sum_bytes(const AttnShape *s) { return align256((size_t)s->B * s->nh * s->Tq * 4); }

extern "C" size_t cudnn_attn_workspace_bytes(CudnnAttn *c, const AttnShape *s, bool backward)
{
    CachedPlan *p = find_plan(c, s, backward);
    if (!p) return 0;
    size_t ws = align256((size_t)p->plan_workspace);
    return backward ? ws + dq_accum_bytes(s) + softmax_sum_bytes(s) : ws;
}

static int execute(CudnnAttn *c, CachedPlan *p, int n, const int64_t *uids, void **ptrs, void *workspace,
                   cudaStream_t stream, MpError *err)
{
    const CudnnApi *A = &c->api;
    Desc pack = NULL;
    CK(A->SetStream(c->handle, stream), "set stream");
    CK(A->BackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack), "create variant pack");
    cudnnStatus_t st = A->BackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (st == CUDNN_STATUS_SUCCESS)
        st = A->BackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (st == CUDNN_STATUS_SUCCESS)
        st = A->BackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
    if (st == CUDNN_STATUS_SUCCESS) st = A->BackendFinalize(pack);
    if (st == CUDNN_STATUS_SUCCESS) st = A->BackendExecute(c->handle, p->plan, pack);
    A->BackendDestroyDescriptor(pack);
    if (st != CUDNN_STATUS_SUCCESS) return cudnn_fail(A, st, "execute attention plan", err);
    return 0;
}

/* Entries of a variant pack whose first `always` uids every graph has,
 * followed by NEG_INF (causal graphs) and SHIFT (causal with a shifted
 * diagonal): cuDNN rejects a pack that names a uid its graph lacks. */
static int pack_count(const AttnShape *s, int always)
{
    if (s->mask != ATTN_MASK_CAUSAL) return always;
    return causal_shift(s) != 0 ? always + 2 : always + 1;
}

/* Below 9.10 cuDNN's masked softmax wants the lowest float instead of -inf
 * (cudnn-frontend's get_negative_inf_value). */
static float neg_inf_value(const CudnnAttn *c) { return c->version < 91000 ? -3.40282347e38f : -INFINITY; }

extern "C" int cudnn_attn_forward(CudnnAttn *c, const AttnShape *s, bf16_t *out, float *lse,
                                  const bf16_t *q, const bf16_t *k, const bf16_t *v, void *workspace,
                                  size_t workspace_bytes, cudaStream_t stream, MpError *err)
{
    CachedPlan *p = find_plan(c, s, false);
    if (!p) return mp_fail(err, "cudnn: forward plan of this shape was not prepared (call attention_prepare first)");
    if (workspace_bytes < (size_t)p->plan_workspace)
        return mp_fail(err, "cudnn: workspace: %zu bytes given, the plan needs %lld", workspace_bytes, (long long)p->plan_workspace);
    float scale = 1.0f / sqrtf((float)s->hd_qk), ninf = neg_inf_value(c);
    int32_t shift = (int32_t)causal_shift(s);
    int64_t uids[8] = {UID_Q, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEG_INF, UID_SHIFT};
    void *ptrs[8] = {(void *)q, (void *)k, (void *)v, out, lse, &scale, &ninf, &shift};
    return execute(c, p, pack_count(s, 6), uids, ptrs, workspace, stream, err);
}

extern "C" int cudnn_attn_backward(CudnnAttn *c, const AttnShape *s, bf16_t *dq, bf16_t *dk, bf16_t *dv,
                                   const bf16_t *dout, const bf16_t *q, const bf16_t *k, const bf16_t *v,
                                   const bf16_t *out, const float *lse, void *workspace,
                                   size_t workspace_bytes, cudaStream_t stream, MpError *err)
{
    CachedPlan *p = find_plan(c, s, true);
    if (!p) return mp_fail(err, "cudnn: backward plan of this shape was not prepared (call attention_prepare first)");
    size_t need = cudnn_attn_workspace_bytes(c, s, true);
    if (workspace_bytes < need)
        return mp_fail(err, "cudnn: workspace: %zu bytes given, the backward needs %zu", workspace_bytes, need);
    char *w = (char *)workspace;
    void *dq_acc = w, *sum = w + dq_accum_bytes(s), *plan_ws = w + dq_accum_bytes(s) + softmax_sum_bytes(s);
    /* the dQ accumulator starts at zero (cuDNN before 9.6 requires it; later
     * ones overwrite it, and the memset is a small fraction of the backward) */
    cudaError_t ce = cudaMemsetAsync(dq_acc, 0, dq_accum_bytes(s), stream);
    if (ce != cudaSuccess) return mp_fail(err, "cudnn: dQ accumulator: %s", cudaGetErrorString(ce));
    float scale = 1.0f / sqrtf((float)s->hd_qk), ninf = neg_inf_value(c), one = 1.0f;
    int32_t shift = (int32_t)causal_shift(s);
    int64_t uids[15] = {UID_Q, UID_K, UID_V, UID_O, UID_STATS, UID_DO, UID_DQ, UID_DK, UID_DV,
                        UID_SCALE, UID_ONE, UID_SOFTMAX_SUM, UID_DQ_ACCUM, UID_NEG_INF, UID_SHIFT};
    void *ptrs[15] = {(void *)q, (void *)k, (void *)v, (void *)out, (void *)lse, (void *)dout, dq, dk, dv,
                      &scale, &one, sum, dq_acc, &ninf, &shift};
    return execute(c, p, pack_count(s, 13), uids, ptrs, plan_ws, stream, err);
}
#endif
