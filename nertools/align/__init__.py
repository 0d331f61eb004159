"""LAR (label alignment and reassignment) for cross-domain NER: ``ner-align``.

* :mod:`nertools.align.table` — the alignment table (target type -> source type) from source
  predictions and target gold (votes), its JSON format, loading and validation;
* :mod:`nertools.align.names` — label names and the name-based zero-shot table (encoder or LLM);
* :mod:`nertools.align.choose` — enhanced inference: an LLM re-chooses the target type among the
  candidates of the predicted source type (served: free generation; local: log-probability choice).
"""

from nertools.align.table import AlignmentTable, build_table, load_table  # noqa: F401
