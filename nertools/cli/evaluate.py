"""ner-eval: strict entity-level P/R/F1, or precision@K of ranked candidates."""

from __future__ import annotations

import sys

import click
import orjson

from nertools.cli.common import CONTEXT_SETTINGS, nertools_command, on_error_option
from nertools.cli.options import FiniteFloat, count_type, quiet_option
from nertools.core.jsonl import ErrorPolicy
from nertools.evaluation.matching import MISSING_CHOICES
from nertools.evaluation.strict import evaluate
from nertools.evaluation.ranked import evaluate_ranked
from nertools.runtime.progress import log

EXAMPLE = """\b
Examples:
  ner-eval --gold dev.jsonl --pred tagged.jsonl
  ner-tag --model model/ dev.jsonl | ner-eval --gold dev.jsonl --pred - --json > scores.json
  ner-eval --gold dev.jsonl --pred partial.jsonl --missing empty
  ner-eval --ranked --gold train.jsonl --pred scored.jsonl --k 50 --k 100 --k-frac 0.009
"""

PATH = click.Path(allow_dash=True, dir_okay=False)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def render_strict(report: dict, console) -> None:
    from rich.table import Table

    table = Table(title="strict entity-level scores", title_justify="left")
    for col in ("label", "precision", "recall", "f1", "support", "predicted", "correct"):
        table.add_column(col, justify="left" if col == "label" else "right")
    rows = list(report["labels"].items())
    for i, (label, m) in enumerate(rows):
        table.add_row(label, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]),
                      str(m["support"]), str(m["predicted"]), str(m["correct"]),
                      end_section=i == len(rows) - 1)
    for name in ("micro", "macro", "weighted"):
        m = report[name]
        table.add_row(f"{name} avg", _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]),
                      str(m["support"]), str(m["predicted"]), str(m["correct"]))
    console.print(table)
    console.print(_records_line(report))


def render_ranked(report: dict, console) -> None:
    from rich.table import Table

    table = Table(title="ranked candidates: precision@K (lowest score first)",
                  title_justify="left")
    table.add_column("label")
    heads = [(p["k"], p["k_frac"]) for p in report["macro"]["precision_at"]]
    for k, frac in heads:
        table.add_column(f"P@{k}" if frac is None else f"P@{frac:g}", justify="right")
    for col in ("candidates", "gold", "cand. recall"):
        table.add_column(col, justify="right")
    rows = list(report["labels"].items())
    for i, (label, m) in enumerate(rows):
        cells = []
        for p in m["precision_at"]:
            k_note = f" (K={p['k_used']})" if p["k_frac"] is not None else ""
            cells.append(f"{p['precision']:.4f}{k_note}")
        cells += ["-"] * (len(heads) - len(cells))
        table.add_row(label, *cells, str(m["candidates"]), str(m["gold"]),
                      _fmt(m["candidate_recall"]), end_section=i == len(rows) - 1)
    o = report["overall"]
    table.add_row("macro / all", *[_fmt(p["precision"]) for p in report["macro"]["precision_at"]],
                  str(o["candidates"]), str(o["gold"]), _fmt(o["candidate_recall"]))
    console.print(table)
    console.print(_records_line(report))


def _records_line(report: dict) -> str:
    r = report["records"]
    line = (f"records: {r['gold']} gold, {r['pred']} predicted, {r['matched']} matched, "
            f"{r['missing']} missing, {r['extra']} extra (--missing {report['missing_policy']})")
    return line


@click.command("ner-eval", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@click.option("-g", "--gold", required=True, type=PATH, help="Gold records (JSONL, .gz, - = stdin).")
@click.option("-p", "--pred", required=True, type=PATH,
              help="Predicted records (JSONL, .gz, - = stdin), matched to gold by id, any order.")
@click.option("--missing", type=click.Choice(MISSING_CHOICES), default="fail", show_default=True,
              help="Ids on one side only: fail (exit 65 listing them), empty (score an absent "
                   "record as having no spans) or ignore (score shared ids only).")
@click.option("--ranked", is_flag=True,
              help="Score the predictions' scored 'candidates' (lower score = better): "
                   "precision@K per label and candidate recall.")
@click.option("--k", "ks", type=count_type(), multiple=True, metavar="N",
              help="--ranked: precision at the top N candidates per label (repeatable).")
@click.option("--k-frac", "k_fracs", type=FiniteFloat(0, 1, min_open=True), multiple=True,
              metavar="F", help="--ranked: precision at the top F x (number of candidates) per "
                                "label, e.g. 0.009 (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="Write the report as one JSON object (a line) instead of a table.")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-eval")
def main(gold, pred, missing, ranked, ks, k_fracs, as_json, on_error):
    """Score predicted spans against gold spans.

    Default: strict entity-level precision, recall and F1 (a span is correct when its
    offsets and label equal a gold span's) per label and micro, macro and weighted
    averages -- equal to seqeval's classification_report(mode="strict", scheme=IOB2).

    --ranked: precision@K per label of the candidates ranked by their score for that label,
    lowest first (the X-NER paper's Table 4), and the fraction of gold spans found among
    the candidates.

    The report goes to stdout (a table, or JSON with --json); notes go to stderr.
    """
    if gold == "-" and pred == "-":
        raise click.UsageError("--gold and --pred cannot both be stdin")
    if ranked and not (ks or k_fracs):
        raise click.UsageError("--ranked needs --k and/or --k-frac")
    if not ranked and (ks or k_fracs):
        raise click.UsageError("--k and --k-frac apply to --ranked only")
    policy = ErrorPolicy(on_error)
    if ranked:
        report = evaluate_ranked(gold, pred, ks=ks, k_fracs=k_fracs, missing=missing, policy=policy)
    else:
        report = evaluate(gold, pred, missing=missing, policy=policy)
    report = {"gold": gold, "pred": pred, **report}
    r = report["records"]
    if r["missing"] or r["extra"]:
        log(f"note: {r['missing']} gold record(s) without prediction, "
            f"{r['extra']} prediction(s) without gold (--missing {missing})", prog="ner-eval")
    policy.report("ner-eval")
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.buffer.flush()
        return
    import io

    from rich.console import Console

    # a pipe or file gets a wide, uncoloured table; a terminal its own width. The table is
    # rendered into memory and written here, so that a reader gone early (`| head`) is the
    # toolkit's quiet BrokenPipeError, not rich's SystemExit(1).
    tty = sys.stdout.isatty()
    buf = io.StringIO()
    console = Console(file=buf, highlight=False, force_terminal=tty, width=None if tty else 160)
    if tty:
        console.size = Console(file=sys.stdout).size
    (render_ranked if ranked else render_strict)(report, console)
    sys.stdout.write(buf.getvalue())
    sys.stdout.flush()
