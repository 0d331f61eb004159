"""GeNER's dictionary normalisation rules (Kim et al., 2022, "Simple Questions Generate Named
Entity Recognition Datasets", section 3.3), each switchable.

Rules 1-7 act on dictionary *phrases* (:func:`normalize_phrase`); rules 8-10 act while a
dictionary is matched into a sentence (:mod:`nertools.gener.dictmatch`). GeNER turns them all on;
so does :class:`NormalizationRules` by default.

====  =================  =====================================================================
rule  flag               effect
====  =================  =====================================================================
1     split_and          split a composite phrase on " and " ("Breast and ovarian cancer" ->
                         "Breast", "ovarian cancer")
2     strip_punct        strip leading/trailing punctuation ('"Paris,' -> "Paris")
3     drop_lowercase     drop phrases written all in lower case ("cancer")
4     drop_the           drop a leading "the" ("the Netherlands" -> "Netherlands")
5     min_chars          drop phrases shorter than 3 characters ("UK" survives only with 2)
6     drop_stopwords     drop phrases that are a stop word ("This")
7     drop_type_word     drop the type word itself and its plural ("city", "Cities")
8     abbreviations      in a sentence with "long form (SF)" (Schwartz-Hearst), tag every SF
                         like the long form was tagged
9     no_lower_single    never match a lower-case single token ("china" in "fine china")
10    refine_boundary    extend a match to the enclosing capitalised word sequence; our
                         substitute for AutoPhrase (see :func:`nertools.gener.dictmatch.refine_span`)
====  =================  =====================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Iterable

#: A compact English stop-word list (function words, pronouns, auxiliaries, question words).
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each else even ever every few
for from further had has have having he her here hers herself him himself his how however i if in
into is it its itself just least less let like many may me might more most much must my myself
neither never no nor not now of off on once one only or other others our ours ourselves out over
own per rather same several shall she should since so some such than that the their theirs them
themselves then there these they this those though through thus to too toward under until up upon
us very via was we were what whatever when where whether which while who whom whose why will with
within without would yet you your yours yourself yourselves mr mrs ms dr st vs etc
""".split())

#: Characters stripped by rule 2 (every Unicode punctuation or symbol character is too; this is
#: the ASCII fast path).
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u2018\u2019\u201c\u201d\u2013\u2014\u2026"
_AND_RE = re.compile(r"\s+and\s+", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s+")
#: A phrase ending like an abbreviation: "U.S." or a lone initial "J.".
_ABBREV_END = re.compile(r"(?:(?:^|[\s.])[^\W\d_]\.)$")


@dataclass(frozen=True)
class NormalizationRules:
    """Which of GeNER's ten rules are on (all on by default, like GeNER)."""

    split_and: bool = True          # 1
    strip_punct: bool = True        # 2
    drop_lowercase: bool = True     # 3
    drop_the: bool = True           # 4
    min_chars: int = 3              # 5 (0 turns it off)
    drop_stopwords: bool = True     # 6
    drop_type_word: bool = True     # 7
    abbreviations: bool = True      # 8
    no_lower_single: bool = True    # 9
    refine_boundary: bool = True    # 10

    @classmethod
    def none(cls) -> "NormalizationRules":
        """Every rule off: phrases are used as they are."""
        return cls(**{f.name: (0 if f.type in ("int", int) else False) for f in fields(cls)})


#: Rule numbers -> field names, for ``--no-rule N`` style options.
RULE_FIELDS = {1: "split_and", 2: "strip_punct", 3: "drop_lowercase", 4: "drop_the",
               5: "min_chars", 6: "drop_stopwords", 7: "drop_type_word", 8: "abbreviations",
               9: "no_lower_single", 10: "refine_boundary"}


def rules_without(disabled: Iterable[int], base: NormalizationRules | None = None) -> NormalizationRules:
    """``base`` (default: all on) with the rules numbered in ``disabled`` switched off."""
    base = base or NormalizationRules()
    changes = {}
    for n in disabled:
        if n not in RULE_FIELDS:
            raise ValueError(f"there is no normalisation rule {n} (rules are 1-10)")
        name = RULE_FIELDS[n]
        changes[name] = 0 if name == "min_chars" else False
    return NormalizationRules(**{**base.__dict__, **changes})


def plural(word: str) -> str:
    """English plural of a type word: city -> cities, virus -> viruses, person -> persons."""
    w = word
    if w.endswith("y") and len(w) > 1 and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    if w.endswith(("s", "x", "z", "ch", "sh")):
        return w + "es"
    return w + "s"


def type_word_forms(type_words: Iterable[str]) -> frozenset[str]:
    """Lower-cased type words and their plurals (rule 7)."""
    forms = set()
    for w in type_words:
        w = _SPACE_RE.sub(" ", w.strip().lower())
        if w:
            forms.add(w)
            forms.add(plural(w))
    return frozenset(forms)


def _is_punct(ch: str) -> bool:
    if ch in _PUNCT:
        return True
    if ch.isascii():
        return False
    import unicodedata

    return unicodedata.category(ch)[0] in "PS"


def strip_punctuation(phrase: str) -> str:
    """Rule 2: strip punctuation (and whitespace) from both ends."""
    s, e = 0, len(phrase)
    while s < e and (phrase[s].isspace() or _is_punct(phrase[s])):
        s += 1
    while e > s and (phrase[e - 1].isspace() or _is_punct(phrase[e - 1])):
        e -= 1
    # keep the final period of an abbreviation ("U.S.", "J."): it belongs to the token
    if e < len(phrase) and phrase[e] == "." and _ABBREV_END.search(phrase, s, e + 1):
        e += 1
    return phrase[s:e]


def normalize_phrase(phrase: str, rules: NormalizationRules = NormalizationRules(),
                     type_words: frozenset[str] = frozenset()) -> list[str]:
    """Apply rules 1-7 to one dictionary phrase; return the phrases that survive (0, 1 or more).

    ``type_words`` are lower-cased type words with their plurals (:func:`type_word_forms`).
    Whitespace is collapsed to single spaces.
    """
    phrase = " ".join(phrase.split())
    if rules.split_and and " and " in phrase.lower():
        parts = _AND_RE.split(phrase)
    else:
        parts = [phrase]
    out = []
    for p in parts:
        if rules.strip_punct and p and not (p[0].isalnum() and p[-1].isalnum()):
            p = strip_punctuation(p)
        if rules.drop_the and p[:4].lower() == "the ":
            p = p[4:].lstrip()
            if rules.strip_punct:
                p = strip_punctuation(p)
        if not p:
            continue
        if rules.drop_lowercase and p == p.lower() and p != p.upper():
            continue  # all lower case (and has a cased letter)
        if rules.min_chars and len(p) < rules.min_chars:
            continue
        low = p.lower()
        if rules.drop_stopwords and low in STOP_WORDS:
            continue
        if rules.drop_type_word and low in type_words:
            continue
        out.append(p)
    return out


# ---------------------------------------------------------------------------------------------
# Rule 8: Schwartz & Hearst (2003), "A simple algorithm for identifying abbreviation definitions
# in biomedical text". Written from the paper's description.

def _valid_short_form(sf: str) -> bool:
    """A short-form candidate: 2-10 characters, at most two words, starts with a letter or
    digit, contains a letter."""
    if not (2 <= len(sf) <= 10) or len(sf.split()) > 2:
        return False
    if not sf[0].isalnum():
        return False
    return any(c.isalpha() for c in sf)


def best_long_form(short: str, long_candidate: str) -> int | None:
    """Schwartz-Hearst's matching step: the character offset in ``long_candidate`` where the
    long form of ``short`` starts, or ``None``.

    Walk both strings right to left; every letter or digit of the short form must be found in
    the long form, in order, and the first character of the short form must be found at the
    start of a word.
    """
    s = len(short) - 1
    l = len(long_candidate) - 1
    while s >= 0:
        c = short[s].lower()
        if not c.isalnum():
            s -= 1
            continue
        while l >= 0 and (long_candidate[l].lower() != c or
                          (s == 0 and l > 0 and long_candidate[l - 1].isalnum())):
            l -= 1
        if l < 0:
            return None
        l -= 1
        s -= 1
    # l + 1 is where the first short-form character matched; extend to the start of its word
    start = long_candidate.rfind(" ", 0, l + 1) + 1
    return start


def find_abbreviations(words: list[str]) -> list[tuple[int, int, int, int]]:
    """Schwartz-Hearst "long form ( short form )" pairs in a tokenised sentence.

    Returns ``(long_start, long_end, short_start, short_end)`` token indices (inclusive).
    The candidate long form is at most ``min(len(SF) + 5, 2 * len(SF))`` words before the
    parenthesis (the paper's window, ``len(SF)`` counted in characters); it must be longer
    than the short form, and the short form must not be one of its words.
    """
    pairs = []
    n = len(words)
    i = 0
    while i < n:
        if words[i] != "(":
            i += 1
            continue
        # the short form: one or two tokens, then ")"
        close = None
        for j in range(i + 2, min(i + 4, n)):
            if words[j] == ")":
                close = j
                break
        if close is None or i == 0:
            i += 1
            continue
        sf_tokens = words[i + 1:close]
        sf = " ".join(sf_tokens)
        if not _valid_short_form(sf):
            i = close + 1
            continue
        window = min(len(sf) + 5, 2 * len(sf))
        lo = max(0, i - window)
        # the long form may not run across a sentence-internal bracket or clause punctuation
        for k in range(i - 1, lo - 1, -1):
            if words[k] in (")", "(", ";", ":", ".", ",") and k < i - 1:
                lo = k + 1
                break
        lf_words = words[lo:i]
        lf = " ".join(lf_words)
        start = best_long_form(sf, lf)
        if start is not None:
            # which token does char offset `start` begin?
            pos = 0
            t = lo
            for w in lf_words:
                if pos >= start:
                    break
                pos += len(w) + 1
                t += 1
            long_text = " ".join(words[t:i])
            if (t < i and len(long_text) > len(sf)
                    and sf.lower() not in {w.lower() for w in words[t:i]}):
                pairs.append((t, i - 1, i + 1, close - 1))
        i = close + 1
    return pairs
