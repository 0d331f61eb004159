"""One client for OpenAI-compatible chat endpoints: retries (timeouts, connection errors, HTTP 429
and 5xx), a per-request timeout and an on-disk response cache (a cache hit sends no request)."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson

from nertools.errors import NertoolsError


# --------------------------------------------------------------------------- LLM backend

@dataclass
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 3
    retry_wait: float = 1.0       # seconds before the first retry; doubles each time
    cache_dir: str | None = None  # None: no cache
    temperature: float = 0.0
    max_tokens: int = 2048


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nertools", "llm")


def _cache_key(cfg: LLMConfig, messages: list[dict]) -> str:
    payload = orjson.dumps({"base_url": cfg.base_url.rstrip("/"), "model": cfg.model,
                            "messages": messages, "temperature": cfg.temperature,
                            "max_tokens": cfg.max_tokens}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


def chat_completion(cfg: LLMConfig, messages: list[dict], *, log: Callable[[str], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> str:
    """The answer text of one chat completion, from the on-disk cache when possible.

    Timeouts, connection errors, HTTP 429 and 5xx are retried ``cfg.retries`` times with
    exponential back-off; other HTTP errors fail at once. Only successful answers are cached.
    """
    import openai

    key = _cache_key(cfg, messages)
    cache_file = Path(cfg.cache_dir) / f"{key}.json" if cfg.cache_dir else None
    if cache_file is not None and cache_file.exists():
        try:
            return orjson.loads(cache_file.read_bytes())["content"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged cache entry is simply fetched again
    client = openai.OpenAI(base_url=cfg.base_url, api_key=cfg.api_key or os.environ.get("OPENAI_API_KEY") or "none",
                           timeout=cfg.timeout, max_retries=0)
    attempt = 0
    while True:
        try:
            resp = client.chat.completions.create(model=cfg.model, messages=messages,
                                                  temperature=cfg.temperature,
                                                  max_tokens=cfg.max_tokens)
            content = resp.choices[0].message.content if resp.choices else None
            if content is None:
                raise NertoolsError(f"LLM at {cfg.base_url} returned no message content")
            break
        except (openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError) as e:
            status = getattr(e, "status_code", None)
            retryable = status is None or status == 429 or status >= 500
            what = (f"HTTP {status}" if status is not None else
                    "timed out" if isinstance(e, openai.APITimeoutError) else "connection failed")
            if not retryable or attempt >= cfg.retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise NertoolsError(f"LLM request to {cfg.base_url} failed{tries}: {what}: "
                                    f"{str(e).splitlines()[0][:200]}") from None
            wait = cfg.retry_wait * (2 ** attempt)
            if log:
                log(f"LLM request {what}; retry {attempt + 1}/{cfg.retries} in {wait:.1f}s")
            sleep(wait)
            attempt += 1
    if cache_file is not None:
        from nertools.core.atomic import write_bytes_atomic

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cache_file, orjson.dumps({"request": {"model": cfg.model, "messages": messages},
                                                     "content": content}))
    return content
