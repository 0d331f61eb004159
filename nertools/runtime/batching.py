"""Token-budget batching and padding: the one packer and the one padder of every model-facing method.

A forward pass over a padded batch costs about ``rows x longest row`` token positions, so
batches are bounded by that product (the *token budget*), not by a row count:

* :func:`pack_by_token_budget` groups row indices into batches, shortest rows first by default
  (similar lengths share a batch, so little padding is computed);
* :func:`pack_stream` does the same for a stream, in input order (records must come out in the
  order they came in, and only one batch is held at a time);
* :func:`pad_batch` turns token-id sequences into ``(input_ids, attention_mask)`` tensors,
  padded on the right (encoders, scoring) or on the left (generation with a decoder, where
  every row must end at the last column).

The packing rule (:class:`BudgetPacker`), for each row in visiting order: the row joins the
current batch unless

1. the batch's rows plus this one, times the longest of them, would exceed ``budget``;
2. the batch already has ``max_rows`` rows;
3. ``max_padding`` is set, the batch has at least ``padding_min_rows`` rows, and the row is
   longer than the batch's shortest row by more than ``max_padding`` times its own length
   (``length - shortest > max_padding * length``).

Otherwise the batch is closed and the row starts the next one. So no batch exceeds the
budget, except a single row that is longer than the whole budget on its own: it becomes a
batch of one (it has to run somewhere; callers that cannot take it check lengths first).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")

#: The masked scorer's padding rule: a batch of at least this many rows also ends where the
#: next row is more than 10% longer than its shortest row (X-NER timing workload: 17% padded
#: positions -> 4%). Below that many rows a batch is too small to be worth splitting.
PADDING_MIN_ROWS = 16


class BudgetPacker:
    """The packing rule of this module, one row at a time (see the module doc).

    ``push(item, length)`` adds a row and returns the batch it closed (or ``None``);
    ``flush()`` returns the last, unfinished batch (or ``None``).
    """

    def __init__(self, budget: int | None, *, max_rows: int | None = None, max_padding: float | None = None,
                 padding_min_rows: int = PADDING_MIN_ROWS):
        if budget is not None and budget < 1:
            raise ValueError(f"token budget must be >= 1, not {budget}")
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, not {max_rows}")
        self.budget = budget
        self.max_rows = max_rows
        self.max_padding = max_padding
        self.padding_min_rows = padding_min_rows
        self.batch: list = []
        self.longest = 0   # longest row of the current batch (its padded width)
        self.shortest = 0  # shortest row of the current batch

    def fits(self, length: int) -> bool:
        """Whether a row of ``length`` tokens may join the current batch."""
        n = len(self.batch)
        if not n:
            return True
        if self.budget is not None and max(self.longest, length) * (n + 1) > self.budget:
            return False
        if self.max_rows is not None and n >= self.max_rows:
            return False
        if (self.max_padding is not None and n >= self.padding_min_rows
                and length - self.shortest > self.max_padding * length):
            return False
        return True

    def push(self, item: Any, length: int) -> list | None:
        done = None
        if not self.fits(length):
            done = self.batch
            self.batch = []
        if not self.batch:
            self.longest = self.shortest = length
        self.batch.append(item)
        self.longest = max(self.longest, length)
        self.shortest = min(self.shortest, length)
        return done

    def flush(self) -> list | None:
        done, self.batch = (self.batch or None), []
        return done


def pack_by_token_budget(lengths: Sequence[int], budget: int | None, *, order: Iterable[int] | None = None,
                         max_rows: int | None = None, max_padding: float | None = None,
                         padding_min_rows: int = PADDING_MIN_ROWS) -> list[list[int]]:
    """Indices ``0 .. len(lengths) - 1`` grouped into batches (lists of indices).

    :param lengths: tokens per row (the padded width of a batch is its longest row).
    :param budget: most ``rows x longest row`` per batch; ``None``: no token budget (then
        ``max_rows`` alone sizes the batches).
    :param order: the order rows are visited and batched in, each index exactly once
        (default: shortest first, equal lengths in index order).
    :param max_rows: most rows per batch (``None``: no limit).
    :param max_padding: the padding rule (3. in the module doc); ``None``: off.
    :param padding_min_rows: rows a batch needs before the padding rule applies.

    Batches come out in visiting order and rows keep that order inside a batch.
    """
    if order is None:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    packer = BudgetPacker(budget, max_rows=max_rows, max_padding=max_padding, padding_min_rows=padding_min_rows)
    batches = []
    for i in order:
        done = packer.push(i, lengths[i])
        if done is not None:
            batches.append(done)
    last = packer.flush()
    if last is not None:
        batches.append(last)
    return batches


def pack_stream(items: Iterable[T], budget: int | None, *, length: Callable[[T], int] = len,
                max_rows: int | None = None) -> Iterator[list[T]]:
    """Batches of ``items`` in input order under the same rule (``length(item)`` tokens each).

    Lazy: an item is read only when the batch before it is full or it can join it, so a
    batch is yielded as soon as the first item that does not fit has been read.
    """
    packer = BudgetPacker(budget, max_rows=max_rows)
    for item in items:
        done = packer.push(item, length(item))
        if done is not None:
            yield done
    last = packer.flush()
    if last is not None:
        yield last


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0, *, side: str = "right", width: int | None = None,
              device: Any = None):
    """``(input_ids, attention_mask)``: int64 tensors ``[len(seqs), width]``.

    ``width`` defaults to the longest sequence. ``side="right"`` puts each sequence at the
    start of its row and ``pad_id`` after it; ``side="left"`` puts the padding first, so that
    every sequence ends in the last column (what batched generation with a decoder needs; the
    caller then gives position ids that start at each row's first real token). The mask is
    1 on real tokens and 0 on padding. ``device``: where the tensors go (default: CPU).
    """
    import torch

    if side not in ("right", "left"):
        raise ValueError(f"padding side must be 'right' or 'left', not {side!r}")
    if not seqs:
        raise ValueError("cannot pad an empty batch")
    longest = max(len(s) for s in seqs)
    if width is None:
        width = longest
    elif width < longest:
        raise ValueError(f"padding width {width} is shorter than the longest sequence ({longest})")
    ids, mask = [], []
    for s in seqs:
        s = list(s)
        fill = width - len(s)
        if side == "right":
            ids.append(s + [pad_id] * fill)
            mask.append([1] * len(s) + [0] * fill)
        else:
            ids.append([pad_id] * fill + s)
            mask.append([0] * fill + [1] * len(s))
    ids_t = torch.tensor(ids, dtype=torch.long)
    mask_t = torch.tensor(mask, dtype=torch.long)
    if device is not None:
        ids_t, mask_t = ids_t.to(device), mask_t.to(device)
    return ids_t, mask_t
