"""Deprecated import path: the contents moved to nertools.formats.common, nertools.formats.conll, nertools.formats.convert, nertools.formats.doccano, nertools.formats.gliner, nertools.formats.hf.

Kept for one release."""
import warnings
from nertools.formats.common import (DETECT_WINDOW, _int_id, _read_json_format, _with_scheme)  # noqa: F401
from nertools.formats.conll import (DOCSTART, SEPARATORS, _ConllParser, _DocStart, _Sentence, _conll_record, conll_block, read_conll)  # noqa: F401
from nertools.formats.convert import (FORMATS, _canonical, convert, formatter, read_format, write_format)  # noqa: F401
from nertools.formats.doccano import (_split_offsets, doccano_to_record, record_to_doccano)  # noqa: F401
from nertools.formats.gliner import (gliner_to_record, record_to_gliner)  # noqa: F401
from nertools.formats.hf import (_hf_tags, read_hf, record_to_hf)  # noqa: F401

warnings.warn("nertools.convert moved to nertools.formats.common, nertools.formats.conll, nertools.formats.convert, nertools.formats.doccano, nertools.formats.gliner, nertools.formats.hf", DeprecationWarning, stacklevel=2)
