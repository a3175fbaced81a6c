#!/usr/bin/env python3
"""Time PyTorch on the cases that `kiln bench` runs, and write the same JSON.

The GPU suite (scripts/gpu-check.sh) runs this beside `kiln bench -json` on the
same machine, then scripts/peers/join.py puts both into one table of ratios.

Usage:
    python3 scripts/peers/ops_torch.py --json OUT.json [--device cuda|cuda:N|cpu]
        [--names-from bench-kiln.json] [--filter REGEX] [--quick]
        [--time-limit SECONDS] [--min-time SECONDS] [--list]

Cases are named as kiln names them; the name carries the shape:

    probe/read/1GiB                 read 1 GiB once (torch.sum over F32)
    probe/copy/1GiB                 device-to-device copy; bytes = read + written
    op/<op>/<dtype>[-<dtype>]/<AxBxC>
    matmul/<wtype>/m<M>n<N>k<K>     torch bf16 x @ w.T (x [M, K], w [N, K]) whatever the wtype:
                                    the peer of kiln's quantized matmul is bf16 cuBLAS; the
                                    cases of one shape share one timing (see SHARE_KEYS)
    attention/prefill/<dtype>/d<D>-<causal|full>/b<B>s<S>
                                    F.scaled_dot_product_attention, B sequences of S tokens,
                                    hidden 2048 (2048/D heads), q, k, v [B, S, H, D] seen as
                                    [B, H, S, D]; FLOPs 4·B·S²·2048, halved for causal
    attention/decode/<dtype>/h<H>kv<KV>d<D>/b<B>kv<L>
                                    SDPA of one query per sequence over L keys, H query heads,
                                    KV heads, contiguous KV (torch has no paged SDPA: kiln's
                                    case reads a paged cache); GQA through enable_gqa=True
                                    where the backend takes it (else the heads as they are,
                                    else KV heads repeated: the note says which)

The attention cases run twice, once per SDPA backend (VARIANTS: FLASH and
CUDNN, each under torch.nn.attention.sdpa_kernel for the whole timing): their
results carry "variant", and join.py shows one row per variant. A backend that
refuses a shape (no kernel for it: head dim 256 on some builds, GQA, the CPU
for CUDNN) is listed under "refused" with torch's reasons, not failed on.

CASES below is the list run by default (the foundation's cases, full size);
QUICK_CASES is a small version for --quick (a smoke test, also on the CPU).
With --names-from, the cases are the names in kiln's JSON instead (plus the
probes): each name goes to the builder registered for its longest prefix in
BUILDERS, so a new shape of a known op needs no change here, and a new op
family (matmul/<wtype>/m<M>n<N>k<K>, attention/prefill/..., attention/decode/...)
needs one builder function and one BUILDERS entry. A name without a builder is
left out and listed in the JSON's "unsupported"; join.py shows "—" for it.

Timing is kiln's own method (bench/bench.go; see "timing" below), so that
the ratio compares like with like: random inputs (never zeros), input sets
rotated so that iterations read device memory rather than L2, a warm-up, then
five batches of back-to-back iterations (at least --min-time seconds in all,
1 s by default as in kiln bench), each batch timed with CUDA events; the
median batch's time per iteration is reported. On the CPU, time.perf_counter
replaces the events.

Output JSON (the schema of `kiln bench -json`, plus fields kiln ignores):

    {"tool": "torch", "version": "2.11.0+cu130", "cuda": "13.0",
     "device": "...", "backend": "cuda:0", "commit": "<torch git hash>",
     "date": "...Z", "method": "...",
     "results": [{"name", "iterations", "seconds" (median), "seconds_min",
                  "seconds_max" (of the batches), "bytes", "flops", "gbps",
                  "tflops", "sets", "impl" (what torch ran),
                  "note" (e.g. a substitute), "variant" (attention: FLASH or CUDNN)}],
     "errors": [{"name", "error", "variant"?}], "unsupported": [names],
     "refused": [{"name", "variant", "reason"}],
     "skipped": [names left out for --time-limit]}

Exit status: 0 when every case ran or was refused by an SDPA backend; 1 when a
case failed or was skipped for time (the JSON is written all the same); 2 for
a usage error, or CUDA asked for and not available.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import sys
import time
import warnings
from typing import Callable

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the machine
    print(f"ops_torch: cannot import torch ({exc}); install PyTorch first", file=sys.stderr)
    sys.exit(2)

GiB = 1 << 30
MiB = 1 << 20

# The foundation's cases, as kiln's bench package registers them. Matmul and
# attention issues add their names here (and a builder below).
CASES = [
    "probe/read/1GiB",
    "probe/copy/1GiB",
    "op/copy/F32-F16/4096x4096",
    "op/add/F16/4096x4096",
    "op/mul/BF16/4096x4096",
    "op/silu/F16/4096x14336",
    "op/gelu/F16/4096x14336",
    "op/softmax/F16/8192x4096",
    "op/rmsnorm/F16/4096x4096",
    "op/layernorm/F16/4096x4096",
    "op/rope/F16/512x32x128",
    "op/embedding/Q4_K-F32/512x4096",
    "op/embedding/F16-F16/512x4096",
    "op/argmax/F32/32x128256",
] + [
    # As bench/matmul.go registers them (torch times each shape once).
    f"matmul/{wt}/m{m}n{n}k{k}"
    for wt in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K")
    for m in (1, 4, 16, 512)
    for n, k in ((4096, 4096), (14336, 4096), (4096, 14336), (128256, 4096))
] + [
    # As bench/attention.go registers them: the FlashAttention-3 forward grid
    # (16k tokens, hidden 2048) and the decode grid (64/8 heads of 128).
    f"attention/prefill/F16/d{d}-{mode}/b{16384 // s}s{s}"
    for d in (64, 128, 256)
    for mode in ("causal", "full")
    for s in (512, 1024, 2048, 4096, 8192, 16384)
] + [
    f"attention/decode/F16/h64kv8d128/b{b}kv{kv}"
    for b in (1, 8, 32, 128)
    for kv in (2048, 8192, 32768)
]

# The same families at small sizes, for --quick.
QUICK_CASES = [
    "probe/read/64MiB",
    "probe/copy/64MiB",
    "op/copy/F32-F16/256x256",
    "op/add/F16/256x256",
    "op/mul/BF16/256x256",
    "op/silu/F16/256x896",
    "op/gelu/F16/256x896",
    "op/softmax/F16/512x256",
    "op/rmsnorm/F16/256x256",
    "op/layernorm/F16/256x256",
    "op/rope/F16/32x4x64",
    "op/embedding/Q4_K-F32/16x64",
    "op/embedding/F16-F16/16x64",
    "op/argmax/F32/4x128256",
    "matmul/Q4_K/m1n256k256",
    "matmul/BF16/m1n256k256",
    "matmul/Q4_0/m16n512k256",
    "attention/prefill/F16/d64-causal/b2s128",
    "attention/decode/F16/h8kv2d64/b2kv256",
]

# Weight types of kiln's matmul cases (op.MatMulWeightTypes).
MATMUL_WEIGHT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K")

# Embedding tables have this many rows (LLaMA-3's vocabulary), as in kiln's cases.
EMBEDDING_ROWS = 128256
ROPE_BASE = 10000.0
RMSNORM_EPS = 1e-6
LAYERNORM_EPS = 1e-5
# kiln's attention prefill cases have hidden = heads · head dim = 2048.
ATTENTION_HIDDEN = 2048

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class CaseError(ValueError):
    """A case name that does not parse or that torch cannot run."""


class BackendRefused(CaseError):
    """An SDPA backend that has no kernel for a case's shape (reported, not failed on)."""


@dataclasses.dataclass
class Bench:
    """One prepared case: fn runs it once; the rest describes it."""

    fn: Callable[[], object]
    bytes: int
    flops: int = 0
    impl: str = ""
    note: str = ""
    max_sets: int = 0  # 0: MAX_SETS
    # context, when set, makes the context manager the timing runs inside
    # (the SDPA backend selection), entered once rather than per iteration.
    context: Callable[[], contextlib.AbstractContextManager] | None = None


class Context:
    """Device, random generator and tensors shared between cases."""

    def __init__(self, device: torch.device, seed: int = 1):
        self.device = device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.cache: dict[tuple, torch.Tensor] = {}

    def randn(self, shape, dtype) -> torch.Tensor:
        """Standard normal values; never zeros (they can time faster than real data)."""
        return torch.randn(shape, dtype=dtype, device=self.device, generator=self.gen)

    def randint(self, high: int, n: int, dtype=torch.int32) -> torch.Tensor:
        return torch.randint(0, high, (n,), dtype=dtype, device=self.device, generator=self.gen)

    def cached(self, key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def parse_dims(text: str, count: int, what: str) -> list[int]:
    """'4096x4096' -> [4096, 4096], requiring count positive dimensions."""
    parts = text.split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise CaseError(f"{what}: shape {text!r} is not like 4096x4096") from None
    if len(dims) != count or any(d <= 0 for d in dims):
        raise CaseError(f"{what}: shape {text!r}: expected {count} positive dimensions")
    return dims


def parse_size(text: str, what: str) -> int:
    """'1GiB' / '64MiB' / '4096KiB' -> bytes."""
    m = re.fullmatch(r"(\d+)(KiB|MiB|GiB)", text)
    if not m:
        raise CaseError(f"{what}: size {text!r} is not like 1GiB or 64MiB")
    return int(m.group(1)) << {"KiB": 10, "MiB": 20, "GiB": 30}[m.group(2)]


def parse_dtype(text: str, what: str) -> torch.dtype:
    if text not in DTYPES:
        raise CaseError(f"{what}: dtype {text!r} has no torch equivalent here (known: {', '.join(DTYPES)})")
    return DTYPES[text]


def dtype_pair(text: str, what: str) -> tuple[str, str]:
    parts = text.split("-")
    if len(parts) != 2:
        raise CaseError(f"{what}: dtypes {text!r}: expected SRC-DST, like F32-F16")
    return parts[0], parts[1]


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# --- builders: (ctx, args after the registered prefix) -> Bench ---------------


def build_probe_read(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 1:
        raise CaseError(f"{what}: expected probe/read/<size>")
    size = parse_size(args[0], what)
    x = ctx.randn((size // 4,), torch.float32)
    return Bench(lambda: torch.sum(x), bytes=nbytes(x), impl="torch.sum over F32")


def build_probe_copy(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 1:
        raise CaseError(f"{what}: expected probe/copy/<size>")
    size = parse_size(args[0], what)
    src = ctx.randn((size // 4,), torch.float32)
    dst = torch.empty_like(src)
    return Bench(lambda: dst.copy_(src), bytes=nbytes(src) + nbytes(dst), impl="Tensor.copy_ (F32, device to device)")


def build_copy(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 2:
        raise CaseError(f"{what}: expected op/copy/SRC-DST/<shape>")
    s, d = dtype_pair(args[0], what)
    src_dt, dst_dt = parse_dtype(s, what), parse_dtype(d, what)
    shape = parse_dims(args[1], 2, what)
    src = ctx.randn(shape, src_dt)
    dst = torch.empty(shape, dtype=dst_dt, device=ctx.device)
    return Bench(lambda: dst.copy_(src), bytes=nbytes(src) + nbytes(dst), impl=f"Tensor.copy_ ({s} to {d})")


def binary_builder(name: str, fn: Callable) -> Callable:
    def build(ctx: Context, args: list[str], what: str) -> Bench:
        if len(args) != 2:
            raise CaseError(f"{what}: expected op/{name}/<dtype>/<shape>")
        dt = parse_dtype(args[0], what)
        shape = parse_dims(args[1], 2, what)
        a, b = ctx.randn(shape, dt), ctx.randn(shape, dt)
        c = torch.empty_like(a)
        return Bench(lambda: fn(a, b, out=c), bytes=3 * nbytes(a), impl=f"torch.{fn.__name__}(a, b, out=c)")

    return build


def unary_builder(name: str, fn: Callable, impl: str) -> Callable:
    def build(ctx: Context, args: list[str], what: str) -> Bench:
        if len(args) != 2:
            raise CaseError(f"{what}: expected op/{name}/<dtype>/<rows>x<cols>")
        dt = parse_dtype(args[0], what)
        x = ctx.randn(parse_dims(args[1], 2, what), dt)
        return Bench(lambda: fn(x), bytes=2 * nbytes(x), impl=impl)

    return build


def build_rmsnorm(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 2:
        raise CaseError(f"{what}: expected op/rmsnorm/<dtype>/<rows>x<cols>")
    dt = parse_dtype(args[0], what)
    rows, cols = parse_dims(args[1], 2, what)
    x = ctx.randn((rows, cols), dt)
    # The weight in x's dtype: with an F32 weight (as kiln's case has) torch
    # cannot use its fused kernel and its output would be F32.
    w = ctx.randn((cols,), dt)
    note = "weight in the input dtype (kiln: F32)" if dt != torch.float32 else ""
    if hasattr(F, "rms_norm"):
        return Bench(lambda: F.rms_norm(x, (cols,), w, RMSNORM_EPS), bytes=2 * nbytes(x) + nbytes(w),
                     impl="F.rms_norm", note=note)

    def manual():
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + RMSNORM_EPS)).to(dt) * w

    return Bench(manual, bytes=2 * nbytes(x) + nbytes(w), impl="manual x*rsqrt(mean(x^2)+eps)*w (no F.rms_norm)", note=note)


def build_layernorm(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 2:
        raise CaseError(f"{what}: expected op/layernorm/<dtype>/<rows>x<cols>")
    dt = parse_dtype(args[0], what)
    rows, cols = parse_dims(args[1], 2, what)
    x = ctx.randn((rows, cols), dt)
    w, b = ctx.randn((cols,), dt), ctx.randn((cols,), dt)
    note = "weight and bias in the input dtype (kiln: F32)" if dt != torch.float32 else ""
    return Bench(lambda: F.layer_norm(x, (cols,), w, b, LAYERNORM_EPS), bytes=2 * nbytes(x) + 2 * nbytes(w),
                 impl="F.layer_norm", note=note)


def build_rope(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 2:
        raise CaseError(f"{what}: expected op/rope/<dtype>/<tokens>x<heads>x<headDim>")
    dt = parse_dtype(args[0], what)
    tokens, heads, head_dim = parse_dims(args[1], 3, what)
    if head_dim % 2:
        raise CaseError(f"{what}: head dimension {head_dim} is odd")
    half = head_dim // 2
    x = ctx.randn((tokens, heads, head_dim), dt)
    # NeoX style: element i pairs with i + headDim/2; positions 0..tokens-1.
    pos = torch.arange(tokens, dtype=torch.float32, device=ctx.device)
    inv_freq = ROPE_BASE ** (-torch.arange(half, dtype=torch.float32, device=ctx.device) / half)
    angle = pos[:, None] * inv_freq[None, :]
    cos = angle.cos().to(dt)[:, None, :]
    sin = angle.sin().to(dt)[:, None, :]

    def rope():
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    return Bench(rope, bytes=2 * nbytes(x),
                 impl="torch ops: 4 mul, sub, add, cat (NeoX; cos/sin tables precomputed)",
                 note="unfused, several kernels")


def build_embedding(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 2:
        raise CaseError(f"{what}: expected op/embedding/TABLE-OUT/<ids>x<dim>")
    table_name, out_name = dtype_pair(args[0], what)
    n_ids, dim = parse_dims(args[1], 2, what)
    note = ""
    if table_name in DTYPES:
        table_dt = parse_dtype(table_name, what)
        parse_dtype(out_name, what)
        if out_name != table_name:
            note = f"output {table_name} (kiln: {out_name})"
    else:
        # Quantized tables (Q4_K, Q8_0, ...) have no torch equivalent.
        table_dt = torch.float16
        note = f"substitute: F16 table gather (torch has no {table_name})"
    table = ctx.cached(("embedding", table_dt, dim), lambda: ctx.randn((EMBEDDING_ROWS, dim), table_dt))
    ids = ctx.randint(EMBEDDING_ROWS, n_ids)
    row_bytes = dim * table.element_size()
    return Bench(lambda: torch.index_select(table, 0, ids), bytes=2 * n_ids * row_bytes + nbytes(ids),
                 impl=f"torch.index_select on a [{EMBEDDING_ROWS}, {dim}] table, int32 ids", note=note,
                 max_sets=32)  # one shared table, many id sets (as kiln's case)


def build_argmax(ctx: Context, args: list[str], what: str) -> Bench:
    if len(args) != 2:
        raise CaseError(f"{what}: expected op/argmax/<dtype>/<rows>x<cols>")
    dt = parse_dtype(args[0], what)
    rows, cols = parse_dims(args[1], 2, what)
    x = ctx.randn((rows, cols), dt)
    return Bench(lambda: torch.argmax(x, dim=-1), bytes=nbytes(x) + rows * 8, impl="torch.argmax(dim=-1), int64 out")


def parse_mnk(text: str, what: str) -> tuple[int, int, int]:
    """'m16n4096k14336' -> (16, 4096, 14336), all positive."""
    m = re.fullmatch(r"m(\d+)n(\d+)k(\d+)", text)
    if not m:
        raise CaseError(f"{what}: shape {text!r} is not like m1n4096k4096")
    dims = tuple(int(g) for g in m.groups())
    if any(d <= 0 for d in dims):
        raise CaseError(f"{what}: shape {text!r}: m, n and k must be positive")
    return dims


def matmul_note(wtype: str) -> str:
    return "" if wtype == "BF16" else f"peer: bf16 weights (kiln: {wtype})"


def build_matmul(ctx: Context, args: list[str], what: str) -> Bench:
    """Y = X·Wᵀ in bf16 with torch (cuBLAS on a GPU), the peer of every kiln wtype."""
    if len(args) != 2:
        raise CaseError(f"{what}: expected matmul/<wtype>/m<M>n<N>k<K>")
    wtype = args[0]
    if wtype not in MATMUL_WEIGHT_TYPES:
        raise CaseError(f"{what}: weight type {wtype!r} is not one of {', '.join(MATMUL_WEIGHT_TYPES)}")
    m, n, k = parse_mnk(args[1], what)
    x = ctx.randn((m, k), torch.bfloat16)
    w = ctx.randn((n, k), torch.bfloat16)
    y = torch.empty((m, n), dtype=torch.bfloat16, device=ctx.device)
    return Bench(lambda: torch.mm(x, w.t(), out=y), bytes=nbytes(w) + nbytes(x) + nbytes(y), flops=2 * m * n * k,
                 impl="torch.mm(x, w.t(), out=y), bf16 x [m, k] and w [n, k] (cuBLAS on a GPU)", note=matmul_note(wtype),
                 max_sets=32)  # as kiln's matmul cases: sets spanning the footprint


def sdpa_backend(variant: str, what: str):
    """The torch.nn.attention.SDPBackend member named variant (FLASH or CUDNN)."""
    try:
        from torch.nn.attention import SDPBackend
    except ImportError:
        raise BackendRefused(f"{what}: torch {torch.__version__} has no torch.nn.attention.SDPBackend") from None
    member = {"FLASH": "FLASH_ATTENTION", "CUDNN": "CUDNN_ATTENTION"}.get(variant)
    backend = getattr(SDPBackend, member, None) if member else None
    if backend is None:
        raise BackendRefused(f"{what}: torch {torch.__version__} has no SDPBackend.{member or variant}")
    return backend


def sdpa_context(backend) -> Callable[[], contextlib.AbstractContextManager]:
    from torch.nn.attention import sdpa_kernel
    return lambda: sdpa_kernel(backend)


def sdpa_refusal(fn: Callable[[], object], context: Callable[[], contextlib.AbstractContextManager]) -> str | None:
    """Runs fn once under context; returns why the backend refused it (torch's
    warnings name the reasons), or None when it ran. Other errors propagate."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with context():
                fn()
        except RuntimeError as exc:
            # CUDA: "No available kernel. Aborting execution."; the CPU: "No
            # viable backend for scaled_dot_product_attention was found ...".
            text = str(exc).lower()
            if "no available kernel" not in text and "no viable backend" not in text:
                raise
            reasons = [str(w.message).strip().replace("\n", " ") for w in caught]
            return "; ".join(dict.fromkeys(r for r in reasons if r)) or str(exc)
        except TypeError as exc:  # an older torch without an argument (enable_gqa)
            return f"TypeError: {exc}"
    return None


def parse_re(pattern: str, text: str, like: str, what: str) -> tuple[int, ...] | tuple[str, ...]:
    m = re.fullmatch(pattern, text)
    if not m:
        raise CaseError(f"{what}: {text!r} is not like {like}")
    return m.groups()


def build_attention_prefill(ctx: Context, args: list[str], what: str, variant: str = "FLASH") -> Bench:
    """SDPA over batch sequences of seq tokens with the given backend, as kiln's prefill cases."""
    if len(args) != 3:
        raise CaseError(f"{what}: expected attention/prefill/<dtype>/d<D>-<causal|full>/b<B>s<S>")
    dt = parse_dtype(args[0], what)
    d_text, mode = parse_re(r"d(\d+)-(causal|full)", args[1], "d128-causal", what)
    batch, seq = (int(x) for x in parse_re(r"b(\d+)s(\d+)", args[2], "b8s2048", what))
    d = int(d_text)
    if d <= 0 or ATTENTION_HIDDEN % d or batch <= 0 or seq <= 0:
        raise CaseError(f"{what}: head dim {d} must divide the hidden size {ATTENTION_HIDDEN}; batch and seqlen positive")
    heads, causal = ATTENTION_HIDDEN // d, mode == "causal"
    context = sdpa_context(sdpa_backend(variant, what))
    # kiln packs q as [tokens, heads, d]; torch sees the same memory as [b, h, s, d].
    q, k, v = (ctx.randn((batch, seq, heads, d), dt).transpose(1, 2) for _ in range(3))

    def fn():
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    why = sdpa_refusal(fn, context)
    if why is not None:
        raise BackendRefused(f"{variant} refuses d{d} {mode} b{batch}s{seq}: {why}")
    flops = 4 * batch * seq * seq * ATTENTION_HIDDEN // (2 if causal else 1)
    return Bench(fn, bytes=4 * nbytes(q), flops=flops, context=context,
                 impl=f"F.scaled_dot_product_attention(is_causal={causal}) under sdpa_kernel(SDPBackend.{variant}), "
                      f"q, k, v [b, s, h, d] seen as [b, h, s, d]")


def build_attention_decode(ctx: Context, args: list[str], what: str, variant: str = "FLASH") -> Bench:
    """SDPA of one query per sequence over contiguous KV with the given backend (kiln's decode
    cases read a paged cache; torch has no paged SDPA)."""
    if len(args) != 3:
        raise CaseError(f"{what}: expected attention/decode/<dtype>/h<H>kv<KV>d<D>/b<B>kv<L>")
    dt = parse_dtype(args[0], what)
    heads, kv_heads, d = (int(x) for x in parse_re(r"h(\d+)kv(\d+)d(\d+)", args[1], "h64kv8d128", what))
    batch, kv_len = (int(x) for x in parse_re(r"b(\d+)kv(\d+)", args[2], "b8kv8192", what))
    if min(heads, kv_heads, d, batch, kv_len) <= 0 or heads % kv_heads:
        raise CaseError(f"{what}: heads {heads} must be a positive multiple of KV heads {kv_heads}")
    context = sdpa_context(sdpa_backend(variant, what))
    group = heads // kv_heads
    q = ctx.randn((batch, heads, 1, d), dt)
    k = ctx.randn((batch, kv_heads, kv_len, d), dt)
    v = ctx.randn((batch, kv_heads, kv_len, d), dt)
    kv_bytes = nbytes(k) + nbytes(v)
    common = dict(bytes=kv_bytes + 2 * nbytes(q), flops=4 * batch * heads * kv_len * d, context=context)
    base_note = "peer: contiguous KV (torch SDPA has no paged cache; kiln reads pages of 64 through a block table)"
    impl = f"F.scaled_dot_product_attention under sdpa_kernel(SDPBackend.{variant}), q [b, {heads}, 1, {d}], " \
           f"k, v [b, {kv_heads}, L, {d}], is_causal=False (one query sees every key)"

    # GQA: enable_gqa=True where the backend takes it, else the unequal heads
    # as they are (backends that broadcast KV heads themselves), else KV heads
    # repeated (torch then reads group times the KV bytes; bytes stay kiln's).
    tries = [("enable_gqa=True", lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)),
             ("unequal heads without enable_gqa", lambda: F.scaled_dot_product_attention(q, k, v))]
    if group == 1:
        tries = [("", lambda: F.scaled_dot_product_attention(q, k, v))]
    reasons = []
    for how, fn in tries:
        why = sdpa_refusal(fn, context)
        if why is None:
            return Bench(fn, impl=impl + (f", {how}" if how else ""), note=base_note + (f"; GQA: {how}" if how else ""),
                         max_sets=32, **common)
        reasons.append(f"{how or 'plain'}: {why}")
    if ctx.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(ctx.device)
        if group * kv_bytes > 0.9 * free:
            reasons.append(f"KV heads repeated would need {group * kv_bytes / GiB:.1f} GiB, "
                           f"{free / GiB:.1f} GiB free")
            raise BackendRefused(f"{variant} refuses h{heads}kv{kv_heads}d{d} b{batch}kv{kv_len}: " + "; ".join(reasons))
    kr, vr = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

    def repeated():
        return F.scaled_dot_product_attention(q, kr, vr)

    why = sdpa_refusal(repeated, context)
    if why is None:
        return Bench(repeated, impl=impl + f", KV heads repeated {group}x (repeat_interleave)", max_sets=32,
                     note=base_note + f"; GQA: KV heads repeated {group}x, torch reads {group}x the KV bytes "
                                      f"(GB/s counts kiln's bytes); " + "; ".join(reasons), **common)
    reasons.append(f"KV heads repeated: {why}")
    raise BackendRefused(f"{variant} refuses h{heads}kv{kv_heads}d{d} b{batch}kv{kv_len}: " + "; ".join(reasons))


# The longest registered prefix of a case name picks its builder, which gets
# the rest of the name's parts.
BUILDERS: dict[str, Callable[[Context, list[str], str], Bench]] = {
    "probe/read": build_probe_read,
    "probe/copy": build_probe_copy,
    "op/copy": build_copy,
    "op/add": binary_builder("add", torch.add),
    "op/mul": binary_builder("mul", torch.mul),
    "op/silu": unary_builder("silu", F.silu, "F.silu"),
    "op/gelu": unary_builder("gelu", lambda x: F.gelu(x, approximate="none"), "F.gelu(approximate='none')"),
    "op/softmax": unary_builder("softmax", lambda x: torch.softmax(x, dim=-1), "torch.softmax(dim=-1)"),
    "op/rmsnorm": build_rmsnorm,
    "op/layernorm": build_layernorm,
    "op/rope": build_rope,
    "op/embedding": build_embedding,
    "op/argmax": build_argmax,
    "matmul": build_matmul,
    "attention/prefill": build_attention_prefill,
    "attention/decode": build_attention_decode,
}

# Builders that run once per variant (passed as their `variant` argument):
# each variant is its own result, with a "variant" field.
VARIANTS: dict[Callable, tuple[str, ...]] = {
    build_attention_prefill: ("FLASH", "CUDNN"),
    build_attention_decode: ("FLASH", "CUDNN"),
}

# Cases whose torch run is the same for several names: a function of the
# builder's args giving a key; the first name of a key is timed and the others
# get its result (with a note). The matmul peer runs bf16 whatever the wtype.
SHARE_KEYS: dict[Callable, Callable[[list[str]], tuple]] = {
    build_matmul: lambda args: ("matmul",) + tuple(args[1:]),
}


def find_builder(name: str):
    """Returns (builder, args) for a case name, or (None, None)."""
    parts = name.split("/")
    for k in range(len(parts) - 1, 0, -1):
        prefix = "/".join(parts[:k])
        if prefix in BUILDERS:
            return BUILDERS[prefix], parts[k:]
    return None, None


# --- timing ------------------------------------------------------------------
# The same method as kiln's harness (bench/bench.go), so that the two medians
# compare like with like: independent input sets spanning at least
# FOOTPRINT_BYTES (at most MAX_SETS, or the case's own limit) are rotated over,
# so that iterations read device memory, not the L2 cache; a warm-up of two
# rounds over the sets; one synchronised iteration estimates how many fill a
# batch of min_time/BATCHES; then BATCHES batches of back-to-back iterations,
# each timed as a whole (CUDA events on the GPU, perf_counter on the CPU), and
# the median batch's time per iteration is reported. Back-to-back launches
# include torch's own launch cost when a kernel is shorter than it (small
# cases, ops made of several kernels): that is what eager PyTorch costs.

FOOTPRINT_BYTES = 256 * MiB
QUICK_FOOTPRINT_BYTES = 16 * MiB
MAX_SETS = 8
BATCHES = 5
MAX_PER_BATCH = 100000


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def n_sets(bench: Bench, footprint: int) -> int:
    limit = bench.max_sets or MAX_SETS
    if bench.bytes <= 0:
        return 1
    return max(1, min(limit, -(-footprint // bench.bytes)))


def time_batch(device: torch.device, fns: list, start_index: int, count: int) -> float:
    """Runs count iterations back to back, rotating over fns; returns seconds."""
    k = len(fns)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(count):
            fns[(start_index + i) % k]()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    for i in range(count):
        fns[(start_index + i) % k]()
    return time.perf_counter() - t0


def time_case(device: torch.device, benches: list[Bench], min_time_s: float) -> dict:
    fns = [b.fn for b in benches]
    k = len(fns)
    with benches[0].context() if benches[0].context else contextlib.nullcontext():
        time_batch(device, fns, 0, 2 * k)  # warm-up: kernel loads, allocator
        sync(device)
        t0 = time.perf_counter()
        fns[0]()
        sync(device)
        one = max(time.perf_counter() - t0, 1e-6)
        per_batch = max(1, min(MAX_PER_BATCH, math.ceil(min_time_s / BATCHES / one)))
        times = sorted(time_batch(device, fns, b * per_batch, per_batch) / per_batch for b in range(BATCHES))
    median = times[len(times) // 2]
    if not (median > 0 and math.isfinite(median)):
        raise RuntimeError(f"timing gave a median of {median} s")
    bench = benches[0]
    result = {
        "iterations": BATCHES * per_batch,
        "seconds": median,
        "seconds_min": times[0],
        "seconds_max": times[-1],
        "bytes": bench.bytes,
        "flops": bench.flops,
        "gbps": bench.bytes / median / 1e9,
        "tflops": bench.flops / median / 1e12,
        "sets": k,
        "impl": bench.impl,
    }
    if bench.note:
        result["note"] = bench.note
    return result


# --- main --------------------------------------------------------------------


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return (f"{p.name} ({device}, sm_{p.major}{p.minor}, {p.total_memory / GiB:.0f} GiB, "
                f"torch {torch.__version__}, CUDA {torch.version.cuda})")
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads, torch {torch.__version__})"


def names_from(path: str) -> list[str]:
    with open(path) as f:
        data = json.load(f)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise ValueError(f"{path}: no 'results' list")
    return [r["name"] for r in results if isinstance(r, dict) and isinstance(r.get("name"), str)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here (required unless --list)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    ap.add_argument("--names-from", help="run the cases named in this kiln bench JSON (plus the probes)")
    ap.add_argument("--filter", help="run only the cases whose name matches this regular expression")
    ap.add_argument("--quick", action="store_true", help="small shapes and short timing (a smoke test)")
    ap.add_argument("--time-limit", type=float, default=0, help="skip the remaining cases after this many seconds")
    ap.add_argument("--min-time", type=float, default=0,
                    help="least timed seconds per case (default 1, as kiln bench; quick 0.05)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    args = ap.parse_args(argv)
    started = time.monotonic()

    default = QUICK_CASES if args.quick else CASES
    if args.names_from:
        try:
            kiln_names = names_from(args.names_from)
        except (OSError, ValueError, KeyError) as exc:
            print(f"ops_torch: --names-from {args.names_from}: {exc}", file=sys.stderr)
            return 2
        probes = [n for n in default if n.startswith("probe/")]
        names = probes + [n for n in kiln_names if n not in probes]
    else:
        names = list(default)
    if args.filter:
        try:
            rx = re.compile(args.filter)
        except re.error as exc:
            print(f"ops_torch: --filter {args.filter!r}: {exc}", file=sys.stderr)
            return 2
        names = [n for n in names if rx.search(n)]
    names = list(dict.fromkeys(names))
    if args.list:
        for n in names:
            print(n, "" if find_builder(n)[0] else "(no builder)")
        return 0
    if not args.json:
        print("ops_torch: --json OUT.json is required", file=sys.stderr)
        return 2

    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        print(f"ops_torch: --device {args.device!r}: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print(f"ops_torch: --device {args.device} but torch {torch.__version__} sees no CUDA device "
                  f"(built for CUDA {torch.version.cuda}); use --device cpu to smoke-test", file=sys.stderr)
            return 2
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        print(f"ops_torch: --device {args.device!r}: expected cuda, cuda:N or cpu", file=sys.stderr)
        return 2

    min_time_s = args.min_time or (0.05 if args.quick else 1.0)
    footprint = QUICK_FOOTPRINT_BYTES if args.quick else FOOTPRINT_BYTES
    ctx = Context(device)

    out = {
        "tool": "torch",
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "device": describe_device(device),
        "backend": str(device),
        "commit": getattr(torch.version, "git_version", ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": f"rotate input sets spanning >= {footprint >> 20} MiB (at most {MAX_SETS} unless the case says), "
                  f"{BATCHES} batches of back-to-back iterations, >= {min_time_s:g} s per case, median",
        "quick": args.quick,
        "results": [],
        "errors": [],
        "unsupported": [],
        "refused": [],
        "skipped": [],
    }
    shared: dict[tuple, dict] = {}  # share key -> the result timed for it

    def run_one(name: str, builder, rest: list[str], variant: str | None) -> dict | None:
        """Times one case (one variant of it); records an error or refusal and returns None."""
        label = name + (f" [{variant}]" if variant else "")
        build = (lambda: builder(ctx, rest, name, variant)) if variant else (lambda: builder(ctx, rest, name))
        tag = {"variant": variant} if variant else {}
        benches: list[Bench] = []
        try:
            benches.append(build())
            for _ in range(n_sets(benches[0], footprint) - 1):
                benches.append(build())
            result = {"name": name, **tag, **time_case(device, benches, min_time_s)}
        except BackendRefused as exc:
            out["refused"].append({"name": name, **tag, "reason": str(exc)})
            print(f"ops_torch: {label}: refused: {exc}", file=sys.stderr)
            return None
        except (CaseError, RuntimeError, ValueError, TypeError) as exc:
            # RuntimeError covers torch's own errors, out-of-memory included.
            out["errors"].append({"name": name, **tag, "error": f"{type(exc).__name__}: {exc}"})
            print(f"ops_torch: {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return None
        finally:
            benches.clear()  # frees this case's tensors (shared tables stay in ctx)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.empty_cache()
        print(f"{label:48s} {result['seconds'] * 1e6:10.1f} us  {result['gbps']:8.1f} GB/s  "
              f"{result['tflops']:7.2f} TFLOP/s  ({result['iterations']} it, {result['sets']} sets)", file=sys.stderr)
        return result

    for name in names:
        builder, rest = find_builder(name)
        if builder is None:
            out["unsupported"].append(name)
            print(f"ops_torch: {name}: no torch builder (left out)", file=sys.stderr)
            continue
        key = SHARE_KEYS[builder](rest) if builder in SHARE_KEYS else None
        if key is not None and key in shared:
            first = shared[key]
            own_note = matmul_note(rest[0]) if builder is build_matmul else ""
            result = dict(first, name=name, note="; ".join(filter(None, [own_note, f"same torch run as {first['name']}"])))
            out["results"].append(result)
            continue
        if args.time_limit and time.monotonic() - started > args.time_limit:
            out["skipped"].append(name)
            continue
        for variant in VARIANTS.get(builder, (None,)):
            result = run_one(name, builder, rest, variant)
            if result is None:
                continue
            out["results"].append(result)
            if key is not None:
                shared[key] = result
    if out["skipped"]:
        print(f"ops_torch: {len(out['skipped'])} case(s) skipped: --time-limit {args.time_limit:g}s reached: "
              + ", ".join(out["skipped"]), file=sys.stderr)

    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.json)
    print(f"ops_torch: wrote {args.json}: {len(out['results'])} results, {len(out['errors'])} errors, "
          f"{len(out['refused'])} refused by an SDPA backend, {len(out['unsupported'])} without a builder, "
          f"{len(out['skipped'])} skipped", file=sys.stderr)
    return 1 if out["errors"] or out["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
