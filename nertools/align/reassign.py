"""Label reassignment for token classifiers: a target tagger that keeps the source knowledge.

LAR (methods-spec §4.5) fine-tunes the *source* model M_s on the target data, and its output
``source : span -> target`` makes every target type start from what the source type it is
aligned to already recognises. The token-classifier equivalent (``ner-align train --mode
classifier``): the backbone is the source tagger's (a ``ner-selftrain`` directory), and the
target head's rows are initialised from the aligned source rows —

* ``O`` <- the source ``O`` row;
* ``B-t`` <- ``B-assign[t]``, ``I-t`` <- ``I-assign[t]`` (weights and bias), plus Gaussian
  noise of standard deviation ``noise`` x (the source head's weight std; default 1.0) so that
  target types sharing one source type start apart (0.1 left them near-identical, and on MIT
  Restaurant 5%/10% they never separated: the README's classifier table, 0.1 vs 1.0);
* a target type whose assigned source type the tagger does not have (e.g. the table's
  miscellaneous type for a tagger without one) gets fresh rows (counted in the metadata).

Then it is an ordinary tagger run (:func:`nertools.tagging.train.train_tagger`: dev-F1
selection, checkpoint/resume, atomic directory); the result is a tagger directory that
``ner-tag`` reads, with an ``align`` key in its ``nertools.json`` (table, which rows were
copied). ``ori=True`` is the baseline of the ablation: the same source backbone with a
fresh head (target types directly).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from nertools.errors import DataError, NertoolsError
from nertools.runtime import progress
from nertools.tagging.tagger import LabelScheme, read_meta


def find_head(model, num_labels: int):
    """``(attribute name, nn.Linear)`` of a token classifier's output layer
    (``classifier`` for BERT-likes, ``score`` for decoder token classifiers)."""
    import torch

    for name in ("classifier", "score"):
        layer = getattr(model, name, None)
        if isinstance(layer, torch.nn.Linear) and layer.out_features == num_labels:
            return name, layer
    raise NertoolsError(f"cannot find the token-classification head of {type(model).__name__} "
                        f"(a Linear 'classifier' or 'score' with {num_labels} outputs)")


def aligned_rows(source: LabelScheme, target: LabelScheme, assign: dict) -> list[int | None]:
    """For each target tag id, the source tag id its row is copied from (``None``: fresh)."""
    src_index = {t: i for i, t in enumerate(source.tags)}
    rows: list[int | None] = []
    for tag in target.tags:
        if tag == "O":
            rows.append(src_index["O"])
            continue
        prefix, _, label = tag.partition("-")
        src_label = assign.get(label)
        rows.append(src_index.get(f"{prefix}-{src_label}") if src_label is not None else None)
    return rows


def reinit_head(model, source: LabelScheme, target: LabelScheme, assign: dict | None, *,
                noise: float = 1.0, seed: int = 42) -> dict:
    """Replace ``model``'s head (``source.num_tags`` outputs) by one for ``target``.

    With ``assign`` the rows are copied as the module doc says; ``assign=None`` gives a
    fresh head (the model's own initialisation). The config's label maps are updated.
    Returns ``{"copied": {target tag: source tag}, "fresh": [target tags]}``.
    """
    import torch

    name, old = find_head(model, source.num_tags)
    new = torch.nn.Linear(old.in_features, target.num_tags, bias=old.bias is not None)
    gen = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        new.weight.normal_(0.0, std, generator=gen)
        if new.bias is not None:
            new.bias.zero_()
    copied, fresh = {}, []
    if assign is not None:
        rows = aligned_rows(source, target, assign)
        scale = noise * float(old.weight.detach().float().std())
        with torch.no_grad():
            for i, r in enumerate(rows):
                tag = target.tags[i]
                if r is None:
                    fresh.append(tag)
                    continue
                new.weight[i] = old.weight[r] + scale * torch.randn(old.in_features, generator=gen)
                if new.bias is not None:
                    new.bias[i] = old.bias[r]
                copied[tag] = source.tags[r]
    else:
        fresh = list(target.tags)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    setattr(model, name, new)
    tags = target.tags
    model.config.num_labels = len(tags)
    model.config.id2label = dict(enumerate(tags))
    model.config.label2id = {t: i for i, t in enumerate(tags)}
    if hasattr(model, "num_labels"):
        model.num_labels = len(tags)
    return {"copied": copied, "fresh": fresh}


def train_classifier(args, source_model: str | os.PathLike, train_records: Sequence[dict],
                     dev_records: Sequence[dict], out: str | os.PathLike, *, table: dict | None,
                     ori: bool = False, noise: float = 1.0, train_path=None, dev_path=None,
                     resume: bool = False, log: Callable[[str], None] = progress.log) -> dict:
    """Train a target tagger from the source tagger directory ``source_model`` (see the
    module doc). ``args`` is a :class:`nertools.tagging.train.TrainArgs` (its ``model`` is
    set to ``source_model``); ``table`` the parsed alignment table (required unless ``ori``).
    Returns the written ``nertools.json``."""
    from nertools.align.linearize import table_fields
    from nertools.runtime.models import TOKEN_CLASSIFIER, load_pretrained, prepare_tokenizer
    from nertools.runtime.progress import quiet_transformers
    from nertools.tagging.train import train_tagger

    meta = read_meta(source_model)
    source = LabelScheme(tuple(meta["labels"]))
    assign = None
    align_meta: dict = {"mode": "classifier", "ori": ori, "source_model": str(source_model),
                        "source_labels": list(source.labels), "noise": noise}
    if not ori:
        if table is None:
            raise NertoolsError("--mode classifier needs --table (or --ori for the baseline)")
        _sources, targets, assign, candidates = table_fields(table)
        gold = sorted({s["label"] for r in train_records for s in r.get("spans", [])})
        unknown = [g for g in gold if g not in assign]
        if unknown:
            raise DataError(f"gold label(s) {', '.join(unknown)} are not in the alignment table "
                            f"({', '.join(sorted(assign))}); add them to the table (an override) or "
                            "remove those spans", path=None if train_path is None else str(train_path))
        align_meta |= {"assign": assign, "candidates": candidates, "table_target_labels": targets}
    args.model = str(source_model)

    def build(scheme: LabelScheme):
        quiet_transformers()
        model, tokenizer = load_pretrained(str(source_model), TOKEN_CLASSIFIER, subject=f"tagger {source_model}")
        prepare_tokenizer(tokenizer)
        init = reinit_head(model, source, scheme, assign, noise=noise, seed=args.seed)
        align_meta["head_init"] = init
        if assign is not None:
            log(f"head: {len(init['copied'])} of {scheme.num_tags} rows copied from the source head"
                + (f"; fresh rows for {', '.join(init['fresh'])}" if init["fresh"] else ""))
        else:
            log(f"head: fresh ({scheme.num_tags} rows; --ori)")
        return model, tokenizer

    return train_tagger(args, train_records, dev_records, out, train_path=train_path, dev_path=dev_path,
                        resume=resume, log=log, build_model=build, extra_meta={"align": align_meta})
