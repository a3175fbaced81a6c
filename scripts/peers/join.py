#!/usr/bin/env python3
"""Join `kiln bench -json` with a peer's JSON (scripts/peers/ops_torch.py) into
one Markdown table of ratios, as docs/BENCHMARKS.md shows them.

Usage:
    python3 scripts/peers/join.py [--kiln bench-kiln.json] [--peer bench-torch.json ...] [--out table.md]

Both files have the schema of `kiln bench -json`: {"tool", "device", "backend",
"commit", "date", "results": [{"name", "iterations", "seconds" (median per
iteration), "bytes", "flops", "gbps", "tflops"}]}; a peer may add "impl",
"note" and "variant" to a result and "errors"/"unsupported"/"refused"/"skipped"
lists at the top. A kiln result with an "error" field is a case that failed: it
shows as "error".

A peer may time one case several ways, each result naming its "variant" (the
attention cases: torch SDPA with the FLASH and with the CUDNN backend): the
case then gets one row per variant, labelled "<name> [<variant>]", each with
kiln's time and the ratio to that variant. A variant the peer's backend
refused ("refused": [{"name", "variant", "reason"}]) shows "refused" and the
reason.

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
    """One bench JSON file, read and checked. Results and errors are keyed by
    (name, variant), variant None for a result without one."""

    header: dict  # everything but "results"
    results: dict  # (name, variant) -> result, usable ones only
    errors: dict  # (name, variant) -> why, for cases that failed, were refused or left out
    order: list  # every (name, variant) in the file's order
    problems: list  # what was wrong with the file's entries


def variant_of(r: dict):
    v = r.get("variant")
    return str(v) if v else None


def label(key: tuple) -> str:
    name, variant = key
    return name if variant is None else f"{name} [{variant}]"


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
    by_key: dict[tuple, dict] = {}
    errors: dict[tuple, str] = {}
    for i, r in enumerate(results):
        where = f"{path}: results[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not r["name"]:
            problems.append(f"{where}: no name; left out")
            continue
        key = (r["name"], variant_of(r))
        if r.get("error"):
            # kiln bench reports a case that failed this way (bench.Result.Error).
            errors.setdefault(key, str(r["error"]))
            continue
        if r.get("skipped"):
            # ... and one that does not run on this device (bench.Result.Skipped).
            errors.setdefault(key, "skipped: " + str(r["skipped"]))
            continue
        where += f" ({label(key)})"
        secs = r.get("seconds")
        if not isinstance(secs, (int, float)) or isinstance(secs, bool) or not math.isfinite(secs) or secs <= 0:
            problems.append(f"{where}: seconds {secs!r} is not a positive number; left out")
            continue
        for field in ("bytes", "flops"):
            v = r.get(field, 0)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                problems.append(f"{where}: {field} {v!r} is not a non-negative number; taken as 0")
                r[field] = 0
        if key in by_key:
            problems.append(f"{where}: duplicate name; the first one is kept")
            continue
        by_key[key] = r
    header = {k: v for k, v in data.items() if k != "results"}
    for e in header.get("errors") or []:  # ops_torch.py lists failed cases here
        if isinstance(e, dict) and isinstance(e.get("name"), str):
            errors.setdefault((e["name"], variant_of(e)), str(e.get("error", "error")))
    for e in header.get("refused") or []:  # an SDPA backend without a kernel for the shape
        if isinstance(e, dict) and isinstance(e.get("name"), str):
            errors.setdefault((e["name"], variant_of(e)), "refused: " + str(e.get("reason", "")))
    for list_key, why in (("unsupported", "no peer builder"), ("skipped", "skipped for time")):
        for name in header.get(list_key) or []:
            if isinstance(name, str):
                errors.setdefault((name, None), why)
    # File order of the cases shown: usable results and failed cases.
    order = [(r["name"], variant_of(r)) for r in results if isinstance(r, dict) and isinstance(r.get("name"), str)]
    order = [k for k in order if k in by_key or k in errors]
    order = list(dict.fromkeys(order + list(errors)))
    return Loaded(header, by_key, errors, order, problems)


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


def probe(results: dict[tuple, dict]) -> dict | None:
    for key in results:
        if key[0].startswith("probe/read/"):
            return results[key]
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
        for key, r in loaded.results.items():
            if key in peer:
                problems.append(f"{path}: {label(key)} already given by an earlier peer file; the first one is kept")
                continue
            peer[key] = r
        for key, why in loaded.errors.items():
            peer_errors.setdefault(key, why)
    problems = unusable + problems

    peer_name = "/".join(sorted({str(h.get("tool", "peer")) for h in peer_heads})) or "peer"
    kiln_probe = probe(kiln)
    peer_probe = probe(peer)
    ref_probe, ref_label = (kiln_probe, "") if kiln_probe else (peer_probe, " (peer probe)")

    lines = []
    device = kiln_head.get("device") or (peer_heads[0].get("device") if peer_heads else None) or "?"
    lines.append(f"### kiln vs {peer_name} — {device}")
    lines.append("")
    n_failed = sum(1 for why in kiln_errors.values() if not why.startswith("skipped: "))
    if kiln_loaded:
        lines.append(f"- kiln: commit {kiln_head.get('commit', '?')}, {kiln_head.get('date', '?')}, "
                     f"backend {kiln_head.get('backend', '?')}, {len(kiln)} results"
                     + (f", **{n_failed} failed**" if n_failed else "")
                     + (f", {len(kiln_errors) - n_failed} skipped on this device" if len(kiln_errors) > n_failed else ""))
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

    # One row per case and peer variant: cases in kiln's order, then those
    # only the peer has; a case's variants in the peer's order.
    names = list(dict.fromkeys([n for n, _ in kiln_order] + [n for n, _ in peer_order]))
    peer_variants: dict[str, list] = {}
    for n, v in peer_order:
        peer_variants.setdefault(n, [])
        if v not in peer_variants[n]:
            peer_variants[n].append(v)
    rows = []
    for name in names:
        variants = [v for v in peer_variants.get(name, []) if v is not None] or [None]
        rows += [(name, v) for v in variants]
    impls = []
    for name, variant in rows:
        key = (name, variant)
        k, p = kiln.get((name, None)), peer.get(key)
        p_err = peer_errors.get(key) or peer_errors.get((name, None))
        notes = []
        k_why = kiln_errors.get((name, None), "")
        k_time = fmt_time(k["seconds"]) if k else ("skipped" if k_why.startswith("skipped: ") else "error" if k_why else "—")
        if p:
            p_time = fmt_time(p["seconds"])
        elif p_err and p_err.startswith("refused"):
            p_time = "refused"
        elif p_err and not p_err.startswith(("no peer", "skipped")):
            p_time = "error"
        else:
            p_time = "—"
        speed = f"{p['seconds'] / k['seconds']:.2f}×" if k and p else "—"
        k_ach = fmt_achieved(k) if k else "—"
        p_ach = fmt_achieved(p) if p else "—"
        pct = "—"
        if k and memory_bound(k) and ref_probe and gbps(ref_probe) > 0 and k.get("bytes", 0) > 0:
            pct = f"{100 * gbps(k) / gbps(ref_probe):.0f}%"
        if k:
            notes += consistency(k, "kiln")
        elif (name, None) in kiln_errors:
            notes.append(f"kiln: {kiln_errors[(name, None)][:160]}")
        if p:
            notes += consistency(p, peer_name)
            if p.get("note"):
                notes.append(str(p["note"]))
            if p.get("impl"):
                impls.append(f"- {label(key)}: {p['impl']}")
        elif p_err:
            notes.append(f"{peer_name}: {p_err[:240]}")
        lines.append(f"| {cell(label(key))} | {k_time} | {p_time} | {speed} | {k_ach} | {pct} | {p_ach} | "
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
