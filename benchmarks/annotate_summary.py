#!/usr/bin/env python3
"""One table row per ner-annotate quality run of benchmarks/annotate_quality.sh (or xner pseudo run).

    python benchmarks/annotate_summary.py OUTDIR/PROMPT [OUTDIR/PROMPT ...]

For OUTDIR/PROMPT it reads OUTDIR/PROMPT.jsonl (the annotated records: item statuses from
meta.annotate, so runs that were killed and resumed count once), OUTDIR/PROMPT.eval.json (ner-eval
--json; strict entity micro P/R/F1) and OUTDIR/PROMPT.log (ner-annotate's stderr: the
"N records written ... Ts" line of each finished run, summed into sentences/s; a run killed before
its summary line is not in that figure).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def main() -> None:
    print("| run | sentences | P / R / F1 | predicted (correct) / gold | items | not found (rate) | sentences/s (runs) |")
    print("|---|---|---|---|---|---|---|")
    for base in sys.argv[1:]:
        b = Path(base)
        recs = [json.loads(line) for line in open(b.with_suffix(".jsonl"))]
        c = {"items": 0, "placed": 0, "not_found": 0}
        for r in recs:
            for k in c:
                c[k] += r["meta"]["annotate"][k]
        m = json.load(open(b.with_suffix(".eval.json")))["micro"]
        log = b.with_suffix(".log").read_text().replace("\r", "\n") if b.with_suffix(".log").exists() else ""
        runs = [(int(n), float(s)) for n, s in re.findall(r"(\d+) records written;.*?; ([\d.]+)s \(", log)]
        speed = (f"{sum(n for n, _ in runs) / sum(s for _, s in runs):.3f} ({len(runs)})"
                 if runs and sum(s for _, s in runs) else "n/a")
        rate = f"{100 * c['not_found'] / c['items']:.0f}%" if c["items"] else "n/a"
        print(f"| {b.parent.name}/{b.name} | {len(recs)} | {100 * m['precision']:.1f} / {100 * m['recall']:.1f} / "
              f"{100 * m['f1']:.1f} | {m['predicted']} ({m['correct']}) / {m['support']} | {c['items']} | "
              f"{c['not_found']} ({rate}) | {speed} |")


if __name__ == "__main__":
    main()
