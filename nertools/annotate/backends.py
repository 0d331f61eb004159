"""Where completions come from: an in-process causal LM (``local``), an OpenAI-compatible
endpoint (``openai``), or the files of the OpenAI Batch API (``batch``).

Each backend's :meth:`run` takes ``(key, messages)`` jobs and yields ``(key, Answer)`` in the
order of the jobs. An :class:`Answer` with ``fatal=True`` (an endpoint that stayed down) means
no new job is started; the jobs already in flight still come back.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson

from nertools.annotate.prompts import flatten
from nertools.errors import DataError, NertoolsError
from nertools.llm.client import (Completion, LLMConfig, LLMRequestError, TokenMeter, request_body,
                                 request_completion)


@dataclass
class Answer:
    content: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    error: str | None = None      # why there is no content
    fatal: bool = False           # the backend cannot go on (endpoint down)

    @classmethod
    def of(cls, comp: Completion) -> "Answer":
        return cls(comp.content, comp.prompt_tokens, comp.completion_tokens, comp.finish_reason, comp.cached)


Job = tuple[Any, list]

#: HTTP statuses that concern one request only (e.g. a prompt longer than the model's context).
PER_REQUEST_STATUSES = (400, 413, 422)


# --------------------------------------------------------------------------- local

class LocalBackend:
    """Greedy generation with a causal LM in this process.

    Prompts go through the tokenizer's chat template when it has one, else they are flattened
    into a plain completion prompt (:func:`nertools.annotate.prompts.flatten`). Jobs are read
    ``chunk`` at a time, sorted by length and packed into batches of at most ``batch_size``
    prompts and ``batch_tokens`` padded tokens (prompt + ``max_new_tokens`` per row), LEFT
    padded. A prompt that does not fit the model's context with ``max_new_tokens`` is
    answered with an error (never truncated).

    ``prefix_cache`` (default on): the prompts' shared beginning (instruction, demonstration,
    examples: the longest common token prefix of a chunk's prompts, at least
    ``min_prefix`` tokens) is run once and its key-value cache reused by every batch whose
    prompts all start with it (:mod:`nertools.runtime.kvcache`); each row then carries only
    its own remainder, left padded after the prefix. Greedy answers are those of the full
    prompts. ``prefix_tokens_reused`` counts the prompt tokens taken from the cache instead of
    being run (the prefix itself is run once each time it is made: ``prefix_tokens_run``).
    """

    name = "local"

    def __init__(self, lm, *, max_new_tokens: int = 128, batch_size: int = 8, batch_tokens: int = 4096,
                 repetition_penalty: float = 1.0, chunk: int | None = None, prefix_cache: bool = True,
                 min_prefix: int = 16):
        self.lm = lm
        self.prefix_cache = prefix_cache
        self.min_prefix = max(1, min_prefix)
        self._prefix: tuple[list[int], Any] | None = None   # (ids, one-row cache)
        self.prefix_tokens_reused = 0
        self.prefix_tokens_run = 0
        self.model_name = lm.name
        self.max_new_tokens = max_new_tokens
        self.batch_size = max(1, batch_size)
        self.batch_tokens = max(1, batch_tokens)
        self.repetition_penalty = repetition_penalty
        self.chunk = chunk or 2 * self.batch_size
        tok = lm.tokenizer
        self.use_chat = bool(getattr(tok, "chat_template", None))
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if self.pad_id is None:
            self.pad_id = 0
        self.eos_id = tok.eos_token_id
        cfg = lm.model.config
        ctx = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        tmax = getattr(tok, "model_max_length", None)
        if not ctx and tmax and tmax < 10 ** 8:
            ctx = tmax
        self.context = int(ctx) if ctx else None
        self.meter = TokenMeter()

    def encode(self, messages: list[dict]) -> list[int]:
        tok = self.lm.tokenizer
        if self.use_chat:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(flatten(messages))["input_ids"])

    def generate(self, prompts: Sequence[list[int]], prefix: tuple[list[int], Any] | None = None) -> list[Answer]:
        """Greedy completions of token-id prompts, one batch (left padded). ``prefix``: ``(ids,
        cache)`` of a beginning every prompt shares (and goes beyond): only the rest of each
        prompt is run, padded on the left of that rest."""
        import torch
        from transformers import GenerationConfig

        from nertools.runtime.batching import pad_batch
        from nertools.runtime.kvcache import cache_kwarg, repeated

        lead = list(prefix[0]) if prefix is not None else []
        ids, mask = pad_batch([p[len(lead):] for p in prompts], self.pad_id, side="left")
        if lead:  # the shared prefix, unpadded, before each row's left-padded rest
            ids = torch.cat([torch.tensor([lead] * len(prompts), dtype=ids.dtype), ids], dim=1)
            mask = torch.cat([torch.ones(len(prompts), len(lead), dtype=mask.dtype), mask], dim=1)
        total = ids.shape[1]
        gen = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                               repetition_penalty=self.repetition_penalty, pad_token_id=self.pad_id,
                               eos_token_id=self.eos_id)
        dev = self.lm.device
        extra = {}
        if prefix is not None:
            extra[cache_kwarg(self.lm.model)] = repeated(prefix[1], len(prompts))
            self.prefix_tokens_reused += len(lead) * len(prompts)
        with torch.inference_mode():
            out = self.lm.model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                                         generation_config=gen, **extra)
        answers = []
        for r, p in enumerate(prompts):
            new = out[r, total:].tolist()
            finish = "length"
            if self.eos_id is not None and self.eos_id in new:
                new = new[:new.index(self.eos_id)]
                finish = "stop"
            while new and new[-1] == self.pad_id and self.pad_id != self.eos_id:
                new.pop()
            text = self.lm.tokenizer.decode(new, skip_special_tokens=True)
            a = Answer(text, len(p), len(new), finish)
            self.meter.add(Completion(text, len(p), len(new), finish))
            answers.append(a)
        return answers

    def shared_prefix(self, prompts: Sequence[list[int]]) -> tuple[list[int], Any] | None:
        """The cached prefix that every prompt starts with (and goes beyond), made anew from
        these prompts' longest common beginning when the one in hand does not fit; None when
        the prefix cache is off or the common beginning is shorter than ``min_prefix``."""
        from nertools.runtime.kvcache import common_prefix_length, prefix_cache

        if not self.prefix_cache or not prompts:
            return None
        if self._prefix is not None:
            lead = self._prefix[0]
            if all(len(p) > len(lead) and p[:len(lead)] == lead for p in prompts):
                return self._prefix
        if len(prompts) < 2:
            return None
        n = common_prefix_length(prompts)
        if n < self.min_prefix:
            return None
        lead = list(prompts[0][:n])
        self._prefix = (lead, prefix_cache(self.lm, lead))
        self.prefix_tokens_run += n
        return self._prefix

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped into batches: by length, within ``batch_size`` and ``batch_tokens``."""
        from nertools.runtime.batching import pack_by_token_budget

        # a row's width is its prompt plus the tokens it may generate (left padding, greedy)
        return pack_by_token_budget([n + self.max_new_tokens for n in lengths], self.batch_tokens,
                                    max_rows=self.batch_size)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Any, Answer]]:
        it = iter(jobs)
        while True:
            chunk = [j for _, j in zip(range(self.chunk), it)]
            if not chunk:
                return
            encoded = [self.encode(msgs) for _, msgs in chunk]
            answers: list[Answer | None] = [None] * len(chunk)
            ok = []
            for i, ids in enumerate(encoded):
                if self.context and len(ids) + self.max_new_tokens > self.context:
                    answers[i] = Answer(error=f"too long: prompt of {len(ids)} tokens + {self.max_new_tokens} "
                                              f"new tokens exceeds the model's context of {self.context}")
                else:
                    ok.append(i)
            done = 0
            prefix = self.shared_prefix([encoded[i] for i in ok])
            # the budget counts the shared prefix in every row: its cache is repeated per row
            for batch in self.batches([len(encoded[i]) for i in ok]):
                idx = [ok[b] for b in batch]
                for i, a in zip(idx, self.generate([encoded[i] for i in idx], prefix)):
                    answers[i] = a
                while done < len(chunk) and answers[done] is not None:  # in order, as soon as ready
                    yield chunk[done][0], answers[done]
                    done += 1
            for k in range(done, len(chunk)):
                yield chunk[k][0], answers[k]


# --------------------------------------------------------------------------- openai

#: Statuses of a structured request after which the request is sent again without
#: ``response_format`` (see :class:`OpenAIBackend`).
STRUCTURED_REFUSALS = (400, 404, 415, 422, 500)


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint, ``concurrency`` requests in flight (threads).

    With ``response_format`` (structured output), a server that rejects it (HTTP 400, 404,
    415, 422, or 500 after the retries: llama.cpp's server answers an OpenAI ``json_schema``
    format with a 500 validation error) is asked again without it; when that works,
    structured output stays off for the rest of the run (an endpoint that is down fails the
    plain request too, and that is the error reported).
    A request refused with 400/413/422 (say, longer than the model's context) is reported for
    its record and the run goes on; any other failure after the retries ends the run.
    """

    name = "openai"

    def __init__(self, cfg: LLMConfig, *, concurrency: int = 4, response_format: dict | None = None,
                 log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.model_name = cfg.model
        self.concurrency = max(1, concurrency)
        self.response_format = response_format
        self.log = log
        self.meter = TokenMeter()
        self._lock = threading.Lock()

    def _one(self, messages: list[dict]) -> Answer:
        rf = self.response_format
        try:
            try:
                comp = request_completion(self.cfg, messages, response_format=rf, log=self.log)
            except LLMRequestError as e:
                if rf is None or e.status not in STRUCTURED_REFUSALS:
                    raise
                comp = request_completion(self.cfg, messages, log=self.log)
                with self._lock:
                    if self.response_format is not None:
                        self.response_format = None
                        if self.log:
                            self.log(f"structured output refused ({e.status}); parsing text answers instead")
        except LLMRequestError as e:
            # a request the server refuses as such (too long for its context, ...) fails alone;
            # anything else (endpoint down after the retries, auth, malformed answers) ends the run
            return Answer(error=str(e), fatal=e.status not in PER_REQUEST_STATUSES)
        self.meter.add(comp)
        return Answer.of(comp)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Any, Answer]]:
        window: deque = deque()
        it = iter(jobs)
        stop = False
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="ner-annotate") as pool:
            try:
                while True:
                    while not stop and len(window) < 2 * self.concurrency:
                        job = next(it, None)
                        if job is None:
                            stop = True
                            break
                        key, msgs = job
                        window.append((key, pool.submit(self._one, msgs)))
                    if not window:
                        return
                    key, fut = window.popleft()
                    ans = fut.result()
                    if ans.fatal:
                        stop = True
                    yield key, ans
            finally:
                for _, fut in window:
                    fut.cancel()


# --------------------------------------------------------------------------- batch files

def batch_request_line(custom_id: str, cfg: LLMConfig, messages: list[dict],
                       response_format: dict | None = None) -> dict:
    """One line of an OpenAI Batch-API input file."""
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": request_body(cfg, messages, response_format)}


def read_batch_results(path: str) -> dict[str, Answer]:
    """``custom_id -> Answer`` from an OpenAI Batch-API output (or error) file."""
    from nertools.core.specfile import read_text_lines

    out: dict[str, Answer] = {}
    for lineno, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise DataError(f"broken JSON: {e}", path=path, line=lineno) from None
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        if not isinstance(cid, str):
            raise DataError("batch result line has no custom_id", path=path, line=lineno)
        resp = obj.get("response") or {}
        body = resp.get("body") if isinstance(resp, dict) else None
        err = obj.get("error")
        status = resp.get("status_code") if isinstance(resp, dict) else None
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"]
            usage = body.get("usage") or {}
            if not isinstance(content, str) or (status is not None and status != 200):
                raise TypeError
            out[cid] = Answer(content, int(usage.get("prompt_tokens") or 0),
                              int(usage.get("completion_tokens") or 0), choice.get("finish_reason"))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            msg = (err.get("message") if isinstance(err, dict) else None) or \
                (body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(body.get("error"), dict)
                 else None) or f"no answer (status {status})"
            out[cid] = Answer(error=f"batch result: {msg}")
    return out


class BatchResultsBackend:
    """Answers read from a Batch-API output file, looked up by ``custom_id`` (the record id)."""

    name = "batch"

    def __init__(self, results: dict[str, Answer], model_name: str):
        self.results = results
        self.model_name = model_name
        self.meter = TokenMeter()

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Any, Answer]]:
        for key, _ in jobs:
            cid = str(key[1]) if isinstance(key, tuple) else str(key)
            a = self.results.get(cid)
            if a is None:
                a = Answer(error=f"no result for custom_id {cid!r} in the batch output")
            elif a.content is not None:
                self.meter.add(Completion(a.content, a.prompt_tokens, a.completion_tokens))
            yield key, a


def response_format_for(parser: str, labels: Sequence[str] | None) -> dict:
    """A JSON-schema ``response_format`` asking for ``{"entities": [...]}``."""
    props: dict[str, Any] = {"text": {"type": "string"}}
    if parser == "nuner":
        props.update({"label": {"type": "string"}, "description": {"type": "string"}})
        required = ["text", "label", "description"]
    else:
        props["label"] = {"type": "string", "enum": list(labels)} if labels else {"type": "string"}
        required = ["text", "label"]
    schema = {"type": "object", "additionalProperties": False, "required": ["entities"],
              "properties": {"entities": {"type": "array", "items": {
                  "type": "object", "additionalProperties": False, "required": required, "properties": props}}}}
    return {"type": "json_schema", "json_schema": {"name": "entities", "strict": True, "schema": schema}}


def check_unique_ids(ids: Iterable[Any]) -> None:
    seen = set()
    for i in ids:
        if i in seen:
            raise NertoolsError(f"record id {i!r} occurs twice: the batch backend needs unique ids")
        seen.add(i)
