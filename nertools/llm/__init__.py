"""LLM access shared by every method: the OpenAI-compatible client, prompts and answer parsing."""
