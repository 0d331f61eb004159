"""Taggers: the token-classification tagger, its training (with BOND self-training) and inference."""
