#!/usr/bin/env python3
"""peer_torch.py: the training step of `moeplan execute` on one GPU, written
again in plain PyTorch, to time beside the executor on the same work.

    peer_torch.py --model mixtral-8x7b --layers 4 --seq 4096 --mbs 4 --gbs 16 \
                  --steps 8 --warmup 2 [--mode eager|compile] [--lr 1e-4] [--out FILE]
    peer_torch.py --check [--mode eager|compile]     tiny 2-layer model on the GPU
    peer_torch.py --flops-only --model M --layers L --seq S --gbs B   (no torch needed)

What is the same as the executor (docs/executor-step.md; executor/layer.c,
chunk.c, train.c, params.c, backend_cuda.cu), per micro-batch of b sequences
of s tokens (T = b*s), B sequences per optimizer step (B/b micro-batches,
gradients accumulated):

    x = embedding(tokens)                                         [T, h] bf16
    per layer (all MoE; dense layers and shared experts are refused):
      x += Wo . SDPA(rope(RMSNorm(x) . Wqkv^T))   GQA, causal, RoPE halves (i, i + d/2)
      x += MoE(RMSNorm(x))
    loss_mb = (sum_t CE(RMSNorm(x) . Wout^T)[t] + T * sum_layers aux) / (B*s)

  - RMSNorm eps 1e-5 (executor/layer.c LAYER_RMS_EPS), RoPE base from the
    model file (executor/layer.c uses a fixed 1e6, which is the base of both
    catalog models timed here).  No QK norm: the executor has none (Qwen3's
    qk_norm is not modelled by it).
  - router: logits = RMSNorm(x) . Wr^T in fp32, softmax over E, top-k,
    renormalised over the k chosen when k > 1 (kernels/router.h).  The
    executor's router GEMM writes fp32 directly; here the bf16 GEMM's output is
    cast to fp32 (same FLOPs, the logits rounded to bf16 first); the backward
    casts d logits to bf16 before the two GEMMs as the executor does.
  - aux loss (Switch / Megatron switch_load_balancing_loss_func) per MoE layer
    over the T tokens of the micro-batch: coeff * E * sum_e f_e P_e with
    f_e = pairs routed to e / (T k) (no gradient), P_e = mean_t probs[t, e];
    coefficient default 1e-2 (cli/cmd_execute.c EXECUTE_DEFAULT_AUX_LOSS_COEFF,
    train.c exec_aux_loss_coeff; NOT the model file's aux_loss_coeff).
  - dispatcher, one GPU, dropless (core/train.c: capacity_factor 0 is the
    default; the executor then sends every pair): the (token, slot) pairs
    sorted by expert (stable argsort), rows gathered, grouped SwiGLU GEMMs
    (torch._grouped_mm; a loop over experts where it is missing), expert
    outputs weighted by their probability and summed back per token.
    SwiGLU: [gate F | up F] rows of W13 (kernels/swiglu.h), a = silu(g) * u.
  - output layer not tied, cross entropy over the full vocabulary in fp32.
  - parameters: an fp32 master weight per parameter (executor/params.c keeps
    the same elements in two flat arenas, dense and expert), the bf16 working
    copy used by every GEMM, an fp32 gradient accumulated over the
    micro-batches (each bf16 gradient is added into its fp32 gradient as soon
    as autograd produces it and then freed; the executor accumulates in the
    GEMM epilogue instead, so here each micro-batch's contribution is rounded
    to bf16 once before the fp32 sum; same state), AdamW over the fp32 masters
    (torch.optim.AdamW fused, beta 0.9 / 0.95, eps 1e-8, weight decay 0, bias
    correction; kernels/adam.h), then the bf16 copies rewritten.  State per
    parameter as in the executor: master 4 + gradient 4 + m 4 + v 4 + bf16
    copy 2 bytes.
  - initialisation: uniform in +-0.02*sqrt(3) (std 0.02; executor/model.c
    MODEL_INIT_HALF_WIDTH), norms 1.  Not the executor's hash, so not the same
    numbers; the same distribution, so the same routing balance at the start.
  - data: random token ids (uniform, s + 1 per sequence, targets shifted by
    one; the executor's --random-tokens), or with --data synthetic the
    executor's learnable task x[t+1] = (5 x[t] + 3) mod V.
  - timing as the executor's (train.c exec_train, backend_cuda.cu
    cu_step_times): one CUDA event at the end of every step after the loss
    was read to the host (the step's one synchronisation), step time = the
    time between consecutive marks, median over the steps after --warmup.
    Peak memory as the executor's: the most of (total - free) device memory
    (cudaMemGetInfo) seen at a step's end; PyTorch's allocator peaks beside it.
  - FLOPs and MFU: a port of core/flops.c megatron_per_token and
    legacy_per_token (no MLA, no MTP, no sliding window), the model truncated
    to --layers as executor/measure.c measure_truncated_model does, divided by
    the cluster file's peak_bf16_tflops (topologies/dgx-h200.json: 989.5).

--mode compile: torch.compile of each layer's forward and of the output
layer + loss (the steps before --warmup include the compilation).

Output: one JSON line on stdout (and --out FILE); progress on stderr.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RMS_EPS = 1e-5                        # executor/layer.c LAYER_RMS_EPS
INIT_HALF_WIDTH = 0.02 * math.sqrt(3.0)   # executor/model.c MODEL_INIT_HALF_WIDTH
DEFAULT_AUX_COEFF = 1e-2              # cli/cmd_execute.c EXECUTE_DEFAULT_AUX_LOSS_COEFF
DEFAULT_LR = 1e-3                     # cli/cmd_execute.c EXECUTE_DEFAULT_LR
ADAM_BETAS = (0.9, 0.95)              # executor/params.c params_adam_step
ADAM_EPS = 1e-8

# The --check model: small enough for any GPU; sizes multiples of 16 (the
# alignment torch._grouped_mm wants of its rows).
TINY_MODEL = dict(name="tiny-check", num_layers=2, hidden=128, num_heads=4, num_kv_groups=2, head_dim=32,
                  num_experts=8, top_k=2, expert_ffn=96, shared_ffn=0, num_dense_layers=0, dense_ffn=0, vocab=256,
                  swiglu=True, router="softmax", tied_embeddings=False, rotary_base=10000.0)


def fail(msg):
    """bad input: one line, exit status 2"""
    print("peer_torch.py: " + msg, file=sys.stderr)
    sys.exit(2)


def log(msg):
    print("peer_torch.py: " + msg, file=sys.stderr, flush=True)


# ---- the model catalog and the cluster file (read from the repository) -------

def load_model(name):
    path = name if name.endswith(".json") else os.path.join(REPO, "models", name + ".json")
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        fail("--model: %s: %s" % (path, e))
    m.setdefault("shared_ffn", 0)
    m.setdefault("num_dense_layers", 0)
    m.setdefault("dense_ffn", 0)
    m.setdefault("swiglu", True)
    m.setdefault("router", "softmax")
    m.setdefault("tied_embeddings", False)
    m.setdefault("rotary_base", 1000000.0)
    for key in ("num_layers", "hidden", "num_heads", "num_kv_groups", "head_dim", "num_experts", "top_k",
                "expert_ffn", "vocab"):
        if not isinstance(m.get(key), int) or m[key] <= 0:
            fail("%s: %s: must be a positive integer" % (path, key))
    # what the peer implements: the executor's step for these models
    unsupported = [("mla", "multi-head latent attention"), ("sliding_window", "sliding-window attention"),
                   ("qkv_bias", "a QKV bias"), ("mtp_layers", "multi-token prediction")]
    for key, what in unsupported:
        if m.get(key):
            fail("%s: %s: %s is not implemented by the peer" % (path, key, what))
    if m.get("qk_norm", "none") != "none":
        fail("%s: qk_norm: %s: normalised queries and keys are not implemented (nor by the executor)" % (path, m["qk_norm"]))
    if m["router"] != "softmax":
        fail("%s: router: only the softmax router is implemented (the executor's)" % path)
    if not m["swiglu"]:
        fail("%s: swiglu: only SwiGLU MLPs are implemented (the executor's)" % path)
    if m["shared_ffn"] or m["num_dense_layers"]:
        fail("%s: shared_ffn / num_dense_layers: shared experts and dense layers are not implemented by the peer"
             % path)
    if m["tied_embeddings"]:
        fail("%s: tied_embeddings: tied embeddings are not implemented by the peer" % path)
    if m["num_heads"] % m["num_kv_groups"]:
        fail("%s: num_kv_groups: %d does not divide num_heads %d" % (path, m["num_kv_groups"], m["num_heads"]))
    if m["head_dim"] % 2:
        fail("%s: head_dim: RoPE needs an even head dimension" % path)
    return m


def load_peak_flops(cluster):
    path = cluster if cluster.endswith(".json") else os.path.join(REPO, "topologies", cluster + ".json")
    try:
        with open(path) as f:
            c = json.load(f)
        return float(c["peak_bf16_tflops"]) * 1e12
    except (OSError, ValueError, KeyError) as e:
        fail("--cluster: %s: %s" % (path, e))


def truncated(m, layers):
    """executor/measure.c measure_truncated_model: the first `layers` layers"""
    t = dict(m)
    if 0 < layers < m["num_layers"]:
        t["num_layers"] = layers
        t["num_dense_layers"] = min(m["num_dense_layers"], layers)
    return t


# ---- FLOPs: core/flops.c, megatron_per_token and legacy_per_token ------------
# (the GQA branch: no MLA, no MTP; sliding windows are refused above)

def flops_per_token_megatron(m, s):
    h, n, g, d = m["hidden"], m["num_heads"], m["num_kv_groups"], m["head_dim"]
    V, f = m["vocab"], (1.5 if m["swiglu"] else 1.0)
    L = m["num_layers"]
    Lm = L - m["num_dense_layers"]                 # model_num_moe_layers
    Ld = m["num_dense_layers"]
    moe_ffn = float(m["expert_ffn"]) * m["top_k"] + m["shared_ffn"]
    mlp = 12.0 * h * f * (float(m["dense_ffn"]) * Ld + moe_ffn * Lm)
    attn = 12.0 * L * (h * n * d + h * g * d + s * n * d / 2.0)
    logit = 6.0 * h * V
    return mlp + attn + logit


def flops_per_token_legacy(m, s):
    h, n, g, d = m["hidden"], m["num_heads"], m["num_kv_groups"], m["head_dim"]
    L, V, f = m["num_layers"], m["vocab"], (1.5 if m["swiglu"] else 1.0)
    attn = 12.0 * L * (h * n * d + h * g * d + s * n * d)
    ffn = float(m["expert_ffn"]) * m["top_k"] + m["shared_ffn"]
    mlp = 12.0 * L * h * ffn * f
    logit = 6.0 * h * V
    return attn + mlp + logit


def step_flops(m, seq, tokens):
    return {"megatron": flops_per_token_megatron(m, seq) * tokens,
            "legacy": flops_per_token_legacy(m, seq) * tokens}


# ---- PyTorch from here on (imported in main: --flops-only runs without it) ----

torch = None
F = None


class Params:
    """The parameter table (executor/model.c order): per parameter an fp32
    master weight, an fp32 gradient accumulated over the micro-batches and
    the bf16 working copy autograd sees; fused AdamW over the fp32 masters
    (executor/params.c runs one Adam kernel over each of its two flat arenas,
    dense and expert; the same elementwise update over the same elements).
    Tensors per parameter rather than flat arenas: the largest stays below
    2^31 elements (Mixtral's expert W13 of one layer: 0.94 G)."""

    def __init__(self, m, L, device, seed):
        h, n, g, d = m["hidden"], m["num_heads"], m["num_kv_groups"], m["head_dim"]
        E, Fe, V = m["num_experts"], m["expert_ffn"], m["vocab"]
        # (name, shape, is_expert, is_norm)
        table = [("embedding", (V, h), False, False), ("final_norm", (h,), False, True),
                 ("output", (V, h), False, False)]
        for l in range(L):
            table += [("layer%d.attn_norm" % l, (h,), False, True),
                      ("layer%d.wqkv" % l, ((n + 2 * g) * d, h), False, False),   # [q heads | k groups | v groups] x h
                      ("layer%d.wo" % l, (h, n * d), False, False),
                      ("layer%d.mlp_norm" % l, (h,), False, True),
                      ("layer%d.router" % l, (E, h), False, False),
                      ("layer%d.experts.w13" % l, (E, 2 * Fe, h), True, False),   # [E][gate F | up F][h]
                      ("layer%d.experts.w2" % l, (E, h, Fe), True, False)]        # [E][h][F]
        self.numel = [0, 0]   # dense, expert (the executor's two arenas)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        self.w = {}           # name -> bf16 working copy (leaf, requires grad)
        self.master = []      # fp32 master weights, the optimizer's parameters
        self.grads = []       # fp32 accumulated gradients (master.grad)
        self.copies = []      # bf16 working copies, in the order of master
        with torch.no_grad():
            for name, shape, expert, is_norm in table:
                self.numel[int(expert)] += math.prod(shape)
                mw = torch.empty(shape, dtype=torch.float32, device=device)
                if is_norm:
                    mw.fill_(1.0)
                else:
                    mw.uniform_(-INIT_HALF_WIDTH, INIT_HALF_WIDTH, generator=gen)
                mw.requires_grad_(True)
                mw.grad = torch.zeros_like(mw)
                p = mw.detach().to(torch.bfloat16).requires_grad_(True)
                p.register_post_accumulate_grad_hook(self._accumulate_into(mw.grad))
                self.w[name] = p
                self.master.append(mw)
                self.grads.append(mw.grad)
                self.copies.append(p)
        self.opt = None
        self.opt_kind = None

    @staticmethod
    def _accumulate_into(g32):
        # the micro-batch's bf16 gradient into the fp32 one, then freed
        def hook(p):
            g32.add_(p.grad)
            p.grad = None
        return hook

    def layer(self, l):
        keys = ("attn_norm", "wqkv", "wo", "mlp_norm", "router", "experts.w13", "experts.w2")
        return {k.replace("experts.", ""): self.w["layer%d.%s" % (l, k)] for k in keys}

    def make_optimizer(self, lr):
        kw = dict(lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0)
        try:
            self.opt = torch.optim.AdamW(self.master, fused=True, **kw)
            self.opt_kind = "fused"
        except (RuntimeError, TypeError, ValueError):
            self.opt = torch.optim.AdamW(self.master, foreach=True, **kw)
            self.opt_kind = "foreach"

    def zero_grads(self):
        torch._foreach_zero_(self.grads)

    def step(self):
        """AdamW on the fp32 masters, then the bf16 copies rewritten"""
        self.opt.step()
        with torch.no_grad():
            for p, mw in zip(self.copies, self.master):
                p.copy_(mw)


# ---- the layer ----------------------------------------------------------------

def rms_norm(x, w):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), w, RMS_EPS)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + RMS_EPS) * w.float()).to(x.dtype)


def rope_tables(s, d, base, device):
    """cos, sin [s, d/2] fp32: position t, pair i rotated by t * base^(-2i/d)"""
    i = torch.arange(d // 2, dtype=torch.float64)
    inv = base ** (-2.0 * i / d)
    ang = torch.arange(s, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)


def apply_rope(x, cos, sin):
    """x [b, s, H, d] bf16: pairs (i, i + d/2) rotated (kernels/rope.c), fp32 arithmetic"""
    d2 = x.shape[-1] // 2
    xf = x.float()
    x1, x2 = xf[..., :d2], xf[..., d2:]
    c, s_ = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat((x1 * c - x2 * s_, x2 * c + x1 * s_), dim=-1).to(x.dtype)


def experts_grouped(X, w13, w2, counts, Fe):
    """X [R, h] rows sorted by expert, counts [E] -> [R, h]: grouped SwiGLU GEMMs"""
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    hh = torch._grouped_mm(X, w13.transpose(-2, -1), offs=offs)        # [R, 2F]
    a = F.silu(hh[:, :Fe]) * hh[:, Fe:]                                  # [R, F]
    return torch._grouped_mm(a, w2.transpose(-2, -1), offs=offs)         # [R, h]


def experts_loop(X, w13, w2, counts, Fe):
    """the same, one GEMM pair per expert (the counts read to the host)"""
    outs = []
    for e, xe in enumerate(torch.split(X, counts.tolist())):
        hh = xe @ w13[e].t()
        outs.append((F.silu(hh[:, :Fe]) * hh[:, Fe:]) @ w2[e].t())
    return torch.cat(outs, 0)


def moe(xn, p, cfg):
    """xn [T, h] bf16 -> (out [T, h] bf16, aux loss fp32 scalar)"""
    T = xn.shape[0]
    E, k, Fe = cfg["E"], cfg["k"], cfg["Fe"]
    logits = F.linear(xn, p["router"]).float()                           # [T, E]
    probs = torch.softmax(logits, dim=-1)
    top_p, top_i = torch.topk(probs, k, dim=-1)                          # [T, k], largest first
    if k > 1:
        top_p = top_p / top_p.sum(dim=-1, keepdim=True)
    flat_e = top_i.reshape(-1)                                           # [T k] expert of each pair
    counts = torch.zeros(E, dtype=torch.int64, device=xn.device).scatter_add_(0, flat_e, torch.ones_like(flat_e))
    if cfg["aux_coeff"] > 0:
        f_e = counts.float() / float(T * k)                              # no gradient (an integer count)
        aux = cfg["aux_coeff"] * E * (f_e * probs.mean(dim=0)).sum()
    else:
        aux = torch.zeros((), dtype=torch.float32, device=xn.device)
    order = torch.argsort(flat_e, stable=True)                           # pairs in expert-major order
    tok = torch.div(order, k, rounding_mode="floor")                     # their tokens
    X = xn.index_select(0, tok)                                          # [T k, h]
    if cfg["grouped_mm"]:
        Y = experts_grouped(X, p["w13"], p["w2"], counts, Fe)
    else:
        Y = experts_loop(X, p["w13"], p["w2"], counts, Fe)
    w_sorted = top_p.reshape(-1).index_select(0, order).to(Y.dtype)      # [T k]
    out = torch.zeros_like(xn).index_add_(0, tok, Y * w_sorted[:, None])
    return out, aux


def layer_forward(x, p, cos, sin, cfg):
    """one decoder layer: x [T, h] bf16 -> (x [T, h], aux)"""
    b, s, n, g, d = cfg["b"], cfg["s"], cfg["n"], cfg["g"], cfg["d"]
    T = b * s
    xn = rms_norm(x, p["attn_norm"])
    qkv = F.linear(xn, p["wqkv"]).view(b, s, n + 2 * g, d)
    q, k, v = torch.split(qkv, [n, g, g], dim=2)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    if cfg["sdpa_gqa"] or g == n:
        kw = {"enable_gqa": True} if g != n else {}
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, **kw)
    else:   # PyTorch before 2.5: KV heads repeated for the query heads
        r = n // g
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(r, dim=1),
                                           v.transpose(1, 2).repeat_interleave(r, dim=1), is_causal=True)
    o = o.transpose(1, 2).reshape(T, n * d)
    x = x + F.linear(o, p["wo"])
    out, aux = moe(rms_norm(x, p["mlp_norm"]), p, cfg)
    return x + out, aux


def head_forward(x, w_norm, w_out, targets):
    """summed token cross entropy of the final norm and output layer (fp32 softmax)"""
    logits = F.linear(rms_norm(x, w_norm), w_out)
    return F.cross_entropy(logits.float(), targets, reduction="sum")


# ---- data ---------------------------------------------------------------------

class Data:
    def __init__(self, kind, V, b, s, seed, device):
        self.kind, self.V, self.b, self.s, self.device = kind, V, b, s, device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed + 1)
        self.cpu_gen = torch.Generator()
        self.cpu_gen.manual_seed(seed + 2)

    def micro_batch(self):
        """(inputs, targets) [b*s] int64 on the device"""
        b, s, V = self.b, self.s, self.V
        if self.kind == "random":
            ids = torch.randint(0, V, (b, s + 1), device=self.device, generator=self.gen)
        else:   # the executor's learnable task (executor/data.c): x[t+1] = (5 x[t] + 3) mod V
            x = torch.randint(0, V, (b,), generator=self.cpu_gen)
            cols = [x]
            for _ in range(s):
                x = (5 * x + 3) % V
                cols.append(x)
            ids = torch.stack(cols, dim=1).to(self.device)
        return ids[:, :-1].reshape(-1), ids[:, 1:].reshape(-1)


# ---- the step -----------------------------------------------------------------

class Trainer:
    def __init__(self, m, args, device):
        self.m, self.args, self.device = m, args, device
        self.L = args.layers if 0 < args.layers < m["num_layers"] else m["num_layers"]
        self.b, self.s, self.B = args.mbs, args.seq, args.gbs
        self.micro_batches = self.B // self.b
        ver = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2] if x.isdigit())
        self.cfg = dict(b=self.b, s=self.s, n=m["num_heads"], g=m["num_kv_groups"], d=m["head_dim"],
                        E=m["num_experts"], k=m["top_k"], Fe=m["expert_ffn"], aux_coeff=args.aux_loss_coeff,
                        grouped_mm=hasattr(torch, "_grouped_mm") and not args.expert_loop,
                        sdpa_gqa=ver >= (2, 5))
        self.params = Params(m, self.L, device, args.seed)
        self.params.make_optimizer(args.lr)
        self.cos, self.sin = rope_tables(self.s, m["head_dim"], float(m["rotary_base"]), device)
        self.data = Data(args.data, m["vocab"], self.b, self.s, args.seed, device)
        self.layer_fn, self.head_fn = layer_forward, head_forward
        if args.mode == "compile":
            for knob in ("recompile_limit", "cache_size_limit"):   # one graph per layer at most
                if hasattr(torch._dynamo.config, knob):
                    setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
            self.layer_fn = torch.compile(layer_forward)
            self.head_fn = torch.compile(head_forward)
        self.layers = [self.params.layer(l) for l in range(self.L)]

    def micro_batch(self, inputs, targets):
        """forward and backward of one micro-batch; returns its loss sum
        (token losses + T * aux) as a device scalar"""
        w = self.params.w
        T = self.b * self.s
        x = F.embedding(inputs, w["embedding"])
        aux = None
        for p in self.layers:
            x, a = self.layer_fn(x, p, self.cos, self.sin, self.cfg)
            aux = a if aux is None else aux + a
        ce = self.head_fn(x, w["final_norm"], w["output"], targets)
        total = ce + float(T) * aux
        (total / float(self.B * self.s)).backward()
        return total.detach()

    def step(self):
        """one optimizer step; returns the mean loss (read once: the step's
        one host synchronisation, as the executor's)"""
        self.params.zero_grads()
        acc = torch.zeros((), dtype=torch.float32, device=self.device)
        for _ in range(self.micro_batches):
            inputs, targets = self.data.micro_batch()
            acc += self.micro_batch(inputs, targets)
        self.params.step()
        return acc.item() / (self.B * self.s)


def device_used_bytes():
    free, total = torch.cuda.mem_get_info()
    return total - free


def run(m, args):
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    tr = Trainer(m, args, device)
    log("%s: %d of %d layers, seq %d, mbs %d, gbs %d (%d micro-batches), mode %s, experts %s, AdamW %s; "
        "set up in %.1f s" % (m["name"], tr.L, m["num_layers"], tr.s, tr.b, tr.B, tr.micro_batches, args.mode,
                              "torch._grouped_mm" if tr.cfg["grouped_mm"] else "loop", tr.params.opt_kind,
                              time.time() - t0))
    torch.cuda.synchronize()
    mark = torch.cuda.Event(enable_timing=True)
    mark.record()
    losses, times, peak = [], [], device_used_bytes()
    for i in range(args.steps):
        t1 = time.time()
        losses.append(tr.step())
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        dt = mark.elapsed_time(end) * 1e-3
        mark = end
        peak = max(peak, device_used_bytes())
        if i >= args.warmup:
            times.append(dt)
        log("step %d: loss %.4f, %.1f ms%s" % (i + 1, losses[-1], 1e3 * dt,
                                                " (warm-up, host %.1f s)" % (time.time() - t1) if i < args.warmup
                                                else ""))
    mt = truncated(m, tr.L)
    tokens = float(tr.B * tr.s)
    fl = step_flops(mt, tr.s, tokens)
    t = statistics.median(times)
    peak_flops = args.peak_flops
    return {
        "side": "torch-" + args.mode, "model": m["name"], "layers": tr.L, "seq": tr.s, "mbs": tr.b, "gbs": tr.B,
        "micro_batches": tr.micro_batches, "steps": args.steps, "warmup": args.warmup, "steps_timed": len(times),
        "data": args.data, "lr": args.lr, "aux_loss_coeff": args.aux_loss_coeff, "capacity_factor": 0,
        "experts": "torch._grouped_mm" if tr.cfg["grouped_mm"] else "loop", "attention": "sdpa",
        "optimizer": "AdamW " + tr.params.opt_kind, "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0), "parameters": tr.params.numel[0] + tr.params.numel[1],
        "step_time_s": t, "step_times_s": times, "tokens_per_step": tokens, "tokens_per_s": tokens / t,
        "model_flops_per_step": fl, "tflops": {k: v / t / 1e12 for k, v in fl.items()},
        "mfu": {k: v / (t * peak_flops) for k, v in fl.items()}, "peak_flops": peak_flops,
        "peak_memory_bytes": peak, "torch_max_allocated_bytes": torch.cuda.max_memory_allocated(),
        "torch_max_reserved_bytes": torch.cuda.max_memory_reserved(),
        "loss_first": losses[0], "loss_last": losses[-1], "losses": losses,
    }


# ---- --check: a tiny model on the GPU ---------------------------------------------

def moe_reference(xn, p, cfg):
    """the MoE layer token by token, every expert on every token (fp32)"""
    E, k, Fe = cfg["E"], cfg["k"], cfg["Fe"]
    probs = torch.softmax(F.linear(xn, p["router"]).float(), dim=-1)
    top_p, top_i = torch.topk(probs, k, dim=-1)
    if k > 1:
        top_p = top_p / top_p.sum(dim=-1, keepdim=True)
    out = torch.zeros(xn.shape, dtype=torch.float32, device=xn.device)
    for e in range(E):
        hh = xn.float() @ p["w13"][e].float().t()
        ye = (F.silu(hh[:, :Fe]) * hh[:, Fe:]) @ p["w2"][e].float().t()
        weight = (top_p * (top_i == e)).sum(dim=-1, keepdim=True)
        out += weight * ye
    return out


def check(args):
    m = dict(TINY_MODEL)
    args.layers, args.seq, args.mbs, args.gbs = 2, 64, 2, 4
    args.data = "synthetic"
    args.lr = 1e-2
    args.steps = max(args.steps, 40) if args.steps_given else 40
    args.warmup = min(args.warmup, 2)
    device = torch.device("cuda")
    ok = True
    # 1. the MoE layer (grouped GEMM and the loop) against the token-by-token reference
    tr = Trainer(m, args, device)
    p = tr.layers[0]
    with torch.no_grad():
        xn = torch.randn(128, m["hidden"], device=device).to(torch.bfloat16)
        ref = moe_reference(xn, p, tr.cfg)
        for grouped in ([True, False] if hasattr(torch, "_grouped_mm") else [False]):
            cfg = dict(tr.cfg, grouped_mm=grouped)
            out, aux = moe(xn, p, cfg)
            err = ((out.float() - ref).abs().max() / ref.abs().max()).item()
            name = "torch._grouped_mm" if grouped else "loop over experts"
            good = err < 3e-2 and math.isfinite(aux.item())
            ok &= good
            log("check: MoE layer (%s) vs token-by-token reference: max rel err %.2e, aux %.4f: %s"
                % (name, err, aux.item(), "ok" if good else "FAIL"))
    # 2. training: finite losses that fall on the learnable task
    r = run(m, args)
    losses = r["losses"]
    finite = all(math.isfinite(x) for x in losses)
    falls = finite and sum(losses[-3:]) / 3 < 0.8 * losses[0]
    log("check: %d steps, loss %.4f -> %.4f (ln V = %.4f): %s" % (
        len(losses), losses[0], losses[-1], math.log(m["vocab"]),
        "ok" if finite and falls else "FAIL (%s)" % ("not finite" if not finite else "does not fall")))
    ok &= finite and falls
    r["check"] = "passed" if ok else "failed"
    return r, ok


# ---- main -------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mixtral-8x7b", help="catalog name (models/NAME.json) or a model JSON")
    ap.add_argument("--cluster", default="dgx-h200", help="cluster file for the MFU peak (topologies/NAME.json)")
    ap.add_argument("--layers", type=int, default=4, help="the model's first L layers (0 = all)")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--mbs", type=int, default=1, help="sequences per micro-batch")
    ap.add_argument("--gbs", type=int, default=0, help="sequences per optimizer step (default: mbs)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    ap.add_argument("--mode", choices=("eager", "compile"), default="eager")
    ap.add_argument("--lr", type=float, default=DEFAULT_LR)
    ap.add_argument("--aux-loss-coeff", type=float, default=DEFAULT_AUX_COEFF, help="0 = off")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--data", choices=("random", "synthetic"), default="random")
    ap.add_argument("--expert-loop", action="store_true", help="a loop over experts instead of torch._grouped_mm")
    ap.add_argument("--out", help="also write the JSON line to this file")
    ap.add_argument("--check", action="store_true", help="tiny 2-layer model on the GPU: MoE layer vs a "
                    "reference, loss finite and falling; exit 1 on failure")
    ap.add_argument("--flops-only", action="store_true", help="print the step's model FLOPs and exit (no torch)")
    args = ap.parse_args(argv)
    args.steps_given = "--steps" in argv
    if args.gbs == 0:
        args.gbs = args.mbs
    for name in ("seq", "mbs", "gbs", "steps"):
        if getattr(args, name) <= 0:
            fail("--%s: must be positive, got %d" % (name, getattr(args, name)))
    if args.layers < 0:
        fail("--layers: must be >= 0, got %d" % args.layers)
    if args.gbs % args.mbs:
        fail("--gbs: %d is not a multiple of --mbs %d" % (args.gbs, args.mbs))
    if args.warmup < 0 or args.warmup >= args.steps:
        fail("--warmup: %d must be in 0..%d (below --steps)" % (args.warmup, args.steps - 1))
    if args.lr < 0:
        fail("--lr: must be >= 0, got %g" % args.lr)
    if args.aux_loss_coeff < 0:
        fail("--aux-loss-coeff: must be >= 0 (0 = off), got %g" % args.aux_loss_coeff)
    return args


def emit(result, out):
    line = json.dumps(result)
    print(line, flush=True)
    if out:
        with open(out, "w") as f:
            f.write(line + "\n")


def main(argv):
    global torch, F
    args = parse_args(argv)
    if args.flops_only:
        m = truncated(load_model(args.model), args.layers)
        fl = step_flops(m, args.seq, float(args.gbs * args.seq))
        emit({"model": m["name"], "layers": m["num_layers"], "seq": args.seq, "gbs": args.gbs,
              "tokens_per_step": args.gbs * args.seq, "model_flops_per_step": fl}, args.out)
        return 0
    args.peak_flops = load_peak_flops(args.cluster)       # bad input before any work
    m = None if args.check else load_model(args.model)
    if m is not None and args.layers > m["num_layers"]:
        fail("--layers: %d is outside 1..%d (the layers of %s)" % (args.layers, m["num_layers"], m["name"]))
    try:
        import torch as _torch
        import torch.nn.functional as _F
    except ImportError as e:
        print("peer_torch.py: PyTorch is not installed here (%s)" % e, file=sys.stderr)
        return 1
    torch, F = _torch, _F
    if not torch.cuda.is_available():
        print("peer_torch.py: no CUDA device visible", file=sys.stderr)
        return 1
    if args.check:
        r, ok = check(args)
        emit(r, args.out)
        return 0 if ok else 1
    emit(run(m, args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
