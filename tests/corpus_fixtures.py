"""Tiny random models and corpora for the corpus-scale tests (resume, shards, Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("Ann Bob Paris Rome Lyon Berlin Maria Smith visited met left called the city of and in a "
         "company Acme Globex Initech said on Monday").split()


def texts(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + " ." for _ in range(n)]


def tiny_bert(folder: Path) -> Path:
    """A tiny random BERT masked LM with a word-level vocabulary of :data:`WORDS`."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
             *sorted({w.lower() for w in WORDS} | {"the", "person", "location", ":", ".", "is", "name"})]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(cfg).save_pretrained(folder)
    return folder


def tiny_tagger(model: Path, folder: Path) -> Path:
    from nertools.tagging.tagger import META_FILE, META_FORMAT, LabelScheme, load_token_classifier

    classifier, tokenizer = load_token_classifier(str(model), LabelScheme(("PER", "LOC")))
    classifier.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / META_FILE).write_text(json.dumps({"format": META_FORMAT, "labels": ["PER", "LOC"],
                                                "max_length": 64, "window_overlap": 8}))
    return folder


def write_records(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts(n))))
    return path


def write_candidates(path: Path, n: int) -> Path:
    from nertools.core.record import normalize_record
    from nertools.xner.candidates import SpanRules, add_candidates

    recs = [normalize_record({"id": f"c{i}", "text": t}) for i, t in enumerate(texts(n))]
    out = list(add_candidates(recs, SpanRules(max_length=2)))
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def command(prog: str, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / prog), *args]


def run(prog: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command(prog, *args), capture_output=True, text=True, env=env(), timeout=300, **kw)


MAINS = {"ner-divscore": "nertools.cli.divscore", "ner-tag": "nertools.cli.tag",
         "ner-annotate": "nertools.cli.annotate", "ner-merge": "nertools.cli.merge"}


def invoke(prog: str, *args: str):
    """Run ``prog`` in-process (no interpreter start-up); returns click's Result (.exit_code,
    .stdout, .stderr)."""
    import importlib

    from click.testing import CliRunner

    main = importlib.import_module(MAINS[prog]).main
    return CliRunner().invoke(main, list(args), prog_name=prog)
