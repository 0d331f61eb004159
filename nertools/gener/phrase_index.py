"""GeNER-style retrieval: ask "Which [TYPE]?" against a dense phrase index of a local corpus, or
ask an OpenAI-compatible LLM, and turn the answers into a pseudo-dictionary.

Dense phrase index (``ner-retrieve index``)
    Every candidate phrase of every corpus sentence (word n-grams from :mod:`nertools.xner.candidates`:
    up to 3 words, no stop words, punctuation or digits; see :func:`candidate_ranges`) gets a
    vector *in context* from a Hugging Face encoder: the mean of its sub-token states
    (``span_repr="mean"``) or its first and last sub-token states side by side
    (``"start-end"``), optionally mixed with the mean of the whole sentence
    (``context_weight``). Vectors are L2-normalised and stored as float16.

    On disk (a directory)::

        manifest.json          format, encoder, settings, corpus fingerprint, shard list
        vectors-00000.npy      float16 [rows, dim], memory-mapped at query time
        spans-00000.npy        int32 [rows, 3]: sentence number, first token, last token
        sentences.jsonl        the indexed sentences (id, text, tokens)
        sentences.idx.npy      int64 byte offset of each line of sentences.jsonl

    A first build and a ``--rebuild`` write a directory beside ``OUT`` and swap it in when
    complete (:mod:`nertools.core.atomic`): ``OUT`` is always the old complete index, absent,
    or the new one; a failed or interrupted build leaves nothing to clean up. The corpus
    fingerprint (size, SHA-256, line count) makes a rebuild incremental when the corpus only
    grew at the end (new shards are added, in place) and refuses clearly when it changed
    otherwise. An append writes the manifest last, and the next run cuts ``sentences.jsonl``
    and its offsets back to what the manifest lists, so a killed append costs nothing.
    Sentences longer than the encoder window (``max_length`` sub-tokens) are cut; the phrases
    past the cut are left out and counted (the build's report and ``manifest["truncated"]``).

Query (``ner-retrieve query``)
    A question is encoded with the same encoder (mean of its sub-token states; repeated
    twice for ``start-end``) and scored against every phrase vector by cosine similarity
    (higher = better), chunk by chunk over the memory map. The top-k phrase occurrences
    (overlapping occurrences in one sentence: the best only) become evidence records whose
    spans carry ``label``, ``score`` and ``question``, and a pseudo-dictionary
    ``phrase<TAB>label<TAB>count`` normalised by GeNER's rules 1-7 (:mod:`nertools.gener.phrase_rules`).

LLM backend
    :func:`ask_llm_entities` asks an OpenAI-compatible chat endpoint to list N entities of a
    type, with retries (timeouts, connection errors, HTTP 429 and 5xx), a per-request timeout
    and an on-disk response cache (a cache hit sends no request).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import orjson

from nertools.errors import DataError, NertoolsError
from nertools.core.atomic import discard, replace_dir, temp_dir_beside, write_json_atomic
from nertools.core.jsonl import ErrorPolicy, display_name, read_jsonl
from nertools.core.record import normalize_record
from nertools.gener.questions import Question
from nertools.runtime.batching import pack_by_token_budget
from nertools.runtime.progress import NoProgress
from nertools.runtime.progress import progress as show_progress  # build_index has a `progress` flag

INDEX_FORMAT = "nertools-phrase-index"
INDEX_VERSION = 1
MANIFEST = "manifest.json"
SPAN_REPRS = ("mean", "start-end")
DEFAULT_MODEL = "all-minilm-l6-v2"
#: Records read ahead while indexing, in batches: a pool of this many batches is sorted by
#: length before it is cut into batches (less padding), then stored in corpus order.
POOL_BATCHES = 8


# --------------------------------------------------------------------------- encoder

@dataclass
class Encoder:
    """A Hugging Face encoder that embeds word spans in context and questions."""

    model: Any
    tokenizer: Any
    device: Any
    name: str
    max_length: int = 128
    #: what the ``max_length`` window cut off so far: sentences longer than the window, and
    #: candidate phrases left out because they (partly) lie past it (never silent: the index
    #: build reports both)
    truncated_sentences: int = 0
    dropped_phrases: int = 0

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def _states(self, word_lists: Sequence[Sequence[str]]):
        import torch

        enc = self.tokenizer([list(w) for w in word_lists], is_split_into_words=True,
                             truncation=True, max_length=self.max_length, padding=True,
                             return_tensors="pt")
        word_ids = [enc.word_ids(i) for i in range(len(word_lists))]
        inputs = {k: v.to(self.device) for k, v in enc.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state.float()
        return hidden, enc["attention_mask"].to(self.device), word_ids

    def encode_spans(self, word_lists: Sequence[Sequence[str]],
                     ranges: Sequence[Sequence[tuple[int, int]]], span_repr: str = "mean",
                     context_weight: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Vectors of the word ranges (``(start, end)``, end exclusive) of each sentence.

        Returns ``(vectors [n, dim] float32 L2-normalised, [(sentence, start, end_inclusive)])``;
        a range cut off by ``max_length`` truncation is left out and counted in
        :attr:`dropped_phrases` (the sentence in :attr:`truncated_sentences`).
        """
        import torch

        hidden, mask, word_ids = self._states(word_lists)
        maskf = mask.unsqueeze(-1).to(hidden.dtype)
        sent_mean = (hidden * maskf).sum(1) / maskf.sum(1).clamp(min=1)
        rows, firsts, lasts, meta = [], [], [], []
        full = [n >= self.max_length for n in mask.sum(1).tolist()]  # the window is full: cut?
        for b, wids in enumerate(word_ids):
            first: dict[int, int] = {}
            last: dict[int, int] = {}
            for pos, w in enumerate(wids):
                if w is None:
                    continue
                first.setdefault(w, pos)
                last[w] = pos
            if full[b] and word_lists[b] and (len(word_lists[b]) - 1) not in last:
                self.truncated_sentences += 1
            for (s, e) in ranges[b]:
                if s in first and (e - 1) in last:
                    rows.append(b)
                    firsts.append(first[s])
                    lasts.append(last[e - 1])
                    meta.append((b, s, e - 1))
                elif full[b]:
                    self.dropped_phrases += 1
        dim = self.hidden_size * (2 if span_repr == "start-end" else 1)
        if not meta:
            return np.zeros((0, dim), dtype=np.float32), meta
        dev = hidden.device
        r = torch.tensor(rows, device=dev)
        a = torch.tensor(firsts, device=dev)
        z = torch.tensor(lasts, device=dev)
        if span_repr == "start-end":
            v = torch.cat([hidden[r, a], hidden[r, z]], dim=-1)
            ctx = torch.cat([sent_mean[r], sent_mean[r]], dim=-1)
        else:
            # span means from prefix sums: (S[z] - S[a-1]) / (z - a + 1)
            csum = torch.cumsum(hidden, dim=1)
            upper = csum[r, z]
            lower = torch.where((a > 0).unsqueeze(-1), csum[r, (a - 1).clamp(min=0)],
                                torch.zeros_like(upper))
            v = (upper - lower) / (z - a + 1).unsqueeze(-1).to(hidden.dtype)
            ctx = sent_mean[r]
        if context_weight:
            v = (1 - context_weight) * v + context_weight * ctx
        out = torch.nn.functional.normalize(v, dim=-1)
        return out.cpu().numpy().astype(np.float32), meta

    def encode_texts(self, texts: Sequence[str], span_repr: str = "mean") -> np.ndarray:
        """Question vectors: mean of sub-token states (twice, side by side, for start-end)."""
        import torch

        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                             padding=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in enc.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        v = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if span_repr == "start-end":
            v = torch.cat([v, v], dim=-1)
        return torch.nn.functional.normalize(v, dim=-1).cpu().numpy().astype(np.float32)


def load_encoder(name: str, *, device: str = "auto", dtype: str = "auto",
                 max_length: int = 128) -> Encoder:
    """Any Hugging Face encoder (name, local folder or alias such as ``all-minilm-l6-v2``; a GGUF
    file gives its language model's base model), through :func:`nertools.runtime.models.load_pretrained`."""
    from nertools.runtime.models import ENCODER, load_pretrained, resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model, tokenizer = load_pretrained(name, ENCODER, dtype=dt, subject=f"encoder {name!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise NertoolsError(f"encoder {name!r} needs a fast tokenizer (word alignment)")
    model.to(dev)
    model.eval()
    return Encoder(model=model, tokenizer=tokenizer, device=dev, name=name, max_length=max_length)


# --------------------------------------------------------------------------- index building

@dataclass
class IndexSettings:
    model: str = DEFAULT_MODEL
    span_repr: str = "mean"
    context_weight: float = 0.0
    max_span_len: int = 3
    max_length: int = 128

    def __post_init__(self):
        if self.span_repr not in SPAN_REPRS:
            raise NertoolsError(f"span representation must be one of {SPAN_REPRS}")
        if not 0.0 <= self.context_weight <= 1.0:
            raise NertoolsError("context weight must be between 0 and 1")


def corpus_fingerprint(path: str, upto: int | None = None) -> dict:
    """``{"size", "sha256", "lines"}`` of a file (or of its first ``upto`` bytes)."""
    h = hashlib.sha256()
    size = 0
    lines = 0
    try:
        with open(path, "rb") as fh:
            while True:
                want = 1 << 20 if upto is None else min(1 << 20, upto - size)
                if want <= 0:
                    break
                chunk = fh.read(want)
                if not chunk:
                    break
                h.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
    except OSError as e:
        raise DataError(f"cannot read corpus: {e.strerror or e}", path=path) from None
    return {"size": size, "sha256": h.hexdigest(), "lines": lines}


def candidate_ranges(rules, words: Sequence[str]) -> list[tuple[int, int]]:
    """Candidate phrases of a sentence: :class:`nertools.xner.candidates.SpanRules` n-grams (no stop
    words, listed punctuation or digits) whose words all contain a letter and do not start
    with an apostrophe (drops ":", ";", "'s" and the like, which the X-NER list lets through)."""
    good = [any(c.isalpha() for c in w) and w[:1] not in "'\u2019" for w in words]
    return [(a, b) for a, b in rules.candidate_ranges(list(words)) if all(good[a:b])]


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, path)


@dataclass
class BuildReport:
    status: str            # "built", "appended", "up-to-date"
    sentences: int = 0     # sentences encoded in this run
    phrases: int = 0       # phrase vectors written in this run
    total_phrases: int = 0
    seconds: float = 0.0
    truncated_sentences: int = 0  # sentences of this run longer than the encoder window
    dropped_phrases: int = 0      # candidate phrases of this run left out: past the window


def build_index(corpus: str, out: str, settings: IndexSettings, *, encoder: Encoder | None = None,
                device: str = "auto", dtype: str = "auto", batch_size: int = 32,
                rebuild: bool = False, policy: ErrorPolicy | None = None,
                rows_per_shard: int = 1 << 18, progress: bool = True) -> BuildReport:
    """Build (or extend) the phrase index of ``corpus`` (a JSONL file) in directory ``out``.

    An existing index is left alone when the corpus is unchanged, extended with new shards
    when the corpus only grew at the end (same encoder settings), and otherwise refused with
    a clear error unless ``rebuild`` (which starts from scratch). A first build and a rebuild
    happen in a directory beside ``out`` that replaces it when complete: a failure leaves
    ``out`` as it was. A directory that is not an index is never replaced; one that an
    unfinished build of an older nertools left (index files, no manifest) only with ``rebuild``.
    """

    t0 = time.perf_counter()
    if corpus == "-":
        raise NertoolsError("the corpus must be a file (its fingerprint is recorded), not stdin")
    outdir = Path(out)
    fp = corpus_fingerprint(corpus)
    manifest = None
    if (outdir / MANIFEST).exists() and not rebuild:
        manifest = load_manifest(outdir)
        old = manifest["settings"]
        if {k: old.get(k) for k in asdict(settings)} != asdict(settings):
            changed = [k for k in asdict(settings) if old.get(k) != asdict(settings)[k]]
            raise NertoolsError(f"index {out} was built with other settings ({', '.join(changed)}); "
                                f"use --rebuild to rebuild it, or another --out")
        ofp = manifest["corpus"]
        if ofp["size"] == fp["size"] and ofp["sha256"] == fp["sha256"]:
            return BuildReport("up-to-date", total_phrases=manifest["rows"],
                               seconds=time.perf_counter() - t0)
        prefix = corpus_fingerprint(corpus, upto=ofp["size"]) if fp["size"] > ofp["size"] else None
        if prefix is None or prefix["sha256"] != ofp["sha256"]:
            raise NertoolsError(f"corpus {corpus} changed since index {out} was built (it is not "
                                f"the old corpus with lines appended); use --rebuild to rebuild "
                                f"the index from scratch")
    elif outdir.exists() and not outdir.is_dir():
        raise NertoolsError(f"{out} exists and is not a directory")
    elif outdir.exists() and any(outdir.iterdir()):
        if not _index_like(outdir) and not (rebuild and (outdir / MANIFEST).exists()):
            raise NertoolsError(f"{out} exists and is not a phrase index (no {MANIFEST}); "
                                f"choose an empty or new directory" if not rebuild else
                                f"refusing to --rebuild into {out}: it is not a phrase index")
        if not rebuild and not (outdir / MANIFEST).exists():
            raise NertoolsError(f"{out} holds an unfinished phrase index (no {MANIFEST}); "
                                f"use --rebuild to build it again")
    if not manifest and Path(corpus).resolve().is_relative_to(outdir.resolve()):
        raise NertoolsError(f"the corpus {corpus} is inside the index directory {out}, which a "
                            f"build replaces; choose another --out")

    if encoder is None:
        encoder = load_encoder(settings.model, device=device, dtype=dtype, max_length=settings.max_length)
    if manifest is not None:
        # an append works in place (only new shards and the grown sentence files are written;
        # the manifest, written last, decides what the index holds: see _recover)
        return _build(corpus, outdir, fp, manifest, "appended", settings, encoder,
                      batch_size, policy, rows_per_shard, progress, t0)
    # a first build or a --rebuild: in a directory beside OUT, swapped in when complete, so OUT
    # is at every moment the old complete index (or absent, or empty), or the new one
    manifest = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "settings": asdict(settings),
                "dim": None, "rows": 0, "sentences": 0, "shards": [],
                "corpus": {"path": os.path.abspath(corpus), "size": 0, "sha256": None, "lines": 0}}
    tmp = temp_dir_beside(outdir)
    try:
        report = _build(corpus, tmp, fp, manifest, "built", settings, encoder,
                        batch_size, policy, rows_per_shard, progress, t0)
        replace_dir(tmp, outdir)
    except BaseException:
        discard(tmp)
        raise
    return report


#: Names of the files an index directory holds (an unfinished build leaves some of them).
_INDEX_FILE = re.compile(r"(manifest\.json|sentences\.jsonl|sentences\.idx\.npy|(vectors|spans)-\d+\.npy)"
                         r"(\.part)?")


def _index_like(outdir: Path) -> bool:
    """``outdir`` holds only phrase-index files (a complete index, or an unfinished build of
    an older nertools, which built in place): ``--rebuild`` may replace it."""
    return all(p.is_file() and _INDEX_FILE.fullmatch(p.name) for p in outdir.iterdir())


def _recover(workdir: Path, manifest: dict) -> tuple[list, int]:
    """The sentence offsets the manifest vouches for, and the end of sentences.jsonl they
    imply. A run killed after writing sentence lines (or sentences.idx.npy) but before the
    manifest leaves more of either than the manifest lists; both are cut back to it."""
    n = manifest["sentences"]
    if not n:
        return [], 0
    try:
        offsets = [int(x) for x in np.load(workdir / "sentences.idx.npy")[:n]]
        if len(offsets) != n:
            raise ValueError(f"{len(offsets)} offsets")
        end = _expected_end(workdir / "sentences.jsonl", offsets)
    except (OSError, ValueError) as e:
        raise _corrupt(workdir, f"cannot recover the sentence files ({e}); use --rebuild") from None
    return offsets, end


def _build(corpus: str, workdir: Path, fp: dict, manifest: dict, status: str,
           settings: IndexSettings, encoder: Encoder, batch_size: int, policy: ErrorPolicy | None,
           rows_per_shard: int, progress: bool, t0: float) -> BuildReport:
    """Index the corpus lines past ``manifest["corpus"]["lines"]`` into ``workdir``."""
    from nertools.xner.candidates import SpanRules

    skip_lines = manifest["corpus"]["lines"]
    rules = SpanRules(max_length=settings.max_span_len)
    policy = policy or ErrorPolicy()
    name = display_name(corpus)
    cut0 = (encoder.truncated_sentences, encoder.dropped_phrases)

    sent_path = workdir / "sentences.jsonl"
    offsets, pos = _recover(workdir, manifest)
    sent_fh = open(sent_path, "r+b" if sent_path.exists() else "wb")
    # truncate() does not move the file position: seek to the recovered end as well
    sent_fh.truncate(pos)
    sent_fh.seek(pos)

    shard_vecs: list[np.ndarray] = []
    shard_meta: list[np.ndarray] = []
    shard_rows = 0
    new_shards = []
    n_sent = manifest["sentences"]
    n_new_sent = 0
    n_new_rows = 0
    dim = manifest["dim"]

    def flush_shard():
        nonlocal shard_vecs, shard_meta, shard_rows
        if not shard_rows:
            return
        k = len(manifest["shards"]) + len(new_shards)
        vname, sname = f"vectors-{k:05d}.npy", f"spans-{k:05d}.npy"
        _save_npy(workdir / vname, np.concatenate(shard_vecs).astype(np.float16))
        _save_npy(workdir / sname, np.concatenate(shard_meta).astype(np.int32))
        new_shards.append({"vectors": vname, "spans": sname, "rows": shard_rows})
        shard_vecs, shard_meta, shard_rows = [], [], 0

    progress_bar = show_progress(total=max(fp["lines"] - skip_lines, 0) or None, desc="ner-retrieve index",
                                 unit="sent", enabled=progress)
    pool: list[dict] = []
    pool_size = batch_size * POOL_BATCHES

    def run_pool():
        """Encode the pooled records in length-sorted batches (less padding), then store
        them in corpus order."""
        nonlocal n_sent, n_new_sent, n_new_rows, shard_rows, dim, pos
        words = [[t["text"] for t in r["tokens"]] for r in pool]
        for ids in pack_by_token_budget([len(w) for w in words], None, max_rows=batch_size):
            bw = [words[k] for k in ids]
            vecs, meta = encoder.encode_spans(bw, [candidate_ranges(rules, w) for w in bw],
                                              settings.span_repr, settings.context_weight)
            if dim is None:
                dim = vecs.shape[1]
            if len(meta):
                m = np.asarray(meta, dtype=np.int64)
                m[:, 0] = np.asarray(ids, dtype=np.int64)[m[:, 0]] + n_sent
                shard_vecs.append(vecs)
                shard_meta.append(m)
                shard_rows += len(meta)
                n_new_rows += len(meta)
            progress_bar.update(len(ids))
            if shard_rows >= rows_per_shard:
                flush_shard()
        for r in pool:
            line = orjson.dumps({"id": r["id"], "text": r["text"], "tokens": r["tokens"]},
                                option=orjson.OPT_APPEND_NEWLINE)
            offsets.append(pos)
            sent_fh.write(line)
            pos += len(line)
        n_sent += len(pool)
        n_new_sent += len(pool)

    try:
        for lineno, obj in read_jsonl(corpus, policy=policy, allow_empty=manifest["sentences"] > 0):
            if lineno <= skip_lines:
                continue
            try:
                rec = normalize_record(obj, default_id=str(lineno))
            except DataError as e:
                policy.handle(e.located(name, lineno))
                continue
            pool.append(rec)
            if len(pool) >= pool_size:
                run_pool()
                pool = []
        if pool:
            run_pool()
        flush_shard()
    finally:
        progress_bar.close()
        sent_fh.close()
    if n_sent == 0:
        raise DataError("no sentences to index", path=name)
    truncated = encoder.truncated_sentences - cut0[0]
    dropped = encoder.dropped_phrases - cut0[1]
    _save_npy(workdir / "sentences.idx.npy", np.asarray(offsets, dtype=np.int64))
    manifest["shards"].extend(new_shards)
    manifest["rows"] += n_new_rows
    manifest["sentences"] = n_sent
    manifest["dim"] = dim
    manifest["corpus"] = {"path": os.path.abspath(corpus), **fp}
    manifest["encoder"] = {"name": settings.model, "hidden_size": encoder.hidden_size}
    cut = manifest.get("truncated") or {"sentences": 0, "phrases": 0}
    manifest["truncated"] = {"sentences": cut["sentences"] + truncated, "phrases": cut["phrases"] + dropped}
    write_json_atomic(workdir / MANIFEST, manifest)
    return BuildReport(status, sentences=n_new_sent, phrases=n_new_rows,
                       total_phrases=manifest["rows"], seconds=time.perf_counter() - t0,
                       truncated_sentences=truncated, dropped_phrases=dropped)


def _expected_end(path: Path, offsets: list) -> int:
    """Byte length of sentences.jsonl up to the end of its last indexed line."""
    with open(path, "rb") as fh:
        fh.seek(int(offsets[-1]))
        return int(offsets[-1]) + len(fh.readline())


# the names of 0.1 (nertools.retrieve re-exports them)
_NoProgress = NoProgress
_atomic_write_json = write_json_atomic


def _progress(total, desc, unit, enabled):
    return show_progress(total=total, desc=desc, unit=unit, enabled=enabled)


# --------------------------------------------------------------------------- the index on disk

def _corrupt(outdir: Path, why: str) -> DataError:
    return DataError(f"phrase index is corrupted or incomplete: {why}", path=str(outdir))


def load_manifest(outdir: Path) -> dict:
    path = outdir / MANIFEST
    if not outdir.is_dir():
        raise NertoolsError(f"{outdir}: no such index directory")
    if not path.exists():
        raise _corrupt(outdir, f"no {MANIFEST} (not an index, or its build did not finish)")
    try:
        m = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise _corrupt(outdir, f"{MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != INDEX_FORMAT:
        raise _corrupt(outdir, f"{MANIFEST} is not a nertools phrase index manifest")
    if m.get("version") != INDEX_VERSION:
        raise NertoolsError(f"{outdir}: index version {m.get('version')} is not supported "
                            f"(this nertools reads version {INDEX_VERSION}); rebuild it")
    for key in ("settings", "dim", "rows", "sentences", "shards", "corpus"):
        if key not in m:
            raise _corrupt(outdir, f"{MANIFEST} has no {key!r}")
    return m


@dataclass
class PhraseIndex:
    """A phrase index opened for querying (vectors memory-mapped)."""

    path: Path
    manifest: dict
    vectors: list[np.ndarray]
    spans: list[np.ndarray]
    offsets: np.ndarray
    _sentences: dict[int, dict] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> IndexSettings:
        return IndexSettings(**self.manifest["settings"])

    @classmethod
    def open(cls, path: str) -> "PhraseIndex":
        outdir = Path(path)
        m = load_manifest(outdir)
        vectors, spans = [], []
        rows = 0
        for sh in m["shards"]:
            try:
                v = np.load(outdir / sh["vectors"], mmap_mode="r")
                s = np.load(outdir / sh["spans"], mmap_mode="r")
            except (OSError, ValueError, KeyError, TypeError, EOFError) as e:  # EOFError: an empty file
                raise _corrupt(outdir, f"cannot read shard {sh!r}: {e or type(e).__name__}") from None
            if v.ndim != 2 or v.shape[1] != m["dim"] or v.shape[0] != sh["rows"]:
                raise _corrupt(outdir, f"{sh['vectors']} has shape {v.shape}, expected "
                                       f"({sh['rows']}, {m['dim']})")
            if s.shape != (sh["rows"], 3):
                raise _corrupt(outdir, f"{sh['spans']} has shape {s.shape}, expected ({sh['rows']}, 3)")
            vectors.append(v)
            spans.append(s)
            rows += v.shape[0]
        if rows != m["rows"]:
            raise _corrupt(outdir, f"shards hold {rows} phrases, manifest says {m['rows']}")
        try:
            offsets = np.load(outdir / "sentences.idx.npy")
        except (OSError, ValueError, EOFError) as e:
            raise _corrupt(outdir, f"cannot read sentences.idx.npy: {e}") from None
        if offsets.shape != (m["sentences"],):
            raise _corrupt(outdir, f"sentences.idx.npy has {offsets.shape[0]} entries, manifest "
                                   f"says {m['sentences']} sentences")
        sent = outdir / "sentences.jsonl"
        if not sent.exists() or (len(offsets) and sent.stat().st_size <= int(offsets[-1])):
            raise _corrupt(outdir, "sentences.jsonl is missing or truncated")
        return cls(outdir, m, vectors, spans, offsets)

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def sentence(self, k: int, fh=None) -> dict:
        """Sentence number ``k`` as stored (id, text, tokens); read once, then cached."""
        if k in self._sentences:
            return self._sentences[k]
        own = fh is None
        fh = fh or open(self.path / "sentences.jsonl", "rb")
        try:
            fh.seek(int(self.offsets[k]))
            line = fh.readline()
            try:
                rec = self._sentences[k] = orjson.loads(line)
                return rec
            except orjson.JSONDecodeError:
                raise _corrupt(self.path, f"sentences.jsonl line for sentence {k} is broken") from None
        finally:
            if own:
                fh.close()

    def search(self, queries: np.ndarray, top_k: int, chunk_rows: int = 1 << 16) -> list[list[tuple[float, int, int]]]:
        """Top ``top_k`` ``(score, shard, row)`` per query vector, best first (cosine)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.shape[1] != self.manifest["dim"]:
            raise NertoolsError(f"question vectors have {q.shape[1]} dimensions, the index "
                                f"{self.manifest['dim']}: query with the encoder that built it")
        best: list[list[tuple[float, int, int]]] = [[] for _ in range(len(q))]
        for si, v in enumerate(self.vectors):
            for start in range(0, v.shape[0], chunk_rows):
                chunk = np.asarray(v[start:start + chunk_rows], dtype=np.float32)
                scores = chunk @ q.T   # [rows, n_queries]
                k = min(top_k, scores.shape[0])
                for qi in range(len(q)):
                    col = scores[:, qi]
                    idx = np.argpartition(-col, k - 1)[:k] if k < len(col) else np.arange(len(col))
                    best[qi].extend((float(col[r]), si, start + int(r)) for r in idx)
                    best[qi].sort(key=lambda x: -x[0])
                    del best[qi][top_k:]
        return best


# --------------------------------------------------------------------------- querying

@dataclass
class Hit:
    question: Question
    sentence: int
    token_start: int
    token_end: int
    score: float
    text: str = ""


def query_index(index: PhraseIndex, questions: Sequence[Question], top_k: int, *,
                encoder: Encoder | None = None, device: str = "auto", dtype: str = "auto",
                overfetch: int = 4) -> list[list[Hit]]:
    """The top ``top_k`` phrase occurrences for each question; in one sentence, overlapping
    occurrences keep only the best-scoring one."""
    st = index.settings
    if encoder is None:
        encoder = load_encoder(st.model, device=device, dtype=dtype, max_length=st.max_length)
    qv = encoder.encode_texts([q.text for q in questions], st.span_repr)
    raw = index.search(qv, top_k * overfetch)
    out = []
    with open(index.path / "sentences.jsonl", "rb") as fh:
        for q, found in zip(questions, raw):
            hits: list[Hit] = []
            taken: dict[int, list[tuple[int, int]]] = {}
            for score, si, row in found:
                sent, a, b = (int(x) for x in index.spans[si][row])
                if any(not (b < x or a > y) for x, y in taken.get(sent, ())):
                    continue
                taken.setdefault(sent, []).append((a, b))
                rec = index.sentence(sent, fh)
                toks = rec["tokens"]
                text = rec["text"][toks[a]["start"]:toks[b]["end"]]
                hits.append(Hit(q, sent, a, b, score, text))
                if len(hits) >= top_k:
                    break
            out.append(hits)
    return out


def evidence_records(index: PhraseIndex, hits: Iterable[Hit], source: str = "retrieve") -> list[dict]:
    """One record per evidence sentence (in order of its best hit), retrieved phrases as spans."""
    by_sent: dict[int, list[Hit]] = {}
    order: list[int] = []
    for h in hits:
        if h.sentence not in by_sent:
            order.append(h.sentence)
            by_sent[h.sentence] = []
        by_sent[h.sentence].append(h)
    out = []
    with open(index.path / "sentences.jsonl", "rb") as fh:
        for k in order:
            rec = index.sentence(k, fh)
            toks = rec["tokens"]
            spans = []
            occupied: list[tuple[int, int]] = []
            for h in sorted(by_sent[k], key=lambda h: -h.score):
                if any(not (h.token_end < x or h.token_start > y) for x, y in occupied):
                    continue  # another question's phrase already covers these tokens
                occupied.append((h.token_start, h.token_end))
                spans.append({"start": toks[h.token_start]["start"], "end": toks[h.token_end]["end"],
                              "token_start": h.token_start, "token_end": h.token_end,
                              "label": h.question.label, "score": round(h.score, 6),
                              "source": source, "question": h.question.text})
            spans.sort(key=lambda s: s["token_start"])
            out.append({"id": rec["id"], "text": rec["text"], "tokens": toks, "spans": spans,
                        "meta": {"retrieved_for": sorted({h.question.text for h in by_sent[k]})}})
    return out
