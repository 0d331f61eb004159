"""nertools.training: the Trainer/Task loop on a toy non-tagger task (selection, early stopping,
checkpoint/resume, atomic output), autocast dtype logic, parameter groups; the tagger's BIO
encoding on core.tags and its dev F1 on nertools.evaluation; ner-selftrain/ner-tag options."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
from pathlib import Path

import click
import numpy as np
import pytest
import torch

from nertools.core.tags import encode
from nertools.errors import DataError, NertoolsError
from nertools.tagging.tagger import LabelScheme
from nertools.training import (RunState, StepContext, Task, Trainer, TrainerConfig, autocast_dtype,
                               checkpoint_path, needs_grad_scaler, parameter_groups)


# ----------------------------------------------------------------------------- a toy task


class Crash(Exception):
    pass


class ToyTask(Task):
    """Two-class points: an MLP with LayerNorm and dropout (so the RNG matters), CE loss,
    dev accuracy as the metric. Not a tagger: it proves the loop is generic."""

    metric_label = "accuracy"

    def __init__(self, seed: int = 0, n: int = 50, crash_at: int | None = None, scores=None):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 2, generator=g)
        self.y = (self.x[:, 0] * self.x[:, 1] > 0).long()
        self.dev_x = torch.randn(40, 2, generator=g)
        self.dev_y = (self.dev_x[:, 0] * self.dev_x[:, 1] > 0).long()
        self.crash_at = crash_at
        self.scores = list(scores) if scores is not None else None   # scripted dev scores
        self.seen = 0                                                  # checkpointed task state
        self.steps_started: list[int] = []
        self.eval_states: dict[int, dict] = {}

    def num_examples(self):
        return len(self.x)

    def collate(self, indices):
        idx = torch.tensor(list(indices))
        return {"x": self.x[idx], "y": self.y[idx]}

    def before_step(self, model, step):
        if step == self.crash_at:
            raise Crash(step)
        self.steps_started.append(step)

    def loss(self, model, batch, ctx):
        self.seen += len(batch["y"])
        with ctx.autocast():
            logits = model(batch["x"])
        return torch.nn.functional.cross_entropy(logits.float(), batch["y"])

    def evaluate(self, model, ctx):
        self.eval_states[ctx.step] = {k: v.clone() for k, v in model.state_dict().items()}
        if self.scores is not None:
            return {"acc": self.scores.pop(0)}
        was = model.training
        model.eval()
        with torch.no_grad():
            acc = (model(self.dev_x).argmax(-1) == self.dev_y).float().mean().item()
        model.train(was)
        return {"acc": round(100 * acc, 4)}

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state, model):
        self.seen = state["seen"]

    def run_config(self):
        return {"toy": True}

    def save(self, model, directory, state: RunState):
        torch.save(model.state_dict(), directory / "model.pt")
        meta = {"best_step": state.best_step, "steps": state.step, "seen": self.seen, "history": state.history}
        (directory / "meta.json").write_text(json.dumps(meta))
        return meta


def toy_model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LayerNorm(16), torch.nn.Dropout(0.2),
                               torch.nn.ReLU(), torch.nn.Linear(16, 2))


def toy_config(**kw):
    base = dict(lr=0.05, batch_size=8, grad_accum=2, max_steps=12, eval_every=4, patience=0, seed=7,
                metric="acc", device="cpu") | kw
    device = base.pop("device")
    return TrainerConfig(**base), device


def fit_toy(out, task=None, resume=False, **kw):
    cfg, device = toy_config(**kw)
    task = task or ToyTask()
    trainer = Trainer(toy_model(), task, cfg, out=out, device=device, resume=resume, log=lambda m: None)
    return trainer, trainer.fit()


def _bytes(state: dict) -> dict:
    return {k: v.detach().cpu().numpy().tobytes() for k, v in state.items()}


def test_toy_task_learns_and_writes_its_directory(tmp_path):
    trainer, meta = fit_toy(tmp_path / "toy", max_steps=40, eval_every=10)
    # 50 examples, batch 8 -> 7 micro-batches per epoch; accumulation 2 -> 4 steps per epoch
    assert trainer.micro_per_epoch == 7 and trainer.steps_per_epoch == 4
    assert meta["steps"] == 40 and [h["step"] for h in meta["history"]] == [10, 20, 30, 40]
    assert all(set(h) == {"step", "stage", "dev_acc", "loss"} for h in meta["history"])
    assert meta["history"][-1]["loss"] < meta["history"][0]["loss"]
    assert max(h["dev_acc"] for h in meta["history"]) > 75  # XOR-ish points are learnable
    # the epoch's last (odd) micro-batch ends a step: 7 micro-batches make 4 steps
    assert meta["seen"] == 50 * 10  # 40 steps = 10 epochs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]  # no checkpoint, no temp dirs
    saved = torch.load(tmp_path / "toy" / "model.pt")
    best = trainer.task.eval_states[meta["best_step"]]
    assert _bytes(saved) == _bytes(best)  # the best dev model is the one written


def test_toy_task_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    _, ref = fit_toy(tmp_path / "ref")
    ref_weights = _bytes(torch.load(tmp_path / "ref" / "model.pt"))

    out = tmp_path / "run"
    with pytest.raises(Crash):
        fit_toy(out, task=ToyTask(crash_at=7))  # dies in step 7, after the checkpoint of step 4
    ckpt = checkpoint_path(out)
    assert json.loads((ckpt / "state.json").read_text())["step"] == 4 and not out.exists()
    torch.rand(1000)  # a fresh process would have another RNG state: the checkpoint restores it
    random.random()
    np.random.rand()
    with pytest.raises(NertoolsError, match="other arguments"):
        fit_toy(out, resume=True, lr=0.01)  # another configuration is refused
    task = ToyTask()
    trainer, meta = fit_toy(out, task=task, resume=True)
    assert task.steps_started[0] == 5  # continued, not restarted
    assert meta["history"] == ref["history"] and meta["best_step"] == ref["best_step"]
    assert meta["seen"] == ref["seen"]  # the task's own state came back from the checkpoint
    assert _bytes(torch.load(out / "model.pt")) == ref_weights  # byte for byte
    assert _bytes(trainer.model.state_dict()) == ref_weights
    assert not ckpt.exists()


def test_selection_early_stopping_and_patience_stages(tmp_path):
    class Staged(ToyTask):
        def stage(self, step):
            return 1 if step <= 8 else 2

        def counts_for_patience(self, stage):
            return stage == 2

    # evaluations at steps 4, 8 (stage 1: patience does not count), 12, 16, ... (stage 2)
    task = Staged(scores=[50, 40, 30, 60, 55, 52, 99])
    _, meta = fit_toy(tmp_path / "s", task=task, max_steps=100, patience=2)
    assert [h["stage"] for h in meta["history"]] == [1, 1, 2, 2, 2, 2]
    assert [h["dev_acc"] for h in meta["history"]] == [50, 40, 30, 60, 55, 52]
    assert meta["steps"] == 24 and meta["best_step"] == 16  # two bad stage-II evaluations stop it
    assert _bytes(torch.load(tmp_path / "s" / "model.pt")) == _bytes(task.eval_states[16])


def test_failed_save_keeps_the_old_directory_and_the_checkpoint(tmp_path):
    out = tmp_path / "m"
    fit_toy(out, max_steps=4)
    before = (out / "meta.json").read_text()

    class Broken(ToyTask):
        def save(self, model, directory, state):
            (directory / "half").write_text("x")
            raise OSError("disk full")

    with pytest.raises(OSError):
        fit_toy(out, task=Broken(), max_steps=8, resume=True)
    assert (out / "meta.json").read_text() == before and not (out / "half").exists()
    assert checkpoint_path(out).exists()  # the run can still be finished with resume
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.checkpoint"]
    _, meta = fit_toy(out, max_steps=8, resume=True)
    assert meta["steps"] == 8 and not checkpoint_path(out).exists()


# ----------------------------------------------------------------------------- pieces of the loop


def test_autocast_dtype_logic_cpu_and_cuda(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) == torch.float32
    assert autocast_dtype("bfloat16", cpu) == torch.bfloat16
    assert autocast_dtype("float16", cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype("auto", cuda) == torch.float16  # an older GPU: fp16 ...
    assert needs_grad_scaler(cuda, torch.float16)          # ... with loss scaling
    assert not needs_grad_scaler(cuda, torch.bfloat16)
    assert not needs_grad_scaler(cpu, torch.float16) and not needs_grad_scaler(cpu, torch.float32)
    lin = torch.nn.Linear(4, 4)
    with StepContext(1, cpu, torch.bfloat16).autocast():
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    with StepContext(1, cpu, torch.float32).autocast():
        assert lin(torch.randn(2, 4)).dtype == torch.float32


def test_bf16_autocast_trains_the_toy_task_on_cpu(tmp_path):
    trainer, meta = fit_toy(tmp_path / "bf16", precision="bfloat16", max_steps=8)
    assert trainer.dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    assert all(np.isfinite(h["loss"]) for h in meta["history"])
    assert next(trainer.model.parameters()).dtype == torch.float32  # weights stay float32


def test_parameter_groups_no_decay_for_bias_and_norms():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(3, 3)
            self.LayerNorm = torch.nn.LayerNorm(3)
            self.final_norm = torch.nn.LayerNorm(3)
            self.frozen = torch.nn.Linear(3, 3)
            self.frozen.weight.requires_grad_(False)
            self.frozen.bias.requires_grad_(False)

    m = M()
    decay, plain = parameter_groups(m, 0.01)
    names = {id(p): n for n, p in m.named_parameters()}
    assert [names[id(p)] for p in decay["params"]] == ["dense.weight"] and decay["weight_decay"] == 0.01
    assert [names[id(p)] for p in plain["params"]] == ["dense.bias", "LayerNorm.weight", "LayerNorm.bias",
                                                       "final_norm.weight", "final_norm.bias"]
    assert plain["weight_decay"] == 0.0


# ----------------------------------------------------------------------------- BIO encoding, dev F1


def _old_tag_ids(scheme, n, spans):
    """The pre-merge rule of LabelScheme.tag_ids, written out as a reference."""
    index = {lab: i for i, lab in enumerate(scheme.labels)}
    ids, dropped = [0] * n, 0
    for s in sorted(spans, key=lambda s: (s["token_start"], -s["token_end"])):
        a, b = s["token_start"], s["token_end"]
        k = index.get(s["label"])
        if k is None or any(ids[i] != 0 for i in range(a, b + 1)):
            dropped += 1
            continue
        ids[a] = 1 + 2 * k
        for i in range(a + 1, b + 1):
            ids[i] = 2 + 2 * k
    return ids, dropped


def _random_spans(rng, n, labels, k):
    out = []
    for _ in range(k):
        a = rng.randrange(n)
        b = min(n - 1, a + rng.randrange(3))
        out.append({"token_start": a, "token_end": b, "label": rng.choice(labels),
                    "start": a, "end": b + 1})
    return out


def test_overlapping_spans_earlier_start_then_longer_wins():
    scheme = LabelScheme(("LOC", "ORG", "PER"))
    spans = [{"token_start": 2, "token_end": 2, "label": "LOC"},
             {"token_start": 2, "token_end": 4, "label": "ORG"},   # same start, longer: kept
             {"token_start": 4, "token_end": 5, "label": "PER"},   # starts inside ORG: dropped
             {"token_start": 0, "token_end": 0, "label": "PER"},
             {"token_start": 0, "token_end": 0, "label": "LOC"}]   # exact duplicate range: first kept
    kept, dropped = LabelScheme.non_overlapping(spans)
    assert [(s["token_start"], s["token_end"], s["label"]) for s in kept] == [(0, 0, "PER"), (2, 4, "ORG")]
    assert dropped == 3
    ids, d = scheme.tag_ids(6, spans)
    assert [scheme.tags[i] for i in ids] == ["B-PER", "O", "B-ORG", "I-ORG", "I-ORG", "O"] and d == 3
    assert [scheme.tags[i] for i in ids] == encode(kept, 6)  # the one BIO encoder
    with pytest.raises(DataError):
        encode(spans, 6)  # which refuses overlaps: LabelScheme chooses first


@pytest.mark.parametrize("seed", range(5))
def test_tag_ids_equal_the_old_rule_on_random_overlaps(seed):
    rng = random.Random(seed)
    scheme = LabelScheme(("A", "B-x", "C"))
    for _ in range(200):
        n = rng.randint(1, 8)
        spans = _random_spans(rng, n, ["A", "B-x", "C", "UNKNOWN"], rng.randint(0, 5))
        assert scheme.tag_ids(n, spans) == _old_tag_ids(scheme, n, spans)


def _old_span_metrics(gold, predicted):
    """train.span_metrics before the merge: seqeval strict IOB2 on greedy BIO strings."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    def bio(n, spans):
        tags = ["O"] * n
        for s in sorted(spans, key=lambda s: (s["token_start"], -s["token_end"])):
            a, b = s["token_start"], s["token_end"]
            if any(t != "O" for t in tags[a:b + 1]):
                continue
            tags[a] = "B-" + s["label"]
            for i in range(a + 1, b + 1):
                tags[i] = "I-" + s["label"]
        return tags

    y_true = [bio(len(r["tokens"]), r["spans"]) for r in gold]
    y_pred = [bio(len(r["tokens"]), p) for r, p in zip(gold, predicted)]
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    rep = classification_report(y_true, y_pred, output_dict=True, **kw)
    per = {k: {"precision": round(100 * v["precision"], 2), "recall": round(100 * v["recall"], 2),
               "f1": round(100 * v["f1-score"], 2), "support": int(v["support"])}
           for k, v in rep.items() if not k.endswith(" avg")}
    return {"f1": round(100 * f1_score(y_true, y_pred, **kw), 2),
            "precision": round(100 * precision_score(y_true, y_pred, **kw), 2),
            "recall": round(100 * recall_score(y_true, y_pred, **kw), 2), "per_label": per,
            "sentences": len(gold)}


@pytest.mark.parametrize("seed", range(4))
def test_span_metrics_through_nertools_evaluation_equal_seqeval(seed):
    from nertools.tagging.train import span_metrics

    rng = random.Random(seed)
    gold, pred = [], []
    for i in range(60):
        n = rng.randint(1, 9)
        g = _random_spans(rng, n, ["PER", "LOC", "ORG"], rng.randint(0, 4))   # overlaps included
        p = [dict(s) for s in g if rng.random() < 0.6] + _random_spans(rng, n, ["PER", "LOC", "MISC"],
                                                                       rng.randint(0, 2))
        gold.append({"text": " ".join("w" for _ in range(n)), "tokens": ["w"] * n, "spans": g})
        pred.append(p)
    ours = span_metrics(gold, pred)
    assert ours == _old_span_metrics(gold, pred)
    assert 0 < ours["f1"] < 100


def test_no_spans_is_a_data_error_naming_the_file(tmp_path):
    from nertools.tagging.train import TrainArgs, train_tagger

    f = tmp_path / "nospans.jsonl"
    f.write_text('{"text": "a b"}\n')
    recs = [{"id": "1", "text": "a b", "tokens": [], "spans": []}]
    with pytest.raises(DataError) as e:
        train_tagger(TrainArgs(model="never-loaded"), recs, recs, tmp_path / "m", train_path=f, dev_path=f)
    assert str(e.value).startswith(f"{f}: no spans") and e.value.exit_code == 65
    with pytest.raises(DataError, match="^no spans"):
        train_tagger(TrainArgs(model="never-loaded"), recs, recs, tmp_path / "m")


# ----------------------------------------------------------------------------- options from TrainArgs


def test_dataclass_options_one_field_one_option():
    from nertools.cli.options import dataclass_options

    @dataclasses.dataclass
    class Knobs:
        name: str = dataclasses.field(default="x", metadata={"cli": False})
        steps: int | None = dataclasses.field(default=None, metadata={"help": "How many.", "min": 1})
        rate: float = dataclasses.field(default=0.5, metadata={"min": 0, "max": 1})
        mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b")})
        fast: bool = False

    @click.command()
    @dataclass_options(Knobs)
    def cmd(**kw):
        click.echo(json.dumps(kw, sort_keys=True))

    from click.testing import CliRunner

    r = CliRunner().invoke(cmd, ["--steps", "3", "--fast", "--mode", "b"])
    assert r.exit_code == 0 and json.loads(r.output) == {"fast": True, "mode": "b", "rate": 0.5, "steps": 3}
    assert CliRunner().invoke(cmd, ["--steps", "0"]).exit_code == 2
    assert CliRunner().invoke(cmd, ["--rate", "2"]).exit_code == 2
    assert CliRunner().invoke(cmd, ["--name", "y"]).exit_code == 2
    help_text = CliRunner().invoke(cmd, ["--help"]).output
    assert "How many." in help_text and "[default: 0.5" in help_text


def test_selftrain_options_come_from_train_args():
    from nertools.cli.selftrain import main
    from nertools.tagging.train import TrainArgs

    params = {p.name: p for p in main.params}
    for f in dataclasses.fields(TrainArgs):
        assert f.name in params or f.name == "eval_max_tokens", f.name
        if f.name in params and f.name not in ("model", "device"):
            assert params[f.name].default == f.default, f.name
    assert params["quiet"].opts == ["-q", "--quiet"]
    assert "--top-percent 3" in main.epilog  # a working ner-pseudo call (B5)


def _run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=dict(os.environ), **kw)


def test_quiet_silences_selftrain_logs_and_the_tag_progress_bar(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_train import _build_tiny_bert, _toy_record

    bert = _build_tiny_bert(tmp_path / "bert")
    rng = random.Random(0)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(_toy_record(rng, i)) + "\n" for i in range(24)))
    base = ["ner-selftrain", "--train", str(data), "--dev", str(data), "--model", str(bert),
            "--max-steps", "2", "--threads", "1", "--batch-size", "12"]
    loud = _run(*base, "--out", str(tmp_path / "a"))
    quiet = _run(*base, "--out", str(tmp_path / "b"), "-q")
    assert loud.returncode == 0 == quiet.returncode, loud.stderr + quiet.stderr
    assert "loading" in loud.stderr and "steps/epoch" in loud.stderr and "dev F1" in loud.stderr
    assert quiet.stderr.splitlines() == [loud.stderr.splitlines()[-1].replace(str(tmp_path / "a"),
                                                                              str(tmp_path / "b"))]
    assert quiet.stderr.startswith("ner-selftrain: wrote")  # only the summary line
    tag_loud = _run("ner-tag", "--model", str(tmp_path / "a"), "--threads", "1", str(data))
    tag_quiet = _run("ner-tag", "--model", str(tmp_path / "a"), "--threads", "1", "--quiet", str(data))
    assert tag_loud.returncode == 0 == tag_quiet.returncode
    assert "24rec" in tag_loud.stderr.replace(" ", "") and tag_quiet.stderr == ""
    assert tag_loud.stdout == tag_quiet.stdout and len(tag_loud.stdout.splitlines()) == 24
