#!/usr/bin/env python3
"""Build demo_news.jsonl (gold) and demo_text.jsonl (no spans) from demo_news.txt."""
import re
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
MARK = re.compile(r"\[([^\]]+)\]\(([A-Z]+)\)")


def parse(line: str, idx: int) -> dict:
    tokens, spans = [], []
    pos = 0
    for m in re.finditer(r"\[[^\]]+\]\([A-Z]+\)|\S+", line):
        piece = m.group(0)
        mm = MARK.fullmatch(piece)
        words = mm.group(1).split() if mm else [piece]
        first = len(tokens)
        tokens.extend(words)
        if mm:
            spans.append({"token_start": first, "token_end": len(tokens) - 1, "label": mm.group(2)})
    return {"id": f"demo-{idx}", "tokens": tokens, "spans": spans}


def main() -> None:
    lines = [l.strip() for l in (HERE / "demo_news.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    from nertools.core.record import normalize_record

    recs = [normalize_record(parse(l, i)) for i, l in enumerate(lines)]
    with open(HERE / "demo_news.jsonl", "wb") as gold, open(HERE / "demo_text.jsonl", "wb") as plain:
        for r in recs:
            gold.write(orjson.dumps(r) + b"\n")
            plain.write(orjson.dumps({"id": r["id"], "text": r["text"]}) + b"\n")


if __name__ == "__main__":
    main()
