"""ner-pseudo: turn scored candidate spans into pseudo-labelled sentences (X-NER step 3)."""

from __future__ import annotations

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import FiniteFloat, count_type, labels_option, quiet_option
from nertools.core.jsonl import ErrorPolicy, RecordWriter
from nertools.core.labels import parse_list
from nertools.errors import NertoolsError
from nertools.runtime.progress import log
from nertools.xner.pseudo import (ALL_LABELS, NORMALIZATIONS, OVERLAP_RULES, PseudoStats, Selection,
                                  parse_thresholds, pseudo_label)

EXAMPLE = """\b
Examples:
  ner-spans corpus.jsonl | ner-divscore --model gemma-3-270m --seeds seeds.tsv \\
      | ner-pseudo --top-percent 1 > pseudo.jsonl
  ner-pseudo --threshold 0.15 scored.jsonl -o pseudo.jsonl          # the paper's rule
  ner-pseudo --threshold 0.15 --threshold LOC=0.2 scored.jsonl      # per-label thresholds
  ner-pseudo --top-k 1000 --all --keep-candidates scored.jsonl.gz
"""


def _boundary_labels(value: str | None) -> tuple[str, ...]:
    if value is not None and value.strip().lower() == "all":
        return (ALL_LABELS,)
    return tuple(parse_list(value) or ())


@click.command("ner-pseudo", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@click.option("--threshold", "thresholds", multiple=True, metavar="[LABEL=]VALUE",
              help="Keep spans whose score is below VALUE (all labels, or LABEL only). Repeatable. "
                   "The paper: 0.15 (CoNLL, WNUT) and 0.20 (Tweebank, Restaurant) for its masked LM.")
@click.option("--top-k", type=count_type(), default=None, metavar="K",
              help="Keep the K best-scored spans per label, corpus-wide.")
@click.option("--top-percent", type=FiniteFloat(0, 100, min_open=True), default=None, metavar="P",
              help="Keep per label the best P% of all candidates of the corpus (PromptMine: 2), "
                   "rounded half up and at least one, as ner-eval --k-frac counts.")
@labels_option(help="Only these labels (default: every label that has scores).")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default="rank", show_default=True,
              help="How scores of different labels are compared when a candidate picks its best "
                   "label: rank = the fraction of the corpus's candidates scoring lower for that "
                   "label; none = raw scores. "
                   "Emitted scores and thresholds stay raw.")
@click.option("--overlap", type=click.Choice(OVERLAP_RULES), default="best", show_default=True,
              help="Overlapping candidates of a sentence: best keeps the lowest-scored one (ties: "
                   "longer, then leftmost) and drops the others before ranking; keep keeps all.")
@click.option("--boundary-fix", "boundary", default="all", show_default=True, metavar="all|L1,L2,...",
              help="Labels whose spans may not outrank their own extension by a capitalised "
                   "neighbouring word (fixes surname-only person spans, 'Sox' for 'White Sox'); "
                   "all = every label; '' turns it off.")
@click.option("--all", "emit_all", is_flag=True,
              help="Emit every sentence (default: only sentences with at least one pseudo span).")
@click.option("--keep-candidates", is_flag=True,
              help="Keep the 'candidates' field with its scores (default: dropped, smaller files).")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-pseudo")
def main(input, output, thresholds, top_k, top_percent, labels, normalize, overlap, boundary,
         emit_all, keep_candidates, on_error):
    """Pseudo-label spans from candidates scored by ner-divscore (lower = more like the seed).

    Each candidate competes for its best label only. Overlaps within a sentence are resolved
    first (--overlap), then each label's spans are ranked over the whole corpus and kept by
    --threshold, --top-k and/or --top-percent (all given criteria must hold). Output records
    get 'spans' = [{start, end, token_start, token_end, label, score, source: "xner"}],
    replacing any input spans.

    Each candidate's best label is chosen on normalised scores (--normalize rank: by default
    labels are compared by their corpus-wide rank, since one seed's divergences may all be
    larger than another's).

    Two or three passes: the first collects each label's scores (for --normalize), the next
    only (record, candidate, label, score); the last re-reads the file (standard input is
    spooled to a temporary file), so memory does not grow with the records' size.
    """
    if not thresholds and top_k is None and top_percent is None:
        raise click.UsageError("give --threshold, --top-k or --top-percent")
    thresholds = parse_thresholds(thresholds)
    try:
        sel = Selection(thresholds=thresholds, top_k=top_k, top_percent=top_percent, labels=labels,
                        overlap=overlap, boundary_labels=_boundary_labels(boundary), normalize=normalize)
    except NertoolsError as e:
        raise click.UsageError(str(e)) from None
    policy = ErrorPolicy(on_error)
    stats = PseudoStats()
    with RecordWriter(output) as out:
        for rec in pseudo_label(input, sel, emit_all=emit_all, keep_candidates=keep_candidates,
                                policy=policy, stats=stats):
            out.write(rec)
    per_label = ", ".join(f"{lab} {n}" for lab, n in sorted(stats.per_label.items())) or "none"
    log(f"{stats.records} records, {stats.candidates} candidates -> "
        f"{sum(stats.per_label.values())} pseudo spans ({per_label}) in {stats.emitted} records",
        prog="ner-pseudo")
    policy.report("ner-pseudo")
