#!/usr/bin/env python3
"""NuNER open-concept annotation statistics over ner-annotate --prompt nuner output chunks.

    python benchmarks/annotate_nuner_stats.py --inputs 'DIR/input-*.jsonl' --outputs 'DIR/chunk-*.jsonl' \
        [--sample 50 --sample-seed 0 --sample-out sample.tsv] [--head 15]

Input chunks are the sentences given to the model; output chunks what ner-annotate wrote (an
input id missing from a *finished* output chunk was dropped by the concept-"concept" filter).
Only input chunks whose output chunk exists are counted. Prints: sentences, records written,
dropped, items and their statuses, the not-found (hallucination) rate, items per sentence, distinct
concepts (all items and placed items), the concept histogram head and tail, how many not-found
items would be found ignoring case, how many items repeat the prompt's demonstration entities, and
the per-source-data-set breakdown. --sample-out writes a random sample of placed items (TSV:
id, status, entity, concept, description, sentence) to judge by hand, filled up with other items
when fewer items were placed.
"""
from __future__ import annotations

import argparse
import glob
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

DEMO = ("steven means", "falcon", "2018")  # the demonstration's entities (also misspelt "Falcones")


def words(s: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--outputs", required=True)
    ap.add_argument("--sample", type=int, default=50)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--sample-out")
    ap.add_argument("--head", type=int, default=15)
    a = ap.parse_args()
    outs = {Path(p).name.split("-")[-1]: p for p in glob.glob(a.outputs)}
    n_in = n_out = 0
    status = Counter()
    concepts_all, concepts_placed = Counter(), Counter()
    per_set = defaultdict(Counter)
    ci_found = demo = 0
    placed_items, other_items = [], []
    sentences_with_placed = 0
    for ip in sorted(glob.glob(a.inputs)):
        key = Path(ip).name.split("-")[-1]
        if key not in outs:
            continue
        ids = [json.loads(line)["id"] for line in open(ip)]
        recs = [json.loads(line) for line in open(outs[key])]
        n_in += len(ids)
        n_out += len(recs)
        got = {r["id"] for r in recs}
        for i in ids:
            ds = i.rsplit("-", 2)[0]
            per_set[ds]["sentences"] += 1
            if i not in got:
                per_set[ds]["dropped"] += 1
        for r in recs:
            ds = r["id"].rsplit("-", 2)[0]
            low = [w.lower() for w in words(r["text"])]
            any_placed = False
            for it in r["annotation"]["items"]:
                st = it["status"]
                status[st] += 1
                per_set[ds]["items"] += 1
                per_set[ds][st] += 1
                concepts_all[it["label"].strip().lower()] += 1
                if any(d in it["text"].lower() for d in DEMO):
                    demo += 1
                if st == "not_found":
                    w = [x.lower() for x in words(it["text"])]
                    if w and any(low[k:k + len(w)] == w for k in range(len(low) - len(w) + 1)):
                        ci_found += 1
                if st in ("placed", "overlap"):
                    concepts_placed[it["label"].strip().lower()] += 1
                row = (r["id"], st, it["text"], it["label"], it.get("description", ""), r["text"])
                if st == "placed":
                    any_placed = True
                    placed_items.append(row)
                else:
                    other_items.append(row)
            sentences_with_placed += any_placed
    items = sum(status.values())
    dropped = n_in - n_out
    pct = lambda x, n: f"{100 * x / n:.1f}%" if n else "n/a"
    print(f"sentences given: {n_in}; records written: {n_out}; dropped (concept \"concept\"): {dropped} ({pct(dropped, n_in)})")
    print(f"items parsed: {items} ({items / max(n_out, 1):.2f} per written sentence); statuses: {dict(status)}")
    print(f"placed: {status['placed']} ({status['placed'] / max(n_out, 1):.2f} per sentence); sentences with >=1 placed item: {sentences_with_placed} ({pct(sentences_with_placed, n_out)})")
    print(f"not found (hallucination rate): {status['not_found']} / {items} = {pct(status['not_found'], items)}; "
          f"of these found when case is ignored: {ci_found}")
    print(f"items that repeat the demonstration's entities (Steven Means / Falcons / 2018): {demo} ({pct(demo, items)})")
    print(f"distinct concepts: {len(concepts_all)} over all items, {len(concepts_placed)} over found items")
    print(f"concept head (found items): {concepts_placed.most_common(a.head)}")
    single = [c for c, n in concepts_placed.items() if n == 1]
    print(f"concept tail (found items): {len(single)} concepts seen once, e.g. {sorted(single)[:a.head]}")
    print(f"concept head (all items): {concepts_all.most_common(a.head)}")
    print("per data set: " + "; ".join(
        f"{ds}: {c['sentences']} sent, {c['dropped']} dropped, {c['items']} items, {c['placed']} placed, "
        f"{c['not_found']} not found" for ds, c in sorted(per_set.items())))
    if a.sample_out:
        rng = random.Random(a.sample_seed)
        sample = rng.sample(placed_items, min(a.sample, len(placed_items)))
        if len(sample) < a.sample:  # too few placed items: fill with the others (statuses shown)
            sample += rng.sample(other_items, min(a.sample - len(sample), len(other_items)))
        with open(a.sample_out, "w") as fh:
            fh.write("id\tstatus\tentity\tconcept\tdescription\tsentence\n")
            for row in sample:
                fh.write("\t".join(x.replace("\t", " ") for x in row) + "\n")
        print(f"sample of {len(sample)} items ({sum(r[1] == 'placed' for r in sample)} placed) -> {a.sample_out}")


if __name__ == "__main__":
    main()
