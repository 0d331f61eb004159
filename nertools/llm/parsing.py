"""Parsing LLM answers: the line clean-up every answer format shares."""

from __future__ import annotations

import re

_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)]|\(\d+\))\s*")


def strip_bullet(line: str) -> str:
    """A line without a leading bullet (``-``, ``*``, ``•``) or numbering (``1.``, ``2)``, ``(3)``)."""
    return _BULLET.sub("", line).strip()


def answer_lines(text: str) -> list[tuple[int, str]]:
    """``(1-based line number, cleaned line)`` for the non-empty lines of an answer."""
    out = []
    for i, ln in enumerate(text.splitlines(), 1):
        ln = strip_bullet(ln)
        if ln:
            out.append((i, ln))
    return out


def parse_entity_list(text: str) -> list[str]:
    """Entity names from an LLM answer: one per line (bullets and numbering removed), or a
    single comma-separated line; duplicates dropped (first kept)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and "," in lines[0]:
        lines = lines[0].split(",")
    out, seen = [], set()
    for ln in lines:
        ln = strip_bullet(ln).strip('"').strip()
        if not ln or ln.endswith(":") or len(ln) > 100:
            continue
        if ln.lower() not in seen:
            seen.add(ln.lower())
            out.append(ln)
    return out
