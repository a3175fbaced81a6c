#!/usr/bin/env python3
"""Join `kiln bench -json` with a peer's JSON (scripts/peers/ops_torch.py) into
one Markdown table of ratios, as docs/BENCHMARKS.md shows them.

Usage:
    python3 scripts/peers/join.py [--kiln bench-kiln.json] [--peer bench-torch.json ...] [--out table.md]

Both files have the schema of `kiln bench -json`: {"tool", "device", "backend",
"commit", "date", "results": [{"name", "iterations", "seconds" (median per
iteration), "bytes", "flops", "gbps", "tflops"}]}; a peer may add "impl" and
"note" to a result and "errors"/"unsupported"/"skipped" lists at the top. A
kiln result with an "error" field is a case that failed: it shows as "error".

Per case (kiln's order, then cases only the peer has):
  * kiln and peer: median time per iteration; "—" where one side has no result;
  * speed: peer time / kiln time, so > 1 means kiln is faster;
  * kiln achieved: GB/s for memory-bound cases, TFLOP/s for the others;
  * % probe: kiln's GB/s over kiln's own read-bandwidth probe (probe/read/...)
    from the same run, for memory-bound cases; the peer's probe stands in,
    marked "(peer probe)", when kiln has none;
  * peer achieved, and notes (a peer substitute such as an F16 gather standing
    in for Q4_K, errors, inconsistent numbers).
A case is memory-bound when it counts no flops or does fewer than
MEMORY_BOUND_FLOPS_PER_BYTE flops per byte moved.

The table goes to --out and to stdout. Exit status: 0 when the table was
written from usable inputs; 1 when an input was missing or unusable (the table
is still written from the rest, with the problem stated above it); 2 for a
usage error or no usable input at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys

MEMORY_BOUND_FLOPS_PER_BYTE = 32.0
# gbps / tflops fields that disagree with bytes/seconds by more than this are flagged.
CONSISTENCY_TOLERANCE = 0.02


class InputError(Exception):
    """An input file that cannot be used at all."""


@dataclasses.dataclass
class Loaded:
    """One bench JSON file, read and checked."""

    header: dict  # everything but "results"
    results: dict  # name -> result, usable ones only
    errors: dict  # name -> why, for cases that failed or were left out
    order: list  # every case name in the file's order
    problems: list  # what was wrong with the file's entries


def load(path: str) -> Loaded:
    """Reads and checks one bench JSON file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    results = data.get("results")
    if not isinstance(results, list):
        raise InputError(f"{path}: no 'results' list")
    problems: list[str] = []
    by_name: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for i, r in enumerate(results):
        where = f"{path}: results[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not r["name"]:
            problems.append(f"{where}: no name; left out")
            continue
        if r.get("error"):
            # kiln bench reports a case that failed this way (bench.Result.Error).
            errors.setdefault(r["name"], str(r["error"]))
            continue
        where += f" ({r['name']})"
        secs = r.get("seconds")
        if not isinstance(secs, (int, float)) or isinstance(secs, bool) or not math.isfinite(secs) or secs <= 0:
            problems.append(f"{where}: seconds {secs!r} is not a positive number; left out")
            continue
        for key in ("bytes", "flops"):
            v = r.get(key, 0)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                problems.append(f"{where}: {key} {v!r} is not a non-negative number; taken as 0")
                r[key] = 0
        if r["name"] in by_name:
            problems.append(f"{where}: duplicate name; the first one is kept")
            continue
        by_name[r["name"]] = r
    header = {k: v for k, v in data.items() if k != "results"}
    for e in header.get("errors") or []:  # ops_torch.py lists failed cases here
        if isinstance(e, dict) and isinstance(e.get("name"), str):
            errors.setdefault(e["name"], str(e.get("error", "error")))
    for key, why in (("unsupported", "no peer builder"), ("skipped", "skipped for time")):
        for name in header.get(key) or []:
            if isinstance(name, str):
                errors.setdefault(name, why)
    # File order of the cases shown: usable results and failed cases.
    order = [r["name"] for r in results if isinstance(r, dict) and (r.get("name") in by_name or r.get("name") in errors)]
    order = list(dict.fromkeys(order + list(errors)))
    return Loaded(header, by_name, errors, order, problems)


def gbps(r: dict) -> float:
    return r.get("bytes", 0) / r["seconds"] / 1e9


def tflops(r: dict) -> float:
    return r.get("flops", 0) / r["seconds"] / 1e12


def memory_bound(r: dict) -> bool:
    b, f = r.get("bytes", 0), r.get("flops", 0)
    if f <= 0:
        return True
    return b > 0 and f / b < MEMORY_BOUND_FLOPS_PER_BYTE


def consistency(r: dict, who: str) -> list[str]:
    """Flags gbps/tflops fields that disagree with bytes, flops and seconds."""
    out = []
    for key, value in (("gbps", gbps(r)), ("tflops", tflops(r))):
        given = r.get(key)
        if isinstance(given, (int, float)) and not isinstance(given, bool) and value > 0:
            if abs(given - value) > CONSISTENCY_TOLERANCE * value:
                out.append(f"{who} {key} {given:.4g} != bytes/seconds {value:.4g}")
    return out


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.3f} s"


def fmt_achieved(r: dict) -> str:
    if memory_bound(r):
        return f"{gbps(r):.0f} GB/s" if gbps(r) >= 10 else f"{gbps(r):.2f} GB/s"
    return f"{tflops(r):.1f} TFLOP/s"


def probe(results: dict[str, dict]) -> dict | None:
    for name in results:
        if name.startswith("probe/read/"):
            return results[name]
    return None


def same_device(a: str, b: str) -> bool:
    """Whether two device descriptions name the same model: the text before
    " (" of one contains the other's (kiln and torch word the rest differently)."""
    a, b = a.split(" (")[0].strip().lower(), b.split(" (")[0].strip().lower()
    return bool(a and b) and (a in b or b in a)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def build_table(kiln_path, peer_paths) -> tuple[str, bool, bool]:
    """Returns the Markdown, whether every input was usable, and whether any result was."""
    problems: list[str] = []  # warnings: shown above the table
    unusable: list[str] = []  # input files that gave nothing
    kiln_head, kiln, kiln_errors, kiln_order = {}, {}, {}, []
    kiln_loaded = False
    if kiln_path:
        try:
            k = load(kiln_path)
            kiln_head, kiln, kiln_errors, kiln_order = k.header, k.results, k.errors, k.order
            kiln_loaded = True
            problems += k.problems
        except InputError as exc:
            unusable.append(f"kiln: {exc}")
    else:
        problems.append("kiln: no results file given")
    peer_heads, peer, peer_errors, peer_order = [], {}, {}, []
    for path in peer_paths:
        try:
            loaded = load(path)
        except InputError as exc:
            unusable.append(f"peer: {exc}")
            continue
        problems += loaded.problems
        peer_heads.append(loaded.header)
        peer_order += loaded.order
        for name, r in loaded.results.items():
            if name in peer:
                problems.append(f"{path}: {name} already given by an earlier peer file; the first one is kept")
                continue
            peer[name] = r
        for name, why in loaded.errors.items():
            peer_errors.setdefault(name, why)
    problems = unusable + problems

    peer_name = "/".join(sorted({str(h.get("tool", "peer")) for h in peer_heads})) or "peer"
    kiln_probe = probe(kiln)
    peer_probe = probe(peer)
    ref_probe, ref_label = (kiln_probe, "") if kiln_probe else (peer_probe, " (peer probe)")

    lines = []
    device = kiln_head.get("device") or (peer_heads[0].get("device") if peer_heads else None) or "?"
    lines.append(f"### kiln vs {peer_name} — {device}")
    lines.append("")
    if kiln_loaded:
        lines.append(f"- kiln: commit {kiln_head.get('commit', '?')}, {kiln_head.get('date', '?')}, "
                     f"backend {kiln_head.get('backend', '?')}, {len(kiln)} results"
                     + (f", **{len(kiln_errors)} failed**" if kiln_errors else ""))
    for h in peer_heads:
        lines.append(f"- {h.get('tool', 'peer')}: {h.get('version', '')} on {h.get('device', '?')}, "
                     f"{h.get('date', '?')}" + (f"; timing: {h['method']}" if h.get("method") else ""))
        if kiln_head.get("device") and h.get("device") and \
                not same_device(str(kiln_head["device"]), str(h["device"])):
            lines.append(f"- **WARNING: different devices: kiln ran on {kiln_head['device']}, "
                         f"{h.get('tool', 'peer')} on {h['device']}**")
    if ref_probe:
        lines.append(f"- read-bandwidth probe{ref_label}: {ref_probe['name']} at {gbps(ref_probe):.0f} GB/s")
    lines.append(f"- speed = {peer_name} time / kiln time (> 1: kiln faster); % probe = kiln GB/s / probe GB/s "
                 f"(memory-bound cases: no flops, or < {MEMORY_BOUND_FLOPS_PER_BYTE:g} flops/byte)")
    for p in problems:
        lines.append(f"- **WARNING: {cell(p)}**")
    lines.append("")
    lines.append(f"| case | kiln | {peer_name} | speed | kiln achieved | % probe | {peer_name} achieved | note |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|")

    names = list(dict.fromkeys(kiln_order + peer_order))
    impls = []
    for name in names:
        k, p = kiln.get(name), peer.get(name)
        notes = []
        k_time = fmt_time(k["seconds"]) if k else ("error" if name in kiln_errors else "—")
        p_time = fmt_time(p["seconds"]) if p else ("error" if name in peer_errors and
                                                      not peer_errors[name].startswith(("no peer", "skipped")) else "—")
        speed = f"{p['seconds'] / k['seconds']:.2f}×" if k and p else "—"
        k_ach = fmt_achieved(k) if k else "—"
        p_ach = fmt_achieved(p) if p else "—"
        pct = "—"
        if k and memory_bound(k) and ref_probe and gbps(ref_probe) > 0 and k.get("bytes", 0) > 0:
            pct = f"{100 * gbps(k) / gbps(ref_probe):.0f}%"
        if k:
            notes += consistency(k, "kiln")
        elif name in kiln_errors:
            notes.append(f"kiln: {kiln_errors[name][:160]}")
        if p:
            notes += consistency(p, peer_name)
            if p.get("note"):
                notes.append(str(p["note"]))
            if p.get("impl"):
                impls.append(f"- {name}: {p['impl']}")
        elif name in peer_errors:
            notes.append(f"{peer_name}: {peer_errors[name][:160]}")
        lines.append(f"| {cell(name)} | {k_time} | {p_time} | {speed} | {k_ach} | {pct} | {p_ach} | "
                     f"{cell('; '.join(notes))} |")
    if not names:
        lines.append("| (no results) | — | — | — | — | — | — | |")
    if impls:
        lines.append("")
        lines.append(f"{peer_name} ran:")
        lines.append("")
        lines += impls
    return "\n".join(lines) + "\n", not unusable, bool(kiln or peer or kiln_errors or peer_errors)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kiln", help="kiln bench -json output")
    ap.add_argument("--peer", action="append", default=[], help="a peer's JSON (repeatable)")
    ap.add_argument("--out", help="write the Markdown table here too")
    args = ap.parse_args(argv)
    if not args.kiln and not args.peer:
        print("join: give --kiln and/or --peer", file=sys.stderr)
        return 2
    table, usable, any_results = build_table(args.kiln, args.peer)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    sys.stdout.write(table)
    if not any_results:
        print("join: no usable results in any input", file=sys.stderr)
        return 2
    return 0 if usable else 1


if __name__ == "__main__":
    sys.exit(main())
