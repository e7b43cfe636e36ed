"""The progress bar of a run (local main process only)."""

from __future__ import annotations

from accelerate import Accelerator
from tqdm.auto import tqdm


def progress_bar(accelerator: Accelerator, total: int, initial: int, desc: str) -> tqdm:
    """A tqdm bar on the local main process only."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not accelerator.is_local_main_process, dynamic_ncols=True)
