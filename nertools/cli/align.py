"""ner-align: LAR label alignment and reassignment.

(Temporary group in the reassign branch for its own tests; the aligntable branch owns this file.)
"""

from __future__ import annotations

import click

from nertools.cli.common import CONTEXT_SETTINGS


@click.group("ner-align", context_settings=CONTEXT_SETTINGS)
def main():
    """LAR cross-domain NER: alignment table, reassignment training, prediction."""


from nertools.cli.align_train import register  # noqa: E402

register(main)
