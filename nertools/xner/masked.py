"""X-NER span scoring with a masked language model (``ner-divscore`` for masked LMs).

The divergence span test (X-NER, "Less than One-shot") asks whether a candidate span
behaves like the seed entity of a label. Two tests, each a set of masked rows whose
predicted distributions are compared with KL divergence:

* **sentence test** -- the sentence with the span (P) against the same sentence with the
  span replaced by the seed (Q); the masked rows are the context tokens: the token just
  before and just after the span ("neighbours", the released code's ``fast`` mode) or
  every context token ("full", the released code's default mode);
* **template test** -- a template filled with the seed (P) against the template filled
  with the span (Q), e.g. "The person name: Masaki Yoshida" vs "The person name: Fischler";
  every template token except the slot is masked in turn.

The score of a (span, label) is the plain mean of the row divergences of both tests
pooled. LOWER = MORE LIKE THE SEED.

Methods (:data:`METHODS`):

``official``  reproduces the released code (KomeijiForce/X-NER ``mining.py::fastndd_search``)
              exactly: strings are the record's tokens re-joined with BERT WordPiece
              detokenisation, template "The [LABEL] name: [SEED]", temperature 2.
``2way``      the paper's method on the record's own text, template "The [LABEL]: [SEED]".
``1way``      the sentence test only.
``cosine``    baseline: 1 - cosine(span vector, seed vector), where the span vector is the
              mean last-layer hidden state of the span's subword tokens *in its sentence*
              and the seed vector the same for the seed encoded on its own.
``prompt``    PromptMine: "[SENTENCE], [SPAN] is a/an <mask> entity."; score -log p(label
              word) at the mask (first subword of the label word, temperature 1).

How the engine is fast while computing the same numbers as the released code:

* the base model runs on each row; the LM head (vocabulary projection) is applied only to
  the hidden state at the row's masked position;
* no row is computed twice: the original-sentence rows (P of the sentence test) are shared
  by every candidate and seed of a sentence; the seed side of the template test is computed
  once per run; the span side of the template test is cached by (label, span string) --
  only the resulting divergence, a float, is kept;
* rows of many sentences are sorted by length and packed into batches of at most
  ``batch_tokens`` tokens (rows x padded length), which removes most padding;
* log-softmax and KL run in float32 on the gathered logits, so a float16/bfloat16 model
  gives no inf/NaN;
* records are processed in chunks and yielded in input order: memory does not grow with
  the corpus.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from nertools.core.format_doc import NON_FINITE_SCORE, settle_scores
from nertools.errors import DataError, NertoolsError
from nertools.runtime import MEMO_SIZE
from nertools.runtime.batching import PADDING_MIN_ROWS, pack_by_token_budget, pad_batch
from nertools.runtime.models import max_positions
from nertools.runtime.progress import log, progress
from nertools.xner.candidates import check_candidates  # noqa: F401  (one validator for both scorers)
from nertools.xner.seeds import Seed

METHODS = ("2way", "1way", "cosine", "prompt", "official")
CONTEXTS = ("neighbours", "full")

TEMPLATE_2WAY = "The [LABEL]: [SEED]"
TEMPLATE_OFFICIAL = "The [LABEL] name: [SEED]"
TEMPLATE_PROMPT = "[SENTENCE], [SPAN] is [A] [MASK] entity."

#: Records are scored in chunks of about this many sentence tokens (``chunk_tokens``): big enough
#: that many sentences share the forward batches, small enough that output streams.
DEFAULT_CHUNK_TOKENS = 1024
#: Chunk sizing counts a record as its words, plus this many for the special tokens a masked LM
#: adds (``<s>``/``</s>``, ``[CLS]``/``[SEP]``), plus one per candidate. A size estimate only: the
#: real token counts decide the batches.
CHUNK_SPECIAL_TOKENS = 2

#: Default template per method (``None``: the method uses no template).
DEFAULT_TEMPLATES = {"2way": TEMPLATE_2WAY, "official": TEMPLATE_OFFICIAL, "prompt": TEMPLATE_PROMPT,
                     "1way": None, "cosine": None}


# --------------------------------------------------------------------------------------
# strings and mask positions
# --------------------------------------------------------------------------------------

_WORDPIECE = None


def wordpiece_detokenize(words: Sequence[str]) -> str:
    """Join words as the released X-NER code does: BERT's WordPiece decoder with clean-up
    (``["lamb", "."]`` -> ``"lamb."``, ``["Fischler", "'s"]`` -> ``"Fischler's"``).

    This is the ``tokenizers`` library's own decoder, the one ``bert-large-cased``'s
    ``convert_tokens_to_string`` calls in the released code.
    """
    global _WORDPIECE
    if _WORDPIECE is None:
        from tokenizers import decoders

        _WORDPIECE = decoders.WordPiece(prefix="##", cleanup=True)
    return _WORDPIECE.decode(list(words))


def fill_template(template: str, label_word: str, filler: str) -> str:
    return template.replace("[LABEL]", label_word).replace("[SEED]", filler)


def boundary_rows(ids: Sequence[int], x_ids: Sequence[int], full: bool) -> tuple[list[int], list[int]]:
    """Which positions to mask, exactly as the released ``create_query`` decides.

    ``ids`` is a tokenised string, ``x_ids`` the same string with the span replaced by "X".
    The span's boundaries are where the two first differ from the left and from the right.
    Returns ``(left, right)``: ``left`` are absolute positions, ``right`` are offsets ``k``
    meaning position ``-k`` (Python indexing, ``-0`` being position 0) of a row.

    ``full=False`` (the released "fast" mode): the token just before and just after the span
    (``<s>``/``</s>`` when the span is at an end). ``full=True``: every token left and right
    of the span except ``<s>`` and ``</s>``.
    """
    n = min(len(ids), len(x_ids))
    idx = 0
    for idx in range(n):
        if ids[idx] != x_ids[idx]:
            break
    jdx = 1
    for jdx in range(1, n + 1):
        if ids[-jdx] != x_ids[-jdx]:
            break
    if full:
        return list(range(1, idx)), list(range(2, jdx))
    return [idx - 1], [jdx - 1]


def masked_rows(ids: Sequence[int], left: Sequence[int], right: Sequence[int],
                mask_id: int) -> list[tuple[tuple[int, ...], int]]:
    """``(masked ids, mask position)`` for each left position and right offset."""
    m = len(ids)
    rows = []
    for pos in list(left) + [(-k) % m for k in right]:
        row = list(ids)
        row[pos] = mask_id
        rows.append((tuple(row), pos))
    return rows


# --------------------------------------------------------------------------------------
# the model runner: packing, token budget, LM head at masked positions only
# --------------------------------------------------------------------------------------

def _mlm_parts(model) -> tuple[Callable | None, Callable | None]:
    """``(base model, head)`` of a masked LM when the head can be applied to gathered hidden
    states; ``(None, None)`` for architectures whose head we do not know (then the full
    model runs and the logits are gathered)."""
    base = getattr(model, "base_model", None)
    for name in ("lm_head", "cls"):
        head = getattr(model, name, None)
        if head is not None and base is not None and base is not model:
            return base, head
    return None, None


@dataclass
class RowRunner:
    """Runs masked rows through a masked LM in length-packed batches.

    ``batch_tokens`` bounds rows x padded length per forward pass (at least one row).
    """

    model: object
    pad_id: int
    device: object
    batch_tokens: int = 8192
    max_length: int | None = None
    out_dtype: object = None  # dtype of the returned logits/hidden states (default float32)
    max_padding: float = 0.1  # see batches()
    min_rows_per_batch: int = PADDING_MIN_ROWS
    rows_run: int = 0
    tokens_run: int = 0  # rows x padded width
    real_tokens_run: int = 0  # without padding

    def __post_init__(self):
        import torch

        self.base, self.head = _mlm_parts(self.model)
        self.out_dtype = self.out_dtype or torch.float32

    def batches(self, lengths: Sequence[int]) -> Iterator[list[int]]:
        """Indices grouped into token-budget batches, shortest rows first.

        A batch also ends (once it has ``min_rows_per_batch`` rows) where the next row is more
        than ``max_padding`` longer than its shortest row, so that few padded positions are
        computed (measured on the X-NER timing workload: 17% padding -> 4%); see
        :mod:`nertools.runtime.batching`."""
        yield from pack_by_token_budget(lengths, self.batch_tokens, max_padding=self.max_padding,
                                        padding_min_rows=self.min_rows_per_batch)

    def _tensors(self, seqs: Sequence[Sequence[int]]):
        width = max(len(s) for s in seqs)
        if self.max_length and width > self.max_length:
            raise DataError(f"a model input has {width} tokens, more than the model's {self.max_length}; "
                            "cap sentence length with `ner-spans --max-tokens`")
        self.rows_run += len(seqs)
        self.tokens_run += len(seqs) * width
        self.real_tokens_run += sum(len(s) for s in seqs)
        return pad_batch(seqs, self.pad_id, device=self.device)

    def logits_at(self, seqs: Sequence[Sequence[int]], positions: Sequence[int]):
        """float32 logits ``[len(seqs), vocab]`` at one position per row (one forward pass)."""
        import torch

        ids, att = self._tensors(seqs)
        rows = torch.arange(len(seqs), device=ids.device)
        pos = torch.tensor(list(positions), dtype=torch.long, device=ids.device)
        with torch.no_grad():
            if self.head is not None:
                hidden = self.base(input_ids=ids, attention_mask=att).last_hidden_state
                logits = self.head(hidden[rows, pos])
            else:
                logits = self.model(input_ids=ids, attention_mask=att).logits[rows, pos]
        return logits.to(self.out_dtype)

    def hidden(self, seqs: Sequence[Sequence[int]]):
        """Last-layer hidden states ``[rows, width, hidden]`` (float32) and the attention mask."""
        import torch

        ids, att = self._tensors(seqs)
        with torch.no_grad():
            if self.base is not None:
                out = self.base(input_ids=ids, attention_mask=att).last_hidden_state
            else:
                out = self.model(input_ids=ids, attention_mask=att, output_hidden_states=True).hidden_states[-1]
        return out.to(self.out_dtype), att


def kl_rows(p_logp, q_logp):
    """KL(P || Q) per row from float32 log-probabilities (finite even where P underflows).

    ``p_logp`` is overwritten (pass a copy, e.g. a gathered ``tensor[index]``)."""
    import torch

    diff = p_logp - q_logp
    return torch.einsum("ij,ij->i", p_logp.exp_(), diff)  # p_logp is a gathered copy


# --------------------------------------------------------------------------------------
# the scorer
# --------------------------------------------------------------------------------------

@dataclass
class _Job:
    """One (candidate, seed) score being assembled: a sum of row divergences and a count."""

    total: float = 0.0
    count: int = 0


def report_non_finite(count: int, spans: int) -> None:
    """The summary line of a scoring run that wrote :data:`NON_FINITE_SCORE` scores (none: silent)."""
    if count:
        log(f"{count} score(s) of {spans} span(s) were not finite (no rows to compare, or an "
            f"overflow) and were written as {NON_FINITE_SCORE:g} (ranked last; see nertools-format(5))",
            prog="ner-divscore")


class MaskedDivergenceScorer:
    """Scores every candidate of every record against every seed with a masked LM.

    ``score_records`` yields the same records, in input order, each candidate with
    ``"scores": {label: float}`` added (lower = more like the seed). See the module doc.

    :param lm: a :class:`nertools.runtime.models.LoadedLM` of kind ``masked``.
    :param seeds: one :class:`~nertools.xner.seeds.Seed` per label.
    :param method: one of :data:`METHODS`.
    :param template: the method's template (``None``: :data:`DEFAULT_TEMPLATES`); ``[LABEL]``
        is the label word, ``[SEED]`` the seed or span; the prompt template also knows
        ``[SENTENCE]``, ``[SPAN]``, ``[A]`` (a/an) and ``[MASK]``.
    :param temperature: softmax temperature of the divergence methods (2, as released).
    :param context: ``neighbours`` (released "fast" mode) or ``full`` (released default mode).
    :param batch_tokens: token budget of one forward pass (rows x padded length).
    :param chunk_tokens: records are scored in chunks of about this many sentence tokens.
    :param kl_dtype: ``"float32"`` or ``"float64"`` (default: float64 for ``official``, float32
        otherwise): precision of the softmax and KL
        (the model itself runs in the model's dtype). float64 removes float32 rounding noise,
        which matters only for nearly identical distributions (e.g. random-weight models).
    """

    def __init__(self, lm, seeds: list[Seed], *, method: str = "2way", template: str | None = None,
                 temperature: float = 2.0, context: str = "neighbours", batch_tokens: int = 8192,
                 chunk_tokens: int = DEFAULT_CHUNK_TOKENS, cache_size: int = MEMO_SIZE, kl_dtype: str | None = None,
                 progress: bool = False):
        import torch

        if method not in METHODS:
            raise NertoolsError(f"unknown method {method!r} for a masked LM (one of {', '.join(METHODS)})")
        if context not in CONTEXTS:
            raise NertoolsError(f"unknown context {context!r} (neighbours or full)")
        if not seeds:
            raise DataError("no seeds given")
        if temperature <= 0:
            raise NertoolsError("temperature must be positive")
        if batch_tokens < 1:
            raise NertoolsError("batch_tokens must be positive")
        tok = lm.tokenizer
        if tok.mask_token_id is None:
            raise NertoolsError(f"model {lm.name!r} has no mask token; it is not a masked LM")
        self.lm, self.tok, self.seeds = lm, tok, list(seeds)
        self.method, self.context, self.temperature = method, context, float(temperature)
        self.template = template if template is not None else DEFAULT_TEMPLATES[method]
        if method in ("2way", "official") and "[SEED]" not in (self.template or ""):
            raise NertoolsError(f"template {self.template!r} has no [SEED] slot")
        if method == "prompt" and not all(t in self.template for t in ("[SPAN]", "[MASK]")):
            raise NertoolsError(f"prompt template {self.template!r} needs [SPAN] and [MASK]")
        self.progress = progress
        self.chunk_tokens = chunk_tokens
        self.mask_id = tok.mask_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        max_len = max_positions(lm.model.config)
        kl_dtype = kl_dtype or ("float64" if method == "official" else "float32")
        if kl_dtype not in ("float32", "float64"):
            raise NertoolsError(f"kl_dtype must be float32 or float64, not {kl_dtype!r}")
        self.runner = RowRunner(lm.model, pad, lm.device, batch_tokens, max_len, getattr(torch, kl_dtype))
        self._desc_cache: OrderedDict = OrderedDict()  # (label, span string) -> (sum KL, rows)
        self._cache_size = cache_size
        self.spans_scored = 0
        self.non_finite = 0  # scores written as NON_FINITE_SCORE (the record-format contract)
        self._setup_seed_side()

    # -- helpers ------------------------------------------------------------------------

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tok(list(texts), add_special_tokens=True)["input_ids"]

    def _logprobs(self, rows: Sequence[tuple[tuple[int, ...], int]]):
        """Temperature-scaled float32 log-probabilities at the mask of each row, in order."""
        import torch

        out = None
        for batch in self.runner.batches([len(r[0]) for r in rows]):
            logits = self.runner.logits_at([rows[i][0] for i in batch], [rows[i][1] for i in batch])
            lp = torch.log_softmax(logits.div_(self.temperature), dim=-1)
            if out is None:
                out = torch.empty((len(rows), lp.shape[1]), dtype=lp.dtype, device=lp.device)
            out[torch.tensor(batch, device=lp.device)] = lp
        return out

    def _setup_seed_side(self) -> None:
        """Seed side of the template test: computed once per run."""
        self._seed_desc = {}
        if self.method not in ("2way", "official"):
            return
        for seed in self.seeds:
            x_text = fill_template(self.template, seed.label_word, "X")
            seed_text = fill_template(self.template, seed.label_word, seed.text)
            seed_ids, x_ids = self._encode([seed_text, x_text])
            left, right = boundary_rows(seed_ids, x_ids, full=True)
            rows = masked_rows(seed_ids, left, right, self.mask_id)
            if not rows:
                raise NertoolsError(f"template {self.template!r} leaves no token to mask")
            self._seed_desc[seed.label] = (left, right, self._logprobs(rows))

    # -- strings per method ---------------------------------------------------------------

    def _strings(self, rec: dict, cand: dict) -> tuple[str, str, Callable[[str], str]]:
        """``(sentence, span string, replace(filler) -> sentence with the span replaced)``."""
        if self.method == "official":
            words = [t["text"] for t in rec["tokens"]]
            a, b = cand["token_start"], cand["token_end"] + 1
            return (wordpiece_detokenize(words), wordpiece_detokenize(words[a:b]),
                    lambda f: wordpiece_detokenize(words[:a] + [f] + words[b:]))
        text = rec["text"]
        s, e = cand["start"], cand["end"]
        return text, text[s:e], lambda f: text[:s] + f + text[e:]

    # -- public API -----------------------------------------------------------------------

    def score_records(self, records: Iterable[dict]) -> Iterator[dict]:
        """Yield each record with per-label ``scores`` on every candidate, in input order."""
        with progress(unit="span", desc="ner-divscore", enabled=self.progress) as bar:
            for chunk in self._chunks(records):
                self._score_chunk(chunk)
                n = sum(len(r["candidates"]) for r in chunk)
                for rec in chunk:
                    for cand in rec["candidates"]:
                        self.non_finite += settle_scores(cand["scores"])
                self.spans_scored += n
                bar.update(n)
                yield from chunk
        report_non_finite(self.non_finite, self.spans_scored)

    def _chunks(self, records: Iterable[dict]) -> Iterator[list[dict]]:
        chunk, size = [], 0
        for rec in records:
            check_candidates(rec)
            chunk.append(rec)
            size += len(rec["tokens"]) + CHUNK_SPECIAL_TOKENS + len(rec["candidates"])
            if size >= self.chunk_tokens:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    def _score_chunk(self, chunk: list[dict]) -> None:
        pairs = [(rec, cand) for rec in chunk for cand in rec["candidates"]]
        if not pairs:
            return
        if self.method == "cosine":
            return self._score_cosine(pairs)
        if self.method == "prompt":
            return self._score_prompt(pairs)
        labels = [s.label for s in self.seeds]
        jobs = {(id(c), lab): _Job() for _, c in pairs for lab in labels}
        self._sentence_test(pairs, jobs)
        if self.method in ("2way", "official"):
            self._template_test(pairs, jobs)
        for _, cand in pairs:
            scores = {}
            for lab in labels:
                job = jobs[(id(cand), lab)]
                scores[lab] = job.total / job.count if job.count else float("nan")
            cand["scores"] = scores

    # -- sentence test --------------------------------------------------------------------

    def _sentence_test(self, pairs, jobs) -> None:
        """P = sentence with the span (shared rows), Q = sentence with the seed."""
        full = self.context == "full"
        p_index: dict = {}  # original-sentence row -> index (shared by all candidates/seeds)
        p_rows: list = []
        q_index: dict = {}  # seed-sentence row -> index
        q_rows: list = []
        links: list = []  # (p index, q index, job)
        sent_ids: dict = {}
        texts = []
        metas = []
        for rec, cand in pairs:
            sent, _span, replace = self._strings(rec, cand)
            texts.append(replace("X"))
            for seed in self.seeds:
                texts.append(replace(seed.text))
            metas.append((rec, cand, sent))
        encoded = self._encode(texts)
        sentences = {m[2] for m in metas if m[2] not in sent_ids}
        sentences = list(sentences)
        for s, ids in zip(sentences, self._encode(sentences)):
            sent_ids[s] = ids
        k = 0
        for rec, cand, sent in metas:
            ids = sent_ids[sent]
            x_ids = encoded[k]
            k += 1
            left, right = boundary_rows(ids, x_ids, full)
            p_list = masked_rows(ids, left, right, self.mask_id)
            p_idx = []
            for row in p_list:
                if row not in p_index:
                    p_index[row] = len(p_rows)
                    p_rows.append(row)
                p_idx.append(p_index[row])
            for seed in self.seeds:
                q_list = masked_rows(encoded[k], left, right, self.mask_id)
                k += 1
                job = jobs[(id(cand), seed.label)]
                for pi, row in zip(p_idx, q_list):
                    if row not in q_index:
                        q_index[row] = len(q_rows)
                        q_rows.append(row)
                    links.append((pi, q_index[row], job))
        p_logp = self._logprobs(p_rows)
        self._kl_against(p_logp, q_rows, links)

    def _kl_against(self, p_logp, q_rows, links) -> None:
        """Run the Q rows batch by batch; add KL(P || Q) of every link to its job.

        Only one batch of Q distributions exists at a time."""
        import torch

        by_q: dict[int, list] = {}
        for pi, qi, job in links:
            by_q.setdefault(qi, []).append((pi, job))
        for batch in self.runner.batches([len(r[0]) for r in q_rows]):
            logits = self.runner.logits_at([q_rows[i][0] for i in batch], [q_rows[i][1] for i in batch])
            q_logp = torch.log_softmax(logits.div_(self.temperature), dim=-1)
            rows_p, rows_q, owners = [], [], []
            for j, qi in enumerate(batch):
                for pi, job in by_q[qi]:
                    rows_p.append(pi)
                    rows_q.append(j)
                    owners.append(job)
            if rows_q != list(range(len(batch))):
                q_logp = q_logp[rows_q]
            kl = kl_rows(p_logp[rows_p], q_logp).tolist()
            for job, v in zip(owners, kl):
                if isinstance(job, _Job):
                    job.total += v
                    job.count += 1
                else:  # a template-cache accumulator
                    job[0] += v
                    job[1] += 1

    # -- template test --------------------------------------------------------------------

    def _template_test(self, pairs, jobs) -> None:
        """P = template with the seed (once per run), Q = template with the span (cached)."""
        span_strings = {}
        for rec, cand in pairs:
            span_strings[id(cand)] = self._strings(rec, cand)[1]
        needed = sorted(set(span_strings.values()))
        for seed in self.seeds:
            left, right, p_logp = self._seed_desc[seed.label]
            # this chunk's cache hits are read (and made most recent) BEFORE new entries are
            # inserted and the cache trimmed: trimming could otherwise evict an entry this
            # chunk still needs (review B1)
            found: dict[str, tuple] = {}
            for s in needed:
                key = (seed.label, s)
                hit = self._desc_cache.get(key)
                if hit is not None:
                    self._desc_cache.move_to_end(key)
                    found[s] = hit
            todo = [s for s in needed if s not in found]
            if todo:
                accs = {s: [0.0, 0] for s in todo}
                texts = [fill_template(self.template, seed.label_word, s) for s in todo]
                q_rows, links = [], []
                for s, ids in zip(todo, self._encode(texts)):
                    for pi, row in enumerate(masked_rows(ids, left, right, self.mask_id)):
                        links.append((pi, len(q_rows), accs[s]))
                        q_rows.append(row)
                self._kl_against(p_logp, q_rows, links)
                for s in todo:
                    found[s] = self._desc_cache[(seed.label, s)] = tuple(accs[s])
                while len(self._desc_cache) > self._cache_size:
                    self._desc_cache.popitem(last=False)
            for _rec, cand in pairs:
                total, count = found[span_strings[id(cand)]]
                job = jobs[(id(cand), seed.label)]
                job.total += total
                job.count += count

    # -- prompt (PromptMine) ---------------------------------------------------------------

    def _label_token(self, word: str) -> int:
        ids = self.tok(" " + word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise NertoolsError(f"label word {word!r} has no tokens")
        return ids[0]

    def _score_prompt(self, pairs) -> None:
        import torch

        by_label_article: dict[str, list[Seed]] = {}
        for seed in self.seeds:
            art = "an" if seed.label_word[:1].lower() in "aeiou" else "a"
            by_label_article.setdefault(art, []).append(seed)
        for art, seeds in by_label_article.items():
            word_ids = [self._label_token(s.label_word) for s in seeds]
            texts = []
            for rec, cand in pairs:
                sent, span, _ = self._strings(rec, cand)
                texts.append(self.template.replace("[SENTENCE]", sent).replace("[SPAN]", span)
                             .replace("[A]", art).replace("[MASK]", self.tok.mask_token))
            rows = []
            for ids in self._encode(texts):
                pos = [i for i, t in enumerate(ids) if t == self.mask_id]
                if len(pos) != 1:
                    raise DataError(f"prompt for a candidate has {len(pos)} mask tokens, expected 1")
                rows.append((tuple(ids), pos[0]))
            for batch in self.runner.batches([len(r[0]) for r in rows]):
                logits = self.runner.logits_at([rows[i][0] for i in batch], [rows[i][1] for i in batch])
                nll = (-torch.log_softmax(logits, dim=-1)[:, word_ids]).tolist()
                for j, i in enumerate(batch):
                    cand = pairs[i][1]
                    cand.setdefault("scores", {})
                    for seed, v in zip(seeds, nll[j]):
                        cand["scores"][seed.label] = v
        for _, cand in pairs:  # label order as given
            cand["scores"] = {s.label: cand["scores"][s.label] for s in self.seeds}

    # -- cosine baseline -------------------------------------------------------------------

    def _mean_vectors(self, texts: Sequence[str], char_spans: Sequence[tuple[int, int] | None]):
        """Mean last-layer hidden state over the subword tokens overlapping each char span
        (``None``: every non-special token)."""
        import torch

        if not getattr(self.tok, "is_fast", False):
            raise NertoolsError("the cosine method needs a fast tokenizer (character offsets)")
        enc = self.tok(list(texts), add_special_tokens=True, return_offsets_mapping=True,
                       return_special_tokens_mask=True)
        out = [None] * len(texts)
        seqs = enc["input_ids"]
        for batch in self.runner.batches([len(s) for s in seqs]):
            hidden, _ = self.runner.hidden([seqs[i] for i in batch])
            for j, i in enumerate(batch):
                cs = char_spans[i]
                sel = [t for t, ((a, b), sp) in enumerate(zip(enc["offset_mapping"][i],
                                                               enc["special_tokens_mask"][i]))
                       if not sp and b > a and (cs is None or (a < cs[1] and b > cs[0]))]
                if not sel:
                    raise DataError(f"no model token covers span {texts[i][cs[0]:cs[1]]!r}" if cs
                                    else "text has no model tokens")
                out[i] = hidden[j, sel].mean(0)
        return torch.stack(out)

    def _score_cosine(self, pairs) -> None:
        import torch

        if not hasattr(self, "_seed_vecs"):
            self._seed_vecs = self._mean_vectors([s.text for s in self.seeds], [None] * len(self.seeds))
        texts = [rec["text"] for rec, _ in pairs]
        spans = [(c["start"], c["end"]) for _, c in pairs]
        vecs = self._mean_vectors(texts, spans)
        cos = torch.nn.functional.cosine_similarity(vecs[:, None, :], self._seed_vecs[None, :, :], dim=-1)
        for (_, cand), row in zip(pairs, cos.tolist()):
            cand["scores"] = {s.label: 1.0 - v for s, v in zip(self.seeds, row)}


