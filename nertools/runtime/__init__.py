"""What the model-facing code of every method shares: model loading (names, folders, GGUF with its
de-quantised cache), device and dtype choice, token-budget batching and padding, progress and logging.
"""

#: Entries kept by the scorers' in-memory LRU memos (the masked scorer's template divergences per
#: (label, span string), the causal scorer's token ids per text piece). An entry is a few floats or
#: a few token ids, so the memos stay within tens of MB while holding the distinct strings of a
#: large corpus; the oldest entries go first.
MEMO_SIZE = 200_000
