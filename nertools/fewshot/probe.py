"""The frozen-encoder linear probe (NuNER §4.1, Table 3: methods spec §2.5 protocol A).

The encoder is frozen. Each word is represented by the final-layer vector of its first
sub-token (spec N9), computed once (:func:`word_vectors`); a single linear layer maps it to
mutually exclusive classes, the entity types plus ``None`` (IO, no BIO), and only that layer is
trained: full-batch Adam, lr 1e-3, 200 epochs, no weight decay, no early stopping (the spec's
[ours] defaults; the paper gives none). The head starts at zero, so the fit (a convex
multinomial logistic regression) depends on nothing random. Scores: token-level macro F1
(:mod:`nertools.fewshot.metrics`, the paper's metric) and strict entity F1 of the IO spans.

Why not :class:`nertools.training.Trainer`: the protocol trains a linear layer on cached
features, full batch, with no model forward, no schedule, no selection and nothing worth a
checkpoint; the fit is a few hundred steps of a ``[words, d] x [d, classes]`` product.

:func:`train_probe_tagger` is ``ner-selftrain --linear-probe``: it fits the probe on the
training records and writes an ordinary tagger directory (``ner-tag`` reads it): the encoder
unchanged and the probe in the token-classification head, class ``X`` as tag ``I-X`` and every
``B-X`` switched off (weight 0, bias -1e4), so the tagger's usual BIO reading (an ``I-X`` that
does not continue an ``X`` span starts one) merges consecutive same-type words exactly as IO
decoding does, with the probe's probabilities.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from nertools.errors import DataError, UsageError
from nertools.fewshot.metrics import io_spans, token_scores, word_labels
from nertools.runtime import progress
from nertools.tagging.tagger import (LabelScheme, SpecialTokens, Window, collate, make_windows, token_batches,
                                     word_pieces)

#: The protocol's defaults (methods spec §2.5 A, [ours]).
PROBE_EPOCHS = 200
PROBE_LR = 1e-3
#: Bias of the switched-off ``B-X`` tags of a probe saved as a BIO tagger.
OFF_BIAS = -1e4


# --------------------------------------------------------------------------- features


def word_vectors(model, tokenizer, records: Sequence[dict], *, max_length: int | None = None,
                 overlap: int = 32, max_tokens: int = 8192, device=None,
                 desc: str | None = None) -> list[np.ndarray]:
    """Frozen final-layer vectors, ``[n_words, d]`` float32 per record: the vector of each
    word's first sub-token, from the window that owns the word (long sentences are windowed
    as the tagger windows them, never truncated).

    ``model`` is an encoder (``AutoModel``) or any model with one (a token-classification
    model: its ``base_model``, the layer its head reads).
    """
    import torch

    from nertools.runtime.models import model_window

    encoder = getattr(model, "base_model", model)
    device = device or next(encoder.parameters()).device
    window = model_window(encoder, tokenizer, max_length)
    overlap = min(overlap, max(0, window // 2))
    special = SpecialTokens.of(tokenizer)
    dim = int(encoder.config.hidden_size)
    out = [np.zeros((len(r["tokens"]), dim), dtype=np.float32) for r in records]
    pad = tokenizer.pad_token_id or 0
    was_training = encoder.training
    encoder.eval()
    chunk = 512
    bar = progress.progress(total=len(records), desc=desc, unit="sent", enabled=desc is not None)
    try:
        with torch.inference_mode():
            for c in range(0, len(records), chunk):
                recs = [r for r in records[c:c + chunk]]
                windows: list[Window] = []
                for i, pieces in enumerate(word_pieces(tokenizer, recs)):
                    windows.extend(make_windows(c + i, pieces, special, window, overlap))
                for idx in token_batches(windows, max_tokens):
                    wins = [windows[i] for i in idx]
                    batch = collate(wins, pad)
                    hidden = encoder(input_ids=batch["input_ids"].to(device),
                                     attention_mask=batch["attention_mask"].to(device)).last_hidden_state
                    hidden = hidden.float().cpu().numpy()
                    for row, w in zip(hidden, wins):
                        for j in range(w.own_start, w.own_end):
                            out[w.record][j] = row[w.first_pos[j - w.word_start]]
                bar.update(len(recs))
    finally:
        bar.close()
        if was_training:
            encoder.train()
    return out


def io_targets(records: Sequence[dict], labels: Sequence[str]) -> list[np.ndarray]:
    """Per record, the class of each word: 0 = ``None``, ``1 + labels.index(label)``."""
    index = {lab: i + 1 for i, lab in enumerate(labels)}
    return [np.array([index.get(lab, 0) if lab is not None else 0 for lab in word_labels(r, labels)],
                     dtype=np.int64) for r in records]


# --------------------------------------------------------------------------- the head


@dataclass
class LinearHead:
    """A fitted probe: ``logits = x @ weight.T + bias`` over ``("None",) + labels``."""

    labels: tuple[str, ...]
    weight: np.ndarray      # [1 + len(labels), d]
    bias: np.ndarray        # [1 + len(labels)]
    losses: tuple[float, ...] = ()   # the training loss before the first and after the last step

    def probs(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, len(self.bias)), dtype=np.float32)
        z = x @ self.weight.T + self.bias
        z -= z.max(-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)

    def predict(self, vectors: Sequence[np.ndarray]) -> list[list[str | None]]:
        """Per record, each word's label (``None`` for the None class)."""
        names = (None,) + tuple(self.labels)
        return [[names[c] for c in self.probs(x).argmax(-1).tolist()] for x in vectors]


def fit_linear_head(vectors: Sequence[np.ndarray], targets: Sequence[np.ndarray], labels: Sequence[str], *,
                    epochs: int = PROBE_EPOCHS, lr: float = PROBE_LR, weight_decay: float = 0.0,
                    device: str = "cpu") -> LinearHead:
    """Fit the probe on all words of ``vectors`` (per record ``[n_words, d]``) with classes
    ``targets`` (:func:`io_targets`): softmax cross-entropy averaged over the words, full-batch
    Adam for ``epochs`` steps from a zero head."""
    import torch

    if not labels:
        raise DataError("no entity types to probe")
    x = np.concatenate([v for v in vectors if len(v)], 0) if any(len(v) for v in vectors) else None
    if x is None:
        raise DataError("no words to fit the probe on")
    y = np.concatenate([t for t in targets if len(t)], 0)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} word vectors but {len(y)} targets")
    n_classes = 1 + len(labels)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    yt = torch.from_numpy(y).to(device)
    weight = torch.zeros((n_classes, xt.shape[1]), device=device, requires_grad=True)
    bias = torch.zeros(n_classes, device=device, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    losses = []
    with torch.enable_grad():
        for step in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(xt @ weight.T + bias, yt)
            if step == 0:
                losses.append(float(loss.detach()))
            loss.backward()
            opt.step()
        with torch.no_grad():
            losses.append(float(torch.nn.functional.cross_entropy(xt @ weight.T + bias, yt)))
    return LinearHead(tuple(labels), weight.detach().cpu().numpy(), bias.detach().cpu().numpy(), tuple(losses))


def probe_scores(head: LinearHead, vectors: Sequence[np.ndarray], records: Sequence[dict]) -> dict:
    """The probe on gold ``records`` (their word ``vectors``): token macro/micro F1 over the
    head's labels and strict entity P/R/F1 of the IO spans (all gold spans count, so a gold
    type the head does not know is all misses), in percent."""
    from nertools.tagging.train import span_metrics

    predicted = head.predict(vectors)
    gold = [word_labels(r) for r in records]
    tokens = token_scores(gold, predicted, labels=head.labels)
    spans = [[{"token_start": a, "token_end": b, "label": lab} for a, b, lab in io_spans(p)] for p in predicted]
    entity = span_metrics(records, spans)
    return {"token_macro_f1": tokens["macro_f1"], "token_micro_f1": tokens["micro_f1"],
            "entity_f1": entity["f1"], "entity_precision": entity["precision"], "entity_recall": entity["recall"],
            "token_per_label": tokens["per_label"], "entity_per_label": entity["per_label"],
            "sentences": len(records), "words": tokens["words"]}


# --------------------------------------------------------------------------- ner-selftrain --linear-probe


def _head_linear(model, n_out: int):
    """The token-classification head's linear layer (``classifier``, ``score``, ...)."""
    import torch

    for name in ("classifier", "score"):
        layer = getattr(model, name, None)
        if isinstance(layer, torch.nn.Linear) and layer.out_features == n_out:
            return layer
    found = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n_out]
    if not found:
        raise DataError(f"cannot find the token-classification head ({n_out} outputs) of the model")
    return found[-1]


def install_head(model, head: LinearHead, scheme: LabelScheme) -> None:
    """Write ``head`` into ``model``'s BIO head: ``O`` <- None, ``I-X`` <- X, ``B-X`` off."""
    import torch

    if tuple(scheme.labels) != tuple(head.labels):
        raise ValueError("the head's labels differ from the tagger's")
    layer = _head_linear(model, scheme.num_tags)
    w = torch.zeros_like(layer.weight)
    b = torch.full_like(layer.bias, OFF_BIAS) if layer.bias is not None else None
    if b is None:
        raise DataError("the model's token-classification head has no bias: cannot switch B- tags off")
    tags = {t: i for i, t in enumerate(scheme.tags)}
    rows = [tags["O"]] + [tags[f"I-{lab}"] for lab in scheme.labels]
    with torch.no_grad():
        src_w = torch.from_numpy(head.weight).to(w.dtype)
        src_b = torch.from_numpy(head.bias).to(b.dtype)
        for c, row in enumerate(rows):
            w[row] = src_w[c]
            b[row] = src_b[c]
        layer.weight.copy_(w)
        layer.bias.copy_(b)


def train_probe_tagger(args, train_records: Sequence[dict], dev_records: Sequence[dict],
                       out: str | os.PathLike, *, train_path: str | os.PathLike | None = None,
                       dev_path: str | os.PathLike | None = None, resume: bool = False,
                       log: Callable[[str], None] = progress.log,
                       warn: Callable[[str], None] | None = None) -> dict:
    """``ner-selftrain --linear-probe``: fit the probe (``args``: a
    :class:`nertools.tagging.train.TrainArgs`; ``--max-steps`` = full-batch epochs, default
    200; ``--lr`` default 1e-3; ``--seed``, ``--max-length``, ``--window-overlap`` and
    ``--device`` apply, the other optimiser knobs do not) on ``train_records``, score it on
    ``dev_records`` (no selection: the fit has no dev step) and write the tagger directory
    ``out`` atomically; returns its ``nertools.json``."""
    from nertools.runtime.models import model_window, resolve_device
    from nertools.tagging.tagger import META_FORMAT, load_token_classifier, predict_probs, spans_for
    from nertools.tagging.train import prepare_run, save_model_dir, span_metrics
    from nertools.training.checkpoint import seed_everything

    args.check()
    if resume:
        raise UsageError("--resume does not apply to --linear-probe (the probe is fit in one go, "
                         "nothing is checkpointed)")
    if args.self_train:
        raise UsageError("--linear-probe and --self-train exclude each other")
    out_path, fingerprints, scheme, data_warnings = prepare_run(train_records, dev_records, out, resume=resume,
                                                                train_path=train_path, dev_path=dev_path,
                                                                warn=warn)
    epochs = args.max_steps or PROBE_EPOCHS
    lr = args.lr if args.lr is not None else PROBE_LR

    seed_everything(args.seed)
    log(f"loading {args.model} ...")
    model, tokenizer = load_token_classifier(args.model, scheme)
    device = resolve_device(args.device)
    model.to(device)
    model.eval()
    max_length = model_window(model, tokenizer, args.max_length)
    overlap = min(args.window_overlap, max(0, max_length // 2))
    log(f"embedding {len(train_records)} train sentences (frozen encoder) ...")
    vectors = word_vectors(model, tokenizer, train_records, max_length=max_length, overlap=overlap,
                           max_tokens=args.eval_max_tokens, device=device)
    targets = io_targets(train_records, scheme.labels)
    n_words = int(sum(len(t) for t in targets))
    log(f"fitting the linear probe: {n_words} words, {1 + len(scheme.labels)} classes "
        f"(None + {', '.join(scheme.labels)}), {epochs} full-batch Adam steps, lr {lr:g}")
    head = fit_linear_head(vectors, targets, scheme.labels, epochs=epochs, lr=lr, device=str(device))
    install_head(model, head, scheme)

    probs = predict_probs(model, tokenizer, dev_records, scheme=scheme, max_length=max_length, overlap=overlap,
                          max_tokens=args.eval_max_tokens, device=device)
    predicted_spans = [spans_for(r, p, scheme) for r, p in zip(dev_records, probs)]
    dev_metrics = span_metrics(dev_records, predicted_spans)
    tags = scheme.tags
    pred_words = [[None if tags[t] == "O" else tags[t][2:] for t in p.argmax(-1).tolist()] for p in probs]
    tok = token_scores([word_labels(r) for r in dev_records], pred_words, labels=scheme.labels)
    dev_metrics |= {"token_macro_f1": tok["macro_f1"], "token_micro_f1": tok["micro_f1"],
                    "token_per_label": tok["per_label"]}
    meta = {"format": META_FORMAT, "version": 1, "labels": list(scheme.labels), "tags": tags,
            "base_model": args.model, "max_length": max_length, "window_overlap": overlap,
            "training_args": asdict(args) | {"lr": lr, "max_steps": epochs},
            "probe": {"protocol": "NuNER Table 3 (frozen encoder, linear layer, IO classes)",
                      "optimizer": "Adam, full batch, no weight decay, zero init", "epochs": epochs, "lr": lr,
                      "train_words": n_words, "loss_first": head.losses[0], "loss_last": head.losses[-1],
                      "head_layout": "class X in I-X; B-X off (weight 0, bias -1e4); None in O"},
            "data": fingerprints, "dev_metrics": dev_metrics, "best_step": epochs, "best_stage": 1,
            "steps_run": epochs, "history": [],
            "selection": "none: the head after the last full-batch step (the protocol has no dev selection)",
            "warnings": list(data_warnings)}
    save_model_dir(model, tokenizer, meta, out_path)
    return meta
