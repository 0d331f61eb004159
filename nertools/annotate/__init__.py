"""LLM annotation (``ner-annotate``): prompts, answer parsing, alignment of answers to tokens,
generation backends (in-process causal LM, OpenAI-compatible endpoint, Batch-API files) and the
resumable run driver."""
