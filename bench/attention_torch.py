#!/usr/bin/env python3
"""attention_torch.py: PyTorch's scaled_dot_product_attention on the shapes of
bench/attention_bench.cu, then one table of all three.

    attention_torch.py BENCH_LOG [--quick]

Reads the csv lines of attention_bench's output (BENCH_LOG), times SDPA
forward and backward (dq, dk, dv) on the same shapes and layout (q, k, v as
[B, T, H, D] viewed as [B, H, T, D], no copies), forced onto its cuDNN backend
(SDPBackend.CUDNN_ATTENTION) and onto its flash backend (FLASH_ATTENTION);
GQA through enable_gqa (K, V expanded beforehand where a backend refuses it).  FLOPs as in attention_bench (visible pairs only; backward
2.5x forward).  CUDA events, median.  Prints the csv lines it adds, then a
markdown table: TFLOP/s forward / backward per implementation.
"""
import math
import re
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

try:
    from torch.nn.attention.bias import causal_lower_right
except ImportError:  # older torch
    causal_lower_right = None


def parse_shape(label):
    """label -> dict(B, Tq, Tk, nh, nkv, mask) as attention_bench made it."""
    m = re.match(r"causal T(\d+) B(\d+) TP\d+ h(\d+)/(\d+)", label)
    if m:
        T, B, nh, nkv = map(int, m.groups())
        return dict(B=B, Tq=T, Tk=T, nh=nh, nkv=nkv, mask="causal")
    m = re.match(r"(nomask|offset) T\d+ CP\d+ (\d+)x(\d+)", label)
    if m:
        kind, Tq, Tk = m.group(1), int(m.group(2)), int(m.group(3))
        return dict(B=1, Tq=Tq, Tk=Tk, nh=32, nkv=8, mask="none" if kind == "nomask" else "lower_right")
    raise ValueError(label)


def visible_pairs(s):
    if s["mask"] == "none":
        return s["Tq"] * s["Tk"]
    shift = 0 if s["mask"] == "causal" else s["Tk"] - s["Tq"]
    # row i sees min(Tk, i + shift + 1) keys
    return sum(min(s["Tk"], i + shift + 1) for i in range(s["Tq"]))


def time_ms(fn, budget_ms=400.0):
    fn()
    torch.cuda.synchronize()
    times = []
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for i in range(20):
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
        if i >= 2 and sum(times) > budget_ms:
            break
    times.sort()
    return times[len(times) // 2]


def bench(s, backend, expand_kv=False):
    """expand_kv: K and V repeated to every query head beforehand (for a
    backend that refuses enable_gqa); the copy is outside the timing."""
    d = 128
    dev = "cuda"
    hk = s["nh"] if expand_kv else s["nkv"]
    q = torch.randn(s["B"], s["Tq"], s["nh"], d, device=dev, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    k = torch.randn(s["B"], s["Tk"], hk, d, device=dev, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    v = torch.randn(s["B"], s["Tk"], hk, d, device=dev, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    kw = dict(enable_gqa=s["nh"] != hk) if s["nh"] != hk else {}
    if s["mask"] == "causal":
        kw["is_causal"] = True
    elif s["mask"] == "lower_right":
        if causal_lower_right is None:
            raise RuntimeError("torch has no causal_lower_right")
        kw["attn_mask"] = causal_lower_right(s["Tq"], s["Tk"])
    ctx = sdpa_kernel([backend]) if backend is not None else None

    def fwd():
        return F.scaled_dot_product_attention(q, k, v, **kw)

    with ctx if ctx is not None else torch.enable_grad():
        out = fwd()
        g = torch.randn_like(out)
        msf = time_ms(lambda: fwd())

        def fb():
            o = fwd()
            torch.autograd.grad(o, (q, k, v), g)

        ms_fb = time_ms(fb)
    del q, k, v, out, g
    torch.cuda.empty_cache()
    return msf, max(ms_fb - msf, 1e-6)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    rows = []  # (set, label, impl, fwd_ms, bwd_ms, fwd_tf, bwd_tf)
    for line in open(sys.argv[1]):
        if line.startswith("csv,"):
            p = line.strip().split(",")
            rows.append((p[1], p[2], p[3], *map(float, p[4:8])))
    labels = []
    for r in rows:
        if (r[0], r[1]) not in labels:
            labels.append((r[0], r[1]))
    print(f"# torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}")
    backends = [("torch-cudnn", SDPBackend.CUDNN_ATTENTION), ("torch-flash", SDPBackend.FLASH_ATTENTION)]
    for set_, label in labels:
        s = parse_shape(label)
        fwd_flops = 4.0 * s["B"] * s["nh"] * visible_pairs(s) * 128
        for name, be in backends:
            r = (set_, label, name, math.nan, math.nan, math.nan, math.nan)
            for expand in (False, True):
                try:
                    msf, msb = bench(s, be, expand)
                    r = (set_, label, name, msf, msb, fwd_flops / msf * 1e-9, 2.5 * fwd_flops / msb * 1e-9)
                    if expand:
                        print(f"# {name} {label}: GQA refused; K, V expanded to {s['nh']} heads beforehand")
                    break
                except Exception as e:  # a backend that refuses the shape
                    print(f"# {name} {label}{' (expanded KV)' if expand else ''}: {str(e).splitlines()[0][:160]}")
                    torch.cuda.empty_cache()
                    if s["nh"] == s["nkv"]:
                        break
            print("csv,%s,%s,%s,%.3f,%.3f,%.1f,%.1f" % r, flush=True)
            rows.append(r)
    impls = []
    for r in rows:
        if r[2] not in impls:
            impls.append(r[2])
    print("\nTFLOP/s forward / backward (backward = dq, dk, dv; FLOPs of visible pairs, bwd 2.5x fwd)\n")
    print("| shape | " + " | ".join(impls) + " |")
    print("|---|" + "---|" * len(impls))
    for set_, label in labels:
        cells = []
        for impl in impls:
            m = [r for r in rows if r[0] == set_ and r[1] == label and r[2] == impl]
            if not m or math.isnan(m[0][5]):
                cells.append("-")
            else:
                cells.append(f"{m[0][5]:.0f} / {m[0][6]:.0f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
