#!/usr/bin/env bash
# ner-annotate quality on the first N CoNLL-2003 dev sentences: InstructMine (the X-NER paper's
# seeds) and the labels prompt (definitions + 3 gold examples from train), scored by ner-eval.
#   benchmarks/annotate_conll.sh [N] [MODEL] [OUTDIR]      (defaults: 50 smollm2-135m /tmp/annotate-conll)
# Runs in-process generation (--backend local); MAX_NEW_TOKENS and THREADS override the defaults.
# Measured 2026-12-02, N=50, SmolLM2-135M-Instruct (Q4_1 GGUF de-quantised), 2 threads, a machine
# shared by many jobs (load 5-40): strict entity micro P/R/F1
#   instructmine  0.0 / 0.0 / 0.0   (1 item in 50 answers: the model re-tells the sentence, no brackets)
#   labels        7.7 / 0.8 / 1.4   (13 spans predicted, 1 correct; 39 of 63 items not in the text:
#                                    mostly copies of the few-shot examples' entities)
set -euo pipefail
N=${1:-50}
MODEL=${2:-smollm2-135m}
OUT=${3:-/tmp/annotate-conll}
DATA=$(cd "$(dirname "$0")/../.." && pwd)/shared/data/conll2003
THREADS=${THREADS:-2}
mkdir -p "$OUT"
head -n "$N" "$DATA/dev.jsonl" > "$OUT/gold.jsonl"
printf 'PER\tthe name of a person\nLOC\tthe name of a place: a country, city, region or landmark\nORG\tthe name of an organisation: a company, team, party or institution\nMISC\tanother name: a nationality, event, language or title\n' > "$OUT/labels.tsv"

ner-annotate --prompt instructmine --paper-seeds conll2003 --model "$MODEL" --threads "$THREADS" \
    --max-new-tokens "${MAX_NEW_TOKENS:-96}" "$OUT/gold.jsonl" -o "$OUT/instructmine.jsonl" --resume
ner-eval --gold "$OUT/gold.jsonl" --pred "$OUT/instructmine.jsonl" --missing empty

ner-annotate --prompt labels --labels "$OUT/labels.tsv" --examples "$DATA/train.jsonl" --n-examples 3 \
    --model "$MODEL" --threads "$THREADS" --max-new-tokens "${MAX_NEW_TOKENS:-64}" \
    "$OUT/gold.jsonl" -o "$OUT/labels.jsonl" --resume
ner-eval --gold "$OUT/gold.jsonl" --pred "$OUT/labels.jsonl" --missing empty
