"""What the model-facing code of every method shares: model loading (names, folders, GGUF with its
de-quantised cache), device and dtype choice, token-budget batching and padding, progress and logging.
"""
