"""X-NER span scoring with a causal (left-to-right) language model.

The X-NER divergence test (Less than One-shot NER, §3 and §6.3) asks: does putting the seed
entity in place of a candidate span change what the language model expects around it? A causal
LM only sees the left context, so its version of the tests reads distributions *after* the span:

* **Sentence test** (``1way``): the sentence as written (``L S R``) and the sentence with the
  span replaced by the seed (``L seed R``) are run through the LM. Rows are the next-token
  distributions from the span's (resp. seed's) last token onwards, aligned from the *end*
  because span and seed differ in length: row ``t`` is the distribution predicting the
  ``t``-th token after the span in both versions. ``rows="next"`` (default) scores only
  ``t = 0``, the position right after the span; ``rows="all"`` scores every right-context
  position ``t = 0 .. len(R)``. Divergence per row: ``KL(P(.|L S ..) || P(.|L seed ..))``.
* **Template test** (``2way`` adds it; the causal analogue of X-NER's description test): the
  template (default ``"[SEED] is a/an [LABEL] name"``) with the seed and with the span; rows
  from the entity's last token to the end of the template (the positions predicting
  ``is``, ``a``, ``person``, ``name``, and what follows), aligned from the end;
  ``KL(P(.|seed template) || P(.|span template))``.
* The score of a span for a label is the plain mean of all its rows, both tests pooled (as in
  the official code). **Lower = more like the seed.**

Other methods: ``cosine`` (``1 - cos`` of the mean last-layer hidden state over the span in the
sentence and over the seed in ``L seed``; the paper's baseline) and ``prompt`` (PromptMine's
label prompt, causal form ``"<sentence>, <span> is a/an <label word>"``, score
``-log P(label word | ...)``).

Speed (everything exact; see benchmarks/xner_quality.py for the measurements):

* The sentence ``L S R`` is run once; every candidate's span-side rows are read off that one
  forward pass.
* The seed-side sequences ``L seed R`` share their left context with the sentence: the
  sentence's key/value cache is reused, cropped per candidate by an attention mask, and only
  the seed (+ right context) tokens are computed; candidates of many sentences are packed
  into one batch (``kv_cache=False`` recomputes ``L`` instead, the reference path).
  With ``rows="next"`` only the seed tokens are run at all, once per (start word, label).
* The LM head and the softmax are applied only at scored positions, in float32 log space,
  in row chunks so that a 262k-word vocabulary never needs more than a few hundred MB.
* The seed side of the template test is computed once per run; the span side is cached by
  span string (bounded LRU).
* Records stream in input order, a chunk of ``batch_tokens`` sentence tokens at a time.

Keyword arguments of :class:`CausalDivergenceScorer` (for command-line wiring):

``method`` ``"2way"|"1way"|"cosine"|"prompt"``; ``template`` (must contain ``[SEED]``; may
contain ``[LABEL]`` and ``a/an``, which becomes ``a`` or ``an`` for the next word);
``temperature`` (softmax temperature; default 2.0 for ``1way``/``2way``, as in the official
masked-LM code and measured better than 1.0 with both SmolLM2 and gemma-3-270m in
benchmarks/xner_quality.py; 1.0 for ``prompt``);
``batch_tokens`` (token budget of one forward batch, default 2048); ``rows``
``"next"|"all"`` (sentence-test rows, default ``"next"``); ``progress`` (tqdm on stderr with
spans/s); ``kv_cache`` (default True); ``prompt_template`` (default
``"[SENTENCE], [SPAN] is a/an [LABEL]"``, the scored part is the label word);
``template_cache_size`` (span strings kept, default 100000); ``start_token`` (``"auto"``: the
tokenizer's own leading special tokens, else ``<|endoftext|>``, else its BOS, else its EOS; or a
token string, or ``""`` for none; see :func:`start_token_ids`); ``head_rows`` (rows per LM-head/KL chunk, default: 16M floats / vocabulary).
``row_details`` (diagnostics for benchmarks: per candidate ``"divergence_rows"`` with every
row's KL per label) and ``extra_temperatures`` (more temperatures for ``row_details``).
"""

from __future__ import annotations

import inspect
import re
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from nertools.core.format_doc import settle_scores
from nertools.errors import DataError, NertoolsError
from nertools.runtime import MEMO_SIZE
from nertools.runtime.batching import pack_by_token_budget, pack_stream, pad_batch
from nertools.runtime.models import CAUSAL, LoadedLM
from nertools.runtime.progress import progress
from nertools.xner.candidates import check_candidates
from nertools.xner.fast import ONLY_LABELS_KEY
from nertools.xner.masked import report_non_finite
from nertools.xner.seeds import Seed

METHODS = ("2way", "1way", "cosine", "prompt")
ROWS = ("next", "all")
#: Softmax temperature of the divergence methods (the official X-NER code uses 2 as well).
DEFAULT_TEMPERATURE = 2.0
DEFAULT_TEMPLATE = "[SEED] is a/an [LABEL] name"
DEFAULT_PROMPT_TEMPLATE = "[SENTENCE], [SPAN] is a/an [LABEL]"

#: Positions a sentence must leave free below the model's position limit, for what runs after
#: it: the seed, its right context, the prompt. A fixed allowance, not computed from the
#: templates (a longer continuation still fails in the model).
POSITION_HEADROOM = 32
#: Floats of LM-head output per row chunk (``head_rows`` default: this / vocabulary size), so a
#: 262k-word vocabulary needs no more than a few hundred MB at a time.
HEAD_CHUNK_FLOATS = 1 << 24

_ARTICLE = re.compile(r"\ba/an(\s+)(\S)")


#: The document separator of GPT-2-style byte-level BPE vocabularies (GPT-2, SmolLM, Qwen,
#: Pythia): what such a model saw before the first word of a document in pre-training.
DOCUMENT_SEPARATOR = "<|endoftext|>"


def start_token_ids(tok, start_token: str | None = "auto") -> list[int]:
    """Token ids put before every sequence the causal scorer runs.

    ``"auto"``: the tokenizer's own leading special tokens (``<bos>``, ``<s>``,
    ``<|begin_of_text|>``); else ``<|endoftext|>`` when the vocabulary has it; else the BOS
    token; else EOS. ``<|endoftext|>`` comes before BOS because chat models ship
    a chat-turn marker as BOS (SmolLM2's GGUF: ``<|im_start|>``), after which a bare sentence is
    out of distribution: on CoNLL, SmolLM2 2way P@K MISC 34 -> 74 and ORG 8 -> 16 with
    ``<|endoftext|>`` (benchmarks/xner_quality.py, 453 sentences).
    ``""``/``None``: nothing; any other string: that token (NertoolsError if unknown).
    """
    if start_token is None or start_token == "":
        return []
    vocab = tok.get_vocab()
    if start_token != "auto":
        if start_token not in vocab:
            raise NertoolsError(f"start token {start_token!r} is not in the vocabulary")
        return [vocab[start_token]]
    with_special = list(tok("a", add_special_tokens=True)["input_ids"])
    plain = list(tok("a", add_special_tokens=False)["input_ids"])
    for k in range(1, len(with_special) - len(plain) + 1):  # leading tokens (trailing ones ignored)
        if with_special[k:k + len(plain)] == plain:
            return with_special[:k]
    if DOCUMENT_SEPARATOR in vocab:
        return [vocab[DOCUMENT_SEPARATOR]]
    for tid in (tok.bos_token_id, tok.eos_token_id):
        if tid is not None:
            return [tid]
    return []


def resolve_articles(text: str) -> str:
    """Replace ``a/an`` by ``an`` before a vowel letter, else ``a``."""
    return _ARTICLE.sub(lambda m: ("an" if m.group(2).lower() in "aeiou" else "a") + m.group(1) + m.group(2),
                        text)


def _split_on(template: str, placeholder: str) -> tuple[str, str]:
    if template.count(placeholder) != 1:
        raise NertoolsError(f"template {template!r} must contain {placeholder} exactly once")
    pre, post = template.split(placeholder)
    return pre, post


@dataclass
class _Sentence:
    """One record prepared for the model."""

    record: dict
    ids: list[int]              # start token(s) + word pieces
    wstart: list[int]           # token index of each word's first piece
    wend: list[int]             # token index after each word's last piece
    cands: list[dict]
    spaced: list[bool]          # word k is preceded by whitespace
    row: int = 0                # row in the chunk's sentence batch
    # per candidate, per label: sums and counts of rows (sentence test), or final scores
    sent_sum: np.ndarray | None = None
    sent_n: np.ndarray | None = None
    final: np.ndarray | None = None
    details: list[dict] = field(default_factory=list)


@dataclass
class _Job:
    """A continuation to run after ``prefix`` tokens of sentence ``sent`` (seed side)."""

    sent: int                   # index into the chunk's sentences
    prefix: int                 # number of sentence tokens kept as left context
    cont: list[int]             # token ids after the prefix
    offsets: list[int]          # continuation positions whose hidden states are needed
    key: Any = None
    hidden: Any = None          # (len(offsets), H) after running
    targets: list[int] = field(default_factory=list)  # prompt method: the label word's ids


class CausalDivergenceScorer:
    """Score candidate spans against seed entities with a causal LM (see the module doc).

    ``score_records(records)`` yields the records in input order with ``"scores": {label:
    float}`` added to every candidate of ``record["candidates"]``; lower = more like the seed.
    """

    def __init__(self, lm: LoadedLM, seeds: Sequence[Seed], *, method: str = "2way",
                 template: str | None = None, temperature: float | None = None, batch_tokens: int = 2048,
                 rows: str = "next", progress: bool = True, kv_cache: bool = True,
                 prompt_template: str | None = None, template_cache_size: int = 100_000,
                 start_token: str | None = "auto", head_rows: int | None = None,
                 row_details: bool = False, extra_temperatures: Sequence[float] = (), **kw: Any):
        import torch

        if kw:
            raise NertoolsError(f"unknown causal scorer option(s): {', '.join(sorted(kw))}")
        if lm.kind != CAUSAL:
            raise NertoolsError(f"model {lm.name!r} is not a causal LM (it is {lm.kind})")
        if method not in METHODS:
            raise NertoolsError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
        if rows not in ROWS:
            raise NertoolsError(f"unknown causal rows choice {rows!r} (next or all)")
        if not seeds:
            raise DataError("no seeds given")
        if temperature is None:
            temperature = DEFAULT_TEMPERATURE if method in ("1way", "2way") else 1.0
        if not temperature > 0:
            raise NertoolsError(f"temperature must be > 0, not {temperature}")
        if batch_tokens < 16:
            raise NertoolsError(f"batch_tokens must be >= 16, not {batch_tokens}")
        self.lm = lm
        self.model = lm.model
        self.tok = lm.tokenizer
        self.device = lm.device
        self.seeds = list(seeds)
        self.labels = [s.label for s in self.seeds]
        self.method = method
        self.rows = rows
        self.temps = [float(temperature)] + [float(t) for t in extra_temperatures]
        self.batch_tokens = int(batch_tokens)
        self.progress = progress
        self.kv_cache = kv_cache
        self.row_details = row_details
        self.base = getattr(self.model, self.model.base_model_prefix)
        # the key/value cache argument: `cache` since transformers 5 renamed it (the old name,
        # `past_key_values`, warns and goes away in 5.40); a model that still has the old one keeps it
        params = inspect.signature(self.base.forward).parameters
        self._cache_arg = "cache" if "cache" in params or "past_key_values" not in params else "past_key_values"
        self.head = self.model.get_output_embeddings()
        cfg = self.model.config.get_text_config()
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        # an int8 dynamically quantised head (``--quantize int8-all``) has a weight() method
        # and qint8 weights; its input stays float32
        weight = self.head.weight() if callable(self.head.weight) else self.head.weight
        self.head_dtype = weight.dtype if weight.dtype.is_floating_point else torch.float32
        self.vocab = weight.shape[0]
        self.head_rows = head_rows or max(8, HEAD_CHUNK_FLOATS // self.vocab)
        # the KV-cache path needs every key inside a sliding-attention window
        self.window = getattr(cfg, "sliding_window", None) or 0
        self.max_positions = getattr(cfg, "max_position_embeddings", None) or 1 << 30
        self._piece_cache: OrderedDict[str, list[int]] = OrderedDict()
        self.start_ids = self._start_ids(start_token)
        self.template = template or DEFAULT_TEMPLATE
        _split_on(self.template, "[SEED]")
        self.prompt_template = prompt_template or DEFAULT_PROMPT_TEMPLATE
        if method == "prompt":
            for ph in ("[SENTENCE]", "[SPAN]"):
                _split_on(self.prompt_template, ph)
            if not self.prompt_template.startswith("[SENTENCE]"):
                raise NertoolsError("the prompt template must start with [SENTENCE] (the sentence is "
                                    "the cached left context)")
            if not self.prompt_template.rstrip().endswith("[LABEL]"):
                raise NertoolsError("the prompt template must end with [LABEL] (the scored word)")
        self._label_index = {lab: l for l, lab in enumerate(self.labels)}
        # span string -> (template KL sums/counts (temps, labels, 2), labels computed (labels,))
        self._template_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._template_cache_size = template_cache_size
        # seed side of the template test, per temperature: (P rows, sum P log P, {(label, row): index})
        self._seed_template_ref: list[tuple[Any, Any]] | None = None
        self._seed_template_index: dict[tuple[int, int], int] = {}
        self.torch = torch
        self.stats = {"spans": 0, "records": 0, "forward_tokens": 0, "head_rows": 0, "non_finite": 0}

    # ------------------------------------------------------------------ tokenisation
    def _start_ids(self, start_token: str | None) -> list[int]:
        return start_token_ids(self.tok, start_token)

    def _piece(self, text: str) -> list[int]:
        """Token ids of a text piece (no special tokens), memoised."""
        ids = self._piece_cache.get(text)
        if ids is None:
            ids = list(self.tok(text, add_special_tokens=False)["input_ids"])
            self._piece_cache[text] = ids
            if len(self._piece_cache) > MEMO_SIZE:
                self._piece_cache.popitem(last=False)
        return ids

    def _prepare(self, record: dict) -> _Sentence:
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not tokens:
            raise DataError(f"record {record.get('id')!r} has no tokens (run ner-spans / ner-validate first)")
        check_candidates(record)
        cands = record["candidates"]
        ids = list(self.start_ids)
        wstart, wend, spaced = [], [], []
        for k, t in enumerate(tokens):
            sp = k > 0 and bool(tokens[k - 1].get("ws", True))
            piece = self._piece((" " if sp else "") + t["text"])
            if not piece:  # a word the tokenizer drops entirely: keep alignment with a space token
                piece = self._piece(" " + t["text"]) or self._piece(" ")
            wstart.append(len(ids))
            ids.extend(piece)
            wend.append(len(ids))
            spaced.append(sp)
        if len(ids) + POSITION_HEADROOM > self.max_positions:
            raise DataError(f"record {record.get('id')!r} is too long for the model ({len(ids)} tokens)")
        return _Sentence(record, ids, wstart, wend, cands, spaced)

    def _cand_labels(self, c: dict) -> Sequence[int]:
        """Indices of the labels to score for candidate ``c``: all, or those its
        ``ONLY_LABELS_KEY`` entry names (the cascade's exact pass asks only for the labels it
        kept the candidate for; each label's score is computed independently of the others)."""
        only = c.get(ONLY_LABELS_KEY)
        if only is None:
            return range(len(self.labels))
        return [self._label_index[lab] for lab in only if lab in self._label_index]

    def _entity_piece(self, s: _Sentence, word: int, text: str) -> list[int]:
        return self._piece((" " if s.spaced[word] else "") + text)

    # ------------------------------------------------------------------ model helpers
    def _logprobs(self, hidden) -> list[Any]:
        """float32 log-softmax of the LM head at ``hidden`` rows, one tensor per temperature."""
        torch = self.torch
        logits = self.head(hidden.to(self.head_dtype)).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        self.stats["head_rows"] += hidden.shape[0]
        return [torch.log_softmax(logits / t, dim=-1) for t in self.temps]

    @staticmethod
    def _kl(lp, lq):
        """Row-wise KL(P || Q) from float32 log-probabilities."""
        return (lp.exp() * (lp - lq)).sum(-1)

    @staticmethod
    def _reference_side(lp):
        """``(P, sum P log P)`` of reference rows: then ``KL(P_a || Q_b) = negent[a] - (Q_b @ P.T)[b, a]``
        for a whole block of Q rows with one matrix product (no gathers of vocabulary-sized rows)."""
        p = lp.exp()
        # float64 for the two terms whose difference is the KL: small divergences keep their digits
        return p.double(), (p * lp).double().sum(-1)

    def _forward(self, ids, mask, positions=None, cache=None, use_cache=False):
        kv = {self._cache_arg: cache} if cache is not None else {}
        out = self.base(input_ids=ids, attention_mask=mask, position_ids=positions,
                        use_cache=use_cache or cache is not None, **kv)
        self.stats["forward_tokens"] += int(ids.numel())
        return out

    @staticmethod
    def _returned_cache(out):
        """The key/value cache a forward pass returned (``cache``; ``past_key_values`` before
        transformers 5 renamed it)."""
        return out["cache"] if "cache" in out else out["past_key_values"]

    def _pad(self, seqs: list[list[int]]):
        # pad id 0: padded positions come after every real token and are masked out
        return pad_batch(seqs, 0, device=self.device)

    def _run_sentences(self, sents: list[_Sentence], cont_len: int):
        """One padded forward over the chunk's sentences: hidden states and the key/value
        cache (``None`` when the KV path is off or continuations of ``cont_len`` tokens would
        leave a sliding-attention window)."""
        for r, s in enumerate(sents):
            s.row = r
        ids, mask = self._pad([s.ids for s in sents])
        want = self._use_kv(max(len(s.ids) for s in sents), cont_len)
        out = self._forward(ids, mask, use_cache=want)
        kv = None
        if want:
            kv = [(layer.keys, layer.values) for layer in self._returned_cache(out).layers]
        return out.last_hidden_state, kv

    def _use_kv(self, prefix_len: int, cont_len: int) -> bool:
        if not self.kv_cache:
            return False
        return not self.window or prefix_len + cont_len < self.window

    def _run_jobs(self, jobs: list[_Job], sents: list[_Sentence], kv) -> None:
        """Run continuation jobs in token-budget batches; fill ``job.hidden``.

        With ``kv`` (the chunk's sentence cache), a job attends to the first ``job.prefix``
        cached positions of its sentence (other cached positions are masked out) and only its
        continuation is computed; without, the prefix is recomputed (reference path).
        """
        if not jobs:
            return
        # a batch's width: the continuations (KV path) or prefix + continuation (recomputed)
        widths = [len(j.cont) if kv is not None else j.prefix + len(j.cont) for j in jobs]
        order = sorted(range(len(jobs)), key=lambda k: (len(jobs[k].cont), jobs[k].prefix))
        for batch in pack_by_token_budget(widths, self.batch_tokens, order=order):
            self._run_job_batch([jobs[k] for k in batch], sents, kv)

    def _run_job_batch(self, batch: list[_Job], sents: list[_Sentence], kv) -> None:
        torch = self.torch
        from transformers import DynamicCache

        if kv is None or max(j.prefix for j in batch) == 0:
            seqs = [sents[j.sent].ids[:j.prefix] + j.cont for j in batch]
            ids, mask = self._pad(seqs)
            hidden = self._forward(ids, mask).last_hidden_state
            for r, j in enumerate(batch):
                j.hidden = hidden[r, [j.prefix + o for o in j.offsets]]
            return
        plen = max(j.prefix for j in batch)
        rows = torch.tensor([sents[j.sent].row for j in batch], device=self.device)
        cache = DynamicCache([(k.index_select(0, rows)[:, :, :plen], v.index_select(0, rows)[:, :, :plen])
                              for k, v in kv], config=self.model.config)
        cont_ids, cont_mask = self._pad([j.cont for j in batch])
        width = cont_ids.shape[1]
        mask = torch.zeros((len(batch), plen + width), dtype=torch.long, device=self.device)
        positions = torch.zeros((len(batch), width), dtype=torch.long, device=self.device)
        for r, j in enumerate(batch):
            mask[r, :j.prefix] = 1
            positions[r] = torch.arange(j.prefix, j.prefix + width)
        mask[:, plen:] = cont_mask
        hidden = self._forward(cont_ids, mask, positions, cache).last_hidden_state
        for r, j in enumerate(batch):
            j.hidden = hidden[r, j.offsets]

    # ------------------------------------------------------------------ template test
    def _template_seqs(self, entity: str, label_idx: int) -> tuple[list[int], int]:
        """Token ids of the template for ``entity`` and the index of its first scored row."""
        seed = self.seeds[label_idx]
        text = resolve_articles(self.template.replace("[LABEL]", seed.label_word))
        pre, post = _split_on(text, "[SEED]")
        ids = list(self.start_ids)
        if pre.strip():
            ids += self._piece(pre.rstrip())
        ent = self._piece((" " if pre.strip() and pre[-1:].isspace() else "") + entity)
        ids += ent
        first_row = len(ids) - 1  # the entity's last token predicts what follows it
        ids += self._piece(post) if post else []
        return ids, first_row

    def _template_hidden(self, items: list[tuple[str, int]]) -> list[Any]:
        """Hidden rows (entity's last token .. template end) for (entity, label) pairs."""
        out: list[Any] = [None] * len(items)
        prepared = [self._template_seqs(e, l) for e, l in items]
        for part in pack_by_token_budget([len(p[0]) for p in prepared], self.batch_tokens):
            ids, mask = self._pad([prepared[k][0] for k in part])
            hidden = self._forward(ids, mask).last_hidden_state
            for r, k in enumerate(part):
                seq, first = prepared[k]
                out[k] = hidden[r, first:len(seq)]
        return out

    def _seed_templates(self) -> list[list[Any]]:
        if self._seed_template_ref is None:
            hidden = self._template_hidden([(s.text, l) for l, s in enumerate(self.seeds)])
            for l, h in enumerate(hidden):
                for r in range(h.shape[0]):
                    self._seed_template_index[(l, r)] = len(self._seed_template_index)
            lps = self._logprobs(self.torch.cat(hidden, 0))
            self._seed_template_ref = [self._reference_side(lp) for lp in lps]
        return self._seed_template_ref

    def _template_scores(self, texts: list[str], wanted: dict[str, set] | None = None) -> dict[str, np.ndarray]:
        """Per span string: array (temps, labels, 2) of template-row KL sum and row count, for
        every label or the label indices ``wanted[text]`` (others may be left at zero)."""
        seed_ref = self._seed_templates()
        nt, nl = len(self.temps), len(self.labels)
        result: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        items = []
        for t in dict.fromkeys(texts):
            hit = self._template_cache.get(t)
            if hit is not None:
                self._template_cache.move_to_end(t)
            else:
                hit = (np.zeros((nt, nl, 2)), np.zeros(nl, dtype=bool))
            result[t] = hit
            labs = range(nl) if wanted is None else sorted(wanted.get(t, ()))
            items += [(t, l) for l in labs if not hit[1][l]]
        if not items:
            return {t: a for t, (a, _) in result.items()}
        prepared = [self._template_seqs(t, l) for t, l in items]
        hidden = self._template_hidden(items)
        arrays = {t: a for t, (a, _) in result.items()}
        # A row depends only on the tokens up to it, so the rows before the label word
        # ("Fusai", " is") are shared by all labels: each distinct prefix goes through the head once.
        unique: dict[tuple, int] = {}
        unique_rows = []
        pairs = []  # (unique row, item, template row)
        for k, (seq, first) in enumerate(prepared):
            for r in range(len(seq) - first):
                key = tuple(seq[:first + r + 1])
                u = unique.get(key)
                if u is None:
                    u = unique[key] = len(unique_rows)
                    unique_rows.append(hidden[k][r])
                pairs.append((u, k, r))
        pairs.sort()
        flat = self.torch.stack(unique_rows)
        for lo in range(0, flat.shape[0], self.head_rows):
            hi = lo + self.head_rows
            lq = self._logprobs(flat[lo:hi])
            part = pairs[bisect_left(pairs, (lo,)):bisect_left(pairs, (hi,))]
            for ti in range(nt):
                p_seed, negent = seed_ref[ti]
                cross = (lq[ti].double() @ p_seed.T).cpu().numpy()  # (span rows, seed rows)
                negent = negent.cpu().numpy()
                for u, k, r in part:
                    text, l = items[k]
                    sr = self._seed_template_index[(l, r)]
                    arrays[text][ti, l, 0] += negent[sr] - cross[u - lo, sr]
                    arrays[text][ti, l, 1] += 1
        for t, l in items:
            result[t][1][l] = True
        for t in dict.fromkeys(t for t, _ in items):
            self._template_cache[t] = result[t]
            self._template_cache.move_to_end(t)
            if len(self._template_cache) > self._template_cache_size:
                self._template_cache.popitem(last=False)
        return arrays

    # ------------------------------------------------------------------ sentence test
    def _seed_jobs(self, sents: list[_Sentence], with_right: bool) -> dict[tuple, _Job]:
        """Seed-side continuations: key (sentence, label, start word[, end word])."""
        jobs: dict[tuple, _Job] = {}
        for si, s in enumerate(sents):
            for c in s.cands:
                i, j = c["token_start"], c["token_end"]
                for l in self._cand_labels(c):
                    seed = self.seeds[l]
                    key = (si, l, i, j) if with_right else (si, l, i)
                    if key in jobs:
                        continue
                    seed_ids = self._entity_piece(s, i, seed.text)
                    right = s.ids[s.wend[j]:] if with_right else []
                    m = len(seed_ids)
                    if self.method == "cosine":
                        offsets = list(range(m))
                    else:
                        offsets = list(range(m - 1, m + len(right)))
                    jobs[key] = _Job(si, s.wstart[i], seed_ids + right, offsets, key)
        return jobs

    def _sentence_test(self, sents: list[_Sentence], hidden, jobs: dict[tuple, _Job]) -> None:
        """Accumulate sentence-test KL rows per candidate and label (per sentence: bounded memory)."""
        torch = self.torch
        nt, nl = len(self.temps), len(self.labels)
        with_right = self.rows == "all"
        for si, s in enumerate(sents):
            nc = len(s.cands)
            s.sent_sum = np.zeros((nt, nc, nl))
            s.sent_n = np.zeros((nc, nl))
            if self.row_details:
                s.details = [{lab: [[] for _ in range(nt)] for lab in self.labels} for _ in range(nc)]
            if not nc:
                continue
            n = len(s.ids)
            # span side: rows of the sentence itself, from the first needed position on
            if with_right:
                first = min(s.wend[c["token_end"]] for c in s.cands) - 1
                positions = list(range(first, n))
            else:
                positions = sorted({s.wend[c["token_end"]] - 1 for c in s.cands})
            pos_index = {p: x for x, p in enumerate(positions)}
            span_ref = [self._reference_side(lp) for lp in self._logprobs(hidden[s.row, positions])]
            # pairs (seed row, span row, candidate, label)
            seed_rows, span_rows, owners = [], [], []
            for ci, c in enumerate(s.cands):
                i, j = c["token_start"], c["token_end"]
                b = s.wend[j]
                for l in self._cand_labels(c):
                    job = jobs[(si, l, i, j) if with_right else (si, l, i)]
                    for t in range(len(job.offsets)):
                        seed_rows.append(job.hidden[t])
                        span_rows.append(pos_index[b - 1 + t])
                        owners.append((ci, l))
            for lo in range(0, len(seed_rows), self.head_rows):
                hi = lo + self.head_rows
                lq = self._logprobs(torch.stack(seed_rows[lo:hi]))
                for ti in range(nt):
                    p_span, negent = span_ref[ti]
                    cross = (lq[ti].double() @ p_span.T).cpu().numpy()  # (seed rows, span rows)
                    negent = negent.cpu().numpy()
                    kl = [negent[sp] - cross[x, sp] for x, sp in enumerate(span_rows[lo:hi])]
                    for x, (ci, l) in enumerate(owners[lo:hi]):
                        s.sent_sum[ti, ci, l] += kl[x]
                        if ti == 0:
                            s.sent_n[ci, l] += 1
                        if self.row_details:
                            s.details[ci][self.labels[l]][ti].append(float(kl[x]))

    def _cosine(self, sents: list[_Sentence], hidden, jobs: dict[tuple, _Job]) -> None:
        torch = self.torch
        for si, s in enumerate(sents):
            s.final = np.zeros((len(s.cands), len(self.labels)))
            for ci, c in enumerate(s.cands):
                a, b = s.wstart[c["token_start"]], s.wend[c["token_end"]]
                span_vec = hidden[s.row, a:b].float().mean(0)
                for l in range(len(self.labels)):
                    seed_vec = jobs[(si, l, c["token_start"])].hidden.float().mean(0)
                    cos = torch.nn.functional.cosine_similarity(span_vec, seed_vec, dim=0)
                    s.final[ci, l] = 1.0 - float(cos)

    # ------------------------------------------------------------------ prompt method
    def _prompt_jobs(self, sents: list[_Sentence]) -> list[_Job]:
        _, rest = _split_on(self.prompt_template, "[SENTENCE]")
        jobs = []
        for si, s in enumerate(sents):
            for ci, c in enumerate(s.cands):
                span = self._span_text(s, c)
                for l, seed in enumerate(self.seeds):
                    text = resolve_articles(rest.replace("[SPAN]", span).replace("[LABEL]", seed.label_word))
                    head, _, tail = text.rpartition(seed.label_word)
                    ids = self._piece(head.rstrip())
                    label_ids = self._piece((" " if head[-1:].isspace() else "") + seed.label_word)
                    cont = ids + label_ids
                    offsets = list(range(len(ids) - 1, len(cont) - 1))
                    jobs.append(_Job(si, len(s.ids), cont, offsets, (ci, l), targets=label_ids))
        return jobs

    def _prompt_scores(self, sents: list[_Sentence], jobs: list[_Job]) -> None:
        torch = self.torch
        for s in sents:
            s.final = np.zeros((len(s.cands), len(self.labels)))
        rows = [(job, t) for job in jobs for t in range(len(job.offsets))]
        for lo in range(0, len(rows), self.head_rows):
            part = rows[lo:lo + self.head_rows]
            lp = self._logprobs(torch.stack([job.hidden[t] for job, t in part]))[0]
            tgt = torch.tensor([job.targets[t] for job, t in part], device=lp.device)
            got = lp.gather(1, tgt[:, None])[:, 0].cpu().numpy()
            for x, (job, _) in enumerate(part):
                ci, l = job.key
                sents[job.sent].final[ci, l] -= got[x]

    # ------------------------------------------------------------------ driver
    def _score_chunk(self, sents: list[_Sentence]) -> None:
        torch = self.torch
        active = [s for s in sents if s.cands]
        for s in sents:
            if not s.cands:
                s.final = np.zeros((0, len(self.labels)))
        if not active:
            return
        with torch.inference_mode():
            if self.method == "prompt":
                jobs = self._prompt_jobs(active)
                _, kv = self._run_sentences(active, max(len(j.cont) for j in jobs))
                self._run_jobs(jobs, active, kv)
                self._prompt_scores(active, jobs)
                return
            with_right = self.rows == "all" and self.method != "cosine"
            jobs = self._seed_jobs(active, with_right)
            hidden, kv = self._run_sentences(active, max(len(j.cont) for j in jobs.values()))
            self._run_jobs(list(jobs.values()), active, kv)
            if self.method == "cosine":
                self._cosine(active, hidden, jobs)
                return
            self._sentence_test(active, hidden, jobs)
            if self.method == "1way":
                for s in active:
                    s.final = s.sent_sum[0] / np.maximum(s.sent_n, 1)
                return
            texts = [self._span_text(s, c) for s in active for c in s.cands]
            wanted: dict[str, set] | None = None
            if any(ONLY_LABELS_KEY in c for s in active for c in s.cands):
                wanted = {}
                for s in active:
                    for c in s.cands:
                        wanted.setdefault(self._span_text(s, c), set()).update(self._cand_labels(c))
            tmpl = self._template_scores(texts, wanted)
            for s in active:
                arr = np.stack([tmpl[self._span_text(s, c)] for c in s.cands], 1)  # (T, C, L, 2)
                s.final = (s.sent_sum[0] + arr[0, :, :, 0]) / np.maximum(s.sent_n + arr[0, :, :, 1], 1)
                if self.row_details:
                    for ci in range(len(s.cands)):
                        for l, lab in enumerate(self.labels):
                            for ti in range(len(self.temps)):
                                s.details[ci][lab][ti] = {"sentence": s.details[ci][lab][ti],
                                                          "template_sum": float(arr[ti, ci, l, 0]),
                                                          "template_n": int(arr[ti, ci, l, 1])}

    @staticmethod
    def _span_text(s: _Sentence, c: dict) -> str:
        return s.record["text"][c["start"]:c["end"]]  # offsets checked by check_candidates

    def _finish(self, s: _Sentence) -> dict:
        for ci, c in enumerate(s.cands):
            scores = dict(c.get("scores") or {})
            for l in self._cand_labels(c):
                scores[self.labels[l]] = float(s.final[ci, l])
            c.pop(ONLY_LABELS_KEY, None)
            self.stats["non_finite"] += settle_scores(scores)
            c["scores"] = scores
            if self.row_details and s.details:
                c["divergence_rows"] = {lab: {str(t): s.details[ci][lab][ti]
                                              for ti, t in enumerate(self.temps)}
                                        for lab in self.labels}
        return s.record

    def score_records(self, records: Iterable[dict]) -> Iterator[dict]:
        """Yield ``records`` in order with per-label ``scores`` on every candidate."""
        with progress(unit="span", desc="divscore", enabled=self.progress) as bar:
            sentences = (self._prepare(rec) for rec in records)
            for chunk in pack_stream(sentences, self.batch_tokens, length=lambda s: len(s.ids)):
                yield from self._flush(chunk, bar)
        report_non_finite(self.stats["non_finite"], self.stats["spans"])

    def _flush(self, chunk: list[_Sentence], bar) -> Iterator[dict]:
        self._score_chunk(chunk)
        spans = sum(len(s.cands) for s in chunk)
        self.stats["spans"] += spans
        self.stats["records"] += len(chunk)
        bar.update(spans)
        for s in chunk:
            yield self._finish(s)
