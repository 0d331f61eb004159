"""Few-shot building blocks: the k~2k support-set sampler (``ner-sample``), the frozen-encoder
linear probe (``ner-selftrain --linear-probe``, NuNER's protocol A) and the word-level metrics
the few-shot papers report.

- :mod:`nertools.fewshot.sampler` — :func:`sample_support` (Ding et al. 2021's greedy k~2k rule);
- :mod:`nertools.fewshot.metrics` — token-level macro/micro F1 and IO span decoding;
- :mod:`nertools.fewshot.probe` — frozen word vectors, the linear head, :func:`train_probe_tagger`.

Only :mod:`~nertools.fewshot.probe` needs torch; it is imported on use.
"""

from nertools.fewshot.sampler import SampleResult, sample_support

__all__ = ["SampleResult", "sample_support"]
