"""LAR enhanced inference: an LLM re-chooses the target type of a predicted span among the
candidates of its source type, as a multiple-choice question with one demonstration
(spec §4.7 [ours]; the paper's Figure 2 is an image).

Input spans carry ``label`` (the target type) and ``source_label`` (the source type; see
``/work/notes/align-fields.md``). With ``from_source=True`` the spans come straight from a
source model (``label`` = the source type, e.g. ``ner-tag --spacy``): the label moves to
``source_label`` and the span starts from the table's ``default`` target of that source
type. Per span, by its source type ``s`` and the table's candidates ``cand(s)``:

* ``|cand(s)| >= 2``: asked (when a chooser is given and ``s`` is among ``types``);
  outcome ``chosen`` (the answer is an option; ``label`` = it) or ``invalid`` (the answer
  names no option, or the entity is missing from a served model's answer: the original
  label is kept);
* ``|cand(s)| == 1``: ``single``, the candidate is assigned directly (not asked);
* ``|cand(s)| >= 2`` but not asked (no chooser: direct inference, or ``s`` not in ``types``):
  ``not-asked``, the original label is kept;
* ``cand(s)`` empty (a source type no target aligns to, e.g. OntoNotes DATE) or ``s``
  unknown to the table: the span is **dropped** (``drop_uncovered``, the default, counted as
  ``dropped``) or kept unchanged (counted as ``uncovered``);
* no ``source_label``: left alone, counted as ``no-source``.

A span label the table's target labels do not know is counted (``unknown_targets``) and
treated like any other original label (kept unless an answer replaces it).
Each handled span gets ``align_choice``: ``{"original", "options", "outcome"}`` (+
``"scores"`` {option: log-probability} from a local model, ``"answer"`` from a served one).

Three choosers. :class:`ServedChooser` (OpenAI-compatible server through
:mod:`nertools.llm.client`: retries, cache): one request per sentence with all its
ambiguous entities; the answer is parsed line by line (real or literal ``\\n``) with the
spec's rule (split on the first `` : `` and the last `` -> ``), matched to the entities in
order. :class:`LocalChooser` (any causal LM :func:`nertools.runtime.models.load_lm` loads):
one prompt per entity (the same text with only that entity), and every option is scored by
the summed log-probability of its tokens after ``"<source> : <span> ->"`` (``score="mean"``:
per token); the best option wins (ties: the first in the options' order). ``both_orders``: each
option is scored once with the options listed in the prompt as given (sorted) and once reversed,
and the two log-probabilities are averaged (against a small model's bias for the option listed
last; twice the cost). Rows are batched
under a token budget; the instruction and demonstration every prompt starts with are run
once and reused as a key-value cache; answers are cached on disk by (model, prompt, options).
:class:`Seq2SeqChooser` does the same with an encoder-decoder (Flan-T5, T5): the prompt is
the encoder input, the lead and the option the decoder's (the encoder runs once per entity).
:func:`local_chooser` picks between the two by the model's kind.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from nertools.align.names import _norm, label_name, match_option  # noqa: F401 (match_option: re-exported)
from nertools.align.table import AlignmentTable
from nertools.core.atomic import write_bytes_atomic
from nertools.core.cache import cache_dir

INSTRUCTION = ("Each entity below was found in the input sentence with a general type. For each entity, choose "
               "its specific type from the options given for its general type. Answer with one line per entity "
               "in the form \"general type : entity -> chosen option\".")

#: The one demonstration: a canonical output format, not domain knowledge, so it comes from a domain
#: none of the shared benchmarks has (sports; the spec's §4.7 politics demonstration would hand the
#: politics domain its own answers). One answer is the first option, the other the last.
DEMO = {"options": [("person", ["coach", "athlete", "person"]), ("organization", ["organization", "sports team"])],
        "sentence": "Coach Phil Jackson led the Chicago Bulls to the 1996 title .",
        "entities": [("person", "Phil Jackson"), ("organization", "Chicago Bulls")],
        "answers": ["coach", "sports team"]}

SEP = " \\n "   # the items' separator inside a prompt line (the spec's literal backslash-n)
OUTCOMES = ("chosen", "single", "invalid", "not-asked", "dropped", "uncovered", "no-source")
ITEM_RE = re.compile(r"^(?P<src>.+?) : (?P<span>.+) -> (?P<tgt>.+)$")


@dataclass
class Entity:
    source: str          # the source label (raw)
    text: str            # the span's words
    options: list[str]   # candidate target labels (raw), sorted
    original: str        # the label before choosing


@dataclass
class Question:
    sentence: str
    entities: list[Entity]


def _demo_block() -> str:
    lines = [f"Options for {s}: {', '.join(opts)}" for s, opts in DEMO["options"]]
    lines.append(f"Input: {DEMO['sentence']}")
    lines.append("Entities: " + SEP.join(f"{s} : {t}" for s, t in DEMO["entities"]))
    lines.append("Answer: " + SEP.join(f"{s} : {t} -> {a}" for (s, t), a in zip(DEMO["entities"], DEMO["answers"])))
    return "\n".join(lines)


def render_prompt(q: Question) -> str:
    """The prompt for a sentence's entities, ending in ``Answer:``."""
    seen: dict[str, list[str]] = {}
    for e in q.entities:
        seen.setdefault(e.source, e.options)
    lines = [f"Options for {label_name(s)}: {', '.join(label_name(o) for o in opts)}" for s, opts in seen.items()]
    lines.append(f"Input: {q.sentence}")
    lines.append("Entities: " + SEP.join(f"{label_name(e.source)} : {e.text}" for e in q.entities))
    lines.append("Answer:")
    return f"{INSTRUCTION}\n\n{_demo_block()}\n\n" + "\n".join(lines)


def parse_answer(text: str) -> list[tuple[str, str, str]]:
    """``(source, span, target)`` items of an answer: lines split on real newlines and on
    the literal two characters ``\\n``; each line split on its first `` : `` and last `` -> ``;
    lines of another shape are ignored."""
    items = []
    for line in re.split(r"\n|\\n", text or ""):
        line = line.strip().lstrip("-*• ").strip()
        if line.lower().startswith("answer:"):
            line = line[7:].strip()
        m = ITEM_RE.match(line)
        if m:
            items.append((m["src"].strip(), m["span"].strip(), m["tgt"].strip()))
    return items


def answers_for(q: Question, text: str) -> list[str | None]:
    """Per entity of ``q``, the option its answer line names (``None``: missing or outside).
    Entities are matched to answer lines by their words, in order (each line used once)."""
    items = parse_answer(text)
    used = [False] * len(items)
    out: list[str | None] = []
    for e in q.entities:
        choice = None
        for k, (_src, span, tgt) in enumerate(items):
            if used[k] or _norm(span) != _norm(e.text):
                continue
            used[k] = True
            choice = match_option(tgt, e.options)
            break
        out.append(choice)
    return out


# ----------------------------------------------------------------------------- choosers

class ServedChooser:
    """Free generation on an OpenAI-compatible server, one request per sentence."""

    def __init__(self, cfg, *, concurrency: int = 4, log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.concurrency = concurrency
        self.log = log
        self.name = f"openai:{cfg.model}"

    def _one(self, q: Question) -> tuple[list[str | None], str]:
        from nertools.llm.client import chat_completion

        text = chat_completion(self.cfg, [{"role": "user", "content": render_prompt(q)}], log=self.log)
        return answers_for(q, text), text

    def choose(self, questions: list[Question]) -> list[tuple[list[str | None], dict]]:
        if not questions:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(questions)))) as pool:
            results = list(pool.map(self._one, questions))
        return [(answers, {"answer": text}) for answers, text in results]


def default_cache_dir() -> str:
    """``align-choose/`` under the cache root (:func:`nertools.core.cache.cache_root`)."""
    return str(cache_dir("align-choose"))


class LocalChooser:
    """Constrained multiple choice with a local causal LM (see the module docstring)."""

    def __init__(self, lm, *, batch_tokens: int = 4096, score: str = "sum", cache_dir: str | None = None,
                 chat: bool | None = None, prefix_cache: bool = True, both_orders: bool = False):
        if score not in ("sum", "mean"):
            raise ValueError("score must be sum or mean")
        self.lm = lm
        self.batch_tokens = batch_tokens
        self.score = score
        self.cache_dir = cache_dir
        tok = lm.tokenizer
        self.chat = bool(getattr(tok, "chat_template", None)) if chat is None else chat
        self.name = f"local:{lm.name}"
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.rows_scored = 0
        self.prefix_cache = prefix_cache
        self.both_orders = both_orders   # score with the options listed as given and reversed; average
        self._shared: tuple[list[int], Any, str] | None = None  # (ids, key-value cache, text) of the shared part

    def prompt_text(self, sentence: str, e: Entity) -> str:
        """The full text whose continuation is scored: the prompt with only entity ``e``, then
        ``"<source> : <span> ->"`` (inside the chat template when the tokenizer has one)."""
        prompt = render_prompt(Question(sentence, [e]))
        lead = f"{label_name(e.source)} : {e.text} ->"
        if self.chat:
            body = prompt[: -len("Answer:")].rstrip()
            text = self.lm.tokenizer.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                                         add_generation_prompt=True)
            return text + lead
        return f"{prompt} {lead}"

    @staticmethod
    def split_shared(text: str) -> tuple[str, str]:
        """``text`` cut after the demonstration: the part every prompt shares, and the rest."""
        mark = _demo_block() + "\n\n"
        k = text.index(mark) + len(mark)
        return text[:k], text[k:]

    def _key(self, text: str, options: list[str]) -> str:
        payload = {"model": str(self.lm.name), "prompt": text, "options": options, "score": self.score,
                   "version": 1}
        return hashlib.sha256(orjson.dumps(payload)).hexdigest()

    def _cached(self, key: str) -> dict | None:
        if not self.cache_dir:
            return None
        try:
            return orjson.loads((Path(self.cache_dir) / key[:2] / f"{key}.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def _store(self, key: str, value: dict) -> None:
        if not self.cache_dir:
            return
        p = Path(self.cache_dir) / key[:2] / f"{key}.json"
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(p, orjson.dumps(value))
        except OSError:
            pass  # the cache is an optimisation, never a failure

    def lead_ids(self) -> list[int]:
        """The special tokens the tokenizer puts before a text (BOS), none in chat mode (the
        template has its own); a trailing EOS/SEP is never added."""
        if self.chat:
            return []
        tok = self.lm.tokenizer
        with_sp = tok("a")["input_ids"]
        without = tok("a", add_special_tokens=False)["input_ids"]
        return with_sp[:with_sp.index(without[0])] if without and without[0] in with_sp else []

    def shared_ids(self, text: str) -> list[int]:
        return self.lead_ids() + self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _shared_prefix(self, text: str) -> tuple[list[int], Any]:
        from nertools.runtime.kvcache import prefix_cache

        if self._shared is None or self._shared[2] != text:
            ids = self.shared_ids(text)
            self._shared = (ids, prefix_cache(self.lm, ids), text)
        return self._shared[0], self._shared[1]

    def row_prefix(self, sentence: str, e: Entity, text: str) -> tuple[Any, str | None]:
        """``(prefix, shared)``: the ids the options of ``e`` are scored after (``text`` is
        :meth:`prompt_text`), and the shared text run once as a key-value cache (``None``
        without the prefix cache). The text is tokenised in two parts (the shared instruction
        and demonstration, then the rest) in both modes, so that the cached prefix changes
        nothing."""
        shared, rest = self.split_shared(text)
        p_ids = self.lm.tokenizer(rest, add_special_tokens=False)["input_ids"]
        if not self.prefix_cache:
            return self.shared_ids(shared) + p_ids, None
        return p_ids, shared

    def score_rows(self, rows: list[tuple[list[int], list[int]]], shared: str | None = None) -> list[float]:
        """Summed (or mean) log-probability of each row's continuation ids after its prefix ids
        (``shared``: a text that precedes every row, run once and reused as a key-value cache;
        each row's prefix must then be non-empty)."""
        import torch

        from nertools.runtime.batching import pack_by_token_budget, pad_batch
        from nertools.runtime.kvcache import cache_kwarg, repeated

        lengths = [len(p) + len(c) for p, c in rows]
        out = [0.0] * len(rows)
        model = self.lm.model
        shared_ids, past = self._shared_prefix(shared) if shared is not None else ([], None)
        for batch in pack_by_token_budget(lengths, self.batch_tokens):
            seqs = [rows[i][0] + rows[i][1] for i in batch]
            ids, mask = pad_batch(seqs, self.pad_id, side="right", device=self.lm.device)
            with torch.no_grad():
                if past is None:
                    logits = model(input_ids=ids, attention_mask=mask).logits.float()
                else:
                    cache = repeated(past, len(batch))
                    full = torch.cat([torch.ones(len(batch), len(shared_ids), dtype=mask.dtype, device=mask.device),
                                      mask], dim=1)
                    logits = model(input_ids=ids, attention_mask=full, use_cache=True,
                                   **{cache_kwarg(model): cache}).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            for r, i in enumerate(batch):
                p, c = rows[i]
                pos = torch.arange(len(p) - 1, len(p) + len(c) - 1, device=logp.device)
                vals = logp[r, pos, torch.tensor(c, device=logp.device)]
                out[i] = float(vals.sum() if self.score == "sum" else vals.mean())
        self.rows_scored += len(rows)
        return out

    def choose(self, questions: list[Question]) -> list[tuple[list[str | None], dict]]:
        tok = self.lm.tokenizer
        jobs: list[tuple[int, int, str]] = []      # (question, entity, cache key)
        results: list[list[Any]] = [[None] * len(q.entities) for q in questions]
        extras: list[dict] = [{"scores": [None] * len(q.entities)} for q in questions]
        rows, owners = [], []
        shared = None
        for qi, q in enumerate(questions):
            for ei, e in enumerate(q.entities):
                text = self.prompt_text(q.sentence, e)
                key = self._key(text + ("\x00both-orders" if self.both_orders else ""), e.options)
                hit = self._cached(key)
                if hit is not None and hit.get("choice") in e.options:
                    results[qi][ei] = hit["choice"]
                    extras[qi]["scores"][ei] = hit.get("scores")
                    continue
                jobs.append((qi, ei, key))
                orders = [e.options] + ([e.options[::-1]] if self.both_orders else [])
                for order in orders:
                    ent = e if order is e.options else Entity(e.source, e.text, order, e.original)
                    if ent is not e:
                        text = self.prompt_text(q.sentence, ent)
                    prefix, shared = self.row_prefix(q.sentence, ent, text)
                    for o in e.options:
                        rows.append((prefix, tok(" " + label_name(o), add_special_tokens=False)["input_ids"]))
                        owners.append((len(jobs) - 1, o))
        scores = self.score_rows(rows, shared) if rows else []
        sums: list[dict[str, list[float]]] = [{} for _ in jobs]
        for (j, o), s in zip(owners, scores):
            sums[j].setdefault(o, []).append(s)
        per_job = [{o: round(sum(v) / len(v), 4) for o, v in d.items()} for d in sums]
        for j, (qi, ei, key) in enumerate(jobs):
            e = questions[qi].entities[ei]
            sc = per_job[j]
            best = max(e.options, key=lambda o: (sc[o], -e.options.index(o)))
            results[qi][ei] = best
            extras[qi]["scores"][ei] = sc
            self._store(key, {"choice": best, "scores": sc})
        return [(results[k], extras[k]) for k in range(len(questions))]


class Seq2SeqChooser(LocalChooser):
    """Constrained multiple choice with a local encoder-decoder LM (T5, Flan-T5): the prompt
    with only the entity (the tokenizer's special tokens added: T5's final ``</s>``) is the
    encoder input, and each option is scored by the decoder's log-probability of its tokens
    after ``"<source> : <span> ->"`` (from the config's decoder start token). The encoder runs
    once per entity and its output serves every option; no chat template, no prefix cache
    (the encoder reads the whole prompt at once). Everything else (``score``,
    ``both_orders``, batching under a token budget, the answer cache) is
    :class:`LocalChooser`'s."""

    def __init__(self, lm, **kwargs):
        kwargs["chat"] = False
        kwargs["prefix_cache"] = False
        super().__init__(lm, **kwargs)
        from nertools.align.generative import _decoder_start

        self.start = _decoder_start(lm.model)
        if self.start is None:
            from nertools.errors import NertoolsError

            raise NertoolsError(f"model {lm.name!r}: the encoder-decoder config has no decoder_start_token_id")

    def row_prefix(self, sentence: str, e: Entity, text: str) -> tuple[Any, None]:
        """``((encoder ids, decoder lead ids), None)``."""
        tok = self.lm.tokenizer
        enc = list(tok(render_prompt(Question(sentence, [e])))["input_ids"])
        lead = list(tok(f"{label_name(e.source)} : {e.text} ->", add_special_tokens=False)["input_ids"])
        return (enc, lead), None

    def score_rows(self, rows, shared: str | None = None) -> list[float]:
        """Summed (or mean) log-probability of each row's option ids, the decoder having read
        the start token and the row's lead ids, the encoder the row's prompt."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        from nertools.runtime.batching import pack_by_token_budget, pad_batch

        model, dev = self.lm.model, self.lm.device
        out = [0.0] * len(rows)
        lengths = [len(p[0]) + len(p[1]) + len(c) for p, c in rows]
        for batch in pack_by_token_budget(lengths, self.batch_tokens):
            slot: dict[int, int] = {}          # one encoder row per distinct prompt of the batch
            prompts = []
            for i in batch:
                if id(rows[i][0]) not in slot:
                    slot[id(rows[i][0])] = len(prompts)
                    prompts.append(rows[i][0][0])
            which = torch.tensor([slot[id(rows[i][0])] for i in batch], device=dev)
            enc_ids, enc_mask = pad_batch(prompts, self.pad_id, side="right", device=dev)
            dec = [[self.start] + rows[i][0][1] + rows[i][1][:-1] for i in batch]
            dec_ids, dec_mask = pad_batch(dec, self.pad_id, side="right", device=dev)
            with torch.no_grad():
                hidden = model.get_encoder()(input_ids=enc_ids, attention_mask=enc_mask).last_hidden_state
                logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden[which]),
                               attention_mask=enc_mask[which], decoder_input_ids=dec_ids,
                               decoder_attention_mask=dec_mask).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for r, i in enumerate(batch):
                (_enc, lead), c = rows[i]
                pos = torch.arange(len(lead), len(lead) + len(c), device=logp.device)
                vals = logp[r, pos, torch.tensor(c, device=logp.device)]
                out[i] = float(vals.sum() if self.score == "sum" else vals.mean())
        self.rows_scored += len(rows)
        return out


def local_chooser(lm, **kwargs) -> LocalChooser:
    """The constrained chooser for a loaded model: :class:`Seq2SeqChooser` for an
    encoder-decoder, :class:`LocalChooser` for a causal LM; anything else is refused."""
    from nertools.errors import NertoolsError
    from nertools.runtime.models import CAUSAL, SEQ2SEQ

    if lm.kind == SEQ2SEQ:
        return Seq2SeqChooser(lm, **kwargs)
    if lm.kind != CAUSAL:
        raise NertoolsError(f"model {lm.name!r} is a {lm.kind} model; ner-align choose needs a causal or "
                            "encoder-decoder LM")
    return LocalChooser(lm, **kwargs)


# ----------------------------------------------------------------------------- the stream

@dataclass
class ChooseStats:
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in OUTCOMES})
    changed: int = 0
    questions: int = 0
    unknown_targets: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{v} {k}" for k, v in self.counts.items() if v]
        line = ", ".join(parts) or "no spans"
        line += f"; {self.questions} question(s) asked, {self.changed} label(s) changed"
        if self.unknown_targets:
            line += "; labels the table does not know: " + ", ".join(
                f"{k} ({v})" for k, v in sorted(self.unknown_targets.items()))
        return line


def choose(records: Iterable[dict], table: AlignmentTable, chooser=None, *, from_source: bool = False,
           types: Iterable[str] | None = None, drop_uncovered: bool = True, chunk: int = 64,
           stats: ChooseStats | None = None) -> Iterator[dict]:
    """Stream ``records`` with each span's target type (re)chosen (see the module docstring).
    ``chooser``: :class:`ServedChooser`, :class:`LocalChooser` or ``None`` (direct inference:
    no question asked). ``types``: the source types to ask about (``None``: all ambiguous)."""
    stats = stats if stats is not None else ChooseStats()
    ask_types = None if types is None else set(types)
    buf: list[dict] = []
    for rec in records:
        buf.append(rec)
        if len(buf) >= chunk:
            yield from _chunk(buf, table, chooser, from_source, ask_types, drop_uncovered, stats)
            buf = []
    if buf:
        yield from _chunk(buf, table, chooser, from_source, ask_types, drop_uncovered, stats)


def _chunk(recs, table, chooser, from_source, ask_types, drop_uncovered, stats) -> Iterator[dict]:
    questions: list[Question] = []
    pending: list[list[dict]] = []   # the spans asked, per question
    known_targets = set(table.target_labels)
    for rec in recs:
        kept, asked = [], []
        for span in rec.get("spans", []):
            if from_source and "source_label" not in span:
                span["source_label"] = span["label"]
                span["label"] = table.default_of(span["source_label"]) or span["label"]
            src = span.get("source_label")
            if not isinstance(src, str):
                stats.counts["no-source"] += 1
                kept.append(span)
                continue
            options = table.candidates_of(src)
            original = span["label"]
            if not options:
                if drop_uncovered:
                    stats.counts["dropped"] += 1
                    continue
                stats.counts["uncovered"] += 1
                kept.append(span)
                continue
            if original not in known_targets:
                stats.unknown_targets[original] = stats.unknown_targets.get(original, 0) + 1
            info: dict[str, Any] = {"original": original, "options": options}
            if len(options) == 1:
                span["label"] = options[0]
                info["outcome"] = "single"
                stats.counts["single"] += 1
                stats.changed += options[0] != original
            elif chooser is None or (ask_types is not None and src not in ask_types):
                info["outcome"] = "not-asked"
                stats.counts["not-asked"] += 1
            else:
                asked.append(span)
            span["align_choice"] = info
            kept.append(span)
        rec["spans"] = kept
        if asked:
            text = rec["text"]
            sentence = " ".join(t["text"] for t in rec["tokens"]) if rec.get("tokens") else text
            questions.append(Question(sentence, [Entity(s["source_label"], text[s["start"]:s["end"]],
                                                        s["align_choice"]["options"], s["label"]) for s in asked]))
            pending.append(asked)
    if questions:
        stats.questions += len(questions)
        answers = chooser.choose(questions)
        for asked, (choices, extra) in zip(pending, answers):
            for k, (span, choice) in enumerate(zip(asked, choices)):
                info = span["align_choice"]
                if extra.get("scores") and extra["scores"][k] is not None:
                    info["scores"] = extra["scores"][k]
                if "answer" in extra:
                    info["answer"] = extra["answer"]
                if choice is None or choice not in info["options"]:
                    info["outcome"] = "invalid"
                    stats.counts["invalid"] += 1
                else:
                    info["outcome"] = "chosen"
                    stats.counts["chosen"] += 1
                    stats.changed += choice != span["label"]
                    span["label"] = choice
    yield from recs
