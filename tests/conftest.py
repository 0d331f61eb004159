"""Shared pytest fixtures."""

import os
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"

# The end-to-end tests run the real console scripts by name (ner-eval, ner-spans, ...). They
# live beside the interpreter that runs pytest (.venv/bin), which need not be on PATH when
# pytest is started as `.venv/bin/python -m pytest` (make test, CI).
_SCRIPTS = str(Path(sys.executable).parent)
if _SCRIPTS not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _SCRIPTS + os.pathsep + os.environ.get("PATH", "")

# Under pytest-xdist (make test: one worker per core) each worker, and every console script it
# starts, uses one torch thread unless OMP_NUM_THREADS says otherwise: two workers with a
# thread per core each would run four threads on two cores.
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


#: The test files that take longest (one-process `pytest --durations`, session 7), longest
#: first. Under xdist's `--dist loadfile` a worker takes the next whole file when it is free,
#: so a long file collected last leaves the other worker idle at the end: these files are
#: handed out first. Only the order changes (and only in xdist workers); a name missing here
#: just keeps its place.
HEAVY_FIRST = ("test_align_pipeline.py", "test_align_generative.py", "test_reliability_training.py",
               "test_cli_xner.py", "test_reliability_scoring_index.py", "test_probe_regressions.py",
               "test_annotate.py", "test_align_seq2seq.py", "test_resume.py", "test_train.py",
               "test_biencoder.py", "test_multiseed.py", "test_training_loop.py")


def pytest_collection_modifyitems(session, config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: k for k, name in enumerate(HEAVY_FIRST)}
    # a stable sort: the heavy files by rank, then every other file in collection order
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real NER corpora, see ../shared/README.md); skips when absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not available")
    return path


# --- In CI a skip is a failure ---------------------------------------------------------------
# CI sets CI=true. A skipped test there means something the suite needs is missing (../shared, a
# model package, a tool): the run fails and lists every skip, including module-level
# importorskip and fixture skips, so a green CI never hides untested code.

def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


_SKIPS: list[str] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_collectreport(report):
    if report.skipped:
        _SKIPS.append(f"{report.nodeid} (whole module): {_skip_reason(report)}")


def pytest_sessionfinish(session, exitstatus):
    if _in_ci() and _SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _in_ci() and _SKIPS:
        terminalreporter.section("skipped tests fail in CI (CI is set)", sep="=", red=True, bold=True)
        for line in _SKIPS:
            terminalreporter.line(f"SKIPPED (counts as a failure) {line}", red=True)
        terminalreporter.line(f"{len(_SKIPS)} skip(s): install what they need (make models, ../shared) "
                              "or unset CI to run locally with skips")


@pytest.fixture(autouse=True)
def _not_quiet():
    """Each test starts with progress and log lines on: ``-q`` in an in-process CLI run sets a
    process-wide switch (nertools.runtime.progress), which must not leak into the next test."""
    from nertools.runtime.progress import set_quiet

    set_quiet(False)
    yield
    set_quiet(False)


# --- Tiny models shared by the ner-align tests -----------------------------------------------


def tiny_bert(num_labels):
    """A random 2-layer BERT token classifier (MiniLM's vocabulary size)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    return BertForTokenClassification(cfg)


@pytest.fixture(scope="session")
def tiny_source_tagger(tmp_path_factory):
    """A tiny BERT tagger on 24 real CoNLL sentences (LOC/MISC/ORG/PER), written by ner-selftrain."""
    import json

    from transformers import AutoTokenizer

    from nertools.runtime.models import resolve_model_path
    from nertools.tagging.train import TrainArgs, train_tagger

    d = tmp_path_factory.mktemp("src")
    backbone = d / "tiny-bert"
    tiny_bert(2).bert.save_pretrained(backbone)  # a bare encoder, like MiniLM's folder
    AutoTokenizer.from_pretrained(resolve_model_path("all-minilm-l6-v2")).save_pretrained(backbone)
    with open(SHARED / "data" / "conll2003" / "train.jsonl", encoding="utf-8") as fh:
        recs = [r for r in (json.loads(next(fh)) for _ in range(80)) if r["spans"]][:24]
    out = d / "tagger"
    train_tagger(TrainArgs(model=str(backbone), max_steps=3, batch_size=8, lr=1e-3), recs, recs, out,
                 log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A random 2-layer Llama causal LM folder (the tiny RoBERTa fixture's tokenizer)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(SHARED / "fixtures" / "xner-official" / "roberta-tiny-random"))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    d = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d
