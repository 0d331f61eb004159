"""Entity dictionaries (gazetteers): loading, normalising and looking up phrases.

A dictionary file is either

* TSV: ``phrase<TAB>label[<TAB>count]`` per line (``#`` starts a comment line), or
* JSONL: ``{"phrase": "New York", "label": "LOC", "count": 3}`` per line (``text`` is accepted
  for ``phrase``; ``count`` defaults to 1).

The format is chosen by the first non-blank line (``{`` means JSONL). ``.gz`` files are read
compressed. The file is streamed: memory grows with the number of distinct phrases, never
with the file.

Phrases are normalised by GeNER's rules 1-7 (:mod:`nertools.gener.phrase_rules`) and stored under a
*key*: the phrase in Unicode NFC, split by the default tokenizer
(:data:`nertools.core.record.DEFAULT_TOKEN_SYNTAX`), lower-cased unless the dictionary is
case-sensitive, joined by single spaces. Corpus tokens are mapped to the same form (see
:meth:`Dictionary.token_form`), so "U.S." matches the CoNLL token ``U.S.`` and the
default-tokenised ``U . S .`` alike, and a composed entry "Zürich" matches decomposed (NFD)
text "Zu" + U+0308 "rich" (only the keys are normalised; spans keep the text's own offsets).

Storage is one Python ``dict`` from key to a packed ``int`` (count, label id, and a bit that
says whether a longer phrase continues from this key); proper prefixes of multi-token phrases
are keys too, so the matcher extends a candidate only while the dictionary says it can. A 1 M-entry dictionary takes a few hundred MB and loads in seconds
(``benchmarks/dictmatch_speed.py``).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import random
import sys
import unicodedata
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from nertools.core.atomic import write_bytes_atomic
from nertools.core.cache import cache_dir, switched_off
from nertools.errors import DataError
from nertools.core.jsonl import display_name
from nertools.core.specfile import read_text_lines
from nertools.gener.phrase_rules import NormalizationRules, normalize_phrase, type_word_forms
from nertools.core.record import token_pattern
from nertools.core.labels import default_label_word, parse_list

AMBIGUOUS_CHOICES = ("sample", "majority", "skip")

# Packed index values: bit 0 says "a longer phrase continues from here" (the key is a proper
# prefix, at sub-token boundaries, of another key); bits 1-16 hold the label id, or NO_LABEL
# when the key is only a prefix, or AMBIGUOUS while loading; the count sits above bit 16.
PREFIX_BIT = 1
_LABEL_SHIFT = 1
_LABEL_MASK = 0xFFFF
_COUNT_SHIFT = 17
NO_LABEL = 0xFFFF
_AMBIGUOUS = 0xFFFE
MAX_LABELS = 0xFFFE


def _label_of(v: int) -> int:
    return (v >> _LABEL_SHIFT) & _LABEL_MASK


@dataclass(frozen=True)
class Entry:
    """What a dictionary says about one phrase (after ambiguity resolution)."""

    label: str
    count: int


def split_subtokens(text: str) -> list[str]:
    """``text`` in Unicode NFC split by the default tokenizer (:data:`DEFAULT_TOKEN_SYNTAX`).
    Fast path: a text of letters and digits separated by single spaces is split on the spaces
    (the regex gives the same, ``\\w`` being ``str.isalnum`` plus "_")."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if text.replace(" ", "").isalnum() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text.split(" ")
    return token_pattern(text).findall(text)


def phrase_key(phrase: str, case_sensitive: bool = False) -> str:
    """The lookup key of a phrase: default-tokenizer tokens joined by single spaces."""
    key = " ".join(split_subtokens(phrase))
    return key if case_sensitive else key.lower()


class Dictionary:
    """A phrase -> label dictionary prepared for fast longest-match lookup.

    Build one with :meth:`load` (a file) or :meth:`from_entries` (``(phrase, label, count)``
    triples). ``ambiguous`` decides phrases seen with several labels: ``sample`` draws one
    label per phrase with probability proportional to the counts (from a generator seeded by
    ``seed`` and the phrase, so the choice does not depend on file order), ``majority`` keeps
    the most frequent label (ties: the label seen first), ``skip`` drops the phrase.
    """

    def __init__(self, *, case_sensitive: bool = False, rules: NormalizationRules | None = None,
                 type_words: dict[str, str] | None = None, ambiguous: str = "sample",
                 seed: int = 0):
        if ambiguous not in AMBIGUOUS_CHOICES:
            raise ValueError(f"ambiguous must be one of {AMBIGUOUS_CHOICES}")
        self.case_sensitive = case_sensitive
        self.rules = rules or NormalizationRules()
        self.type_words_by_label = dict(type_words or {})
        self.ambiguous = ambiguous
        self.seed = seed
        self.labels: list[str] = []
        self._label_ids: dict[str, int] = {}
        self._index: dict[str, int] = {}
        self._size = 0
        self._ambiguous: dict[str, dict[int, int]] = {}
        self._type_forms: dict[str, frozenset[str]] = {}
        self.lines_read = 0
        self.phrases_dropped = 0
        self.ambiguous_phrases = 0
        self.ambiguous_skipped = 0
        self._finished = False
        self.from_cache = False  # set by load() when the build cache was read

    # -- building ---------------------------------------------------------------------------

    def _label_id(self, label: str) -> int:
        lid = self._label_ids.get(label)
        if lid is None:
            lid = len(self.labels)
            if lid >= MAX_LABELS:
                raise DataError(f"more than {MAX_LABELS} labels in the dictionary")
            self._label_ids[label] = lid
            self.labels.append(label)
            words = [default_label_word(label)]
            words.extend(parse_list(self.type_words_by_label.get(label)) or ())
            self._type_forms[label] = type_word_forms(words)
        return lid

    def add(self, phrase: str, label: str, count: int = 1) -> int:
        """Add a raw phrase (normalised by the rules first); return how many keys it gave."""
        if self._finished:
            raise RuntimeError("dictionary is finished; create a new one to add phrases")
        lid = self._label_id(label)
        added = 0
        for p in normalize_phrase(phrase, self.rules, self._type_forms[label]):
            if self.add_normalized(p, lid, count):
                added += 1
        if not added:
            self.phrases_dropped += 1
        return added

    def add_normalized(self, phrase: str, label_id: int, count: int = 1) -> bool:
        """Add an already normalised phrase under a label id; ``False`` if it has no tokens."""
        parts = split_subtokens(phrase)
        if not parts:
            return False
        key = " ".join(parts)
        if not self.case_sensitive:
            key = key.lower()
            if len(parts) > 1:
                parts = key.split(" ")
        index = self._index
        old = index.get(key)
        if old is None or _label_of(old) == NO_LABEL:
            flag = old & PREFIX_BIT if old is not None else 0
            index[key] = (count << _COUNT_SHIFT) | (label_id << _LABEL_SHIFT) | flag
            self._size += 1
            # mark every proper prefix (at sub-token boundaries) as "continues"
            prefix = parts[0]
            for k in range(1, len(parts)):
                v = index.get(prefix)
                if v is None:
                    index[prefix] = (NO_LABEL << _LABEL_SHIFT) | PREFIX_BIT
                elif not v & PREFIX_BIT:
                    index[prefix] = v | PREFIX_BIT
                else:
                    # the prefix was already marked, and so were all shorter ones
                    pass
                prefix = prefix + " " + parts[k]
        else:
            old_label = _label_of(old)
            if old_label == _AMBIGUOUS:
                counts = self._ambiguous[key]
                counts[label_id] = counts.get(label_id, 0) + count
            elif old_label == label_id:
                index[key] = old + (count << _COUNT_SHIFT)
            else:
                self._ambiguous[key] = {old_label: old >> _COUNT_SHIFT, label_id: count}
                index[key] = (old & PREFIX_BIT) | (_AMBIGUOUS << _LABEL_SHIFT)
        return True

    def finish(self) -> "Dictionary":
        """Resolve ambiguous phrases (per ``ambiguous``); call once after the last :meth:`add`."""
        if self._finished:
            return self
        self.ambiguous_phrases = len(self._ambiguous)
        index = self._index
        for key, counts in self._ambiguous.items():
            lid = self._resolve(key, counts)
            flag = index[key] & PREFIX_BIT
            if lid is None:
                self.ambiguous_skipped += 1
                self._size -= 1
                if flag:  # still needed as a prefix of longer phrases
                    index[key] = (NO_LABEL << _LABEL_SHIFT) | PREFIX_BIT
                else:  # a dangling prefix mark on shorter keys only costs a look-up
                    del index[key]
            else:
                index[key] = (sum(counts.values()) << _COUNT_SHIFT) | (lid << _LABEL_SHIFT) | flag
        self._ambiguous = {}
        self._finished = True
        return self

    def _resolve(self, key: str, counts: dict[int, int]) -> int | None:
        if self.ambiguous == "skip":
            return None
        items = list(counts.items())  # insertion order = order first seen
        if self.ambiguous == "majority":
            best = max(c for _, c in items)
            return next(lid for lid, c in items if c == best)
        rng = random.Random(self.seed * 1_000_003 + zlib.crc32(key.encode("utf-8")))
        items.sort(key=lambda x: self.labels[x[0]])  # independent of file order
        return rng.choices([lid for lid, _ in items], weights=[c for _, c in items])[0]

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, str, int] | tuple[str, str]],
                     **kwargs) -> "Dictionary":
        d = cls(**kwargs)
        for e in entries:
            d.add(e[0], e[1], e[2] if len(e) > 2 else 1)
        return d.finish()

    @classmethod
    def load(cls, path: str | os.PathLike, *, cache: bool = True, **kwargs) -> "Dictionary":
        """Load a TSV or JSONL dictionary file (streamed); see the module documentation.

        With ``cache`` (and unless ``$NERTOOLS_DICT_CACHE`` is 0) a file of at least
        :data:`CACHE_MIN_BYTES` is built once and kept under the cache root's
        ``dictionaries/`` folder (see :func:`cache_file`); later loads of the same bytes
        with the same options read that (a 100 k-entry dictionary: ~0.05 s instead of
        ~0.5 s). A damaged or unreadable cache file is ignored and rebuilt."""
        d = cls(**kwargs)
        cached = cache_file(path, d) if cache else None
        if cached is not None and d._read_cache(cached):
            return d
        for phrase, label, count in iter_dictionary_file(path):
            d.add(phrase, label, count)
            d.lines_read += 1
        if not d._size:
            raise DataError("dictionary has no usable entries (after normalisation)",
                            path=display_name(path))
        d.finish()
        if cached is not None:
            d._write_cache(cached)
        return d

    # -- the build cache --------------------------------------------------------------------

    _CACHED = ("labels", "_index", "_size", "_type_forms", "lines_read", "phrases_dropped",
               "ambiguous_phrases", "ambiguous_skipped")

    def options(self) -> dict:
        """The options that decide what a file builds (part of the cache key)."""
        return {"case_sensitive": self.case_sensitive, "rules": asdict(self.rules),
                "type_words": self.type_words_by_label, "ambiguous": self.ambiguous,
                "seed": self.seed}

    def _read_cache(self, path: Path) -> bool:
        try:
            state = marshal.loads(path.read_bytes())
            if type(state) is not dict or state.get("format") != _CACHE_FORMAT:
                return False
            values = {name: state[name] for name in self._CACHED}
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            return False
        if type(values["_index"]) is not dict or type(values["labels"]) is not list:
            return False
        for name, value in values.items():
            setattr(self, name, value)
        self._label_ids = {label: i for i, label in enumerate(self.labels)}
        self._finished = self.from_cache = True
        return True

    def _write_cache(self, path: Path) -> None:
        """Best effort: a cache that cannot be written only costs the next load its time."""
        state = {name: getattr(self, name) for name in self._CACHED}
        state["format"] = _CACHE_FORMAT
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, marshal.dumps(state))
        except (OSError, ValueError):
            pass

    # -- lookup -----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of phrases (keys with a label)."""
        return self._size

    def __contains__(self, phrase: str) -> bool:
        return self.get(phrase) is not None

    def get(self, phrase: str) -> Entry | None:
        """The entry for a phrase as written (tokenised and cased like the keys), or ``None``."""
        v = self._index.get(phrase_key(phrase, self.case_sensitive))
        if v is None or _label_of(v) >= _AMBIGUOUS:
            return None
        return Entry(self.labels[_label_of(v)], v >> _COUNT_SHIFT)

    def token_form(self, token: str) -> str:
        """A corpus token in key form: its default-tokenizer pieces joined by spaces,
        lower-cased unless the dictionary is case-sensitive ("U.S." -> "u . s .")."""
        form = " ".join(split_subtokens(token))
        return form if self.case_sensitive else form.lower()

    def items(self) -> Iterator[tuple[str, str, int]]:
        """``(key, label, count)`` for every phrase."""
        labels = self.labels
        for key, v in self._index.items():
            lid = _label_of(v)
            if lid < _AMBIGUOUS:
                yield key, labels[lid], v >> _COUNT_SHIFT


DICT_CACHE_ENV = "NERTOOLS_DICT_CACHE"
#: Dictionary files smaller than this load fast enough without a cache (and a pipeline that
#: writes many small dictionaries does not fill the cache folder).
CACHE_MIN_BYTES = 1 << 20
_CACHE_FORMAT = 1
_BUILD_SOURCES = ("gener/dictionary.py", "gener/phrase_rules.py", "core/record.py", "core/labels.py",
                  "core/specfile.py")
_build_fingerprint: str | None = None


def _code_fingerprint() -> str:
    """A hash of the code that turns a file into an index, so that a cache written by another
    version of nertools (or Python: marshal's format) is never read."""
    global _build_fingerprint
    if _build_fingerprint is None:
        h = hashlib.sha256(f"{_CACHE_FORMAT} {sys.version_info[:2]}".encode())
        root = Path(__file__).resolve().parents[1]
        for rel in _BUILD_SOURCES:
            h.update((root / rel).read_bytes())
        _build_fingerprint = h.hexdigest()
    return _build_fingerprint


def cache_file(path: str | os.PathLike, dictionary: "Dictionary") -> Path | None:
    """Where the built form of the dictionary file ``path`` with ``dictionary``'s options is
    cached: ``<cache root>/dictionaries/<sha256>.marshal``, the hash covering the file's
    bytes, the options and the building code. ``None`` (no cache) for stdin, a file under
    :data:`CACHE_MIN_BYTES` or that cannot be read (the load then says why), or when
    ``$NERTOOLS_DICT_CACHE`` is 0."""
    if str(path) == "-" or switched_off(DICT_CACHE_ENV):
        return None
    try:
        if os.stat(path).st_size < CACHE_MIN_BYTES:
            return None
        h = hashlib.sha256(_code_fingerprint().encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, ValueError):
        return None
    h.update(orjson.dumps(dictionary.options(), option=orjson.OPT_SORT_KEYS))
    return cache_dir("dictionaries") / f"{h.hexdigest()}.marshal"


def iter_dictionary_file(path: str | os.PathLike) -> Iterator[tuple[str, str, int]]:
    """Yield ``(phrase, label, count)`` from a TSV or JSONL dictionary file (streamed)."""
    name = display_name(path)
    fmt = None
    seen = 0
    for lineno, line in enumerate(read_text_lines(path), 1):
        if fmt == "tsv" and line and line[0] != "#":
            # the common case first: phrase<TAB>label<TAB>count
            parts = line.split("\t")
            if len(parts) == 3 and parts[0].strip() and parts[1].strip():
                try:
                    count = int(parts[2])
                except ValueError:
                    count = 0
                if count > 0:
                    seen += 1
                    yield parts[0], parts[1].strip(), count
                    continue
        if not line.strip() or (fmt != "jsonl" and line.lstrip().startswith("#")):
            continue
        if fmt is None:
            fmt = "jsonl" if line.lstrip().startswith("{") else "tsv"
        seen += 1
        if fmt == "jsonl":
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise DataError(f"broken JSON: {e}", path=name, line=lineno) from None
            if not isinstance(obj, dict):
                raise DataError("a dictionary line must be a JSON object", path=name, line=lineno)
            phrase = obj.get("phrase", obj.get("text"))
            label = obj.get("label")
            count = obj.get("count", 1)
        else:
            parts = line.split("\t")
            if len(parts) not in (2, 3):
                raise DataError(f"expected phrase<TAB>label[<TAB>count], got {len(parts)} "
                                f"tab-separated field(s)", path=name, line=lineno)
            phrase, label = parts[0], parts[1].strip()
            count = parts[2].strip() if len(parts) == 3 else 1
            try:
                count = int(count)
            except ValueError:
                raise DataError(f"count {count!r} is not an integer", path=name, line=lineno) from None
        if not isinstance(phrase, str) or not phrase.strip():
            raise DataError("empty or missing phrase", path=name, line=lineno)
        if not isinstance(label, str) or not label.strip():
            raise DataError("empty or missing label", path=name, line=lineno)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DataError(f"count must be a positive integer, got {count!r}", path=name, line=lineno)
        yield phrase, label.strip(), count
    if seen == 0:
        raise DataError("no dictionary entries (empty file)", path=name)


def write_dictionary(path: str, entries: Iterable[tuple[str, str, int]]) -> int:
    """Write ``(phrase, label, count)`` triples as a TSV dictionary (atomically); return count."""
    from nertools.core.atomic import atomic_file

    n = 0
    try:
        with atomic_file(path) as fh:
            for phrase, label, count in entries:
                fh.write(f"{phrase}\t{label}\t{count}\n".encode("utf-8"))
                n += 1
    except OSError as e:
        from nertools.core.jsonl import write_error

        raise write_error(str(path), e) from None
    return n
