#!/usr/bin/env bash
# NuNER open-concept annotation of the unlabelled pool, chunk by chunk (issue #11 statistics, #12 data).
#   benchmarks/annotate_nuner_run.sh POOLDIR OUTDIR [FIRST_CHUNK] [LAST_CHUNK]
# POOLDIR holds input-NNN.jsonl (benchmarks/annotate_nuner_pool.py). Each chunk is annotated into
# OUTDIR/chunk-NNN.jsonl.part with --resume (a kill loses nothing) and renamed to chunk-NNN.jsonl
# when the run ends; finished chunks are skipped. MODEL, MAX_NEW_TOKENS, BATCH_SIZE, THREADS override.
set -euo pipefail
POOL=$1; OUT=$2; FIRST=${3:-0}; LAST=${4:-47}
MODEL=${MODEL:-smollm2-135m}
mkdir -p "$OUT"
for n in $(seq -f %03g "$FIRST" "$LAST"); do
    [ -f "$OUT/chunk-$n.jsonl" ] && continue
    [ -f "$POOL/input-$n.jsonl" ] || break
    ner-annotate --prompt nuner --model "$MODEL" --threads "${THREADS:-1}" \
        --max-new-tokens "${MAX_NEW_TOKENS:-64}" --batch-size "${BATCH_SIZE:-20}" \
        "$POOL/input-$n.jsonl" -o "$OUT/chunk-$n.jsonl.part" --resume 2> "$OUT/chunk-$n.log"
    mv "$OUT/chunk-$n.jsonl.part" "$OUT/chunk-$n.jsonl"
done
