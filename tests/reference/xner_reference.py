"""A slow, literal re-implementation of the released X-NER scoring loop.

Written from the description of ``mining.py::fastndd_search`` (KomeijiForce/X-NER) in
``shared/fixtures/xner-official/README.md``, keeping its *execution strategy*:

* per sentence and label, every candidate builds its own rows (no sharing: duplicate rows
  are recomputed, the seed side of the template test is recomputed for every span);
* rows are right-padded with id 0 to the longest row of the sentence (with an attention
  mask) and run 128 per forward pass;
* the full model runs, i.e. the vocabulary projection is applied at every position, and
  the masked positions are picked from the logits afterwards;
* ``softmax(logits / T)``, ``KL = sum p * log(p / q)``, plain mean per candidate.

It exists as the baseline of ``benchmarks/xner_speed.py`` and as an independent reference
for the tests of :mod:`nertools.xner.masked` (which must give the same numbers, far faster).
It is not used by any command.
"""

from __future__ import annotations

from typing import Sequence

from nertools.xner.masked import boundary_rows, fill_template, wordpiece_detokenize


def _create_query(tokenizer, sent: str, new_sent: str, template: str, full: bool):
    """The released ``create_query``: masked rows of ``sent`` (P) and ``new_sent`` (Q)."""
    ids = tokenizer(sent)["input_ids"]
    new_ids = tokenizer(new_sent)["input_ids"]
    template_ids = tokenizer(template)["input_ids"]
    left, right = boundary_rows(ids, template_ids, full)
    p_rows, q_rows = [], []
    for pos in left:
        p_rows.append(_masked(ids, pos, tokenizer.mask_token_id))
        q_rows.append(_masked(new_ids, pos, tokenizer.mask_token_id))
    for k in right:
        p_rows.append(_masked(ids, -k, tokenizer.mask_token_id))
        q_rows.append(_masked(new_ids, -k, tokenizer.mask_token_id))
    return p_rows, q_rows


def _masked(ids: Sequence[int], pos: int, mask_id: int) -> list[int]:
    row = list(ids)
    row[pos] = mask_id
    return row


def reference_record_scores(model, tokenizer, record: dict, seed_text: str, label_word: str, *,
                            official: bool = True, template: str | None = "The [LABEL] name: [SEED]",
                            full_context: bool = False, temperature: float = 2.0,
                            batch_rows: int = 128) -> list[float]:
    """Scores of every candidate of ``record`` for one seed, computed the released way.

    ``official=True`` builds strings from the tokens with WordPiece detokenisation (as
    released); ``False`` uses the record's text (the ``2way``/``1way`` methods).
    ``template=None`` leaves out the template test (``1way``).
    """
    import torch

    words = [t["text"] for t in record["tokens"]]
    text = record["text"]
    p_all, q_all, cuts = [], [], []
    for cand in record["candidates"]:
        if official:
            a, b = cand["token_start"], cand["token_end"] + 1
            sent = wordpiece_detokenize(words)
            span = wordpiece_detokenize(words[a:b])
            new_sent = wordpiece_detokenize(words[:a] + [seed_text] + words[b:])
            x_sent = wordpiece_detokenize(words[:a] + ["X"] + words[b:])
        else:
            s, e = cand["start"], cand["end"]
            sent, span = text, text[s:e]
            new_sent, x_sent = text[:s] + seed_text + text[e:], text[:s] + "X" + text[e:]
        p, q = _create_query(tokenizer, sent, new_sent, x_sent, full_context)
        n = len(p)
        if template is not None:
            p2, q2 = _create_query(tokenizer, fill_template(template, label_word, seed_text),
                                   fill_template(template, label_word, span),
                                   fill_template(template, label_word, "X"), True)
            p, q = p + p2, q + q2
            n += len(p2)
        p_all += p
        q_all += q
        cuts.append(n)
    if not cuts:
        return []
    rows = p_all + q_all
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        att[i, :len(r)] = 1
    mask = ids.eq(tokenizer.mask_token_id)
    probs = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_rows):
            logits = model(input_ids=ids[i:i + batch_rows], attention_mask=att[i:i + batch_rows]).logits
            probs.append((logits[mask[i:i + batch_rows]] / temperature).softmax(-1))
    probs = torch.cat(probs, 0)
    half = len(p_all)
    p, q = probs[:half], probs[half:]
    divs = (p * (p / q).log()).sum(-1)
    out, c = [], 0
    for n in cuts:
        out.append(divs[c:c + n].mean().item())
        c += n
    return out
