"""Bi-encoder NER (NuNER concept pre-training, LITSET label interpretation, zero-shot tagging).

- :mod:`nertools.biencoder.losses`: the two objectives as pure functions;
- :mod:`nertools.biencoder.labels`: label/description files, verbalisation, record mentions;
- :mod:`nertools.biencoder.model`: the text x label encoder module (imports torch);
- :mod:`nertools.biencoder.train`: ``ner-biencoder train`` (:func:`train_biencoder`, on
  :class:`nertools.training.Trainer`, DistributedDataParallel under torchrun);
- :mod:`nertools.biencoder.tagger`: :class:`BiEncoder` (``BiEncoder.load(dir).tag_records(...)``),
  what ``ner-tag --model BIENCODER_DIR --labels ...`` runs.

Importing this package does not import torch.
"""

from nertools.biencoder.labels import LabelInfo, labels_from_option, read_label_file
from nertools.biencoder.tagger import BiEncoder, is_biencoder_dir, tag_records
from nertools.biencoder.train import BiEncoderArgs, train_biencoder

__all__ = ["BiEncoder", "BiEncoderArgs", "LabelInfo", "is_biencoder_dir", "labels_from_option",
           "read_label_file", "tag_records", "train_biencoder"]
