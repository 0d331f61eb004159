"""Prompts sent to LLMs."""

from __future__ import annotations





def llm_prompt(type_word: str, label: str, n: int) -> list[dict]:
    return [
        {"role": "system", "content": "You are a precise assistant that lists named entities."},
        {"role": "user", "content": (
            f"List {n} different {type_word} names (named entities of type {label}) as they "
            f"would appear in text. Write one name per line, with no numbering, no explanations "
            f"and nothing else.")},
    ]
