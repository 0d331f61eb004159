"""One client for OpenAI-compatible chat endpoints: retries (timeouts, connection errors, HTTP 429
and 5xx, honouring ``Retry-After``), a per-request timeout and an on-disk response cache keyed by
the full request (a cache hit sends no request).

:func:`request_completion` returns a :class:`Completion` (text, token usage, whether it came
from the cache); :func:`chat_completion` is the text-only shorthand. The API key is sent in the
``Authorization`` header only: it is not part of the cache key or the cache entry, and it is
blanked out of every error message.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from nertools.core.atomic import write_bytes_atomic
from nertools.core.cache import cache_dir
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
    max_retry_wait: float = 120.0  # longest wait honoured from a Retry-After header

    def __repr__(self) -> str:  # never print the key
        return (f"LLMConfig(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key={'***' if self.api_key else None}, timeout={self.timeout}, retries={self.retries})")


@dataclass
class Completion:
    """One chat completion: the answer text and what it cost."""

    content: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    attempts: int = 1


class LLMRequestError(NertoolsError):
    """A request that failed for good: ``status`` is the HTTP status (``None``: timeout or
    connection failure); ``retryable`` says whether retries were tried and exhausted."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def default_cache_dir() -> str:
    """``llm/`` under the cache root (:func:`nertools.core.cache.cache_root`)."""
    return str(cache_dir("llm"))


def read_api_key(value: str | None = None, file: str | None = None, env: str = "OPENAI_API_KEY") -> str | None:
    """The API key: ``value``, else the first line of ``file``, else ``$env``; ``None`` if none."""
    if value:
        return value.strip()
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as e:
            raise NertoolsError(f"cannot read the API key file {file}: {e.strerror or e}") from None
        key = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise NertoolsError(f"the API key file {file} is empty")
        return key
    return os.environ.get(env) or None


def request_body(cfg: LLMConfig, messages: list[dict], response_format: dict | None = None) -> dict:
    """The JSON body of a chat-completions request (without the key)."""
    body: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                            "max_tokens": cfg.max_tokens}
    if response_format is not None:
        body["response_format"] = response_format
    return body


def _cache_key(cfg: LLMConfig, messages: list[dict], response_format: dict | None = None) -> str:
    payload: dict[str, Any] = {"base_url": cfg.base_url.rstrip("/"), "model": cfg.model,
                               "messages": messages, "temperature": cfg.temperature,
                               "max_tokens": cfg.max_tokens}
    if response_format is not None:  # absent: the same key as before structured output existed
        payload["response_format"] = response_format
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def cache_path(cfg: LLMConfig, messages: list[dict], response_format: dict | None = None) -> Path | None:
    if not cfg.cache_dir:
        return None
    return Path(cfg.cache_dir) / f"{_cache_key(cfg, messages, response_format)}.json"


def read_cache(cfg: LLMConfig, messages: list[dict], response_format: dict | None = None) -> Completion | None:
    path = cache_path(cfg, messages, response_format)
    if path is None or not path.exists():
        return None
    try:
        entry = orjson.loads(path.read_bytes())
        content = entry["content"]
        if not isinstance(content, str):
            return None
        usage = entry.get("usage") or {}
        return Completion(content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                          entry.get("finish_reason"), cached=True, attempts=0)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, OSError):
        return None  # a damaged cache entry is simply fetched again


def write_cache(cfg: LLMConfig, messages: list[dict], response_format: dict | None, comp: Completion) -> None:
    path = cache_path(cfg, messages, response_format)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    request: dict[str, Any] = {"model": cfg.model, "messages": messages}
    if response_format is not None:
        request["response_format"] = response_format
    write_bytes_atomic(path, orjson.dumps({
        "request": request, "content": comp.content, "finish_reason": comp.finish_reason,
        "usage": {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens}}))


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` header."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(cfg: LLMConfig):
    import openai

    key = (cfg.base_url, cfg.api_key, cfg.timeout)
    with _CLIENTS_LOCK:
        c = _CLIENTS.get(key)
        if c is None:
            c = openai.OpenAI(base_url=cfg.base_url,
                              api_key=cfg.api_key or os.environ.get("OPENAI_API_KEY") or "none",
                              timeout=cfg.timeout, max_retries=0)
            _CLIENTS[key] = c
        return c


def _scrub(text: str, cfg: LLMConfig) -> str:
    key = cfg.api_key or os.environ.get("OPENAI_API_KEY")
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return text


def request_completion(cfg: LLMConfig, messages: list[dict], *, response_format: dict | None = None,
                       log: Callable[[str], None] | None = None,
                       sleep: Callable[[float], None] = time.sleep) -> Completion:
    """One chat completion, from the on-disk cache when possible.

    Timeouts, connection errors, HTTP 429 and 5xx are retried ``cfg.retries`` times with
    exponential back-off, or after the ``Retry-After`` the server asked for when that is
    longer (at most ``cfg.max_retry_wait``); other HTTP errors fail at once. Only
    successful answers are cached. Raises :class:`LLMRequestError`.
    """
    import openai

    hit = read_cache(cfg, messages, response_format)
    if hit is not None:
        return hit
    client = _client(cfg)
    extra: dict[str, Any] = {} if response_format is None else {"response_format": response_format}
    attempt = 0
    while True:
        try:
            resp = client.chat.completions.create(model=cfg.model, messages=messages,
                                                  temperature=cfg.temperature,
                                                  max_tokens=cfg.max_tokens, **extra)
            choice = resp.choices[0] if resp.choices else None
            content = choice.message.content if choice is not None and choice.message is not None else None
            if content is None:
                raise LLMRequestError(f"LLM at {cfg.base_url} returned no message content", status=200)
            usage = getattr(resp, "usage", None)
            comp = Completion(content, int(getattr(usage, "prompt_tokens", 0) or 0),
                              int(getattr(usage, "completion_tokens", 0) or 0),
                              getattr(choice, "finish_reason", None), attempts=attempt + 1)
            break
        except (openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError) as e:
            status = getattr(e, "status_code", None)
            retryable = status is None or status == 429 or status >= 500
            what = (f"HTTP {status}" if status is not None else
                    "timed out" if isinstance(e, openai.APITimeoutError) else "connection failed")
            if not retryable or attempt >= cfg.retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                detail = _scrub(str(e).splitlines()[0][:200] if str(e) else "", cfg)
                raise LLMRequestError(f"LLM request to {cfg.base_url} failed{tries}: {what}: {detail}",
                                      status=status, retryable=retryable) from None
            wait = cfg.retry_wait * (2 ** attempt)
            asked = retry_after_seconds(getattr(getattr(e, "response", None), "headers", None))
            if asked is not None:
                wait = max(wait, min(asked, cfg.max_retry_wait))
            if log:
                log(f"LLM request {what}; retry {attempt + 1}/{cfg.retries} in {wait:.1f}s")
            sleep(wait)
            attempt += 1
        except (ValueError, TypeError) as e:  # an answer that is not a chat completion
            raise LLMRequestError(f"LLM at {cfg.base_url} sent a malformed answer: "
                                  f"{_scrub(str(e).splitlines()[0][:200], cfg)}", status=200) from None
    write_cache(cfg, messages, response_format, comp)
    return comp


def chat_completion(cfg: LLMConfig, messages: list[dict], *, log: Callable[[str], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> str:
    """The answer text of one chat completion (see :func:`request_completion`)."""
    return request_completion(cfg, messages, log=log, sleep=sleep).content


@dataclass
class TokenMeter:
    """Thread-safe token accounting over many requests (cache hits counted apart)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cache_hits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, comp: Completion) -> None:
        with self._lock:
            if comp.cached:
                self.cache_hits += 1
            else:
                self.requests += 1
                self.prompt_tokens += comp.prompt_tokens
                self.completion_tokens += comp.completion_tokens

    def cost(self, price_prompt: float | None, price_completion: float | None) -> float | None:
        """Price of the tokens sent (per 1,000 tokens), or ``None`` without prices."""
        if price_prompt is None and price_completion is None:
            return None
        return (self.prompt_tokens * (price_prompt or 0.0) + self.completion_tokens * (price_completion or 0.0)) / 1000.0
