#!/usr/bin/env bash
# Precision of X-NER pseudo labels on the same first-N dev sentences as annotate_quality.sh (issue #11
# table, "next to" the LLM annotation): ner-spans --max-tokens 30 | ner-divscore (2way, paper seeds)
# | ner-pseudo --top-percent P, scored by ner-eval (strict; precision is the number that matters:
# pseudo labels are a small confident subset by design).
#   benchmarks/annotate_xner_pseudo.sh DATASET [N] [MODEL] [OUT]   (defaults: 100 smollm2-135m /tmp/xner-DATASET)
#   TOP_PERCENTS="0.9 2 5" THREADS=1
# The scored candidates are kept (OUT/scored.jsonl): a rerun re-selects without the model.
set -euo pipefail
DS=$1; N=${2:-100}; MODEL=${3:-smollm2-135m}; OUT=${4:-/tmp/xner-$DS}
DATA=$(cd "$(dirname "$0")/../.." && pwd)/shared/data/$DS
mkdir -p "$OUT"
head -n "$N" "$DATA/dev.jsonl" > "$OUT/gold.jsonl"
python3 - "$DS" > "$OUT/seeds.tsv" <<'PY'
import sys
from nertools.xner.seeds import PAPER_SEEDS
for lab, seed in PAPER_SEEDS[sys.argv[1]].items():
    print(f"{lab}\t{seed}")
PY
if [ ! -s "$OUT/scored.jsonl" ]; then
  ner-spans --max-tokens 30 "$OUT/gold.jsonl" \
    | ner-divscore --model "$MODEL" --seeds "$OUT/seeds.tsv" --threads "${THREADS:-1}" -o "$OUT/scored.jsonl.part" 2> "$OUT/divscore.log"
  mv "$OUT/scored.jsonl.part" "$OUT/scored.jsonl"
fi
for p in ${TOP_PERCENTS:-0.9 2 5}; do
  ner-pseudo --top-percent "$p" --all -q "$OUT/scored.jsonl" -o "$OUT/pseudo-$p.jsonl"
  ner-eval --gold "$OUT/gold.jsonl" --pred "$OUT/pseudo-$p.jsonl" --missing empty --json -q > "$OUT/pseudo-$p.eval.json"
  python3 - "$OUT/pseudo-$p.eval.json" "$DS" "$N" "$MODEL" "$p" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["micro"]
print(f"{sys.argv[2]} N={sys.argv[3]} model={sys.argv[4]} X-NER 2way + ner-pseudo --top-percent {sys.argv[5]}: "
      f"P/R/F1 {100*m['precision']:.1f}/{100*m['recall']:.1f}/{100*m['f1']:.1f} "
      f"({m['correct']} correct of {m['predicted']} predicted, {m['support']} gold)")
PY
done
