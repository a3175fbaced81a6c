#!/usr/bin/env python3
"""Golden files for kiln's GGUF block formats (runtime/tensor).

Writes runtime/tensor/testdata/quant_golden.bin.gz: float inputs, quantized
bytes and dequantized floats from two implementations that are not kiln's:

  * gguf-py (PyPI package `gguf`, numpy code in gguf/quants.py): it quantizes
    F16, BF16, Q8_0 and Q4_0, and dequantizes every format. It has no Q4_K or
    Q6_K quantizer.
  * ggml's own C reference quantizers (quantize_row_{q8_0,q4_0,q4_K,q6_K}_ref
    in ggml/src/ggml-quants.c), called through ctypes from a libggml-base.so
    that you build (see below). These give the Q4_K and Q6_K bytes, and
    cross-check gguf-py's Q8_0 and Q4_0 bytes (the script stops if they differ).

Every dequantized value in the file comes from gguf-py.

Rerun (from the repository root; needs Python 3.10+, cmake, a C compiler):

    python3 -m venv /tmp/kiln-peers && /tmp/kiln-peers/bin/pip install -r scripts/peers/requirements.txt
    # ggml's C library, built for baseline x86-64 (no FMA contraction: see
    # QuantizeInto in runtime/tensor/quant.go). ggml-python's source release
    # carries a copy of ggml (0.15.3); any recent ggml checkout works the same.
    /tmp/kiln-peers/bin/pip download --no-deps --no-binary :all: ggml-python==0.0.45 -d /tmp/kiln-ggml
    tar xzf /tmp/kiln-ggml/ggml_python-0.0.45.tar.gz -C /tmp/kiln-ggml
    cmake -S /tmp/kiln-ggml/ggml_python-0.0.45/vendor/ggml -B /tmp/kiln-ggml/build \\
        -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=ON \\
        -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF
    cmake --build /tmp/kiln-ggml/build --target ggml-base -j2
    /tmp/kiln-peers/bin/python scripts/peers/gguf_quant_golden.py \\
        --ggml-lib /tmp/kiln-ggml/build/src/libggml-base.so \\
        --model ../shared/models/stories260K.gguf

The output is deterministic (seeded); rerunning with the same package versions
rewrites the same file. Then run `go test ./runtime/tensor/`.

File format (all integers and floats little-endian), gzip-compressed:

    file     := magic "KILNQG01" (8 bytes), u32 nCases, case * nCases
    case     := u16 nameLen, name (UTF-8), u32 nElems,
                u8 hasInput, [f32 input * nElems if hasInput],
                u32 nEncodings, encoding * nEncodings
    encoding := u32 ggmlType (ggml's enum ggml_type: F16=1 Q4_0=2 Q8_0=8
                Q4_K=12 Q6_K=14 BF16=30),
                u8 source (0 = random bytes made here, 1 = gguf-py's quantizer,
                           2 = ggml's C reference quantizer, 3 = gguf-py's
                           quantizer where it differs from ggml's: see below),
                u32 nBytes, u8 bytes * nBytes,
                u8 hasDequant, [f32 gguf-py dequantize(bytes) * nElems if hasDequant]

For sources 1 and 2 the bytes are the reference's quantization of the case's
input, which kiln must reproduce exactly. Where gguf-py's Q8_0/Q4_0 bytes
differ from ggml's, ggml's are stored (source 2) followed by gguf-py's
(source 3), and the script lists the cases. Known difference: a Q4_0 block of
zeros whose first element is -0.0 (ggml writes d = -0.0, gguf-py +0.0).
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import io
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf import quants

MAGIC = b"KILNQG01"
SRC_RANDOM, SRC_GGUF_PY, SRC_GGML, SRC_GGUF_PY_DIFFERS = 0, 1, 2, 3

BLOCK = {  # elements per block, bytes per block
    T.F16: (1, 2),
    T.BF16: (1, 2),
    T.Q8_0: (32, 34),
    T.Q4_0: (32, 18),
    T.Q4_K: (256, 144),
    T.Q6_K: (256, 210),
}
GGML_REF = {
    T.Q8_0: "quantize_row_q8_0_ref",
    T.Q4_0: "quantize_row_q4_0_ref",
    T.Q4_K: "quantize_row_q4_K_ref",
    T.Q6_K: "quantize_row_q6_K_ref",
}


class GGML:
    """ggml's reference quantizers, called through ctypes."""

    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)
        for name in GGML_REF.values():
            fn = getattr(self.lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    def quantize(self, qtype: T, x: np.ndarray) -> bytes:
        be, bb = BLOCK[qtype]
        x = np.ascontiguousarray(x, dtype=np.float32)
        assert x.size % be == 0
        out = np.zeros(x.size // be * bb, dtype=np.uint8)
        getattr(self.lib, GGML_REF[qtype])(x.ctypes.data, out.ctypes.data, x.size)
        return out.tobytes()


def dequant(qtype: T, raw: bytes) -> np.ndarray:
    out = quants.dequantize(np.frombuffer(raw, dtype=np.uint8).copy(), qtype)
    return np.asarray(out, dtype=np.float32).reshape(-1)


def gguf_py_quantize(qtype: T, x: np.ndarray) -> bytes:
    return np.asarray(quants.quantize(x.astype(np.float32), qtype)).tobytes()


class Writer:
    def __init__(self):
        self.cases: list[bytes] = []

    def case(self, name: str, n: int, inp: np.ndarray | None, encodings: list[tuple[T, int, bytes, bool]]):
        b = io.BytesIO()
        nb = name.encode()
        b.write(struct.pack("<H", len(nb)) + nb + struct.pack("<I", n))
        if inp is None:
            b.write(b"\x00")
        else:
            assert inp.dtype == np.float32 and inp.size == n
            b.write(b"\x01" + inp.astype("<f4").tobytes())
        b.write(struct.pack("<I", len(encodings)))
        for qtype, source, raw, with_dequant in encodings:
            be, bb = BLOCK[qtype]
            assert len(raw) == n // be * bb, (name, qtype, len(raw))
            b.write(struct.pack("<IBI", int(qtype), source, len(raw)) + raw)
            if with_dequant:
                y = dequant(qtype, raw)
                assert y.size == n
                b.write(b"\x01" + y.astype("<f4").tobytes())
            else:
                b.write(b"\x00")
        self.cases.append(b.getvalue())

    def bytes(self) -> bytes:
        return MAGIC + struct.pack("<I", len(self.cases)) + b"".join(self.cases)


def edge_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Inputs of 512 elements (two K-quant super-blocks, 16 Q8_0/Q4_0 blocks)."""
    n = 512
    cases = []
    cases.append(("zeros", np.zeros(n, np.float32)))
    neg0 = np.zeros(n, np.float32)
    neg0[::3] = -0.0
    cases.append(("negative_zeros", neg0))
    x = (rng.standard_normal(n) * 0.01).astype(np.float32)
    x[37] = 1000.0
    x[300] = 3.0e4
    cases.append(("single_huge_value", x))
    x = rng.uniform(-1, 1, n).astype(np.float32)
    for b in range(0, n, 32):
        x[b + (b // 32) % 32] = -4.0  # each 32-block's largest magnitude is negative
    cases.append(("negative_max", x))
    cases.append(("tiny_1e-6", (rng.standard_normal(n) * 1e-6).astype(np.float32)))
    cases.append(("tiny_1e-30", (rng.standard_normal(n) * 1e-30).astype(np.float32)))
    cases.append(("f32_subnormals", (rng.standard_normal(n) * 1e-40).astype(np.float32)))
    consts = np.concatenate([np.full(128, v, np.float32) for v in (0.5, -3.0, 7.25, 1e-3)])
    cases.append(("constant_blocks", consts))
    # Rounding ties: with amax 127 (Q8_0 d = 1) or max -8 (Q4_0 d = 1), the
    # half-integers below fall exactly on rounding boundaries.
    ties = np.tile(np.array([127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5] * 4, np.float32), n // 32)
    cases.append(("ties_q8_0", ties))
    ties4 = np.tile(np.array([-8.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 7.5] * 4, np.float32), n // 32)
    cases.append(("ties_q4_0", ties4))
    x = rng.standard_normal(n).astype(np.float32)
    x[:16] = 0
    x[64:96] = 0
    x[200:256] = 0
    cases.append(("zero_sub_blocks", x))
    cases.append(("all_positive", rng.uniform(0.5, 2.0, n).astype(np.float32)))
    cases.append(("all_negative", rng.uniform(-2.0, -0.5, n).astype(np.float32)))
    cases.append(("small_integers", rng.integers(-8, 8, n).astype(np.float32)))
    cases.append(("large_1e4", (rng.standard_normal(n) * 1e4).astype(np.float32)))
    cases.append(("heavy_tailed", (rng.standard_t(2, n) * 0.02).astype(np.float32)))
    return cases


def random_block_bytes(rng: np.random.Generator, qtype: T, nblocks: int) -> bytes:
    """Random blocks whose f16 fields are finite (every exponent but 31)."""
    be, bb = BLOCK[qtype]
    raw = rng.integers(0, 256, (nblocks, bb), dtype=np.uint8)

    def set_f16(col: int):
        h = rng.integers(0, 0x7C00, nblocks, dtype=np.uint16) | (rng.integers(0, 2, nblocks, dtype=np.uint16) << 15)
        raw[:, col : col + 2] = h.astype("<u2").view(np.uint8).reshape(nblocks, 2)

    if qtype in (T.Q8_0, T.Q4_0):
        set_f16(0)
    elif qtype == T.Q4_K:
        set_f16(0)
        set_f16(2)
    elif qtype == T.Q6_K:
        set_f16(208)
    elif qtype in (T.F16,):
        set_f16(0)
    return raw.tobytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ggml-lib", required=True, help="path to libggml-base.so (see the header of this script)")
    ap.add_argument("--model", default="../shared/models/stories260K.gguf")
    ap.add_argument("--out", default="runtime/tensor/testdata/quant_golden.bin.gz")
    args = ap.parse_args()

    ggml = GGML(args.ggml_lib)
    rng = np.random.default_rng(20260501)
    w = Writer()

    disagreements: list[str] = []
    current = [""]

    def reference_encodings(x: np.ndarray, formats, kquant_dequant: bool = True) -> list:
        enc = []
        for qt in formats:
            if qt in (T.Q8_0, T.Q4_0):
                py = gguf_py_quantize(qt, x)
                c = ggml.quantize(qt, x)
                if py == c:
                    enc.append((qt, SRC_GGUF_PY, py, True))
                else:
                    # ggml's bytes are the reference; gguf-py's go along so
                    # that the test can check how they differ.
                    disagreements.append(f"{qt.name} on {current[0]}")
                    enc.append((qt, SRC_GGML, c, True))
                    enc.append((qt, SRC_GGUF_PY_DIFFERS, py, False))
            else:
                enc.append((qt, SRC_GGML, ggml.quantize(qt, x), kquant_dequant))
        return enc

    all_q = (T.Q8_0, T.Q4_0, T.Q4_K, T.Q6_K)

    # 1. Seeded random inputs, quantized by the references, dequantized by gguf-py.
    for i, scale in enumerate((1.0, 0.02, 3.0)):
        x = (rng.standard_normal(1024) * scale).astype(np.float32)
        current[0] = f"normal_{i}_scale_{scale}"
        w.case(current[0], x.size, x, reference_encodings(x, all_q))
    x = rng.uniform(-5, 3, 1024).astype(np.float32)
    current[0] = "uniform_-5_3"
    w.case(current[0], x.size, x, reference_encodings(x, all_q))

    # 1b. A bulk of K-quant super-blocks from several distributions, bytes only
    #     (no dequantization, to keep the file small): some branches of the
    #     K-quant scale searches are taken only rarely (the last search step
    #     wins in about 1 block in 100), so it takes many blocks to cover them.
    bulk = np.concatenate([
        rng.uniform(-1, 1, 24 * 256),
        rng.standard_t(2, 24 * 256) * 0.05,
        rng.standard_normal(24 * 256) * (rng.random(24 * 256) < 0.1),
        np.repeat(rng.standard_normal(24 * 16), 16),
    ]).astype(np.float32)
    current[0] = "kquant_bulk"
    w.case(current[0], bulk.size, bulk, reference_encodings(bulk, (T.Q4_K, T.Q6_K), kquant_dequant=False))

    # 2. Edge cases.
    with np.errstate(all="ignore"):  # tiny inputs: 1/d overflows, as in ggml
        for name, x in edge_cases(rng):
            current[0] = name
            w.case(name, x.size, x, reference_encodings(x, all_q))

    # 3. F16 and BF16 rounding by gguf-py (numpy's astype(float16) and
    #    gguf-py's round-to-nearest-even BF16), on finite values of every scale.
    x = np.concatenate([
        rng.standard_normal(256) * 10.0 ** rng.integers(-9, 6, 256),
        np.array([65504, 65519.99, 65520, -65520, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 3.0e38, -3.4e38, 1e-45], np.float64),
    ]).astype(np.float32)
    x = np.concatenate([x, np.zeros(-x.size % 32, np.float32)])
    with np.errstate(over="ignore"):  # 3e38 overflows f16, as it should
        f16_bytes = gguf_py_quantize(T.F16, x)
    w.case("f16_bf16_rounding", x.size, x, [
        (T.F16, SRC_GGUF_PY, f16_bytes, True),
        (T.BF16, SRC_GGUF_PY, np.asarray(quants.quantize(x, T.BF16)).tobytes(), True),
    ])

    # 4. Random bytes of every format (finite f16 fields), dequantized by gguf-py.
    for qt, nblocks in ((T.Q8_0, 64), (T.Q4_0, 64), (T.Q4_K, 16), (T.Q6_K, 16), (T.F16, 512), (T.BF16, 512)):
        be, _ = BLOCK[qt]
        raw = random_block_bytes(rng, qt, nblocks)
        if qt == T.BF16:  # drop NaN patterns: BF16 NaN payloads are not compared
            h = np.frombuffer(raw, "<u2").copy()
            h[(h & 0x7F80) == 0x7F80] &= 0xFF7F
            raw = h.tobytes()
        w.case(f"random_bytes_{qt.name}", nblocks * be, None, [(qt, SRC_RANDOM, raw, True)])

    # 5. A real tensor: stories260K's token_embd.weight (512 x 64 F32), taken
    #    as one flat array of 32768 floats (128 K-quant super-blocks; its 64-wide
    #    rows alone are too short for K-quants).
    reader = GGUFReader(args.model)
    t = next(t for t in reader.tensors if t.name == "token_embd.weight")
    if t.tensor_type != T.F32:
        sys.exit(f"token_embd.weight is {t.tensor_type.name}, want F32")
    x = np.asarray(t.data, dtype=np.float32).reshape(-1).copy()
    if x.size != 32768:
        sys.exit(f"token_embd.weight has {x.size} elements, want 32768")
    # (Its K-quant bytes are stored without gguf-py's dequantization, to keep
    # the file small: random bytes above already cover K-quant decoding.)
    current[0] = "stories260K/token_embd.weight"
    w.case(current[0], x.size, x, reference_encodings(x, all_q, kquant_dequant=False))

    data = gzip.compress(w.bytes(), compresslevel=9, mtime=0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"wrote {out}: {len(w.cases)} cases, {len(data)} bytes")
    for d in disagreements:
        print(f"gguf-py and ggml differ: {d} (ggml's bytes stored as the reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
