"""The documentation of the nertools record format: the one source of nertools-format(5).

``scripts/generate_man.py`` renders :data:`SECTIONS` into ``man/nertools-format.5``
(a test fails when the page is stale), so the page cannot drift from this file, and the
exit codes and tokenizer pattern below come from the code itself.

Markup of the section texts: paragraphs are separated by blank lines; a paragraph whose
lines start with two spaces is shown verbatim; a paragraph whose lines start with
``- `` is a bulleted list (a bullet's text may continue on lines indented by two spaces).
"""

from __future__ import annotations

import math

from nertools.errors import EXIT_DATA, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from nertools.core.record import COMPACT_DOC, DEFAULT_TOKEN_SYNTAX

NAME = "nertools-format"
SUMMARY = "the JSONL record format shared by the nertools commands"

#: The score contract: a scorer writes this score for a label whose computed value is not a
#: finite number (NaN: no rows to compare; infinity: an overflow), because JSON has no NaN or
#: infinity (a serializer would write null). It is larger than any real score (lower = more
#: like the label), so such a candidate ranks last and passes no threshold.
NON_FINITE_SCORE = 1e30


def settle_scores(scores: dict) -> int:
    """Replace the non-finite values of ``scores`` (label -> float) by :data:`NON_FINITE_SCORE`,
    in place; returns how many were replaced (the scorers count them for their summary line)."""
    bad = [lab for lab, v in scores.items() if not math.isfinite(v)]
    for lab in bad:
        scores[lab] = NON_FINITE_SCORE
    return len(bad)


#: Exit statuses of every command: (code, meaning).
EXIT_STATUSES = (
    (EXIT_OK, "success."),
    (EXIT_FAILURE, "failure: a runtime problem (a model that cannot load, a file that cannot "
                   "be written, ...)."),
    (EXIT_USAGE, "usage error: bad or missing options."),
    (EXIT_DATA, "bad input data: broken JSON, spans out of range or off token boundaries, "
                "unknown labels or tags, empty input. The message names the file and line. "
                "(EX_DATAERR of sysexits.h.)"),
    (130, "interrupted (Ctrl-C)."),
)

SECTIONS: list[tuple[str, str]] = [
    ("DESCRIPTION", """\
Every nertools command reads and writes records as JSON Lines: one JSON object per line,
UTF-8, one record per sentence or document. A file name of - means standard input or
output; a name ending in .gz is read and written gzip-compressed. Commands stream: they
hold one record (or one batch) at a time unless their algorithm needs the whole corpus.

Output records are canonical and compatible with Prodigy's span format:

  {"id": "s1", "text": "EU rejects German call",
   "tokens": [{"text": "EU", "start": 0, "end": 2, "id": 0, "ws": true},
              {"text": "rejects", "start": 3, "end": 10, "id": 1, "ws": true}, ...],
   "spans": [{"start": 0, "end": 2, "token_start": 0, "token_end": 0, "label": "ORG"}],
   "meta": {}}

- id: a string naming the record; ner-eval matches gold and predictions by it. A record
  read without one gets its line number.
- text: the text. tokens: token objects with character offsets into text (start
  inclusive, end exclusive), their index (id) and whether whitespace follows (ws).
- spans: labelled spans with character offsets (end exclusive) and token indices
  (token_end INCLUSIVE, as in Prodigy), sorted by the producer as it sees fit.
- meta: an object for anything else; ner-convert keeps CoNLL layout, -DOCSTART-
  boundaries (meta.docstart, meta.doc) and the tagging scheme (meta.conll) there.

Commands add their own fields and pass every field they do not own through untouched.
Pipeline fields: candidates (ner-spans: [{"start", "end", "token_start", "token_end",
"text"}]); scores on each candidate (ner-divscore: {"LABEL": float}, LOWER = more like the
label: divergences, 1 - cosine, -log p); score and source on spans (ner-pseudo, ner-tag,
ner-dictmatch)."""),
    ("SCORES", f"""\
A score is always a finite JSON number, never null. A divergence that cannot be computed
(no rows to compare, e.g. a span that is the whole sentence with --method 1way) or that
overflows is written as the sentinel {NON_FINITE_SCORE:g}, larger than any real score, so the
candidate ranks last for that label and passes no threshold; ner-divscore counts these
scores in a summary line on standard error. ner-pseudo and ner-eval --ranked reject a null
score (as another tool may write for NaN or infinity) as bad input."""),
    ("ACCEPTED INPUT", f"""\
Input is looser than output. Every command accepts:

- the canonical form above;
- {{"text": ...}} alone: tokenised by the default tokenizer, the regular expression
  {DEFAULT_TOKEN_SYNTAX} (runs of word characters that may contain inner
  apostrophes or hyphens, or any single other non-space character; \\p{{M}} is a
  combining mark, Unicode category M, which stays with the character before it, so
  decomposed (NFD) text, e.g. "Jose" followed by U+0301, is one token like its composed
  (NFC) form);
- the compact form (COMPACT below), recognised by its toks field;
- {{"tokens": ["EU", "rejects", ...]}}, a list of strings: text is the tokens joined by
  single spaces, or, when text is given, the tokens are found in it in order;
- token objects without text: text is rebuilt from their text and ws fields;
- spans by character offsets (start, end), by token indices (token_start, token_end,
  inclusive), or by both when they agree.

Other formats (CoNLL columns in BIO2, IOB1, IOBES or BILOU, doccano, GLiNER, Hugging
Face token classification) are converted by ner-convert(1)."""),
    ("COMPACT", "\n".join([
        "A second form of the same records, for corpus-scale runs: tokens as strings, one",
        "whitespace flag per token, spans by token index; character offsets are rebuilt when",
        "the record is read. Every command reads it, recognised record by record by its toks",
        "field (a file may mix both forms); every command that writes records writes it with",
        "--output-form compact (or --compact; the environment variable NERTOOLS_OUTPUT_FORM",
        "sets the default). The canonical form stays the default, for interchange with",
        "other tools.",
        "",
        "\n".join("  " + line for line in COMPACT_DOC.splitlines()),
        "",
        """\
- toks: the token strings (non-empty), in order.
- ws: whether whitespace follows each token, a string of 0 and 1 with one character per
  token (a list of booleans or of 0/1 is read too); left out, every token but the last is
  followed by a space.
- text: left out when the tokens rebuild it: each token, then one space where its flag
  is 1 ("1110" above gives "EU rejects German call"). A text that does not rebuild so
  (other whitespace, characters in no token) is kept, with offs: the start offset of each
  token in it (text alone: each token is looked for after the whitespace that follows the
  one before).
- spans: [token_start, token_end, label], token_end INCLUSIVE as in the canonical form,
  with an optional fourth item holding the span's other keys ({"score", "source", ...});
  a span object as in the canonical form is read too.
- candidates: [token_start, token_end] with an optional third item holding the other keys
  ({"scores": ...}); start, end and text are rebuilt. Other objects pass as they are.
- id, meta and every other field are as in the canonical form.

The form is lossless: reading a compact record gives exactly the canonical record it was
written from (token objects, offsets, span and candidate keys, key order). A record whose
tokens carry keys of their own (or a ws that is not true or false) has no compact spelling
and is written in the canonical form. A compact record is rejected, naming file and line,
when ws has the wrong length or characters, a token is empty or not a string, a span or
candidate lies outside the tokens (token_end is inclusive) or lacks a label, its extra
object repeats a position or the label, or text and offs do not agree.

Compact records are about 6 times smaller than canonical ones on the corpora of
../shared/data (CoNLL-2003 train: 83 against 14 bytes per token), parse 2.5-3.8 times
faster and read into canonical records 1.5-1.8 times faster (benchmarks/io_speed.py), and
ner-dictmatch matches them without building token objects at all. Writing canonical
records compactly costs more than writing them canonical (the tokens are checked so that
nothing is lost)."""])),
    ("VALIDATION", """\
A record is rejected, with the file name and line number, when:

- the line is not valid JSON or not a JSON object;
- it has neither text nor tokens, or text is not a string;
- a token does not match the text at its offsets, or tokens overlap or are out of order;
- a span has no (or an empty) label, or a label outside the allowed set (--labels);
- a span's offsets are out of range, empty (start >= end) or not on token boundaries,
  or its character offsets and token indices disagree;
- the input holds no record at all.

--on-error fail (the default) stops at the first bad record with exit status 65;
--on-error skip leaves bad records out and reports their number on standard error at the
end; --on-error warn also prints each one. Output is written in whole lines, so standard
output never holds half a record, and a file given with -o is replaced only when the run
succeeds: a failed run leaves an existing file as it was."""),
    ("EXIT STATUS", "\n".join(f"- {code}: {text}" for code, text in EXIT_STATUSES)),
]
