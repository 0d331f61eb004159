"""X-NER: candidate spans, seeds, divergence scorers (masked and causal LMs) and pseudo labels."""
