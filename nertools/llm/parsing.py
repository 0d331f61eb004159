"""Parsing LLM answers."""

from __future__ import annotations

import re




def parse_entity_list(text: str) -> list[str]:
    """Entity names from an LLM answer: one per line (bullets and numbering removed), or a
    single comma-separated line; duplicates dropped (first kept)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and "," in lines[0]:
        lines = lines[0].split(",")
    out, seen = [], set()
    for ln in lines:
        ln = re.sub(r"^\s*(?:[-*\u2022]+|\d+[.)]|\(\d+\))\s*", "", ln).strip().strip('"').strip()
        if not ln or ln.endswith(":") or len(ln) > 100:
            continue
        if ln.lower() not in seen:
            seen.add(ln.lower())
            out.append(ln)
    return out
