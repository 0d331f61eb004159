#!/usr/bin/env bash
# ner-annotate quality (issue #11 table): InstructMine (the X-NER paper's seeds) and the labels prompt
# (definitions + 3 gold train examples) on the first N dev sentences of conll2003 or wnut17, scored by
# ner-eval (strict entity micro P/R/F1); the hallucination rate and sentences/s come from
# ner-annotate's stderr summary (kept in OUT/*.log); one table row per prompt (annotate_summary.py).
#   benchmarks/annotate_quality.sh DATASET [N] [MODEL] [OUT]   (defaults: 100 smollm2-135m /tmp/annotate-DATASET)
#   PROMPTS="instructmine labels" MAX_NEW_TOKENS_IM=96 MAX_NEW_TOKENS_LB=64 THREADS=1 BATCH_SIZE=8
#   BASE_URL=http://127.0.0.1:8080/v1: a served model instead (--backend openai; MODEL is then its
#   served name, e.g. smollm2 from make llm-server; CONCURRENCY=1 requests in flight)
# Resumable: rerun the same command after a kill. Prints one summary line per prompt.
set -euo pipefail
DS=$1; N=${2:-100}; MODEL=${3:-smollm2-135m}; OUT=${4:-/tmp/annotate-$DS}
DATA=$(cd "$(dirname "$0")/../.." && pwd)/shared/data/$DS
THREADS=${THREADS:-1}; BS=${BATCH_SIZE:-8}
mkdir -p "$OUT"
head -n "$N" "$DATA/dev.jsonl" > "$OUT/gold.jsonl"
case $DS in
  conll2003) printf 'PER\tthe name of a person\nLOC\tthe name of a place: a country, city, region or landmark\nORG\tthe name of an organisation: a company, team, party or institution\nMISC\tanother name: a nationality, event, language or title\n' > "$OUT/labels.tsv" ;;
  wnut17) printf 'person\tthe name of a person (also a user name that names a person)\nlocation\tthe name of a place: a country, city, street, building or landmark\ncorporation\tthe name of a company or brand owner\ngroup\tthe name of a group: a team, band, party, organisation that is not a company\ncreative-work\tthe title of a song, film, book, show, game or hashtag naming one\nproduct\tthe name of a product: a device, software, car, food brand\n' > "$OUT/labels.tsv" ;;
  *) echo "annotate_quality.sh: no labels for $DS" >&2; exit 2 ;;
esac
summary() {  # prompt: one table row (benchmarks/annotate_summary.py)
  ner-eval --gold "$OUT/gold.jsonl" --pred "$OUT/$1.jsonl" --missing empty --json -q > "$OUT/$1.eval.json"
  python3 "$(dirname "$0")/annotate_summary.py" "$OUT/$1" | tail -n 1
}
for p in ${PROMPTS:-instructmine labels}; do
  if [ "$p" = instructmine ]; then
    args=(--prompt instructmine --paper-seeds "$DS"); mnt=${MAX_NEW_TOKENS_IM:-96}
  else
    args=(--prompt labels --labels "$OUT/labels.tsv" --examples "$DATA/train.jsonl" --n-examples 3); mnt=${MAX_NEW_TOKENS_LB:-64}
  fi
  if [ -n "${BASE_URL:-}" ]; then
    backend=(--backend openai --base-url "$BASE_URL" --model "$MODEL" --concurrency "${CONCURRENCY:-1}")
  else
    backend=(--model "$MODEL" --threads "$THREADS" --batch-size "$BS")
  fi
  ner-annotate "${args[@]}" "${backend[@]}" --max-new-tokens "$mnt" \
      "$OUT/gold.jsonl" -o "$OUT/$p.jsonl" --resume 2>> "$OUT/$p.log"
  summary "$p"
done
