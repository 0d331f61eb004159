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
from nertools.core.record import DEFAULT_TOKEN_SYNTAX

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
- {{"tokens": ["EU", "rejects", ...]}}, a list of strings: text is the tokens joined by
  single spaces, or, when text is given, the tokens are found in it in order;
- token objects without text: text is rebuilt from their text and ws fields;
- spans by character offsets (start, end), by token indices (token_start, token_end,
  inclusive), or by both when they agree.

Other formats (CoNLL columns in BIO2, IOB1, IOBES or BILOU, doccano, GLiNER, Hugging
Face token classification) are converted by ner-convert(1)."""),
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
