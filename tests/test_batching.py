"""The one packer and padder (nertools.runtime.batching)."""

from __future__ import annotations

import random

import pytest
import torch

from nertools.runtime.batching import BudgetPacker, pack_by_token_budget, pack_stream, pad_batch


def _random_lengths(rng: random.Random, n: int, hi: int = 120) -> list[int]:
    return [rng.randint(1, hi) for _ in range(n)]


def _rule_from_scratch(lengths, order, budget, max_rows=None, max_padding=None, padding_min_rows=16):
    """The packing rule restated without running maxima: every check recomputed from the batch."""
    batches, cur = [], []
    for i in order:
        ln = lengths[i]
        rows = [lengths[j] for j in cur]
        closes = bool(cur) and (
            (budget is not None and max(rows + [ln]) * (len(cur) + 1) > budget)
            or (max_rows is not None and len(cur) >= max_rows)
            or (max_padding is not None and len(cur) >= padding_min_rows and ln - min(rows) > max_padding * ln))
        if closes:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


@pytest.mark.parametrize("budget", [1, 7, 50, 120, 333, 2048, 100_000])
def test_budget_never_exceeded_but_by_a_single_long_row(budget):
    rng = random.Random(budget)
    lengths = _random_lengths(rng, 500)
    batches = pack_by_token_budget(lengths, budget)
    for b in batches:
        cost = len(b) * max(lengths[i] for i in b)
        # the only batch allowed over the budget is one row that is longer than the budget alone
        assert cost <= budget or (len(b) == 1 and lengths[b[0]] > budget), (b, cost)
    over = [i for i, ln in enumerate(lengths) if ln > budget]
    assert all([i] in batches for i in over)


@pytest.mark.parametrize("seed", range(5))
def test_every_index_exactly_once_in_visiting_order(seed):
    rng = random.Random(seed)
    lengths = _random_lengths(rng, rng.randint(0, 400))
    default = pack_by_token_budget(lengths, 300, max_rows=20, max_padding=0.1, padding_min_rows=4)
    flat = [i for b in default for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    # default order: shortest first, equal lengths in index order (a stable sort)
    assert flat == sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    order = list(range(len(lengths)))
    rng.shuffle(order)
    custom = pack_by_token_budget(lengths, 300, order=order)
    assert [i for b in custom for i in b] == order
    assert all(b for b in custom)  # no empty batch


@pytest.mark.parametrize("seed", range(8))
def test_incremental_packer_equals_the_rule_recomputed(seed):
    rng = random.Random(100 + seed)
    lengths = _random_lengths(rng, 300, hi=rng.choice([10, 60, 200]))
    order = list(range(len(lengths)))
    if seed % 2:
        rng.shuffle(order)  # unsorted orders too (the causal scorer's own sort key)
    kw = dict(budget=rng.choice([None, 64, 500, 4096]), max_rows=rng.choice([None, 3, 16]),
              max_padding=rng.choice([None, 0.1, 0.5]), padding_min_rows=rng.choice([1, 2, 16]))
    budget = kw.pop("budget")
    got = pack_by_token_budget(lengths, budget, order=order, **kw)
    assert got == _rule_from_scratch(lengths, order, budget, **kw)


def test_padding_rule_boundary():
    # once a batch has padding_min_rows rows, a row more than max_padding x its own length longer
    # than the shortest row starts a new batch; exactly at the bound it still joins
    assert pack_by_token_budget([90, 90, 100], 10_000, max_padding=0.1, padding_min_rows=2) == [[0, 1, 2]]
    assert pack_by_token_budget([90, 90, 101], 10_000, max_padding=0.1, padding_min_rows=2) == [[0, 1], [2]]
    # below padding_min_rows rows the rule does not apply
    assert pack_by_token_budget([90, 90, 101], 10_000, max_padding=0.1, padding_min_rows=3) == [[0, 1, 2]]
    # off by default
    assert pack_by_token_budget([1] * 20 + [100], 10_000) == [list(range(21))]


def test_max_rows_and_no_budget():
    lengths = [5, 3, 9, 1, 7, 2, 8]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    assert pack_by_token_budget(lengths, None, max_rows=3) == [order[0:3], order[3:6], order[6:]]
    assert pack_by_token_budget(lengths, 10_000, max_rows=1) == [[i] for i in order]
    assert pack_by_token_budget([], 100) == []
    with pytest.raises(ValueError):
        pack_by_token_budget(lengths, 0)
    with pytest.raises(ValueError):
        pack_by_token_budget(lengths, 100, max_rows=0)


def test_stream_keeps_input_order_and_reads_lazily():
    rng = random.Random(7)
    items = [[0] * n for n in _random_lengths(rng, 200, hi=40)]
    lengths = [len(x) for x in items]
    batches = list(pack_stream(iter(items), 100))
    assert [x for b in batches for x in b] == items  # same objects, input order
    want = pack_by_token_budget(lengths, 100, order=range(len(items)))
    assert [[id(x) for x in b] for b in batches] == [[id(items[i]) for i in b] for b in want]

    read = []

    def source():
        for k in range(10):
            read.append(k)
            yield [0] * 10

    stream = pack_stream(source(), 30)  # three rows of 10 per batch
    assert len(next(stream)) == 3
    assert read == [0, 1, 2, 3]  # the first batch is out once the row that does not fit was read
    assert [len(b) for b in stream] == [3, 3, 1]


def test_packer_push_and_flush():
    p = BudgetPacker(10)
    assert p.push("a", 4) is None and p.push("b", 5) is None
    assert p.push("c", 6) == ["a", "b"]  # 6 x 3 rows > 10
    assert p.flush() == ["c"] and p.flush() is None


def test_pad_right_and_left():
    seqs = [[5, 6, 7], [8], (9, 10)]
    ids, mask = pad_batch(seqs, 1)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1], [9, 10, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    ids, mask = pad_batch(seqs, 1, side="left")
    assert ids.tolist() == [[5, 6, 7], [1, 1, 8], [1, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    ids, mask = pad_batch([[3]], 0, width=4, side="left")
    assert ids.tolist() == [[0, 0, 0, 3]] and mask.tolist() == [[0, 0, 0, 1]]
    ids, _ = pad_batch([[3, 4]], 0, device="cpu")
    assert ids.device.type == "cpu"
    for bad in (dict(seqs=[]), dict(seqs=[[1, 2]], width=1), dict(seqs=[[1]], side="middle")):
        with pytest.raises(ValueError):
            pad_batch(pad_id=0, **bad)


def test_left_padding_serves_a_causal_model():
    """With left padding (and position ids counted from each row's first real token) every row
    of a batch ends in the last column and its last hidden state equals the unpadded one."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    model = LlamaModel(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=64)).eval()
    seqs = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    ids, mask = pad_batch(seqs, 0, side="left")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        last = model(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state[:, -1]
        for r, s in enumerate(seqs):
            alone = model(input_ids=torch.tensor([s])).last_hidden_state[0, -1]
            assert torch.allclose(last[r], alone, atol=1e-5), r
