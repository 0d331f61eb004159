"""X-NER fast scoring mode: speed and fidelity of each option against the exact 2-way test.

The sample is ``benchmarks/xner_quality.py``'s (a fixed random sample of CoNLL-2003 train
sentences of <= 30 tokens, official candidates, the paper's seeds PER "Masaki Yoshida",
LOC "Singapore", ORG "Boston Celtics", MISC "Japanese"; K = 0.9% of the sample's candidates,
as the paper's P@1000 on the full train set).

Phases (``--phase``, each resumable: scores are appended per record to a cache file under
``benchmarks/out/fastmode-<model>-<n>/`` and a rerun continues where it stopped, so a sample
prefix that finished is usable even if the run was cut short):

* ``exact``: the default ``ner-divscore`` scores (2way, rows next, temperature 2) of every
  sample sentence; the same pass records the 1-way score (the sentence-test row), which is
  what ``--cascade 1way`` ranks with (``--cascade``'s cheap pass runs the 1way method, whose
  score is that same row).
* ``cosine``: the cosine method's scores (``--cascade cosine``'s cheap score).
* ``variant``: ``--variant bf16|int8|int8-all`` 2way scores (changed numerics: a new pass),
  on the first ``--variant-sentences`` sentences.
* ``speed``: on the first ``--speed-sentences`` sample sentences, one run times the exact
  default and each option (real code paths: ``nertools.xner.fast.cascade_scores``, the
  quantised or bfloat16 model), wall and CPU seconds of this process (the ratio of CPU
  seconds is what a shared machine measures least badly); it also checks that the cascade's
  real output equals what ``report`` recomputes from the cached scores.
* ``report``: per option, on the cached sentences: top-K overlap with the exact top-K per
  label (|top-K(option) & top-K(exact)| / K, raw ranking by the label's score), P@K against
  gold per label (raw ranking, and through ``ner-pseudo``'s defaults), and the speed ratio
  from ``speed``; a Markdown table, a JSON file, and a PNG plot (speed ratio vs. top-K overlap;
  needs matplotlib).

    python benchmarks/xner_fastmode.py --model smollm2-135m --sentences 1000 --phase exact --threads 1
    python benchmarks/xner_fastmode.py --model smollm2-135m --sentences 1000 --phase cosine --threads 1
    python benchmarks/xner_fastmode.py --model smollm2-135m --sentences 1000 --phase speed --speed-sentences 30
    python benchmarks/xner_fastmode.py --model smollm2-135m --sentences 1000 --phase report
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xner_quality import LABELS, ROOT, gold_set, load_sample, precision_at_k  # noqa: E402

KEEPS = (0.02, 0.05, 0.1, 0.2, 0.3)
VARIANTS = ("bf16", "int8", "int8-all")
TEMPERATURE = 2.0


def out_dir(args) -> Path:
    d = ROOT / "benchmarks" / "out" / f"fastmode-{args.model}-{args.sentences}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_cache(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: the rest is rescored
            break
    return rows


def seeds():
    from nertools.xner.seeds import PAPER_SEEDS, Seed

    return [Seed.make(lab, txt) for lab, txt in PAPER_SEEDS["conll2003"].items()]


def load(args, variant: str | None = None):
    from nertools.runtime.models import load_lm
    from nertools.xner.fast import quantize_lm

    dtype = "bfloat16" if variant == "bf16" else "float32"
    lm = load_lm(args.model, device="cpu", dtype=dtype)
    if variant in ("int8", "int8-all"):
        lm = quantize_lm(lm, variant)
    return lm


def scorer(lm, method: str, **kw):
    from nertools.xner.scoring import make_scorer

    opts = {"batch_tokens": args_global.batch_tokens}
    if method in ("1way", "2way"):
        opts["temperature"] = TEMPERATURE
    sc = make_scorer(lm, seeds(), method=method, progress=True, **opts)
    for k, v in kw.items():
        setattr(sc, k, v)
    return sc


def run_cached(args, records, path: Path, make, extract, limit: int | None = None) -> None:
    """Score ``records`` (from the first not yet cached) and append one line per record."""
    done = len(read_cache(path))
    todo = records[done:limit] if limit is not None else records[done:]
    if not todo:
        print(f"{path.name}: {done} records cached, nothing to do", file=sys.stderr)
        return
    sc = make()
    with path.open("a") as f:
        # rewrite a trailing partial line away
        for k, rec in enumerate(sc.score_records(copy.deepcopy(todo))):
            f.write(json.dumps({"i": done + k, "scores": extract(rec)}) + "\n")
            f.flush()


def as_lists(rec, key=None):
    out = []
    for c in rec["candidates"]:
        out.append([float(c["scores"][lab]) for lab in LABELS])
    return out


def phase_exact(args, records):
    d = out_dir(args)
    lm = load(args)

    def make():
        return scorer(lm, "2way", row_details=True)

    def extract(rec):
        two, one = [], []
        for c in rec["candidates"]:
            two.append([float(c["scores"][lab]) for lab in LABELS])
            row = []
            for lab in LABELS:
                sent = c["divergence_rows"][lab][str(TEMPERATURE)]["sentence"][:1]
                row.append(float(np.mean(sent)) if sent else 1e30)
            one.append(row)
        return {"2way": two, "1way": one}

    run_cached(args, records, d / "exact.jsonl", make, extract)


def phase_cosine(args, records):
    d = out_dir(args)
    lm = load(args)
    run_cached(args, records, d / "cosine.jsonl", lambda: scorer(lm, "cosine"), lambda r: {"cosine": as_lists(r)},
               limit=args.limit)


def phase_variant(args, records):
    d = out_dir(args)
    lm = load(args, args.variant)
    def extract(rec):
        return {args.variant: as_lists(rec),
                "1way": [[float(np.mean(c["divergence_rows"][lab][str(TEMPERATURE)]["sentence"][:1]))
                          for lab in LABELS] for c in rec["candidates"]]}

    run_cached(args, records, d / f"variant-{args.variant}-details.jsonl", lambda: scorer(lm, "2way", row_details=True),
               extract, limit=args.variant_sentences)


def cpu_time(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def phase_speed(args, records):
    """Time the exact default and each option on the same sentences, in one run."""
    from nertools.xner.fast import cascade_scores

    d = out_dir(args)
    sub = records[:args.speed_sentences]
    n = sum(len(r["candidates"]) for r in sub)
    labels = list(LABELS)
    results = {"sentences": len(sub), "spans": n, "threads": args.threads, "runs": {}}
    lm = load(args)
    # warm-up (first-call allocations, tokenizer memo) on two sentences, not timed
    list(scorer(lm, "2way").score_records(copy.deepcopy(sub[:2])))
    plan = [("exact", None)] + [(f"cascade 1way {k:g}", ("1way", k, None)) for k in args.speed_keeps] \
        + [(f"cascade 1way-int8 {k:g}", ("1way", k, "int8")) for k in args.speed_keeps] \
        + [(f"cascade cosine {k:g}", ("cosine", k, None)) for k in args.speed_cosine_keeps] \
        + [(f"int8 + cascade 1way {k:g}", ("1way", k, "int8", "int8")) for k in args.speed_keeps] \
        + [(f"bf16 + cascade 1way {k:g}", ("1way", k, "bf16", "bf16")) for k in args.speed_keeps]
    if args.speed_only:
        import re
        plan = [p for p in plan if p[1] is None or re.search(args.speed_only, p[0])]
    from nertools.xner.fast import quantize_lm
    from dataclasses import replace
    cheap_lms = {None: lm}
    if any(p[1] and p[1][2] == "int8" for p in plan):
        cheap_lms["int8"] = quantize_lm(replace(lm, model=copy.deepcopy(lm.model)), "int8")
    if any(p[1] and p[1][2] == "bf16" for p in plan):
        cheap_lms["bf16"] = load(args, "bf16")
        list(scorer(cheap_lms["bf16"], "2way").score_records(copy.deepcopy(sub[:2])))  # warm-up
    outputs = {}
    for rep in range(args.repeats):
        for name, casc in plan:
            if casc is None:
                def fn():
                    return list(scorer(lm, "2way").score_records(copy.deepcopy(sub)))
            else:
                def fn(casc=casc):
                    exact_lm = cheap_lms[casc[3]] if len(casc) > 3 else lm
                    return list(cascade_scores(copy.deepcopy(sub), scorer(cheap_lms[casc[2]], casc[0]),
                                               scorer(exact_lm, "2way"), labels, keep=casc[1]))
            out, wall, cpu = cpu_time(fn)
            outputs[name] = out
            results["runs"].setdefault(name, []).append({"wall_s": wall, "cpu_s": cpu})
            print(f"speed {name}: {n / wall:.2f} spans/s wall, {n / cpu:.2f} spans/CPU-s", file=sys.stderr,
                  flush=True)
            (d / f"speed-{args.speed_sentences}{args.speed_tag}.json").write_text(json.dumps(results, indent=1))
    # the cascade's real output vs. the recomputation from the exact and cheap scores of this run
    exact = [[[c["scores"][lab] for lab in LABELS] for c in r["candidates"]] for r in outputs["exact"]]
    cheap_cache = {}
    checks = {}
    for name, casc in plan:
        if casc is None or len(casc) > 3:  # (an int8 exact pass: not comparable to the float32 exact)
            continue
        real = [[[c["scores"][lab] for lab in LABELS] for c in r["candidates"]] for r in outputs[name]]
        key = (casc[0], casc[2])
        if key not in cheap_cache:
            sc = list(scorer(cheap_lms[casc[2]], casc[0]).score_records(copy.deepcopy(sub)))
            cheap_cache[key] = [[[c["scores"][lab] for lab in LABELS] for c in r["candidates"]] for r in sc]
            if key == ("1way", "int8"):
                (d / "cheap-int8.jsonl").write_text("".join(
                    json.dumps({"i": i, "scores": {"1way": rec}}) + "\n" for i, rec in enumerate(cheap_cache[key])))
        cheap = cheap_cache[key]
        sim, _ = simulate_cascade(cheap, exact, casc[1])
        diff = max(abs(a - b) for ra, rb in zip(real, sim) for ca, cb in zip(ra, rb) for a, b in zip(ca, cb))
        checks[name] = diff
        print(f"check {name}: real vs recomputed cascade, largest difference {diff:.2e}", file=sys.stderr)
    results["cascade_check_max_abs_diff"] = checks
    for variant in args.speed_variants:
        vlm = load(args, variant)
        list(scorer(vlm, "2way").score_records(copy.deepcopy(sub[:2])))
        for rep in range(args.repeats):
            vout, wall, cpu = cpu_time(lambda: list(scorer(vlm, "2way").score_records(copy.deepcopy(sub))))
            results["runs"].setdefault(variant, []).append({"wall_s": wall, "cpu_s": cpu})
            vpath = d / f"variant-{variant}.jsonl"
            if not read_cache(vpath):  # the timed run's scores: the variant's fidelity on this prefix
                vpath.write_text("".join(json.dumps({"i": i, "scores": {variant: as_lists(r)}}) + "\n"
                                         for i, r in enumerate(vout)))
            print(f"speed {variant}: {n / wall:.2f} spans/s wall, {n / cpu:.2f} spans/CPU-s", file=sys.stderr,
                  flush=True)
        # the exact default again right after, so that load drift shows
        _, wall, cpu = cpu_time(lambda: list(scorer(lm, "2way").score_records(copy.deepcopy(sub))))
        results["runs"]["exact"].append({"wall_s": wall, "cpu_s": cpu, "after": variant})
        del vlm
    (d / f"speed-{args.speed_sentences}{args.speed_tag}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def simulate_cascade(cheap, exact, keep):
    """The cascade's scores from cached cheap and exact scores (lists per record of per-label
    lists), with the library's own selection and combination."""
    from nertools.xner.fast import combine, select_kept

    cheap_d = [[dict(zip(LABELS, c)) for c in rec] for rec in cheap]
    kept = select_kept(cheap_d, LABELS, keep)
    union = set().union(*kept.values())
    exact_d = {rc: dict(zip(LABELS, exact[rc[0]][rc[1]])) for rc in union}
    final = combine(cheap_d, exact_d, kept, LABELS)
    return [[[c[lab] for lab in LABELS] for c in rec] for rec in final], len(union)


def top_k(scores, lab_i, k):
    flat = [(c[lab_i], ri, ci) for ri, rec in enumerate(scores) for ci, c in enumerate(rec)]
    flat.sort()
    return {(ri, ci) for _, ri, ci in flat[:k]}


def phase_report(args, records, total):
    d = out_dir(args)
    exact_rows = read_cache(d / "exact.jsonl")
    n = len(exact_rows)
    cos_rows = read_cache(d / "cosine.jsonl")
    recs = records[:n]
    n_c = sum(len(r["candidates"]) for r in recs)
    k = max(1, round(1000 * n_c / total))
    gold = gold_set(recs)
    exact = [r["scores"]["2way"] for r in exact_rows]
    options = {"exact (2way)": (exact, 1.0), "1way alone": ([r["scores"]["1way"] for r in exact_rows], None)}
    for keep in KEEPS:
        sim, nu = simulate_cascade([r["scores"]["1way"] for r in exact_rows], exact, keep)
        options[f"cascade 1way {keep:g}"] = (sim, nu / n_c)
    if len(cos_rows) >= n:
        cos = [r["scores"]["cosine"] for r in cos_rows[:n]]
        options["cosine alone"] = (cos, None)
        for keep in KEEPS:
            sim, nu = simulate_cascade(cos, exact, keep)
            options[f"cascade cosine {keep:g}"] = (sim, nu / n_c)
    else:
        print(f"cosine: only {len(cos_rows)} of {n} sentences cached; left out", file=sys.stderr)
    table = {}
    for name, (scores, frac) in options.items():
        table[name] = evaluate(recs, scores, exact, gold, k)
        table[name]["rescored_fraction"] = frac
        table[name]["sentences"] = n
    # the cascade with an int8 cheap pass, on the prefix that has int8 1-way scores
    int8_rows = max([read_cache(d / "variant-int8-details.jsonl"),
                     read_cache(d / "cheap-int8.jsonl")], key=len)
    if int8_rows:
        m = len(int8_rows)
        vrecs = records[:m]
        vk = max(1, round(1000 * sum(len(r["candidates"]) for r in vrecs) / total))
        for keep in KEEPS:
            sim, nu = simulate_cascade([r["scores"]["1way"] for r in int8_rows], exact[:m], keep)
            row = evaluate(vrecs, sim, exact[:m], gold_set(vrecs), vk)
            row.update(rescored_fraction=nu / sum(len(r["candidates"]) for r in vrecs), sentences=m)
            table[f"cascade 1way-int8 {keep:g}"] = row
            table[f"cascade 1way-int8 {keep:g}"]["exact_on_same"] = evaluate(vrecs, exact[:m], exact[:m],
                                                                            gold_set(vrecs), vk)
    for variant in ("int8", "bf16"):
        det = read_cache(d / f"variant-{variant}-details.jsonl")
        if det:
            m = len(det)
            vrecs = records[:m]
            vk = max(1, round(1000 * sum(len(r["candidates"]) for r in vrecs) / total))
            for keep in KEEPS:
                sim, nu = simulate_cascade([r["scores"]["1way"] for r in det], [r["scores"][variant] for r in det],
                                           keep)
                row = evaluate(vrecs, sim, exact[:m], gold_set(vrecs), vk)
                row.update(rescored_fraction=nu / sum(len(r["candidates"]) for r in vrecs), sentences=m)
                table[f"{variant} + cascade 1way {keep:g}"] = row
    # numerics variants on their own (smaller) prefix
    for variant in VARIANTS:
        rows = max([read_cache(d / f"variant-{variant}.jsonl"), read_cache(d / f"variant-{variant}-details.jsonl")],
                   key=len)
        if not rows:
            continue
        m = len(rows)
        vrecs = records[:m]
        vk = max(1, round(1000 * sum(len(r["candidates"]) for r in vrecs) / total))
        vexact = exact[:m]
        table[variant] = evaluate(vrecs, [r["scores"][variant] for r in rows], vexact, gold_set(vrecs), vk)
        table[variant]["sentences"] = m
        table[variant]["exact_on_same"] = evaluate(vrecs, vexact, vexact, gold_set(vrecs), vk)
        diffs = [abs(a - b) for ra, rb in zip(rows, vexact) for ca, cb in zip(ra["scores"][variant], rb)
                 for a, b in zip(ca, cb) if a < 1e29 and b < 1e29]
        table[variant]["max_abs_diff"] = max(diffs) if diffs else None
        table[variant]["median_abs_diff"] = float(np.median(diffs)) if diffs else None
    speed = {}
    for sp in [json.loads(f.read_text()) for f in sorted(d.glob("speed-*.json"))]:
        ex = sp["runs"]["exact"]
        ex_cpu = float(np.median([r["cpu_s"] for r in ex]))
        ex_wall = float(np.median([r["wall_s"] for r in ex]))
        for name, runs in sp["runs"].items():
            if name == "exact" and "exact" in speed:
                continue
            speed[name] = {"cpu_ratio": ex_cpu / float(np.median([r["cpu_s"] for r in runs])),
                           "wall_ratio": ex_wall / float(np.median([r["wall_s"] for r in runs])),
                           "spans_per_cpu_s": sp["spans"] / float(np.median([r["cpu_s"] for r in runs])),
                           "runs": len(runs)}
        speed.setdefault("_meta", []).append({k2: sp[k2] for k2 in ("sentences", "spans", "threads")})
        speed["_meta"][-1]["check"] = sp.get("cascade_check_max_abs_diff")
    for name, row in table.items():
        key = name if name in speed else ("exact" if name.startswith("exact") else None)
        row["speed"] = speed.get(key) if key else None
    summary = {"model": args.model, "sentences": n, "candidates": n_c, "K": k, "full_train_candidates": total,
               "table": table, "speed": speed,
               "command": "python benchmarks/xner_fastmode.py " + " ".join(sys.argv[1:])}
    (d / "report.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{args.model}: {n} sentences, {n_c} candidates, K = {k} per label "
          f"(top-K overlap with the exact top-K and P@K in %, PER/LOC/ORG/MISC)\n")
    print("| option | re-scored | speed (CPU-s ratio) | top-K overlap | mean | top-5% overlap (mean) | P@K raw | P@K ner-pseudo |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in table.items():
        sp = row["speed"]
        sp_s = f"{sp['cpu_ratio']:.2f}x" if sp else "-"
        frac = row.get("rescored_fraction")
        frac_s = f"{100 * frac:.0f}%" if frac is not None else "-"
        extra = f" ({row['sentences']} sent.)" if row["sentences"] != n else ""
        print(f"| {name}{extra} | {frac_s} | {sp_s} | " + " / ".join(f"{row['overlap'][l]:.0f}" for l in LABELS)
              + f" | {row['overlap_mean']:.1f} | {row['overlap_5pct_mean']:.1f} | " + " / ".join(f"{row['p_at_k'][l]:.0f}" for l in LABELS)
              + " | " + " / ".join(f"{row['p_at_k_pseudo'][l]:.0f}" for l in LABELS) + " |")
    plot(args, summary, d)


def evaluate(recs, scores, exact, gold, k):
    overlap, overlap5 = {}, {}
    k5 = max(1, round(0.05 * sum(len(r) for r in exact)))
    for li, lab in enumerate(LABELS):
        overlap[lab] = 100.0 * len(top_k(scores, li, k) & top_k(exact, li, k)) / k
        overlap5[lab] = 100.0 * len(top_k(scores, li, k5) & top_k(exact, li, k5)) / k5
    as_dicts = [[dict(zip(LABELS, c)) for c in rec] for rec in scores]
    return {"overlap": overlap, "overlap_mean": float(np.mean(list(overlap.values()))),
            "overlap_5pct": overlap5, "overlap_5pct_mean": float(np.mean(list(overlap5.values()))), "K5": k5,
            "p_at_k": precision_at_k(recs, as_dicts, gold, k, "raw"),
            "p_at_k_pseudo": precision_at_k(recs, as_dicts, gold, k, "pseudo-rank-all"), "K": k}


def plot(args, summary, d):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, row in summary["table"].items():
        if not row["speed"]:
            continue
        x, y = row["speed"]["cpu_ratio"], row["overlap_mean"]
        ax.scatter([x], [y], s=30)
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(90, color="grey", lw=0.8, ls="--")
    ax.axvline(5, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ticks = [1, 1.5, 2, 3, 5, 7, 10]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(0.85, 12)
    ax.set_xlabel("speed vs. exact 2way (CPU-seconds ratio, log)")
    ax.set_ylabel("top-K overlap with exact, mean over labels (%)")
    ax.set_title(f"X-NER fast mode, {args.model}, {summary['sentences']} CoNLL train sentences", fontsize=9)
    fig.tight_layout()
    path = ROOT / "benchmarks" / f"xner_fastmode-{args.model}.png"
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}", file=sys.stderr)


def main(argv=None):
    global args_global
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sentences", type=int, default=1000, help="sample size (the cache may hold a prefix)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--phase", choices=("exact", "cosine", "variant", "speed", "report"), required=True)
    ap.add_argument("--variant", choices=VARIANTS, default="int8")
    ap.add_argument("--variant-sentences", type=int, default=200)
    ap.add_argument("--limit", type=int, default=None, help="cosine: score only the first N sentences")
    ap.add_argument("--speed-sentences", type=int, default=30)
    ap.add_argument("--speed-keeps", default="0.05,0.1")
    ap.add_argument("--speed-cosine-keeps", default="0.1")
    ap.add_argument("--speed-only", default=None, help="regular expression: time only the matching options "
                    "(and the exact default)")
    ap.add_argument("--speed-tag", default="", help="appended to the speed file name")
    ap.add_argument("--speed-variants", default="bf16,int8,int8-all")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    args.speed_keeps = [float(x) for x in args.speed_keeps.split(",") if x]
    args.speed_cosine_keeps = [float(x) for x in args.speed_cosine_keeps.split(",") if x]
    args.speed_variants = [x for x in args.speed_variants.split(",") if x]
    args_global = args
    import torch

    torch.set_num_threads(args.threads)
    records, total = load_sample(args.sentences, args.seed)
    print(f"# {args.model}: {len(records)} sample sentences, full train {total} candidates", file=sys.stderr)
    {"exact": phase_exact, "cosine": phase_cosine, "variant": phase_variant, "speed": phase_speed}.get(
        args.phase, lambda a, r: phase_report(a, r, total))(args, records)


args_global = None

if __name__ == "__main__":
    main()
