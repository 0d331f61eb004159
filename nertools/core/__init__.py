"""The record spine: records, JSONL streams, tag schemes, label words, spec files, atomic writes.

Nothing here imports torch or transformers; every command can use it.
"""
