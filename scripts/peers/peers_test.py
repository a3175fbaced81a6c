#!/usr/bin/env python3
"""Tests of join.py and ops_torch.py (the latter only where torch imports).

Run: python3 scripts/peers/peers_test.py   (or python3 -m unittest discover -s scripts/peers -p '*_test.py')
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import join  # noqa: E402

try:
    import ops_torch  # exits with status 2 when torch is missing
except SystemExit:
    ops_torch = None


def result(name, seconds, nbytes, flops=0, **extra):
    r = {"name": name, "iterations": 10, "seconds": seconds, "bytes": nbytes, "flops": flops,
         "gbps": nbytes / seconds / 1e9, "tflops": flops / seconds / 1e12}
    r.update(extra)
    return r


class JoinTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name, data):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(data if isinstance(data, str) else json.dumps(data))
        return path

    def run_join(self, *argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            rc = join.main(list(argv))
        return rc, out.getvalue()

    def rows(self, table):
        """Table rows by case name: the cells after the name."""
        rows = {}
        for line in table.splitlines():
            if line.startswith("| ") and "/" in line.split("|")[1]:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                rows[cells[0]] = cells[1:]
        return rows

    def test_ratio_probe_fraction_and_missing_peer(self):
        kiln = self.write("k.json", {"tool": "kiln", "device": "GPU X (cuda:0)", "results": [
            result("probe/read/1GiB", 0.5e-3, 1 << 30),             # 2147 GB/s
            result("op/add/F16/4096x4096", 50e-6, 3 * (32 << 20)),  # 2013 GB/s
            result("matmul/Q4_K/m512n4096k4096", 200e-6, 13631488, flops=2 * 512 * 4096 * 4096),
            # 9437184 weight bytes + 2·4096 + 2·4096: 3.6 flops/byte, memory-bound.
            result("matmul/Q4_0/m1n4096k4096", 9.7e-6, 9453568, flops=2 * 4096 * 4096),
        ]})
        peer = self.write("p.json", {"tool": "torch", "device": "GPU X (cuda:0, sm_90)", "results": [
            result("probe/read/1GiB", 0.6e-3, 1 << 30),
            result("op/add/F16/4096x4096", 100e-6, 3 * (32 << 20), note="a note"),
        ]})
        out = os.path.join(self.dir.name, "t.md")
        rc, table = self.run_join("--kiln", kiln, "--peer", peer, "--out", out)
        self.assertEqual(rc, 0)
        with open(out) as f:
            self.assertEqual(f.read(), table)
        rows = self.rows(table)
        # columns: kiln, peer, speed, kiln achieved, % probe, peer achieved, note
        add = rows["op/add/F16/4096x4096"]
        self.assertEqual(add[0], "50.0 µs")
        self.assertEqual(add[1], "100.0 µs")
        self.assertEqual(add[2], "2.00×")  # peer twice as slow: kiln faster, ratio > 1
        self.assertEqual(add[3], "2013 GB/s")
        self.assertEqual(add[4], "94%")  # 2013 / 2147
        self.assertEqual(add[6], "a note")
        self.assertEqual(rows["probe/read/1GiB"][2], "1.20×")
        self.assertEqual(rows["probe/read/1GiB"][4], "100%")
        mm = rows["matmul/Q4_K/m512n4096k4096"]
        self.assertEqual(mm[1], "—")
        self.assertEqual(mm[2], "—")
        self.assertEqual(mm[3], "85.9 TFLOP/s")  # 1260 flops/byte: compute-bound
        self.assertEqual(mm[4], "—")
        decode = rows["matmul/Q4_0/m1n4096k4096"]
        self.assertEqual(decode[3], "975 GB/s")
        self.assertEqual(decode[4], "45%")  # 975 of the probe's 2147 GB/s
        self.assertNotIn("WARNING", table)

    def test_peer_probe_stands_in_and_peer_errors_show(self):
        kiln = self.write("k.json", {"results": [result("op/silu/F16/8x8", 1e-3, 2e9)]})
        peer = self.write("p.json", {"tool": "torch", "results": [result("probe/read/1GiB", 1e-3, 4e9)],
                                     "errors": [{"name": "op/rope/F16/1x1x2", "error": "CaseError: bad"}],
                                     "unsupported": ["attention/decode/x"]})
        rc, table = self.run_join("--kiln", kiln, "--peer", peer)
        self.assertEqual(rc, 0)
        self.assertIn("(peer probe)", table)
        rows = self.rows(table)
        self.assertEqual(rows["op/silu/F16/8x8"][4], "50%")  # 2000 of 4000 GB/s
        self.assertIn("CaseError: bad", rows["op/rope/F16/1x1x2"][6])
        self.assertIn("no peer builder", rows["attention/decode/x"][6])

    def test_bad_entries_are_warned_and_left_out(self):
        kiln = self.write("k.json", {"results": [
            result("op/a/F16/1", 1e-3, 1000),
            {"name": "op/b/F16/1", "seconds": 0, "bytes": 1},
            {"name": "op/c/F16/1", "seconds": "fast"},
            {"seconds": 1},
            result("op/a/F16/1", 5.0, 1000),
            dict(result("op/d/F16/1", 1e-3, 1e6), gbps=99.0),
        ]})
        rc, table = self.run_join("--kiln", kiln)
        self.assertEqual(rc, 0)
        rows = self.rows(table)
        self.assertEqual(sorted(rows), ["op/a/F16/1", "op/d/F16/1"])
        self.assertEqual(rows["op/a/F16/1"][0], "1.000 ms")  # the first of the duplicates
        self.assertIn("kiln gbps 99 != bytes/seconds 1", rows["op/d/F16/1"][6])
        for what in ("op/b/F16/1", "op/c/F16/1", "no name", "duplicate name"):
            self.assertIn(what, table)

    def test_failed_kiln_case_shows_its_error(self):
        kiln = self.write("k.json", {"results": [
            {"name": "op/x/F16/1", "iterations": 0, "seconds": 0, "bytes": 2, "flops": 0, "gbps": 0, "tflops": 0,
             "error": "cuda: launch failed"},
        ]})
        peer = self.write("p.json", {"tool": "torch", "results": [result("op/x/F16/1", 1e-3, 2)]})
        rc, table = self.run_join("--kiln", kiln, "--peer", peer)
        self.assertEqual(rc, 0)
        row = self.rows(table)["op/x/F16/1"]
        self.assertEqual(row[0], "error")
        self.assertEqual(row[1], "1.000 ms")
        self.assertEqual(row[2], "—")
        self.assertIn("kiln: cuda: launch failed", row[6])
        self.assertIn("1 failed", table)
        self.assertNotIn("not a positive number", table)

    def test_skipped_kiln_case_is_not_a_failure(self):
        kiln = self.write("k.json", {"results": [
            {"name": "llama/llama3-8b/F16/tg128", "iterations": 0, "seconds": 0, "bytes": 0, "flops": 0,
             "gbps": 0, "tflops": 0, "skipped": "runs on a GPU only"},
            result("op/x/F16/1", 1e-3, 2),
        ]})
        rc, table = self.run_join("--kiln", kiln)
        self.assertEqual(rc, 0)
        row = self.rows(table)["llama/llama3-8b/F16/tg128"]
        self.assertEqual(row[0], "skipped")
        self.assertIn("runs on a GPU only", row[6])
        self.assertNotIn("failed", table)
        self.assertIn("1 skipped on this device", table)
        self.assertNotIn("not a positive number", table)

    def test_unusable_input(self):
        bad = self.write("bad.json", "{not json")
        peer = self.write("p.json", {"results": [result("op/a/F16/1", 1e-3, 1000)]})
        rc, table = self.run_join("--kiln", bad, "--peer", peer)
        self.assertEqual(rc, 1)
        self.assertIn("WARNING: kiln:", table)
        self.assertIn("not valid JSON", table)
        self.assertIn("op/a/F16/1", self.rows(table))
        rc, _ = self.run_join("--kiln", bad, "--peer", os.path.join(self.dir.name, "missing.json"))
        self.assertEqual(rc, 2)
        rc, _ = self.run_join("--kiln", self.write("nores.json", {"tool": "kiln"}))
        self.assertEqual(rc, 2)

    def test_variants_get_a_row_each(self):
        prefill, decode = "attention/prefill/F16/d128-causal/b2s8192", "attention/decode/F16/h64kv8d128/b8kv8192"
        kiln = self.write("k.json", {"tool": "kiln", "results": [
            result("probe/read/1GiB", 0.5e-3, 1 << 30),  # 2147 GB/s
            result(prefill, 1e-3, 1 << 28, flops=1 << 40),
            # 8 flops per byte: memory-bound, so % probe shows.
            result(decode, 1e-3, 2 << 30, flops=16 << 30),  # 2147 GB/s: 100% of the probe
        ]})
        peer = self.write("p.json", {"tool": "torch", "results": [
            result(prefill, 1.5e-3, 1 << 28, flops=1 << 40, variant="FLASH", impl="sdpa flash"),
            result(prefill, 0.8e-3, 1 << 28, flops=1 << 40, variant="CUDNN", impl="sdpa cudnn"),
            result(decode, 2e-3, 2 << 30, flops=16 << 30, variant="FLASH", note="peer: contiguous KV"),
        ], "refused": [{"name": decode, "variant": "CUDNN", "reason": "CUDNN refuses h64kv8d128: no GQA"}]})
        rc, table = self.run_join("--kiln", kiln, "--peer", peer)
        self.assertEqual(rc, 0)
        rows = self.rows(table)
        self.assertNotIn(prefill, rows)  # only the per-variant rows
        self.assertEqual(rows[prefill + " [FLASH]"][:4], ["1.000 ms", "1.500 ms", "1.50×", "1099.5 TFLOP/s"])
        self.assertEqual(rows[prefill + " [CUDNN]"][:3], ["1.000 ms", "800.0 µs", "0.80×"])
        flash = rows[decode + " [FLASH]"]
        self.assertEqual(flash[2], "2.00×")
        self.assertEqual(flash[4], "100%")
        self.assertIn("contiguous KV", flash[6])
        cudnn = rows[decode + " [CUDNN]"]
        self.assertEqual(cudnn[0], "1.000 ms")
        self.assertEqual(cudnn[1], "refused")
        self.assertEqual(cudnn[2], "—")
        self.assertIn("no GQA", cudnn[6])
        self.assertIn("- " + prefill + " [CUDNN]: sdpa cudnn", table)
        self.assertNotIn("WARNING", table)

    def test_memory_bound(self):
        self.assertTrue(join.memory_bound({"bytes": 100, "flops": 0}))
        self.assertTrue(join.memory_bound({"bytes": 100, "flops": 3199}))
        self.assertFalse(join.memory_bound({"bytes": 100, "flops": 3200}))


@unittest.skipIf(ops_torch is None, "torch is not installed")
class OpsTorchTest(unittest.TestCase):
    def test_find_builder_longest_prefix(self):
        builder, rest = ops_torch.find_builder("op/embedding/Q4_K-F32/512x4096")
        self.assertIs(builder, ops_torch.build_embedding)
        self.assertEqual(rest, ["Q4_K-F32", "512x4096"])
        self.assertEqual(ops_torch.find_builder("matmul/Q4_K/m1n2k3"), (ops_torch.build_matmul, ["Q4_K", "m1n2k3"]))
        self.assertEqual(ops_torch.find_builder("other/decode/x"), (None, None))
        self.assertEqual(ops_torch.find_builder("attention/decode/F16/h64kv8d128/b1kv2048"),
                         (ops_torch.build_attention_decode, ["F16", "h64kv8d128", "b1kv2048"]))
        self.assertIs(ops_torch.find_builder("attention/prefill/F16/d128-causal/b8s2048")[0], ops_torch.build_attention_prefill)
        for name in ops_torch.CASES + ops_torch.QUICK_CASES:
            self.assertIsNotNone(ops_torch.find_builder(name)[0], name)

    def test_parsers(self):
        self.assertEqual(ops_torch.parse_dims("512x32x128", 3, "t"), [512, 32, 128])
        self.assertEqual(ops_torch.parse_size("1GiB", "t"), 1 << 30)
        for bad in ("4096", "4096x0", "axb"):
            with self.assertRaises(ops_torch.CaseError):
                ops_torch.parse_dims(bad, 2, "t")
        with self.assertRaises(ops_torch.CaseError):
            ops_torch.parse_size("1GB", "t")
        with self.assertRaises(ops_torch.CaseError):
            ops_torch.parse_dtype("Q4_K", "t")

    def test_matmul_cases_mirror_kiln(self):
        # bench/matmul.go: 7 weight types x m in {1, 4, 16, 512} x 4 (n, k).
        names = [n for n in ops_torch.CASES if n.startswith("matmul/")]
        self.assertEqual(len(names), 7 * 4 * 4)
        for name in ("matmul/Q4_K/m1n4096k4096", "matmul/F32/m512n128256k4096", "matmul/Q6_K/m16n4096k14336"):
            self.assertIn(name, names)
        self.assertEqual(ops_torch.parse_mnk("m16n4096k14336", "t"), (16, 4096, 14336))
        for bad in ("m1n2", "m0n2k3", "1x2x3"):
            with self.assertRaises(ops_torch.CaseError):
                ops_torch.parse_mnk(bad, "t")
        import torch
        ctx = ops_torch.Context(torch.device("cpu"))
        with self.assertRaises(ops_torch.CaseError):
            ops_torch.build_matmul(ctx, ["Q5_1", "m1n2k3"], "t")

    def test_matmul_is_bf16_x_times_w_transposed(self):
        import torch
        ctx = ops_torch.Context(torch.device("cpu"))
        bench = ops_torch.build_matmul(ctx, ["Q4_K", "m3n5k7"], "t")
        out = bench.fn()
        # The builder drew x [3, 7], then w [5, 7], from a generator seeded 1: draw them again.
        ctx2 = ops_torch.Context(torch.device("cpu"))
        x = ctx2.randn((3, 7), torch.bfloat16)
        w = ctx2.randn((5, 7), torch.bfloat16)
        self.assertEqual(out.dtype, torch.bfloat16)
        self.assertEqual(tuple(out.shape), (3, 5))
        for i in range(3):
            for j in range(5):
                want = sum(x[i, t].item() * w[j, t].item() for t in range(7))
                self.assertAlmostEqual(out[i, j].item(), want, delta=abs(want) / 64 + 1e-2)
        self.assertEqual(bench.flops, 2 * 3 * 5 * 7)
        self.assertEqual(bench.bytes, 2 * (3 * 7 + 5 * 7 + 3 * 5))
        self.assertIn("Q4_K", bench.note)
        self.assertEqual(ops_torch.build_matmul(ctx, ["BF16", "m1n2k3"], "t").note, "")

    def test_rope_matches_rotation(self):
        # NeoX RoPE: element i pairs with i + d/2 and turns by pos * base^(-2i/d).
        import math
        import torch
        ctx = ops_torch.Context(torch.device("cpu"))
        bench = ops_torch.build_rope(ctx, ["F32", "3x2x4"], "t")
        out = bench.fn()
        # The builder's input was the first draw from a generator seeded 1: draw it again.
        ctx2 = ops_torch.Context(torch.device("cpu"))
        x = ctx2.randn((3, 2, 4), torch.float32)
        for pos in range(3):
            for h in range(2):
                for i in range(2):
                    theta = pos * ops_torch.ROPE_BASE ** (-i / 2)
                    a, b = x[pos, h, i].item(), x[pos, h, i + 2].item()
                    self.assertAlmostEqual(out[pos, h, i].item(), a * math.cos(theta) - b * math.sin(theta), places=5)
                    self.assertAlmostEqual(out[pos, h, i + 2].item(), b * math.cos(theta) + a * math.sin(theta), places=5)

    def test_attention_cases_mirror_kiln(self):
        # bench/attention.go: head dims 64, 128, 256 x causal/full x seqlen 512..16k (16k tokens);
        # decode batch 1, 8, 32, 128 x KV 2k, 8k, 32k.
        prefill = [n for n in ops_torch.CASES if n.startswith("attention/prefill/")]
        decode = [n for n in ops_torch.CASES if n.startswith("attention/decode/")]
        self.assertEqual(len(prefill), 3 * 2 * 6)
        self.assertEqual(len(decode), 4 * 3)
        for name in ("attention/prefill/F16/d128-causal/b2s8192", "attention/prefill/F16/d256-full/b32s512",
                     "attention/prefill/F16/d64-causal/b1s16384", "attention/decode/F16/h64kv8d128/b128kv32768"):
            self.assertTrue(name in prefill or name in decode, name)
        import torch
        ctx = ops_torch.Context(torch.device("cpu"))
        for builder, args in ((ops_torch.build_attention_prefill, ["F16", "d100-causal", "b1s8"]),  # 100 does not divide 2048
                              (ops_torch.build_attention_prefill, ["F16", "d64-sideways", "b1s8"]),
                              (ops_torch.build_attention_prefill, ["Q4_K", "d64-causal", "b1s8"]),
                              (ops_torch.build_attention_decode, ["F16", "h6kv4d64", "b1kv8"]),  # 6 heads over 4
                              (ops_torch.build_attention_decode, ["F16", "h8kv2d64", "8x8"])):
            with self.assertRaises(ops_torch.CaseError, msg=str(args)):
                builder(ctx, args, "t")

    def test_attention_builders_compute_attention(self):
        # Run FLASH (torch has a CPU kernel for it) and compare with softmax(q·kᵀ/√d)·v
        # computed here, GQA head h reading KV head h / group.
        import math
        import torch
        ctx = ops_torch.Context(torch.device("cpu"))
        bench = ops_torch.build_attention_prefill(ctx, ["F32", "d512-causal", "b2s5"], "t")  # 4 heads of 512
        self.assertEqual(bench.flops, 4 * 2 * 5 * 5 * 2048 // 2)
        self.assertEqual(bench.bytes, 4 * 2 * 5 * 2048 * 4)
        with bench.context():
            out = bench.fn()
        ctx2 = ops_torch.Context(torch.device("cpu"))
        q, k, v = (ctx2.randn((2, 5, 4, 512), torch.float32).transpose(1, 2) for _ in range(3))
        for b in range(2):
            for h in range(4):
                for i in range(5):
                    s = [sum(q[b, h, i, t].item() * k[b, h, j, t].item() for t in range(512)) / math.sqrt(512)
                         for j in range(i + 1)]  # causal
                    m = max(s)
                    w = [math.exp(x - m) for x in s]
                    for t in (0, 257, 511):
                        want = sum(w[j] * v[b, h, j, t].item() for j in range(i + 1)) / sum(w)
                        self.assertAlmostEqual(out[b, h, i, t].item(), want, delta=1e-4)

        ctx = ops_torch.Context(torch.device("cpu"))
        bench = ops_torch.build_attention_decode(ctx, ["F32", "h4kv2d8", "b3kv6"], "t")
        self.assertEqual(bench.bytes, 2 * 3 * 2 * 6 * 8 * 4 + 2 * 3 * 4 * 8 * 4)
        self.assertEqual(bench.flops, 4 * 3 * 4 * 6 * 8)
        self.assertIn("contiguous KV", bench.note)
        with bench.context():
            out = bench.fn()
        ctx2 = ops_torch.Context(torch.device("cpu"))
        q = ctx2.randn((3, 4, 1, 8), torch.float32)
        k = ctx2.randn((3, 2, 6, 8), torch.float32)
        v = ctx2.randn((3, 2, 6, 8), torch.float32)
        for b in range(3):
            for h in range(4):
                g = h // 2
                s = [sum(q[b, h, 0, t].item() * k[b, g, j, t].item() for t in range(8)) / math.sqrt(8) for j in range(6)]
                m = max(s)
                w = [math.exp(x - m) for x in s]
                for t in range(8):
                    want = sum(w[j] * v[b, g, j, t].item() for j in range(6)) / sum(w)
                    self.assertAlmostEqual(out[b, h, 0, t].item(), want, delta=1e-5)

    def test_attention_refusal_is_reported(self):
        # cuDNN has no CPU kernel: the builder says so, as a refusal (not a failure).
        import torch
        ctx = ops_torch.Context(torch.device("cpu"))
        with self.assertRaises(ops_torch.BackendRefused) as cm:
            ops_torch.build_attention_prefill(ctx, ["F16", "d64-causal", "b1s8"], "t", "CUDNN")
        self.assertIn("CUDNN refuses d64 causal b1s8", str(cm.exception))
        with self.assertRaises(ops_torch.BackendRefused):
            ops_torch.build_attention_decode(ctx, ["F16", "h8kv2d64", "b1kv16"], "t", "CUDNN")
        with self.assertRaises(ops_torch.BackendRefused):
            ops_torch.build_attention_decode(ctx, ["F16", "h8kv2d64", "b1kv16"], "t", "NOSUCH")

    def test_cpu_quick_run_writes_kiln_schema(self):
        with tempfile.TemporaryDirectory() as d:
            kiln = os.path.join(d, "k.json")
            with open(kiln, "w") as f:
                json.dump({"results": [{"name": "op/add/F16/64x64", "seconds": 1},
                                       {"name": "op/embedding/Q4_K-F32/4x16", "seconds": 1},
                                       {"name": "op/add/F16/64"},  # bad shape: an error
                                       {"name": "matmul/Q4_K/m1n2k3", "seconds": 1},
                                       {"name": "matmul/Q8_0/m1n2k3", "seconds": 1},  # the same torch run
                                       {"name": "other/decode/x", "seconds": 1},
                                       {"name": "attention/decode/F16/h4kv2d16/b2kv32", "seconds": 1}]}, f)
            out = os.path.join(d, "t.json")
            with contextlib.redirect_stderr(io.StringIO()):
                rc = ops_torch.main(["--device", "cpu", "--quick", "--names-from", kiln, "--filter", "^(op|matmul|attention|other)/",
                                     "--json", out])
            self.assertEqual(rc, 1)  # one case failed
            with open(out) as f:
                data = json.load(f)
        self.assertEqual(data["tool"], "torch")
        self.assertEqual(data["backend"], "cpu")
        # The attention case runs once per SDPA backend: FLASH has a CPU
        # kernel, CUDNN none (refused, not failed).
        names = [r["name"] for r in data["results"]]
        self.assertEqual(names, ["op/add/F16/64x64", "op/embedding/Q4_K-F32/4x16", "matmul/Q4_K/m1n2k3",
                                 "matmul/Q8_0/m1n2k3", "attention/decode/F16/h4kv2d16/b2kv32"])
        self.assertEqual(data["results"][4]["variant"], "FLASH")
        self.assertEqual([(r["name"], r["variant"]) for r in data["refused"]], [("attention/decode/F16/h4kv2d16/b2kv32", "CUDNN")])
        self.assertIn("CUDNN refuses", data["refused"][0]["reason"])
        for r in data["results"]:
            for key in ("iterations", "seconds", "bytes", "flops", "gbps", "tflops"):
                self.assertIn(key, r)
            self.assertGreater(r["seconds"], 0)
            self.assertAlmostEqual(r["gbps"], r["bytes"] / r["seconds"] / 1e9)
        self.assertEqual(data["results"][0]["bytes"], 3 * 64 * 64 * 2)
        self.assertIn("substitute", data["results"][1]["note"])
        self.assertEqual([e["name"] for e in data["errors"]], ["op/add/F16/64"])
        self.assertEqual(data["unsupported"], ["other/decode/x"])
        q4k, q8 = data["results"][2], data["results"][3]
        self.assertEqual(q4k["flops"], 2 * 1 * 2 * 3)
        self.assertEqual(q8["seconds"], q4k["seconds"])  # timed once for the shape
        self.assertIn("same torch run as matmul/Q4_K/m1n2k3", q8["note"])
        self.assertIn("Q8_0", q8["note"])


if __name__ == "__main__":
    unittest.main()
