"""The label vocabulary shared by every method, and the two command-line value forms for labels.

* :func:`default_label_word`: the natural-language word for a label name (PER -> person).
* :func:`parse_key_value`: one ``LABEL=VALUE`` option value (``--seed``, ``--label-word``,
  ``--type-word``, ``--threshold``).
* :func:`parse_list`: one comma list (``--labels PER,LOC``).

Both raise :class:`~nertools.errors.UsageError` (exit code 2): they read what a person typed,
not a data file.
"""

from __future__ import annotations

from typing import Iterable

from nertools.errors import UsageError

#: Label words for the usual label sets (CoNLL, OntoNotes-style, WNUT).
DEFAULT_LABEL_WORDS = {
    "PER": "person", "PERSON": "person",
    "LOC": "location", "GPE": "location",
    "ORG": "organization", "ORGANIZATION": "organization",
    "MISC": "miscellaneous",
    "corporation": "corporation", "creative-work": "creative work",
    "group": "group", "product": "product",
}


def default_label_word(label: str) -> str:
    return DEFAULT_LABEL_WORDS.get(label) or DEFAULT_LABEL_WORDS.get(label.upper()) or \
        label.replace("_", " ").replace("-", " ").lower()


def parse_key_value(spec: str, *, option: str, form: str = "LABEL=VALUE",
                    default_key: str | None = None) -> tuple[str, str]:
    """Split one ``LABEL=VALUE`` value at its first ``=``; both sides are stripped.

    ``option`` and ``form`` (``"LABEL=TEXT"``) name the option in error messages. With
    ``default_key``, a value without ``LABEL=`` (or with an empty label) gets that key
    (``--threshold 0.15`` -> ``("*", "0.15")``); without it, both sides must be given.
    Raises :class:`UsageError`.
    """
    key_name, _, value_name = (x.strip("[]").lower() for x in form.partition("="))
    if "=" in spec:
        key, value = (x.strip() for x in spec.split("=", 1))
    elif default_key is not None:
        key, value = "", spec.strip()
    else:
        raise UsageError(f"{option} {spec!r} is not of the form {form}")
    if not key:
        if default_key is None:
            raise UsageError(f"{option} {spec!r}: empty {key_name or 'label'} (expected {form})")
        key = default_key
    if not value:
        raise UsageError(f"{option} {spec!r}: empty {value_name or 'value'} (expected {form})")
    return key, value


def parse_key_values(specs: Iterable[str], *, option: str, form: str = "LABEL=VALUE",
                     default_key: str | None = None) -> dict[str, str]:
    """:func:`parse_key_value` for each of ``specs``; a later value for a label replaces an earlier one."""
    return dict(parse_key_value(s, option=option, form=form, default_key=default_key) for s in specs)


def parse_list(value: str | None) -> list[str] | None:
    """``"PER, LOC,"`` -> ``["PER", "LOC"]``; ``None`` or ``""`` -> ``None`` (no list given)."""
    if not value:
        return None
    return [x.strip() for x in value.split(",") if x.strip()]
