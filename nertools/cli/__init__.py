"""Thin click wrappers, one module per command. The work is done in :mod:`nertools`.

Each command calls one library function, so a Python user can do what the command does:

==========================  =====================================================================
command                     library entry point
==========================  =====================================================================
ner-validate                :func:`nertools.core.jsonl.read_records` (``labels=``)
ner-convert                 :func:`nertools.formats.convert.convert`
ner-eval                    :func:`nertools.evaluation.evaluate`, ``--ranked``:
                            :func:`nertools.evaluation.evaluate_ranked`
ner-spans                   :func:`nertools.xner.candidates.add_candidates`
ner-divscore                :func:`nertools.xner.scoring.divscore`
ner-pseudo                  :func:`nertools.xner.pseudo.pseudo_label`
ner-selftrain               :func:`nertools.tagging.train.train_tagger`
ner-tag                     :class:`nertools.tagging.tagger.Tagger`
ner-dictmatch               :func:`nertools.gener.dictmatch.dictmatch`
ner-retrieve index          :func:`nertools.gener.phrase_index.build_index`
ner-retrieve query          :func:`nertools.gener.query.query_dense`, ``--backend openai``:
                            :func:`nertools.gener.query.query_llm`
==========================  =====================================================================

Options several commands share are declared once in :mod:`nertools.cli.options`; input,
output, ``--on-error`` and the error/exit-code handling in :mod:`nertools.cli.common`.
"""
