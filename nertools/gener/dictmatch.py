"""Dictionary matching: annotate records with the phrases of a :class:`~nertools.gener.dictionary.Dictionary`.

Semantics (what ``ner-dictmatch`` does):

* Tokens are compared in the dictionary's key form (default-tokenizer pieces, lower-cased
  unless the dictionary is case-sensitive), so matching is case-insensitive by default.
* Left to right, the **longest** dictionary phrase starting at each token wins; matches never
  overlap (after a match the scan resumes behind it).
* Rule 9: a single-token match on an all-lower-case token is dropped ("china" in "fine china").
* Rule 10 (boundary refinement, our substitute for GeNER's AutoPhrase step): a match that
  begins with a capitalised token is extended over directly neighbouring capitalised tokens
  ("Yoshida" in "Masaki Yoshida said" becomes "Masaki Yoshida"); see :func:`refine_span`.
* Spans already on a record are kept, and matches that overlap them are dropped; with
  ``overwrite=True`` matches win and the overlapping existing spans are removed;
  ``drop_existing=True`` removes every existing span first.
* Rule 8: in a record with Schwartz-Hearst "long form (SF)" pairs, a span ending the long form
  makes every occurrence of SF in that record a span of the same label
  (``"source": "dictmatch-abbrev"``).

New spans are ``{"start", "end", "token_start", "token_end", "label", "source": "dictmatch"}``.
Everything else on the record is passed through.

:func:`dictmatch` is the command's library form::

    from nertools.gener.dictionary import Dictionary
    from nertools.gener.dictmatch import DictionaryMatcher, dictmatch

    matcher = DictionaryMatcher(Dictionary.load("gazetteer.tsv"))
    for rec in dictmatch("corpus.jsonl", matcher):
        ...
"""

from __future__ import annotations

import os
from itertools import compress
from operator import itemgetter
from typing import Any, Iterable, Iterator

from nertools.gener.dictionary import _AMBIGUOUS, NO_LABEL, PREFIX_BIT, Dictionary
from nertools.errors import DataError
from nertools.gener.phrase_rules import STOP_WORDS, NormalizationRules, find_abbreviations
from nertools.core.jsonl import ErrorPolicy, display_name, read_jsonl
from nertools.core.record import normalize_record

SOURCE = "dictmatch"
ABBREV_SOURCE = "dictmatch-abbrev"
_FORM_CACHE_LIMIT = 2_000_000


def _capitalised(word: str) -> bool:
    """Starts with an upper-case letter and is not a stop word ("The")."""
    return word[:1].isupper() and word.lower() not in STOP_WORDS


def _headline(words: list[str]) -> bool:
    """More than half of the alphabetic tokens are written in capitals (a CoNLL headline)."""
    alpha = [w for w in words if w[:1].isalpha()]
    return bool(alpha) and sum(map(str.isupper, alpha)) * 2 > len(alpha)


def refine_span(words: list[str], start: int, end: int, taken: bytearray) -> tuple[int, int]:
    """Rule 10: extend ``words[start..end]`` (inclusive) over neighbouring capitalised tokens.

    GeNER refined boundaries with AutoPhrase phrase mining, which needs a phrase model trained
    on a large corpus. Our documented substitute: if the match begins with a capitalised token,
    extend it left and right while the neighbour is capitalised (:func:`_capitalised`), not
    the first token of the sentence (sentence-initial capitals say nothing), and not already
    inside another span (``taken``). Headline sentences (mostly capitals) are left alone.
    """
    if not _capitalised(words[start]):
        return start, end
    while start - 1 > 0 and not taken[start - 1] and _capitalised(words[start - 1]):
        start -= 1
    n = len(words)
    while end + 1 < n and not taken[end + 1] and _capitalised(words[end + 1]):
        end += 1
    return start, end


class DictionaryMatcher:
    """Match a :class:`Dictionary` into token sequences and records.

    ``rules`` supplies the matching-time rules 8 (abbreviations), 9 (no lower-case single
    token) and 10 (boundary refinement); it defaults to the dictionary's rules.
    """

    def __init__(self, dictionary: Dictionary, *, rules: NormalizationRules | None = None,
                 overwrite: bool = False, drop_existing: bool = False, source: str = SOURCE):
        self.dictionary = dictionary
        self.rules = rules or dictionary.rules
        self.overwrite = overwrite
        self.drop_existing = drop_existing
        self.source = source
        self._forms: dict[str, str] = {}
        self._values: dict[str, int] = {}
        self._cont: dict[str, bool] = {}
        self._cont_pieces: frozenset[str] | None = None
        self.records = 0
        self.tokens = 0
        self.matches = 0

    def _form(self, word: str) -> str:
        forms = self._forms
        if len(forms) >= _FORM_CACHE_LIMIT:
            forms.clear()
            self._values.clear()
            self._cont.clear()
        f = forms[word] = self.dictionary.token_form(word)
        return f

    def _continues(self, word: str) -> bool:
        """Whether ``word`` can be a non-first token of a dictionary phrase: the first piece of
        its form follows another piece in some key (every key's proper prefixes are keys
        too, so those pieces are the last pieces of the keys with more than one). A word that
        cannot is never appended to a phrase, which spares the matcher most extensions."""
        pieces = self._cont_pieces
        if pieces is None:
            pieces = self._cont_pieces = frozenset(
                key[key.rfind(" ") + 1:] for key in self.dictionary._index if " " in key)
        form = self._forms.get(word) or self._form(word)
        c = self._cont[word] = form.split(" ", 1)[0] in pieces
        return c

    def _fill_values(self, words: list[str], values: list) -> None:
        """Compute the index value of words not cached yet (0: the word starts no phrase).

        With rule 9 a lower-case word can never be a match on its own, so its cached value
        loses the label (and becomes 0 unless a longer phrase continues from it)."""
        cache = self._values
        index = self.dictionary._index
        strip = self.rules.no_lower_single
        for k, v in enumerate(values):
            if v is None:
                w = words[k]
                form = self._forms.get(w) or self._form(w)
                v = index.get(form, 0)
                if strip and v and w.islower():
                    v = (v | (NO_LABEL << 1)) if v & PREFIX_BIT else 0
                values[k] = cache[w] = v

    def match_words(self, words: list[str]) -> list[tuple[int, int, str]]:
        """Longest non-overlapping dictionary matches in ``words``: ``(start, end, label)``
        with inclusive token indices. Applies rule 9 but not rules 8 and 10 (those need the
        record; see :meth:`annotate`).

        This is the hot loop. Each distinct token string's index value is cached, so a token
        costs one cached look-up; a phrase is extended token by token only while the index
        says a longer phrase continues (``PREFIX_BIT``).
        """
        values = list(map(self._values.get, words))
        if None in values:
            self._fill_values(words, values)
        forms = self._forms
        cont = self._cont
        index = self.dictionary._index
        labels = self.dictionary.labels
        out = []
        n = len(words)
        free = 0  # first token not covered by a match
        last = n - 1
        for i in compress(range(n), values):  # only tokens that can start a phrase
            if i < free:
                continue
            v = values[i]
            if not v & PREFIX_BIT or i == last:
                c = False
            else:
                c = cont.get(words[i + 1])
                if c is None:
                    c = self._continues(words[i + 1])
            if not c:  # the common case: no longer phrase can start here
                lab = (v >> 1) & 0xFFFF
                if lab < _AMBIGUOUS:
                    out.append((i, i, labels[lab]))
                    free = i + 1
                continue
            # a longer phrase may start here and words[i + 1] can continue one: extend
            lab = (v >> 1) & 0xFFFF
            best, best_label = (i, lab) if lab < _AMBIGUOUS else (-1, 0)
            acc = forms.get(words[i]) or self._form(words[i])
            j = i + 1
            while True:  # words[j] continues some phrase (checked before coming here)
                w = words[j]
                acc = acc + " " + (forms.get(w) or self._form(w))
                v = index.get(acc)
                if v is None:
                    break
                lab = (v >> 1) & 0xFFFF
                if lab < _AMBIGUOUS:
                    best, best_label = j, lab
                if not v & PREFIX_BIT:
                    break
                j += 1
                if j >= n:
                    break
                w = words[j]
                c = cont.get(w)
                if not (self._continues(w) if c is None else c):
                    break
            if best < 0:  # (rule 9 is applied through the cached values)
                continue
            out.append((i, best, labels[best_label]))
            free = best + 1
        return out

    def plan(self, words: list[str], existing: list) -> tuple[list[int] | None, list[tuple[int, int, str, str]]]:
        """The matches to add to a record with token strings ``words`` and ``existing`` spans
        (each indexable as ``(token_start, token_end, label, ...)``, token_end inclusive; leave
        them out for ``drop_existing``): ``(keep, new)``, where ``keep`` lists the indices of
        the existing spans that stay (``None``: all) and ``new`` holds ``(token_start,
        token_end, label, source)``. Rules 8-10 apply; the counters are updated."""
        n = len(words)
        self.records += 1
        self.tokens += n
        matches = self.match_words(words)
        if not matches and not existing:
            return None, []
        taken = bytearray(n)
        if not self.overwrite:
            for s in existing:
                ts, te = s[0], s[1]
                if ts == te:
                    taken[ts] = 1
                else:
                    taken[ts:te + 1] = b"\x01" * (te - ts + 1)
        refine = self.rules.refine_boundary
        headline = None  # computed once, and only for a match that rule 10 could extend
        stop = STOP_WORDS
        new = []
        for (a, b, label) in matches:
            if taken[a] if a == b else any(taken[a:b + 1]):
                continue
            if refine:
                w = words[a]
                if w[:1].isupper() and w.lower() not in stop and (
                        a > 1 and not taken[a - 1] and _capitalised(words[a - 1])
                        or b + 1 < n and not taken[b + 1] and _capitalised(words[b + 1])):
                    if headline is None:
                        headline = _headline(words)
                    if not headline:
                        a, b = refine_span(words, a, b, taken)
            if a == b:
                taken[a] = 1
            else:
                taken[a:b + 1] = b"\x01" * (b - a + 1)
            new.append((a, b, label, self.source))
        keep = None
        if self.overwrite and new and existing:
            cover = bytearray(n)
            for a, b, _, _ in new:
                cover[a:b + 1] = b"\x01" * (b - a + 1)
            keep = [k for k, s in enumerate(existing) if not any(cover[s[0]:s[1] + 1])]
            existing = [existing[k] for k in keep]
            for s in existing:
                taken[s[0]:s[1] + 1] = b"\x01" * (s[1] - s[0] + 1)
        if self.rules.abbreviations and (new or existing) and "(" in words:
            new.extend(self._abbreviations(words, existing, new, taken))
        self.matches += len(new)
        return keep, new

    def annotate(self, record: dict, words: list[str] | None = None) -> dict:
        """Add dictionary spans to a canonical record (in place; also returned).
        ``words`` are its token strings when the caller has them already."""
        tokens = record["tokens"]
        if words is None:
            words = [t["text"] for t in tokens]
        existing = [] if self.drop_existing else record["spans"]
        keep, new = self.plan(words, [(s["token_start"], s["token_end"], s["label"]) for s in existing])
        if keep is not None:
            existing = [existing[k] for k in keep]
        spans = list(existing)
        text = record["text"]
        for a, b, label, source in new:
            ta, tb = tokens[a], tokens[b]
            start, end = ta["start"], tb["end"]
            _check_token(text, ta, a)
            if b != a:
                _check_token(text, tb, b)
            spans.append({"start": start, "end": end, "token_start": a, "token_end": b,
                          "label": label, "source": source})
        if spans:
            spans.sort(key=_by_tokens)
        record["spans"] = spans
        return record

    def annotate_compact(self, record: dict, words: list[str]) -> dict:
        """Add dictionary spans to a record in the compact form (nertools-format(5), COMPACT)
        whose structure :func:`fast_compact` checked, in place: new spans are
        ``[token_start, token_end, label, {"source": ...}]``. No token object is built."""
        existing = [] if self.drop_existing else record["spans"]
        keep, new = self.plan(words, existing)
        if keep is not None:
            existing = [existing[k] for k in keep]
        if new:
            spans = list(existing)
            spans.extend([a, b, label, {"source": source}] for a, b, label, source in new)
            spans.sort(key=_by_first_two)
            record["spans"] = spans
        elif keep is not None or self.drop_existing:
            record["spans"] = existing
        elif len(existing) > 1:
            existing.sort(key=_by_first_two)
        return record

    def _abbreviations(self, words, existing, new, taken) -> list[tuple[int, int, str, str]]:
        """Rule 8: spans for short forms whose long form ends with a labelled span."""
        by_end: dict[int, list[tuple[int, str]]] = {}
        for s in existing:
            by_end.setdefault(s[1], []).append((s[0], s[2]))
        for a, b, label, _ in new:
            by_end.setdefault(b, []).append((a, label))
        last = len(words) - 1
        if not any(e < last and words[e + 1] == "(" for e in by_end):
            # a long form ends right before its "(" and takes the label of a span ending
            # there: with no span before any bracket the Schwartz-Hearst search cannot fire
            return []
        out = []
        for ls, le, ss, se in find_abbreviations(words):
            label = next((lab for a, lab in by_end.get(le, ()) if a >= ls), None)
            if label is None:
                continue
            short = words[ss:se + 1]
            k = len(short)
            for i in range(len(words) - k + 1):
                if words[i:i + k] == short and not any(taken[i:i + k]):
                    for t in range(i, i + k):
                        taken[t] = 1
                    out.append((i, i + k - 1, label, ABBREV_SOURCE))
        return out


_by_tokens = itemgetter("token_start", "token_end")  # canonical spans, by token_start, token_end
_by_first_two = itemgetter(0, 1)  # compact spans, the same order


def _check_token(text: str, token: dict, index: int) -> None:
    """A token a new span starts or ends on must sit where it says it does."""
    s, e = token.get("start"), token.get("end")
    if type(s) is not int or type(e) is not int or text[s:e] != token["text"]:
        raise DataError(f"token {index} {token.get('text')!r} does not match text[{s}:{e}]")


def fast_canonical(obj: Any, default_id: str) -> list[str] | None:
    """The token strings of ``obj`` when it already looks canonical enough to match on (and
    then ``obj`` gets ``spans``/``meta``/``id`` if it lacks them), else ``None``.

    Checks the structure the matcher relies on (a string ``text``, token objects with string
    ``text``, well-formed existing spans) without re-validating every token's offsets; the
    offsets of the tokens a new span starts and ends on are checked when the span is made.
    Anything else goes through :func:`nertools.core.record.normalize_record`.
    """
    if type(obj) is not dict:
        return None
    text = obj.get("text")
    toks = obj.get("tokens")
    if type(text) is not str or type(toks) is not list:
        return None
    try:
        words = [t["text"] for t in toks]  # TypeError unless every token is a JSON object
        if words and set(map(type, words)) != _STR_ONLY:
            return None
        spans = obj.get("spans")
        if spans is None:
            obj["spans"] = []
        elif type(spans) is not list:
            return None
        else:
            n = len(toks)
            for s in spans:
                ts, te = s["token_start"], s["token_end"]
                if (type(ts) is not int or type(te) is not int or not 0 <= ts <= te < n
                        or s["start"] != toks[ts]["start"] or s["end"] != toks[te]["end"]
                        or type(s["label"]) is not str or not s["label"]):
                    return None
    except (KeyError, TypeError, IndexError):
        return None
    meta = obj.get("meta")
    if meta is None:
        obj["meta"] = {}
    elif type(meta) is not dict:
        return None
    if "id" not in obj:
        obj["id"] = default_id
    return words


_STR_ONLY = {str}
_SPAN_KEYS = frozenset({"start", "end", "token_start", "token_end", "label"})


def fast_compact(obj: Any, default_id: str) -> list[str] | None:
    """The token strings of ``obj`` when it is a compact record (nertools-format(5), COMPACT)
    that can be matched on as it is -- token strings, a well-formed ``ws`` (or none), spans as
    lists in range, no ``text``/``offs`` -- (and then ``obj`` gets ``spans``/``meta``/``id``
    if it lacks them), else ``None``: the record then goes through
    :func:`nertools.core.record.normalize_record`, which names what is wrong with it."""
    if type(obj) is not dict:
        return None
    toks = obj.get("toks")
    if type(toks) is not list or "tokens" in obj or "text" in obj or "offs" in obj:
        return None
    n = len(toks)
    if n:
        try:  # every token a string (str.join refuses anything else) and none empty
            "".join(toks)
        except TypeError:
            return None
        if "" in toks:
            return None
    ws = obj.get("ws")
    if ws is not None and (type(ws) is not str or len(ws) != n or ws.strip("01")):
        return None
    spans = obj.get("spans")
    if spans is None:
        obj["spans"] = []
    elif type(spans) is not list:
        return None
    else:
        for s in spans:
            if type(s) is not list:
                return None
            k = len(s)
            if k != 3 and k != 4:
                return None
            ts, te, label = s[0], s[1], s[2]
            if (type(ts) is not int or type(te) is not int or not 0 <= ts <= te < n
                    or type(label) is not str or not label.strip()):
                return None
            if k == 4 and (type(s[3]) is not dict or not _SPAN_KEYS.isdisjoint(s[3])):
                return None
    meta = obj.get("meta")
    if meta is None:
        obj["meta"] = {}
    elif type(meta) is not dict:
        return None
    if "id" not in obj:
        obj["id"] = default_id
    return toks


def annotate_records(matcher: DictionaryMatcher, objs: Iterable[tuple[int, Any]], *,
                     name: str = "<input>", strict: bool = False, policy=None,
                     form: str = "canonical") -> Iterator[dict]:
    """Annotate ``(line_number, parsed_object)`` pairs (as :func:`nertools.core.jsonl.read_jsonl`
    yields them). ``strict`` fully validates every record with
    :func:`~nertools.core.record.normalize_record`; otherwise canonical-looking records take the
    fast path (:func:`fast_canonical`). With ``form="compact"`` a compact input record is
    annotated and yielded compact, without building token objects (:func:`fast_compact`,
    :meth:`DictionaryMatcher.annotate_compact`); with the default ``canonical`` every record
    is yielded canonical. Bad records raise :class:`DataError` with file and line (or are
    skipped per ``policy``)."""
    good = bad = 0
    compact = form == "compact" and not strict
    for lineno, obj in objs:
        try:
            if compact and type(obj) is dict and "toks" in obj:
                words = fast_compact(obj, str(lineno))
                if words is not None:
                    good += 1
                    yield matcher.annotate_compact(obj, words)
                    continue
            words = None if strict else fast_canonical(obj, str(lineno))
            if words is None:
                yield_rec = matcher.annotate(normalize_record(obj, default_id=str(lineno)))
            else:
                try:
                    yield_rec = matcher.annotate(obj, words)
                except DataError:
                    # the fast path let a broken token through: validate fully for a precise error
                    yield_rec = matcher.annotate(normalize_record(obj, default_id=str(lineno)))
        except DataError as e:
            if policy is None:
                raise e.located(name, lineno) from None
            policy.handle(e.located(name, lineno))
            bad += 1
            continue
        good += 1
        yield yield_rec
    if bad and not good:
        raise policy.no_records(name)


def dictmatch(path: str | os.PathLike, matcher: DictionaryMatcher, *, strict: bool = False,
              policy: ErrorPolicy | None = None, form: str = "canonical") -> Iterator[dict]:
    """``ner-dictmatch``: the records of the JSONL file ``path`` (``-``: stdin) annotated by
    ``matcher`` (whose ``records``, ``tokens`` and ``matches`` count what was done).

    ``strict`` and ``form`` (``compact``: compact input records stay compact, the fast way)
    as in :func:`annotate_records`; bad lines raise :class:`DataError` with file and line, or
    are skipped per ``policy``.
    """
    policy = policy or ErrorPolicy()
    return annotate_records(matcher, read_jsonl(path, policy=policy), name=display_name(path),
                            strict=strict, policy=policy, form=form)
