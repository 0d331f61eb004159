"""ner-dictmatch: annotate records from an entity dictionary (GeNER's dictionary matching)."""

from __future__ import annotations

import time

import click

from nertools.cli.common import (CONTEXT_SETTINGS, input_argument, nertools_command, on_error_option,
                                 output_option)
from nertools.cli.options import count_type, quiet_option
from nertools.core.jsonl import ErrorPolicy, RecordWriter
from nertools.core.labels import parse_key_value
from nertools.gener.dictionary import AMBIGUOUS_CHOICES, Dictionary
from nertools.gener.dictmatch import DictionaryMatcher, dictmatch
from nertools.gener.phrase_rules import NormalizationRules, rules_without
from nertools.runtime.progress import log

EXAMPLE = """\b
Examples:
  ner-dictmatch --dict gazetteer.tsv corpus.jsonl -o silver.jsonl
  ner-retrieve query --index idx --label LOC --dict-out loc.tsv > /dev/null
  ner-dictmatch --dict loc.tsv --ambiguous majority --drop-existing dev.jsonl | ner-eval -g dev.jsonl -p -
  ner-dictmatch --dict diseases.tsv --no-rule 3 --no-rule 10 ncbi.jsonl    # keep lower-case names

\b
Dictionary: TSV phrase<TAB>label[<TAB>count] or JSONL {"phrase", "label", "count"}.
Rules (all on, as in GeNER; --no-rule N turns one off):
  1 split " and "   2 strip punctuation   3 drop all-lower-case   4 drop leading "the"
  5 drop < 3 chars  6 drop stop words     7 drop type word/plural 8 abbreviations (Schwartz-Hearst)
  9 no lower-case single-token match     10 extend to enclosing capitalised words

\b
A dictionary file of 1 MiB or more is built once per content and options and cached under
$NERTOOLS_CACHE/dictionaries (default ~/.cache/nertools); NERTOOLS_DICT_CACHE=0 turns that off.
"""


def _type_words(specs) -> dict[str, str]:
    """``--type-word`` values; words given for one label in several options add up."""
    out: dict[str, str] = {}
    for spec in specs:
        label, words = parse_key_value(spec, option="--type-word", form="LABEL=WORD[,WORD]")
        out[label] = ",".join(filter(None, [out.get(label), words]))
    return out


@click.command("ner-dictmatch", context_settings=CONTEXT_SETTINGS, epilog=EXAMPLE)
@input_argument()
@output_option()
@click.option("--dict", "dict_path", required=True, type=click.Path(allow_dash=False, dir_okay=False),
              help="Dictionary file: TSV phrase<TAB>label[<TAB>count] or JSONL (.gz ok).")
@click.option("--case-sensitive", is_flag=True, help="Match case exactly (default: ignore case).")
@click.option("--ambiguous", type=click.Choice(AMBIGUOUS_CHOICES), default="sample", show_default=True,
              help="A phrase listed with several labels: draw one label per phrase in proportion "
                   "to the counts (seeded), take the most frequent, or skip the phrase.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --ambiguous sample.")
@click.option("--overwrite", is_flag=True,
              help="Matches replace overlapping spans already on a record (default: keep them).")
@click.option("--drop-existing", is_flag=True, help="Remove every span already on a record first.")
@click.option("--no-rule", "no_rules", type=click.IntRange(1, 10), multiple=True, metavar="N",
              help="Turn normalisation rule N (1-10) off; repeatable. See the list below.")
@click.option("--min-chars", type=count_type(0), default=3, show_default=True,
              help="Rule 5's minimum phrase length in characters.")
@click.option("--type-word", "type_words", multiple=True, metavar="LABEL=WORD[,WORD]",
              help="Type words rule 7 drops for LABEL (besides the default label word, "
                   "e.g. LOC -> location); repeatable.")
@click.option("--strict", is_flag=True,
              help="Fully validate every record (default: canonical records take a fast path "
                   "that checks structure and the tokens of new spans only).")
@on_error_option()
@quiet_option(expose_value=False)
@nertools_command("ner-dictmatch")
def main(input, output, dict_path, case_sensitive, ambiguous, seed, overwrite, drop_existing,
         no_rules, min_chars, type_words, strict, on_error):
    """Annotate JSONL records with the phrases of an entity dictionary.

    Longest match at each token, left to right, non-overlapping, case-insensitive by default;
    spans already on the records are kept unless --overwrite. Phrases are normalised by
    GeNER's rules; new spans carry "source": "dictmatch" (or "dictmatch-abbrev" for rule 8).
    """
    policy = ErrorPolicy(on_error)
    rules = rules_without(no_rules, NormalizationRules(min_chars=min_chars))
    t0 = time.perf_counter()
    dictionary = Dictionary.load(dict_path, case_sensitive=case_sensitive, rules=rules,
                                 type_words=_type_words(type_words), ambiguous=ambiguous, seed=seed)
    log(f"{len(dictionary)} phrases, {len(dictionary.labels)} label(s) "
        f"from {dictionary.lines_read} lines ({dictionary.phrases_dropped} dropped by the "
        f"rules, {dictionary.ambiguous_phrases} ambiguous) in {time.perf_counter() - t0:.1f}s"
        f"{' (built earlier, from the cache)' if dictionary.from_cache else ''}",
        prog="ner-dictmatch")
    matcher = DictionaryMatcher(dictionary, overwrite=overwrite, drop_existing=drop_existing)
    t1 = time.perf_counter()
    with RecordWriter(output) as out:
        for rec in dictmatch(input, matcher, strict=strict, policy=policy, form=out.form):
            out.write(rec)
    dt = time.perf_counter() - t1
    log(f"{matcher.matches} spans in {matcher.records} records "
        f"({matcher.tokens} tokens, {matcher.tokens / max(dt, 1e-9):,.0f} tokens/s)", prog="ner-dictmatch")
    policy.report("ner-dictmatch")
