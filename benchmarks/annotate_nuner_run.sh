#!/usr/bin/env bash
# NuNER open-concept annotation of the unlabelled pool, chunk by chunk (issue #11 statistics, #12 data).
#   benchmarks/annotate_nuner_run.sh POOLDIR OUTDIR [FIRST_CHUNK] [LAST_CHUNK]
# POOLDIR holds input-NNN.jsonl (benchmarks/annotate_nuner_pool.py). Each chunk is annotated into
# OUTDIR/chunk-NNN.jsonl.part with --resume (a kill loses nothing) and renamed to chunk-NNN.jsonl
# when the run ends; finished chunks are skipped. MODEL, MAX_NEW_TOKENS, BATCH_SIZE, THREADS override.
# BASE_URL=http://127.0.0.1:8080/v1: a served model instead (--backend openai; MODEL is its served
# name; CONCURRENCY requests in flight, default 1).
set -euo pipefail
POOL=$1; OUT=$2; FIRST=${3:-0}; LAST=${4:-47}
MODEL=${MODEL:-smollm2-135m}
mkdir -p "$OUT"
for n in $(seq -f %03g "$FIRST" "$LAST"); do
    [ -f "$OUT/chunk-$n.jsonl" ] && continue
    [ -f "$POOL/input-$n.jsonl" ] || break
    if [ -n "${BASE_URL:-}" ]; then
        backend=(--backend openai --base-url "$BASE_URL" --model "$MODEL" --concurrency "${CONCURRENCY:-1}")
    else
        backend=(--model "$MODEL" --threads "${THREADS:-1}" --batch-size "${BATCH_SIZE:-20}")
    fi
    ner-annotate --prompt nuner "${backend[@]}" --max-new-tokens "${MAX_NEW_TOKENS:-64}" \
        "$POOL/input-$n.jsonl" -o "$OUT/chunk-$n.jsonl.part" --resume 2> "$OUT/chunk-$n.log"
    mv "$OUT/chunk-$n.jsonl.part" "$OUT/chunk-$n.jsonl"
done
