#!/usr/bin/env python3
"""Judge an Autobahn run from the reports kosoku (fuzzingserver mode) wrote.

usage: autobahn_report.py OUTDIR [--agent wsc] [--sections 1-10] [--expected FILE]
                          [--allow-non-strict]
       autobahn_report.py --sections 1-10 --print-globs

OUTDIR/index.json is {agent: {case_id: {"behavior", "behaviorClose",
"remoteCloseCode", "duration", "reportfile"}}}; only cases that ran appear.

The expected case list comes from kosoku's own case registry
(kosoku.cases.CASES, so run this with the venv's python) or from --expected
(one case id per line).  A case that never ran is MISSING and fails the
verdict: kosoku itself exits 0 when a client skips cases.

Exit status: 0 if every expected case passed, 1 if not, 2 on usage errors.
A case passes when behavior and behaviorClose are both OK, with one exception:
INFORMATIONAL is accepted for 7.1.6, 7.13.1 and 7.13.2 only.  In kosoku 0.1.0
those are the only case files that emit INFORMATIONAL, and they set it
unconditionally (behavior and behaviorClose) since the spec leaves the outcome
open; anywhere else INFORMATIONAL is unexpected and fails.  NON-STRICT
("SHOULD" violations, e.g. 6.4.x not failing fast on invalid UTF-8) fails
unless --allow-non-strict.  UNIMPLEMENTED (12.x/13.x when the client offers
no permessage-deflate) always fails: do not request those sections then.
"""

import argparse
import json
import os
import sys

INFORMATIONAL_CASES = {"7.1.6", "7.13.1", "7.13.2"}
COLUMNS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "OTHER", "MISSING"]
HEADERS = ["OK", "NON-STRICT", "INFO", "UNIMPL", "FAILED", "OTHER", "MISSING", "BAD-CLOSE"]


def die(msg):
    print(f"autobahn_report: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_sections(spec):
    """'1-10' / '1,2,5' / '1-4,6,9-10' -> sorted list of ints."""
    out = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            out.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            die(f"bad --sections {spec!r} (e.g. 1-10 or 1,2,9-10)")
    return sorted(out)


def section(case_id):
    return int(case_id.split(".")[0])


def case_key(case_id):
    return [int(p) for p in case_id.split(".")]


def all_case_ids(expected_file):
    if expected_file:
        with open(expected_file) as f:
            return [line.strip() for line in f if line.strip()]
    try:
        from kosoku.cases import CASES  # kosoku's registry: what -i/-x select from
    except ImportError:
        die("cannot import kosoku: run with the kosoku venv's python or pass --expected FILE")
    return list(CASES)


def passes(case_id, entry, allow_non_strict):
    if case_id in INFORMATIONAL_CASES and entry["behavior"] == entry["behaviorClose"] == "INFORMATIONAL":
        return True
    ok_behavior = {"OK", "NON-STRICT"} if allow_non_strict else {"OK"}
    return entry["behavior"] in ok_behavior and entry["behaviorClose"] == "OK"


def main():
    ap = argparse.ArgumentParser(description="Judge kosoku's Autobahn reports.")
    ap.add_argument("outdir", nargs="?", help="kosoku report directory (holds index.json)")
    ap.add_argument("--agent", default="wsc", help="agent name the client reported (default: wsc)")
    ap.add_argument("--sections", default="1-10", help="top-level sections to judge (default: 1-10)")
    ap.add_argument("--expected", metavar="FILE", help="case ids, one a line (default: kosoku's registry)")
    ap.add_argument("--allow-non-strict", action="store_true", help="count NON-STRICT behavior as a pass")
    ap.add_argument("--print-globs", action="store_true",
                    help="print a kosoku -i glob per requested section that has cases, then exit")
    args = ap.parse_args()

    wanted = parse_sections(args.sections)
    expected = [c for c in all_case_ids(args.expected) if section(c) in wanted]
    present = sorted({section(c) for c in expected})
    if args.print_globs:
        print("\n".join(f"{s}.*" for s in present))  # kosoku rejects globs that match nothing
        return 0 if present else 2
    if not args.outdir:
        ap.error("OUTDIR is required")
    if not expected:
        die(f"kosoku has no cases in sections {args.sections}")

    index_path = os.path.join(args.outdir, "index.json")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except FileNotFoundError:
        print(f"autobahn_report: {index_path} not found (kosoku writes it only after the "
              "client opens /updateReports having run at least one case)", file=sys.stderr)
        index = {}
    results = index.get(args.agent, {})
    if index and not results:
        print(f"autobahn_report: no results for agent {args.agent!r}; agents in report: "
              f"{', '.join(sorted(index))}", file=sys.stderr)

    table = {s: dict.fromkeys(COLUMNS, 0) for s in present}
    bad, info = [], []
    for case_id in expected:
        entry = results.get(case_id)
        if entry is None:
            column = "MISSING"
            entry = {"behavior": "MISSING", "behaviorClose": "-", "remoteCloseCode": None}
        else:
            column = entry["behavior"] if entry["behavior"] in COLUMNS else "OTHER"
        table[section(case_id)][column] += 1
        if passes(case_id, entry, args.allow_non_strict):
            if (entry["behavior"], entry["behaviorClose"]) != ("OK", "OK"):
                info.append((case_id, entry))
        else:
            bad.append((case_id, entry))

    print(f"Autobahn results for agent {args.agent!r}, sections {args.sections} ({index_path})")
    print("section" + "".join(f"{h:>11}" for h in HEADERS))
    totals = [0] * len(HEADERS)
    for s in present:
        bad_close = sum(1 for c, e in bad if section(c) == s and e["behaviorClose"] not in ("OK", "-"))
        row = [table[s][c] for c in COLUMNS] + [bad_close]
        totals = [t + v for t, v in zip(totals, row)]
        print(f"{s:>7}" + "".join(f"{v:>11}" for v in row))
    print(f"{'total':>7}" + "".join(f"{v:>11}" for v in totals))

    def show(title, rows):
        print(f"\n{title}:")
        for case_id, e in sorted(rows, key=lambda r: case_key(r[0])):
            print(f"  {case_id:<8} behavior={e['behavior']:<13} behaviorClose={e['behaviorClose']:<13}"
                  f" remoteCloseCode={e.get('remoteCloseCode')}")

    if info:
        show("passed, though not OK/OK", info)
    if bad:
        show(f"{len(bad)} of {len(expected)} cases not passed", bad)
        details = f" (per-case details: {os.path.join(args.outdir, 'index.html')})" if index else ""
        print(f"\nFAIL: {len(bad)} of {len(expected)} expected cases did not pass{details}")
        return 1
    print(f"\nPASS: all {len(expected)} expected cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
