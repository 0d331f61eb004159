#!/usr/bin/env bash
# GeNER end to end on CoNLL-2003 with MiniLM: "Which [TYPE]?" over a train slice (labels
# removed) -> pseudo-dictionary -> ner-dictmatch -> ner-selftrain (plain and BOND) -> ner-tag
# -> ner-eval. Model selection on dev sentences 0-199, report on dev 1000-1599 (as
# benchmarks/xws_conll.py does). Usage: bash benchmarks/gener_conll.sh [N_TRAIN] [STEPS] [GOLD]
# GOLD: a JSONL of gold train records to use as the corpus instead of the first N train
# sentences (labels removed), e.g. the X-NER end-to-end sample that benchmarks/xws_conll.py
# writes, so both paths see the same sentences. OUT=dir sets the output folder.
set -euo pipefail
N=${1:-2000}
STEPS=${2:-150}
DATA=${SHARED:-../shared}/data/conll2003
GOLD=${3:-}
OUT=${OUT:-benchmarks/out/gener}
mkdir -p "$OUT"
py() { python - "$@"; }

# corpus: the first N train sentences without their labels; dev slices with gold
py "${GOLD:-$DATA/train.jsonl}" "$N" "$OUT/corpus.jsonl" <<'PY'
import sys, orjson
src, n, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(src, "rb") as f, open(dst, "wb") as o:
    for i, line in enumerate(f):
        if i >= n: break
        r = orjson.loads(line); r["spans"] = []; o.write(orjson.dumps(r) + b"\n")
PY
sed -n '1,200p' "$DATA/dev.jsonl" > "$OUT/dev_select.jsonl"
sed -n '1001,1600p' "$DATA/dev.jsonl" > "$OUT/dev_report.jsonl"

printf 'PER\tWhich person?\nPER\tWhich politician?\nPER\tWhich athlete?\nLOC\tWhich city?\nLOC\tWhich country?\nLOC\tWhich location?\nORG\tWhich company?\nORG\tWhich sports team?\nORG\tWhich organization?\nMISC\tWhich nationality?\n' > "$OUT/questions.tsv"

time ner-retrieve index --corpus "$OUT/corpus.jsonl" --model all-minilm-l6-v2 --out "$OUT/idx" --threads 2
time ner-retrieve query --index "$OUT/idx" --questions "$OUT/questions.tsv" --top-k 500 \
  --dict-out "$OUT/dict.tsv" -o "$OUT/evidence.jsonl"
wc -l "$OUT/dict.tsv"
time ner-dictmatch --dict "$OUT/dict.tsv" "$OUT/corpus.jsonl" -o "$OUT/silver.jsonl"
echo "== silver labels on the train slice against gold"
sed -n "1,${N}p" "${GOLD:-$DATA/train.jsonl}" > "$OUT/train_gold.jsonl"
ner-eval --gold "$OUT/train_gold.jsonl" --pred "$OUT/silver.jsonl"

for variant in plain bond; do
  extra=()
  [ "$variant" = bond ] && extra=(--self-train --t-early $((STEPS / 2)) --t-update $((STEPS / 6)))
  time ner-selftrain --train "$OUT/silver.jsonl" --dev "$OUT/dev_select.jsonl" --model all-minilm-l6-v2 \
    --out "$OUT/tagger-$variant" --max-steps "$STEPS" --eval-every $((STEPS / 5)) --lr 2e-4 \
    --o-weight 0.3 --threads 2 "${extra[@]}"
  ner-tag --model "$OUT/tagger-$variant" "$OUT/dev_report.jsonl" -o "$OUT/tagged-$variant.jsonl"
  echo "== GeNER tagger ($variant) on dev 1000-1599"
  ner-eval --gold "$OUT/dev_report.jsonl" --pred "$OUT/tagged-$variant.jsonl"
done
