#!/usr/bin/env python3
"""Train kiln's built-in default model, kiln-austen, and write it as a GGUF file.

kiln-austen is a tiny LLaMA-architecture language model (about 1.0M parameters,
all F32, about 4 MB) trained from scratch on Jane Austen's six novels, which are
in the public domain. `kiln generate` runs it when no -model is given, so the
README's main command needs no download. This script is the whole recipe: it
fetches the corpus, trains the SentencePiece tokenizer and the model, writes the
GGUF file, checks the file with an independent reference forward pass, and writes
the golden values the Go implementation is tested against.

Corpus: the Debian package r-cran-janeaustenr 1.0.0-1 (architecture all, from
Debian bookworm main; sha256 below), the R data package "janeaustenr" 1.0.0 by
Julia Silge, MIT licence. It holds the full texts of "Sense and Sensibility",
"Pride and Prejudice", "Mansfield Park", "Emma", "Northanger Abbey" and
"Persuasion" as taken from Project Gutenberg; the novels were published
1811-1818 and are in the public domain. The script fetches the .deb with
`apt-get download`, checks its sha256, and reads the texts out of the R lazy-load
database inside it (no R needed). The raw corpus is not committed.

How to rerun (from the repository root; needs python3 >= 3.10 and apt-get, or a
copy of the .deb given with --deb):

    python3 -m venv /tmp/kiln-train-builtin
    /tmp/kiln-train-builtin/bin/pip install -r scripts/train-builtin/requirements.txt
    /tmp/kiln-train-builtin/bin/python scripts/train-builtin/train.py   # or: make builtin-model

It writes models/builtin/kiln-austen.gguf and models/builtin/testdata/reference.json
(and keeps the .deb, tokenizer and logs under .cache/train-builtin/). Time: about an
hour on a 2-core x86-64 machine (the committed file: 59 minutes of training; see
models/builtin/README.md). The pip install pulls the default PyPI torch wheel,
which brings CUDA libraries (a few GB) although only the CPU is used.

Determinism: everything is seeded (--seed, default 1) and torch runs with
deterministic algorithms on a fixed number of threads (--threads, default 2).
The same versions (requirements.txt), thread count and CPU kind give the same
file bit for bit; other CPUs or thread counts may change float rounding in
training and so the weights, but not the recipe.

Checks the script makes before it writes anything final:
  * the reference forward pass (numpy, float64, ggml conventions: weights read
    back from the GGUF file, RoPE over adjacent pairs as ggml's "normal" mode,
    GQA heads grouped as ggml broadcasts them) reproduces the published greedy
    tokens and logits of ../shared/models/stories260K.gguf when that file is
    present (--stories, skip with --stories ''), which pins those conventions
    to llama.cpp's;
  * the same reference over the new GGUF file matches the PyTorch model's
    logits (max abs difference printed; fails above 1e-3);
  * greedy generation from BOS must produce mostly letters and spaces.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import io
import json
import lzma
import math
import os
import re
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --- corpus -------------------------------------------------------------------

DEB_NAME = "r-cran-janeaustenr"
DEB_VERSION = "1.0.0-1"
DEB_FILE = f"{DEB_NAME}_{DEB_VERSION}_all.deb"
DEB_SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
RDATA_DIR = "usr/lib/R/site-library/janeaustenr/data/"
BOOKS = [  # R object name -> title, in publication order
    ("sensesensibility", "Sense and Sensibility"),
    ("prideprejudice", "Pride and Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
]

MODEL_NAME = "kiln-austen"


def log(msg: str) -> None:
    print(msg, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_deb(cache: Path, deb_arg: str | None) -> Path:
    """Returns the path of the verified .deb, downloading it with apt-get if needed."""
    path = Path(deb_arg) if deb_arg else cache / DEB_FILE
    if not path.exists():
        if deb_arg:
            sys.exit(f"--deb {deb_arg}: no such file")
        log(f"fetching {DEB_NAME}={DEB_VERSION} with apt-get download into {cache}")
        r = subprocess.run(["apt-get", "download", f"{DEB_NAME}={DEB_VERSION}"], cwd=cache)
        if r.returncode != 0 or not path.exists():
            sys.exit(f"apt-get download {DEB_NAME}={DEB_VERSION} failed (exit {r.returncode}); "
                     f"on a machine without Debian's archive, fetch {DEB_FILE} by other means and pass --deb")
    got = sha256_file(path)
    if got != DEB_SHA256:
        sys.exit(f"{path}: sha256 {got}, expected {DEB_SHA256}")
    return path


def deb_members(path: Path) -> dict[str, bytes]:
    """Reads the files under RDATA_DIR from a .deb (an ar archive holding data.tar.*)."""
    data = path.read_bytes()
    if data[:8] != b"!<arch>\n":
        sys.exit(f"{path}: not an ar archive")
    pos = 8
    tar_bytes, tar_name = None, ""
    while pos + 60 <= len(data):
        hdr = data[pos:pos + 60]
        name = hdr[:16].decode().strip().rstrip("/")
        size = int(hdr[48:58].decode().strip())
        body = data[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            tar_bytes, tar_name = body, name
        pos += 60 + size + (size & 1)
    if tar_bytes is None:
        sys.exit(f"{path}: no data.tar member")
    if tar_name.endswith(".xz"):
        tar_bytes = lzma.decompress(tar_bytes)
    elif tar_name.endswith(".gz"):
        tar_bytes = gzip.decompress(tar_bytes)
    elif tar_name.endswith(".zst"):
        sys.exit(f"{path}: {tar_name} is zstd-compressed, which this script does not read")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        for m in tf.getmembers():
            name = m.name.lstrip("./")
            if name.startswith(RDATA_DIR) and m.isfile():
                out[name[len(RDATA_DIR):]] = tf.extractfile(m).read()
    return out


class RReader:
    """A minimal reader of R's XDR serialization format (version 2 and 3), enough
    for the vectors, lists and attribute pairlists of a data package."""

    NILVALUE, REFSXP, SYMSXP, LISTSXP, CHARSXP = 254, 255, 1, 2, 9
    LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 10, 13, 14, 16, 19

    def __init__(self, data: bytes, what: str):
        self.d, self.p, self.what, self.refs = data, 0, what, []
        if data[:2] != b"X\n":
            raise ValueError(f"{what}: not R XDR serialization (starts {data[:2]!r})")
        self.p = 2
        version = self.int()
        self.int()  # R version that wrote it
        self.int()  # minimal R version to read it
        if version == 3:
            n = self.int()
            self.p += n  # native encoding name
        elif version != 2:
            raise ValueError(f"{what}: serialization version {version}, expected 2 or 3")

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.d, self.p)
        self.p += 4
        return v

    def item(self):
        flags = self.int() & 0xFFFFFFFF
        kind = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if kind == self.NILVALUE:
            return None
        if kind == self.REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if kind == self.SYMSXP:
            sym = ("sym", self.item())
            self.refs.append(sym)
            return sym
        if kind == self.LISTSXP:
            attrs = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            node = [(tag[1] if tag else None, car)]
            if cdr is not None:
                node += cdr
            del attrs
            return node
        if kind == self.CHARSXP:
            n = self.int()
            if n < 0:
                return None  # NA_character_
            s = self.d[self.p:self.p + n].decode("utf-8")
            self.p += n
            return s
        if kind in (self.LGLSXP, self.INTSXP):
            n = self.int()
            v = list(struct.unpack_from(f">{n}i", self.d, self.p))
            self.p += 4 * n
        elif kind == self.REALSXP:
            n = self.int()
            v = list(struct.unpack_from(f">{n}d", self.d, self.p))
            self.p += 8 * n
        elif kind in (self.STRSXP, self.VECSXP):
            n = self.int()
            v = [self.item() for _ in range(n)]
        else:
            raise ValueError(f"{self.what}: R object type {kind} at offset {self.p - 4} is not supported")
        if has_attr:
            attrs = dict(self.item())
            if "names" in attrs:
                return dict(zip(attrs["names"], v))
        return v


def read_lazyload(files: dict[str, bytes]) -> dict[str, list]:
    """Reads every variable of an R lazy-load database (Rdata.rdx index + Rdata.rdb)."""
    for need in ("Rdata.rdx", "Rdata.rdb"):
        if need not in files:
            sys.exit(f"{DEB_FILE}: {RDATA_DIR}{need} missing")
    index = RReader(gzip.decompress(files["Rdata.rdx"]), "Rdata.rdx").item()
    compressed = index["compressed"][0]
    rdb = files["Rdata.rdb"]
    out = {}
    for name, (off, length) in index["variables"].items():
        blob = rdb[off:off + length]
        (n,) = struct.unpack_from(">I", blob, 0)
        if compressed == 1:
            raw = zlib.decompress(blob[4:])
        else:  # 2: bzip2, 3: xz, each with a type byte
            kind = blob[4:5]
            raw = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress,
                   b"0": lambda b: b}[kind](blob[5:])
        if len(raw) != n:
            sys.exit(f"Rdata.rdb: {name}: {len(raw)} bytes after decompression, index says {n}")
        out[name] = RReader(raw, f"Rdata.rdb:{name}").item()
    return out


HEADING = re.compile(r"^(chapter|volume)\b.{0,20}$|^by jane austen$|^the end$|^finis$|^end of", re.I)


def paragraphs_of(lines: list) -> list[str]:
    """Joins hard-wrapped lines into paragraphs; drops titles, chapter headings and
    separators; removes the _italics_ underscores of the Gutenberg texts."""
    paras, cur = [], []
    for line in lines + [""]:
        line = (line or "").strip()
        if line:
            cur.append(line)
            continue
        if cur:
            p = re.sub(r"\s+", " ", " ".join(cur).replace("_", "")).strip()
            cur = []
            letters = re.sub(r"[^A-Za-z]", "", p)
            if not letters or HEADING.match(p) or (p.upper() == p and len(p) < 60):
                continue  # headings, "* * *", titles in capitals
            paras.append(p)
    return paras


# --- tokenizer ----------------------------------------------------------------

def train_tokenizer(paras: list[str], vocab_size: int, work: Path, threads: int):
    import sentencepiece as spm
    text_path = work / "corpus.txt"
    text_path.write_text("\n".join(paras) + "\n", encoding="utf-8")
    prefix = work / "tokenizer"
    spm.SentencePieceTrainer.train(
        input=str(text_path), model_prefix=str(prefix), model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, character_coverage=1.0,
        split_digits=True, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, max_sentence_length=1 << 16,
        input_sentence_size=0, shuffle_input_sentence=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=threads,
        minloglevel=2)
    return spm.SentencePieceProcessor(model_file=str(prefix) + ".model")


def vocab_arrays(sp):
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(2)  # UNKNOWN
        elif sp.is_control(i):
            types.append(3)  # CONTROL
        elif sp.is_byte(i):
            types.append(6)  # BYTE
        elif sp.is_unused(i):
            types.append(5)  # UNUSED
        else:
            types.append(1)  # NORMAL
    return tokens, scores, types


def make_chunks(paras: list[str], sp, bos: int, max_tokens: int) -> list[list[int]]:
    """Groups consecutive paragraphs into chunks of at most max_tokens tokens, each
    chunk encoded as one text (paragraphs joined by newlines) after a BOS. A single
    paragraph longer than that becomes a chunk of its own."""
    chunks, cur, cur_len = [], [], 0
    for p in paras:
        n = len(sp.encode(p)) + 1
        if cur and cur_len + n > max_tokens:
            chunks.append([bos] + sp.encode("\n".join(cur)))
            cur, cur_len = [], 0
        cur.append(p)
        cur_len += n
    if cur:
        chunks.append([bos] + sp.encode("\n".join(cur)))
    return chunks


# --- model --------------------------------------------------------------------

@dataclass
class Config:
    vocab: int = 1024
    dim: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 352
    context: int = 512
    rope_base: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


def build_model(cfg: Config):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def rope_tables(cfg: Config):
        # ggml "normal" RoPE: pairs (2i, 2i+1) rotated by pos * base^(-2i/head_dim).
        inv = cfg.rope_base ** (-torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim)
        ang = torch.arange(cfg.context, dtype=torch.float64)[:, None] * inv[None, :]
        return torch.cos(ang).float(), torch.sin(ang).float()

    def rope(x, cos, sin):  # x: (batch, heads, time, head_dim)
        t = x.shape[2]
        x2 = x.unflatten(-1, (-1, 2))
        x0, x1 = x2[..., 0], x2[..., 1]
        c, s = cos[:t], sin[:t]
        return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            hd = cfg.head_dim
            self.attn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
            self.wq = nn.Linear(cfg.dim, cfg.heads * hd, bias=False)
            self.wk = nn.Linear(cfg.dim, cfg.kv_heads * hd, bias=False)
            self.wv = nn.Linear(cfg.dim, cfg.kv_heads * hd, bias=False)
            self.wo = nn.Linear(cfg.heads * hd, cfg.dim, bias=False)
            self.ffn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
            self.w_gate = nn.Linear(cfg.dim, cfg.ffn, bias=False)
            self.w_up = nn.Linear(cfg.dim, cfg.ffn, bias=False)
            self.w_down = nn.Linear(cfg.ffn, cfg.dim, bias=False)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            hd = cfg.head_dim
            a = self.attn_norm(x)
            q = self.wq(a).view(b, t, cfg.heads, hd).transpose(1, 2)
            k = self.wk(a).view(b, t, cfg.kv_heads, hd).transpose(1, 2)
            v = self.wv(a).view(b, t, cfg.kv_heads, hd).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            # Query head h reads KV head h // (heads / kv_heads), as ggml broadcasts.
            k = k.repeat_interleave(cfg.heads // cfg.kv_heads, dim=1)
            v = v.repeat_interleave(cfg.heads // cfg.kv_heads, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.wo(o.transpose(1, 2).reshape(b, t, cfg.heads * hd))
            a = self.ffn_norm(x)
            return x + self.w_down(F.silu(self.w_gate(a)) * self.w_up(a))

    class LLaMA(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_embd = nn.Embedding(cfg.vocab, cfg.dim)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.layers))
            self.out_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
            self.output = nn.Linear(cfg.dim, cfg.vocab, bias=False)
            cos, sin = rope_tables(cfg)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02
                    if name.endswith("wo.weight") or name.endswith("w_down.weight"):
                        std = 0.02 / math.sqrt(2 * cfg.layers)
                    nn.init.normal_(p, mean=0.0, std=std)

        def forward(self, idx):
            x = self.tok_embd(idx)
            for blk in self.blocks:
                x = blk(x, self.cos, self.sin)
            return self.output(self.out_norm(x))

    return LLaMA()


def gguf_tensors(model, cfg: Config) -> list[tuple[str, np.ndarray]]:
    """The model's weights under llama.cpp's GGUF names, as float32 numpy arrays in
    PyTorch's [out, in] layout, which is GGUF's ne = [in, out]: no permutation,
    since the model already applies RoPE to adjacent pairs as ggml does."""
    def w(t):
        return t.detach().to("cpu").float().numpy().copy()
    out = [("token_embd.weight", w(model.tok_embd.weight))]
    for i, b in enumerate(model.blocks):
        out += [
            (f"blk.{i}.attn_norm.weight", w(b.attn_norm.weight)),
            (f"blk.{i}.attn_q.weight", w(b.wq.weight)),
            (f"blk.{i}.attn_k.weight", w(b.wk.weight)),
            (f"blk.{i}.attn_v.weight", w(b.wv.weight)),
            (f"blk.{i}.attn_output.weight", w(b.wo.weight)),
            (f"blk.{i}.ffn_norm.weight", w(b.ffn_norm.weight)),
            (f"blk.{i}.ffn_gate.weight", w(b.w_gate.weight)),
            (f"blk.{i}.ffn_up.weight", w(b.w_up.weight)),
            (f"blk.{i}.ffn_down.weight", w(b.w_down.weight)),
        ]
    out += [("output_norm.weight", w(model.out_norm.weight)), ("output.weight", w(model.output.weight))]
    return out


def write_gguf(path: Path, cfg: Config, sp, tensors, description: str) -> None:
    import gguf
    tokens, scores, types = vocab_arrays(sp)
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_name(MODEL_NAME)
    wr.add_license("MIT")
    wr.add_description(description)
    wr.add_file_type(0)  # all F32
    wr.add_context_length(cfg.context)
    wr.add_embedding_length(cfg.dim)
    wr.add_block_count(cfg.layers)
    wr.add_feed_forward_length(cfg.ffn)
    wr.add_head_count(cfg.heads)
    wr.add_head_count_kv(cfg.kv_heads)
    wr.add_rope_dimension_count(cfg.head_dim)
    wr.add_rope_freq_base(cfg.rope_base)
    wr.add_layer_norm_rms_eps(cfg.norm_eps)
    wr.add_vocab_size(cfg.vocab)
    wr.add_tokenizer_model("llama")
    wr.add_token_list(tokens)
    wr.add_token_scores(scores)
    wr.add_token_types(types)
    wr.add_bos_token_id(sp.bos_id())
    wr.add_eos_token_id(sp.eos_id())
    wr.add_unk_token_id(sp.unk_id())
    wr.add_add_bos_token(True)
    wr.add_add_eos_token(False)
    wr.add_add_space_prefix(True)
    for name, arr in tensors:
        wr.add_tensor(name, arr)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


# --- reference forward pass over a GGUF file (numpy, float64) ---------------------

class Reference:
    """An independent LLaMA forward pass in float64 numpy over the tensors of a GGUF
    file, following ggml's conventions: a weight with ne = [in, out] multiplies as
    x @ W.T where W is the [out, in] numpy view; RoPE "normal" rotates adjacent pairs
    (2i, 2i+1) by pos * base^(-2i/n_rot); query head h uses KV head
    h // (n_head / n_head_kv)."""

    def __init__(self, path: Path):
        import gguf
        r = gguf.GGUFReader(str(path))

        def field(key):
            f = r.fields[key]
            v = f.parts[f.data[0]]
            return v.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0].item()

        if field("general.architecture") != "llama":
            raise ValueError(f"{path}: architecture is not llama")
        self.dim = field("llama.embedding_length")
        self.layers = field("llama.block_count")
        self.heads = field("llama.attention.head_count")
        self.kv_heads = field("llama.attention.head_count_kv")
        self.eps = field("llama.attention.layer_norm_rms_epsilon")
        self.head_dim = self.dim // self.heads
        self.n_rot = field("llama.rope.dimension_count") if "llama.rope.dimension_count" in r.fields else self.head_dim
        self.base = field("llama.rope.freq_base") if "llama.rope.freq_base" in r.fields else 10000.0
        self.bos = field("tokenizer.ggml.bos_token_id")
        self.w = {}
        for t in r.tensors:
            if t.tensor_type != gguf.GGMLQuantizationType.F32:
                raise ValueError(f"{path}: tensor {t.name} is {t.tensor_type.name}; the reference reads F32 only")
            self.w[t.name] = np.asarray(t.data, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)])
        if "output.weight" not in self.w:
            self.w["output.weight"] = self.w["token_embd.weight"]
        self.reset()

    def reset(self):
        self.k_cache = [[] for _ in range(self.layers)]
        self.v_cache = [[] for _ in range(self.layers)]
        self.pos = 0

    def _norm(self, x, w):
        return x / np.sqrt(np.mean(x * x) + self.eps) * w

    def _rope(self, x, pos):  # x: (heads, head_dim)
        x = x.copy()
        i = np.arange(0, self.n_rot, 2)
        theta = pos * self.base ** (-i / self.n_rot)
        c, s = np.cos(theta), np.sin(theta)
        x0, x1 = x[:, i].copy(), x[:, i + 1].copy()
        x[:, i] = x0 * c - x1 * s
        x[:, i + 1] = x0 * s + x1 * c
        return x

    def step(self, token: int) -> np.ndarray:
        """Feeds one token at the next position; returns the logits after it."""
        w, hd = self.w, self.head_dim
        x = w["token_embd.weight"][token].copy()
        group = self.heads // self.kv_heads
        for l in range(self.layers):
            a = self._norm(x, w[f"blk.{l}.attn_norm.weight"])
            q = (w[f"blk.{l}.attn_q.weight"] @ a).reshape(self.heads, hd)
            k = (w[f"blk.{l}.attn_k.weight"] @ a).reshape(self.kv_heads, hd)
            v = (w[f"blk.{l}.attn_v.weight"] @ a).reshape(self.kv_heads, hd)
            q, k = self._rope(q, self.pos), self._rope(k, self.pos)
            self.k_cache[l].append(k)
            self.v_cache[l].append(v)
            K = np.stack(self.k_cache[l])  # (time, kv_heads, hd)
            V = np.stack(self.v_cache[l])
            o = np.empty((self.heads, hd))
            for h in range(self.heads):
                s = K[:, h // group, :] @ q[h] / math.sqrt(hd)
                p = np.exp(s - s.max())
                o[h] = (p / p.sum()) @ V[:, h // group, :]
            x = x + w[f"blk.{l}.attn_output.weight"] @ o.reshape(-1)
            a = self._norm(x, w[f"blk.{l}.ffn_norm.weight"])
            g = w[f"blk.{l}.ffn_gate.weight"] @ a
            u = w[f"blk.{l}.ffn_up.weight"] @ a
            x = x + w[f"blk.{l}.ffn_down.weight"] @ (g / (1 + np.exp(-g)) * u)
        self.pos += 1
        return w["output.weight"] @ self._norm(x, w["output_norm.weight"])

    def greedy(self, prompt: list[int], n: int):
        """Feeds prompt, then n greedy tokens (argmax, ties to the smallest id).
        Returns (ids, logits after the prompt, margins between the best and the
        second-best logit at each choice)."""
        self.reset()
        for t in prompt:
            logits = self.step(t)
        first = logits.copy()
        ids, margins = [], []
        for _ in range(n):
            top2 = np.sort(logits)[-2:]
            nxt = int(np.argmax(logits))
            ids.append(nxt)
            margins.append(float(top2[1] - top2[0]))
            logits = self.step(nxt)
        return ids, first, margins


STORIES_IDS = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421]
STORIES_LOGITS = [-6.22291, 8.40434, -6.22374, -6.22254]


def check_reference_on_stories(path: Path) -> None:
    """Pins the reference's conventions to llama.cpp's with the published greedy
    output of stories260K (../shared/models/README.md)."""
    ref = Reference(path)
    ids, first, _ = ref.greedy([ref.bos], len(STORIES_IDS))
    if ids != STORIES_IDS:
        sys.exit(f"reference forward pass on {path}: greedy ids {ids}, expected {STORIES_IDS}")
    diff = np.max(np.abs(first[:4] - np.array(STORIES_LOGITS)))
    if diff > 1e-4:
        sys.exit(f"reference forward pass on {path}: first logits {first[:4]}, expected {STORIES_LOGITS}")
    log(f"reference check on {path.name}: greedy ids and logits match the published values (max diff {diff:.2g})")


# --- training -------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[2]
    ap.add_argument("--out", default=str(root / "models/builtin/kiln-austen.gguf"))
    ap.add_argument("--golden", default=str(root / "models/builtin/testdata/reference.json"))
    ap.add_argument("--cache", default=str(root / ".cache/train-builtin"))
    ap.add_argument("--deb", default=None, help=f"use this copy of {DEB_FILE} instead of apt-get download")
    ap.add_argument("--stories", default=str(root.parent / "shared/models/stories260K.gguf"),
                    help="stories260K.gguf to pin the reference forward pass ('' to skip)")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench", type=int, default=0, help="time this many training steps, then stop")
    args = ap.parse_args()

    t_start = time.time()
    import torch
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    if args.stories and Path(args.stories).exists():
        check_reference_on_stories(Path(args.stories))
    elif args.stories:
        log(f"note: {args.stories} not found; the reference's conventions are not pinned this run")

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    deb = fetch_deb(cache, args.deb)
    texts = read_lazyload(deb_members(deb))
    paras = []
    for key, title in BOOKS:
        if key not in texts:
            sys.exit(f"{DEB_FILE}: no object {key!r} ({title}); found {sorted(texts)}")
        p = paragraphs_of(texts[key])
        log(f"corpus: {title}: {len(texts[key])} lines, {len(p)} paragraphs")
        paras += p
    n_chars = sum(len(p) for p in paras)
    log(f"corpus: {len(paras)} paragraphs, {n_chars} characters")

    cfg = Config()
    cfg.context = args.seq
    sp = train_tokenizer(paras, cfg.vocab, cache, args.threads)
    assert sp.get_piece_size() == cfg.vocab and sp.bos_id() == 1 and sp.eos_id() == 2 and sp.unk_id() == 0
    chunks = make_chunks(paras, sp, sp.bos_id(), args.seq // 2)
    val_chunks = chunks[::50]  # every 50th chunk is held out
    train_chunks = [c for i, c in enumerate(chunks) if i % 50 != 0]
    train_stream = torch.tensor([t for c in train_chunks for t in c], dtype=torch.long)
    val_stream = torch.tensor([t for c in val_chunks for t in c], dtype=torch.long)
    log(f"tokens: {len(chunks)} chunks, {len(train_stream)} training, {len(val_stream)} held out "
        f"({n_chars / (len(train_stream) + len(val_stream)):.2f} characters a token)")

    model = build_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg}, {n_params} parameters")
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)
    bos = sp.bos_id()

    def batch_from(stream, n, g):
        starts = torch.randint(0, len(stream) - args.seq - 1, (n,), generator=g)
        xy = torch.stack([stream[s:s + args.seq + 1] for s in starts.tolist()])
        x, y = xy[:, :-1], xy[:, 1:].clone()
        y[y == bos] = -100  # BOS starts a chunk; it is never a prediction target
        return x, y

    def loss_of(x, y):
        logits = model(x)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab), y.reshape(-1), ignore_index=-100)

    def val_loss():
        g = torch.Generator().manual_seed(1234)
        model.eval()
        with torch.no_grad():
            tot = sum(loss_of(*batch_from(val_stream, args.batch, g)).item() for _ in range(8))
        model.train()
        return tot / 8

    warmup = max(1, args.steps // 20)
    steps = args.bench or args.steps
    t0 = time.time()
    ema = None
    history = []
    for step in range(1, steps + 1):
        if step <= warmup:
            lr = args.lr * step / warmup
        else:
            frac = (step - warmup) / max(1, args.steps - warmup)
            lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch_from(train_stream, args.batch, gen)
        loss = loss_of(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 100 == 0 or step == steps:
            el = time.time() - t0
            msg = f"step {step}/{steps} lr {lr:.2e} loss {loss.item():.4f} (avg {ema:.4f}) {el:.0f}s {step * args.batch * args.seq / el:.0f} tok/s"
            if step % 400 == 0 or step == steps:
                vl = val_loss()
                msg += f" val {vl:.4f}"
                history.append({"step": step, "train_loss_avg": round(ema, 4), "val_loss": round(vl, 4)})
            log(msg)
    train_s = time.time() - t0
    if args.bench:
        log(f"bench: {steps} steps in {train_s:.1f}s, {train_s / steps:.3f} s/step; "
            f"{args.steps} steps would take about {train_s / steps * args.steps / 60:.1f} min")
        return
    final_val = val_loss()
    log(f"trained {args.steps} steps in {train_s:.0f}s; final train loss (avg) {ema:.4f}, held-out loss {final_val:.4f}")

    # Write the GGUF file.
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    description = (f"{MODEL_NAME}: a tiny LLaMA-architecture model made by the kiln project with "
                   f"scripts/train-builtin/train.py (seed {args.seed}, {args.steps} steps of {args.batch}x{args.seq} tokens), "
                   f"trained from scratch on Jane Austen's six novels (public domain; corpus from Debian's "
                   f"{DEB_NAME} {DEB_VERSION}, the R package janeaustenr 1.0.0, MIT). "
                   f"Weights and tokenizer: MIT, as the kiln repository.")
    tensors = gguf_tensors(model, cfg)
    tmp = out.with_suffix(".gguf.tmp")
    write_gguf(tmp, cfg, sp, tensors, description)

    # Check the file with the reference forward pass against the PyTorch model.
    ref = Reference(tmp)
    probe = val_stream[:96].tolist()
    model.eval()
    with torch.no_grad():
        want = model(torch.tensor([probe])).double().numpy()[0]
    ref.reset()
    got = np.stack([ref.step(t) for t in probe])
    diff = float(np.max(np.abs(got - want)))
    log(f"reference forward pass over the GGUF file vs PyTorch: max abs logit difference {diff:.2e} over {len(probe)} positions")
    if diff > 1e-3:
        sys.exit("the GGUF file does not reproduce the trained model")

    # Golden values, from the reference forward pass over the written file.
    n_gold = 64
    ids, logits_bos, margins = ref.greedy([bos], n_gold)
    text_bos = sp.decode(ids)
    ids200, _, margins200 = ref.greedy([bos], 200)
    text200 = sp.decode(ids200)
    prompt_text = "Elizabeth was"
    prompt_ids = [bos] + sp.encode(prompt_text)
    pids, plogits, pmargins = ref.greedy(prompt_ids, n_gold)
    letters = sum(c.isalpha() or c in " ,.;'\"!?-\n" for c in text200) / max(1, len(text200))
    if letters < 0.95:
        sys.exit(f"greedy text from BOS is not readable ({letters:.0%} letters and punctuation): {text200!r}")
    os.replace(tmp, out)
    size = out.stat().st_size
    golden = {
        "model": out.name,
        "model_sha256": sha256_file(out),
        "model_size_bytes": size,
        "made_by": "scripts/train-builtin/train.py",
        "reference": "float64 numpy forward pass over the GGUF file's F32 weights (ggml conventions); "
                     "greedy = argmax, ties to the smallest id",
        "vocab_size": cfg.vocab,
        "bos_id": bos,
        "eos_id": sp.eos_id(),
        "from_bos": {
            "prompt_ids": [bos],
            "greedy_ids": ids,
            "greedy_text": text_bos,
            "greedy_min_margin": min(margins),
            "logits": [round(float(v), 6) for v in logits_bos],
        },
        "from_bos_200": {
            "greedy_ids": ids200,
            "greedy_text": text200,
            "greedy_min_margin": min(margins200),
        },
        "from_prompt": {
            "prompt_text": prompt_text,
            "prompt_ids": prompt_ids,
            "greedy_ids": pids,
            "greedy_text": sp.decode(pids),
            "greedy_min_margin": min(pmargins),
            "logits_first32": [round(float(v), 6) for v in plogits[:32]],
        },
        "training": {
            "seed": args.seed, "steps": args.steps, "batch": args.batch, "seq": args.seq, "lr": args.lr,
            "threads": args.threads, "train_seconds": round(train_s), "final_train_loss_avg": round(ema, 4),
            "final_val_loss": round(final_val, 4), "history": history,
            "train_tokens": len(train_stream), "val_tokens": len(val_stream),
        },
        "tokenizer_check": {  # sentencepiece's own encoding, for the Go tokenizer
            "text": "\"My dear Mr. Bennet,\" said his lady to him one day.\nIt was 1813.",
            "ids": sp.encode("\"My dear Mr. Bennet,\" said his lady to him one day.\nIt was 1813."),
        },
    }
    gp = Path(args.golden)
    gp.parent.mkdir(parents=True, exist_ok=True)
    gp.write_text(json.dumps(golden, indent=1) + "\n")
    log(f"wrote {out} ({size} bytes, sha256 {golden['model_sha256']}) and {gp}")
    log(f"greedy from BOS (200 tokens, min margin {min(margins200):.3g}):\n{text200}")
    log(f"greedy from {prompt_text!r}: {sp.decode(pids)!r}")
    log(f"first greedy ids: {ids[:12]}; logits after BOS begin {[round(float(v), 5) for v in logits_bos[:4]]}")
    log(f"total wall time {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
