"""hfgen's on-disk cache of built datasets: where it lives and how entries are written atomically."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import datasets

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Root of everything hfgen caches: ``$HFGEN_CACHE`` if set, else ``~/.cache/hfgen``."""
    return Path(os.environ.get("HFGEN_CACHE") or "~/.cache/hfgen").expanduser()


def load_or_build_cached(key: str, build: Callable[[], datasets.DatasetDict]) -> datasets.DatasetDict:
    """Load the DatasetDict cached under ``cache_dir()/datasets/<key>``, building and saving it if absent.

    The build is saved into a temporary sibling folder and renamed into place, so a crash
    mid-write leaves only a temporary folder that later calls ignore, never a half-written
    entry that looks complete. Concurrent builders (e.g. several ranks) are safe: the first
    rename wins and the others load the winner's copy.
    """
    final = cache_dir() / "datasets" / key
    if final.is_dir():
        try:
            return datasets.load_from_disk(str(final))
        except Exception as err:  # a cache entry damaged after it was written: rebuild it
            logger.warning("Cached dataset %s is unreadable (%s); rebuilding it.", final, err)
            _remove(final)
    dataset = build()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        dataset.save_to_disk(str(tmp))
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            logger.info("Another process cached %s first; using its copy.", final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # Reload from the cache so the first call returns the same memory-mapped dataset as later ones.
    return datasets.load_from_disk(str(final))


def _remove(path: Path) -> None:
    # Move aside first so a concurrent reader never sees a half-deleted entry under the real name.
    trash = path.parent / f".{path.name}.trash-{uuid.uuid4().hex[:8]}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
