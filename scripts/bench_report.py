#!/usr/bin/env python3
"""Records wsc-bench client runs and turns them into BENCHMARKS.md and an SVG chart.

Called by scripts/bench.sh (Python 3.11 standard library only):

  bench_report.py record --results FILE --round R --key KEY --rc RC [--impl I] [--stderr FILE]
      reads one client run's stdout (a line of JSON) on stdin, appends it to FILE as
      JSON with "round", "key" and "rc" added, and prints a one-line summary.
      Exit status 0 when the run measured, 1 when it did not.

  bench_report.py report --results FILE --md OUT.md --svg OUT.svg [--micro FILE]
                         [--criterion-dir DIR] [--command CMD] [--rounds N] [--quick]
                         [--pinning TEXT] [--clients FILE] [--elapsed SECS]
      medians per (scenario, client), the ratios against the targets, the micro-benchmark
      figures (criterion's `--output-format bencher` lines in --micro, with the estimates
      criterion saved under --criterion-dir), machine and commit; writes OUT.md and OUT.svg
      and prints the tables.  Exit status 0 unless the results cannot be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# ----- what is measured -----

IMPL_ORDER = ["wsc", "wsc-async", "tungstenite", "tokio-tungstenite", "fastwebsockets", "yawc", "raw",
              "raw-utf8"]


@dataclass(frozen=True)
class Scen:
    key: str
    title: str
    metric: str  # the JSON key compared between clients
    unit: str
    higher_is_better: bool = True


SCENARIOS = [
    Scen("feed-100", "feed, 100 B messages", "msgs_per_sec", "msgs/s"),
    Scen("feed-16384", "feed, 16 KiB messages", "mb_per_sec", "MB/s"),
    Scen("echo", "echo, 32 B round trips", "msgs_per_sec", "round trips/s"),
    Scen("large", "large, 16 MiB echoed", "mb_per_sec", "MB/s"),
    Scen("connect", "connect + close", "conns_per_sec", "conns/s"),
    Scen("compressed", "compressed feed (deflate)", "msgs_per_sec", "msgs/s"),
    Scen("idle", "idle connections", "bytes_per_conn", "bytes/conn", higher_is_better=False),
]
SCEN_BY_KEY = {s.key: s for s in SCENARIOS}


@dataclass(frozen=True)
class Target:
    key: str
    num: str
    den: str | None  # None: an absolute target on num's value
    metric: str
    op: str  # ">=", ">", "<"
    goal: float
    what: str


TARGETS = [
    Target("feed-100", "wsc", "tungstenite", "msgs_per_sec", ">=", 3.0, "feed 100 B: wsc / tungstenite, msgs/s"),
    Target("feed-100", "wsc-async", "fastwebsockets", "msgs_per_sec", ">=", 3.0,
           "feed 100 B: wsc-async / fastwebsockets, msgs/s"),
    Target("feed-16384", "wsc", "raw", "mb_per_sec", ">=", 0.95, "feed 16 KiB: wsc / raw, MB/s"),
    Target("feed-16384", "wsc-async", "raw", "mb_per_sec", ">=", 0.95, "feed 16 KiB: wsc-async / raw, MB/s"),
    Target("echo", "wsc", "tungstenite", "msgs_per_sec", ">=", 1.1, "echo: wsc / tungstenite, round trips/s"),
    Target("large", "wsc", "tungstenite", "mb_per_sec", ">=", 1.3, "large 16 MiB: wsc / tungstenite, MB/s"),
    Target("connect", "wsc", "tungstenite", "conns_per_sec", ">=", 1.2, "connect: wsc / tungstenite, conns/s"),
    Target("idle", "wsc-async", None, "bytes_per_conn", "<", 4096, "idle: wsc-async bytes per connection"),
    Target("compressed", "wsc", "yawc", "msgs_per_sec", ">", 1.0, "compressed: wsc / yawc, msgs/s"),
    Target("compressed", "wsc-async", "yawc", "msgs_per_sec", ">", 1.0, "compressed: wsc-async / yawc, msgs/s"),
]

@dataclass(frozen=True)
class Reference:
    """A ratio shown beside the targets, with no goal of its own."""
    key: str
    num: str
    den: str
    metric: str
    what: str


# The 16 KiB feed against the limit of a conforming client (raw reads plus the UTF-8 check
# RFC 6455 requires of text).
REFERENCES = [
    Reference("feed-16384", "wsc", "raw-utf8", "mb_per_sec", "feed 16 KiB: wsc / raw-utf8, MB/s"),
    Reference("feed-16384", "wsc-async", "raw-utf8", "mb_per_sec",
              "feed 16 KiB: wsc-async / raw-utf8, MB/s"),
    Reference("feed-16384", "raw-utf8", "raw", "mb_per_sec", "feed 16 KiB: raw-utf8 / raw, MB/s"),
]

OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}


# ----- formatting -----

def si(x: float | None, digits: int = 3) -> str:
    """A number with k/M/G suffixes and about `digits` significant digits."""
    if x is None:
        return "n/a"
    ax = abs(x)
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if ax >= div:
            return f"{x / div:.{max(digits - len(str(int(ax // div))), 0)}f}{suffix}"
    if ax >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.{digits - 1}f}" if ax < 10 else f"{x:.1f}"


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "MB/s":
        return f"{v:,.0f} MB/s" if v >= 100 else f"{v:.1f} MB/s"
    if unit == "bytes/conn":
        return f"{v:,.0f} B/conn"
    return f"{si(v)} {unit}"


def fmt_range(vals: list[float], unit: str) -> str:
    """`lo – hi unit`, the unit written once."""
    lo, hi = fmt_value(min(vals), unit), fmt_value(max(vals), unit)
    for suffix in (" " + unit, " B/conn", " MB/s"):
        if lo.endswith(suffix) and hi.endswith(suffix):
            return f"{lo[: -len(suffix)]} – {hi}"
    return f"{lo} – {hi}"


def fmt_us(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 10_000:
        return f"{v / 1000:,.1f} ms"
    return f"{v:,.1f} µs"


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# ----- record -----

def cmd_record(a: argparse.Namespace) -> int:
    raw = sys.stdin.read().strip()
    line = next((ln for ln in reversed(raw.splitlines()) if ln.startswith("{")), None)
    rec: dict
    try:
        rec = json.loads(line) if line else {}
    except json.JSONDecodeError:
        rec = {}
    if not rec:
        tail = ""
        if a.stderr and os.path.exists(a.stderr):
            tail = Path(a.stderr).read_text(errors="replace").strip()[-300:]
        rec = {"error": f"exit status {a.rc}, no JSON output" + (f": {tail}" if tail else "")}
    if a.impl:
        rec.setdefault("impl", a.impl)
    rec.update({"round": a.round, "key": a.key, "rc": a.rc})
    if a.rc != 0 and not rec.get("error"):
        rec["error"] = rec.get("skipped") or f"exit status {a.rc}"
    with open(a.results, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")

    scen = SCEN_BY_KEY.get(a.key)
    name = f"{a.key:<11} {rec.get('impl') or '?':<18}"
    if rec.get("error"):
        print(f"    {name} FAILED: {rec['error']}", flush=True)
        return 1
    parts = []
    if scen:
        parts.append(fmt_value(rec.get(scen.metric), scen.unit))
        if scen.metric == "msgs_per_sec" and rec.get("mb_per_sec") is not None:
            parts.append(fmt_value(rec["mb_per_sec"], "MB/s"))
        elif scen.metric == "mb_per_sec" and rec.get("msgs_per_sec") is not None:
            parts.append(fmt_value(rec["msgs_per_sec"], "msgs/s"))
    if rec.get("p50_us") is not None:
        parts.append(f"p50 {fmt_us(rec['p50_us'])} p99 {fmt_us(rec['p99_us'])}")
    if rec.get("secs") is not None:
        parts.append(f"{rec['secs']:.2f} s")
    print(f"    {name} " + ", ".join(parts), flush=True)
    return 0


# ----- report -----

def load(path: str) -> list[dict]:
    rows = []
    with open(path) as f:
        for ln in f:
            ln = ln.strip()
            if ln:
                rows.append(json.loads(ln))
    return rows


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


class Results:
    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.ok = [r for r in rows if not r.get("error")]
        self.failed = [r for r in rows if r.get("error")]

    def values(self, key: str, imp: str, metric: str) -> list[float]:
        return [r[metric] for r in self.ok
                if r["key"] == key and r.get("impl") == imp and r.get(metric) is not None]

    def med(self, key: str, imp: str, metric: str) -> float | None:
        return median(self.values(key, imp, metric))

    def by_round(self, key: str, imp: str, metric: str) -> dict[int, float]:
        return {r["round"]: r[metric] for r in self.ok
                if r["key"] == key and r.get("impl") == imp and r.get(metric) is not None}

    def impls(self, key: str) -> list[str]:
        seen = {r.get("impl") for r in self.rows if r["key"] == key}
        return [i for i in IMPL_ORDER if i in seen] + sorted(i for i in seen if i not in IMPL_ORDER and i)

    def first(self, key: str, imp: str, field: str):
        for r in self.ok:
            if r["key"] == key and r.get("impl") == imp and r.get(field) is not None:
                return r[field]
        return None


def best_of(res: Results, scen: Scen) -> float | None:
    vals = [res.med(scen.key, i, scen.metric) for i in res.impls(scen.key)]
    vals = [v for v in vals if v]
    if not vals:
        return None
    return max(vals) if scen.higher_is_better else min(vals)


def relative(v: float | None, best: float | None, higher: bool) -> float | None:
    if not v or not best:
        return None
    return v / best if higher else best / v


def results_table(res: Results) -> str:
    rows = []
    for scen in SCENARIOS:
        best = best_of(res, scen)
        for imp in res.impls(scen.key):
            vals = res.values(scen.key, imp, scen.metric)
            n_fail = sum(1 for r in res.failed if r["key"] == scen.key and r.get("impl") == imp)
            med = median(vals)
            spread = fmt_range(vals, scen.unit) if len(vals) > 1 else ""
            rel = relative(med, best, scen.higher_is_better)
            extra = []
            if scen.key.startswith("feed") or scen.key == "compressed":
                if scen.metric == "mb_per_sec":
                    extra.append(fmt_value(res.med(scen.key, imp, "msgs_per_sec"), "msgs/s"))
                else:
                    extra.append(fmt_value(res.med(scen.key, imp, "mb_per_sec"), "MB/s"))
            if scen.key in ("echo", "large", "connect"):
                extra.append(f"p50 {fmt_us(res.med(scen.key, imp, 'p50_us'))}, "
                             f"p99 {fmt_us(res.med(scen.key, imp, 'p99_us'))}")
            if scen.key == "idle":
                extra.append(fmt_value(res.med(scen.key, imp, "conns_per_sec"), "conns/s") + " opening")
            if n_fail:
                extra.append(f"**{n_fail} failed run(s)**")
            name = f"**{imp}**" if imp.startswith("wsc") else imp
            rows.append([scen.title, name, fmt_value(med, scen.unit), spread,
                         f"{rel:.2f}" if rel else "n/a", "; ".join(extra), str(len(vals))])
    return md_table(["scenario", "client", "median", "min – max over rounds", "vs best",
                     "also (medians)", "runs"], rows)


def ratio(res: Results, t: Target | Reference) -> tuple[float | None, list[float]]:
    """The ratio of the two medians, and the same ratio within each round."""
    a, b = res.med(t.key, t.num, t.metric), res.med(t.key, t.den, t.metric)
    ra, rb = res.by_round(t.key, t.num, t.metric), res.by_round(t.key, t.den, t.metric)
    return (a / b if a and b else None), [ra[k] / rb[k] for k in ra if k in rb and rb[k]]


def reference_rows(res: Results) -> list[list[str]]:
    rows = []
    for t in REFERENCES:
        val, per_round = ratio(res, t)
        if val is None:
            continue
        rng = f"{min(per_round):.2f} – {max(per_round):.2f}" if len(per_round) > 1 else ""
        rows.append([t.what, f"{val:.2f}×", rng])
    return rows


def target_rows(res: Results) -> tuple[list[list[str]], int, int]:
    rows, met_n, total = [], 0, 0
    for t in TARGETS:
        total += 1
        if t.den is None:
            val = res.med(t.key, t.num, t.metric)
            per_round = res.values(t.key, t.num, t.metric)
            shown = fmt_value(val, "bytes/conn") if val is not None else "n/a"
        else:
            val, per_round = ratio(res, t)
            shown = f"{val:.2f}×" if val is not None else "n/a"
        met = val is not None and OPS[t.op](val, t.goal)
        met_n += met
        if len(per_round) > 1:
            lo, hi = min(per_round), max(per_round)
            rng = (f"{lo:,.0f} – {hi:,.0f}" if t.den is None else f"{lo:.2f} – {hi:.2f}")
            ok_rounds = sum(1 for x in per_round if OPS[t.op](x, t.goal))
            rng += f" (met in {ok_rounds}/{len(per_round)})"
        else:
            rng = ""
        goal = f"{t.op} {t.goal:g}" + ("" if t.den else " B")
        verdict = "n/a (no result)" if val is None else ("**met**" if met else "not met")
        rows.append([t.what, shown, rng, goal, verdict])
    return rows, met_n, total


# ----- micro-benchmarks -----

BENCHER_RE = re.compile(r"^test (\S+) \.\.\. bench:\s+([\d,]+) ns/iter \(\+/- ([\d,]+)\)")


def load_micro(path: str | None, crit_dir: str | None) -> list[dict]:
    if not path or not os.path.exists(path):
        return []
    # criterion's saved estimates (more precise than the bencher lines' whole nanoseconds)
    saved: dict[str, tuple[dict, dict]] = {}
    if crit_dir and os.path.isdir(crit_dir):
        for bj in Path(crit_dir).glob("**/new/benchmark.json"):
            try:
                meta = json.loads(bj.read_text())
                est = json.loads((bj.parent / "estimates.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            saved[meta.get("full_id", "")] = (meta, est)
    out = []
    for ln in Path(path).read_text(errors="replace").splitlines():
        m = BENCHER_RE.match(ln.strip())
        if not m:
            continue
        name = m.group(1)
        ns = float(m.group(2).replace(",", ""))
        dev = float(m.group(3).replace(",", ""))
        throughput = None
        if name in saved:
            meta, est = saved[name]
            ns = est.get("median", {}).get("point_estimate", ns)
            throughput = meta.get("throughput")
        out.append({"name": name, "ns": ns, "dev": dev, "throughput": throughput})
    return out


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def micro_table(micro: list[dict]) -> str:
    rows = []
    for b in micro:
        tp = b["throughput"] or {}
        if "Bytes" in tp:
            rate = f"{tp['Bytes'] / b['ns']:.2f} GB/s"
        elif "BytesDecimal" in tp:
            rate = f"{tp['BytesDecimal'] / b['ns']:.2f} GB/s"
        elif "Elements" in tp:
            what = "headers" if b["name"].startswith("frame_header") else "messages"
            per = b["ns"] / tp["Elements"]
            rate = f"{si(tp['Elements'] / b['ns'] * 1e9)} {what}/s"
            if tp["Elements"] > 1:
                rate += f" ({fmt_ns(per)} each)"
        else:
            rate = ""
        group, _, rest = b["name"].partition("/")
        rows.append([f"`{group}`", f"`{rest}`", fmt_ns(b["ns"]), rate])
    return md_table(["group", "benchmark", "time per iteration (median)", "throughput"], rows)


# ----- machine -----

def sh(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    model = "unknown"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 0
    commit = sh("git", "rev-parse", "--short=12", "HEAD") or "unknown"
    subject = sh("git", "log", "-1", "--format=%s")
    dirty = bool(sh("git", "status", "--porcelain", "--untracked-files=no"))
    mem = ""
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                mem = f"{int(ln.split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError):
        pass
    return {
        "nproc": ncpu,
        "cpu": model,
        "kernel": platform.release(),
        "mem": mem,
        "rustc": sh("rustc", "--version") or "unknown",
        "commit": commit + (" + uncommitted changes" if dirty else ""),
        "subject": subject,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ----- the chart -----

COLORS = {
    "wsc": "#d62728", "wsc-async": "#ff7f0e", "tungstenite": "#1f77b4", "tokio-tungstenite": "#6baed6",
    "fastwebsockets": "#2ca02c", "yawc": "#9467bd", "raw": "#7f7f7f", "raw-utf8": "#bdbdbd",
}


def svg_chart(res: Results) -> str:
    left, bar_w, right = 150, 460, 190
    bar_h, gap, head = 14, 3, 22
    width = left + bar_w + right
    parts: list[str] = []
    y = 58
    for scen in SCENARIOS:
        imps = [i for i in res.impls(scen.key) if res.med(scen.key, i, scen.metric)]
        if not imps:
            continue
        best = best_of(res, scen)
        note = f"{scen.unit}, {'more' if scen.higher_is_better else 'fewer'} is better"
        parts.append(f'<text x="10" y="{y + 14}" class="h">{html.escape(scen.title)}'
                     f' <tspan class="n">({html.escape(note)})</tspan></text>')
        y += head
        for imp in imps:
            v = res.med(scen.key, imp, scen.metric)
            rel = relative(v, best, scen.higher_is_better) or 0
            w = max(rel * bar_w, 1)
            color = COLORS.get(imp, "#999999")
            weight = ' font-weight="bold"' if imp.startswith("wsc") else ""
            parts.append(f'<text x="{left - 6}" y="{y + bar_h - 3}" text-anchor="end"{weight}>'
                         f'{html.escape(imp)}</text>')
            parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                         f'<title>{html.escape(imp)}: {html.escape(fmt_value(v, scen.unit))}</title></rect>')
            parts.append(f'<text x="{left + w + 5:.1f}" y="{y + bar_h - 3}">'
                         f'{html.escape(fmt_value(v, scen.unit))} ({rel:.2f})</text>')
            y += bar_h + gap
        y += 12
    height = y + 10
    grid = []
    for frac in (0.25, 0.5, 0.75, 1.0):
        x = left + frac * bar_w
        grid.append(f'<line x1="{x:.1f}" y1="48" x2="{x:.1f}" y2="{y - 8}" class="g"/>'
                    f'<text x="{x:.1f}" y="44" text-anchor="middle" class="n">{frac:g}</text>')
    title = "wsc-bench: median per client and scenario"
    subtitle = ("bar length: relative to the best of the scenario, raw (the limit) included "
                "(1 = best; for idle, the fewest bytes/conn over this client's)")
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        "<style>.h{font-weight:bold;font-size:12px}.n{fill:#555;font-weight:normal;font-size:10px}"
        ".g{stroke:#ccc;stroke-dasharray:3,3}</style>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" class="h">{html.escape(title)}</text>',
        f'<text x="10" y="32" class="n">{html.escape(subtitle)}</text>',
        *grid, *parts, "</svg>", "",
    ])


# ----- report -----

def cmd_report(a: argparse.Namespace) -> int:
    try:
        res = Results(load(a.results))
    except (OSError, json.JSONDecodeError, KeyError) as e:
        print(f"bench_report: cannot read {a.results}: {e}", file=sys.stderr)
        return 1
    micro = load_micro(a.micro, a.criterion_dir)
    m = machine()
    md_path, svg_path = Path(a.md), Path(a.svg)
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    svg_path.write_text(svg_chart(res))
    svg_rel = os.path.relpath(svg_path, md_path.parent)

    results_md = results_table(res)
    trows, met_n, total = target_rows(res)
    targets_md = md_table(["ratio", "median", "per round", "target", "verdict"], trows)
    refs = reference_rows(res)
    if refs:
        targets_md += (
            "\n\nFor reference, no target: `raw-utf8` is `raw` plus the UTF-8 check of each text "
            "payload that RFC 6455 requires of every client (simdutf8), so it is the limit of a "
            "conforming client on the 16 KiB feed, where `raw` is the limit of the socket.\n\n"
            + md_table(["ratio", "median", "per round"], refs))

    clients_md = ""
    if a.clients and os.path.exists(a.clients):
        crow = []
        for ln in Path(a.clients).read_text().splitlines():
            key, _, cmd = ln.partition("\t")
            if key in SCEN_BY_KEY:
                crow.append([SCEN_BY_KEY[key].title, f"`{cmd}`"])
        clients_md = md_table(["scenario", "client command (IMPL: each client in turn)"], crow)

    mode = "quick smoke test (1 round, small counts: not for comparison)" if a.quick else f"{a.rounds} rounds"
    elapsed = f", {float(a.elapsed) / 60:.1f} min in all" if a.elapsed else ""
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by scripts/bench.sh (scripts/bench_report.py): do not edit by hand, rerun it. -->",
        "",
        f"wsc's clients side by side with other Rust WebSocket clients on loopback "
        f"(`crates/wsc-bench`), {mode}{elapsed}; {m['date']}, commit `{m['commit']}`"
        + (f" ({m['subject']})" if m["subject"] else "") + ".",
        "",
        f"Every figure is the median over the rounds; in each round every client runs once, in an "
        f"order rotated from round to round. The machine is shared and noisy (see the min – max "
        f"columns): ratios of a few percent either way are within the noise.",
        "",
        f"## Targets: {met_n} of {total} met",
        "",
        "Ratio of the two medians; \"per round\" is the range of the same ratio within each round.",
        "",
        targets_md,
        "",
        "## Results",
        "",
        "\"vs best\": the median relative to the best client of the scenario, `raw` included "
        "(no library: the least work any client could do, in feed, echo, large and connect; see "
        "crates/wsc-bench/README.md); for idle, the fewest bytes per connection over this one's.",
        "",
        results_md,
        "",
        f"![medians relative to the best client of each scenario]({svg_rel})",
        "",
    ]
    if res.failed:
        lines += ["### Failed runs", ""]
        lines += [f"- round {r.get('round')}, {r.get('key')}, {r.get('impl') or '?'}: {r.get('error')}"
                  for r in res.failed]
        lines.append("")
    lines += ["## Micro-benchmarks", ""]
    if micro:
        lines += [
            "`cargo bench -p wsc-bench --bench micro` (criterion, `crates/wsc-bench/benches/micro.rs`): "
            "wsc's hot paths through `wsc::proto`, one thread, no I/O. Frame headers are unmasked "
            "(server to client); masking is in place; the validator gets the text in 4 KiB pieces; "
            "reassembly is a client-role `Connection` given the whole buffer with one `receive` and "
            "drained (1000 single-frame 100 B text messages, borrowed with `stage_next`/`staged` or "
            "owned with `next_message`; one 1 MiB message in 64 fragments with `next_message`). "
            "GB/s are 10^9 bytes per second.",
            "",
            micro_table(micro),
            "",
        ]
    else:
        lines += ["Not run this time (`bash scripts/bench.sh --micro`, or "
                  "`cargo bench -p wsc-bench --bench micro`).", ""]
    lines += [
        "## How these figures were made",
        "",
        f"- command: `{a.command}`",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} memory, Linux {m['kernel']}; {m['rustc']}",
        f"- pinning: {a.pinning}",
        f"- date: {m['date']}; commit: `{m['commit']}`",
        "- the binary: `cargo build --release -p wsc-bench`, copied next to the results (so that a "
        "rebuild during the run changes nothing); one `wsc-bench serve` for the whole run; each "
        "client run is a fresh process; "
        f"the raw JSON lines are in `{a.results}`",
        "",
    ]
    if clients_md:
        lines += [clients_md, ""]
    lines += [
        "## Other benchmarks",
        "",
        "Not run by this script; each prints its own table:",
        "",
        "- `cargo bench -p wsc --bench compressed_feed`: a compressed against an uncompressed "
        "JSON feed through wsc (messages/s, bytes on the wire).",
        "- `cargo bench -p wsc --features tokio --bench connections`: 10,000 idle `wsc::tokio` "
        "connections against tokio-tungstenite (handshakes/s, RSS and heap per connection).",
        "",
    ]
    md_path.write_text("\n".join(lines))

    print()
    print(results_md)
    print()
    print(f"Targets: {met_n} of {total} met")
    print(targets_md)
    if micro:
        print()
        print(micro_table(micro))
    if res.failed:
        print(f"\n{len(res.failed)} run(s) failed (listed in {md_path})")
    print(f"\nwrote {md_path} and {svg_path}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--results", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--key", required=True)
    r.add_argument("--rc", type=int, required=True)
    r.add_argument("--stderr")
    r.add_argument("--impl")
    q = sub.add_parser("report")
    q.add_argument("--results", required=True)
    q.add_argument("--md", required=True)
    q.add_argument("--svg", required=True)
    q.add_argument("--micro")
    q.add_argument("--criterion-dir")
    q.add_argument("--command", default="bash scripts/bench.sh")
    q.add_argument("--rounds", type=int, default=5)
    q.add_argument("--quick", action="store_true")
    q.add_argument("--pinning", default="none")
    q.add_argument("--clients")
    q.add_argument("--elapsed")
    a = p.parse_args()
    return cmd_record(a) if a.cmd == "record" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
