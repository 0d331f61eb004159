"""Where nertools keeps what it can rebuild: one cache root for every kind of cache.

The root is ``$NERTOOLS_CACHE`` when set, else ``$XDG_CACHE_HOME/nertools``, else
``~/.cache/nertools``. Each kind of cache has a folder under it:

========================  ====================================================  ===========================
folder                    what                                                  turned off by
========================  ====================================================  ===========================
``models/``               de-quantised GGUF models (:mod:`nertools.runtime.models`)  ``NERTOOLS_MODEL_CACHE=0``
``dictionaries/``         built entity dictionaries (:mod:`nertools.gener.dictionary`)  ``NERTOOLS_DICT_CACHE=0``
``llm/``                  LLM answers (:mod:`nertools.llm.client`)              ``--no-cache``
``align-choose/``         LAR multiple-choice answers (:mod:`nertools.align.choose`)  ``--no-cache``
========================  ====================================================  ===========================

Everything in it may be deleted at any time; it is rebuilt on demand.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "NERTOOLS_CACHE"
_OFF = ("0", "no", "false", "off")


def cache_root() -> Path:
    """The cache root (see the module documentation); nothing is created."""
    root = os.environ.get(ROOT_ENV, "").strip()
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "nertools"


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cache (``models``, ``dictionaries``, ``llm``, ...)."""
    return cache_root() / kind


def switched_off(env: str) -> bool:
    """Whether the environment variable ``env`` turns a cache off (0, no, false, off)."""
    return os.environ.get(env, "1").strip().lower() in _OFF
